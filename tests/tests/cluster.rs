//! Faults against a broker that checks idempotent sequences (nisshi), through
//! [`wafka_tests::Proxy`]: one real broker shown to the producer as three virtual brokers that
//! can stall, stop reading, lose answers after storing, answer with errors or with garbage.
//! Records are read back from nisshi itself with librdkafka; every record must have exactly one
//! result, and what was delivered must be in the log exactly once, in order per key.

use std::time::{Duration, Instant};

use wafka_producer::{OwnerOptions, ProduceError, Producer, Record};
use wafka_tests::check::{check_log_async, flush_within, keyed_value, Outcome, Outcomes};
use wafka_tests::proxy::Action;
use wafka_tests::{brokers, create_topic, librdkafka_partition, Fault, Proxy};

const NOT_ENOUGH_REPLICAS: i16 = 19;
const INVALID_RECORD: i16 = 87;
const MESSAGE_TOO_LARGE: i16 = 10;
const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const UNKNOWN_PRODUCER_ID: i16 = 59;

/// Sends one record to each of `partitions` partitions and waits for them: every sink connected.
async fn warm_partitions(p: &Producer, topic: &str, partitions: i32) {
    for part in 0..partitions {
        send_to(p, topic, part, "warm", &Outcomes::default()).await;
    }
    flush_within(p, Duration::from_secs(10)).await;
}

/// Sends `n` records of 100 B without a key and returns the partitions they were stored in.
async fn send_keyless(p: &Producer, topic: &str, n: usize) -> std::collections::BTreeSet<i32> {
    let mut deliveries = Vec::new();
    for _ in 0..n {
        deliveries.push(
            p.send(&Record::new(topic, &[b'v'; 100]))
                .await
                .expect("queued"),
        );
    }
    let mut used = std::collections::BTreeSet::new();
    for d in deliveries {
        used.insert(d.await.expect("delivered").partition);
    }
    used
}

/// A key long enough that each record fills a batch of `batch.size=1000` by itself.
fn batch_filling_key() -> String {
    format!("k{}", "x".repeat(880))
}

/// A topic of one partition (led by broker 1), a proxy and a producer whose records fill a
/// batch each (`batch.size=1000`, `linger.ms=0`), warmed up; with its stats before the test.
async fn one_partition_behind_a_proxy(
    prefix: &str,
) -> (String, Proxy, Producer, wafka_producer::ProducerStats) {
    let topic = create_topic(prefix, 1);
    let proxy = Proxy::start(&brokers(), 3);
    let p = producer(&proxy, &[("batch.size", "1000"), ("linger.ms", "0")]);
    send_to(&p, &topic, 0, "warm:0", &Outcomes::default()).await;
    flush_within(&p, Duration::from_secs(10)).await;
    let before = p.stats();
    (topic, proxy, p, before)
}

/// Sends `n` records of `key` to partition 0 while broker 1 holds its answers, so that the
/// producer has as many batches of the partition in flight as it may; returns the Produce
/// requests broker 1 received meanwhile.
async fn send_with_answers_held(
    p: &Producer,
    proxy: &Proxy,
    topic: &str,
    key: &str,
    n: usize,
    outcomes: &Outcomes,
) -> u64 {
    let before = proxy.produce_requests(1);
    proxy.set_fault(1, Fault::HoldAnswers);
    for i in 0..n {
        send_to(p, topic, 0, &keyed_value(key, i), outcomes).await;
    }
    let waited = Instant::now();
    while proxy.produce_requests(1) - before < 5 && waited.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Nothing more may go out while five are in flight.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = proxy.produce_requests(1) - before;
    proxy.set_fault(1, Fault::None);
    sent
}

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

fn producer(proxy: &Proxy, extra: &[(&str, &str)]) -> Producer {
    init_logs();
    let bootstrap = proxy.bootstrap();
    let mut props = vec![
        ("bootstrap.servers", bootstrap.as_str()),
        ("linger.ms", "5"),
        ("retry.backoff.ms", "50"),
        ("retry.backoff.max.ms", "300"),
        ("request.timeout.ms", "5000"),
        ("delivery.timeout.ms", "60000"),
        ("metadata.max.age.ms", "500"),
    ];
    props.extend_from_slice(extra);
    Producer::from_properties(props).expect("config")
}

/// Sends `value` to `partition` with a callback into `outcomes`.
async fn send_to(p: &Producer, topic: &str, partition: i32, value: &str, outcomes: &Outcomes) {
    p.send_with_callback(
        &Record::new(topic, value.as_bytes()).partition(partition),
        outcomes.callback(value.to_string()),
    )
    .await
    .expect("queued");
}

// Partition `p` of a topic is led by virtual broker `p % 3 + 1` unless a test moves it.

