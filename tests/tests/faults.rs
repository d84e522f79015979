//! Fault tests on librdkafka's mock cluster: injected Produce errors (retriable, sequence
//! errors, answers that come after `request.timeout.ms`, dropped connections), leader moves,
//! brokers down and slow, InitProducerId failures, and the producer's own bounds (callbacks
//! that panic, flushes that are cancelled, records at shutdown). Afterwards every record has
//! exactly one result, and what was delivered is in the log exactly once, in order per key.
//!
//! The mock checks idempotent sequences only for transactional producers, so faults here never
//! lose the answer to a request the mock stored (its retry would be stored twice by the mock
//! whatever the client does): slow answers and disconnects are injected as errors, which the
//! mock answers without storing. For the same reason the tests that inject errors into a
//! stream of batches keep one request in flight ([`ONE_IN_FLIGHT`]): with several batches of a
//! partition in flight, a broker refuses the ones behind a failed batch
//! (`OUT_OF_ORDER_SEQUENCE_NUMBER`), where the mock stores them, out of order. Exactly-once
//! against a broker that checks sequences, with several batches of a partition in flight,
//! answers lost after the broker stored the records, and connections dropped under requests
//! in flight, is in `cluster.rs` (nisshi).

use std::sync::Arc;
use std::time::{Duration, Instant};

use wafka_producer::{ProduceError, Producer, Record};
use wafka_tests::check::{check_log_async, flush_within, keyed_value, Outcome, Outcomes};
use wafka_tests::{consume_exactly, mock_cluster, MockKafka, RDKafkaApiKey, RDKafkaRespErr};

const PARTITIONS: i32 = 4;

/// For faults the mock cannot judge with several batches of a partition in flight (see the
/// module doc).
const ONE_IN_FLIGHT: (&str, &str) = ("max.in.flight.requests.per.connection", "1");
use RDKafkaRespErr::*;

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
        ("max.in.flight.requests.per.connection", "5"),
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

fn keys(n: usize) -> Vec<String> {
    (0..n).map(|k| format!("key-{k}")).collect()
}

/// Sends `per_key` records for each key, round robin, each with a callback into `outcomes`;
/// pauses 5 ms every `pause_every` rounds.
async fn send_all(
    p: &Producer,
    topic: &str,
    keys: &[String],
    per_key: usize,
    pause_every: usize,
    outcomes: &Outcomes,
) {
    for i in 0..per_key {
        for key in keys {
            let value = keyed_value(key, i);
            p.send_with_callback(
                &Record::new(topic, value.as_bytes()).key(key.as_bytes()),
                outcomes.callback(value.clone()),
            )
            .await
            .expect("queued");
        }
        if pause_every > 0 && i % pause_every == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_retriable_produce_errors_leave_each_record_once_in_order() {
    let topic = "faults-injected";
    let (mock, bootstrap) = cluster(topic, None);
    let p = producer(&bootstrap, &[ONE_IN_FLIGHT]);
    warm_up(&p, topic).await;
    // The disconnect first: nothing is in flight then, so no stored request loses its answer
    // (the mock would store its retry again).
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[
            RD_KAFKA_RESP_ERR__TRANSPORT,
            RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
            RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND,
            RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
        ],
    );
    let keys = keys(8);
    let outcomes = Outcomes::default();
    send_all(&p, topic, &keys, 200, 20, &outcomes).await;
    flush_within(&p, Duration::from_secs(30)).await;
    assert_eq!(outcomes.delivered(), 8 * 200, "{:?}", outcomes.errors());
    assert!(p.stats().retries > 0, "retried: {:?}", p.stats());
    check_log_async(&bootstrap, topic, &outcomes, &keys, 200, "warm").await;
}

/// Without idempotence (acks=1) the broker cannot keep a retry from being overtaken; the
/// producer does, with one batch per partition in flight and retries going back first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_idempotence_retries_still_keep_order() {
    let topic = "faults-no-idempotence";
    let (mock, bootstrap) = cluster(topic, None);
    let p = producer(
        &bootstrap,
        &[("acks", "1"), ("enable.idempotence", "false")],
    );
    warm_up(&p, topic).await;
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[
            RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
            RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
        ],
    );
    let keys = keys(8);
    let outcomes = Outcomes::default();
    send_all(&p, topic, &keys, 200, 20, &outcomes).await;
    flush_within(&p, Duration::from_secs(30)).await;
    assert_eq!(outcomes.delivered(), 8 * 200, "{:?}", outcomes.errors());
    assert!(p.stats().retries > 0);
    check_log_async(&bootstrap, topic, &outcomes, &keys, 200, "warm").await;
}

