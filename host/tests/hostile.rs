//! The hostile suite: plugins that each do one bad thing, run in the host next to a
//! well-behaved one. Each must end with a clear error naming the plugin and the cause, in
//! bounded time and bounded host memory, while the well-behaved plugin, publishing through the
//! same producer at the same time, loses nothing (read back with librdkafka).
//!
//! Host memory is the heap of this process, measured by a counting allocator (linear memories
//! are mapped, not allocated, and are bounded by the limiter instead). The cases run one at a
//! time. Bounds are about ten times what the host needs, for a shared and noisy machine.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wafka::{
    CaptureOptions, Engine, EngineOptions, LoadError, Plugin, PluginError, PluginInstance,
    PluginOptions, TopicAcl,
};
use wafka_producer::Producer;
use wafka_tests::alloc::{measure, peak_above};
use wafka_tests::{brokers, consume_exactly, create_topic, guest};

#[global_allocator]
static ALLOCATOR: wafka_tests::alloc::Counting = wafka_tests::alloc::Counting;

/// One case at a time: they share the allocator's counters and the machine's two cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const MIB: usize = 1 << 20;

fn producer(extra: &[(&str, &str)]) -> Producer {
    let b = brokers();
    let mut props = vec![("bootstrap.servers", b.as_str()), ("linger.ms", "5")];
    props.extend_from_slice(extra);
    Producer::from_properties(props).unwrap()
}

fn probe(engine: &Engine, f: impl FnOnce(&mut PluginOptions)) -> Plugin {
    let mut options = PluginOptions::new("probe");
    f(&mut options);
    engine.load_file(&guest("probe"), options).unwrap()
}