/// A broker that accepts connections and never answers (not even ApiVersions) holds up only
/// its own partitions: the others' records are delivered at once, its records fail after
/// delivery.timeout.ms, and flush returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_never_answers_does_not_stall_the_others() {
    let topic = create_topic("silent", 6);
    let proxy = Proxy::start(&brokers(), 3);
    proxy.set_fault(3, Fault::Blackhole);
    let p = producer(
        &proxy,
        &[
            ("request.timeout.ms", "8000"),
            ("delivery.timeout.ms", "10000"),
        ],
    );
    // Partitions 0, 1, 3, 4 are led by the healthy brokers: connected and warm first.
    for part in [0, 1, 3, 4] {
        p.send(&Record::new(&topic, b"warm").partition(part))
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let outcomes = Outcomes::default();
    let keys: Vec<String> = (0..6).map(|p| format!("p{p}")).collect();
    for i in 0..100 {
        for part in 0..6 {
            send_to(
                &p,
                &topic,
                part,
                &keyed_value(&keys[part as usize], i),
                &outcomes,
            )
            .await;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let t = Instant::now();
    let healthy = |i: usize| ![2, 5].contains(&(i % 6));
    loop {
        let done = (0..600).filter(|&i| healthy(i)).all(|i| {
            let v = keyed_value(&keys[i % 6], i / 6);
            matches!(outcomes.outcome(&v), Some(Outcome::Delivered(..)))
        });
        if done {
            break;
        }
        // The silent broker's request.timeout.ms is 8 s: well before it, or it stalled them.
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "healthy partitions not delivered within 5 s: {} delivered, {:?}",
            outcomes.delivered(),
            outcomes.errors()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    flush_within(&p, Duration::from_secs(30)).await;
    assert!(t.elapsed() < Duration::from_secs(25), "{:?}", t.elapsed());
    assert_eq!(outcomes.delivered(), 400, "{:?}", outcomes.errors());
    for (e, _) in outcomes.errors() {
        assert!(e.contains("delivery.timeout.ms=10000"), "{e}");
    }
    check_log_async(&brokers(), &topic, &outcomes, &keys, 100, "warm").await;
}

/// A broker that stops reading: the producer's writes to it back up once the socket buffers are
/// full (it leads ten partitions of 900 KB records: several requests of up to 2 MB). Its
/// requests time out, the connection is closed, the other brokers keep flowing, and flush and
/// close return.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_stops_reading_does_not_block_the_others() {
    let topic = create_topic("deaf", 12);
    let proxy = Proxy::start(&brokers(), 3);
    // Partitions 0 and 1 are led by brokers 1 and 2, partitions 2..12 by broker 3.
    proxy.set_leader(&topic, 0, 1);
    proxy.set_leader(&topic, 1, 2);
    for part in 2..12 {
        proxy.set_leader(&topic, part, 3);
    }
    let p = producer(
        &proxy,
        &[
            ("request.timeout.ms", "3000"),
            ("delivery.timeout.ms", "4000"),
            ("max.request.size", "2000000"),
            ("batch.size", "1000000"),
            ("buffer.memory", "64000000"),
        ],
    );
    for part in 0..12 {
        p.send(&Record::new(&topic, b"warm").partition(part))
            .await
            .unwrap()
            .await
            .unwrap();
    }
    proxy.set_fault(3, Fault::StopReading);
    let big = vec![b'x'; 900_000];
    let t = Instant::now();
    for i in 0..40 {
        p.send(&Record::new(&topic, &big).partition(2 + i % 10))
            .await
            .expect("queued");
    }
    let outcomes = Outcomes::default();
    let keys = ["p0".to_string(), "p1".to_string()];
    for i in 0..50 {
        for part in 0..2 {
            send_to(
                &p,
                &topic,
                part,
                &keyed_value(&keys[part as usize], i),
                &outcomes,
            )
            .await;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        outcomes.wait_for(100, Duration::from_secs(5)).await,
        "healthy partitions stalled: {} of 100 delivered after {:?}",
        outcomes.delivered(),
        t.elapsed()
    );
    flush_within(&p, Duration::from_secs(30)).await;
    tokio::time::timeout(Duration::from_secs(20), p.close())
        .await
        .expect("close returns");
    assert!(t.elapsed() < Duration::from_secs(25), "{:?}", t.elapsed());
    assert_eq!(outcomes.delivered(), 100, "{:?}", outcomes.errors());
    outcomes.assert_no_doubles();
}

/// While a silent broker holds records queued for its partition, the partition's leadership
/// moves to a healthy broker: the records follow it, well before request.timeout.ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_follow_their_partition_off_a_silent_broker() {
    let topic = create_topic("moved", 3);
    let proxy = Proxy::start(&brokers(), 3);
    proxy.set_fault(3, Fault::Blackhole);
    let p = producer(
        &proxy,
        &[
            ("request.timeout.ms", "30000"),
            ("delivery.timeout.ms", "60000"),
        ],
    );
    let outcomes = Outcomes::default();
    let keys = vec!["p2".to_string()];
    for i in 0..50 {
        send_to(&p, &topic, 2, &keyed_value(&keys[0], i), &outcomes).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = Instant::now();
    proxy.set_leader(&topic, 2, 1);
    assert!(
        outcomes.wait_for(50, Duration::from_secs(10)).await,
        "{} delivered 10 s after the move",
        outcomes.delivered()
    );
    assert_eq!(outcomes.delivered(), 50, "{:?}", outcomes.errors());
    assert!(t.elapsed() < Duration::from_secs(10));
    check_log_async(&brokers(), &topic, &outcomes, &keys, 50, "warm").await;
}

/// A batch that was numbered and then dropped (it expired while its broker could not be
/// reached, or the broker refused it for good) leaves a gap in the partition's sequence
/// numbers; the producer moves the partition to a new epoch (here: a new producer id, since
/// nisshi does not take client-side epoch bumps) so the records after it are delivered, on a
/// healthy cluster, at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_numbered_batch_does_not_fail_the_records_after_it() {
    for expired in [true, false] {
        let topic = create_topic("gap", 1);
        let proxy = Proxy::start(&brokers(), 3);
        let p = producer(
            &proxy,
            &[
                ("request.timeout.ms", "3000"),
                ("delivery.timeout.ms", "4000"),
                ("retry.backoff.ms", "100"),
                ("retry.backoff.max.ms", "100"),
                ("reconnect.backoff.max.ms", "100"),
                ("linger.ms", "0"),
            ],
        );
        let before = Outcomes::default();
        send_to(&p, &topic, 0, "warm:0", &before).await;
        flush_within(&p, Duration::from_secs(10)).await;
        if expired {
            // NOT_LEADER_OR_FOLLOWER, and the partition has no leader until the record expires.
            proxy.script_produce(1, [Action::Fail(NOT_LEADER_OR_FOLLOWER)]);
            proxy.set_leader(&topic, 0, -1);
            send_to(&p, &topic, 0, "dropped:0", &before).await;
        } else {
            // One retriable error, then a final one.
            proxy.script_produce(
                1,
                [
                    Action::Fail(NOT_ENOUGH_REPLICAS),
                    Action::Fail(INVALID_RECORD),
                ],
            );
            send_to(&p, &topic, 0, "dropped:0", &before).await;
        }
        assert!(before.wait_for(2, Duration::from_secs(5)).await);
        assert!(
            matches!(before.outcome("dropped:0"), Some(Outcome::Failed(_))),
            "{:?}",
            before.outcome("dropped:0")
        );
        proxy.set_leader(&topic, 0, 1);
        proxy.clear_script(1);
        // The leader is back in the next metadata answers.
        let asked = p.stats().metadata_requests;
        let wait = Instant::now();
        while p.stats().metadata_requests < asked + 2 {
            assert!(
                wait.elapsed() < Duration::from_secs(20),
                "no metadata refresh"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let outcomes = Outcomes::default();
        let t = Instant::now();
        for i in 0..50 {
            send_to(&p, &topic, 0, &keyed_value("k", i), &outcomes).await;
        }
        flush_within(&p, Duration::from_secs(10)).await;
        assert_eq!(
            outcomes.delivered(),
            50,
            "expired={expired}: {:?}",
            outcomes.errors()
        );
        // Before the fix they waited for their own delivery.timeout.ms and failed.
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        // "dropped:0" never reached the broker: the log holds warm:0 and k:0..49 only.
        check_log_async(
            &brokers(),
            &topic,
            &outcomes,
            &["k".to_string()],
            50,
            "warm",
        )
        .await;
    }
}

/// One partition's batch is answered UNKNOWN_PRODUCER_ID (the broker lost the producer) while
/// another partition's batch was stored but its answer was lost. The first is renumbered; the
/// second must go again with its old numbers, so the broker recognises it as a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_keeps_the_numbers_of_batches_the_broker_may_have_stored() {
    let topic = create_topic("keep", 2);
    let proxy = Proxy::start(&brokers(), 3);
    let p = producer(
        &proxy,
        &[
            ("retry.backoff.ms", "400"),
            ("retry.backoff.max.ms", "400"),
            ("linger.ms", "0"),
        ],
    );
    let warm = Outcomes::default();
    send_to(&p, &topic, 0, "warm:0", &warm).await;
    send_to(&p, &topic, 1, "warm:1", &warm).await;
    flush_within(&p, Duration::from_secs(10)).await;
    let outcomes = Outcomes::default();
    // Partition 0 is led by broker 1, partition 1 by broker 2.
    proxy.script_produce(2, [Action::DropAfter]);
    proxy.script_produce(1, [Action::Fail(UNKNOWN_PRODUCER_ID)]);
    let keys = vec!["a".to_string(), "b".to_string()];
    send_to(&p, &topic, 1, &keyed_value("b", 0), &outcomes).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    send_to(&p, &topic, 0, &keyed_value("a", 0), &outcomes).await;
    for i in 1..20 {
        send_to(&p, &topic, 0, &keyed_value("a", i), &outcomes).await;
        send_to(&p, &topic, 1, &keyed_value("b", i), &outcomes).await;
    }
    flush_within(&p, Duration::from_secs(20)).await;
    assert_eq!(proxy.script_left(1) + proxy.script_left(2), 0);
    assert_eq!(outcomes.delivered(), 40, "{:?}", outcomes.errors());
    check_log_async(&brokers(), &topic, &outcomes, &keys, 20, "warm").await;
}

/// Five batches of one partition in flight (`max.in.flight.requests.per.connection=5`): the
/// first is answered with a retriable error while the four behind it reach the broker, which
/// refuses them as out of order (a sequence is missing). All five go again in order with
/// their numbers: no new epoch, each record once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_with_four_batches_in_flight_behind_it_keeps_order_and_numbers() {
    let (topic, proxy, p, before) = one_partition_behind_a_proxy("inflight-retry").await;
    proxy.script_produce(1, [Action::Fail(NOT_ENOUGH_REPLICAS)]);
    let key = batch_filling_key();
    let outcomes = Outcomes::default();
    let sent = send_with_answers_held(&p, &proxy, &topic, &key, 20, &outcomes).await;
    assert_eq!(sent, 5, "five batches of the partition in flight at once");
    flush_within(&p, Duration::from_secs(20)).await;
    assert_eq!(proxy.script_left(1), 0);
    assert_eq!(outcomes.delivered(), 20, "{:?}", outcomes.errors());
    let after = p.stats();
    assert!(after.retries - before.retries >= 5, "{after:?}");
    assert_eq!(
        after.epoch_bumps, before.epoch_bumps,
        "no new epoch: {after:?}"
    );
    assert_eq!(after.producer_ids, before.producer_ids, "{after:?}");
    check_log_async(&brokers(), &topic, &outcomes, &[key], 20, "warm").await;
}

/// KIP-360 with several batches in flight: the first is answered UNKNOWN_PRODUCER_ID (the
/// broker lost the producer) while four follow it under the same epoch. The partition moves
/// to a new epoch and all five go again, renumbered in order: each record once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_producer_with_batches_in_flight_renumbers_them_in_order() {
    let (topic, proxy, p, before) = one_partition_behind_a_proxy("inflight-kip360").await;
    proxy.script_produce(1, [Action::Fail(UNKNOWN_PRODUCER_ID)]);
    let key = batch_filling_key();
    let outcomes = Outcomes::default();
    let sent = send_with_answers_held(&p, &proxy, &topic, &key, 20, &outcomes).await;
    assert_eq!(sent, 5);
    flush_within(&p, Duration::from_secs(20)).await;
    assert_eq!(outcomes.delivered(), 20, "{:?}", outcomes.errors());
    let after = p.stats();
    assert_eq!(
        after.epoch_bumps - before.epoch_bumps,
        1,
        "one new epoch for the partition: {after:?}"
    );
    check_log_async(&brokers(), &topic, &outcomes, &[key], 20, "warm").await;
}

/// With five batches of a partition in flight, the second one's answer is lost after the
/// broker stored it (the connection drops; the three behind it were never read). All four go
/// again with their numbers: the broker answers the stored one as a duplicate, stores the
/// others: each record once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_in_the_middle_of_five_in_flight_is_not_stored_twice() {
    let (topic, proxy, p, before) = one_partition_behind_a_proxy("inflight-dup").await;
    proxy.script_produce(1, [Action::Forward, Action::DropAfter]);
    let key = batch_filling_key();
    let outcomes = Outcomes::default();
    send_with_answers_held(&p, &proxy, &topic, &key, 20, &outcomes).await;
    flush_within(&p, Duration::from_secs(20)).await;
    assert_eq!(proxy.script_left(1), 0);
    assert_eq!(outcomes.delivered(), 20, "{:?}", outcomes.errors());
    let after = p.stats();
    assert_eq!(after.epoch_bumps, before.epoch_bumps, "{after:?}");
    assert!(after.connections > before.connections, "{after:?}");
    check_log_async(&brokers(), &topic, &outcomes, &[key], 20, "warm").await;
}