/// Waiting for metadata and waiting for memory share one max.block.ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_and_memory_share_one_max_block() {
    let topic = "faults-block";
    let (mock, bootstrap) = cluster(topic, Some(3));
    let p = producer(
        &bootstrap,
        &[
            ("buffer.memory", "20000"),
            ("batch.size", "4000"),
            ("max.block.ms", "6000"),
        ],
    );
    warm_up(&p, topic).await;
    mock.broker_down(3).unwrap();
    let value = vec![b'v'; 500];
    while p
        .send(&Record::new(topic, &value).partition(0))
        .await
        .is_ok()
    {}
    // Another topic, whose leaders come after 3 s: the send waits for them, then for memory,
    // 6 s in all (not 3 + 6).
    let other = "faults-block-other";
    mock.create_topic(other, PARTITIONS, 3).unwrap();
    mock.topic_error(other, RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE)
        .unwrap();
    let clearer = {
        let mock = mock.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(3000)).await;
            mock.topic_error(other, RD_KAFKA_RESP_ERR_NO_ERROR).unwrap();
        })
    };
    let t = Instant::now();
    let err = p
        .send(&Record::new(other, &value).partition(0))
        .await
        .unwrap_err();
    let waited = t.elapsed();
    clearer.await.unwrap();
    assert!(
        matches!(err, ProduceError::BufferExhausted { .. }),
        "{err:?}"
    );
    assert!(
        waited >= Duration::from_millis(5900) && waited < Duration::from_millis(8500),
        "waited {waited:?}"
    );
    mock.broker_up(3).unwrap();
}

/// OUT_OF_ORDER_SEQUENCE_NUMBER and UNKNOWN_PRODUCER_ID say the broker did not store the batch
/// and has lost track of the producer's sequence: the batch gets new numbers and goes again.
/// DUPLICATE_SEQUENCE_NUMBER says the broker stored it before: success, offset unknown (the
/// mock says so without having stored it, so those records are the ones missing from its log).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_sequence_errors_renumber_the_batches_the_broker_lost() {
    let topic = "faults-sequences";
    let (mock, bootstrap) = cluster(topic, Some(1));
    let p = producer(&bootstrap, &[ONE_IN_FLIGHT]);
    warm_up(&p, topic).await;
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[
            RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
            RD_KAFKA_RESP_ERR_UNKNOWN_PRODUCER_ID,
            RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
            RD_KAFKA_RESP_ERR_UNKNOWN_PRODUCER_ID,
        ],
    );
    let before = p.stats();
    let keys = keys(6);
    let outcomes = Outcomes::default();
    send_all(&p, topic, &keys, 150, 10, &outcomes).await;
    flush_within(&p, Duration::from_secs(30)).await;
    assert_eq!(outcomes.delivered(), 6 * 150, "{:?}", outcomes.errors());
    let after = p.stats();
    assert!(
        after.epoch_bumps + after.producer_ids > before.epoch_bumps + before.producer_ids,
        "the lost batches' partitions moved to a new epoch: {after:?}"
    );
    check_log_async(&bootstrap, topic, &outcomes, &keys, 150, "warm").await;

    // A duplicate: its records end as delivered with offset -1 and nothing more.
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RD_KAFKA_RESP_ERR_DUPLICATE_SEQUENCE_NUMBER],
    );
    let d = p
        .send(&Record::new(topic, b"dup:0").key(b"dup"))
        .await
        .unwrap();
    let m = d.await.expect("a duplicate is a success");
    assert_eq!(m.offset, -1, "the broker did not say where: {m:?}");
    let after = p
        .send(&Record::new(topic, b"dup:1").key(b"dup"))
        .await
        .unwrap()
        .await
        .expect("the next record goes on");
    assert!(after.offset >= 0);
}