fn pairs(config: &[(&str, &str)]) -> Vec<(String, String)> {
    config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn start(plugin: &Plugin, producer: &Producer, config: &[(&str, &str)]) -> PluginInstance {
    let mut i = plugin.instantiate(producer).await.unwrap();
    i.init(&pairs(config)).await.unwrap();
    i
}

/// A well-behaved plugin publishing one record per millisecond through the same producer.
struct Neighbour {
    topic: String,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(u64, PluginInstance)>,
}

impl Neighbour {
    async fn start(engine: &Engine, producer: &Producer) -> Neighbour {
        let topic = create_topic("neighbour", 3);
        let plugin = engine
            .load_file(&guest("probe"), PluginOptions::new("neighbour"))
            .unwrap();
        let mut instance = start(&plugin, producer, &[]).await;
        let stop = Arc::new(AtomicBool::new(false));
        let (t, s) = (topic.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut n = 0u64;
            while !s.load(Ordering::Relaxed) {
                let event = format!("publish {t} k{} {n}", n % 7);
                instance.handle(event.as_bytes()).await.unwrap();
                n += 1;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            (n, instance)
        });
        // Publishing before the hostile plugin starts.
        tokio::time::sleep(Duration::from_millis(50)).await;
        Neighbour { topic, stop, task }
    }

    /// Stops publishing; every record published is read back, once, in order per key.
    async fn lost_nothing(self) {
        self.stop.store(true, Ordering::Relaxed);
        let (n, instance) = self.task.await.unwrap();
        assert!(n > 0);
        tokio::time::timeout(Duration::from_secs(30), instance.flush())
            .await
            .expect("the neighbour's flush ends")
            .expect("the neighbour's records are delivered");
        let (b, t) = (brokers(), self.topic.clone());
        let got = tokio::task::spawn_blocking(move || {
            consume_exactly(&b, &t, n as usize, Duration::from_secs(30))
        })
        .await
        .unwrap();
        let mut values: Vec<u64> = got
            .iter()
            .map(|c| {
                std::str::from_utf8(c.value.as_deref().unwrap())
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        values.sort_unstable();
        assert_eq!(
            values,
            (0..n).collect::<Vec<_>>(),
            "the neighbour lost or doubled records"
        );
    }
}

/// What one hostile call cost the host.
struct Cost {
    time: Duration,
    heap: usize,
}

impl Cost {
    fn within(&self, time: Duration, heap: usize) {
        assert!(self.time < time, "took {:?} (bound {time:?})", self.time);
        assert!(
            self.heap < heap,
            "host heap grew {} KiB (bound {} KiB)",
            self.heap >> 10,
            heap >> 10
        );
    }
}

/// Runs `f` (the hostile part) while a neighbour publishes; measures its time and the host's
/// heap peak; checks the neighbour lost nothing.
async fn beside_a_neighbour<T, F>(producer: &Producer, engine: &Engine, f: F) -> (T, Cost)
where
    F: std::future::Future<Output = T>,
{
    let neighbour = Neighbour::start(engine, producer).await;
    let base = measure();
    let started = Instant::now();
    let out = f.await;
    let cost = Cost {
        time: started.elapsed(),
        heap: peak_above(base),
    };
    neighbour.lost_nothing().await;
    (out, cost)
}

fn trapped(r: Result<(), PluginError>) -> String {
    match r {
        Err(PluginError::Trapped { plugin, reason }) => {
            assert_eq!(plugin, "probe");
            reason
        }
        other => panic!("expected a trap, got {other:?}"),
    }
}

fn failed(r: Result<(), PluginError>) -> String {
    match r {
        Err(PluginError::Failed { plugin, message }) => {
            assert_eq!(plugin, "probe");
            message
        }
        other => panic!("expected the event to fail, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_loop_is_stopped_at_its_cpu_limit() {
    let _serial = SERIAL.lock().await;
    let engine = Engine::new().unwrap();
    let p = producer(&[]);
    let plugin = probe(&engine, |o| o.limits.cpu_time = Duration::from_millis(300));
    let mut i = start(&plugin, &p, &[]).await;
    let (r, cost) = beside_a_neighbour(&p, &engine, i.handle(b"loop")).await;
    let reason = trapped(r);
    assert!(reason.contains("CPU time limit of 300 ms"), "{reason}");
    cost.within(Duration::from_secs(5), 8 * MIB);
    assert_eq!(
        i.handle(b"flush").await,
        Err(PluginError::Stopped("probe".into()))
    );
}

/// Host calls do not refill the CPU budget: a loop of refused publishes ends at the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_of_host_calls_is_stopped_at_its_cpu_limit() {
    let _serial = SERIAL.lock().await;
    let engine = Engine::new().unwrap();
    let p = producer(&[]);
    let plugin = probe(&engine, |o| {
        o.limits.cpu_time = Duration::from_millis(300);
        o.acl = TopicAcl::new(["allowed"]);
    });
    let mut i = start(&plugin, &p, &[]).await;
    let (r, cost) = beside_a_neighbour(&p, &engine, i.handle(b"publish-loop denied")).await;
    let reason = trapped(r);
    assert!(reason.contains("CPU time limit of 300 ms"), "{reason}");
    cost.within(Duration::from_secs(5), 8 * MIB);
    assert!(i.stats().refused > 100, "{:?}", i.stats());
}

/// A sleep is a WASI poll the epoch cannot interrupt: the wall-time limit stops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleeping_plugin_is_stopped_at_its_wall_time_limit() {
    let _serial = SERIAL.lock().await;
    let engine = Engine::new().unwrap();
    let p = producer(&[]);
    let plugin = probe(&engine, |o| o.limits.call_time = Duration::from_millis(500));
    let mut i = start(&plugin, &p, &[]).await;
    let (r, cost) = beside_a_neighbour(&p, &engine, i.handle(b"sleep 60000")).await;
    assert_eq!(
        r,
        Err(PluginError::TimedOut {
            plugin: "probe".into(),
            limit_ms: 500
        })
    );
    cost.within(Duration::from_secs(5), 8 * MIB);
    assert_eq!(
        i.handle(b"flush").await,
        Err(PluginError::Stopped("probe".into()))
    );
    // In init and instantiation too.
    let mut i = plugin.instantiate(&p).await.unwrap();
    let started = Instant::now();
    let e = i
        .init(&pairs(&[("sleep-init", "60000")]))
        .await
        .unwrap_err();
    assert!(matches!(e, PluginError::TimedOut { .. }), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_bomb_is_stopped_at_its_memory_limit() {
    let _serial = SERIAL.lock().await;
    let engine = Engine::new().unwrap();
    let p = producer(&[]);
    let plugin = probe(&engine, |o| o.limits.memory_bytes = 16 * MIB);
    let mut i = start(&plugin, &p, &[]).await;
    let (r, cost) = beside_a_neighbour(&p, &engine, i.handle(b"grow 200")).await;
    let reason = trapped(r);
    assert!(reason.contains("memory limit of 16 MiB"), "{reason}");
    cost.within(Duration::from_secs(5), 8 * MIB);
    assert!(
        i.resources().counted_bytes() <= 16 * MIB,
        "{:?}",
        i.resources()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_recursion_is_a_stack_overflow() {
    let _serial = SERIAL.lock().await;
    let engine = Engine::new().unwrap();
    let p = producer(&[]);
    let plugin = probe(&engine, |_| {});
    let mut i = start(&plugin, &p, &[]).await;
    i.handle(b"recurse 10").await.unwrap();
    let (r, cost) = beside_a_neighbour(&p, &engine, i.handle(b"recurse 100000000")).await;
    let reason = trapped(r);
    assert!(reason.contains("stack overflow"), "{reason}");
    cost.within(Duration::from_secs(5), 8 * MIB);
}

/// A trap costs the host little whatever RUST_BACKTRACE says: this binary runs
/// `traps_with_rust_backtraces_on` again with it set.
#[test]
fn a_trap_costs_the_host_little_with_rust_backtraces_on() {
    // The other process's cases run while this one's wait.
    let _serial = SERIAL.blocking_lock();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "traps_with_rust_backtraces_on",
            "--nocapture",
        ])
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "{text}");
}

/// Twenty traps (panics and memory bombs) beside a neighbour. Run by the test above.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by a_trap_costs_the_host_little_with_rust_backtraces_on"]
async fn traps_with_rust_backtraces_on() {
    let _serial = SERIAL.lock().await;
    let engine = Engine::new().unwrap();
    let p = producer(&[]);
    let plugin = probe(&engine, |o| o.limits.memory_bytes = 16 * MIB);
    let mut instances = Vec::new();
    for _ in 0..20 {
        instances.push(start(&plugin, &p, &[]).await);
    }
    let (reasons, cost) = beside_a_neighbour(&p, &engine, async {
        let mut reasons = Vec::new();
        for (n, i) in instances.iter_mut().enumerate() {
            let event: &[u8] = if n % 2 == 0 { b"trap" } else { b"grow 100" };
            reasons.push(trapped(i.handle(event).await));
        }
        reasons
    })
    .await;
    assert!(reasons[0].contains("panicked"), "{}", reasons[0]);
    assert!(reasons[1].contains("memory limit"), "{}", reasons[1]);
    // Resolving one Rust backtrace took 0.3 s and 180 MB.
    cost.within(Duration::from_secs(2), 16 * MIB);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_the_host_refuses_are_refused_in_one_line() {
    let _serial = SERIAL.lock().await;
    let engine = Engine::new().unwrap();
    let p = producer(&[]);
    let topic = create_topic("hostile-refused", 1);
    let plugin = probe(&engine, |o| o.acl = TopicAcl::new([topic.as_str()]));
    let mut i = start(&plugin, &p, &[]).await;
    let long_topic = "t".repeat(100_000);
    let ((denied, large, invalid, long), cost) = beside_a_neighbour(&p, &engine, async {
        (
            failed(i.handle(b"publish elsewhere k v").await),
            failed(
                i.handle(format!("publish-size {topic} 2000000").as_bytes())
                    .await,
            ),
            failed(i.handle(b"publish bad/topic k v").await),
            failed(
                i.handle(format!("publish {long_topic} k v").as_bytes())
                    .await,
            ),
        )
    })
    .await;
    assert_eq!(
        denied,
        "not authorized: plugin `probe` may not publish to topic `elsewhere`"
    );
    assert!(large.starts_with("record too large: 20000"), "{large}");
    assert!(
        invalid.contains("invalid topic name `bad/topic`: only ASCII letters"),
        "{invalid}"
    );
    // The error shows a bounded part of a huge name.
    assert!(long.contains("longer than 249 characters"), "{long}");
    assert!(long.len() < 300, "{} bytes: {long}", long.len());
    assert_eq!(i.stats().refused, 4);
    cost.within(Duration::from_secs(5), 8 * MIB);
    // Several times the limit is still a typed answer; far beyond it, lifting the value out
    // of guest memory is refused by the host call's budget: a trap.
    let e = failed(
        i.handle(format!("publish-size {topic} 6000000").as_bytes())
            .await,
    );
    assert!(e.starts_with("record too large: 6000"), "{e}");
    let reason = trapped(
        i.handle(format!("publish-size {topic} 20000000").as_bytes())
            .await,
    );
    assert!(reason.contains("too much data"), "{reason}");
}

/// Headers are counted and sized before anything is copied: 2,000 headers sharing one 1 MiB
/// buffer cost the host nothing, on the producer and on the capture sink alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliased_headers_are_refused_before_they_are_copied() {
    let _serial = SERIAL.lock().await;
    let engine = Engine::new().unwrap();
    let p = producer(&[]);
    let topic = create_topic("hostile-headers", 1);
    let plugin = probe(&engine, |_| {});
    let mut kafka = start(&plugin, &p, &[]).await;
    let mut capture = plugin
        .instantiate_capture(CaptureOptions::new(1))
        .await
        .unwrap();
    capture.init(&[]).await.unwrap();
    let too_many = format!("aliased-headers {topic} 2000 1024");
    let too_big = format!("aliased-headers {topic} 900 1024");
    let (errors, cost) = beside_a_neighbour(&p, &engine, async {
        let mut errors = Vec::new();
        for i in [&mut kafka, &mut capture] {
            errors.push(failed(i.handle(too_many.as_bytes()).await));
            errors.push(failed(i.handle(too_big.as_bytes()).await));
        }
        errors
    })
    .await;
    for (n, e) in errors.iter().enumerate() {
        if n % 2 == 0 {
            assert_eq!(e, "not-allowed", "{n}");
        } else {
            // Refused as soon as the headers counted passed the 1 MiB limit.
            let size: u64 = e
                .strip_prefix("record-too-large(")
                .and_then(|r| r.strip_suffix(')'))
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{n}: {e}"));
            assert!((1 << 20..3 << 20).contains(&size), "{n}: {e}");
        }
    }
    cost.within(Duration::from_secs(5), 8 * MIB);
    assert!(capture.take_captured().is_empty());
    // A few aliased headers within the limits still go through, with every byte.
    let small = format!("aliased-headers {topic} 3 1");
    kafka.handle(small.as_bytes()).await.unwrap();
    kafka.flush().await.unwrap();
    let got = consume_exactly(&brokers(), &topic, 1, Duration::from_secs(30));
    assert_eq!(got[0].headers.len(), 3);
    assert!(got[0]
        .headers
        .iter()
        .all(|(k, v)| k == "h" && v.as_deref() == Some(&[b'h'; 1024][..])));
}

/// Every topic name a plugin uses enters the producer's metadata: an instance gets a bounded
/// number of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_topic_names_is_bounded() {
    let _serial = SERIAL.lock().await;
    let engine = Engine::new().unwrap();
    // Topics that do not exist fail fast here instead of waiting a minute for metadata.
    let p = producer(&[("max.block.ms", "250")]);
    let plugin = probe(&engine, |o| {
        o.max_topics = 10;
        o.limits.call_time = Duration::from_secs(30);
    });
    let mut i = start(&plugin, &p, &[]).await;
    let (r, cost) = beside_a_neighbour(&p, &engine, i.handle(b"topics flood 100000")).await;
    let message = failed(r);
    assert!(message.starts_with("100000 of 100000 refused"), "{message}");
    assert!(
        message.contains("last: record 99999: quota exceeded: plugin `probe` may publish to at most 10 distinct topics per instance"),
        "{message}"
    );
    assert_eq!(i.topics(), 10);
    assert!(
        p.stats().metadata_topics <= 11,
        "{} topics in the producer's metadata",
        p.stats().metadata_topics
    );
    cost.within(Duration::from_secs(20), 8 * MIB);
}

/// No sockets, no files, no environment: each attempt fails inside the plugin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_network_files_and_environment_are_closed() {
    let _serial = SERIAL.lock().await;
    let engine = Engine::new().unwrap();
    let p = producer(&[]);
    let plugin = probe(&engine, |_| {});
    let mut i = start(&plugin, &p, &[]).await;
    let broker = brokers();
    let broker = broker.split(',').next().unwrap().to_string();
    let (results, cost) = beside_a_neighbour(&p, &engine, async {
        vec![
            failed(i.handle(format!("connect {broker}").as_bytes()).await),
            failed(i.handle(b"connect 127.0.0.1:9").await),
            failed(i.handle(format!("udp {broker}").as_bytes()).await),
            failed(i.handle(b"read-file /etc/passwd").await),
            i.handle(b"env").await.map(|()| String::new()).unwrap(),
        ]
    })
    .await;
    for r in &results[..3] {
        assert!(
            r.contains("cannot connect") || r.contains("cannot send"),
            "{results:?}"
        );
    }
    assert!(results[3].starts_with("cannot read"), "{results:?}");
    cost.within(Duration::from_secs(5), 8 * MIB);
}

/// An instance that never flushes and is dropped: its records are still delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_a_plugin_that_never_flushes_are_delivered() {
    let _serial = SERIAL.lock().await;
    let engine = Engine::new().unwrap();
    let p = producer(&[("linger.ms", "200")]);
    let topic = create_topic("hostile-noflush", 2);
    let plugin = probe(&engine, |_| {});
    let mut i = start(&plugin, &p, &[]).await;
    let event = format!("publish-n {topic} 500");
    let ((), cost) = beside_a_neighbour(&p, &engine, async {
        i.handle(event.as_bytes()).await.unwrap();
        drop(i);
    })
    .await;
    cost.within(Duration::from_secs(5), 16 * MIB);
    p.flush().await;
    let got = consume_exactly(&brokers(), &topic, 500, Duration::from_secs(30));
    assert_eq!(got.len(), 500);
}

/// A spinning plugin yields its thread every epoch tick: with as many spinners as runtime
/// threads, other tasks still run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spinning_plugins_share_their_threads() {
    let _serial = SERIAL.lock().await;
    let engine = Engine::new().unwrap();
    let p = producer(&[]);
    let plugin = probe(&engine, |o| o.limits.cpu_time = Duration::from_millis(1500));
    let mut spinners = Vec::new();
    for _ in 0..2 {
        spinners.push(start(&plugin, &p, &[]).await);
    }
    let gap = Arc::new(AtomicU64::new(0));
    let g = gap.clone();
    let ticker = tokio::spawn(async move {
        let mut last = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let now = Instant::now();
            g.fetch_max((now - last).as_millis() as u64, Ordering::Relaxed);
            last = now;
        }
    });
    let (reasons, _) = beside_a_neighbour(&p, &engine, async {
        // From here: the neighbour's start compiled a plugin on a runtime thread.
        gap.store(0, Ordering::Relaxed);
        let tasks: Vec<_> = spinners
            .into_iter()
            .map(|mut s| tokio::spawn(async move { s.handle(b"loop").await }))
            .collect();
        let mut reasons = Vec::new();
        for t in tasks {
            reasons.push(trapped(t.await.unwrap()));
        }
        reasons
    })
    .await;
    ticker.abort();
    assert!(
        reasons.iter().all(|r| r.contains("CPU time limit")),
        "{reasons:?}"
    );
    let gap = gap.load(Ordering::Relaxed);
    // A tick is 10 ms; a yield that skipped the runtime's timers left them waiting 0.5 s.
    assert!(gap < 250, "another task waited {gap} ms for a thread");
}

