//! Nothing a broker sends aborts or bloats the producer (issue 18, items 5 and 6).
//!
//! - Counts and lengths on the wire: a fake broker answers ApiVersions, Metadata,
//!   InitProducerId or Produce with an array or string that announces far more than follows,
//!   at a non-flexible and a flexible version. Each case runs in a child process (an
//!   allocation failure aborts: the child dies, not the run), twice at once: the hostile
//!   broker alone (the record ends with a protocol error naming it, within a bound), and
//!   beside a good broker (the good broker's partition gets its record; the hostile one's
//!   partition fails naming it, or gets it when only a control answer was hostile).
//! - The decoders themselves, in process: each hostile answer body decodes to an error.
//! - Frames nobody asked for: after an answer, a fake broker pushes 20 frames of 90 MB on the
//!   control link or a sink's connection. The producer closes that link at the first frame's
//!   length and goes on with a new connection; the child's peak RSS stays small.
//!
//! Every allocation over 1 GiB fails in this binary (`support::Capped`), as it would on a
//! host with a memory limit.

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiVersionsResponse, InitProducerIdResponse, MetadataResponse, ProduceResponse,
};
use kafka_protocol::protocol::Decodable;
use kafka_protocol::records::RecordBatchDecoder;
use support::broker::{hostile_body, Behaviour, FakeBroker, Flood, Hostile, Request};
use support::{is_child, observe, run_child};
use wafka_producer::{Producer, Record};

#[global_allocator]
static ALLOCATOR: support::Capped = support::Capped;

const TOPIC: &str = "t";

/// The most a child may have resident at its peak in the flood cases: the producer holds at
/// most a few MB of them; 20 frames of 90 MB parked would be 1.8 GB.
const MAX_PEAK_RSS: u64 = 300_000_000;

/// The longest a record may take to end: it fails at `max.block.ms` or `delivery.timeout.ms`
/// (1 s each), so 10 s is ten times what is expected.
const BOUND: Duration = Duration::from_secs(10);

/// How long a child may run before the parent kills it.
const CHILD_LIMIT: Duration = Duration::from_secs(40);

fn producer(bootstrap: &str, extra: &[(&str, &str)]) -> Producer {
    let mut props = vec![
        ("bootstrap.servers", bootstrap),
        ("socket.connection.setup.timeout.ms", "500"),
        ("request.timeout.ms", "500"),
        ("max.block.ms", "1000"),
        ("delivery.timeout.ms", "1000"),
        ("linger.ms", "0"),
        ("retry.backoff.ms", "50"),
        ("retry.backoff.max.ms", "200"),
        ("reconnect.backoff.ms", "50"),
        ("reconnect.backoff.max.ms", "200"),
    ];
    props.extend_from_slice(extra);
    Producer::from_properties(props).expect("config")
}

/// Sends one record to `topic`/`partition` and waits for its end: how long it took, and
/// `delivered at <offset>` or `error: <text>`.
async fn deliver(p: &Producer, topic: &str, partition: i32) -> (u128, String) {
    let started = Instant::now();
    let ended = tokio::time::timeout(BOUND * 2, async {
        let delivery = p
            .send(&Record::new(topic, b"v").partition(partition))
            .await?;
        delivery.await
    })
    .await;
    let text = match ended {
        Err(_) => "hung".to_string(),
        Ok(Ok(meta)) => format!("delivered at {}", meta.offset),
        Ok(Err(e)) => format!("error: {e}"),
    };
    (started.elapsed().as_millis(), text)
}