/// KIP-219: a broker may ask the client to hold back (`throttle_time_ms`). One answer asking
/// for i32::MAX ms (24.8 days) is held to `request.timeout.ms`: records sent after it are
/// delivered within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttle_of_days_is_held_to_request_timeout() {
    let topic = create_topic("throttle-max", 1);
    let proxy = Proxy::start(&brokers(), 3);
    let p = producer(&proxy, &[("request.timeout.ms", "2000")]);
    send_to(&p, &topic, 0, "warm:0", &Outcomes::default()).await;
    flush_within(&p, Duration::from_secs(10)).await;
    proxy.set_produce_throttle(1, Some(i32::MAX));
    send_to(&p, &topic, 0, "warm:1", &Outcomes::default()).await;
    flush_within(&p, Duration::from_secs(10)).await;
    proxy.set_produce_throttle(1, None);
    let outcomes = Outcomes::default();
    let keys = vec!["k".to_string()];
    for i in 0..10 {
        send_to(&p, &topic, 0, &keyed_value("k", i), &outcomes).await;
    }
    // request.timeout.ms (2 s) at most, and a margin for a busy machine.
    let took = flush_within(&p, Duration::from_secs(20)).await;
    assert!(
        took >= Duration::from_millis(1500),
        "the throttle was honoured: {took:?}"
    );
    assert_eq!(outcomes.delivered(), 10, "{:?}", outcomes.errors());
    check_log_async(&brokers(), &topic, &outcomes, &keys, 10, "warm").await;
}

