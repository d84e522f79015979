//! Proves the test tooling end to end with librdkafka only (no wafka code):
//! broker start, topic creation, consuming, the partitioner reference and the
//! mock cluster.

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use wafka_tests::{
    brokers, consume, consume_exactly, create_topic, librdkafka_partition, mock_cluster,
};

const TIMEOUT: Duration = Duration::from_secs(30);

fn producer(brokers: &str, compression: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("partitioner", "murmur2_random")
        .set("enable.idempotence", "true")
        .set("compression.type", compression)
        .set("linger.ms", "5")
        .create()
        .expect("producer")
}

/// Sends `count` keyed records with two headers each and waits for all acks.
async fn produce(producer: &FutureProducer, topic: &str, count: usize) {
    let sends = (0..count).map(|i| {
        let key = format!("key-{i}");
        let value = format!("value-{i}");
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "index",
                value: Some(i.to_string().as_bytes()),
            })
            .insert(Header::<&[u8]> {
                key: "nothing",
                value: None,
            });
        let producer = producer.clone();
        let topic = topic.to_owned();
        async move {
            let record = FutureRecord::to(&topic)
                .key(&key)
                .payload(&value)
                .headers(headers);
            producer
                .send(record, TIMEOUT)
                .await
                .unwrap_or_else(|(e, _)| panic!("send {i} failed: {e}"))
        }
    });
    let delivered: Vec<_> = futures_join_all(sends).await;
    assert_eq!(delivered.len(), count);
    producer.flush(TIMEOUT).expect("flush");
}

/// Minimal `join_all` on tokio, to avoid a `futures` dependency.
async fn futures_join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.expect("send task"));
    }
    out
}

fn assert_records(records: &[wafka_tests::Consumed], count: usize, partitions: i32) {
    assert_eq!(records.len(), count, "record count");
    let mut indexes: Vec<usize> = records
        .iter()
        .map(|r| {
            let key = r.key.as_deref().expect("key");
            let index: usize = std::str::from_utf8(&key[4..]).unwrap().parse().unwrap();
            assert_eq!(key, format!("key-{index}").as_bytes());
            assert_eq!(
                r.value.as_deref(),
                Some(format!("value-{index}").as_bytes())
            );
            assert_eq!(
                r.headers,
                vec![
                    ("index".to_owned(), Some(index.to_string().into_bytes())),
                    ("nothing".to_owned(), None),
                ]
            );
            assert!(
                r.timestamp.is_some_and(|t| t > 0),
                "timestamp {:?}",
                r.timestamp
            );
            assert_eq!(
                r.partition,
                librdkafka_partition(key, partitions),
                "partition of {index}"
            );
            index
        })
        .collect();
    indexes.sort_unstable();
    assert_eq!(indexes, (0..count).collect::<Vec<_>>());
    // Offsets within each partition are dense from 0.
    for partition in 0..partitions {
        let offsets: Vec<i64> = records
            .iter()
            .filter(|r| r.partition == partition)
            .map(|r| r.offset)
            .collect();
        assert_eq!(offsets, (0..offsets.len() as i64).collect::<Vec<_>>());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_roundtrip_with_librdkafka() {
    let brokers = brokers();
    let topic = create_topic("smoke", 3);
    produce(&producer(&brokers, "none"), &topic, 100).await;

    let records = consume_exactly(&brokers, &topic, 100, TIMEOUT);
    assert_records(&records, 100, 3);
    // Every partition got something (100 keys over 3 partitions).
    for partition in 0..3 {
        assert!(records.iter().any(|r| r.partition == partition));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_roundtrip_compressed() {
    let brokers = brokers();
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let topic = create_topic(&format!("smoke-{codec}"), 2);
        produce(&producer(&brokers, codec), &topic, 20).await;
        let records = consume(&brokers, &topic, 20, TIMEOUT);
        assert_records(&records, 20, 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_cluster_roundtrip() {
    let (cluster, bootstrap) = mock_cluster(3);
    cluster
        .create_topic("mock-smoke", 3, 1)
        .expect("mock topic");
    produce(&producer(&bootstrap, "lz4"), "mock-smoke", 10).await;

    let records = consume_exactly(&bootstrap, "mock-smoke", 10, TIMEOUT);
    assert_records(&records, 10, 3);
}
