//! The wasm host end to end: example plugins run in the host and publish to nisshi; records are
//! read back with librdkafka. Autoflush policies, limits, ACLs and bad plugins.

use std::time::{Duration, Instant};

use wafka::{
    Autoflush, Engine, LoadError, Plugin, PluginError, PluginInstance, PluginOptions, TopicAcl,
};
use wafka_producer::Producer;
use wafka_tests::{brokers, consume, consume_exactly, create_topic, guest, librdkafka_partition};

fn producer(extra: &[(&str, &str)]) -> Producer {
    let b = brokers();
    let mut props = vec![("bootstrap.servers", b.as_str())];
    props.extend_from_slice(extra);
    Producer::from_properties(props).unwrap()
}

fn load(engine: &Engine, name: &str, f: impl FnOnce(&mut PluginOptions)) -> Plugin {
    let mut options = PluginOptions::new(name);
    f(&mut options);
    engine.load_file(&guest(name), options).unwrap()
}

async fn start(plugin: &Plugin, producer: &Producer, config: &[(&str, &str)]) -> PluginInstance {
    let mut i = plugin.instantiate(producer).await.unwrap();
    let config: Vec<(String, String)> = config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    i.init(&config).await.unwrap();
    i
}

async fn read(topic: &str, n: usize) -> Vec<wafka_tests::Consumed> {
    let (b, t) = (brokers(), topic.to_string());
    tokio::task::spawn_blocking(move || consume_exactly(&b, &t, n, Duration::from_secs(30)))
        .await
        .unwrap()
}