/// Child side of a hostile-answer case: the hostile broker alone, and beside a good one,
/// at the same time.
async fn hostile_child(api: Request, how: Hostile) {
    let mut alone = FakeBroker::bind().await;
    alone.serve(Behaviour {
        node: 1,
        brokers: vec![(1, alone.addr())],
        leaders: vec![1],
        hostile: Some((api, how)),
        flood: None,
    });
    let mut hostile = FakeBroker::bind().await;
    let mut good = FakeBroker::bind().await;
    // Partition 0 is the good broker's, partition 1 the hostile one's.
    let brokers = vec![(1, hostile.addr()), (2, good.addr())];
    hostile.serve(Behaviour {
        node: 1,
        brokers: brokers.clone(),
        leaders: vec![2, 1],
        hostile: Some((api, how)),
        flood: None,
    });
    good.serve(Behaviour {
        node: 2,
        brokers,
        leaders: vec![2, 1],
        hostile: None,
        flood: None,
    });
    observe("alone addr", alone.addr());
    observe("hostile addr", hostile.addr());
    let alone_run = async {
        let p = producer(&alone.addr(), &[]);
        let (ms, result) = deliver(&p, TOPIC, 0).await;
        observe("alone ms", ms);
        observe("alone", result);
        let _ = p.close_timeout(Duration::from_millis(200)).await;
    };
    // The hostile broker first: the control links try it before the good one.
    let beside_run = async {
        let p = producer(&format!("{},{}", hostile.addr(), good.addr()), &[]);
        let ((ms0, good_p), (ms1, hostile_p)) =
            tokio::join!(deliver(&p, TOPIC, 0), deliver(&p, TOPIC, 1));
        observe("beside good ms", ms0);
        observe("beside good", good_p);
        observe("beside hostile ms", ms1);
        observe("beside hostile", hostile_p);
        let _ = p.close_timeout(Duration::from_millis(200)).await;
    };
    tokio::join!(alone_run, beside_run);
    observe("alone asked", alone.stats.asked(api));
    observe("hostile asked", hostile.stats.asked(api));
    observe("good records", good.stats.records.load(Ordering::Relaxed));
}

/// Parent side: the child lived, and saw what it should.
fn hostile_case(name: &str, api: Request, how: Hostile) {
    if is_child() {
        return support::runtime().block_on(hostile_child(api, how));
    }
    let child = run_child(name, CHILD_LIMIT);
    child.assert_success();
    let key = format!("cannot decode answer to API key {}", api.key());
    let names = |broker: &str, text: &str| {
        assert!(
            text.starts_with("error: ") && text.contains(&format!("protocol error with {broker}")),
            "not a protocol error naming {broker}: {text}"
        );
        assert!(text.contains(&key), "{text}");
        if matches!(how, Hostile::Array | Hostile::CompactArray) {
            assert!(text.contains("elements but only"), "{text}");
        }
        assert!(!text.contains("\\n"), "more than one line: {text}");
    };
    // Alone: the record ends with the hostile broker's protocol error, within the bound.
    names(child.get("alone addr"), child.get("alone"));
    assert!(child.number("alone ms") < BOUND.as_millis() as u64);
    assert!(child.number("alone asked") >= 1);
    // Beside a good broker: its partition's record is delivered; the hostile broker was
    // asked, and its partition fails naming it when its own link is hostile.
    assert_eq!(child.get("beside good"), "delivered at 0");
    assert!(child.number("beside good ms") < BOUND.as_millis() as u64);
    assert_eq!(child.number("good records"), 1);
    assert!(child.number("hostile asked") >= 1);
    let hostile_p = child.get("beside hostile");
    match api {
        Request::ApiVersions | Request::Produce => {
            names(child.get("hostile addr"), hostile_p);
            assert!(child.number("beside hostile ms") < BOUND.as_millis() as u64);
        }
        Request::Metadata | Request::InitProducerId => assert_eq!(hostile_p, "delivered at 0"),
    }
    eprintln!(
        "{name}: child ran {:?}; alone ended in {} ms: {}",
        child.elapsed,
        child.get("alone ms"),
        child.get("alone")
    );
}

macro_rules! hostile_cases {
    ($($name:ident: $api:ident, $how:ident;)*) => {$(
        #[test]
        fn $name() {
            hostile_case(stringify!($name), Request::$api, Hostile::$how);
        }
    )*};
}