/// A broker that throttles us takes no new records without a key while it does: they go to
/// the other brokers' partitions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_without_a_key_avoid_a_throttled_broker() {
    let topic = create_topic("throttle-keyless", 6);
    let proxy = Proxy::start(&brokers(), 3);
    let p = producer(&proxy, &[("batch.size", "1000"), ("linger.ms", "0")]);
    warm_partitions(&p, &topic, 6).await;
    // Broker 1 (partitions 0 and 3) asks for 4 s of quiet.
    proxy.set_produce_throttle(1, Some(4000));
    send_to(&p, &topic, 0, "warm", &Outcomes::default()).await;
    flush_within(&p, Duration::from_secs(10)).await;
    proxy.set_produce_throttle(1, None);
    let started = Instant::now();
    let used = send_keyless(&p, &topic, 300).await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "sent while throttled"
    );
    assert!(
        !used.contains(&0) && !used.contains(&3),
        "keyless records went to the throttled broker: {used:?}"
    );
    assert!(used.len() >= 2, "{used:?}");
}

/// Before Produce v6 the broker delays a throttled answer itself (KIP-219): the client must
/// not wait again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_v5_answers_are_not_throttled_again() {
    let topic = create_topic("throttle-v5", 1);
    let proxy = Proxy::start(&brokers(), 3);
    proxy.set_produce_max_version(Some(5));
    let p = producer(&proxy, &[("linger.ms", "0")]);
    p.send(&Record::new(&topic, b"warm").partition(0))
        .await
        .unwrap()
        .await
        .unwrap();
    proxy.set_produce_throttle(1, Some(3000));
    let started = Instant::now();
    for i in 0..5 {
        p.send(&Record::new(&topic, format!("v5:{i}").as_bytes()).partition(0))
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "waited for throttles: {took:?}"
    );
}

