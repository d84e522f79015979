//! Fault tests on librdkafka's mock cluster: leader moves, a broker going down and up, and
//! injected retriable errors on Produce. Afterwards every record must be there exactly once,
//! in order within its partition, read back by librdkafka's consumer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use wafka_producer::{Delivery, Producer, Record};
use wafka_tests::{
    consume_exactly, mock_cluster, Consumed, MockKafka, RDKafkaApiKey, RDKafkaRespErr,
};

const PARTITIONS: i32 = 4;

fn producer(bootstrap: &str, extra: &[(&str, &str)]) -> Producer {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut props = vec![
        ("bootstrap.servers", bootstrap),
        ("linger.ms", "2"),
        ("batch.size", "2000"),
        ("retry.backoff.ms", "20"),
        ("retry.backoff.max.ms", "200"),
        ("request.timeout.ms", "3000"),
        ("delivery.timeout.ms", "30000"),
        ("metadata.max.age.ms", "500"),
        // librdkafka's mock broker checks idempotent sequence numbers only for transactional
        // producers, so it would accept a batch that overtook a failed one. Real brokers (and
        // nisshi) reject it with OUT_OF_ORDER_SEQUENCE_NUMBER and the producer retries in
        // order; here the client alone must keep order, so one request at a time per broker.
        ("max.in.flight.requests.per.connection", "1"),
    ];
    props.extend_from_slice(extra);
    Producer::from_properties(props).expect("config")
}

/// A three-broker mock cluster with `topic`; with `leader`, that broker leads every partition.
fn cluster(topic: &str, leader: Option<i32>) -> (Arc<MockKafka>, String) {
    let (mock, bootstrap) = mock_cluster(3);
    mock.create_topic(topic, PARTITIONS, 3).expect("mock topic");
    if let Some(broker) = leader {
        for part in 0..PARTITIONS {
            mock.partition_leader(topic, part, Some(broker)).unwrap();
        }
    }
    (Arc::new(mock), bootstrap)
}

/// Sends the record `warm:0` (key `warm`) and waits for its ack, so metadata and the producer
/// id exist before faults start.
async fn warm_up(p: &Producer, topic: &str) {
    p.send(&Record::new(topic, b"warm:0").key(b"warm"))
        .await
        .unwrap()
        .await
        .unwrap();
}

/// Values are `key:seq`; per key, seq must rise with the offset and appear once.
fn assert_exactly_once_in_order(records: &[Consumed], keys: usize, per_key: usize) {
    assert_eq!(
        records.len(),
        keys * per_key,
        "record count (duplicates or losses)"
    );
    let mut next: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut by_partition: HashMap<i32, Vec<&Consumed>> = HashMap::new();
    for r in records {
        by_partition.entry(r.partition).or_default().push(r);
    }
    for (_, mut rs) in by_partition {
        rs.sort_by_key(|r| r.offset);
        for r in rs {
            let key = r.key.clone().expect("key");
            let value = String::from_utf8(r.value.clone().expect("value")).unwrap();
            let (k, seq) = value.rsplit_once(':').unwrap();
            assert_eq!(k.as_bytes(), &key[..]);
            let seq: usize = seq.parse().unwrap();
            let want = next.entry(key.clone()).or_default();
            assert_eq!(
                seq, *want,
                "key {k}: got seq {seq}, expected {want} (partition {})",
                r.partition
            );
            *want += 1;
        }
    }
    assert_eq!(next.len(), keys);
    assert!(next.values().all(|&n| n == per_key));
}

