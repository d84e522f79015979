//! The heavy fault runs against nisshi, one at a time (they load the broker and both cores):
//! late answers to stored requests, 100,000 records through a storm of faults on three
//! virtual brokers ([`wafka_tests::Proxy`]), and a broker restarted three times. Every record
//! must have exactly one result, and what was delivered must be in the log exactly once, in
//! order per key.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wafka_producer::{Producer, Record};
use wafka_tests::check::{check_log_async, flush_within, keyed_value, Outcomes};
use wafka_tests::proxy::Action;
use wafka_tests::{brokers, create_topic, Fault, LocalBroker, Proxy};

const NOT_LEADER_OR_FOLLOWER: i16 = 6;

/// The tests here run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn producer(proxy: &Proxy, extra: &[(&str, &str)]) -> Producer {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let bootstrap = proxy.bootstrap();
    let mut props = vec![
        ("bootstrap.servers", bootstrap.as_str()),
        ("linger.ms", "5"),
        ("retry.backoff.ms", "50"),
        ("retry.backoff.max.ms", "300"),
        ("request.timeout.ms", "5000"),
        ("delivery.timeout.ms", "120000"),
        ("metadata.max.age.ms", "500"),
    ];
    props.extend_from_slice(extra);
    Producer::from_properties(props).expect("config")
}

/// Answers that come after request.timeout.ms, for requests the broker stored: the connection
/// is given up with several requests on it, the batches go again with their numbers, and the
/// broker recognises them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_answers_to_stored_requests_do_not_duplicate() {
    let _serial = SERIAL.lock().await;
    let topic = create_topic("late", 6);
    let proxy = Arc::new(Proxy::start(&brokers(), 3));
    let p = producer(&proxy, &[("request.timeout.ms", "800")]);
    let keys: Vec<String> = (0..12).map(|k| format!("key-{k}")).collect();
    let outcomes = Outcomes::default();
    let staller = {
        let proxy = proxy.clone();
        tokio::spawn(async move {
            for round in 0..4 {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let node = round % 3 + 1;
                proxy.set_fault(node, Fault::HoldAnswers);
                tokio::time::sleep(Duration::from_millis(1500)).await;
                proxy.set_fault(node, Fault::None);
            }
        })
    };
    for i in 0..300 {
        for k in &keys {
            let value = keyed_value(k, i);
            p.send_with_callback(
                &Record::new(&topic, value.as_bytes()).key(k.as_bytes()),
                outcomes.callback(value.clone()),
            )
            .await
            .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    staller.await.unwrap();
    flush_within(&p, Duration::from_secs(30)).await;
    assert_eq!(outcomes.delivered(), 12 * 300, "{:?}", outcomes.errors());
    assert!(p.stats().retries > 0, "requests timed out: {:?}", p.stats());
    check_log_async(&brokers(), &topic, &outcomes, &keys, 300, "").await;
}

/// 100,000 keyed records while brokers drop connections, stall, stop reading, lose answers after
/// storing, refuse requests, and leaders move: every record delivered exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_records_through_a_storm_of_faults() {
    let _serial = SERIAL.lock().await;
    let topic = create_topic("storm", 6);
    let proxy = Arc::new(Proxy::start(&brokers(), 3));
    let p = producer(
        &proxy,
        &[
            ("request.timeout.ms", "1500"),
            ("metadata.max.age.ms", "300"),
        ],
    );
    let keys: Vec<String> = (0..50).map(|k| format!("key-{k}")).collect();
    let per_key = 2000;
    let outcomes = Outcomes::default();
    let stop = Arc::new(AtomicBool::new(false));
    let storm = {
        let (proxy, topic, stop) = (proxy.clone(), topic.clone(), stop.clone());
        tokio::spawn(async move {
            let mut faults = 0;
            let mut round = 0i32;
            while faults < 14 || !stop.load(Ordering::Relaxed) {
                let node = round % 3 + 1;
                match round % 7 {
                    0 => proxy.drop_connections(node),
                    1 => proxy.set_fault(node, Fault::HoldAnswers),
                    2 => proxy.script_produce(node, [Action::DropAfter, Action::DropAfter]),
                    3 => proxy.set_fault(node, Fault::StopReading),
                    4 => proxy.script_produce(
                        node,
                        [Action::Fail(NOT_LEADER_OR_FOLLOWER), Action::DropBefore],
                    ),
                    5 => proxy.set_fault(node, Fault::Blackhole),
                    _ => {
                        for part in 0..6 {
                            proxy.set_leader(&topic, part, (part + round) % 3 + 1);
                        }
                    }
                }
                faults += 1;
                round += 1;
                tokio::time::sleep(Duration::from_millis(700)).await;
                proxy.set_fault(node, Fault::None);
                if matches!(round % 7, 4 | 6) {
                    proxy.drop_connections(node);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            faults
        })
    };
    for i in 0..per_key {
        for k in &keys {
            let value = keyed_value(k, i);
            p.send_with_callback(
                &Record::new(&topic, value.as_bytes()).key(k.as_bytes()),
                outcomes.callback(value.clone()),
            )
            .await
            .unwrap();
        }
        if i % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let faults = storm.await.unwrap();
    for node in 1..=3 {
        proxy.set_fault(node, Fault::None);
        proxy.clear_script(node);
    }
    flush_within(&p, Duration::from_secs(90)).await;
    assert!(faults >= 14, "{faults} faults");
    assert_eq!(
        outcomes.delivered(),
        keys.len() * per_key,
        "{:?}",
        outcomes.errors()
    );
    check_log_async(&brokers(), &topic, &outcomes, &keys, per_key, "").await;
}

/// The broker (sqlite storage) restarts three times while records flow: every record delivered
/// exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restarts_lose_and_double_nothing() {
    let _serial = SERIAL.lock().await;
    let mut broker = LocalBroker::start("sqlite");
    let topic = "restarts";
    wafka_tests::create_topic_named(&broker.addr, topic, 3);
    let proxy = Arc::new(Proxy::start(&broker.addr, 3));
    let p = producer(
        &proxy,
        &[
            ("request.timeout.ms", "2000"),
            ("metadata.max.age.ms", "300"),
        ],
    );
    let keys: Vec<String> = (0..20).map(|k| format!("key-{k}")).collect();
    let per_key = 1000;
    let outcomes = Outcomes::default();
    let restarter = {
        let proxy = proxy.clone();
        tokio::task::spawn_blocking(move || {
            for _ in 0..3 {
                std::thread::sleep(Duration::from_millis(800));
                let addr = broker.restart();
                proxy.set_upstream(&addr);
            }
            broker
        })
    };
    for i in 0..per_key {
        for k in &keys {
            let value = keyed_value(k, i);
            p.send_with_callback(
                &Record::new(topic, value.as_bytes()).key(k.as_bytes()),
                outcomes.callback(value.clone()),
            )
            .await
            .unwrap();
        }
        if i % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let broker = restarter.await.unwrap();
    flush_within(&p, Duration::from_secs(60)).await;
    assert_eq!(
        outcomes.delivered(),
        keys.len() * per_key,
        "{:?}",
        outcomes.errors()
    );
    check_log_async(&broker.addr, topic, &outcomes, &keys, per_key, "").await;
    drop(broker);
}