/// A broker closing idle connections (`connections.max.idle.ms`) does not make it unavailable:
/// after every connection was dropped while idle and one broker reconnected for a record,
/// records without a key still spread over the brokers instead of going to that one for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_closed_by_brokers_leave_them_available() {
    let topic = create_topic("idle-close", 6);
    let proxy = Proxy::start(&brokers(), 3);
    let p = producer(&proxy, &[("batch.size", "1000"), ("linger.ms", "0")]);
    warm_partitions(&p, &topic, 6).await;
    for node in 1..=3 {
        proxy.drop_connections(node);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A first record without a key: its broker connects again, the others have no reason to.
    send_keyless(&p, &topic, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before: Vec<u64> = (1..=3).map(|n| proxy.produce_requests(n)).collect();
    send_keyless(&p, &topic, 3000).await;
    let received: Vec<u64> = (1..=3)
        .map(|n| proxy.produce_requests(n) - before[n as usize - 1])
        .collect();
    assert!(
        received.iter().filter(|&&r| r > 0).count() >= 2,
        "produce requests per broker after the idle close: {received:?}"
    );
}

/// Connections drop while several requests wait for their answers, several batches of each
/// partition among them, all stored by the broker: every batch goes again with its numbers,
/// the broker answers the stored ones as duplicates, and each record is in the log once, in
/// order. Three times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_drop_with_stored_requests_in_flight() {
    let keys: Vec<String> = (0..8).map(|k| format!("key-{k}")).collect();
    drops_with_requests_in_flight(
        "inflight-drops",
        &[("batch.size", "2000"), ("linger.ms", "2")],
        &keys,
        50,
    )
    .await;
}

/// The same with batches large enough to be compressed beside the sink (zstd, 128 KiB of
/// 330-byte records): what a sink had put together but not written when the connections
/// dropped goes back in order, whether still compressing or sealed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_batches_keep_order_and_numbers_through_drops() {
    let keys: Vec<String> = (0..6)
        .map(|k| format!("key-{k}-{}", "x".repeat(320)))
        .collect();
    drops_with_requests_in_flight(
        "inflight-zstd",
        &[
            ("compression.type", "zstd"),
            ("batch.size", "131072"),
            ("linger.ms", "20"),
        ],
        &keys,
        400,
    )
    .await;
}

/// Three rounds of: hold every broker's answers, send `per_round` records per key, let the
/// requests reach the broker, drop every connection. Then every record is delivered once and
/// in the log once, in order per key.
async fn drops_with_requests_in_flight(
    prefix: &str,
    extra: &[(&str, &str)],
    keys: &[String],
    per_round: usize,
) {
    let topic = create_topic(prefix, 3);
    let proxy = Proxy::start(&brokers(), 3);
    let p = producer(&proxy, extra);
    warm_partitions(&p, &topic, 3).await;
    let before = p.stats();
    let outcomes = Outcomes::default();
    for round in 0..3 {
        let sent_before: u64 = (1..=3).map(|n| proxy.produce_requests(n)).sum();
        for node in 1..=3 {
            proxy.set_fault(node, Fault::HoldAnswers);
        }
        for i in round * per_round..(round + 1) * per_round {
            for k in keys {
                let value = keyed_value(k, i);
                p.send_with_callback(
                    &Record::new(&topic, value.as_bytes()).key(k.as_bytes()),
                    outcomes.callback(value.clone()),
                )
                .await
                .unwrap();
            }
        }
        // Let the requests reach the broker (stored, answers held), then cut every connection.
        let waited = Instant::now();
        while (1..=3).map(|n| proxy.produce_requests(n)).sum::<u64>() - sent_before < 9
            && waited.elapsed() < Duration::from_secs(5)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        for node in 1..=3 {
            proxy.drop_connections(node);
            proxy.set_fault(node, Fault::None);
        }
    }
    flush_within(&p, Duration::from_secs(30)).await;
    let per_key = 3 * per_round;
    assert_eq!(
        outcomes.delivered(),
        keys.len() * per_key,
        "{:?}",
        outcomes.errors()
    );
    let after = p.stats();
    assert!(
        after.connections >= before.connections + 3 && after.retries >= before.retries + 3,
        "three rounds of drops, each with requests waiting: {after:?}"
    );
    check_log_async(&brokers(), &topic, &outcomes, keys, per_key, "warm").await;
}

/// Answers lost after the broker stored the records: the retries carry the same numbers and the
/// broker recognises them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_lost_after_storing_do_not_duplicate() {
    let topic = create_topic("lost", 3);
    let proxy = Proxy::start(&brokers(), 3);
    let p = producer(&proxy, &[]);
    for node in 1..=3 {
        proxy.script_produce(
            node,
            [Action::DropAfter, Action::DropBefore, Action::DropAfter],
        );
    }
    let keys: Vec<String> = (0..9).map(|k| format!("key-{k}")).collect();
    let outcomes = Outcomes::default();
    for i in 0..200 {
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
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    flush_within(&p, Duration::from_secs(30)).await;
    for node in 1..=3 {
        assert_eq!(
            proxy.script_left(node),
            0,
            "every drop happened (broker {node})"
        );
    }
    assert_eq!(outcomes.delivered(), 9 * 200, "{:?}", outcomes.errors());
    check_log_async(&brokers(), &topic, &outcomes, &keys, 200, "warm").await;
}