/// A component with the plugin world's exports and `extra` core modules and instances: the
/// exports return `ok` without doing anything.
fn component(extra: &str) -> Vec<u8> {
    component_with(extra, "")
}

/// Like [`component`], with `handle` running `body` first.
fn component_with(extra: &str, body: &str) -> Vec<u8> {
    component_exporting(extra, body, "")
}

/// Like [`component_with`], with more component-level `exports` (their core functions may
/// use `$i`'s `init`, which returns `ok`).
fn component_exporting(extra: &str, body: &str, exports: &str) -> Vec<u8> {
    let text = format!(
        r#"(component
  (core module $main
    (memory (export "memory") 1)
    (global $bump (mut i32) (i32.const 1024))
    (func (export "realloc") (param i32 i32 i32 i32) (result i32)
      (local $p i32)
      (local.set $p (i32.and (i32.add (global.get $bump) (i32.const 7)) (i32.const -8)))
      (global.set $bump (i32.add (local.get $p) (local.get 3)))
      (local.get $p))
    (func (export "init") (param i32 i32) (result i32) (i32.const 0))
    (func (export "handle") (param i32 i32) (result i32) {body} (i32.const 0))
    (func (export "finish") (result i32) (i32.const 0))
    (func (export "wrong_finish") (param i32) (result i32) (i32.const 0)))
  (core instance $i (instantiate $main))
  {extra}
  (type $config (list (tuple string string)))
  (func (export "init") (param "config" $config) (result (result (error string)))
    (canon lift (core func $i "init") (memory $i "memory") (realloc (func $i "realloc"))))
  (func (export "handle") (param "event" (list u8)) (result (result (error string)))
    (canon lift (core func $i "handle") (memory $i "memory") (realloc (func $i "realloc"))))
  {exports})"#
    );
    wat::parse_str(text).unwrap()
}

