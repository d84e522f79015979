//! The `hello` plugin in every guest language, side by side in one run against one broker:
//! component size, load time cold (compiled by wasmtime) and warm (from the disk cache), and the
//! cost of a published record.
//!
//! ```text
//! cargo bench -p wafka-tests --bench languages      # with a broker: WAFKA_TEST_BROKERS=host:port
//! ```
//!
//! Each language's `hello` (examples/<lang>/hello, built by `scripts/build-guests`) gets the same
//! events, `k<n % 7>:<100 bytes>`, so every event is one keyed `publish` of a 100-byte value.
//! "ns per record" is the time of one `handle` call over the run: the host passing the event in,
//! the guest splitting it and calling `publish`, the host copying key and value into the batch.
//! It is what a plugin author pays per record in that language; the producer's own work (batching,
//! sending) runs beside it and is in the CPU column, which counts the whole process. Records are
//! fire-and-forget (autoflush off); the run ends with a flush that must succeed, and the counts
//! are checked against the producer's.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `WAFKA_BENCH_EVENTS` | 100000 | timed events per language (after 5000 untimed) |
//! | `WAFKA_BENCH_ROUNDS` | 3 | timed rounds per language; the table shows the median round |
//! | `WAFKA_BENCH_LANGS` | all | comma-separated subset of `rust,c,zig,python,js,go` |

use std::path::PathBuf;
use std::time::Duration;

use wafka::{ComponentCache, Engine, PluginOptions};
use wafka_producer::Producer;
use wafka_tests::bench::{env_list, env_usize, timed};

const WARMUP_EVENTS: usize = 5000;
const VALUE_SIZE: usize = 100;

/// The languages: name in the table, the name `WAFKA_BENCH_LANGS` uses, the built example.
const LANGUAGES: [(&str, &str, &str); 6] = [
    ("Rust", "rust", "hello"),
    ("C", "c", "hello-c"),
    ("Zig", "zig", "hello-zig"),
    ("Python", "python", "hello-py"),
    ("JavaScript", "js", "hello-js"),
    ("Go", "go", "hello-go"),
];

struct Row {
    language: &'static str,
    size: u64,
    cold: Duration,
    warm: Duration,
    instantiate: Duration,
    /// Per timed round: (wall, CPU) for `events` events.
    rounds: Vec<(Duration, Duration)>,
}

fn main() {
    let events = env_usize("WAFKA_BENCH_EVENTS", 100_000);
    let rounds = env_usize("WAFKA_BENCH_ROUNDS", 3).max(1);
    let chosen = env_list("WAFKA_BENCH_LANGS");
    let brokers = wafka_tests::brokers();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let producer = {
        let _enter = runtime.enter();
        Producer::from_properties([("bootstrap.servers", brokers.as_str())]).expect("producer")
    };
    let cache_dir = std::env::temp_dir().join(format!("wafka-bench-cache-{}", std::process::id()));
    let event_list: Vec<Vec<u8>> = (0..7)
        .map(|k| {
            let mut e = format!("k{k}:").into_bytes();
            e.resize(e.len() + VALUE_SIZE, b'v');
            e
        })
        .collect();

    let mut rows = Vec::new();
    for (language, short, example) in LANGUAGES {
        if chosen
            .as_ref()
            .is_some_and(|c| !c.iter().any(|c| c == short))
        {
            continue;
        }
        let path: PathBuf = wafka_tests::guest(example);
        let size = std::fs::metadata(&path).expect("component").len();
        let topic = wafka_tests::create_topic(&format!("bench-{short}"), 6);
        let options = || PluginOptions::new(example);

        // Cold: compiled now. Warm: a fresh engine reading what the first one cached.
        let engine = Engine::new().expect("engine");
        let (_, (cold, _)) = timed(|| engine.load_file(&path, options()).expect("load"));
        let cache = || ComponentCache::open(&cache_dir).unwrap();
        let engine = Engine::new().expect("engine").with_cache(cache());
        engine
            .load_file(&path, options())
            .expect("load into the cache");
        let engine = Engine::new().expect("engine").with_cache(cache());
        let (plugin, (warm, _)) = timed(|| engine.load_file(&path, options()).expect("load"));
        assert!(
            plugin.load_info().from_cache,
            "{language}: not loaded from the cache"
        );

        let (mut instance, (instantiate, _)) = timed(|| {
            runtime.block_on(async {
                let mut i = plugin.instantiate(&producer).await.expect("instantiate");
                let config = [
                    ("topic".to_string(), topic.clone()),
                    ("key-delimiter".to_string(), ":".to_string()),
                ];
                i.init(&config).await.expect("init");
                i
            })
        });
        let mut run = |n: usize| {
            runtime.block_on(async {
                for e in event_list.iter().cycle().take(n) {
                    instance.handle(e).await.expect("handle");
                }
            })
        };
        run(WARMUP_EVENTS);
        let measured = (0..rounds).map(|_| timed(|| run(events)).1).collect();
        runtime
            .block_on(instance.flush())
            .unwrap_or_else(|e| panic!("{language}: flush: {e}"));
        let stats = instance.stats();
        let total = (WARMUP_EVENTS + rounds * events) as u64;
        assert_eq!(
            (
                stats.events,
                stats.failed_events,
                stats.records,
                stats.refused
            ),
            (total, 0, total, 0),
            "{language}: every event is one record"
        );
        eprintln!("languages: {language} done");
        rows.push(Row {
            language,
            size,
            cold,
            warm,
            instantiate,
            rounds: measured,
        });
    }
    runtime.block_on(producer.close());
    let _ = std::fs::remove_dir_all(&cache_dir);
    print!("{}", table(&rows, events, rounds));
}

fn table(rows: &[Row], events: usize, rounds: usize) -> String {
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
    let size = |b: u64| {
        if b >= 1 << 20 {
            format!("{:.1} MB", b as f64 / f64::from(1 << 20))
        } else {
            format!("{} KB", b.div_ceil(1024))
        }
    };
    let per_record = |d: Duration| d.as_nanos() as f64 / events as f64;
    let median = |row: &Row| {
        let mut r = row.rounds.clone();
        r.sort();
        r[r.len() / 2]
    };
    let rust = rows
        .iter()
        .find(|r| r.language == "Rust")
        .map(|r| per_record(median(r).0));
    let mut out = format!(
        "\nhello in every language: {events} events x {rounds} rounds (median round), one keyed \
         {VALUE_SIZE} B record each, fire-and-forget\n\n\
         | language | component | cold load | warm load | instantiate + init | ns per record | \
         CPU ns per record | records/s | vs Rust |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    );
    for row in rows {
        let (wall, cpu) = median(row);
        let ns = per_record(wall);
        out += &format!(
            "| {} | {} | {} | {} | {} | {:.0} | {:.0} | {:.0} | {} |\n",
            row.language,
            size(row.size),
            ms(row.cold),
            ms(row.warm),
            ms(row.instantiate),
            ns,
            per_record(cpu),
            1e9 / ns,
            rust.map_or("-".to_string(), |r| format!("{:.1}x", ns / r)),
        );
    }
    out
}
