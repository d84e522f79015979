//! The wasm runtime alone, with no broker: how fast an instance starts, what an idle one costs,
//! and what a call into a plugin costs, with wasmtime's pooling allocator (what wafka uses)
//! beside on-demand allocation (each instance's memories, tables and fiber stacks allocated
//! when needed) in the same run.
//!
//! ```text
//! cargo bench -p wafka-tests --bench instances
//! ```
//!
//! Instances use the capture sink (`wafka test`'s), so no broker or producer is involved.
//! *start* is `instantiate` (a new store, memories from the plugin's image) and *start + init*
//! adds the plugin's `init`; *idle* is the growth of the process's resident memory per live
//! instance with `WAFKA_BENCH_LIVE` of them alive; *handle* is one call of the `probe`
//! plugin's `noop` event (the host calling in and the plugin returning), *publish* one `bench`
//! record published to the capture sink from inside one `handle` call.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `WAFKA_BENCH_STARTS` | 2000 | timed starts per row (after 100 untimed) |
//! | `WAFKA_BENCH_LIVE` | 1000 | instances alive at once for the idle-memory row |
//! | `WAFKA_BENCH_CALLS` | 200000 | timed `handle` calls per row |

use std::time::Instant;

use wafka::{CaptureOptions, Engine, EngineOptions, Plugin, PluginInstance, PluginOptions};
use wafka_tests::bench::env_usize;

const WARMUP: usize = 100;

/// Resident memory of this process, from /proc/self/statm.
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn p99(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[(v.len() * 99 / 100).min(v.len() - 1)]
}

struct Row {
    start_p50: u64,
    start_p99: u64,
    init_p50: u64,
    idle_kib: usize,
    live_start_ms: u128,
    handle_ns: u64,
    publish_ns: u64,
}

fn config() -> Vec<(String, String)> {
    vec![("topic".into(), "bench".into())]
}

async fn instance(plugin: &Plugin) -> PluginInstance {
    plugin
        .instantiate_capture(CaptureOptions::new(1))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn measure(pooling: bool, starts: usize, live: usize, calls: usize) -> Row {
    let engine = Engine::with_options(EngineOptions {
        max_instances: if pooling { live as u32 + 8 } else { 0 },
    })
    .unwrap();
    let hello = engine
        .load_file(&wafka_tests::guest("hello"), PluginOptions::new("hello"))
        .unwrap();
    let probe = engine
        .load_file(&wafka_tests::guest("probe"), PluginOptions::new("probe"))
        .unwrap();
    // Starting: instantiate, then instantiate + init, each instance dropped at once.
    let mut start = Vec::with_capacity(starts);
    let mut init = Vec::with_capacity(starts);
    for n in 0..WARMUP + starts {
        let t = Instant::now();
        let mut i = instance(&hello).await;
        let started = t.elapsed();
        i.init(&config()).await.unwrap();
        let inited = t.elapsed();
        if n >= WARMUP {
            start.push(started.as_nanos() as u64);
            init.push(inited.as_nanos() as u64);
        }
    }
    // Idle: `live` instances after init.
    let before = rss();
    let t = Instant::now();
    let mut all = Vec::with_capacity(live);
    for _ in 0..live {
        let mut i = instance(&hello).await;
        i.init(&config()).await.unwrap();
        all.push(i);
    }
    let live_start_ms = t.elapsed().as_millis();
    let idle_kib = rss().saturating_sub(before) / live.max(1) / 1024;
    drop(all);
    // Calls.
    let mut p = instance(&probe).await;
    p.init(&[]).await.unwrap();
    for _ in 0..WARMUP * 10 {
        p.handle(b"noop").await.unwrap();
    }
    let t = Instant::now();
    for _ in 0..calls {
        p.handle(b"noop").await.unwrap();
    }
    let handle_ns = (t.elapsed().as_nanos() / calls as u128) as u64;
    // Publishing into the capture (taken away between calls so it stays small).
    let per_call = 1000;
    let event = format!("bench bench {per_call} 100");
    p.handle(event.as_bytes()).await.unwrap();
    p.take_captured();
    let rounds = (calls / per_call).max(1);
    let t = Instant::now();
    for _ in 0..rounds {
        p.handle(event.as_bytes()).await.unwrap();
        p.take_captured();
    }
    let publish_ns = (t.elapsed().as_nanos() / (rounds * per_call) as u128) as u64;
    Row {
        start_p50: median(start.clone()),
        start_p99: p99(start),
        init_p50: median(init),
        idle_kib,
        live_start_ms,
        handle_ns,
        publish_ns,
    }
}

fn main() {
    let starts = env_usize("WAFKA_BENCH_STARTS", 2000);
    let live = env_usize("WAFKA_BENCH_LIVE", 1000);
    let calls = env_usize("WAFKA_BENCH_CALLS", 200_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pooled = runtime.block_on(measure(true, starts, live, calls));
    let on_demand = runtime.block_on(measure(false, starts, live, calls));
    let ratio = |a: u64, b: u64| format!("{:.2}×", a as f64 / b.max(1) as f64);
    println!(
        "\nRust `hello` and `probe`, capture sink, {starts} starts, {live} live, {calls} calls:\n"
    );
    println!("| allocation | start p50 µs | start p99 µs | start + init p50 µs | {live} live: started in ms | idle KiB / instance | handle ns | publish ns |");
    println!("|---|--:|--:|--:|--:|--:|--:|--:|");
    for (name, r) in [("pooling", &pooled), ("on demand", &on_demand)] {
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {} | {} | {} | {} |",
            r.start_p50 as f64 / 1000.0,
            r.start_p99 as f64 / 1000.0,
            r.init_p50 as f64 / 1000.0,
            r.live_start_ms,
            r.idle_kib,
            r.handle_ns,
            r.publish_ns
        );
    }
    println!(
        "| **pooling / on demand** | **{}** | {} | **{}** | {} | {} | **{}** | {} |",
        ratio(pooled.start_p50, on_demand.start_p50),
        ratio(pooled.start_p99, on_demand.start_p99),
        ratio(pooled.init_p50, on_demand.init_p50),
        ratio(pooled.live_start_ms as u64, on_demand.live_start_ms as u64),
        ratio(pooled.idle_kib as u64, on_demand.idle_kib as u64),
        ratio(pooled.handle_ns, on_demand.handle_ns),
        ratio(pooled.publish_ns, on_demand.publish_ns),
    );
}