/// Answers that come after request.timeout.ms: the connection is given up, the batches go again
/// with the same sequence numbers, and nothing is lost or doubled. On one partition, so that no
/// request waits behind a late answer on the same connection: the mock would store such a
/// request and, its answer lost with the connection, store its retry again (it does not check
/// sequences). Late answers to stored requests are tested against nisshi (`cluster.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_time_out_are_retried_without_loss() {
    let topic = "faults-timeouts";
    let (mock, bootstrap) = mock_cluster(3);
    mock.create_topic(topic, 1, 3).unwrap();
    mock.partition_leader(topic, 0, Some(2)).unwrap();
    let p = producer(&bootstrap, &[("request.timeout.ms", "2000"), ONE_IN_FLIGHT]);
    warm_up(&p, topic).await;
    let slow = (
        RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        Duration::from_secs(20),
    );
    mock.request_errors_delayed(2, RDKafkaApiKey::Produce, &[slow; 2])
        .unwrap();
    let connections = p.stats().connections;
    let keys = keys(4);
    let outcomes = Outcomes::default();
    send_all(&p, topic, &keys, 100, 10, &outcomes).await;
    flush_within(&p, Duration::from_secs(60)).await;
    assert_eq!(outcomes.delivered(), 4 * 100, "{:?}", outcomes.errors());
    assert!(
        p.stats().connections >= connections + 2,
        "each late answer closed the connection: {:?}",
        p.stats()
    );
    check_log_async(&bootstrap, topic, &outcomes, &keys, 100, "warm").await;
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
    let keys = keys(6);
    let outcomes = Outcomes::default();
    // A pause after every round of keys: sending (~1.5 s) spans all twelve moves (~0.7 s).
    send_all(&p, topic, &keys, 300, 1, &outcomes).await;
    flush_within(&p, Duration::from_secs(30)).await;
    mover.await.unwrap();
    assert_eq!(outcomes.delivered(), 6 * 300, "{:?}", outcomes.errors());
    assert!(p.stats().retries > 0, "leader moves: {:?}", p.stats());
    check_log_async(&bootstrap, topic, &outcomes, &keys, 300, "warm").await;
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
    let keys = keys(4);
    let outcomes = Outcomes::default();
    send_all(&p, topic, &keys, 100, 10, &outcomes).await;
    flush_within(&p, Duration::from_secs(30)).await;
    restorer.await.unwrap();
    assert_eq!(outcomes.delivered(), 4 * 100, "{:?}", outcomes.errors());
    check_log_async(&bootstrap, topic, &outcomes, &keys, 100, "warm").await;
}