/// `n` instances of a core module holding `what`.
fn many(what: &str, n: usize) -> String {
    let mut s = format!("(core module $extra {what})\n");
    for _ in 0..n {
        s.push_str("(core instance (instantiate $extra))\n");
    }
    s
}

/// Every memory and table of an instance counts against one budget, and their numbers are
/// capped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_memories_or_tables_share_one_budget() {
    let _serial = SERIAL.lock().await;
    let engine = Engine::new().unwrap();
    let on_demand = Engine::with_options(EngineOptions { max_instances: 0 }).unwrap();
    let p = producer(&[]);
    let load = |engine: &Engine, name: &str, extra: &str| {
        let mut options = PluginOptions::new(name);
        options.limits.memory_bytes = 8 * MIB;
        engine.load(&component(extra), options)
    };
    // The harmless shape instantiates and runs.
    let fine = load(&engine, "fine", "").unwrap();
    let mut i = fine.instantiate(&p).await.unwrap();
    i.init(&[]).await.unwrap();
    i.handle(b"x").await.unwrap();
    let cases = [
        // A second memory of 8 MiB: within a per-memory limit of 8 MiB, with the first not.
        (
            "memories",
            &engine,
            many("(memory 128)", 1),
            "beyond its memory limit of 8 MiB",
        ),
        // 6 tables of 100,000 elements: 4.8 MB of host memory at 8 bytes an element.
        (
            "tables",
            &engine,
            many("(table 100000 funcref)", 6),
            "grow its tables beyond its memory limit",
        ),
        // More than an instance's share of the pool: refused when loaded.
        ("count", &engine, many("(memory 1)", 3), "memories"),
        (
            "big-table",
            &engine,
            many("(table 200000 funcref)", 1),
            "exceeds the limit of 100000",
        ),
        // Without the pool, the store's own limits count them.
        (
            "count-on-demand",
            &on_demand,
            many("(memory 1)", 3),
            "memory count too high",
        ),
        (
            "tables-on-demand",
            &on_demand,
            many("(table 1 funcref)", 9),
            "table count too high",
        ),
    ];
    let (results, cost) = beside_a_neighbour(&p, &engine, async {
        let mut results = Vec::new();
        for (name, engine, extra, _) in &cases {
            results.push(match load(engine, name, extra) {
                Err(e) => e.to_string(),
                Ok(plugin) => match plugin.instantiate(&p).await {
                    Err(e @ PluginError::Instantiate { .. }) => e.to_string(),
                    other => panic!("{name}: expected a refusal, got {:?}", other.map(drop)),
                },
            });
        }
        results
    })
    .await;
    for ((name, _, _, want), e) in cases.iter().zip(results) {
        assert!(e.contains(&format!("`{name}`")), "{e}");
        assert!(e.contains(want), "{name}: {e}");
        assert_eq!(e.lines().count(), 1, "{e}");
    }
    // Tables live on the host's heap: up to the plugin's 8 MiB of them, then no more.
    cost.within(Duration::from_secs(5), 16 * MIB);
}