/// MESSAGE_TOO_LARGE for a batch of many records: the batch is split and every record goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_the_broker_finds_too_large_is_split() {
    let topic = create_topic("split", 1);
    let proxy = Proxy::start(&brokers(), 3);
    let p = producer(&proxy, &[("linger.ms", "10000"), ("batch.size", "100000")]);
    send_to(&p, &topic, 0, "warm:0", &Outcomes::default()).await;
    flush_within(&p, Duration::from_secs(10)).await;
    let outcomes = Outcomes::default();
    proxy.script_produce(
        1,
        [
            Action::Fail(MESSAGE_TOO_LARGE),
            Action::Fail(MESSAGE_TOO_LARGE),
        ],
    );
    let keys = vec!["k".to_string()];
    for i in 0..100 {
        send_to(&p, &topic, 0, &keyed_value("k", i), &outcomes).await;
    }
    flush_within(&p, Duration::from_secs(10)).await;
    assert_eq!(proxy.script_left(1), 0, "the broker was asked");
    assert_eq!(outcomes.delivered(), 100, "{:?}", outcomes.errors());
    assert!(p.stats().splits >= 1, "{:?}", p.stats());
    check_log_async(&brokers(), &topic, &outcomes, &keys, 100, "warm").await;

    // A single record the broker finds too large fails with the broker's error.
    proxy.script_produce(1, [Action::Fail(MESSAGE_TOO_LARGE)]);
    let err = p
        .send(&Record::new(&topic, b"alone").partition(0))
        .await
        .unwrap()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProduceError::Broker { code: 10, name, .. } if name == "MESSAGE_TOO_LARGE"),
        "{err:?}"
    );
}

/// Records without a key go only to partitions that have a leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_without_a_key_avoid_partitions_without_a_leader() {
    let topic = create_topic("leaderless", 6);
    let proxy = Proxy::start(&brokers(), 3);
    for part in [1, 3, 5] {
        proxy.set_leader(&topic, part, -1);
    }
    let p = producer(
        &proxy,
        &[("batch.size", "1000"), ("delivery.timeout.ms", "6000")],
    );
    let outcomes = Outcomes::default();
    let value = [b'v'; 100];
    for i in 0..2000 {
        p.send_with_callback(
            &Record::new(&topic, &value),
            outcomes.callback(i.to_string()),
        )
        .await
        .unwrap();
    }
    flush_within(&p, Duration::from_secs(15)).await;
    assert_eq!(outcomes.delivered(), 2000, "{:?}", outcomes.errors());
    outcomes.assert_no_doubles();
    for i in 0..2000 {
        match outcomes.outcome(&i.to_string()) {
            Some(Outcome::Delivered(part, _)) => assert!(part % 2 == 0, "{i} on {part}"),
            o => panic!("{i}: {o:?}"),
        }
    }
}

/// Partitions added to a topic are used once metadata shows them: keys hash over the new count,
/// as in the Java client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_added_to_a_topic_are_used() {
    let topic = create_topic("grown", 4);
    let proxy = Proxy::start(&brokers(), 3);
    let hidden = topic.clone();
    proxy.set_metadata_hook(move |resp| {
        for t in &mut resp.topics {
            if t.name.as_ref().is_some_and(|n| n.0.as_str() == hidden) {
                t.partitions.retain(|p| p.partition_index < 2);
            }
        }
    });
    let p = producer(&proxy, &[("metadata.max.age.ms", "300")]);
    let keys: Vec<String> = (0..40).map(|k| format!("key-{k}")).collect();
    for k in &keys {
        let m = p
            .send(&Record::new(&topic, b"before").key(k.as_bytes()))
            .await
            .unwrap()
            .await
            .unwrap();
        assert_eq!(m.partition, librdkafka_partition(k.as_bytes(), 2), "{k}");
    }
    proxy.clear_metadata_hook();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for k in &keys {
        let m = p
            .send(&Record::new(&topic, b"after").key(k.as_bytes()))
            .await
            .unwrap()
            .await
            .unwrap();
        assert_eq!(
            m.partition,
            librdkafka_partition(k.as_bytes(), 4),
            "{k} after the topic grew"
        );
    }
}

/// A broker's Metadata answer with a negative partition index, or one far past the others: the
/// producer stays up, says what is wrong, and keeps serving other topics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nonsense_partition_indexes_in_metadata_are_refused() {
    let bad = create_topic("nonsense", 3);
    let good = create_topic("sane", 3);
    let proxy = Proxy::start(&brokers(), 3);
    let name = bad.clone();
    proxy.set_metadata_hook(move |resp| {
        for t in &mut resp.topics {
            if t.name.as_ref().is_some_and(|n| n.0.as_str() == name) {
                t.partitions[0].partition_index = -1;
            }
        }
    });
    let p = producer(&proxy, &[("max.block.ms", "10000")]);
    let err = p.send(&Record::new(&bad, b"x")).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ProduceError::BadMetadata { .. }), "{err:?}");
    assert!(text.contains(&bad) && text.contains("index -1"), "{text}");
    p.send(&Record::new(&good, b"fine"))
        .await
        .expect("other topics still work")
        .await
        .expect("delivered");
}