/// Records for a broker that stays down longer than delivery.timeout.ms fail with a delivery
/// timeout in time; the other brokers' records are delivered meanwhile; flush returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_down_longer_than_delivery_timeout() {
    let topic = "faults-down-long";
    let (mock, bootstrap) = cluster(topic, None);
    for part in 0..PARTITIONS {
        mock.partition_leader(topic, part, Some(1 + part % 2))
            .unwrap();
    }
    let p = producer(
        &bootstrap,
        &[
            ("delivery.timeout.ms", "1500"),
            ("request.timeout.ms", "1000"),
        ],
    );
    warm_up(&p, topic).await;
    mock.broker_down(2).unwrap();
    let outcomes = Outcomes::default();
    let t = Instant::now();
    for i in 0..400usize {
        let part = (i % PARTITIONS as usize) as i32;
        let value = keyed_value(&format!("p{part}"), i / PARTITIONS as usize);
        p.send_with_callback(
            &Record::new(topic, value.as_bytes()).partition(part),
            outcomes.callback(value.clone()),
        )
        .await
        .unwrap();
    }
    let took = flush_within(&p, Duration::from_secs(20)).await;
    assert!(took < Duration::from_secs(15), "flush took {took:?}");
    outcomes.assert_no_doubles();
    for i in 0..400usize {
        let part = i % PARTITIONS as usize;
        let value = keyed_value(&format!("p{part}"), i / PARTITIONS as usize);
        match (part % 2, outcomes.outcome(&value)) {
            (0, Some(Outcome::Delivered(..))) => {}
            (1, Some(Outcome::Failed(ProduceError::DeliveryTimeout { .. }))) => {}
            (_, o) => panic!("{value} on partition {part}: {o:?}"),
        }
    }
    assert!(t.elapsed() >= Duration::from_millis(1400));
    mock.broker_up(2).unwrap();
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
        matches!(err, ProduceError::BufferExhausted { .. }),
        "{err:?}"
    );
    assert!(
        text.contains("buffer.memory") && text.contains("max.block.ms=700"),
        "{text}"
    );
    // Bounded: the refused send waited max.block.ms, not longer.
    let t = Instant::now();
    let again = p.send(&Record::new(topic, &value).partition(0)).await;
    assert!(again.is_err());
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(650) && waited < Duration::from_secs(7),
        "{waited:?}"
    );
    // What was queued before is delivered once the broker is back.
    mock.broker_up(3).unwrap();
    let n = queued.len();
    for d in queued {
        d.await.expect("queued record delivered");
    }
    let got = tokio::task::spawn_blocking(move || {
        consume_exactly(&bootstrap, topic, n + 1, Duration::from_secs(30))
    })
    .await
    .unwrap();
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
    let t = Instant::now();
    let d = p.send(&Record::new(topic, b"doomed")).await.unwrap();
    let err = d.await.unwrap_err();
    let took = t.elapsed();
    assert!(
        matches!(err, ProduceError::DeliveryTimeout { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("delivery.timeout.ms=1500"),
        "{err}"
    );
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(15),
        "{took:?}"
    );
    assert_eq!(p.stats().records_failed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_without_leaders_yet_is_waited_for_up_to_max_block_ms() {
    let topic = "faults-no-leader";
    let (mock, bootstrap) = cluster(topic, None);
    mock.topic_error(topic, RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE)
        .unwrap();
    let p = producer(&bootstrap, &[("max.block.ms", "10000")]);
    // The topic gets its leaders while the send waits: the send goes through.
    let clearer = {
        let mock = mock.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(700)).await;
            mock.topic_error(topic, RD_KAFKA_RESP_ERR_NO_ERROR).unwrap();
        })
    };
    let d = p
        .send(&Record::new(topic, b"waited").key(b"k"))
        .await
        .expect("queued once the topic has leaders");
    d.await.expect("delivered");
    clearer.await.unwrap();
    let got = tokio::task::spawn_blocking(move || {
        consume_exactly(&bootstrap, topic, 1, Duration::from_secs(30))
    })
    .await
    .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].value.as_deref(), Some(&b"waited"[..]));

    // Leaders that never come: the send fails after max.block.ms, naming the cluster's answer.
    let other = "faults-no-leader-ever";
    mock.create_topic(other, PARTITIONS, 3).unwrap();
    mock.topic_error(other, RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE)
        .unwrap();
    let p = producer(&mock.bootstrap_servers(), &[("max.block.ms", "3000")]);
    let t = Instant::now();
    let err = p.send(&Record::new(other, b"x")).await.unwrap_err();
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(2900) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    assert!(
        matches!(err, ProduceError::MetadataTimeout { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("LEADER_NOT_AVAILABLE"), "{err}");
}

/// While no producer id can be had, queued records still reach delivery.timeout.ms, so flush
/// returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_expire_while_init_producer_id_keeps_failing() {
    let topic = "faults-no-pid";
    let (mock, bootstrap) = cluster(topic, Some(1));
    mock.request_errors(
        RDKafkaApiKey::InitProducerId,
        &[RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE; 500],
    );
    let p = producer(
        &bootstrap,
        &[
            ("delivery.timeout.ms", "1500"),
            ("request.timeout.ms", "1000"),
            ("linger.ms", "0"),
        ],
    );
    let outcomes = Outcomes::default();
    for i in 0..10 {
        let value = keyed_value("k", i);
        p.send_with_callback(
            &Record::new(topic, value.as_bytes()).key(b"k"),
            outcomes.callback(value.clone()),
        )
        .await
        .unwrap();
    }
    let took = flush_within(&p, Duration::from_secs(20)).await;
    assert!(took < Duration::from_secs(15), "flush took {took:?}");
    outcomes.assert_no_doubles();
    let errors = outcomes.errors();
    assert_eq!(errors.values().sum::<usize>(), 10, "{errors:?}");
    assert!(
        errors
            .keys()
            .all(|e| e.contains("delivery.timeout.ms=1500") && e.contains("producer id")),
        "{errors:?}"
    );
}