hostile_cases! {
    api_versions_array: ApiVersions, Array;
    api_versions_compact_array: ApiVersions, CompactArray;
    metadata_array: Metadata, Array;
    metadata_compact_array: Metadata, CompactArray;
    metadata_string: Metadata, String;
    metadata_compact_string: Metadata, CompactString;
    init_producer_id_truncated: InitProducerId, Truncated;
    init_producer_id_tagged_fields: InitProducerId, TaggedFields;
    produce_array: Produce, Array;
    produce_compact_array: Produce, CompactArray;
    produce_string: Produce, String;
    produce_compact_string: Produce, CompactString;
}

const CASES: [(Request, Hostile); 12] = [
    (Request::ApiVersions, Hostile::Array),
    (Request::ApiVersions, Hostile::CompactArray),
    (Request::Metadata, Hostile::Array),
    (Request::Metadata, Hostile::CompactArray),
    (Request::Metadata, Hostile::String),
    (Request::Metadata, Hostile::CompactString),
    (Request::InitProducerId, Hostile::Truncated),
    (Request::InitProducerId, Hostile::TaggedFields),
    (Request::Produce, Hostile::Array),
    (Request::Produce, Hostile::CompactArray),
    (Request::Produce, Hostile::String),
    (Request::Produce, Hostile::CompactString),
];

/// The four answers the producer decodes, from each hostile body: an error, not an abort.
#[test]
fn hostile_answers_decode_to_errors() {
    for (api, how) in CASES {
        let (version, body) = hostile_body(api, how).expect("a body");
        let mut buf = body.clone();
        let decoded = match api {
            Request::ApiVersions => ApiVersionsResponse::decode(&mut buf, version).map(drop),
            Request::Metadata => MetadataResponse::decode(&mut buf, version).map(drop),
            Request::InitProducerId => InitProducerIdResponse::decode(&mut buf, version).map(drop),
            Request::Produce => ProduceResponse::decode(&mut buf, version).map(drop),
        };
        let err = decoded.expect_err(&format!("{api:?} {how:?} decoded"));
        if matches!(how, Hostile::Array | Hostile::CompactArray) {
            let text = err.to_string();
            assert!(text.contains("elements but only 3 bytes left"), "{text}");
        }
    }
}

fn put_varint(b: &mut BytesMut, v: i32) {
    let mut z = ((v << 1) ^ (v >> 31)) as u32;
    while z >= 0x80 {
        b.put_u8((z as u8) | 0x80);
        z >>= 7;
    }
    b.put_u8(z as u8);
}

/// A v2 record batch (uncompressed) announcing `count` records, holding `records` as given.
fn batch(count: i32, records: &[u8]) -> Bytes {
    let mut tail = BytesMut::new();
    tail.put_i16(0); // attributes
    tail.put_i32(0); // last offset delta
    tail.put_i64(0); // first timestamp
    tail.put_i64(0); // max timestamp
    tail.put_i64(-1); // producer id
    tail.put_i16(-1); // producer epoch
    tail.put_i32(-1); // base sequence
    tail.put_i32(count);
    tail.put_slice(records);
    let mut b = BytesMut::new();
    b.put_i64(0); // base offset
    b.put_i32((4 + 1 + 4 + tail.len()) as i32); // batch length
    b.put_i32(0); // partition leader epoch
    b.put_i8(2); // magic
    b.put_u32(crc32c::crc32c(&tail));
    b.put_slice(&tail);
    b.freeze()
}

/// One record (no key, no value) whose header count is `headers`, followed by `extra` bytes.
fn record(headers: i32, extra: &[u8]) -> Bytes {
    let mut body = BytesMut::new();
    body.put_i8(0); // attributes
    put_varint(&mut body, 0); // timestamp delta
    put_varint(&mut body, 0); // offset delta
    put_varint(&mut body, -1); // key
    put_varint(&mut body, -1); // value
    put_varint(&mut body, headers);
    body.put_slice(extra);
    let mut b = BytesMut::new();
    put_varint(&mut b, body.len() as i32);
    b.put_slice(&body);
    b.freeze()
}

