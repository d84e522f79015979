//! Memory bounds of hostile and overloaded cases, measured by a counting allocator: what the
//! producer allocates must follow what it was configured to hold, not what a broker claims.
//! The tests in this binary run one at a time (they share the allocator's counters).

use std::time::Duration;

use wafka_producer::{ProduceError, Producer, Record};
use wafka_tests::alloc::{measure, peak_above};
use wafka_tests::{brokers, create_topic, Fault, Proxy};

#[global_allocator]
static ALLOCATOR: wafka_tests::alloc::Counting = wafka_tests::alloc::Counting;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const MIB: usize = 1 << 20;

fn producer(proxy: &Proxy, extra: &[(&str, &str)]) -> Producer {
    let bootstrap = proxy.bootstrap();
    let mut props = vec![
        ("bootstrap.servers", bootstrap.as_str()),
        ("request.timeout.ms", "3000"),
        ("delivery.timeout.ms", "5000"),
        ("metadata.max.age.ms", "300"),
    ];
    props.extend_from_slice(extra);
    Producer::from_properties(props).expect("config")
}

/// A broker announces an answer of 496 MiB and sends nothing more: the producer must not set
/// that memory aside.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_length_prefix_is_not_reserved() {
    let _serial = SERIAL.lock().await;
    let topic = create_topic("hugelen", 1);
    let proxy = Proxy::start(&brokers(), 1);
    let p = producer(&proxy, &[]);
    p.send(&Record::new(&topic, b"warm"))
        .await
        .unwrap()
        .await
        .unwrap();
    proxy.set_fault(1, Fault::HugeLength);
    let base = measure();
    let d = p.send(&Record::new(&topic, b"x")).await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(30), d)
        .await
        .expect("the record ends")
        .unwrap_err();
    let peak = peak_above(base);
    assert!(
        matches!(err, ProduceError::DeliveryTimeout { .. }),
        "{err:?}"
    );
    assert!(peak < 32 * MIB, "peak {} MiB", peak / MIB);
}

/// A Metadata answer that names partition 1,000,000,000 of a 3-partition topic: refused, not
/// allocated for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_partition_index_in_metadata_is_not_allocated_for() {
    let _serial = SERIAL.lock().await;
    let bad = create_topic("hugeindex", 3);
    let good = create_topic("fine", 3);
    let proxy = Proxy::start(&brokers(), 1);
    let name = bad.clone();
    proxy.set_metadata_hook(move |resp| {
        for t in &mut resp.topics {
            if t.name.as_ref().is_some_and(|n| n.0.as_str() == name) {
                let mut p = t.partitions[0].clone();
                p.partition_index = 1_000_000_000;
                t.partitions.push(p);
            }
        }
    });
    let p = producer(&proxy, &[("max.block.ms", "10000")]);
    let base = measure();
    let err = p.send(&Record::new(&bad, b"x")).await.unwrap_err();
    let peak = peak_above(base);
    assert!(err.to_string().contains("1000000000"), "{err}");
    assert!(peak < 32 * MIB, "peak {} MiB", peak / MIB);
    p.send(&Record::new(&good, b"fine"))
        .await
        .expect("other topics still work")
        .await
        .expect("delivered");
}

/// buffer.memory bounds what the batches hold, not only the record bytes: with 300 partitions
/// whose leader never answers, small keyed records fill 1 MiB of buffer and then block.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffer_memory_bounds_what_batches_allocate() {
    let _serial = SERIAL.lock().await;
    let topic = create_topic("wide", 300);
    let proxy = Proxy::start(&brokers(), 2);
    for part in 0..300 {
        proxy.set_leader(&topic, part, 2);
    }
    let p = producer(
        &proxy,
        &[
            ("buffer.memory", "1048576"),
            ("batch.size", "65536"),
            ("max.block.ms", "300"),
            ("linger.ms", "60000"),
            ("delivery.timeout.ms", "120000"),
            ("request.timeout.ms", "30000"),
        ],
    );
    p.send(&Record::new(&topic, b"warm").partition(0))
        .await
        .unwrap();
    proxy.set_fault(2, Fault::Blackhole);
    let base = measure();
    let mut accepted = 0usize;
    let err = loop {
        let key = format!("key-{accepted}");
        match p.send(&Record::new(&topic, b"v").key(key.as_bytes())).await {
            Ok(_) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted < 1_000_000);
    };
    let peak = peak_above(base);
    assert!(
        matches!(err, ProduceError::BufferExhausted { .. }),
        "{err:?}"
    );
    assert!(
        peak < 4 * MIB,
        "buffer.memory=1 MiB, peak {} MiB after {accepted} records",
        peak / MIB
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
}