/// A cluster that refuses InitProducerId to a producer that asked for idempotence explicitly:
/// one clear fatal error, and the producer stops asking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_producer_id_is_fatal_once_and_not_asked_for_again() {
    let topic = "faults-pid-refused";
    let (mock, bootstrap) = cluster(topic, Some(1));
    mock.start_request_tracking();
    mock.request_errors(
        RDKafkaApiKey::InitProducerId,
        &[RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED; 1000],
    );
    let p = producer(&bootstrap, &[("enable.idempotence", "true")]);
    let d = p.send(&Record::new(topic, b"x").key(b"k")).await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(10), d)
        .await
        .expect("the record ends")
        .unwrap_err();
    assert!(matches!(err, ProduceError::Fatal(_)), "{err:?}");
    assert!(
        err.to_string().contains("CLUSTER_AUTHORIZATION_FAILED"),
        "{err}"
    );
    let after = p.send(&Record::new(topic, b"y")).await.unwrap_err();
    assert_eq!(after, err, "later sends fail at once with the same error");
    let asked = mock.requests(RDKafkaApiKey::InitProducerId).len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let asked_later = mock.requests(RDKafkaApiKey::InitProducerId).len();
    assert!(asked <= 2, "asked {asked} times");
    assert_eq!(asked, asked_later, "kept asking after the fatal answer");
}

/// One broker answers every request after 8 s (its ApiVersions too); request.timeout.ms is 2 s.
/// Records without a key go to the other brokers, which the slow one must not hold back. With
/// `partitioner.availability.timeout.ms`, so does a broker that turns slow once connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_broker_does_not_hold_back_the_others() {
    for turns_slow_later in [false, true] {
        let topic = "faults-slow";
        let (mock, bootstrap) = cluster(topic, None);
        // Partitions 0 and 3 are led by broker 1, 1 by broker 2, 2 by broker 3.
        for part in 0..PARTITIONS {
            mock.partition_leader(topic, part, Some(1 + part % 3))
                .unwrap();
        }
        let slow = Duration::from_secs(30);
        if !turns_slow_later {
            mock.broker_round_trip_time(3, slow).unwrap();
        }
        let p = producer(
            &bootstrap,
            &[
                ("request.timeout.ms", "2000"),
                ("delivery.timeout.ms", "3000"),
                ("batch.size", "16384"),
                ("partitioner.availability.timeout.ms", "300"),
            ],
        );
        for part in 0..PARTITIONS {
            if !turns_slow_later && part == 2 {
                continue;
            }
            p.send(&Record::new(topic, b"warm:0").partition(part))
                .await
                .unwrap()
                .await
                .unwrap();
        }
        let t = Instant::now();
        if turns_slow_later {
            mock.broker_round_trip_time(3, slow).unwrap();
            // A request to it now: it counts as unavailable 300 ms later.
            drop(p.send(&Record::new(topic, b"warm:1").partition(2)).await);
        }
        let outcomes = Outcomes::default();
        let value = [b'x'; 100];
        // The first record sent once the slow broker has been silent for five times
        // partitioner.availability.timeout.ms: from then on nothing goes there.
        let mut settled_from = None;
        for i in 0..3000 {
            p.send_with_callback(
                &Record::new(topic, &value),
                outcomes.callback(i.to_string()),
            )
            .await
            .unwrap();
            if i % 100 == 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if settled_from.is_none() && t.elapsed() >= Duration::from_millis(1500) {
                settled_from = Some(i + 1);
            }
        }
        let sent = t.elapsed();
        flush_within(&p, Duration::from_secs(15)).await;
        let took = t.elapsed();
        let delivered = outcomes.delivered();
        if turns_slow_later {
            // Records chosen for the slow broker before it counted as unavailable expire.
            let from = settled_from.expect("sending took over 1500 ms");
            for i in from..3000 {
                assert!(
                    matches!(
                        outcomes.outcome(&i.to_string()),
                        Some(Outcome::Delivered(..))
                    ),
                    "record {i} (of the ones sent after {from}) went to the slow broker"
                );
            }
            assert!(took < Duration::from_secs(15), "took {took:?}");
        } else {
            assert!(
                delivered == 3000,
                "{delivered} of 3000 delivered: {:?}",
                outcomes.errors()
            );
            // Nothing waited for the slow broker (its records would fail after 3 s anyway).
            assert!(took < sent + Duration::from_secs(2), "took {took:?}");
        }
    }
}

