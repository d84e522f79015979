//! `wafka serve` under load: N tenants, each with its own token and its own instance of the
//! Rust `hello` plugin, publishing at once over HTTP to the local broker, beside `wafka run`'s
//! way (one plugin instance fed events in a loop) in the same run.
//!
//! ```text
//! cargo bench -p wafka-tests --bench serve
//! ```
//!
//! Each tenant has one client (reqwest, in this process, over loopback) posting requests of
//! `WAFKA_BENCH_EVENTS` events (`key:value` lines of 100 bytes) back to back for
//! `WAFKA_BENCH_SECONDS`. Reported: the server's start (compiling once, then one instance per
//! tenant instantiated and `init`ed) per instance, resident memory per tenant after start,
//! records per second, the per-tenant spread as Jain's fairness index ((Σx)² / (n·Σx²), 1.0 when
//! every tenant got the same), request latency p50/p99, and the ratio to `wafka run`'s
//! records per second. Clients and server share the machine's cores.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `WAFKA_BENCH_TENANTS` | `100,1000` | tenant counts, one row each |
//! | `WAFKA_BENCH_SECONDS` | 10 | load per row |
//! | `WAFKA_BENCH_EVENTS` | 10 | events per request |

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wafka::serve::{Producers, ServeConfig, Server};
use wafka::{Engine, EngineOptions, PluginOptions};
use wafka_producer::Producer;
use wafka_tests::bench::{env_list, env_usize};

/// Resident memory of this process, from /proc/self/statm.
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn percentile(v: &mut [u64], p: usize) -> u64 {
    v.sort_unstable();
    v[(v.len() * p / 100).min(v.len() - 1)]
}

fn producer(brokers: &str) -> Producer {
    Producer::from_properties([("bootstrap.servers", brokers), ("linger.ms", "5")]).unwrap()
}

fn body(events: usize, seq: &mut u64) -> String {
    let mut s = String::new();
    for _ in 0..events {
        *seq += 1;
        // 100 bytes of value.
        s.push_str(&format!("k{}:{:0>100}\n", *seq % 64, *seq));
    }
    s
}

struct Row {
    tenants: usize,
    start_us_per_instance: f64,
    kib_per_tenant: usize,
    records_per_s: f64,
    jain: f64,
    p50_ms: f64,
    p99_ms: f64,
    failed: u64,
}

async fn serve_row(brokers: &str, topic: &str, tenants: usize, seconds: u64, events: usize) -> Row {
    let dir = std::env::temp_dir().join(format!(
        "wafka-bench-serve-{}-{tenants}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let hello = wafka_tests::guest("hello");
    // Every client here comes from one address, as behind a load balancer: no cap per address.
    let mut text = format!(
        "[kafka]\nbootstrap.servers = \"{brokers}\"\nlinger.ms = 5\n[http]\nlisten = \"127.0.0.1:0\"\nmax_connections_per_address = 10000\n"
    );
    // Records of 1 KiB at most: 1,000 tenants' shares (each at least one largest record in a
    // batch of its own) fit in the default 32 MiB of buffer.memory.
    for t in 0..tenants {
        text.push_str(&format!(
            "[tenants.t{t}]\ntoken_sha256 = \"{}\"\ntopics = [\"{topic}\"]\nmax_instances = 1\nmax_record_bytes = 1024\n[[tenants.t{t}.plugins]]\nname = \"hello\"\npath = \"{}\"\nconfig = {{ topic = \"{topic}\", key-delimiter = \":\" }}\n",
            hex::encode(Sha256::digest(format!("t{t}-token").as_bytes())),
            hello.display()
        ));
    }
    std::fs::write(dir.join("serve.toml"), text).unwrap();
    let config = ServeConfig::load(&dir.join("serve.toml")).unwrap();
    let p = producer(brokers);
    let before = rss();
    let started = Instant::now();
    let producers = Arc::new(Producers::new(p.clone(), Arc::new(Producer::new)));
    let server = Server::start(config, producers).await.unwrap();
    let start_us_per_instance = started.elapsed().as_secs_f64() * 1e6 / tenants as f64;
    let kib_per_tenant = rss().saturating_sub(before) / tenants / 1024;
    let base = format!("http://{}", server.local_addr());
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(tenants)
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for t in 0..tenants {
        let (http, base, stop) = (http.clone(), base.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let url = format!("{base}/v1/tenants/t{t}/plugins/hello/events");
            let token = format!("t{t}-token");
            let (mut records, mut failed, mut latencies, mut seq) = (0u64, 0u64, Vec::new(), 0);
            while !stop.load(Ordering::Relaxed) {
                let body = body(events, &mut seq);
                let t0 = Instant::now();
                let r = http.post(&url).bearer_auth(&token).body(body).send().await;
                let answer: serde_json::Value = match r {
                    Ok(r) if r.status().is_success() => r.json_or_text().await,
                    _ => {
                        failed += 1;
                        continue;
                    }
                };
                latencies.push(t0.elapsed().as_micros() as u64);
                records += answer["records"].as_u64().unwrap_or(0);
                failed += answer["failed"].as_u64().unwrap_or(0);
            }
            (records, failed, latencies)
        }));
    }
    let load = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut per_tenant = Vec::new();
    let mut latencies = Vec::new();
    let mut failed = 0;
    for c in clients {
        let (r, f, l) = c.await.unwrap();
        per_tenant.push(r as f64);
        failed += f;
        latencies.extend(l);
    }
    let elapsed = load.elapsed().as_secs_f64();
    let drained = server.drain(Duration::from_secs(60)).await;
    assert!(drained.flushed, "{drained:?}");
    let total: f64 = per_tenant.iter().sum();
    let squares: f64 = per_tenant.iter().map(|x| x * x).sum();
    Row {
        tenants,
        start_us_per_instance,
        kib_per_tenant,
        records_per_s: total / elapsed,
        jain: if squares > 0.0 {
            total * total / (tenants as f64 * squares)
        } else {
            0.0
        },
        p50_ms: percentile(&mut latencies, 50) as f64 / 1000.0,
        p99_ms: percentile(&mut latencies, 99) as f64 / 1000.0,
        failed,
    }
}