/// wasmtime reports a growth past 4 GiB as failed without asking the limiter: alternating a
/// small growth with an impossible one must not grow memory past the budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impossible_growths_do_not_open_the_budget() {
    let _serial = SERIAL.lock().await;
    let engine = Engine::new().unwrap();
    let p = producer(&[]);
    let mut options = PluginOptions::new("grower");
    options.limits.memory_bytes = 8 * MIB;
    let body = "(loop $l
        (drop (memory.grow (i32.const 16)))
        (drop (memory.grow (i32.const 65536)))
        (br $l))";
    let plugin = engine.load(&component_with("", body), options).unwrap();
    let mut i = plugin.instantiate(&p).await.unwrap();
    i.init(&[]).await.unwrap();
    let (r, cost) = beside_a_neighbour(&p, &engine, i.handle(b"x")).await;
    match r {
        Err(PluginError::Trapped { reason, .. }) => {
            assert!(
                reason.contains("beyond its memory limit of 8 MiB"),
                "{reason}"
            )
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    assert!(i.resources().memory_bytes <= 8 * MIB, "{:?}", i.resources());
    cost.within(Duration::from_secs(5), 8 * MIB);
}

/// The pool holds an instance's whole share for every slot: instances of a plugin that uses
/// all its tables and memories leave room for the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greedy_instances_cannot_take_other_slots() {
    let _serial = SERIAL.lock().await;
    let engine = Engine::with_options(EngineOptions { max_instances: 3 }).unwrap();
    let p = producer(&[]);
    // 8 tables (the most an instance may have) and 2 memories.
    let greedy = engine
        .load(
            &component(&format!(
                "{}{}",
                many("(table 10 funcref)", 7),
                "(core module $m2 (memory 1)) (core instance (instantiate $m2))"
            )),
            PluginOptions::new("greedy"),
        )
        .unwrap();
    let mut live = Vec::new();
    for _ in 0..2 {
        live.push(greedy.instantiate(&p).await.unwrap());
    }
    let hello = engine
        .load_file(&guest("hello"), PluginOptions::new("hello"))
        .unwrap();
    let mut h = hello.instantiate(&p).await.unwrap();
    h.init(&pairs(&[("topic", "unused")])).await.unwrap();
}