/// A callback that panics costs its own record's report and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_callback_does_not_stall_the_producer() {
    let topic = "faults-panic";
    let (_mock, bootstrap) = cluster(topic, Some(1));
    let p = producer(&bootstrap, &[("linger.ms", "0")]);
    warm_up(&p, topic).await;
    for i in 0..8 {
        p.send_with_callback(
            &Record::new(topic, format!("boom:{i}").as_bytes()).partition(0),
            Box::new(|_| panic!("a caller's callback panics")),
        )
        .await
        .unwrap();
        // One request each.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A batch mixing callbacks that panic with ones that do not: the others all run.
    let outcomes = Outcomes::default();
    for i in 0..20 {
        let value = format!("mixed:{i}");
        let callback = if i % 2 == 0 {
            Box::new(|_| panic!("a caller's callback panics")) as wafka_producer::Callback
        } else {
            outcomes.callback(value.clone())
        };
        p.send_with_callback(&Record::new(topic, value.as_bytes()).partition(0), callback)
            .await
            .unwrap();
    }
    let t = Instant::now();
    let mut ds = Vec::new();
    for i in 0..20 {
        ds.push(
            p.send(&Record::new(topic, format!("after:{i}").as_bytes()).partition(0))
                .await
                .unwrap(),
        );
    }
    for d in ds {
        tokio::time::timeout(Duration::from_secs(15), d)
            .await
            .expect("delivered within 15 s")
            .expect("delivered");
    }
    assert!(t.elapsed() < Duration::from_secs(15));
    assert_eq!(outcomes.delivered(), 10, "{:?}", outcomes.errors());
    assert_eq!(p.stats().callback_panics, 18, "{:?}", p.stats());
}

/// A flush given up by its caller (a timeout around it) leaves linger.ms as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_flush_does_not_turn_linger_off() {
    let topic = "faults-cancel";
    let (mock, bootstrap) = cluster(topic, Some(1));
    let p = producer(&bootstrap, &[("linger.ms", "6000")]);
    warm_up(&p, topic).await;
    // A slow answer keeps the flush waiting while its caller gives up on it.
    mock.broker_round_trip_time(1, Duration::from_millis(300))
        .unwrap();
    let first = p.send(&Record::new(topic, b"first")).await.unwrap();
    let _ = tokio::time::timeout(Duration::from_millis(50), p.flush()).await;
    first.await.unwrap();
    mock.broker_round_trip_time(1, Duration::ZERO).unwrap();
    let t = Instant::now();
    let second = p.send(&Record::new(topic, b"second")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        second.try_result().is_none(),
        "sent before its linger.ms (6000 ms) after {:?}",
        t.elapsed()
    );
    second.await.unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(5900),
        "{:?}",
        t.elapsed()
    );
}