/// Record batches (what a consumer decodes; the producer never does) that announce more
/// records, or a record more headers, than their bytes hold: an error, not an abort.
#[test]
fn hostile_record_counts_decode_to_errors() {
    // A well-formed batch decodes: the builders are right.
    let fine =
        RecordBatchDecoder::decode(&mut batch(1, &record(0, &[]))).expect("a well-formed batch");
    assert_eq!(fine.records.len(), 1);
    let err = RecordBatchDecoder::decode(&mut batch(i32::MAX, &record(0, &[])))
        .expect_err("i32::MAX records in one");
    assert!(err.to_string().contains("records but only"), "{err}");
    let err = RecordBatchDecoder::decode(&mut batch(1, &record(i32::MAX, &[0; 3])))
        .expect_err("i32::MAX headers in 3 bytes");
    assert!(err.to_string().contains("headers but only"), "{err}");
}

/// Child side of a flood case: a record, 20 frames of 90 MB nobody asked for after the
/// broker's first answer to `after`, then another record that needs a new request of the
/// same kind (a topic not seen yet for Metadata, the same partition for Produce).
async fn flood_child(after: Request, acks: &str) {
    let mut broker = FakeBroker::bind().await;
    broker.serve(Behaviour {
        node: 1,
        brokers: vec![(1, broker.addr())],
        leaders: vec![1],
        hostile: None,
        flood: Some(Flood {
            after,
            frames: 20,
            size: 90_000_000,
        }),
    });
    let p = producer(&broker.addr(), &[("acks", acks)]);
    let (_, first) = deliver(&p, TOPIC, 0).await;
    observe("first", first);
    let started = Instant::now();
    let stats = &broker.stats;
    while !stats.flood_over.load(Ordering::Acquire) && started.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    observe("flood over", stats.flood_over.load(Ordering::Acquire));
    observe("flood ms", started.elapsed().as_millis());
    observe("frames written", stats.flooded.load(Ordering::Relaxed));
    let topic = if after == Request::Metadata {
        "u"
    } else {
        TOPIC
    };
    let (ms, second) = deliver(&p, topic, 0).await;
    observe("second", second);
    observe("second ms", ms);
    observe("connections", stats.connections.load(Ordering::Relaxed));
    let _ = p.close_timeout(Duration::from_millis(200)).await;
    observe("peak rss", support::peak_rss());
}

/// Parent side: the flood was cut short, the next request went through on a new connection,
/// and the child's peak RSS stayed small.
fn flood_case(name: &str, after: Request, acks: &str) {
    if is_child() {
        return support::runtime().block_on(flood_child(after, acks));
    }
    let child = run_child(name, CHILD_LIMIT);
    child.assert_success();
    assert!(
        child.get("first").starts_with("delivered"),
        "{}",
        child.get("first")
    );
    assert_eq!(
        child.get("flood over"),
        "true",
        "the producer kept the flooded connection open ({} frames written)",
        child.get("frames written")
    );
    let second = child.get("second");
    assert!(second.starts_with("delivered"), "{second}");
    let peak = child.number("peak rss");
    eprintln!(
        "{name}: peak RSS {} MB, flood over after {} ms ({} frames written whole), next record in {} ms, {} connections",
        peak / 1_000_000,
        child.get("flood ms"),
        child.get("frames written"),
        child.get("second ms"),
        child.get("connections"),
    );
    assert!(
        peak < MAX_PEAK_RSS,
        "peak RSS {} MB: frames nobody asked for were kept",
        peak / 1_000_000
    );
}

/// The control link (Metadata, then idle): frames after its answer close it.
#[test]
fn frames_nobody_asked_for_close_the_control_link() {
    flood_case(
        "frames_nobody_asked_for_close_the_control_link",
        Request::Metadata,
        "all",
    );
}

/// A sink's connection (reads all the time): frames after a Produce answer close it.
#[test]
fn frames_nobody_asked_for_close_a_sink_link() {
    flood_case(
        "frames_nobody_asked_for_close_a_sink_link",
        Request::Produce,
        "all",
    );
}

/// acks=0: a Produce expects no answer, so any frame closes the connection.
#[test]
fn an_answer_to_acks0_closes_a_sink_link() {
    flood_case(
        "an_answer_to_acks0_closes_a_sink_link",
        Request::Produce,
        "0",
    );
}