/// A plugin that floods the producer's buffer does not get its neighbours discarded: a publish
/// that cannot be queued within the call's wall time answers `timed-out`, and the instance
/// goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_buffer_times_out_publishes_not_instances() {
    let _serial = SERIAL.lock().await;
    let engine = Engine::new().unwrap();
    let topic = create_topic("hostile-flood", 1);
    let proxy = wafka_tests::Proxy::start(&brokers(), 1);
    let p = Producer::from_properties([
        ("bootstrap.servers", proxy.bootstrap().as_str()),
        ("buffer.memory", "262144"),
        ("batch.size", "16384"),
        ("linger.ms", "0"),
    ])
    .unwrap();
    let plugin = probe(&engine, |o| {
        o.limits.call_time = Duration::from_millis(1000)
    });
    let mut flooder = start(&plugin, &p, &[]).await;
    let mut victim = start(&plugin, &p, &[]).await;
    victim
        .handle(format!("publish {topic} k first").as_bytes())
        .await
        .unwrap();
    victim.flush().await.unwrap();
    // The broker stops answering: nothing leaves the buffer.
    proxy.set_fault(1, wafka_tests::Fault::HoldAnswers);
    let r = flooder
        .handle(format!("publish-n {topic} 100000").as_bytes())
        .await;
    assert!(failed(r).contains("timed out"));
    let started = Instant::now();
    let e = failed(
        victim
            .handle(format!("publish {topic} k second").as_bytes())
            .await,
    );
    assert!(
        e.starts_with("timed out: the record could not be queued within this call's wall time"),
        "{e}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(!victim.is_stopped());
    proxy.set_fault(1, wafka_tests::Fault::None);
    victim
        .handle(format!("publish {topic} k third").as_bytes())
        .await
        .unwrap();
}