/// A record whose request is on the wire when the last producer handle goes away ends with
/// `Closed` at once, not never.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_in_flight_when_the_producer_goes_away_ends_closed() {
    let topic = "faults-gone";
    let (mock, bootstrap) = cluster(topic, Some(1));
    let p = producer(&bootstrap, &[("linger.ms", "0")]);
    warm_up(&p, topic).await;
    mock.broker_round_trip_time(1, Duration::from_secs(20))
        .unwrap();
    mock.start_request_tracking();
    let d = p.send(&Record::new(topic, b"late")).await.unwrap();
    // Wait until the request is on the wire (the mock received it).
    let t = Instant::now();
    while mock.requests(RDKafkaApiKey::Produce).is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the request was never sent"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(p);
    let err = tokio::time::timeout(Duration::from_secs(3), d)
        .await
        .expect("the record ends")
        .unwrap_err();
    assert_eq!(err, ProduceError::Closed);
}

/// A send waiting for buffer memory when the producer fails for good (the cluster refuses a
/// producer id to a producer that asked for idempotence) or closes is refused, or its record
/// ends; it does not slip into a queue that nobody sends any more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_waiting_for_memory_when_the_producer_stops_is_refused() {
    for fatal in [true, false] {
        let topic = "faults-blocked";
        let (mock, bootstrap) = cluster(topic, Some(2));
        let p = producer(
            &bootstrap,
            &[
                ("buffer.memory", "20000"),
                ("batch.size", "4000"),
                ("max.block.ms", "20000"),
                ("delivery.timeout.ms", "2000"),
                ("request.timeout.ms", "1000"),
                ("enable.idempotence", "true"),
            ],
        );
        if fatal {
            // Retriable refusals while the buffer fills (a final one comes later).
            mock.request_errors(
                RDKafkaApiKey::InitProducerId,
                &[RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE; 1000],
            );
        } else {
            warm_up(&p, topic).await;
            mock.broker_down(2).unwrap();
        }
        let value = vec![b'v'; 500];
        let mut queued = Vec::new();
        // Fill the buffer.
        loop {
            match tokio::time::timeout(
                Duration::from_millis(200),
                p.send(&Record::new(topic, &value).partition(0)),
            )
            .await
            {
                Ok(Ok(d)) => queued.push(d),
                Ok(Err(e)) => panic!("{e}"),
                Err(_) => break,
            }
        }
        let blocked = {
            let p = p.clone();
            let value = value.clone();
            tokio::spawn(async move { p.send(&Record::new(topic, &value).partition(0)).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        if fatal {
            mock.clear_request_errors(RDKafkaApiKey::InitProducerId);
            mock.request_errors(
                RDKafkaApiKey::InitProducerId,
                &[RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED; 100],
            );
        } else {
            tokio::time::timeout(Duration::from_secs(10), p.close())
                .await
                .expect("close returns");
        }
        let sent = tokio::time::timeout(Duration::from_secs(5), blocked)
            .await
            .expect("the waiting send returns")
            .unwrap();
        match sent {
            Err(_) => {}
            Ok(d) => {
                let r = tokio::time::timeout(Duration::from_secs(5), d)
                    .await
                    .expect("a record accepted while stopping still ends");
                assert!(r.is_err(), "{r:?}");
            }
        }
        for d in queued {
            let r = tokio::time::timeout(Duration::from_secs(5), d)
                .await
                .expect("every queued record ends");
            assert!(r.is_err());
        }
    }
}

/// When retries run out, the error names the broker's last answer, by its Kafka name and code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_that_run_out_name_the_kafka_error() {
    let topic = "faults-retries";
    let (mock, bootstrap) = cluster(topic, Some(1));
    let p = producer(&bootstrap, &[("retries", "1"), ("linger.ms", "0")]);
    warm_up(&p, topic).await;
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 2],
    );
    let err = p
        .send(&Record::new(topic, b"x"))
        .await
        .unwrap()
        .await
        .unwrap_err();
    match &err {
        ProduceError::Broker { name, code, .. } => {
            assert_eq!((name.as_str(), *code), ("NOT_ENOUGH_REPLICAS", 19), "{err}");
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("retries=1"), "{err}");
}
