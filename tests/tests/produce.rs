//! End to end against nisshi: wafka's producer writes, librdkafka's consumer reads back.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use wafka_producer::{Header, MemoryShare, OwnerOptions, ProduceError, Producer, Record};
use wafka_tests::{
    brokers, consume, consume_exactly, create_topic, librdkafka_partition, Consumed,
};

fn producer(extra: &[(&str, &str)]) -> Producer {
    let b = brokers();
    let mut props = vec![("bootstrap.servers", b.as_str())];
    props.extend_from_slice(extra);
    Producer::from_properties(props).expect("config")
}

async fn read(topic: &str, n: usize) -> Vec<Consumed> {
    let (b, t) = (brokers(), topic.to_string());
    tokio::task::spawn_blocking(move || consume_exactly(&b, &t, n, Duration::from_secs(30)))
        .await
        .unwrap()
}

struct Sent {
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    headers: Vec<(String, Option<Vec<u8>>)>,
    partition: i32,
    offset: i64,
}

/// Keys, null keys and headers over 6 partitions: everything comes back byte for byte, keyed
/// records where librdkafka's murmur2_random puts them, in send order within each partition,
/// at the offsets the delivery reports gave.
async fn round_trip(extra: &[(&str, &str)], n: usize) {
    let topic = create_topic("e2e", 6);
    let p = producer(extra);
    let mut pending = Vec::new();
    let mut sent = Vec::new();
    for i in 0..n {
        let key = (i % 3 != 0).then(|| format!("user-{}", i % 97).into_bytes());
        let value = format!("value {i} {}", "x".repeat(i % 300)).into_bytes();
        let trace = format!("t{i}");
        let headers_owned: Vec<(String, Option<Vec<u8>>)> = match i % 4 {
            0 => vec![],
            1 => vec![("trace".into(), Some(trace.into_bytes()))],
            2 => vec![("a".into(), Some(vec![0, 1, 2, 255])), ("nil".into(), None)],
            _ => vec![
                ("dup".into(), Some(b"1".to_vec())),
                ("dup".into(), Some(b"2".to_vec())),
            ],
        };
        let headers: Vec<Header<'_>> = headers_owned
            .iter()
            .map(|(k, v)| Header {
                key: k,
                value: v.as_deref(),
            })
            .collect();
        let mut record = Record::new(&topic, &value).headers(&headers);
        record.key = key.as_deref();
        pending.push(p.send(&record).await.expect("queued"));
        sent.push(Sent {
            key,
            value,
            headers: headers_owned,
            partition: -1,
            offset: -1,
        });
    }
    for (d, s) in pending.into_iter().zip(sent.iter_mut()) {
        let m = d.await.expect("delivered");
        assert_eq!(&*m.topic, topic.as_str());
        s.partition = m.partition;
        s.offset = m.offset;
    }
    p.close().await;

    let got = read(&topic, n).await;
    assert_eq!(got.len(), n, "records read back");
    let by_place: HashMap<(i32, i64), &Consumed> =
        got.iter().map(|c| ((c.partition, c.offset), c)).collect();
    let mut last_offset: HashMap<i32, i64> = HashMap::new();
    for (i, s) in sent.iter().enumerate() {
        let c = by_place
            .get(&(s.partition, s.offset))
            .unwrap_or_else(|| panic!("record {i} not at {}@{}", s.partition, s.offset));
        assert_eq!(
            c.value.as_deref(),
            Some(&s.value[..]),
            "value of record {i}"
        );
        assert_eq!(c.key, s.key, "key of record {i}");
        assert_eq!(c.headers, s.headers, "headers of record {i}");
        if let Some(k) = &s.key {
            assert_eq!(
                c.partition,
                librdkafka_partition(k, 6),
                "partition of key {:?}",
                String::from_utf8_lossy(k)
            );
        }
        // Send order is kept within each partition.
        if let Some(prev) = last_offset.insert(s.partition, s.offset) {
            assert!(
                s.offset > prev,
                "record {i} out of order in partition {}",
                s.partition
            );
        }
        assert!(
            c.timestamp.is_some_and(|t| t > 1_600_000_000_000),
            "create time set"
        );
    }
    // Null keys spread over partitions (sticky partitioning moves on after batch.size bytes).
    let null_key_partitions: std::collections::HashSet<i32> = sent
        .iter()
        .filter(|s| s.key.is_none())
        .map(|s| s.partition)
        .collect();
    if n >= 3000 {
        assert!(
            null_key_partitions.len() > 1,
            "sticky partitioning used more than one partition"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_null_keys_and_headers_round_trip() {
    // Java's batch.size, so that null keys move on to other partitions within 5,000 records
    // (they stay on one for batch.size bytes: a MB by default).
    round_trip(&[("batch.size", "16384")], 5000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_codec_is_readable_by_librdkafka() {
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        round_trip(&[("compression.type", codec)], 600).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_0_1_and_all() {
    for acks in ["0", "1", "all"] {
        let topic = create_topic("acks", 2);
        let p = producer(&[("acks", acks)]);
        let mut ds = Vec::new();
        for i in 0..300 {
            let v = format!("{acks}-{i}");
            ds.push(
                p.send(&Record::new(&topic, v.as_bytes()).partition(i % 2))
                    .await
                    .unwrap(),
            );
        }
        for d in ds {
            let m = d.await.expect("delivered");
            if acks == "0" {
                assert_eq!(m.offset, -1, "acks=0 has no offset");
            } else {
                assert!(m.offset >= 0);
            }
        }
        p.close().await;
        let got = read(&topic, 300).await;
        assert_eq!(got.len(), 300, "acks={acks}");
        let mut values: Vec<String> = got
            .iter()
            .map(|c| String::from_utf8(c.value.clone().unwrap()).unwrap())
            .collect();
        values.sort_by_key(|v| v.rsplit('-').next().unwrap().parse::<u32>().unwrap());
        let want: Vec<String> = (0..300).map(|i| format!("{acks}-{i}")).collect();
        assert_eq!(values, want);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_waits_for_every_record_sent_before_it() {
    let topic = create_topic("flush", 3);
    // A long linger: without flush nothing would leave for 30 s.
    let p = producer(&[("linger.ms", "30000"), ("batch.size", "1000000")]);
    let mut ds = Vec::new();
    for i in 0..1000 {
        ds.push(
            p.send(&Record::new(&topic, format!("r{i}").as_bytes()))
                .await
                .unwrap(),
        );
    }
    assert!(
        ds.iter().all(|d| d.try_result().is_none()),
        "nothing acknowledged before flush"
    );
    let t = Instant::now();
    p.flush().await;
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "flush sent at once instead of lingering"
    );
    assert!(
        ds.iter().all(|d| matches!(d.try_result(), Some(Ok(_)))),
        "every record acknowledged when flush returns"
    );
    // Readable right away, with no further wait.
    let (b, t2) = (brokers(), topic.clone());
    let got = tokio::task::spawn_blocking(move || consume(&b, &t2, 1000, Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(got.len(), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_flush_report_and_count_apart() {
    let topic = create_topic("owners", 3);
    let p = producer(&[("linger.ms", "30000")]);
    let a = p.owner(OwnerOptions {
        name: "a".into(),
        delivery_reports: true,
        ..Default::default()
    });
    let b = p.owner(OwnerOptions {
        name: "b".into(),
        ..Default::default()
    });
    for i in 0..50 {
        a.send(&Record::new(&topic, format!("a{i}").as_bytes()).key(b"same"))
            .await
            .unwrap();
        b.send(&Record::new(&topic, format!("b{i}").as_bytes()).key(b"same"))
            .await
            .unwrap();
    }
    assert!(a.buffered_bytes() > 0 && b.buffered_bytes() > 0);
    a.flush().await.expect("a's records delivered");
    assert_eq!(a.buffered_bytes(), 0, "a's memory released after its flush");
    let reports = a.take_reports(1000);
    assert_eq!(reports.len(), 50, "one report per record of a, none of b's");
    let ids: Vec<u64> = reports.iter().map(|r| r.id).collect();
    assert_eq!(ids, (0..50).collect::<Vec<u64>>());
    assert!(reports.iter().all(|r| r.result.is_ok()));
    b.flush().await.unwrap();
    assert_eq!(b.take_reports(10).len(), 0, "b did not ask for reports");
    p.close().await;
    let got = read(&topic, 100).await;
    assert_eq!(got.len(), 100);
    // Owners' records to one partition shared batches: a and b interleave in send order.
    let values: Vec<String> = got
        .iter()
        .map(|c| String::from_utf8(c.value.clone().unwrap()).unwrap())
        .collect();
    let want: Vec<String> = (0..50)
        .flat_map(|i| [format!("a{i}"), format!("b{i}")])
        .collect();
    assert_eq!(values, want);
    // Report offsets are where librdkafka found a's records.
    for r in reports {
        let c = got
            .iter()
            .find(|c| c.offset == r.result.clone().unwrap())
            .unwrap();
        assert_eq!(c.value.as_deref(), Some(format!("a{}", r.id).as_bytes()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_over_max_request_size_is_refused_and_nothing_else_lost() {
    let topic = create_topic("toolarge", 1);
    let p = producer(&[("max.request.size", "10000")]);
    let ok1 = p.send(&Record::new(&topic, b"before")).await.unwrap();
    let big = vec![b'x'; 20_000];
    let t = Instant::now();
    let err = p.send(&Record::new(&topic, &big)).await.unwrap_err();
    assert!(t.elapsed() < Duration::from_millis(100));
    assert!(
        matches!(err, ProduceError::RecordTooLarge { limit: 10000, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("max.request.size=10000"), "{err}");
    let ok2 = p.send(&Record::new(&topic, b"after")).await.unwrap();
    ok1.await.unwrap();
    ok2.await.unwrap();
    p.close().await;
    let got = read(&topic, 2).await;
    let values: Vec<_> = got.iter().map(|c| c.value.clone().unwrap()).collect();
    assert_eq!(values, vec![b"before".to_vec(), b"after".to_vec()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_topic_is_a_clear_error_in_bounded_time() {
    let p = producer(&[("max.block.ms", "5000")]);
    let t = Instant::now();
    let err = p
        .send(&Record::new("no-such-topic-wafka", b"x"))
        .await
        .unwrap_err();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(
        err,
        ProduceError::UnknownTopic("no-such-topic-wafka".into())
    );
    assert_eq!(
        err.to_string(),
        "topic `no-such-topic-wafka` does not exist on the cluster"
    );
    let err = p.send(&Record::new("bad topic!", b"x")).await.unwrap_err();
    assert!(matches!(err, ProduceError::InvalidTopic { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_to_a_missing_topic_fail_without_a_metadata_request_each() {
    let topic = format!("{}-later", create_topic("missing", 1));
    let p = producer(&[]);
    let before = p.stats().metadata_requests;
    for _ in 0..500 {
        let err = p.send(&Record::new(&topic, b"x")).await.unwrap_err();
        assert!(matches!(err, ProduceError::UnknownTopic(_)), "{err:?}");
    }
    let asked = p.stats().metadata_requests - before;
    assert!(
        asked < 100,
        "the cluster's answer is believed for retry.backoff.ms: {asked} requests for 500 sends"
    );
    // The answer expires: once the topic exists, sends reach it.
    let (b, t) = (brokers(), topic.clone());
    tokio::task::spawn_blocking(move || wafka_tests::create_topic_named(&b, &t, 1))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let delivery = loop {
        match p.send(&Record::new(&topic, b"found")).await {
            Ok(d) => break d,
            Err(ProduceError::UnknownTopic(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    delivery.await.unwrap();
    let got = read(&topic, 1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].value.as_deref(), Some(&b"found"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_is_a_clear_error_in_bounded_time() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let p = Producer::from_properties([
        ("bootstrap.servers", addr.as_str()),
        ("max.block.ms", "1500"),
    ])
    .unwrap();
    let t = Instant::now();
    let err = p.send(&Record::new("t", b"x")).await.unwrap_err();
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(4),
        "took {took:?}"
    );
    let msg = err.to_string();
    assert!(
        matches!(err, ProduceError::MetadataTimeout { .. }),
        "{err:?}"
    );
    assert!(
        msg.contains(&addr) && msg.contains("max.block.ms=1500"),
        "{msg}"
    );
}

/// Owners given one `MemoryShare` (a tenant's instances) count against it together: what
/// one holds, the other cannot take; an owner outside the share is not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_sharing_a_memory_quota_count_together() {
    let topic = create_topic("shared-quota", 1);
    // Batches of 1,000 B: each 900 B record opens one, which the share pays for.
    let p = producer(&[("linger.ms", "30000"), ("batch.size", "1000")]);
    let share = MemoryShare::new("tenant acme", 4_000);
    let owner = |name: &str, share: Option<MemoryShare>| {
        p.owner(OwnerOptions {
            name: name.into(),
            share,
            ..Default::default()
        })
    };
    let (a, b, other) = (
        owner("a", Some(share.clone())),
        owner("b", Some(share.clone())),
        owner("other", None),
    );
    let value = vec![b'x'; 900];
    let mut sent = 0;
    let refused = loop {
        let o = if sent % 2 == 0 { &a } else { &b };
        match o.send(&Record::new(&topic, &value)).await {
            Ok(_) => sent += 1,
            Err(e) => break e,
        }
        assert!(sent < 10, "the share did not stop them");
    };
    assert!(
        matches!(&refused, ProduceError::QuotaExceeded { owner, limit: 4_000 } if owner == "tenant acme"),
        "{refused}"
    );
    assert!(
        (3..=4).contains(&sent),
        "{sent} records of 900 B in 4,000 B"
    );
    assert!(share.buffered_bytes() <= 4_000 && share.buffered_bytes() > 2_700);
    assert!(
        a.buffered_bytes() > 0 && b.buffered_bytes() > 0,
        "both took part"
    );
    // An owner outside the share is not held back.
    for _ in 0..10 {
        other.send(&Record::new(&topic, &value)).await.unwrap();
    }
    p.flush().await;
    assert_eq!(share.buffered_bytes(), 0, "given back when delivered");
    a.send(&Record::new(&topic, &value)).await.unwrap();
    p.close().await;
    assert_eq!(read(&topic, sent + 11).await.len(), sent + 11);
}

/// The share is taken when a send is checked, not when its record lands in a batch: sends
/// that all wait (here for the topic's metadata) cannot pass the check together and then
/// overrun the share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_cannot_overrun_a_shared_quota() {
    let topic = create_topic("shared-race", 1);
    let p = producer(&[("linger.ms", "30000"), ("batch.size", "1000")]);
    let share = MemoryShare::new("tenant race", 4_000);
    let mut sends = Vec::new();
    for i in 0..40 {
        let o = p.owner(OwnerOptions {
            name: format!("o{i}"),
            share: Some(share.clone()),
            ..Default::default()
        });
        let topic = topic.clone();
        sends.push(tokio::spawn(async move {
            o.send(&Record::new(&topic, &[b'x'; 900])).await.map(|_| o)
        }));
    }
    let mut ok = Vec::new();
    for s in sends {
        if let Ok(o) = s.await.unwrap() {
            ok.push(o);
        }
    }
    assert!(
        (1..=4).contains(&ok.len()),
        "{} sends of 900 B went into a 4,000 B share",
        ok.len()
    );
    assert!(
        share.buffered_bytes() <= 4_000,
        "{}",
        share.buffered_bytes()
    );
    p.flush().await;
    assert_eq!(share.buffered_bytes(), 0);
    p.close().await;
    assert_eq!(read(&topic, ok.len()).await.len(), ok.len());
}

/// What a tenant's records pin of `buffer.memory` is what counts against its share: a new
/// batch's buffer (about a KiB for a small record, growing as records come; not `batch.size`),
/// so one tiny record to each of many partitions holds more of the buffer than its bytes, and
/// the share must see that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_a_shared_owner_opens_count_whole_against_its_share() {
    let topic = create_topic("shared-batches", 20);
    let p = producer(&[("linger.ms", "30000")]);
    assert_eq!(p.config().batch_size, 1_000_000);
    // Room for four batch buffers of a KiB and a little.
    let share = MemoryShare::new("tenant tiny", 4 * 1024 + 1000);
    let o = p.owner(OwnerOptions {
        name: "o".into(),
        share: Some(share.clone()),
        ..Default::default()
    });
    let mut sent = 0;
    for partition in 0..20 {
        match o
            .send(&Record::new(&topic, b"tiny").partition(partition))
            .await
        {
            Ok(_) => sent += 1,
            Err(ProduceError::QuotaExceeded { .. }) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(sent, 4, "batches of a KiB opened within a 5 KiB share");
    assert!(
        share.buffered_bytes() <= 4 * 1024 + 1000,
        "{}",
        share.buffered_bytes()
    );
    // A record into a batch already open costs only its bytes.
    o.send(&Record::new(&topic, b"more").partition(0))
        .await
        .expect("room in an open batch");
    p.flush().await;
    assert_eq!(share.buffered_bytes(), 0, "all given back");
    p.close().await;
    assert_eq!(read(&topic, sent + 1).await.len(), sent + 1);
}

/// `MemoryShare::least_limit` is what one record needs of a share: the largest record the
/// producer accepts fits in a share of that size (its bytes and a batch of its own), and a
/// byte less does not; a record within a smaller payload limit (its bytes spread over key,
/// value and 1,000 headers) fits in the least share for that limit, far below `batch.size`,
/// even into a partition whose open batch (another owner's, grown to 64 KiB) it cannot pay to
/// grow: that batch leaves as it is and the record opens its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_of_its_least_limit_takes_one_largest_record() {
    use wafka_producer::batch::single_record_batch_upper_bound;
    let topic = create_topic("least-share", 2);
    let p = producer(&[("linger.ms", "30000")]);
    let c = p.config();
    assert_eq!((c.max_request_size, c.batch_size), (1 << 20, 1_000_000));
    let least = MemoryShare::least_limit(c, None, 0);
    assert_eq!(least, 1 << 20);
    // The largest value whose record is exactly max.request.size in a batch of its own.
    let value = vec![b'x'; 1 << 20];
    let value = &value[..(0..value.len())
        .rev()
        .find(|&n| single_record_batch_upper_bound(&Record::new(&topic, &value[..n])) <= 1 << 20)
        .unwrap()];
    assert_eq!(
        single_record_batch_upper_bound(&Record::new(&topic, value)),
        1 << 20
    );
    let owner = |share: &MemoryShare| {
        p.owner(OwnerOptions {
            name: "o".into(),
            share: Some(share.clone()),
            ..Default::default()
        })
    };
    let short = MemoryShare::new("short", least - 1);
    let refused = owner(&short)
        .send(&Record::new(&topic, value).partition(0))
        .await
        .err();
    assert!(
        matches!(refused, Some(ProduceError::QuotaExceeded { .. })),
        "{refused:?}"
    );
    assert_eq!(short.buffered_bytes(), 0, "given back");
    let share = MemoryShare::new("least", least);
    owner(&share)
        .send(&Record::new(&topic, value).partition(0))
        .await
        .expect("room for one");
    // Partition 1: another owner's batch, grown to 64 KiB and nearly full: the record does
    // not fit, and growing it would cost 64 KiB more.
    for _ in 0..60 {
        p.send(&Record::new(&topic, &[b'o'; 1000]).partition(1))
            .await
            .unwrap();
    }
    // 20 kB spread over a key, a value and 1,000 headers.
    let bytes = vec![b'h'; 20];
    let headers: Vec<Header<'_>> = (0..1000)
        .map(|_| Header {
            key: "",
            value: Some(&bytes),
        })
        .collect();
    let spread = Record {
        headers: &headers,
        ..Record::new(&topic, &bytes[..10])
            .key(&bytes[..10])
            .partition(1)
    };
    assert_eq!(spread.payload_len(), 20_020);
    let limit = MemoryShare::least_limit(c, Some(20_020), 1000);
    assert!(limit < 32 << 10, "{limit}");
    let small = MemoryShare::new("small", limit);
    owner(&small)
        .send(&spread)
        .await
        .expect("room for the spread record");
    assert!(small.buffered_bytes() <= limit);
    p.flush().await;
    for s in [&share, &small] {
        assert_eq!(s.buffered_bytes(), 0);
    }
    p.close().await;
    assert_eq!(read(&topic, 62).await.len(), 62);
}