/// A `finish` export of the wrong type is refused when the plugin loads (not on every
/// instance); one of the right type is called; a component without it still loads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finish_export_is_checked_at_load() {
    let engine = Engine::new().unwrap();
    let p = producer(&[]);
    let wrong = component_exporting(
        "",
        "",
        r#"(func (export "finish") (param "n" u32) (result (result (error string)))
    (canon lift (core func $i "wrong_finish") (memory $i "memory") (realloc (func $i "realloc"))))"#,
    );
    let e = engine
        .load(&wrong, PluginOptions::new("wrong-finish"))
        .unwrap_err();
    assert!(matches!(e, LoadError::WrongWorld { .. }), "{e:?}");
    assert!(e.to_string().contains("`finish`"), "{e}");
    let right = component_exporting(
        "",
        "",
        r#"(func (export "finish") (result (result (error string)))
    (canon lift (core func $i "finish") (memory $i "memory") (realloc (func $i "realloc"))))"#,
    );
    let plugin = engine.load(&right, PluginOptions::new("finishes")).unwrap();
    let mut i = plugin.instantiate(&p).await.unwrap();
    assert!(i.has_finish());
    i.init(&[]).await.unwrap();
    i.finish().await.unwrap();
    let without = engine
        .load(&component(""), PluginOptions::new("plain"))
        .unwrap();
    let mut i = without.instantiate(&p).await.unwrap();
    assert!(!i.has_finish());
    i.finish().await.unwrap();
}