fn failed(r: Result<(), PluginError>) -> String {
    match r {
        Err(PluginError::Failed { message, .. }) => message,
        other => panic!("expected the plugin to fail the event, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_publishes_keys_values_and_headers() {
    let topic = create_topic("hello", 4);
    let engine = Engine::new().unwrap();
    let plugin = load(&engine, "hello", |_| {});
    let p = producer(&[]);
    let mut i = start(&plugin, &p, &[("topic", &topic), ("key-delimiter", ":")]).await;
    for n in 0..200 {
        i.handle(format!("user{}:event {n}", n % 9).as_bytes())
            .await
            .unwrap();
    }
    i.flush().await.unwrap();
    assert_eq!(i.stats().records, 200);
    let got = read(&topic, 200).await;
    assert_eq!(got.len(), 200);
    for c in &got {
        let key = c.key.clone().unwrap();
        let value = String::from_utf8(c.value.clone().unwrap()).unwrap();
        let n: usize = value.strip_prefix("event ").unwrap().parse().unwrap();
        assert_eq!(key, format!("user{}", n % 9).into_bytes());
        assert_eq!(c.partition, librdkafka_partition(&key, 4));
        assert_eq!(
            c.headers,
            vec![("source".to_string(), Some(b"hello".to_vec()))]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_routes_json_by_field_and_reports_bad_lines() {
    let clicks = create_topic("ev", 2);
    let prefix = format!("{}.", clicks.rsplit_once('-').unwrap().0);
    // Topics are `<prefix><type>`: create the two the events name.
    let suffix = clicks.rsplit_once('-').unwrap().1.to_string();
    let (click_topic, view_topic) = (
        format!("{prefix}click{suffix}"),
        format!("{prefix}view{suffix}"),
    );
    wafka_tests::create_topic_named(&brokers(), &click_topic, 2);
    wafka_tests::create_topic_named(&brokers(), &view_topic, 2);
    let engine = Engine::new().unwrap();
    let plugin = load(&engine, "router", |_| {});
    let p = producer(&[]);
    let mut i = start(&plugin, &p, &[("field", "kind"), ("prefix", &prefix)]).await;
    let events = [
        format!(r#"{{"kind":"click{suffix}","id":"u1","n":1}}"#),
        format!(r#"{{"kind":"view{suffix}","id":"u2","n":2}}"#),
        format!(r#"{{"kind":"click{suffix}","n":3}}"#),
    ];
    for e in &events {
        i.handle(e.as_bytes()).await.unwrap();
    }
    assert!(!failed(i.handle(b"not json").await).is_empty());
    assert!(failed(i.handle(br#"{"other":1}"#).await).contains("kind"));
    i.flush().await.unwrap();
    let s = i.stats();
    assert_eq!((s.events, s.failed_events, s.records), (5, 2, 3));
    let clicks = read(&click_topic, 2).await;
    assert_eq!(clicks.len(), 2);
    let mut values: Vec<Vec<u8>> = clicks.iter().map(|c| c.value.clone().unwrap()).collect();
    values.sort();
    let mut want = vec![
        events[0].clone().into_bytes(),
        events[2].clone().into_bytes(),
    ];
    want.sort();
    assert_eq!(values, want, "values unchanged");
    assert!(clicks.iter().any(|c| c.key.as_deref() == Some(b"u1")));
    assert!(clicks.iter().any(|c| c.key.is_none()));
    let views = read(&view_topic, 1).await;
    assert_eq!(views[0].key.as_deref(), Some(&b"u2"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autoflush_on_makes_a_record_readable_when_publish_returns() {
    let topic = create_topic("af-on", 3);
    let engine = Engine::new().unwrap();
    let plugin = load(&engine, "probe", |o| o.autoflush = Autoflush::On);
    // Without autoflush, nothing would leave for a minute.
    let p = producer(&[("linger.ms", "60000"), ("batch.size", "1000000")]);
    let mut i = start(&plugin, &p, &[]).await;
    for n in 0..5 {
        // `receipt` fails unless publish returned an acknowledged offset.
        i.handle(format!("receipt {topic} k{n} v{n}").as_bytes())
            .await
            .unwrap();
        let (b, t) = (brokers(), topic.clone());
        let got =
            tokio::task::spawn_blocking(move || consume(&b, &t, n + 1, Duration::from_secs(3)))
                .await
                .unwrap();
        assert_eq!(got.len(), n + 1, "record {n} readable before any flush");
    }
    let refused = failed(i.handle(b"autoflush off").await);
    assert!(refused.contains("fixed autoflush to on"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autoflush_off_batches_records_and_flush_delivers_them() {
    let topic = create_topic("af-off", 3);
    let engine = Engine::new().unwrap();
    let plugin = load(&engine, "probe", |o| o.autoflush = Autoflush::Off);
    let p = producer(&[("linger.ms", "20")]);
    let mut i = start(&plugin, &p, &[]).await;
    i.handle(format!("publish-n {topic} 2000").as_bytes())
        .await
        .unwrap();
    let msg = failed(i.handle(format!("receipt {topic} k v").as_bytes()).await);
    assert!(
        msg.contains("offset=-1"),
        "a buffered publish returns before the ack: {msg}"
    );
    i.handle(b"flush").await.unwrap();
    i.handle(b"reports 2001").await.unwrap();
    let requests = p.stats().produce_requests;
    assert!(
        requests > 0 && requests < 200,
        "2001 records in {requests} produce requests"
    );
    let got = read(&topic, 2001).await;
    assert_eq!(got.len(), 2001);
    let refused = failed(i.handle(b"autoflush on").await);
    assert!(refused.contains("fixed autoflush to off"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_policy_lets_the_plugin_switch() {
    let topic = create_topic("af-guest", 1);
    let engine = Engine::new().unwrap();
    let plugin = load(&engine, "probe", |o| o.autoflush = Autoflush::Guest);
    let p = producer(&[("linger.ms", "60000"), ("batch.size", "1000000")]);
    let mut i = start(&plugin, &p, &[]).await;
    // Starts off: a receipt has no offset.
    assert!(
        failed(i.handle(format!("receipt {topic} a 1").as_bytes()).await).contains("offset=-1")
    );
    i.handle(b"autoflush on").await.unwrap();
    i.handle(format!("receipt {topic} b 2").as_bytes())
        .await
        .unwrap();
    i.handle(b"autoflush off").await.unwrap();
    assert!(
        failed(i.handle(format!("receipt {topic} c 3").as_bytes()).await).contains("offset=-1")
    );
    i.flush().await.unwrap();
    let got = read(&topic, 3).await;
    let keys: Vec<_> = got.iter().map(|c| c.key.clone().unwrap()).collect();
    assert_eq!(keys, vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
}

/// New options reach a plugin without compiling or linking again: new instances start with
/// them, and a running instance takes them when reconfigured (ACL from the next record,
/// autoflush rebound).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_change_without_relinking() {
    let topic = create_topic("reconf", 1);
    let engine = Engine::new().unwrap();
    let mut plugin = load(&engine, "probe", |_| {});
    let p = producer(&[("linger.ms", "60000"), ("batch.size", "1000000")]);
    let mut running = start(&plugin, &p, &[]).await;
    assert!(failed(
        running
            .handle(format!("receipt {topic} a 1").as_bytes())
            .await
    )
    .contains("offset=-1"));
    let mut options = plugin.options().clone();
    options.autoflush = Autoflush::On;
    options.acl = TopicAcl::new([topic.as_str()]);
    plugin.set_options(options);
    // The running instance keeps its options until reconfigured.
    running
        .handle(b"publish elsewhere k v")
        .await
        .expect_err("elsewhere does not exist, but the ACL allowed trying");
    running.reconfigure(&plugin);
    let e = failed(running.handle(b"publish elsewhere k v").await);
    assert!(e.contains("may not publish to topic `elsewhere`"), "{e}");
    running
        .handle(format!("receipt {topic} b 2").as_bytes())
        .await
        .unwrap();
    // A new instance starts with the new options.
    let mut fresh = start(&plugin, &p, &[]).await;
    fresh
        .handle(format!("receipt {topic} c 3").as_bytes())
        .await
        .unwrap();
    running.flush().await.unwrap();
    assert_eq!(read(&topic, 3).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_instance_flush_does_not_wait_for_another() {
    // librdkafka's mock cluster: B's topic is led by a broker that is down.
    let (mock, bootstrap) = wafka_tests::mock_cluster(2);
    mock.create_topic("fast", 1, 1).unwrap();
    mock.create_topic("stuck", 1, 1).unwrap();
    mock.partition_leader("fast", 0, Some(1)).unwrap();
    mock.partition_leader("stuck", 0, Some(2)).unwrap();
    let p = Producer::from_properties([
        ("bootstrap.servers", bootstrap.as_str()),
        ("linger.ms", "5"),
    ])
    .unwrap();
    let engine = Engine::new().unwrap();
    let plugin = load(&engine, "probe", |_| {});
    let mut a = start(&plugin, &p, &[]).await;
    let mut b = start(&plugin, &p, &[]).await;
    // Metadata and producer id first, then take broker 2 down.
    b.handle(b"publish stuck - warm").await.unwrap();
    b.handle(b"flush").await.unwrap();
    mock.broker_down(2).unwrap();
    b.handle(b"publish-n stuck 10").await.unwrap();
    a.handle(b"publish-n fast 10").await.unwrap();
    let t = Instant::now();
    a.handle(b"flush").await.unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "a's flush took {:?}",
        t.elapsed()
    );
    a.handle(b"reports 10").await.unwrap();
    assert!(
        b.owner().unwrap().buffered_bytes() > 0,
        "b's records are still waiting"
    );
    mock.broker_up(2).unwrap();
    b.handle(b"flush").await.unwrap();
    assert_eq!(b.owner().unwrap().buffered_bytes(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_is_one_line_stops_the_instance_and_loses_nothing() {
    let topic = create_topic("trap", 1);
    let engine = Engine::new().unwrap();
    let plugin = load(&engine, "probe", |_| {});
    let p = producer(&[("linger.ms", "50")]);
    let mut i = start(&plugin, &p, &[]).await;
    i.handle(format!("publish-n {topic} 100").as_bytes())
        .await
        .unwrap();
    let e = i.handle(b"trap").await.unwrap_err();
    assert!(matches!(e, PluginError::Trapped { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("probe") && msg.contains("panicked") && !msg.contains('\n'),
        "{msg}"
    );
    assert!(matches!(
        i.handle(b"flush").await,
        Err(PluginError::Stopped(_))
    ));
    // Records published before the trap are delivered.
    i.flush().await.unwrap();
    assert_eq!(read(&topic, 100).await.len(), 100);
    // Another instance of the same plugin is unaffected.
    let mut j = start(&plugin, &p, &[]).await;
    j.handle(format!("publish {topic} k after").as_bytes())
        .await
        .unwrap();
    j.handle(b"flush").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_and_a_memory_hog_are_stopped_by_their_limits() {
    let engine = Engine::new().unwrap();
    let plugin = load(&engine, "probe", |o| {
        o.limits.cpu_time = Duration::from_millis(300);
        o.limits.memory_bytes = 16 << 20;
    });
    let p = producer(&[]);
    let mut i = start(&plugin, &p, &[]).await;
    i.handle(b"grow 4").await.unwrap();
    let t = Instant::now();
    let e = i.handle(b"loop").await.unwrap_err().to_string();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "stopped after {:?}",
        t.elapsed()
    );
    assert!(e.contains("CPU time limit of 300 ms"), "{e}");
    let mut j = start(&plugin, &p, &[]).await;
    let e = j.handle(b"grow 64").await.unwrap_err().to_string();
    assert!(e.contains("memory") && e.contains("16 MiB"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_wasi_and_errors_a_plugin_can_act_on() {
    let allowed = create_topic("acl-ok", 1);
    let engine = Engine::new().unwrap();
    let plugin = load(&engine, "probe", |o| o.acl = TopicAcl::new(["acl-ok-*"]));
    let p = producer(&[("max.request.size", "5000")]);
    let mut i = start(&plugin, &p, &[]).await;
    i.handle(format!("publish {allowed} k v").as_bytes())
        .await
        .unwrap();
    let e = failed(i.handle(b"publish secret k v").await);
    assert!(e.contains("may not publish to topic `secret`"), "{e}");
    let e = failed(
        i.handle(format!("publish-size {allowed} 10000").as_bytes())
            .await,
    );
    assert!(e.contains("too large"), "{e}");
    let e = failed(i.handle(b"publish acl-ok-missing k v").await);
    assert!(e.contains("does not exist"), "{e}");
    // No environment, no files.
    i.handle(b"env").await.unwrap();
    i.flush().await.unwrap();
    assert_eq!(read(&allowed, 1).await.len(), 1);
    // The ACL's refusal, the size and the missing topic.
    assert_eq!(i.stats().refused, 3);
}

#[test]
fn bad_plugin_files_are_one_line_errors() {
    let engine = Engine::new().unwrap();
    let e = engine
        .load(b"hello, not wasm", PluginOptions::new("text"))
        .unwrap_err();
    assert_eq!(e, LoadError::NotWasm("text".into()));
    let e = engine
        .load(b"\0asm\x01\0\0\0", PluginOptions::new("core"))
        .unwrap_err();
    assert_eq!(e, LoadError::CoreModule("core".into()));
    assert!(e.to_string().contains("not a component"));
    // An empty component: valid, but it exports neither init nor handle.
    let e = engine
        .load(b"\0asm\x0d\0\x01\0", PluginOptions::new("empty"))
        .unwrap_err();
    assert!(matches!(e, LoadError::WrongWorld { .. }), "{e:?}");
    assert!(e.to_string().contains("no export"), "{e}");
    let e = engine
        .load(b"\0asm\x0d\0\x01\0\xff\xff", PluginOptions::new("broken"))
        .unwrap_err();
    assert!(matches!(e, LoadError::Invalid { .. }), "{e:?}");
    assert!(!e.to_string().contains('\n'), "one line: {e}");
}

#[test]
fn compiled_components_are_cached_on_disk() {
    let dir = std::env::temp_dir().join(format!("wafka-cache-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let engine = Engine::new()
        .unwrap()
        .with_cache(wafka::ComponentCache::open(&dir).unwrap());
    let bytes = std::fs::read(guest("probe")).unwrap();
    let first = engine.load(&bytes, PluginOptions::new("probe")).unwrap();
    assert!(!first.load_info().from_cache);
    let second = engine.load(&bytes, PluginOptions::new("probe")).unwrap();
    assert!(
        second.load_info().from_cache,
        "second load reads the compiled code"
    );
    // A damaged cache file is recompiled, not trusted. (Replaced by rename, as the cache itself
    // writes: truncating a file that a loaded component still maps would be a SIGBUS.)
    drop((first, second));
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1);
    let tmp = dir.join("damaged.tmp");
    std::fs::write(&tmp, b"garbage").unwrap();
    std::fs::rename(&tmp, &files[0]).unwrap();
    let third = engine.load(&bytes, PluginOptions::new("probe")).unwrap();
    assert!(!third.load_info().from_cache);
    assert!(
        engine
            .load(&bytes, PluginOptions::new("probe"))
            .unwrap()
            .load_info()
            .from_cache
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_mode_captures_what_a_plugin_would_publish() {
    let engine = Engine::new().unwrap();
    let bytes = std::fs::read(guest("hello")).unwrap();
    let plugin = engine.load(&bytes, PluginOptions::new("hello")).unwrap();
    let mut i = plugin
        .instantiate_capture(wafka::CaptureOptions::new(4))
        .await
        .unwrap();
    i.init(&[
        ("topic".into(), "t".into()),
        ("key-delimiter".into(), ":".into()),
    ])
    .await
    .unwrap();
    for n in 0..20 {
        i.handle(format!("key{n}:value{n}").as_bytes())
            .await
            .unwrap();
    }
    let got = i.take_captured();
    assert_eq!(got.len(), 20);
    for (n, r) in got.iter().enumerate() {
        let key = format!("key{n}").into_bytes();
        assert_eq!(r.partition, librdkafka_partition(&key, 4));
        assert_eq!(r.key.as_deref(), Some(&key[..]));
        assert_eq!(r.value, format!("value{n}").into_bytes());
        assert_eq!(
            r.headers,
            vec![("source".to_string(), Some(b"hello".to_vec()))]
        );
    }
    // Offsets count per partition.
    let p0: Vec<i64> = got
        .iter()
        .filter(|r| r.partition == got[0].partition)
        .map(|r| r.offset)
        .collect();
    assert_eq!(p0, (0..p0.len() as i64).collect::<Vec<_>>());
    // The sink is chosen per instance: the same plugin also runs against a producer.
    let p = Producer::from_properties([("bootstrap.servers", "127.0.0.1:9")]).unwrap();
    assert!(plugin.instantiate(&p).await.is_ok());
}

/// The headers `messenger` (a wasi:messaging plugin) gives its `seq`th message: its metadata in
/// order, then the content-type.
fn messenger_headers(
    seq: usize,
    bytes: usize,
    content_type: &str,
) -> Vec<(String, Option<Vec<u8>>)> {
    vec![
        ("source".to_string(), Some(b"messenger".to_vec())),
        ("seq".to_string(), Some(seq.to_string().into_bytes())),
        ("bytes".to_string(), Some(bytes.to_string().into_bytes())),
        (
            "content-type".to_string(),
            Some(content_type.as_bytes().to_vec()),
        ),
    ]
}

const TEXT: &str = "text/plain; charset=utf-8";

/// A plugin written for wasi:messaging@0.2.0-draft only runs unchanged: each event reaches its
/// handler as a message, and what it sends lands in Kafka through the same producer: topic,
/// value, metadata and content-type as headers, in order, with a null key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wasi_messaging_plugin_sends_through_the_producer() {
    let topic = create_topic("msg", 1);
    let engine = Engine::new().unwrap();
    let plugin = load(&engine, "messenger", |_| {});
    assert_eq!(plugin.world(), wafka::PluginWorld::Messaging);
    let p = producer(&[]);
    let mut i = start(&plugin, &p, &[]).await;
    for n in 0..50 {
        i.handle(format!("{topic} hello {n}").as_bytes())
            .await
            .unwrap();
    }
    i.handle(format!("{topic} *3000").as_bytes()).await.unwrap();
    i.flush().await.unwrap();
    assert_eq!(i.stats().records, 51);
    let got = read(&topic, 51).await;
    assert_eq!(got.len(), 51);
    for (n, c) in got.iter().enumerate().take(50) {
        assert_eq!(c.offset, n as i64);
        assert_eq!(c.key, None);
        assert_eq!(c.value.as_deref(), Some(format!("hello {n}").as_bytes()));
        let value = format!("hello {n}");
        assert_eq!(c.headers, messenger_headers(n, value.len(), TEXT));
    }
    assert_eq!(got[50].value, Some(vec![b'x'; 3000]));
    assert_eq!(
        got[50].headers,
        messenger_headers(50, 3000, "application/octet-stream")
    );
    // It has no `init`: a configuration it could not receive is refused, in one line.
    let mut j = plugin.instantiate(&p).await.unwrap();
    let e = j
        .init(&[("topic".into(), "t".into())])
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("takes no configuration"), "{e}");
}

/// Under `wafka test` the same plugin's messages are captured as they would be sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wasi_messaging_plugin_is_captured_in_test_mode() {
    let engine = Engine::new().unwrap();
    let plugin = load(&engine, "messenger", |_| {});
    let mut i = plugin
        .instantiate_capture(wafka::CaptureOptions::new(1))
        .await
        .unwrap();
    i.init(&[]).await.unwrap();
    for n in 0..5 {
        i.handle(format!("t{} v{n}", n % 2).as_bytes())
            .await
            .unwrap();
    }
    let got = i.take_captured();
    assert_eq!(got.len(), 5);
    for (n, r) in got.iter().enumerate() {
        assert_eq!(r.topic, format!("t{}", n % 2));
        assert_eq!(r.offset, (n / 2) as i64);
        assert_eq!(r.key, None);
        assert_eq!(r.value, format!("v{n}").into_bytes());
        assert_eq!(r.headers, messenger_headers(n, 2, TEXT));
    }
}

/// What a wasi:messaging plugin sends passes the same checks as `publish`: the ACL's refusal
/// reaches the plugin as the draft's `permission-denied`, the record limit as `other`, and the
/// bytes of the messages the host holds count against the instance's memory limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wasi_messaging_plugin_is_held_to_the_acl_and_limits() {
    let allowed = create_topic("macl-ok", 1);
    let engine = Engine::new().unwrap();
    let plugin = load(&engine, "messenger", |o| {
        o.acl = TopicAcl::new(["macl-ok-*"]);
        o.max_record_bytes = Some(2000);
        o.limits.memory_bytes = 10 << 20;
    });
    let p = producer(&[]);
    let mut i = start(&plugin, &p, &[]).await;
    let e = failed(i.handle(b"secret v").await);
    assert_eq!(
        e,
        "permission-denied: plugin `messenger` may not publish to topic `secret`"
    );
    let e = failed(i.handle(format!("{allowed} *5000").as_bytes()).await);
    assert!(e.starts_with("other: record-too-large: "), "{e}");
    let e = failed(i.handle(b"macl-ok-missing v").await);
    assert!(e.starts_with("other: invalid-topic: "), "{e}");
    i.handle(format!("{allowed} ok").as_bytes()).await.unwrap();
    i.flush().await.unwrap();
    assert_eq!(i.stats().refused, 3);
    let got = read(&allowed, 1).await;
    assert_eq!(got[0].value.as_deref(), Some(&b"ok"[..]));
    // 6 MiB in the plugin's memory and 6 MiB more held by the host: over its 10 MiB.
    match i.handle(format!("{allowed} *{}", 6 << 20).as_bytes()).await {
        Err(PluginError::Trapped { reason, .. }) => {
            assert!(reason.contains("wasi:messaging messages"), "{reason}");
            assert!(reason.contains("memory limit of 10 MiB"), "{reason}");
        }
        other => panic!("expected a trap, got {other:?}"),
    }
}

/// The message an input event becomes is the plugin's once handed over: one it keeps counts
/// against its memory limit like any message it makes, so that keeping every event cannot hold
/// unbounded host memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wasi_messaging_plugin_that_keeps_its_events_is_held_to_its_memory_limit() {
    let engine = Engine::new().unwrap();
    let plugin = load(&engine, "messenger", |o| o.limits.memory_bytes = 8 << 20);
    let p = producer(&[]);
    let mut i = start(&plugin, &p, &[]).await;
    let mut event = b"!keep ".to_vec();
    event.resize(1 << 20, b'x');
    let mut kept = 0;
    let reason = loop {
        match i.handle(&event).await {
            Ok(()) => kept += 1,
            Err(PluginError::Trapped { reason, .. }) => break reason,
            Err(e) => panic!("expected a trap, got {e}"),
        }
        assert!(kept < 16, "kept {kept} MiB of events within an 8 MiB limit");
    };
    assert!(reason.contains("wasi:messaging messages"), "{reason}");
    assert!(reason.contains("memory limit of 8 MiB"), "{reason}");
    // Events it drops are given back: a fresh instance handles far more than 8 MiB of them.
    let mut i = start(&plugin, &p, &[]).await;
    let topicless = b"no-space-so-this-event-fails".repeat(1 << 15);
    for _ in 0..32 {
        assert!(failed(i.handle(&topicless).await).starts_with("other: expected"));
    }
}

/// A component exporting wasi:messaging's handler without a fitting `handle`, or importing
/// what the host does not serve (`request-reply`), is refused at load in one line.
#[test]
fn messaging_components_of_the_wrong_shape_are_refused_at_load() {
    let engine = Engine::new().unwrap();
    let no_handle = wat::parse_str(
        r#"(component
  (core module $m (func (export "h")))
  (core instance $i (instantiate $m))
  (func $h (canon lift (core func $i "h")))
  (instance $inst (export "other" (func $h)))
  (export "wasi:messaging/incoming-handler@0.2.0-draft" (instance $inst)))"#,
    )
    .unwrap();
    // The right number of parameters and results, of the wrong types.
    let wrong_types = wat::parse_str(
        r#"(component
  (core module $m (func (export "h") (param i32) (result i32) (i32.const 0)))
  (core instance $i (instantiate $m))
  (func $h (param "x" u32) (result (result)) (canon lift (core func $i "h")))
  (instance $inst (export "handle" (func $h)))
  (export "wasi:messaging/incoming-handler@0.2.0-draft" (instance $inst)))"#,
    )
    .unwrap();
    let request_reply = wat::parse_str(
        r#"(component
  (import "wasi:messaging/request-reply@0.2.0-draft" (instance (export "reply" (func))))
  (core module $m (func (export "h")))
  (core instance $i (instantiate $m))
  (func $h (canon lift (core func $i "h")))
  (instance $inst (export "handle" (func $h)))
  (export "wasi:messaging/incoming-handler@0.2.0-draft" (instance $inst)))"#,
    )
    .unwrap();
    for (name, bytes, want) in [
        (
            "no-handle",
            no_handle,
            "has no `handle: func(message: message)",
        ),
        (
            "wrong-types",
            wrong_types,
            "has no `handle: func(message: message)",
        ),
        (
            "request-reply",
            request_reply,
            "imports `wasi:messaging/request-reply@0.2.0-draft` (the messaging-request-reply world), which wafka does not serve",
        ),
    ] {
        let e = engine.load(&bytes, PluginOptions::new(name)).unwrap_err();
        assert!(matches!(e, LoadError::WrongWorld { .. }), "{name}: {e:?}");
        let text = e.to_string();
        assert!(text.contains(want), "{name}: {text}");
        assert!(text.contains("messaging-core"), "{name}: {text}");
        assert_eq!(text.lines().count(), 1, "{text}");
    }
}

/// A gate that admits `left` records, then refuses, and counts the bytes it was told of.
#[derive(Debug)]
struct Allowance {
    left: std::sync::atomic::AtomicI64,
    bytes: std::sync::atomic::AtomicU64,
}

impl wafka::PublishGate for Allowance {
    fn admit(&self) -> Result<(), String> {
        use std::sync::atomic::Ordering::SeqCst;
        if self.left.fetch_sub(1, SeqCst) > 0 {
            Ok(())
        } else {
            Err("tenant `t1` used its 3 records".into())
        }
    }

    fn published(&self, outcome: &wafka::Published) {
        let n = outcome.bytes.unwrap_or(0);
        self.bytes.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
    }
}

/// `send` follows the host's autoflush policy (on: it returns once the broker acknowledged the
/// record) and passes the tenant's gate as `publish` does: its refusal is the draft's `other`
/// with wafka's case and the gate's reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wasi_messaging_plugin_follows_autoflush_and_the_gate() {
    let topic = create_topic("msg-af", 1);
    let engine = Engine::new().unwrap();
    let gate = std::sync::Arc::new(Allowance {
        left: 3.into(),
        bytes: 0.into(),
    });
    let plugin = load(&engine, "messenger", |o| {
        o.autoflush = Autoflush::On;
        o.gate = Some(gate.clone());
    });
    // Without autoflush, nothing would leave for a minute.
    let p = producer(&[("linger.ms", "60000"), ("batch.size", "1000000")]);
    let mut i = start(&plugin, &p, &[]).await;
    for n in 0..3 {
        i.handle(format!("{topic} v{n}").as_bytes()).await.unwrap();
        let (b, t) = (brokers(), topic.clone());
        let got =
            tokio::task::spawn_blocking(move || consume(&b, &t, n + 1, Duration::from_secs(3)))
                .await
                .unwrap();
        assert_eq!(got.len(), n + 1, "record {n} readable before any flush");
    }
    let e = failed(i.handle(format!("{topic} v3").as_bytes()).await);
    assert_eq!(e, "other: quota-exceeded: tenant `t1` used its 3 records");
    assert!(gate.bytes.load(std::sync::atomic::Ordering::SeqCst) > 0);
    assert_eq!(i.stats().records, 3);
}

/// `client.disconnect` waits for the records sent through the instance, as closing a
/// connection would: with the producer lingering for a minute, they are readable once it
/// returns. The next message connects a new client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wasi_messaging_disconnect_delivers_what_was_sent() {
    let topic = create_topic("msg-dc", 1);
    let engine = Engine::new().unwrap();
    let plugin = load(&engine, "messenger", |_| {});
    let p = producer(&[("linger.ms", "60000"), ("batch.size", "1000000")]);
    let mut i = start(&plugin, &p, &[]).await;
    for n in 0..3 {
        i.handle(format!("{topic} v{n}").as_bytes()).await.unwrap();
    }
    i.handle(b"!disconnect").await.unwrap();
    let (b, t) = (brokers(), topic.clone());
    let got = tokio::task::spawn_blocking(move || consume(&b, &t, 3, Duration::from_secs(3)))
        .await
        .unwrap();
    assert_eq!(got.len(), 3, "delivered by the disconnect");
    i.handle(format!("{topic} v3").as_bytes()).await.unwrap();
    i.handle(b"!disconnect").await.unwrap();
    let got = read(&topic, 4).await;
    let values: Vec<_> = got.iter().map(|c| c.value.clone().unwrap()).collect();
    assert_eq!(values, [b"v0", b"v1", b"v2", b"v3"]);
}