async fn send_all(
    p: &Producer,
    topic: &str,
    keys: usize,
    per_key: usize,
    pause_every: usize,
) -> Vec<Delivery> {
    let mut out = Vec::new();
    for i in 0..per_key {
        for k in 0..keys {
            let key = format!("key-{k}");
            let value = format!("key-{k}:{i}");
            out.push(
                p.send(&Record::new(topic, value.as_bytes()).key(key.as_bytes()))
                    .await
                    .expect("queued"),
            );
        }
        if pause_every > 0 && i % pause_every == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    out
}

async fn all_delivered(deliveries: Vec<Delivery>) {
    for d in deliveries {
        let m = d.await.expect("delivered");
        assert!(m.offset >= 0);
    }
}

async fn read_back(bootstrap: String, topic: String, n: usize) -> Vec<Consumed> {
    tokio::task::spawn_blocking(move || {
        consume_exactly(&bootstrap, &topic, n, Duration::from_secs(30))
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_retriable_produce_errors_leave_each_record_once_in_order() {
    let topic = "faults-injected";
    let (mock, bootstrap) = cluster(topic, None);
    let p = producer(&bootstrap, &[]);
    warm_up(&p, topic).await;
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__TRANSPORT,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
        ],
    );
    let deliveries = send_all(&p, topic, 8, 200, 20).await;
    all_delivered(deliveries).await;
    assert!(
        p.stats().retries > 0,
        "the injected errors were retried: {:?}",
        p.stats()
    );
    let mut records = read_back(bootstrap, topic.into(), 8 * 200 + 1).await;
    records.retain(|r| r.key.as_deref() != Some(b"warm"));
    assert_exactly_once_in_order(&records, 8, 200);
    drop(mock);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_moves_during_a_run() {
    let topic = "faults-leaders";
    let (mock, bootstrap) = cluster(topic, None);
    let p = producer(&bootstrap, &[]);
    let mover = {
        let mock = mock.clone();
        tokio::spawn(async move {
            for round in 0..12 {
                tokio::time::sleep(Duration::from_millis(60)).await;
                for part in 0..PARTITIONS {
                    let leader = 1 + (round + part) % 3;
                    mock.partition_leader(topic, part, Some(leader)).unwrap();
                }
            }
        })
    };
    let deliveries = send_all(&p, topic, 6, 300, 10).await;
    all_delivered(deliveries).await;
    mover.await.unwrap();
    assert!(
        p.stats().retries > 0,
        "leader moves caused retries: {:?}",
        p.stats()
    );
    let records = read_back(bootstrap, topic.into(), 6 * 300).await;
    assert_exactly_once_in_order(&records, 6, 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_and_up() {
    let topic = "faults-down";
    let (mock, bootstrap) = cluster(topic, Some(2));
    let p = producer(&bootstrap, &[]);
    warm_up(&p, topic).await;
    mock.broker_down(2).unwrap();
    let restorer = {
        let mock = mock.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(700)).await;
            mock.broker_up(2).unwrap();
        })
    };
    let deliveries = send_all(&p, topic, 4, 100, 10).await;
    all_delivered(deliveries).await;
    restorer.await.unwrap();
    assert!(
        p.stats().retries > 0,
        "the down broker caused retries: {:?}",
        p.stats()
    );
    let mut records = read_back(bootstrap, topic.into(), 4 * 100 + 1).await;
    records.retain(|r| r.key.as_deref() != Some(b"warm"));
    assert_exactly_once_in_order(&records, 4, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_buffer_blocks_up_to_max_block_ms_then_fails_clearly_and_loses_nothing() {
    let topic = "faults-buffer";
    let (mock, bootstrap) = cluster(topic, Some(3));
    let p = producer(
        &bootstrap,
        &[
            ("buffer.memory", "20000"),
            ("max.block.ms", "700"),
            ("batch.size", "4000"),
        ],
    );
    warm_up(&p, topic).await;
    mock.broker_down(3).unwrap();
    let mut queued = Vec::new();
    let value = vec![b'v'; 500];
    let err = loop {
        match p
            .send(&Record::new(topic, &value).key(b"k").partition(0))
            .await
        {
            Ok(d) => queued.push(d),
            Err(e) => break e,
        }
        assert!(queued.len() < 100, "buffer.memory=20000 must fill up");
    };
    let text = err.to_string();
    assert!(
        matches!(err, wafka_producer::ProduceError::BufferExhausted { .. }),
        "{err:?}"
    );
    assert!(
        text.contains("buffer.memory") && text.contains("max.block.ms=700"),
        "{text}"
    );
    // Bounded: the refused send waited max.block.ms, not longer.
    let t = std::time::Instant::now();
    let again = p.send(&Record::new(topic, &value).partition(0)).await;
    assert!(again.is_err());
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(650) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    // What was queued before is delivered once the broker is back.
    mock.broker_up(3).unwrap();
    let n = queued.len();
    for d in queued {
        d.await.expect("queued record delivered");
    }
    let got = read_back(bootstrap, topic.into(), n + 1).await;
    assert_eq!(got.len(), n + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_for_a_dead_leader_expire_after_delivery_timeout() {
    let topic = "faults-expire";
    let (mock, bootstrap) = cluster(topic, Some(2));
    let p = producer(
        &bootstrap,
        &[
            ("delivery.timeout.ms", "1500"),
            ("request.timeout.ms", "1000"),
            ("linger.ms", "0"),
        ],
    );
    warm_up(&p, topic).await;
    mock.broker_down(2).unwrap();
    let t = std::time::Instant::now();
    let d = p.send(&Record::new(topic, b"doomed")).await.unwrap();
    let err = d.await.unwrap_err();
    let took = t.elapsed();
    assert!(
        matches!(err, wafka_producer::ProduceError::DeliveryTimeout { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("delivery.timeout.ms=1500"),
        "{err}"
    );
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert_eq!(p.stats().records_failed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_without_leaders_yet_is_waited_for_up_to_max_block_ms() {
    let topic = "faults-no-leader";
    let (mock, bootstrap) = cluster(topic, None);
    let leader_not_available = RDKafkaRespErr::RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE;
    mock.topic_error(topic, leader_not_available).unwrap();
    let p = producer(&bootstrap, &[("max.block.ms", "10000")]);
    // The topic gets its leaders while the send waits: the send goes through.
    let clearer = {
        let mock = mock.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(700)).await;
            mock.topic_error(topic, RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR)
                .unwrap();
        })
    };
    let d = p
        .send(&Record::new(topic, b"waited").key(b"k"))
        .await
        .expect("queued once the topic has leaders");
    d.await.expect("delivered");
    clearer.await.unwrap();
    let got = read_back(bootstrap, topic.into(), 1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].value.as_deref(), Some(&b"waited"[..]));

    // Leaders that never come: the send fails after max.block.ms, naming the cluster's answer.
    let other = "faults-no-leader-ever";
    mock.create_topic(other, PARTITIONS, 3).unwrap();
    mock.topic_error(other, leader_not_available).unwrap();
    let p = producer(&mock.bootstrap_servers(), &[("max.block.ms", "1000")]);
    let err = p.send(&Record::new(other, b"x")).await.unwrap_err();
    assert!(
        matches!(err, wafka_producer::ProduceError::MetadataTimeout { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("LEADER_NOT_AVAILABLE"), "{err}");
}