/// Hostile answers to Produce requests (garbage, a length prefix of hundreds of MiB with no
/// bytes after it): the connection is dropped with a clear error, the records fail in time,
/// other brokers keep flowing, and flush returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_answers_cost_only_their_own_records() {
    let topic = create_topic("hostile", 3);
    let proxy = Proxy::start(&brokers(), 3);
    let p = producer(
        &proxy,
        &[
            ("request.timeout.ms", "1000"),
            ("delivery.timeout.ms", "2000"),
        ],
    );
    let outcomes = Outcomes::default();
    for part in 0..3 {
        send_to(&p, &topic, part, &format!("warm:{part}"), &outcomes).await;
    }
    flush_within(&p, Duration::from_secs(10)).await;
    proxy.set_fault(2, Fault::Garbage);
    proxy.set_fault(3, Fault::HugeLength);
    let keys: Vec<String> = (0..3).map(|p| format!("p{p}")).collect();
    for i in 0..30 {
        for part in 0..3 {
            send_to(
                &p,
                &topic,
                part,
                &keyed_value(&keys[part as usize], i),
                &outcomes,
            )
            .await;
        }
    }
    let took = flush_within(&p, Duration::from_secs(20)).await;
    assert!(took < Duration::from_secs(15), "{took:?}");
    outcomes.assert_no_doubles();
    for i in 0..30 {
        for (part, key) in keys.iter().enumerate() {
            let o = outcomes.outcome(&keyed_value(key, i));
            match (part, &o) {
                (0, Some(Outcome::Delivered(..))) => {}
                (1 | 2, Some(Outcome::Failed(ProduceError::DeliveryTimeout { cause, .. }))) => {
                    assert!(
                        cause.contains(&proxy.addr(part as i32 + 1)),
                        "the error names the broker: {cause}"
                    );
                }
                _ => panic!("partition {part} record {i}: {o:?}"),
            }
        }
    }
}

/// Topics that turned out not to exist leave the metadata requests once their answer is old;
/// topics not used for metadata.max.idle.ms leave them too, and come back when used again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_requests_forget_missing_and_idle_topics() {
    let topic = create_topic("idle", 1);
    let proxy = Proxy::start(&brokers(), 3);
    let p = producer(&proxy, &[("metadata.max.age.ms", "200")]);
    for i in 0..50 {
        let missing = format!("{topic}-missing-{i}");
        let err = p.send(&Record::new(&missing, b"x")).await.unwrap_err();
        assert!(matches!(err, ProduceError::UnknownTopic(_)), "{err:?}");
    }
    p.send(&Record::new(&topic, b"used"))
        .await
        .unwrap()
        .await
        .unwrap();
    let asked = p.stats().metadata_requests;
    let t = Instant::now();
    while p.stats().metadata_requests < asked + 3 {
        assert!(t.elapsed() < Duration::from_secs(20), "no metadata refresh");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        proxy.last_metadata_topics(),
        Some(1),
        "only the topic in use is asked for"
    );
    drop(p);

    let p = producer(
        &proxy,
        &[
            ("metadata.max.age.ms", "200"),
            ("metadata.max.idle.ms", "5000"),
        ],
    );
    p.send(&Record::new(&topic, b"used"))
        .await
        .unwrap()
        .await
        .unwrap();
    let t = Instant::now();
    while proxy.last_metadata_topics() != Some(0) {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the idle topic is still asked for: {:?}",
            proxy.last_metadata_topics()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        t.elapsed() >= Duration::from_secs(4),
        "forgotten before it was idle"
    );
    // Used again: asked for again, and its records are stored, not taken for repeats of the
    // ones sent before it idled out (same producer id, same partition).
    let again = p
        .send(&Record::new(&topic, b"again"))
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(again.offset >= 0, "{again:?}");
    let (b, t2) = (brokers(), topic.clone());
    let log = tokio::task::spawn_blocking(move || {
        wafka_tests::consume_all(&b, &t2, Duration::from_secs(60))
    })
    .await
    .unwrap();
    let values: Vec<_> = log.iter().map(|r| r.value.clone().unwrap()).collect();
    assert_eq!(
        values,
        vec![b"used".to_vec(), b"used".to_vec(), b"again".to_vec()]
    );
}

/// One owner's flush sends that owner's lingering batches at once, and only those; nor does it
/// wait for another owner's records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owners_flush_sends_only_its_own_batches() {
    let topic = create_topic("ownflush", 3);
    let proxy = Proxy::start(&brokers(), 3);
    let p = producer(&proxy, &[("linger.ms", "6000")]);
    // Connections and the producer id first.
    for part in 0..2 {
        p.send(&Record::new(&topic, b"warm").partition(part))
            .await
            .unwrap();
    }
    p.flush().await;
    let a = p.owner(OwnerOptions {
        name: "a".into(),
        ..Default::default()
    });
    let b = p.owner(OwnerOptions {
        name: "b".into(),
        ..Default::default()
    });
    let c = p.owner(OwnerOptions {
        name: "c".into(),
        ..Default::default()
    });
    // c's partition is led by a broker that never answers.
    proxy.set_fault(3, Fault::Blackhole);
    let mut bs = Vec::new();
    let t = Instant::now();
    for i in 0..10 {
        a.send(&Record::new(&topic, format!("a{i}").as_bytes()).partition(0))
            .await
            .unwrap();
        bs.push(
            b.send(&Record::new(&topic, format!("b{i}").as_bytes()).partition(1))
                .await
                .unwrap(),
        );
        c.send(&Record::new(&topic, format!("c{i}").as_bytes()).partition(2))
            .await
            .unwrap();
    }
    tokio::time::timeout(Duration::from_secs(3), a.flush())
        .await
        .expect("a's flush waits neither for linger.ms nor for c's silent broker")
        .expect("a's records delivered");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        bs.iter().all(|d| d.try_result().is_none()),
        "b's records must still linger after a's flush"
    );
    for d in bs {
        d.await.expect("b's records go after linger.ms");
    }
    assert!(
        t.elapsed() >= Duration::from_millis(5500),
        "{:?}",
        t.elapsed()
    );
}