/// Components for another world or with imports the host does not give are refused at load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_for_another_world_are_refused_at_load() {
    let engine = Engine::new().unwrap();
    let with_import = wat::parse_str(
        r#"(component (import "evil:host/backdoor" (instance (export "open" (func)))))"#,
    )
    .unwrap();
    let other_world = wat::parse_str(
        r#"(component
  (core module $m (func (export "run") (result i32) (i32.const 0)))
  (core instance $i (instantiate $m))
  (func (export "run") (result (result)) (canon lift (core func $i "run"))))"#,
    )
    .unwrap();
    for (name, bytes) in [("backdoor", with_import), ("cli", other_world)] {
        let e = engine.load(&bytes, PluginOptions::new(name)).unwrap_err();
        assert!(matches!(e, LoadError::WrongWorld { .. }), "{name}: {e:?}");
        let text = e.to_string();
        assert!(
            text.starts_with(&format!("`{name}` does not fit wafka's plugin world")),
            "{text}"
        );
        assert_eq!(text.lines().count(), 1, "{text}");
    }
}

/// With the producer on threads of its own, plugins spinning on every runtime thread do not
/// slow a neighbour's acknowledged publishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spinning_plugins_do_not_delay_the_producers_io() {
    let _serial = SERIAL.lock().await;
    let engine = Engine::new().unwrap();
    let io = wafka::ProducerRuntime::new(1).unwrap();
    let b = brokers();
    let config = wafka_producer::ProducerConfig::from_properties([
        ("bootstrap.servers", b.as_str()),
        ("linger.ms", "0"),
    ])
    .unwrap();
    let shared = wafka_producer::Producer::new(config.clone());
    let apart = io.producer(config);
    let topic = create_topic("hostile-io", 1);
    let neighbour = engine
        .load_file(&guest("probe"), {
            let mut o = PluginOptions::new("neighbour");
            o.autoflush = wafka::Autoflush::On;
            o
        })
        .unwrap();
    let spinner = probe(&engine, |o| o.limits.cpu_time = Duration::from_millis(2000));
    let mut p50 = Vec::new();
    // The same producer settings on the plugins' runtime, for comparison.
    for p in [&shared, &apart] {
        let mut n = start(&neighbour, p, &[]).await;
        let event = format!("publish {topic} k v");
        n.handle(event.as_bytes()).await.unwrap();
        let mut spinners = Vec::new();
        for _ in 0..2 {
            let mut s = start(&spinner, p, &[]).await;
            spinners.push(tokio::spawn(async move { s.handle(b"loop").await }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut took = Vec::new();
        for _ in 0..20 {
            let t = Instant::now();
            n.handle(event.as_bytes()).await.unwrap();
            took.push(t.elapsed());
        }
        for s in spinners {
            let _ = s.await;
        }
        took.sort();
        p50.push(took[took.len() / 2]);
    }
    // Sharing the plugins' threads, each step of a round trip waits for a spinner's tick
    // (about 20 ms); apart, about a millisecond (the bound allows for three busy threads on a
    // noisy two-core machine: it failed once at 10 ms in a CI run beside other builds).
    let [shared, apart] = [p50[0], p50[1]];
    assert!(
        apart < Duration::from_millis(25),
        "apart: {apart:?} (shared: {shared:?})"
    );
    // The comparison is a measurement, not the promise: since the plugin-output writer thread
    // and the instance-start accounting landed (session 8), the shared producer is no longer
    // slower beside the spinners (2–8 ms both ways, CI and loaded machines alike). Why is
    // still to be found; the promise above stands either way.
    eprintln!("p50 of an acknowledged publish: apart {apart:?}, shared {shared:?}");
}
