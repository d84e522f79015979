//! The hostile suite: plugins that each do one bad thing, run in the host next to a
//! well-behaved one. Each must end with a clear error naming the plugin and the cause, in
//! bounded time, while the host and the other plugin go on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wafka::{Engine, Plugin, PluginError, PluginInstance, PluginOptions, TopicAcl};
use wafka_producer::Producer;
use wafka_tests::{brokers, guest};

fn producer() -> Producer {
    let b = brokers();
    Producer::from_properties([("bootstrap.servers", b.as_str())]).unwrap()
}

fn probe(engine: &Engine, f: impl FnOnce(&mut PluginOptions)) -> Plugin {
    let mut options = PluginOptions::new("probe");
    f(&mut options);
    engine.load_file(&guest("probe"), options).unwrap()
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

/// A plugin that sleeps (a WASI `poll`, which epoch interruption cannot stop) in `handle` or
/// `init` is stopped at its wall-time limit, and its instance is discarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleeping_plugin_is_stopped_at_its_wall_time_limit() {
    let engine = Engine::new().unwrap();
    let plugin = probe(&engine, |o| o.limits.call_time = Duration::from_millis(500));
    let p = producer();
    let mut i = start(&plugin, &p, &[]).await;
    let t = Instant::now();
    let e = i.handle(b"sleep 60000").await.unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let text = e.to_string();
    assert!(
        text.contains("probe") && text.contains("wall-time limit of 500 ms"),
        "{text}"
    );
    assert!(
        matches!(i.handle(b"flush").await, Err(PluginError::Stopped(_))),
        "an instance that overran is not used again"
    );
    // init, too.
    let mut j = plugin.instantiate(&p).await.unwrap();
    let t = Instant::now();
    let e = j
        .init(&[("sleep-init".to_string(), "60000".to_string())])
        .await
        .unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(e.to_string().contains("wall-time limit"), "{e}");
}

/// Host calls do not refill the CPU budget: a plugin that publishes to a denied topic in a loop
/// is stopped at its CPU limit, not at its wall-time limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_calls_do_not_refill_the_cpu_budget() {
    let engine = Engine::new().unwrap();
    let plugin = probe(&engine, |o| {
        o.limits.cpu_time = Duration::from_millis(300);
        o.limits.call_time = Duration::from_secs(60);
        o.acl = TopicAcl::new(["allowed"]);
    });
    let p = producer();
    let mut i = start(&plugin, &p, &[]).await;
    let t = Instant::now();
    let e = i.handle(b"publish-loop denied").await.unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(e.to_string().contains("CPU time limit of 300 ms"), "{e}");
}

/// A spinning plugin shares its thread: on a single-threaded runtime, other tasks keep running
/// while it burns its CPU budget.
#[tokio::test(flavor = "current_thread")]
async fn a_spinning_plugin_shares_its_thread() {
    let engine = Engine::new().unwrap();
    let plugin = probe(&engine, |o| o.limits.cpu_time = Duration::from_millis(1500));
    let p = producer();
    let mut i = start(&plugin, &p, &[]).await;
    let gap = Arc::new(AtomicU64::new(0));
    let ticker = {
        let gap = gap.clone();
        tokio::spawn(async move {
            let mut last = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(5)).await;
                let now = Instant::now();
                gap.fetch_max((now - last).as_millis() as u64, Ordering::Relaxed);
                last = now;
            }
        })
    };
    tokio::task::yield_now().await;
    let t = Instant::now();
    let e = i.handle(b"loop").await.unwrap_err();
    assert!(e.to_string().contains("CPU time limit"), "{e}");
    assert!(
        t.elapsed() >= Duration::from_millis(1400),
        "{:?}",
        t.elapsed()
    );
    // Let the ticker see the last stretch too.
    tokio::time::sleep(Duration::from_millis(50)).await;
    ticker.abort();
    let gap = gap.load(Ordering::Relaxed);
    assert!(gap < 500, "another task waited {gap} ms for the thread");
}

/// Deep recursion is reported as a stack overflow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_recursion_is_a_stack_overflow() {
    let engine = Engine::new().unwrap();
    let plugin = probe(&engine, |_| {});
    let p = producer();
    let mut i = start(&plugin, &p, &[]).await;
    i.handle(b"recurse 10").await.unwrap();
    let e = i.handle(b"recurse 100000000").await.unwrap_err();
    assert!(matches!(e, PluginError::Trapped { .. }), "{e:?}");
    assert!(e.to_string().contains("stack overflow"), "{e}");
}