/// The first bootstrap server accepts connections and never answers: metadata and the
/// producer id come from another broker after `socket.connection.setup.timeout.ms`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_bootstrap_server_is_passed_over() {
    let topic = create_topic("passover", 3);
    let proxy = Proxy::start(&brokers(), 3);
    proxy.set_fault(1, Fault::Blackhole);
    for part in 0..3 {
        proxy.set_leader(&topic, part, 2);
    }
    let p = producer(&proxy, &[("socket.connection.setup.timeout.ms", "700")]);
    let t = Instant::now();
    p.send(&Record::new(&topic, b"found"))
        .await
        .expect("metadata from another broker")
        .await
        .expect("delivered");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

/// Connections that break under a sink with work queued (the broker closes them when a Produce
/// request arrives): the sink backs off, reconnects and delivers; it does not spin on its
/// batches while its link is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_break_under_load_are_reconnected() {
    let topic = create_topic("breaks", 4);
    let proxy = Proxy::start(&brokers(), 1);
    let p = producer(
        &proxy,
        &[
            ("max.request.size", "20000"),
            ("batch.size", "16000"),
            ("linger.ms", "0"),
            ("reconnect.backoff.ms", "20"),
        ],
    );
    p.send(&Record::new(&topic, b"warm"))
        .await
        .unwrap()
        .await
        .unwrap();
    proxy.script_produce(1, [Action::DropBefore; 20]);
    let outcomes = Outcomes::default();
    let value = [b'x'; 300];
    for i in 0..3000 {
        let key = format!("k{i}");
        p.send_with_callback(
            &Record::new(&topic, &value).key(key.as_bytes()),
            outcomes.callback(key.clone()),
        )
        .await
        .unwrap();
        if i % 100 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    flush_within(&p, Duration::from_secs(30)).await;
    assert_eq!(outcomes.delivered(), 3000, "{:?}", outcomes.errors());
    assert_eq!(proxy.script_left(1), 0);
    assert!(p.stats().connections >= 10, "{:?}", p.stats());
}

/// A Produce request never exceeds max.request.size, whatever the batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_stay_within_max_request_size() {
    let topic = create_topic("reqsize", 40);
    let proxy = Proxy::start(&brokers(), 1);
    let p = producer(
        &proxy,
        &[
            ("max.request.size", "50000"),
            ("batch.size", "16000"),
            ("linger.ms", "50"),
        ],
    );
    let outcomes = Outcomes::default();
    let value = [b'x'; 300];
    for i in 0..4000 {
        let key = format!("k{i}");
        p.send_with_callback(
            &Record::new(&topic, &value).key(key.as_bytes()),
            outcomes.callback(key.clone()),
        )
        .await
        .unwrap();
    }
    flush_within(&p, Duration::from_secs(20)).await;
    assert_eq!(outcomes.delivered(), 4000, "{:?}", outcomes.errors());
    let stats = p.stats();
    assert!(
        stats.produce_requests < stats.batches_acked,
        "several batches per request: {stats:?}"
    );
    let largest = proxy.largest_produce_request(1);
    assert!(largest <= 50_000, "largest request {largest} bytes");
}

/// flush and close with a bound return within it, whatever the brokers do; close then ends
/// what is still pending with `Closed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_and_close_keep_their_bounds() {
    let topic = create_topic("bounded", 3);
    let proxy = Proxy::start(&brokers(), 3);
    let p = producer(&proxy, &[]);
    let outcomes = Outcomes::default();
    for part in 0..3 {
        send_to(&p, &topic, part, &format!("warm:{part}"), &outcomes).await;
    }
    flush_within(&p, Duration::from_secs(10)).await;
    proxy.set_fault(3, Fault::Blackhole);
    let stuck = p
        .send(&Record::new(&topic, b"stuck").partition(2))
        .await
        .unwrap();
    p.send(&Record::new(&topic, b"fine").partition(0))
        .await
        .unwrap()
        .await
        .expect("the healthy record was delivered");
    let t = Instant::now();
    let err = p
        .flush_timeout(Duration::from_millis(500))
        .await
        .unwrap_err();
    let waited = t.elapsed();
    assert!(
        matches!(err, ProduceError::FlushTimeout { pending: 1, .. }),
        "{err:?}"
    );
    assert!(
        waited >= Duration::from_millis(450) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    let t = Instant::now();
    let err = p
        .close_timeout(Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(matches!(err, ProduceError::FlushTimeout { .. }), "{err:?}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let r = tokio::time::timeout(Duration::from_secs(5), stuck)
        .await
        .expect("the stuck record ends when the producer closes");
    assert_eq!(r.unwrap_err(), ProduceError::Closed);
    let after = p.send(&Record::new(&topic, b"late")).await.unwrap_err();
    assert_eq!(after, ProduceError::Closed);
    outcomes.assert_no_doubles();
}