/// `wafka run`'s way: one instance, events handed to `handle` in a loop.
async fn run_row(brokers: &str, topic: &str, seconds: u64, events: usize) -> f64 {
    let engine = Engine::with_options(EngineOptions { max_instances: 4 }).unwrap();
    let plugin = engine
        .load_file(&wafka_tests::guest("hello"), PluginOptions::new("hello"))
        .unwrap();
    let p = producer(brokers);
    let mut i = plugin.instantiate(&p).await.unwrap();
    i.init(&[
        ("topic".into(), topic.into()),
        ("key-delimiter".into(), ":".into()),
    ])
    .await
    .unwrap();
    let mut seq = 0;
    let t0 = Instant::now();
    let mut records = 0;
    while t0.elapsed() < Duration::from_secs(seconds) {
        let b = body(events, &mut seq);
        for line in b.lines() {
            i.handle(line.as_bytes()).await.unwrap();
        }
        records += events;
    }
    let rate = records as f64 / t0.elapsed().as_secs_f64();
    i.flush().await.unwrap();
    p.close().await;
    rate
}

trait JsonOrText {
    async fn json_or_text(self) -> serde_json::Value;
}

impl JsonOrText for reqwest::Response {
    async fn json_or_text(self) -> serde_json::Value {
        let text = self.text().await.unwrap_or_default();
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
    }
}

fn main() {
    let tenants: Vec<usize> = env_list("WAFKA_BENCH_TENANTS")
        .map(|l| l.iter().map(|t| t.parse().expect("a number")).collect())
        .unwrap_or_else(|| vec![100, 1000]);
    let seconds = env_usize("WAFKA_BENCH_SECONDS", 10) as u64;
    let events = env_usize("WAFKA_BENCH_EVENTS", 10);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let brokers = wafka_tests::brokers();
    let topic = wafka_tests::create_topic("bench-serve", 6);
    let run = runtime.block_on(run_row(&brokers, &topic, seconds, events));
    let rows: Vec<Row> = tenants
        .iter()
        .map(|&n| runtime.block_on(serve_row(&brokers, &topic, n, seconds, events)))
        .collect();
    println!(
        "\n`wafka serve`, Rust `hello`, 100-byte values, {events} events per request, {seconds} s per row; `wafka run` (one instance): {run:.0} records/s\n"
    );
    println!("| tenants | start µs / instance | KiB / tenant | records/s | × `wafka run` | Jain's index | request p50 ms | request p99 ms | failed |");
    println!("|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for r in rows {
        println!(
            "| {} | {:.0} | {} | {:.0} | {:.2}× | {:.3} | {:.2} | {:.2} | {} |",
            r.tenants,
            r.start_us_per_instance,
            r.kib_per_tenant,
            r.records_per_s,
            r.records_per_s / run,
            r.jain,
            r.p50_ms,
            r.p99_ms,
            r.failed
        );
    }
}
