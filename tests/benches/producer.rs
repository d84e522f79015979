//! Producer benchmark: wafka's producer core (`wafka-producer`) and librdkafka
//! (through the `rdkafka` crate) side by side, on the same broker, topic and
//! settings, in one run; then the wasm path: a plugin (`examples/rust/probe`)
//! publishing through the host (`wafka`) against the same calls made natively.
//!
//! # Running
//!
//! ```text
//! cargo bench -p wafka-tests --bench producer
//! ```
//!
//! Each round starts a fresh local nisshi (`wafka_tests::LocalBroker`, memory storage, stopped
//! at the end of the round): nisshi's memory storage slows down as it fills, several times over
//! after a few million records, which would make later rounds measure the broker's state, not
//! the clients. `$WAFKA_BENCH_BROKERS` uses one broker for everything instead. Each
//! (partitions, codec) of the cases gets its own topic and client pair; each round warms up
//! each client first. The markdown tables go to stdout, progress to stderr. A default run
//! takes about 5 minutes on 2 cores, most of it in the wait-for-ack phases; for a quick look:
//! `WAFKA_BENCH_ROUNDS=1 WAFKA_BENCH_ACK_RECORDS=200`;
//! for the plugin tables alone: `WAFKA_BENCH_WASM=only`. The plugins are built
//! first with `scripts/build-guests` (through `wafka_tests::guest`). The where-users-run
//! tables (below) add about 9 minutes (18 with a core that sends 16 KiB batches one at a
//! time); alone: `WAFKA_BENCH_WHERE=only`, e.g. one place, one round:
//! `WAFKA_BENCH_WHERE=only WAFKA_BENCH_PLACES=10ms WAFKA_BENCH_ROUNDS=1`.
//!
//! Both clients use: `acks=all`, `linger.ms=5`, `batch.size=16384`,
//! idempotence on, `compression.type=none`, 32 MiB of buffer
//! (`buffer.memory` / `queue.buffering.max.kbytes`), 5 requests in flight per
//! connection, 120 s delivery timeout, the murmur2 partitioner for keys and
//! sticky partitioning for null keys (wafka switches partition after
//! `batch.size` bytes, librdkafka after `sticky.partitioning.linger.ms`, 10 ms).
//! librdkafka's record-count limit on its queue is lifted (wafka has none).
//! With idempotence on, both keep up to 5 batches of a partition in flight (one per
//! request).
//!
//! Environment (all optional):
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `WAFKA_BENCH_RECORDS` | 300000 | records per fire-and-forget 100 B phase |
//! | `WAFKA_BENCH_RECORDS_1K` | `RECORDS / 3` | records per fire-and-forget 1 KiB phase |
//! | `WAFKA_BENCH_ACK_RECORDS` | 1000 | records per wait-for-ack phase |
//! | `WAFKA_BENCH_WARMUP` | 20000 | fire-and-forget warm-up records per client (plus 50 waited for) |
//! | `WAFKA_BENCH_ROUNDS` | 3 | rounds of all phases; the table shows each phase's median round by records/s |
//! | `WAFKA_BENCH_CLIENTS` | `wafka,librdkafka` | which clients to run (e.g. only `wafka` under `perf`) |
//! | `WAFKA_BENCH_CASES` | all | comma-separated substrings of case names to run, e.g. `ack,keyed` |
//! | `WAFKA_BENCH_KEYED` | 1 | `0` drops the keyed fire-and-forget case |
//! | `WAFKA_BENCH_SET` | none | `name=value,...` applied to both clients (same property names), e.g. `linger.ms=0` |
//! | `WAFKA_BENCH_WASM` | 1 | `0` skips the plugin tables, `only` runs nothing else |
//! | `WAFKA_BENCH_WASM_RECORDS` | 100000 | records per plugin-vs-native fire-and-forget phase (the warm-up uses `WAFKA_BENCH_WARMUP`, the rounds `WAFKA_BENCH_ROUNDS`) |
//! | `WAFKA_BENCH_LATENCY_CALLS` | 2000 | timed calls per latency row (after 50 untimed ones) |
//! | `WAFKA_BENCH_BROKERS` | unset | a running broker to use for everything; unset, each round (and the plugin tables) gets a fresh local nisshi, since nisshi's memory storage slows down as it fills |
//! | `WAFKA_BENCH_WIDE_PARTITIONS` | 1000 | partitions of the wide-topic rows (`0` drops them) |
//! | `WAFKA_BENCH_SLOW` | 1 | `0` skips the slow-broker table (librdkafka's mock cluster) |
//! | `WAFKA_BENCH_SLOW_RECORDS` | 100000 | records per client in the slow-broker table |
//! | `WAFKA_BENCH_WHERE` | 1 | the where-users-run tables: `0` skips them, `only` runs nothing else |
//! | `WAFKA_BENCH_PLACES` | `held,10ms,50ms` | their places: `held` (a local nisshi holding data), `<n>ms` (a mock-cluster broker n ms away); one table each |
//! | `WAFKA_BENCH_WHERE_SETTINGS` | `defaults,1000000,16384` | their settings rows: `defaults`, or a number: an equal `batch.size` for both clients |
//! | `WAFKA_BENCH_WHERE_PARTITIONS` | `1,6` | their topics' partition counts |
//! | `WAFKA_BENCH_WHERE_CODECS` | `none,lz4` | their `compression.type`s |
//! | `WAFKA_BENCH_WHERE_RECORDS` | 100000 | records per phase of their rows (the rounds are `WAFKA_BENCH_ROUNDS`) |
//! | `WAFKA_BENCH_WHERE_WARMUP` | `WHERE_RECORDS / 10` | warm-up records per client and row |
//! | `WAFKA_BENCH_HELD_ENGINE` | `memory` | storage of the held broker (`memory` or `sqlite`) |
//! | `WAFKA_BENCH_HELD_RECORDS` | 1200000 | records the held broker holds before its rows (topped up if `WAFKA_BENCH_BROKERS` holds fewer) |
//! | `WAFKA_BENCH_HELD_PARTITIONS` | 1000 | partitions of each of the held broker's two topics |
//! | `WAFKA_BENCH_BROKER_PID` | found | pid of the broker, for the broker CPU column |
//! | `WAFKA_BROKER_LOG` | `warn` | log level of the broker the benchmark starts (nisshi's `info` level costs it ~170 µs of CPU per record) |
//! | `RUST_LOG` | `warn` | tracing filter (wafka's logs) |
//!
//! # Cases
//!
//! - **fire-and-forget**: send N records as fast as the client takes them, then
//!   flush (wafka: `send_with_callback` then `flush`; librdkafka:
//!   `ThreadedProducer` with a delivery callback, retrying on `QueueFull`, then
//!   waiting until every delivery callback ran). Latency is per record, from
//!   just before the send call to its delivery callback, so it includes the
//!   time spent queued in the client's buffer: it mostly shows how far the
//!   client runs ahead of the broker, not a round trip.
//! - **wait-for-ack**: one record at a time: send, await its ack, next (wafka:
//!   `send(..).await?.await`; librdkafka: `FutureProducer::send(..).await`).
//!   With `linger.ms=5` every record waits for its linger first.
//! - value sizes 100 B and 1 KiB, null keys; "keyed" uses an 8-byte key
//!   (the record index), which spreads records over all partitions.
//!
//! Each client does one warm-up phase first. Phases run one after the other
//! (alternating which client goes first), so each CPU delta belongs to one
//! client. After every phase the benchmark asserts that every record got
//! exactly one successful delivery result, and that the partitions' high
//! watermarks grew by exactly the number of records sent.
//!
//! # Columns
//!
//! Every column but the min–max one is from the phase's median round (by
//! records/s) when `WAFKA_BENCH_ROUNDS` > 1.
//!
//! - **records**: records sent (and acknowledged) in the phase.
//! - **s**: wall time from the first send to the last acknowledgement.
//! - **records/s**: records / s.
//! - **records/s min–max**: the slowest and fastest round: the noise.
//! - **MB/s**: record value bytes (10^6) per second (keys and overhead not counted).
//! - **CPU s/M**: CPU seconds (user + system, `getrusage(RUSAGE_SELF)`, all
//!   threads of this process) per million records, delta over the phase.
//! - **broker CPU s/M**: the same for the broker process (the sum over its threads of
//!   `/proc/<pid>/task/<tid>/schedstat`, ns), when its pid is known: on a small machine the
//!   broker competes with the client for cores.
//! - **p50 / p99 / max µs**: ack latency percentiles in microseconds.
//! - rows **wafka / librdkafka**: the peer ratio (wafka's value divided by
//!   librdkafka's) of records/s and MB/s (higher is better for wafka), CPU and
//!   broker CPU per record and p50 / p99 latency (lower is better for wafka).
//!
//! # Where users run
//!
//! The main table runs on a fresh, local, empty broker: it cannot see what a broker that
//! holds data or one that is far away does to the clients. These tables, one per place
//! (`$WAFKA_BENCH_PLACES`), run the same fire-and-forget phase (100 B values, null keys,
//! send everything then flush; checked as above) on:
//!
//! - **held**: a local nisshi filled once before its rows with `$WAFKA_BENCH_HELD_RECORDS`
//!   records in two topics of `$WAFKA_BENCH_HELD_PARTITIONS` partitions (librdkafka at its
//!   defaults, 100 records to one partition at a time, round robin), then kept for all rows
//!   and rounds; each row gets a topic of its own. Storage: nisshi's memory storage by
//!   default, because it stores each produced batch as it came, as Kafka's log does, at
//!   0.3 µs (1 MB batches) to 2.7 µs (16 KiB batches) of broker CPU per 100 B record, so what
//!   a client's requests and batches cost the broker shows. sqlite storage inserts every record as a row: 17–24 µs of broker CPU
//!   per record on the 2-core machine, about 30,000 records/s, so every row would wait for
//!   the broker and the per-request costs would drown (`$WAFKA_BENCH_HELD_ENGINE=sqlite` to
//!   see it). Holding 6M records instead of none did not change the memory storage's CPU per
//!   record in these rows beyond the noise. `$WAFKA_BENCH_BROKERS` uses that broker instead.
//! - **`<n>ms`**: librdkafka's mock cluster in this process, one broker whose every answer
//!   comes n ms late (`rd_kafka_mock_broker_set_rtt`); a fresh cluster per row.
//!
//! Rows: per place, each of `$WAFKA_BENCH_WHERE_SETTINGS` × partitions × codec, each client
//! warmed up on the row's clients, then `$WAFKA_BENCH_ROUNDS` rounds of both clients
//! alternating who goes first; the median round by records/s. Settings:
//!
//! - **defaults**: each client with only `bootstrap.servers`, `linger.ms=5` and `acks=all`
//!   (and the row's `compression.type`): its own batch size, requests in flight, idempotence
//!   and buffer. The table lists each client's settings as read back from it (wafka's
//!   `ProducerConfig`, librdkafka's `rd_kafka_conf_get` on the live client), and each row
//!   its `batch.size`.
//! - **equal, batch.size=N**: the shared settings above (and `$WAFKA_BENCH_SET`) with
//!   `batch.size=N` for both.
//!
//! librdkafka gets `statistics.interval.ms=200` in these rows (its produce-request count).
//!
//! Columns: **records**, **s**, **records/s**, **records/s min–max** as above;
//! **client CPU s/M**: the process's CPU per million records, without the mock broker's
//! thread when the broker is the mock; **broker CPU s/M**: nisshi's process CPU, or the CPU of
//! the mock's thread (`rdk:mock`, `/proc/self/task/<tid>/schedstat`); **produce requests /
//! 1k records**: Produce requests the client wrote in the phase per 1,000 records (wafka:
//! `ProducerStats::produce_requests`; librdkafka: its statistics' `brokers.*.req.Produce`,
//! read from a snapshot taken after the phase ended; on the mock both are checked against the
//! Produce requests the mock logged). The **wafka / librdkafka** row holds the ratios and the
//! goals' verdict (✓/✗): records/s ≥ 1.5×, client CPU per record ≤ 0.5×, broker CPU per
//! record ≤ 1×.
//!
//! # Plugin tables
//!
//! The probe plugin is loaded once per autoflush policy into one
//! `wafka::Engine` and publishes through a wafka producer of its own (same
//! settings as above); the native rows call the same producer through an
//! `Owner` set up as a plugin instance's (delivery reports on), so the
//! difference is the wasm path: the `handle` call, the guest's `publish` call
//! into the host, lifting the message out of guest memory, the ACL check and
//! the instance's counters. Every phase checks the instance's counters
//! (events, records, none refused or failed), the producer's acknowledged
//! records and the partitions' high watermarks.
//!
//! - **plugin vs native publish**: fire-and-forget, 100 B records with null
//!   keys, autoflush off, one flush at the end; the native path is
//!   `owner.send` in a loop; the plugin gets one event `bench TOPIC N 100`
//!   (its loop only calls `publish`), or N events `bench TOPIC 1 100`.
//!   **publish ns/record** is the wall time of the publishing loop (before the
//!   flush) per record, **CPU ns/record** the process CPU of the whole phase
//!   per record; **overhead** is the row's value minus the native row's. A
//!   warm-up phase per path, then `WAFKA_BENCH_ROUNDS` rounds; the median
//!   round by publish ns/record.
//! - **latency**: one record per call, each call timed on the host: the
//!   plugin's `handle` (one `publish`) with `Autoflush::On` (on the bench
//!   settings and on a producer with only `bootstrap.servers`) and
//!   `Autoflush::Off`; natively `owner.send` + `owner.flush()` (what autoflush
//!   does), `owner.send` + await the delivery (waits for linger.ms; also with
//!   `linger.ms=0`), and `owner.send` alone. Fresh instance or owner per row.
//! - **load**: `Engine::new`, the first `Engine::load_file` of the probe in
//!   the process (cold: Cranelift compiles it), three more loads, and
//!   `instantiate` + `init`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::producer::{
    BaseRecord, DeliveryResult, FutureProducer, FutureRecord, Producer as _, ProducerContext,
    ThreadedProducer,
};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;
use wafka::{Autoflush, PluginInstance, PluginOptions, PluginStats};
use wafka_producer::{Owner, OwnerOptions, Producer, ProducerStats, Record};
use wafka_tests::bench::{env_list, env_usize, process_cpu, timed};

/// Partitions of the benchmark topic.
const PARTITIONS: i32 = 6;
/// A phase that takes longer than this is reported as a hang.
const PHASE_TIMEOUT: Duration = Duration::from_secs(300);
/// Latency slot of a record that has no delivery result yet.
const PENDING: u64 = u64::MAX;
/// Records waited for one by one in each client's warm-up.
const WARMUP_ACKED: usize = 50;

// ---------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------

/// Settings both clients get, as (wafka property, librdkafka property, value).
const SHARED_SETTINGS: &[(&str, &str, &str)] = &[
    ("acks", "acks", "all"),
    ("linger.ms", "linger.ms", "5"),
    ("batch.size", "batch.size", "16384"),
    ("enable.idempotence", "enable.idempotence", "true"),
    ("compression.type", "compression.type", "none"),
    ("buffer.memory", "queue.buffering.max.kbytes", "32MiB"),
    (
        "max.in.flight.requests.per.connection",
        "max.in.flight.requests.per.connection",
        "5",
    ),
    ("delivery.timeout.ms", "message.timeout.ms", "120000"),
    ("request.timeout.ms", "request.timeout.ms", "30000"),
];

fn wafka_producer(brokers: &str) -> Producer {
    wafka_producer_with(brokers, &[])
}

/// A wafka producer with the shared settings and `$WAFKA_BENCH_SET`, then `last`.
fn wafka_producer_with(brokers: &str, last: &[(&str, &str)]) -> Producer {
    let mut props = vec![("bootstrap.servers".to_owned(), brokers.to_owned())];
    for (name, _, value) in SHARED_SETTINGS {
        let value = match *value {
            "32MiB" => (32usize << 20).to_string(),
            v => v.to_owned(),
        };
        props.push(((*name).to_owned(), value));
    }
    props.extend(overrides());
    props.extend(last.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    Producer::from_properties(props).expect("wafka producer config")
}

/// `$WAFKA_BENCH_SET`: `name=value` pairs applied to both clients, after the
/// shared settings (for properties both spell the same, e.g. `linger.ms`,
/// `batch.size`, `compression.type`).
fn overrides() -> Vec<(String, String)> {
    env_list("WAFKA_BENCH_SET")
        .unwrap_or_default()
        .iter()
        .map(|pair| {
            let (k, v) = pair
                .split_once('=')
                .unwrap_or_else(|| panic!("WAFKA_BENCH_SET: {pair:?} is not name=value"));
            (k.trim().to_owned(), v.trim().to_owned())
        })
        .collect()
}

/// The settings in effect, for the report's title.
fn settings_summary() -> String {
    let mut settings: Vec<(String, String)> = SHARED_SETTINGS
        .iter()
        .map(|(name, _, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    for (k, v) in overrides() {
        match settings.iter_mut().find(|(name, _)| *name == k) {
            Some(entry) => entry.1 = v,
            None => settings.push((k, v)),
        }
    }
    settings
        .iter()
        .filter(|(k, _)| !k.ends_with("timeout.ms") && !k.starts_with("max.in.flight"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn rdkafka_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    for (_, name, value) in SHARED_SETTINGS {
        let value = match *value {
            "32MiB" => (32usize << 10).to_string(),
            v => v.to_owned(),
        };
        config.set(*name, value);
    }
    // wafka has no record-count limit on its buffer: only bytes count.
    config.set("queue.buffering.max.messages", "10000000");
    // The Java client's partitioner for keys, as wafka's.
    config.set("partitioner", "murmur2_random");
    for (k, v) in overrides() {
        config.set(k, v);
    }
    config
}

/// What both clients get on top of their own defaults in the "defaults" rows of the
/// where-users-run tables.
const DEFAULTS_SETTINGS: &[(&str, &str)] = &[("linger.ms", "5"), ("acks", "all")];

/// librdkafka's statistics interval in the where-users-run rows: its produce-request count
/// comes from them (each phase waits for a snapshot taken after it ended).
const STATS_INTERVAL_MS: u64 = 200;

/// Which settings the clients of a case get.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Settings {
    /// `SHARED_SETTINGS` and `$WAFKA_BENCH_SET` (the main table).
    Bench,
    /// Each client's own defaults, but `DEFAULTS_SETTINGS` (and `bootstrap.servers`).
    Defaults,
    /// `SHARED_SETTINGS` and `$WAFKA_BENCH_SET`, with this `batch.size` for both.
    Equal(usize),
}

impl Settings {
    fn name(self) -> String {
        match self {
            Settings::Bench => "bench".to_owned(),
            Settings::Defaults => "defaults".to_owned(),
            Settings::Equal(n) => format!("equal, batch.size={n}"),
        }
    }

    /// `defaults` or a number (an equal `batch.size`), as `$WAFKA_BENCH_WHERE_SETTINGS` has it.
    fn parse(s: &str) -> Settings {
        match s {
            "defaults" => Settings::Defaults,
            n => Settings::Equal(n.replace('_', "").parse().unwrap_or_else(|_| {
                panic!("WAFKA_BENCH_WHERE_SETTINGS: {s:?} is neither `defaults` nor a batch.size")
            })),
        }
    }
}

/// The wafka producer of a case: `settings`, then `compression`.
fn wafka_client(brokers: &str, settings: Settings, compression: &str) -> Producer {
    match settings {
        Settings::Bench => wafka_producer_with(brokers, &[("compression.type", compression)]),
        Settings::Equal(batch_size) => wafka_producer_with(
            brokers,
            &[
                ("batch.size", &batch_size.to_string()),
                ("compression.type", compression),
            ],
        ),
        Settings::Defaults => {
            let mut props = vec![("bootstrap.servers", brokers)];
            props.extend(DEFAULTS_SETTINGS.iter().copied());
            if compression != "none" {
                props.push(("compression.type", compression));
            }
            Producer::from_properties(props).expect("wafka producer config")
        }
    }
}

/// The librdkafka config of a case: `settings`, then `compression`; statistics on (for the
/// produce-request count) unless `Settings::Bench`.
fn rdkafka_client_config(brokers: &str, settings: Settings, compression: &str) -> ClientConfig {
    let mut config = match settings {
        Settings::Bench | Settings::Equal(_) => rdkafka_config(brokers),
        Settings::Defaults => {
            let mut c = ClientConfig::new();
            c.set("bootstrap.servers", brokers);
            for (k, v) in DEFAULTS_SETTINGS {
                c.set(*k, *v);
            }
            c
        }
    };
    if let Settings::Equal(batch_size) = settings {
        config.set("batch.size", batch_size.to_string());
    }
    if settings == Settings::Bench || compression != "none" {
        config.set("compression.type", compression);
    }
    if settings != Settings::Bench {
        config.set("statistics.interval.ms", STATS_INTERVAL_MS.to_string());
    }
    config
}

/// A property of a librdkafka client as in effect (its defaults and the adjustments it made
/// when the client was created, e.g. `max.in.flight` capped to 5 by idempotence).
fn rdkafka_effective(client: &rdkafka::client::Client<Deliveries>, name: &str) -> String {
    let name_c = std::ffi::CString::new(name).expect("property name");
    let mut buf = [0 as std::ffi::c_char; 512];
    let mut size = buf.len();
    // SAFETY: a live client handle; rd_kafka_conf returns its configuration (owned by the
    // handle, read only here); rd_kafka_conf_get writes at most `size` bytes into `buf`,
    // NUL-terminated on success.
    unsafe {
        let conf = rdkafka::bindings::rd_kafka_conf(client.native_ptr());
        let res = rdkafka::bindings::rd_kafka_conf_get(
            conf,
            name_c.as_ptr(),
            buf.as_mut_ptr(),
            &mut size,
        );
        if res != rdkafka::bindings::rd_kafka_conf_res_t::RD_KAFKA_CONF_OK {
            return format!("({name}?)");
        }
        std::ffi::CStr::from_ptr(buf.as_ptr())
            .to_string_lossy()
            .into_owned()
    }
}

// ---------------------------------------------------------------------------
// Cases and clients
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    FireAndForget,
    WaitForAck,
}

#[derive(Clone, Debug)]
struct Case {
    name: String,
    mode: Mode,
    value_size: usize,
    keyed: bool,
    records: usize,
    /// Partitions of the case's topic.
    partitions: i32,
    /// `compression.type` of both clients.
    compression: &'static str,
    /// The clients' settings.
    settings: Settings,
}

impl Case {
    fn new(mode: Mode, value_size: usize, keyed: bool, records: usize) -> Case {
        let mode_name = match mode {
            Mode::FireAndForget => "fire-and-forget",
            Mode::WaitForAck => "wait-for-ack",
        };
        let size = if value_size.is_multiple_of(1024) {
            format!("{} KiB", value_size / 1024)
        } else {
            format!("{value_size} B")
        };
        let keyed_name = if keyed { " keyed" } else { "" };
        Case {
            name: format!("{mode_name} {size}{keyed_name}"),
            mode,
            value_size,
            keyed,
            records,
            partitions: PARTITIONS,
            compression: "none",
            settings: Settings::Bench,
        }
    }

    /// The same case with the clients on `settings`.
    fn with(mut self, settings: Settings) -> Case {
        self.settings = settings;
        if settings != Settings::Bench {
            self.name.push_str(&format!(", {}", settings.name()));
        }
        self
    }

    /// The same case on a topic of `partitions` partitions, with `compression`.
    fn on(mut self, partitions: i32, compression: &'static str) -> Case {
        self.partitions = partitions;
        self.compression = compression;
        if partitions != PARTITIONS {
            let s = if partitions == 1 { "" } else { "s" };
            self.name.push_str(&format!(", {partitions} partition{s}"));
        }
        if compression != "none" {
            self.name.push_str(&format!(", {compression}"));
        }
        self
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Client {
    Wafka,
    Librdkafka,
}

impl Client {
    fn name(self) -> &'static str {
        match self {
            Client::Wafka => "wafka",
            Client::Librdkafka => "librdkafka",
        }
    }
}

// ---------------------------------------------------------------------------
// Per-record bookkeeping
// ---------------------------------------------------------------------------

/// Send times and delivery results of one phase's records, shared with the
/// delivery callbacks. Allocated once per client, reset before every phase.
struct Recorder {
    base: Instant,
    sent_ns: Box<[AtomicU64]>,
    latency_ns: Box<[AtomicU64]>,
    target: AtomicU64,
    done: AtomicU64,
    acked: AtomicU64,
    failed: AtomicU64,
    duplicates: AtomicU64,
    first_error: Mutex<Option<String>>,
    all_done: (Mutex<()>, Condvar),
}

impl Recorder {
    fn new(capacity: usize) -> Recorder {
        Recorder {
            base: Instant::now(),
            sent_ns: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
            latency_ns: (0..capacity).map(|_| AtomicU64::new(PENDING)).collect(),
            target: AtomicU64::new(0),
            done: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            first_error: Mutex::new(None),
            all_done: (Mutex::new(()), Condvar::new()),
        }
    }

    /// A `'static` recorder, so that delivery callbacks can borrow it.
    fn leaked(capacity: usize) -> &'static Recorder {
        Box::leak(Box::new(Recorder::new(capacity)))
    }

    fn reset(&self, records: usize) {
        assert!(
            records <= self.sent_ns.len(),
            "recorder holds {} records, phase wants {records}",
            self.sent_ns.len()
        );
        for slot in &self.latency_ns[..records] {
            slot.store(PENDING, Ordering::Relaxed);
        }
        self.done.store(0, Ordering::Relaxed);
        self.acked.store(0, Ordering::Relaxed);
        self.failed.store(0, Ordering::Relaxed);
        self.duplicates.store(0, Ordering::Relaxed);
        *self.first_error.lock().unwrap() = None;
        self.target.store(records as u64, Ordering::Release);
    }

    fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    /// Notes that record `i` is about to be sent.
    #[inline]
    fn sent(&self, i: usize) {
        self.sent_ns[i].store(self.now_ns(), Ordering::Relaxed);
    }

    /// Notes record `i`'s delivery result (from a callback or an awaited ack).
    #[inline]
    fn complete(&self, i: usize, result: Result<(), String>) {
        let latency = self
            .now_ns()
            .saturating_sub(self.sent_ns[i].load(Ordering::Relaxed));
        if self.latency_ns[i].swap(latency, Ordering::Relaxed) != PENDING {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
        }
        match result {
            Ok(()) => {
                self.acked.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                self.first_error
                    .lock()
                    .unwrap()
                    .get_or_insert_with(|| format!("record {i}: {e}"));
            }
        }
        let done = self.done.fetch_add(1, Ordering::AcqRel) + 1;
        if done == self.target.load(Ordering::Acquire) {
            let _guard = self.all_done.0.lock().unwrap();
            self.all_done.1.notify_all();
        }
    }

    fn done(&self) -> u64 {
        self.done.load(Ordering::Acquire)
    }

    /// Waits until every record of the phase has its result; false on timeout.
    fn wait_all(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let target = self.target.load(Ordering::Acquire);
        let mut guard = self.all_done.0.lock().unwrap();
        while self.done() < target {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            guard = self
                .all_done
                .1
                .wait_timeout(guard, deadline - now)
                .unwrap()
                .0;
        }
        true
    }

    /// Asserts that each of the phase's `records` got exactly one successful
    /// result and returns their latencies in nanoseconds, sorted.
    fn check(&self, what: &str, records: usize) -> Vec<u64> {
        let acked = self.acked.load(Ordering::Acquire);
        let failed = self.failed.load(Ordering::Acquire);
        let duplicates = self.duplicates.load(Ordering::Acquire);
        let first_error = self.first_error.lock().unwrap().clone();
        assert_eq!(
            failed,
            0,
            "{what}: {failed} of {records} records failed; first: {}",
            first_error.unwrap_or_default()
        );
        assert_eq!(
            duplicates, 0,
            "{what}: {duplicates} records got more than one delivery result"
        );
        assert_eq!(
            acked, records as u64,
            "{what}: {acked} of {records} records acknowledged"
        );
        let mut latencies: Vec<u64> = self.latency_ns[..records]
            .iter()
            .map(|l| l.load(Ordering::Relaxed))
            .collect();
        let missing = latencies.iter().filter(|&&l| l == PENDING).count();
        assert_eq!(
            missing, 0,
            "{what}: {missing} records have no delivery result"
        );
        latencies.sort_unstable();
        latencies
    }
}

/// librdkafka delivery callback context: feeds the recorder; the delivery
/// opaque is the record's index (no allocation per record).
struct Deliveries {
    recorder: &'static Recorder,
    stats: Arc<RdStats>,
}

impl ClientContext for Deliveries {
    fn stats(&self, statistics: Statistics) {
        self.stats.update(&statistics);
    }
}

/// librdkafka's latest statistics snapshot (when `statistics.interval.ms` is set): when it was
/// taken and how many Produce requests the client had sent to all brokers by then.
#[derive(Default)]
struct RdStats {
    /// (`ts`: librdkafka's `CLOCK_MONOTONIC` in µs, Produce requests sent).
    last: Mutex<Option<(i64, u64)>>,
    updated: Condvar,
}

impl RdStats {
    fn update(&self, statistics: &Statistics) {
        // Counted by librdkafka once a request is written out (`rkb_c.reqtype`), retries too.
        let produce = statistics
            .brokers
            .values()
            .map(|b| b.req.get("Produce").copied().unwrap_or(0).max(0) as u64)
            .sum();
        *self.last.lock().unwrap() = Some((statistics.ts, produce));
        self.updated.notify_all();
    }

    /// Produce requests sent by now: from the first snapshot taken after this call (the client
    /// must be idle meanwhile, as between phases).
    fn produce_requests_now(&self, what: &str) -> u64 {
        let now_us = monotonic_us();
        let deadline = Instant::now() + Duration::from_millis(20 * STATS_INTERVAL_MS + 5000);
        let mut last = self.last.lock().unwrap();
        loop {
            if let Some((ts, produce)) = *last {
                if ts >= now_us {
                    return produce;
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "{what}: no librdkafka statistics");
            last = self.updated.wait_timeout(last, left).unwrap().0;
        }
    }
}

/// `CLOCK_MONOTONIC` in µs, the clock of librdkafka's statistics `ts`.
fn monotonic_us() -> i64 {
    // SAFETY: clock_gettime only writes the struct we pass.
    let ts = unsafe {
        let mut ts: libc::timespec = std::mem::zeroed();
        assert_eq!(libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts), 0);
        ts
    };
    ts.tv_sec * 1_000_000 + ts.tv_nsec / 1000
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, index: usize) {
        let result = match result {
            Ok(_) => Ok(()),
            Err((e, _)) => Err(e.to_string()),
        };
        self.recorder.complete(index, result);
    }
}

// ---------------------------------------------------------------------------
// CPU time and broker bookkeeping
// ---------------------------------------------------------------------------

/// The broker process, to report its CPU time next to the client's.
struct BrokerProcess {
    pid: Option<u32>,
    /// A broker living in this process (librdkafka's mock cluster): its thread's id. Its CPU
    /// is the broker's, and is taken out of the client's.
    thread: Option<u32>,
    ticks_per_second: u64,
}

impl BrokerProcess {
    /// `$WAFKA_BENCH_BROKER_PID`, or the nisshi that `scripts/broker` started
    /// for `brokers` (its state dir under the temp dir records address and pid).
    fn with_pid(pid: Option<u32>) -> BrokerProcess {
        BrokerProcess {
            pid: std::env::var("WAFKA_BENCH_BROKER_PID")
                .ok()
                .and_then(|p| p.trim().parse().ok())
                .or(pid),
            ..BrokerProcess::find("")
        }
    }

    fn find(brokers: &str) -> BrokerProcess {
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let ticks_per_second = if ticks > 0 { ticks as u64 } else { 100 };
        let pid = std::env::var("WAFKA_BENCH_BROKER_PID")
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .or_else(|| Self::from_state_dirs(brokers));
        BrokerProcess {
            pid,
            thread: None,
            ticks_per_second,
        }
    }

    fn from_state_dirs(brokers: &str) -> Option<u32> {
        let first = brokers.split(',').next()?.trim();
        for entry in std::fs::read_dir(std::env::temp_dir()).ok()?.flatten() {
            let dir = entry.path();
            let is_state_dir = dir
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("wafka-broker."));
            if !is_state_dir {
                continue;
            }
            let addr = std::fs::read_to_string(dir.join("nisshi.addr")).unwrap_or_default();
            if addr.trim() != first {
                continue;
            }
            let pid: u32 = std::fs::read_to_string(dir.join("nisshi.pid"))
                .ok()?
                .trim()
                .parse()
                .ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains("nisshi") {
                return Some(pid);
            }
        }
        None
    }

    /// The thread of librdkafka's mock cluster in this process (`rdk:mock`; one cluster may
    /// live at a time).
    fn mock_thread() -> BrokerProcess {
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc/self/task")
            .expect("/proc/self/task")
            .flatten()
        {
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            if comm.trim() == "rdk:mock" {
                found.extend(
                    entry
                        .file_name()
                        .to_str()
                        .and_then(|t| t.parse::<u32>().ok()),
                );
            }
        }
        assert_eq!(found.len(), 1, "threads named rdk:mock: {found:?}");
        BrokerProcess {
            pid: None,
            thread: found.pop(),
            ..BrokerProcess::find("")
        }
    }

    /// The broker's CPU time so far, per thread (ns, from `schedstat`, as precise as
    /// getrusage's process CPU; the process's 10 ms ticks where there is no `schedstat`).
    fn mark(&self) -> Option<CpuMark> {
        if let Some(tid) = self.thread {
            let ns = schedstat_ns(Path::new(&format!("/proc/self/task/{tid}/schedstat")))?;
            return Some(CpuMark(HashMap::from([(tid, ns)])));
        }
        let pid = self.pid?;
        let mut threads = HashMap::new();
        for entry in std::fs::read_dir(format!("/proc/{pid}/task"))
            .ok()?
            .flatten()
        {
            let tid = entry.file_name().to_str().and_then(|t| t.parse().ok());
            if let (Some(tid), Some(ns)) = (tid, schedstat_ns(&entry.path().join("schedstat"))) {
                threads.insert(tid, ns);
            }
        }
        if threads.is_empty() {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // Fields after the command name (which may contain spaces), starting at field 3.
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            let utime: u64 = fields.get(11)?.parse().ok()?;
            let stime: u64 = fields.get(12)?.parse().ok()?;
            threads.insert(0, (utime + stime) * 1_000_000_000 / self.ticks_per_second);
        }
        Some(CpuMark(threads))
    }

    /// The broker's CPU time since `mark`: the sum over its threads now of their time since
    /// then (a thread that ended in between is missed: the broker's threads live on, and a
    /// tokio blocking thread ends only after 10 s without work).
    fn since(&self, mark: Option<CpuMark>) -> Option<Duration> {
        let (before, now) = (mark?, self.mark()?);
        let ns = now
            .0
            .iter()
            .map(|(tid, ns)| ns.saturating_sub(before.0.get(tid).copied().unwrap_or(0)))
            .sum();
        Some(Duration::from_nanos(ns))
    }
}

/// CPU time of each thread of the broker (ns) by thread id, at one moment.
struct CpuMark(HashMap<u32, u64>);

/// The first field of a thread's `schedstat`: its time on CPU in ns.
fn schedstat_ns(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Reads the topic's high watermarks, to check what the broker stored.
struct Watermarks {
    consumer: BaseConsumer,
    topic: String,
    partitions: i32,
}

impl Watermarks {
    fn new(brokers: &str, topic: &str, partitions: i32) -> Watermarks {
        let consumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .create()
            .expect("watermark client");
        Watermarks {
            consumer,
            topic: topic.to_owned(),
            partitions,
        }
    }

    /// Sum of the high watermarks of all partitions.
    fn total(&self) -> i64 {
        (0..self.partitions)
            .map(|p| {
                self.consumer
                    .fetch_watermarks(&self.topic, p, Duration::from_secs(10))
                    .unwrap_or_else(|e| panic!("watermarks of {}-{p}: {e}", self.topic))
                    .1
            })
            .sum()
    }
}

// ---------------------------------------------------------------------------
// Phases
// ---------------------------------------------------------------------------

/// What one phase measured.
#[derive(Clone, Debug)]
struct PhaseResult {
    records: usize,
    value_size: usize,
    wall: Duration,
    cpu: Duration,
    broker_cpu: Option<Duration>,
    /// Produce requests the client sent in the phase, when known (wafka: always; librdkafka:
    /// with statistics on).
    produce_requests: Option<u64>,
    p50_ns: u64,
    p99_ns: u64,
    max_ns: u64,
}

impl PhaseResult {
    fn requests_per_thousand(&self) -> Option<f64> {
        self.produce_requests
            .map(|n| n as f64 * 1000.0 / self.records as f64)
    }

    fn records_per_s(&self) -> f64 {
        self.records as f64 / self.wall.as_secs_f64()
    }

    fn mb_per_s(&self) -> f64 {
        (self.records * self.value_size) as f64 / 1e6 / self.wall.as_secs_f64()
    }

    fn cpu_per_million(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.records as f64
    }

    fn broker_cpu_per_million(&self) -> Option<f64> {
        self.broker_cpu
            .map(|c| c.as_secs_f64() * 1e6 / self.records as f64)
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Everything the phases share.
struct Bench {
    runtime: tokio::runtime::Runtime,
    brokers: String,
    broker: BrokerProcess,
    /// The broker of this round (a fresh one per round unless `$WAFKA_BENCH_BROKERS`).
    own: Option<wafka_tests::LocalBroker>,
    topics: usize,
    clients: Vec<Client>,
    capacity: usize,
    /// One per (partitions, compression, settings) the cases use; the first is the plugin
    /// tables' too.
    setups: Vec<Setup>,
    /// The broker when it is librdkafka's mock cluster (where-users-run tables).
    mock: Option<wafka_tests::MockKafka>,
    /// Each client's recorder, allocated once (`capacity` records).
    recorders: HashMap<Client, &'static Recorder>,
}

/// A topic and a client of each kind for one (partitions, compression, settings).
struct Setup {
    partitions: i32,
    compression: &'static str,
    settings: Settings,
    topic: String,
    watermarks: Watermarks,
    wafka: Option<WafkaClient>,
    librdkafka: Option<RdkafkaClient>,
}

struct WafkaClient {
    producer: Producer,
    recorder: &'static Recorder,
}

struct RdkafkaClient {
    threaded: ThreadedProducer<Deliveries>,
    /// For wait-for-ack phases (main table only).
    future: Option<FutureProducer>,
    recorder: &'static Recorder,
    queue_full: u64,
    /// Statistics, when on (not for `Settings::Bench`).
    stats: Option<Arc<RdStats>>,
}

impl Bench {
    /// The main setup: the benchmark topic of `PARTITIONS` partitions, no compression.
    fn main(&self) -> &Setup {
        &self.setups[0]
    }

    /// The index of the setup for `partitions`, `compression` and `settings`, created on first
    /// use.
    fn setup(&mut self, partitions: i32, compression: &'static str, settings: Settings) -> usize {
        if let Some(i) = self.setups.iter().position(|s| {
            s.partitions == partitions && s.compression == compression && s.settings == settings
        }) {
            return i;
        }
        let topic = self.new_topic(partitions);
        self.add_setup(topic, partitions, compression, settings)
    }

    fn new_topic(&mut self, partitions: i32) -> String {
        self.topics += 1;
        let topic = format!("bench-producer-{}-{partitions}", self.topics);
        match &self.mock {
            // The mock does not implement CreateTopics.
            Some(mock) => {
                mock.create_topic(&topic, partitions, 1)
                    .unwrap_or_else(|e| panic!("mock topic {topic}: {e}"));
                wafka_tests::wait_for_topic(
                    &self.brokers,
                    &topic,
                    partitions,
                    Duration::from_secs(30),
                );
            }
            None => wafka_tests::create_topic_named(&self.brokers, &topic, partitions),
        }
        topic
    }

    /// A broker for the next measurements: a fresh one (nisshi's memory storage slows down as
    /// it fills, so each round starts empty) unless `$WAFKA_BENCH_BROKERS` names one; the main
    /// setup on it, and each client's warm-up (connections, producer ids, metadata, allocator).
    fn fresh_broker(&mut self, warmup: usize) {
        self.close_setups();
        match std::env::var("WAFKA_BENCH_BROKERS") {
            Ok(fixed) if !fixed.trim().is_empty() => {
                if self.brokers.is_empty() {
                    self.brokers = fixed.trim().to_owned();
                    self.broker = BrokerProcess::find(&self.brokers);
                }
            }
            _ => {
                self.own = None;
                let b = wafka_tests::LocalBroker::start("memory");
                self.brokers = b.addr.clone();
                self.broker = BrokerProcess::with_pid(b.pid());
                self.own = Some(b);
            }
        }
        let topic = self.new_topic(PARTITIONS);
        self.add_setup(topic, PARTITIONS, "none", Settings::Bench);
        for client in self.clients.clone() {
            let fire = Case::new(Mode::FireAndForget, 100, false, warmup);
            let ack = Case::new(Mode::WaitForAck, 100, false, WARMUP_ACKED);
            for case in [fire, ack] {
                if case.records > 0 {
                    self.phase(client, &case, "warm-up");
                }
            }
        }
    }

    /// Closes every setup's clients.
    fn close_setups(&mut self) {
        for setup in self.setups.drain(..) {
            if let Some(w) = &setup.wafka {
                self.runtime.block_on(w.producer.close());
            }
        }
    }

    fn add_setup(
        &mut self,
        topic: String,
        partitions: i32,
        compression: &'static str,
        settings: Settings,
    ) -> usize {
        let brokers = self.brokers.clone();
        let wafka_recorder = self.recorder(Client::Wafka);
        let rdkafka_recorder = self.recorder(Client::Librdkafka);
        let _enter = self.runtime.enter();
        let wafka = self.clients.contains(&Client::Wafka).then(|| WafkaClient {
            producer: wafka_client(&brokers, settings, compression),
            recorder: wafka_recorder,
        });
        let librdkafka = self.clients.contains(&Client::Librdkafka).then(|| {
            let recorder = rdkafka_recorder;
            let config = || rdkafka_client_config(&brokers, settings, compression);
            let stats = Arc::new(RdStats::default());
            RdkafkaClient {
                threaded: config()
                    .create_with_context(Deliveries {
                        recorder,
                        stats: stats.clone(),
                    })
                    .expect("librdkafka ThreadedProducer"),
                future: (settings == Settings::Bench)
                    .then(|| config().create().expect("librdkafka FutureProducer")),
                recorder,
                queue_full: 0,
                stats: (settings != Settings::Bench).then_some(stats),
            }
        });
        self.setups.push(Setup {
            partitions,
            compression,
            settings,
            watermarks: Watermarks::new(&brokers, &topic, partitions),
            topic,
            wafka,
            librdkafka,
        });
        self.setups.len() - 1
    }

    /// Each client's recorder, shared by its setups (allocated once).
    fn recorder(&mut self, client: Client) -> &'static Recorder {
        let capacity = self.capacity;
        self.recorders
            .entry(client)
            .or_insert_with(|| Recorder::leaked(capacity))
    }

    /// Runs one phase of `case` with `client`, checks it and measures it.
    fn phase(&mut self, client: Client, case: &Case, label: &str) -> PhaseResult {
        let what = format!("{label} {} {}", client.name(), case.name);
        let value = vec![b'v'; case.value_size];
        let s = self.setup(case.partitions, case.compression, case.settings);
        let setup = &self.setups[s];
        let recorder = match client {
            Client::Wafka => setup.wafka.as_ref().expect("wafka client").recorder,
            Client::Librdkafka => {
                setup
                    .librdkafka
                    .as_ref()
                    .expect("librdkafka client")
                    .recorder
            }
        };
        recorder.reset(case.records);
        let stats_before = setup.wafka.as_ref().map(|w| w.producer.stats());
        let queue_full_before = setup.librdkafka.as_ref().map_or(0, |r| r.queue_full);
        let rd_stats = match client {
            Client::Librdkafka => setup.librdkafka.as_ref().and_then(|r| r.stats.clone()),
            Client::Wafka => None,
        };
        let rd_requests_before = rd_stats.as_ref().map(|st| st.produce_requests_now(&what));
        let stored_before = setup.watermarks.total();

        let broker_before = self.broker.mark();
        let cpu_before = process_cpu();
        let start = Instant::now();
        match client {
            Client::Wafka => self.run_wafka(s, case, &value, &what),
            Client::Librdkafka => self.run_librdkafka(s, case, &value, &what),
        }
        let wall = start.elapsed();
        let setup = &self.setups[s];
        let mut cpu = process_cpu().saturating_sub(cpu_before);
        let broker_cpu = self.broker.since(broker_before);
        if self.broker.thread.is_some() {
            // The broker runs in this process: its CPU is not the client's.
            cpu = cpu.saturating_sub(broker_cpu.unwrap_or_default());
        }

        let latencies = recorder.check(&what, case.records);
        if let Some(r) = &setup.librdkafka {
            // librdkafka frees a delivery report's messages after its
            // callbacks returned: wait for that, then nothing may be left.
            let deadline = Instant::now() + Duration::from_secs(10);
            let left = || {
                r.threaded.in_flight_count() + r.future.as_ref().map_or(0, |f| f.in_flight_count())
            };
            while left() > 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            assert_eq!(left(), 0, "{what}: records left in librdkafka's queues");
        }
        let stored = setup.watermarks.total() - stored_before;
        assert_eq!(
            stored, case.records as i64,
            "{what}: the broker stored {stored} records, {} were acknowledged",
            case.records
        );
        let mut extra = String::new();
        let produce_requests = match client {
            Client::Wafka => {
                let w = setup.wafka.as_ref().expect("wafka client");
                let d = stats_delta(stats_before.unwrap_or_default(), w.producer.stats());
                assert_eq!(
                    (d.records_acked, d.records_failed),
                    (case.records as u64, 0),
                    "{what}: producer stats disagree with the delivery results: {d:?}"
                );
                let _ = write!(
                    extra,
                    ", {} requests, {} batches ({:.1} records/batch), {} retries",
                    d.produce_requests,
                    d.batches_acked,
                    d.records_acked as f64 / d.batches_acked.max(1) as f64,
                    d.retries
                );
                Some(d.produce_requests)
            }
            Client::Librdkafka => {
                let r = setup.librdkafka.as_ref().expect("librdkafka client");
                let _ = write!(extra, ", {} QueueFull", r.queue_full - queue_full_before);
                let requests = rd_stats
                    .as_ref()
                    .zip(rd_requests_before)
                    .map(|(st, before)| st.produce_requests_now(&what) - before);
                if let Some(n) = requests {
                    let _ = write!(extra, ", {n} requests");
                }
                requests
            }
        };
        let result = PhaseResult {
            records: case.records,
            value_size: case.value_size,
            wall,
            cpu,
            broker_cpu,
            produce_requests,
            p50_ns: percentile(&latencies, 50.0),
            p99_ns: percentile(&latencies, 99.0),
            max_ns: latencies.last().copied().unwrap_or(0),
        };
        eprintln!(
            "bench: {what}: {} records in {:.3} s, {:.0} records/s, CPU {:.3} s, p50 {} µs, p99 {} µs, max {} µs{extra}",
            result.records,
            result.wall.as_secs_f64(),
            result.records_per_s(),
            result.cpu.as_secs_f64(),
            result.p50_ns / 1000,
            result.p99_ns / 1000,
            result.max_ns / 1000,
        );
        result
    }

    fn run_wafka(&self, s: usize, case: &Case, value: &[u8], what: &str) {
        let setup = &self.setups[s];
        let w = setup.wafka.as_ref().expect("wafka client");
        let (producer, recorder, topic) = (&w.producer, w.recorder, setup.topic.as_str());
        let work = async {
            match case.mode {
                Mode::FireAndForget => {
                    for i in 0..case.records {
                        let key = (i as u64).to_be_bytes();
                        let mut record = Record::new(topic, value);
                        if case.keyed {
                            record = record.key(&key);
                        }
                        recorder.sent(i);
                        let sent = producer
                            .send_with_callback(
                                &record,
                                Box::new(move |r| {
                                    recorder.complete(i, r.map(drop).map_err(|e| e.to_string()))
                                }),
                            )
                            .await;
                        if let Err(e) = sent {
                            panic!("{what}: send {i} failed: {e}");
                        }
                    }
                    producer.flush().await;
                }
                Mode::WaitForAck => {
                    for i in 0..case.records {
                        let key = (i as u64).to_be_bytes();
                        let mut record = Record::new(topic, value);
                        if case.keyed {
                            record = record.key(&key);
                        }
                        recorder.sent(i);
                        let result = match producer.send(&record).await {
                            Ok(delivery) => delivery.await.map(drop),
                            Err(e) => Err(e),
                        };
                        recorder.complete(i, result.map_err(|e| e.to_string()));
                    }
                }
            }
        };
        self.runtime.block_on(async {
            if tokio::time::timeout(PHASE_TIMEOUT, work).await.is_err() {
                panic!(
                    "{what}: hang: {} of {} records have a result after {PHASE_TIMEOUT:?}; stats {:?}",
                    recorder.done(),
                    case.records,
                    producer.stats()
                );
            }
        });
    }

    fn run_librdkafka(&mut self, s: usize, case: &Case, value: &[u8], what: &str) {
        let setup = &mut self.setups[s];
        let topic = setup.topic.as_str();
        let r = setup.librdkafka.as_mut().expect("librdkafka client");
        let recorder = r.recorder;
        match case.mode {
            Mode::FireAndForget => {
                for i in 0..case.records {
                    let key = (i as u64).to_be_bytes();
                    let mut record =
                        BaseRecord::<[u8], [u8], usize>::with_opaque_to(topic, i).payload(value);
                    if case.keyed {
                        record = record.key(&key[..]);
                    }
                    recorder.sent(i);
                    loop {
                        match r.threaded.send(record) {
                            Ok(()) => break,
                            Err((
                                KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
                                back,
                            )) => {
                                record = back;
                                r.queue_full += 1;
                                std::thread::sleep(Duration::from_micros(200));
                            }
                            Err((e, _)) => panic!("{what}: send {i} failed: {e}"),
                        }
                    }
                }
                // Not `flush`: it polls in steps of up to 100 ms. Every record
                // leaves within linger.ms anyway; wait for its callback.
                assert!(
                    recorder.wait_all(PHASE_TIMEOUT),
                    "{what}: hang: {} of {} records have a result after {PHASE_TIMEOUT:?}, {} in librdkafka's queue",
                    recorder.done(),
                    case.records,
                    r.threaded.in_flight_count()
                );
            }
            Mode::WaitForAck => {
                let future = r.future.as_ref().expect("librdkafka FutureProducer");
                self.runtime.block_on(async {
                    for i in 0..case.records {
                        let key = (i as u64).to_be_bytes();
                        let mut record = FutureRecord::<[u8], [u8]>::to(topic).payload(value);
                        if case.keyed {
                            record = record.key(&key[..]);
                        }
                        recorder.sent(i);
                        let sent = future.send(record, Timeout::Never);
                        let Ok(result) = tokio::time::timeout(PHASE_TIMEOUT, sent).await else {
                            panic!("{what}: hang: no ack for record {i}");
                        };
                        recorder.complete(i, result.map(drop).map_err(|(e, _)| e.to_string()));
                    }
                });
            }
        }
    }
}

fn stats_delta(before: ProducerStats, after: ProducerStats) -> ProducerStats {
    ProducerStats {
        produce_requests: after.produce_requests - before.produce_requests,
        batches_acked: after.batches_acked - before.batches_acked,
        records_acked: after.records_acked - before.records_acked,
        records_failed: after.records_failed - before.records_failed,
        retries: after.retries - before.retries,
        metadata_requests: after.metadata_requests - before.metadata_requests,
        ..after
    }
}

// ---------------------------------------------------------------------------
// One slow broker of three (librdkafka's mock cluster)
// ---------------------------------------------------------------------------

/// Round trip of the slow broker.
const SLOW_RTT: Duration = Duration::from_secs(2);
/// Partitions of the slow-broker topic: 2 per broker, broker 3 is the slow one.
const SLOW_PARTITIONS: i32 = 6;

/// Results of one client's slow-broker phase.
#[derive(Clone, Debug)]
struct SlowResult {
    records: usize,
    /// Records delivered to partitions of the healthy brokers.
    healthy: u64,
    /// When the last of those was acknowledged.
    healthy_wall: Duration,
    delivered: u64,
    failed: u64,
    wall: Duration,
    cpu: Duration,
}

impl SlowResult {
    fn healthy_per_s(&self) -> f64 {
        self.healthy as f64 / self.healthy_wall.as_secs_f64().max(1e-9)
    }
}

struct SlowRecorder {
    base: Instant,
    healthy: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    done: AtomicU64,
    last_healthy_ns: AtomicU64,
}

impl SlowRecorder {
    fn done(&self, partition: Option<i32>) {
        match partition {
            Some(p) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
                if p % 3 != 2 {
                    self.healthy.fetch_add(1, Ordering::Relaxed);
                    let ns = self.base.elapsed().as_nanos() as u64;
                    self.last_healthy_ns.fetch_max(ns, Ordering::Relaxed);
                }
            }
            None => {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.done.fetch_add(1, Ordering::Release);
    }
}

struct SlowDeliveries(Arc<SlowRecorder>);

impl ClientContext for SlowDeliveries {}

impl ProducerContext for SlowDeliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        self.0.done(result.as_ref().ok().map(|m| m.partition()));
    }
}

/// Each client sends `records` null-key records of 100 B to a 6-partition topic on a 3-broker
/// mock cluster whose broker 3 (leader of partitions 2 and 5) answers everything after 2 s,
/// its handshake too; `request.timeout.ms` 5 s, `delivery.timeout.ms` 10 s. The number to read
/// is how fast the healthy brokers' partitions got their records. A fresh cluster per phase.
fn slow_broker(
    bench: &Bench,
    clients: &[Client],
    records: usize,
    rounds: usize,
) -> Vec<(Client, SlowResult)> {
    let value = vec![b'v'; 100];
    let mut out = Vec::new();
    for &client in clients {
        let mut results = Vec::new();
        for round in 0..rounds {
            let (mock, bootstrap) = wafka_tests::mock_cluster(3);
            let topic = "bench-slow";
            mock.create_topic(topic, SLOW_PARTITIONS, 1)
                .expect("mock topic");
            for p in 0..SLOW_PARTITIONS {
                mock.partition_leader(topic, p, Some(1 + p % 3))
                    .expect("leader");
            }
            mock.broker_round_trip_time(3, SLOW_RTT).expect("rtt");
            let recorder = Arc::new(SlowRecorder {
                base: Instant::now(),
                healthy: AtomicU64::new(0),
                delivered: AtomicU64::new(0),
                failed: AtomicU64::new(0),
                done: AtomicU64::new(0),
                last_healthy_ns: AtomicU64::new(0),
            });
            let what = format!("slow broker round {}/{rounds} {}", round + 1, client.name());
            let timeouts = [
                ("request.timeout.ms", "5000"),
                ("delivery.timeout.ms", "10000"),
            ];
            let cpu_before = process_cpu();
            let start = Instant::now();
            let recorder_base = recorder.base;
            match client {
                Client::Wafka => {
                    let _enter = bench.runtime.enter();
                    let producer = wafka_producer_with(&bootstrap, &timeouts);
                    bench.runtime.block_on(async {
                        for i in 0..records {
                            let r = recorder.clone();
                            let sent = producer
                                .send_with_callback(
                                    &Record::new(topic, &value),
                                    Box::new(move |m| r.done(m.ok().map(|m| m.partition))),
                                )
                                .await;
                            if let Err(e) = sent {
                                panic!("{what}: send {i} failed: {e}");
                            }
                        }
                        producer.flush().await;
                    });
                }
                Client::Librdkafka => {
                    let mut config = rdkafka_config(&bootstrap);
                    config.set("request.timeout.ms", "5000");
                    config.set("message.timeout.ms", "10000");
                    let producer: ThreadedProducer<SlowDeliveries> = config
                        .create_with_context(SlowDeliveries(recorder.clone()))
                        .expect("librdkafka producer");
                    for i in 0..records {
                        let mut record =
                            BaseRecord::<[u8], [u8], ()>::to(topic).payload(&value[..]);
                        loop {
                            match producer.send(record) {
                                Ok(()) => break,
                                Err((
                                    KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
                                    back,
                                )) => {
                                    record = back;
                                    std::thread::sleep(Duration::from_micros(200));
                                }
                                Err((e, _)) => panic!("{what}: send {i} failed: {e}"),
                            }
                        }
                    }
                    let deadline = Instant::now() + Duration::from_secs(60);
                    while recorder.done.load(Ordering::Acquire) < records as u64 {
                        assert!(Instant::now() < deadline, "{what}: hang");
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
            let wall = start.elapsed();
            let cpu = process_cpu().saturating_sub(cpu_before);
            assert_eq!(
                recorder.done.load(Ordering::Acquire),
                records as u64,
                "{what}: every record has a result"
            );
            let last = Duration::from_nanos(recorder.last_healthy_ns.load(Ordering::Relaxed));
            let healthy_wall = (recorder_base + last).saturating_duration_since(start);
            let result = SlowResult {
                records,
                healthy: recorder.healthy.load(Ordering::Relaxed),
                healthy_wall,
                delivered: recorder.delivered.load(Ordering::Relaxed),
                failed: recorder.failed.load(Ordering::Relaxed),
                wall,
                cpu,
            };
            eprintln!(
                "bench: {what}: {} healthy in {:.3} s ({:.0}/s), {} delivered, {} failed, all done in {:.2} s",
                result.healthy,
                result.healthy_wall.as_secs_f64(),
                result.healthy_per_s(),
                result.delivered,
                result.failed,
                result.wall.as_secs_f64()
            );
            drop(mock);
            results.push(result);
        }
        results.sort_by(|a, b| a.healthy_per_s().total_cmp(&b.healthy_per_s()));
        out.push((client, results.swap_remove(results.len() / 2)));
    }
    out
}

fn slow_table(results: &[(Client, SlowResult)]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "One slow broker of three (mock cluster, broker 3 answers after {} s; request.timeout.ms=5000, delivery.timeout.ms=10000), null keys, 100 B:",
        SLOW_RTT.as_secs()
    );
    out.push('\n');
    out.push_str(
        "| client | records | healthy records/s | delivered | failed | all done s | CPU s/M |\n",
    );
    out.push_str("|---|--:|--:|--:|--:|--:|--:|\n");
    for (client, r) in results {
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {} | {} | {:.2} | {:.2} |",
            client.name(),
            r.records,
            r.healthy_per_s(),
            r.delivered,
            r.failed,
            r.wall.as_secs_f64(),
            r.cpu.as_secs_f64() * 1e6 / r.records as f64,
        );
    }
    let get = |c: Client| results.iter().find(|(k, _)| *k == c).map(|(_, r)| r);
    if let (Some(w), Some(l)) = (get(Client::Wafka), get(Client::Librdkafka)) {
        let _ = writeln!(
            out,
            "| **wafka / librdkafka** | | **{:.2}×** | | | {:.2}× | **{:.2}×** |",
            w.healthy_per_s() / l.healthy_per_s(),
            w.wall.as_secs_f64() / l.wall.as_secs_f64(),
            w.cpu.as_secs_f64() / l.cpu.as_secs_f64().max(1e-9),
        );
    }
    out
}

// ---------------------------------------------------------------------------
// Where users run: a broker that holds data, a broker far away
// ---------------------------------------------------------------------------

/// Topics the held broker is filled with before its rows.
const HELD_TOPICS: [&str; 2] = ["bench-held-1", "bench-held-2"];
/// Records sent to one partition in a row while filling: the held data's batch size.
const HELD_CHUNK: usize = 100;

/// Where the broker of a where-users-run table is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    /// A local nisshi that holds data before the rows; one broker for all of them.
    Held,
    /// librdkafka's mock cluster in this process: one broker answering after this round trip.
    Remote(Duration),
}

impl Place {
    /// `held` or `<n>ms`, as `$WAFKA_BENCH_PLACES` has it.
    fn parse(s: &str) -> Place {
        match s {
            "held" => Place::Held,
            ms => match ms.strip_suffix("ms").and_then(|n| n.trim().parse().ok()) {
                Some(n) => Place::Remote(Duration::from_millis(n)),
                None => panic!("WAFKA_BENCH_PLACES: {s:?} is neither `held` nor `<n>ms`"),
            },
        }
    }

    fn name(self) -> String {
        match self {
            Place::Held => "held".to_owned(),
            Place::Remote(rtt) => format!("{} ms", rtt.as_millis()),
        }
    }
}

/// The `compression.type` names a where-users-run case may have.
fn codec(name: &str) -> &'static str {
    match name {
        "none" => "none",
        "gzip" => "gzip",
        "snappy" => "snappy",
        "lz4" => "lz4",
        "zstd" => "zstd",
        other => panic!("WAFKA_BENCH_WHERE_CODECS: unknown codec {other:?}"),
    }
}

/// What the where-users-run tables run (from the environment).
struct WhereSpec {
    places: Vec<Place>,
    settings: Vec<Settings>,
    partitions: Vec<i32>,
    codecs: Vec<&'static str>,
    records: usize,
    warmup: usize,
    rounds: usize,
    held_engine: String,
    held_partitions: i32,
    held_records: usize,
}

impl WhereSpec {
    fn from_env(rounds: usize) -> WhereSpec {
        let list = |name: &str, default: &str| {
            env_list(name).unwrap_or_else(|| default.split(',').map(str::to_owned).collect())
        };
        let records = env_usize("WAFKA_BENCH_WHERE_RECORDS", 100_000);
        WhereSpec {
            places: list("WAFKA_BENCH_PLACES", "held,10ms,50ms")
                .iter()
                .map(|p| Place::parse(p))
                .collect(),
            settings: list("WAFKA_BENCH_WHERE_SETTINGS", "defaults,1000000,16384")
                .iter()
                .map(|s| Settings::parse(s))
                .collect(),
            partitions: list("WAFKA_BENCH_WHERE_PARTITIONS", "1,6")
                .iter()
                .map(|p| {
                    p.parse()
                        .unwrap_or_else(|_| panic!("WAFKA_BENCH_WHERE_PARTITIONS: {p:?}"))
                })
                .collect(),
            codecs: list("WAFKA_BENCH_WHERE_CODECS", "none,lz4")
                .iter()
                .map(|c| codec(c))
                .collect(),
            records,
            warmup: env_usize("WAFKA_BENCH_WHERE_WARMUP", records / 10),
            rounds,
            held_engine: std::env::var("WAFKA_BENCH_HELD_ENGINE")
                .ok()
                .filter(|e| !e.trim().is_empty())
                .unwrap_or_else(|| "memory".to_owned()),
            held_partitions: env_usize("WAFKA_BENCH_HELD_PARTITIONS", 1000) as i32,
            held_records: env_usize("WAFKA_BENCH_HELD_RECORDS", 1_200_000),
        }
    }
}

/// One row: both clients on one (settings, partitions, codec).
struct WhereRow {
    case: Case,
    /// Each client's `batch.size` as in effect.
    batch_size: HashMap<Client, String>,
    results: HashMap<Client, Vec<PhaseResult>>,
}

/// One where-users-run table: the rows of one place.
struct WhereTable {
    place: Place,
    /// What the broker held (held place).
    held: Option<HeldBroker>,
    /// Each settings' effective client settings, as read from the clients.
    effective: Vec<(Settings, String)>,
    rows: Vec<WhereRow>,
    measured: Duration,
}

/// The held broker: what it held before and after the rows.
struct HeldBroker {
    engine: String,
    before: i64,
    after: i64,
    fill: Duration,
}

/// Delivery results of the fill.
#[derive(Default)]
struct FillCounts {
    done: AtomicU64,
    failed: AtomicU64,
}

struct FillDeliveries(Arc<FillCounts>);

impl ClientContext for FillDeliveries {}

impl ProducerContext for FillDeliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if result.is_err() {
            self.0.failed.fetch_add(1, Ordering::Relaxed);
        }
        self.0.done.fetch_add(1, Ordering::Release);
    }
}

/// Records the held topics of `brokers` hold now.
fn held_records(brokers: &str, partitions: i32) -> i64 {
    HELD_TOPICS
        .iter()
        .map(|t| Watermarks::new(brokers, t, partitions).total())
        .sum()
}

/// Makes `brokers` hold at least `records` records of 100 B in [`HELD_TOPICS`] (`partitions`
/// partitions each), topping up what they hold already: [`HELD_CHUNK`] records to one
/// partition at a time, round robin over both topics' partitions, with librdkafka at its
/// defaults. Returns the records held and how long filling took.
fn fill_held(brokers: &str, partitions: i32, records: usize) -> (i64, Duration) {
    for topic in HELD_TOPICS {
        wafka_tests::create_topic_named(brokers, topic, partitions);
    }
    let start = Instant::now();
    let before = held_records(brokers, partitions);
    let missing = (records as i64 - before).max(0) as usize;
    if missing > 0 {
        let context = Arc::new(FillCounts::default());
        let producer: ThreadedProducer<FillDeliveries> = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("queue.buffering.max.messages", "2000000")
            .create_with_context(FillDeliveries(context.clone()))
            .expect("fill producer");
        let value = [b'h'; 100];
        let slots = HELD_TOPICS.len() * partitions as usize;
        for i in 0..missing {
            let slot = (i / HELD_CHUNK) % slots;
            let topic = HELD_TOPICS[slot % HELD_TOPICS.len()];
            let partition = (slot / HELD_TOPICS.len()) as i32;
            let mut record = BaseRecord::<[u8], [u8], ()>::to(topic)
                .partition(partition)
                .payload(&value[..]);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err((e, _)) => panic!("filling the held broker: send {i}: {e}"),
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(600);
        while context.done.load(Ordering::Acquire) < missing as u64 {
            assert!(Instant::now() < deadline, "filling the held broker: hang");
            std::thread::sleep(Duration::from_millis(10));
        }
        let failed = context.failed.load(Ordering::Relaxed);
        assert_eq!(
            failed, 0,
            "filling the held broker: {failed} records failed"
        );
    }
    let held = held_records(brokers, partitions);
    assert_eq!(
        held,
        before + missing as i64,
        "the held broker holds {held} records, {before} + {missing} sent"
    );
    (held, start.elapsed())
}

impl Bench {
    /// Closes the clients and lets go of the broker (a broker of our own stops).
    fn leave_broker(&mut self) {
        self.close_setups();
        self.mock = None;
        self.own = None;
        self.brokers.clear();
        self.broker = BrokerProcess::with_pid(None);
    }

    /// The held place's broker: `$WAFKA_BENCH_BROKERS`, or a local nisshi of our own on
    /// `engine`; filled to `spec.held_records`.
    fn use_held(&mut self, spec: &WhereSpec) -> HeldBroker {
        self.leave_broker();
        let engine = match std::env::var("WAFKA_BENCH_BROKERS") {
            Ok(fixed) if !fixed.trim().is_empty() => {
                self.brokers = fixed.trim().to_owned();
                self.broker = BrokerProcess::find(&self.brokers);
                "(WAFKA_BENCH_BROKERS)".to_owned()
            }
            _ => {
                let b = wafka_tests::LocalBroker::start(&spec.held_engine);
                self.brokers = b.addr.clone();
                self.broker = BrokerProcess::with_pid(b.pid());
                self.own = Some(b);
                spec.held_engine.clone()
            }
        };
        eprintln!(
            "bench: where held: filling {} ({engine}) to {} records in two topics of {} partitions",
            self.brokers, spec.held_records, spec.held_partitions
        );
        let broker_before = self.broker.mark();
        let (before, fill) = fill_held(&self.brokers, spec.held_partitions, spec.held_records);
        eprintln!(
            "bench: where held: {before} records held after {:.1} s (broker CPU {:.1} s)",
            fill.as_secs_f64(),
            self.broker
                .since(broker_before)
                .map_or(0.0, |c| c.as_secs_f64())
        );
        HeldBroker {
            engine,
            before,
            after: before,
            fill,
        }
    }

    /// A fresh mock cluster of one broker whose every answer comes `rtt` late.
    fn use_mock(&mut self, rtt: Duration) {
        self.leave_broker();
        let (mock, bootstrap) = wafka_tests::mock_cluster(1);
        mock.broker_round_trip_time(1, rtt).expect("mock rtt");
        self.broker = BrokerProcess::mock_thread();
        self.brokers = bootstrap;
        self.mock = Some(mock);
    }

    /// Each client's `batch.size` in effect on setup `s`, and a summary of its settings.
    fn effective_settings(&self, s: usize) -> (HashMap<Client, String>, String) {
        let setup = &self.setups[s];
        let mut batch_size = HashMap::new();
        let mut summary = Vec::new();
        if let Some(w) = &setup.wafka {
            let c = w.producer.config();
            batch_size.insert(Client::Wafka, c.batch_size.to_string());
            summary.push(format!(
                "wafka batch.size={}, linger.ms={}, max.in.flight.requests.per.connection={}, \
                 enable.idempotence={}, buffer.memory={}",
                c.batch_size,
                c.linger.as_millis(),
                c.max_in_flight,
                c.enable_idempotence,
                c.buffer_memory,
            ));
        }
        if let Some(r) = &setup.librdkafka {
            let client = r.threaded.client();
            let get = |name| rdkafka_effective(client, name);
            batch_size.insert(Client::Librdkafka, get("batch.size"));
            summary.push(format!(
                "librdkafka batch.size={}, batch.num.messages={}, linger.ms={}, \
                 max.in.flight.requests.per.connection={}, enable.idempotence={}, \
                 queue.buffering.max.kbytes={}, queue.buffering.max.messages={}",
                get("batch.size"),
                get("batch.num.messages"),
                get("queue.buffering.max.ms"),
                get("max.in.flight.requests.per.connection"),
                get("enable.idempotence"),
                get("queue.buffering.max.kbytes"),
                get("queue.buffering.max.messages"),
            ));
        }
        (batch_size, summary.join("; "))
    }
}

/// Runs the where-users-run rows: per place, per (settings, partitions, codec), a warm-up
/// phase per client, then `spec.rounds` rounds of both clients, alternating who goes first.
fn run_where(bench: &mut Bench, spec: &WhereSpec) -> Vec<WhereTable> {
    let clients = bench.clients.clone();
    let mut tables = Vec::new();
    for &place in &spec.places {
        let started = Instant::now();
        let mut held = (place == Place::Held).then(|| bench.use_held(spec));
        let mut rows = Vec::new();
        let mut effective: Vec<(Settings, String)> = Vec::new();
        for &settings in &spec.settings {
            for &partitions in &spec.partitions {
                for &codec in &spec.codecs {
                    if let Place::Remote(rtt) = place {
                        bench.use_mock(rtt);
                    }
                    let mut case = Case::new(Mode::FireAndForget, 100, false, spec.records)
                        .on(partitions, codec)
                        .with(settings);
                    case.name = format!("{}: {}", place.name(), case.name);
                    let r = rows.len();
                    let warmup = Case {
                        records: spec.warmup,
                        ..case.clone()
                    };
                    for &client in &clients {
                        if warmup.records > 0 {
                            bench.phase(client, &warmup, "where warm-up");
                        }
                    }
                    let mut results: HashMap<Client, Vec<PhaseResult>> = HashMap::new();
                    for round in 0..spec.rounds {
                        let mut order = clients.clone();
                        if (r + round) % 2 == 1 {
                            order.reverse();
                        }
                        for client in order {
                            if let Some(mock) = &bench.mock {
                                mock.start_request_tracking();
                            }
                            let label = format!("where round {}/{}", round + 1, spec.rounds);
                            let result = bench.phase(client, &case, &label);
                            if let Some(mock) = &bench.mock {
                                // The clients' counts, checked against what the broker got.
                                let got = mock.requests(wafka_tests::RDKafkaApiKey::Produce).len();
                                assert_eq!(
                                    result.produce_requests,
                                    Some(got as u64),
                                    "{label} {} {}: produce requests counted by the client \
                                     vs received by the mock",
                                    client.name(),
                                    case.name
                                );
                            }
                            results.entry(client).or_default().push(result);
                        }
                    }
                    let s = bench.setup(partitions, codec, settings);
                    let (batch_size, summary) = bench.effective_settings(s);
                    if !effective.iter().any(|(known, _)| *known == settings) {
                        effective.push((settings, summary));
                    }
                    rows.push(WhereRow {
                        case,
                        batch_size,
                        results,
                    });
                    // No idle clients beside the next row's.
                    bench.close_setups();
                }
            }
        }
        if let Some(h) = &mut held {
            h.after = held_records(&bench.brokers, spec.held_partitions)
                + rows
                    .iter()
                    .flat_map(|r| r.results.values().flatten())
                    .map(|p| p.records as i64)
                    .sum::<i64>()
                + (rows.len() * clients.len() * spec.warmup) as i64;
        }
        bench.leave_broker();
        tables.push(WhereTable {
            place,
            held,
            effective,
            rows,
            measured: started.elapsed(),
        });
    }
    tables
}

/// `ratio` in bold with ✓ when `ok`, ✗ otherwise.
fn verdict(ratio: f64, ok: bool) -> String {
    format!("**{ratio:.2}×** {}", if ok { "✓" } else { "✗" })
}

/// The goals: wafka's records/s at least 1.5× librdkafka's, its client CPU per record at most
/// 0.5× and its broker CPU per record at most 1×.
const GOAL_RECORDS_PER_S: f64 = 1.5;
const GOAL_CLIENT_CPU: f64 = 0.5;
const GOAL_BROKER_CPU: f64 = 1.0;

fn where_table(t: &WhereTable, spec: &WhereSpec) -> String {
    let mut out = String::new();
    let what = format!(
        "{} records of 100 B per phase (null keys, fire-and-forget then flush; values all `v`), \
         {} round(s){}, the clients alternating; a warm-up phase of {} records per client first",
        spec.records,
        spec.rounds,
        if spec.rounds > 1 {
            " (median by records/s)"
        } else {
            ""
        },
        spec.warmup,
    );
    match (t.place, &t.held) {
        (Place::Held, Some(h)) => {
            let _ = writeln!(
                out,
                "Where users run: a local nisshi ({} storage) that held {} records in two topics of {} \
                 partitions before the rows (filled in {:.0} s, {HELD_CHUNK} records per batch) and {} \
                 after them, the same broker for every row, each row on a topic of its own; {what}. \
                 **broker CPU**: nisshi's process CPU; measured in {:.0} s.",
                h.engine,
                h.before,
                spec.held_partitions,
                h.fill.as_secs_f64(),
                h.after,
                t.measured.as_secs_f64(),
            );
        }
        (place, _) => {
            let _ = writeln!(
                out,
                "Where users run: one broker {} away (librdkafka's mock cluster in this process, \
                 every answer {} late, a fresh cluster per row); {what}. **broker CPU**: the \
                 mock's thread (`rdk:mock`), taken out of **client CPU**; produce requests \
                 checked against the mock's request log; measured in {:.0} s.",
                place.name(),
                place.name(),
                t.measured.as_secs_f64(),
            );
        }
    }
    out.push('\n');
    for (settings, summary) in &t.effective {
        let _ = writeln!(out, "- {}: {summary}", settings.name());
    }
    out.push('\n');
    out.push_str(
        "| settings | case | client | batch.size | records | s | records/s | records/s min–max | client CPU s/M | broker CPU s/M | produce requests / 1k records |\n",
    );
    out.push_str("|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|\n");
    let mut met = [0usize; 4];
    let mut compared = 0;
    for row in &t.rows {
        let case_name = format!(
            "{} partition{}{}",
            row.case.partitions,
            if row.case.partitions == 1 { "" } else { "s" },
            if row.case.compression == "none" {
                String::new()
            } else {
                format!(", {}", row.case.compression)
            }
        );
        let mut summaries = HashMap::new();
        for client in [Client::Wafka, Client::Librdkafka] {
            let Some(rounds) = row.results.get(&client) else {
                continue;
            };
            let summary = summarize(rounds.clone());
            let r = &summary.median;
            let _ = writeln!(
                out,
                "| {} | {case_name} | {} | {} | {} | {:.2} | {:.0} | {:.0}–{:.0} | {:.2} | {} | {} |",
                row.case.settings.name(),
                client.name(),
                row.batch_size.get(&client).map_or("?", String::as_str),
                r.records,
                r.wall.as_secs_f64(),
                r.records_per_s(),
                summary.min_records_per_s,
                summary.max_records_per_s,
                r.cpu_per_million(),
                r.broker_cpu_per_million()
                    .map_or_else(|| "n/a".to_owned(), |b| format!("{b:.3}")),
                r.requests_per_thousand()
                    .map_or_else(|| "n/a".to_owned(), |n| format!("{n:.2}")),
            );
            summaries.insert(client, summary);
        }
        let (Some(w), Some(l)) = (
            summaries.get(&Client::Wafka),
            summaries.get(&Client::Librdkafka),
        ) else {
            continue;
        };
        let (w, l) = (&w.median, &l.median);
        compared += 1;
        // Judged as shown (two decimals), so that a verdict never contradicts its number.
        let shown = |x: f64| (x * 100.0).round() / 100.0;
        let speed = shown(w.records_per_s() / l.records_per_s());
        let cpu = shown(w.cpu_per_million() / l.cpu_per_million().max(1e-9));
        let broker = match (w.broker_cpu_per_million(), l.broker_cpu_per_million()) {
            (Some(a), Some(b)) if b > 0.0 => Some(shown(a / b)),
            _ => None,
        };
        let oks = [
            speed >= GOAL_RECORDS_PER_S,
            cpu <= GOAL_CLIENT_CPU,
            broker.is_some_and(|b| b <= GOAL_BROKER_CPU),
        ];
        for (i, ok) in oks.iter().enumerate() {
            met[i] += usize::from(*ok);
        }
        met[3] += usize::from(oks.iter().all(|ok| *ok));
        let _ = writeln!(
            out,
            "| {} | {case_name} | **wafka / librdkafka** | | | | {} | | {} | {} | {} |",
            row.case.settings.name(),
            verdict(speed, oks[0]),
            verdict(cpu, oks[1]),
            broker.map_or_else(|| "n/a".to_owned(), |b| verdict(b, oks[2])),
            match (w.produce_requests, l.produce_requests) {
                (Some(a), Some(b)) if b > 0 => format!("{:.2}×", a as f64 / b as f64),
                _ => String::new(),
            },
        );
    }
    if compared > 0 {
        out.push('\n');
        let _ = writeln!(
            out,
            "Goals (wafka's records/s ≥ {GOAL_RECORDS_PER_S}× librdkafka's, client CPU per record ≤ \
             {GOAL_CLIENT_CPU}×, broker CPU per record ≤ {GOAL_BROKER_CPU}×): all three on {} of \
             {compared} rows; records/s on {}, client CPU on {}, broker CPU on {}.",
            met[3], met[0], met[1], met[2],
        );
    }
    out
}

// ---------------------------------------------------------------------------
// The wasm path: a plugin publishing through the host
// ---------------------------------------------------------------------------

/// Value size of the plugin tables' records.
const WASM_VALUE_SIZE: usize = 100;
/// Timed loads of the probe after its cold (first) load.
const RELOADS: usize = 3;
/// Timed `instantiate` + `init` of the probe.
const INSTANTIATIONS: usize = 5;
/// Calls before each latency phase, checked but not timed.
const LATENCY_WARMUP: usize = 50;

/// `$WAFKA_BENCH_WASM` / `$WAFKA_BENCH_WHERE`: whether the plugin / where-users-run tables run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TableMode {
    Skip,
    Also,
    Only,
}

fn table_mode(name: &str) -> TableMode {
    match std::env::var(name).unwrap_or_default().trim() {
        "" | "1" => TableMode::Also,
        "0" => TableMode::Skip,
        "only" => TableMode::Only,
        other => panic!("{name}={other:?}: expected 0, 1 or only"),
    }
}

/// Owner options of the native paths: those a plugin instance gets (`Plugin::instantiate`),
/// delivery reports included, so both paths do the same bookkeeping per record.
fn native_owner(producer: &Producer) -> Owner {
    producer.owner(OwnerOptions {
        name: "native".to_owned(),
        delivery_reports: true,
        max_reports: Some(wafka::plugin::MAX_REPORTS),
        ..Default::default()
    })
}

/// How long loading and starting the probe plugin took, as (wall, CPU).
struct LoadTimes {
    wasm_bytes: u64,
    engine_new: (Duration, Duration),
    /// The first `Engine::load_file` of the process.
    cold: (Duration, Duration),
    /// The loads after it (same engine; nothing is cached between them).
    reloads: Vec<(Duration, Duration)>,
    /// `Plugin::instantiate` + `PluginInstance::init`.
    instantiations: Vec<(Duration, Duration)>,
}

/// How the records of a fire-and-forget comparison phase get into the producer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum PublishPath {
    /// `Owner::send` in a loop in the host, no plugin.
    Native,
    /// One `handle` call; the plugin publishes every record (`bench TOPIC N 100`).
    WasmOneEvent,
    /// One `handle` call per record (`bench TOPIC 1 100`).
    WasmEventPerRecord,
}

impl PublishPath {
    const ALL: [PublishPath; 3] = [
        PublishPath::Native,
        PublishPath::WasmOneEvent,
        PublishPath::WasmEventPerRecord,
    ];

    fn name(self) -> &'static str {
        match self {
            PublishPath::Native => "native: N × `owner.send`",
            PublishPath::WasmOneEvent => "plugin: 1 `handle`, N × `publish`",
            PublishPath::WasmEventPerRecord => "plugin: N × `handle`, 1 `publish` each",
        }
    }
}

/// What one fire-and-forget phase of the plugin comparison measured.
#[derive(Clone, Debug)]
struct PublishResult {
    records: usize,
    /// First publish to the return of the last one (the flush not included).
    publish_wall: Duration,
    /// First publish to the end of the flush.
    wall: Duration,
    cpu: Duration,
    broker_cpu: Option<Duration>,
}

impl PublishResult {
    fn publish_ns(&self) -> f64 {
        self.publish_wall.as_nanos() as f64 / self.records as f64
    }

    fn cpu_ns(&self) -> f64 {
        self.cpu.as_nanos() as f64 / self.records as f64
    }

    fn records_per_s(&self) -> f64 {
        self.records as f64 / self.wall.as_secs_f64()
    }

    fn broker_cpu_per_million(&self) -> Option<f64> {
        self.broker_cpu
            .map(|c| c.as_secs_f64() * 1e6 / self.records as f64)
    }
}

/// One kind of call timed in the latency table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CallPath {
    /// `handle` (one `publish`), plugin linked with `Autoflush::On`.
    WasmAutoflushOn,
    /// The same on a producer with nothing but `bootstrap.servers` set.
    WasmAutoflushOnDefaults,
    /// `handle` (one `publish`), `Autoflush::Off`; one flush after the timed calls.
    WasmAutoflushOff,
    /// `owner.send` then `owner.flush()`: what autoflush does, without the plugin.
    NativeSendFlush,
    /// `owner.send` then await the record's delivery (it waits for linger.ms).
    NativeSendAwait,
    /// The same with `linger.ms=0`.
    NativeSendAwaitLinger0,
    /// `owner.send` only; one flush after the timed calls.
    NativeSendOnly,
}

impl CallPath {
    const ALL: [CallPath; 7] = [
        CallPath::WasmAutoflushOn,
        CallPath::NativeSendFlush,
        CallPath::WasmAutoflushOnDefaults,
        CallPath::NativeSendAwait,
        CallPath::NativeSendAwaitLinger0,
        CallPath::WasmAutoflushOff,
        CallPath::NativeSendOnly,
    ];

    fn name(self) -> &'static str {
        match self {
            CallPath::WasmAutoflushOn | CallPath::WasmAutoflushOnDefaults => {
                "plugin `handle` (1 `publish`), autoflush on"
            }
            CallPath::WasmAutoflushOff => "plugin `handle` (1 `publish`), autoflush off",
            CallPath::NativeSendFlush => "native `owner.send` + `owner.flush()`",
            CallPath::NativeSendAwait | CallPath::NativeSendAwaitLinger0 => {
                "native `owner.send` + await the delivery"
            }
            CallPath::NativeSendOnly => "native `owner.send`",
        }
    }

    fn settings(self) -> &'static str {
        match self {
            CallPath::WasmAutoflushOnDefaults => "producer defaults",
            CallPath::NativeSendAwaitLinger0 => "bench, linger.ms=0",
            _ => "bench",
        }
    }

    fn is_wasm(self) -> bool {
        matches!(
            self,
            CallPath::WasmAutoflushOn
                | CallPath::WasmAutoflushOnDefaults
                | CallPath::WasmAutoflushOff
        )
    }

    /// The native call doing the same producer work, for the overhead column.
    fn native_peer(self) -> Option<CallPath> {
        match self {
            CallPath::WasmAutoflushOn => Some(CallPath::NativeSendFlush),
            CallPath::WasmAutoflushOff => Some(CallPath::NativeSendOnly),
            _ => None,
        }
    }
}

/// What one latency phase measured.
#[derive(Clone, Debug)]
struct LatencyResult {
    calls: usize,
    wall: Duration,
    cpu: Duration,
    p50_ns: u64,
    p99_ns: u64,
    max_ns: u64,
    mean_ns: u64,
}

/// The producers, plugins and results of the plugin tables.
struct WasmBench {
    /// The shared settings (as the wafka client's).
    producer: Producer,
    /// Nothing but `bootstrap.servers`.
    defaults: Producer,
    /// The shared settings with `linger.ms=0`.
    linger0: Producer,
    /// The probe linked with `Autoflush::Off` and with `Autoflush::On`.
    off: wafka::Plugin,
    on: wafka::Plugin,
    loads: LoadTimes,
}

impl WasmBench {
    /// Loads the probe (timing it) and creates the producers.
    fn new(bench: &Bench, brokers: &str, probe: &Path) -> WasmBench {
        let wasm_bytes = std::fs::metadata(probe)
            .unwrap_or_else(|e| panic!("{}: {e}", probe.display()))
            .len();
        let (engine, engine_new) = timed(|| wafka::Engine::new().expect("wasmtime engine"));
        let load = |autoflush| {
            let mut options = PluginOptions::new("probe");
            options.autoflush = autoflush;
            timed(|| {
                engine
                    .load_file(probe, options)
                    .unwrap_or_else(|e| panic!("loading {}: {e}", probe.display()))
            })
        };
        let (off, cold) = load(Autoflush::Off);
        let reloads = (0..RELOADS).map(|_| load(Autoflush::Off).1).collect();
        let (on, _) = load(Autoflush::On);

        let _enter = bench.runtime.enter();
        let producer = wafka_producer(brokers);
        let defaults = Producer::from_properties([("bootstrap.servers", brokers)])
            .expect("wafka producer with defaults");
        let linger0 = wafka_producer_with(brokers, &[("linger.ms", "0")]);
        let instantiations = (0..INSTANTIATIONS)
            .map(|_| {
                timed(|| {
                    bench.runtime.block_on(async {
                        let mut instance = off.instantiate(&producer).await.expect("instantiate");
                        instance.init(&[]).await.expect("init");
                    })
                })
                .1
            })
            .collect();
        WasmBench {
            producer,
            defaults,
            linger0,
            off,
            on,
            loads: LoadTimes {
                wasm_bytes,
                engine_new,
                cold,
                reloads,
                instantiations,
            },
        }
    }

    fn instance(
        &self,
        runtime: &tokio::runtime::Runtime,
        plugin: &wafka::Plugin,
        producer: &Producer,
    ) -> PluginInstance {
        runtime.block_on(async {
            let mut instance = plugin
                .instantiate(producer)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            instance.init(&[]).await.unwrap_or_else(|e| panic!("{e}"));
            instance
        })
    }

    fn close(&self, runtime: &tokio::runtime::Runtime) {
        runtime.block_on(async {
            for p in [&self.producer, &self.defaults, &self.linger0] {
                p.close().await;
            }
        });
    }
}

/// Calls `handle` with `event`; panics with the plugin's error.
async fn handle(instance: &mut PluginInstance, event: &[u8], what: &str) {
    if let Err(e) = instance.handle(event).await {
        panic!("{what}: {e}");
    }
}

/// Flushes `instance`; panics with the first failure.
async fn flush_instance(instance: &PluginInstance, what: &str) {
    if let Err(e) = instance.flush().await {
        panic!("{what}: flush: {e}");
    }
}

/// Checks an instance's counters over a phase: `events` events, none failed, `records` records
/// queued, none refused.
fn check_instance(
    what: &str,
    before: PluginStats,
    after: PluginStats,
    events: usize,
    records: usize,
) {
    let got = (
        after.events - before.events,
        after.failed_events - before.failed_events,
        after.records - before.records,
        after.refused - before.refused,
    );
    assert_eq!(
        got,
        (events as u64, 0, records as u64, 0),
        "{what}: plugin stats (events, failed events, records, refused) disagree: {after:?}"
    );
}

/// `owner.send`; panics with the error.
async fn send(
    owner: &Owner,
    record: &Record<'_>,
    what: &str,
    i: usize,
) -> wafka_producer::Delivery {
    owner
        .send(record)
        .await
        .unwrap_or_else(|e| panic!("{what}: send {i} failed: {e}"))
}

/// `n` calls of one latency phase, each timed (ns).
async fn timed_calls(
    path: CallPath,
    mut instance: Option<&mut PluginInstance>,
    owner: &Owner,
    topic: &str,
    n: usize,
    what: &str,
) -> Vec<u64> {
    let event = format!("bench {topic} 1 {WASM_VALUE_SIZE}");
    let value = vec![b'v'; WASM_VALUE_SIZE];
    let record = Record::new(topic, &value);
    let mut latencies = Vec::with_capacity(n);
    for i in 0..n {
        let start = Instant::now();
        match path {
            CallPath::WasmAutoflushOn
            | CallPath::WasmAutoflushOnDefaults
            | CallPath::WasmAutoflushOff => {
                let instance = instance.as_deref_mut().expect("plugin instance");
                handle(instance, event.as_bytes(), what).await;
            }
            CallPath::NativeSendFlush => {
                send(owner, &record, what, i).await;
                if let Err(e) = owner.flush().await {
                    panic!("{what}: flush after record {i}: {e}");
                }
            }
            CallPath::NativeSendAwait | CallPath::NativeSendAwaitLinger0 => {
                if let Err(e) = send(owner, &record, what, i).await.wait().await {
                    panic!("{what}: record {i} failed: {e}");
                }
            }
            CallPath::NativeSendOnly => {
                send(owner, &record, what, i).await;
            }
        }
        latencies.push(start.elapsed().as_nanos() as u64);
    }
    // Queued, not yet acknowledged: flush outside the timed calls.
    match path {
        CallPath::WasmAutoflushOff => {
            flush_instance(instance.expect("plugin instance"), what).await;
        }
        CallPath::NativeSendOnly => {
            if let Err(e) = owner.flush().await {
                panic!("{what}: flush: {e}");
            }
        }
        _ => {}
    }
    latencies
}

impl Bench {
    /// Runs `work` and checks that afterwards exactly `records` more records are acknowledged
    /// by `producer` (none failed) and stored by the broker. Returns `work`'s output and the
    /// wall, CPU and broker CPU time it took.
    fn measured<T>(
        &self,
        what: &str,
        producer: &Producer,
        records: usize,
        work: impl std::future::Future<Output = T>,
    ) -> (T, Duration, Duration, Option<Duration>) {
        let stats_before = producer.stats();
        let stored_before = self.main().watermarks.total();
        let broker_before = self.broker.mark();
        let cpu_before = process_cpu();
        let start = Instant::now();
        let out = self.runtime.block_on(async {
            match tokio::time::timeout(PHASE_TIMEOUT, work).await {
                Ok(out) => out,
                Err(_) => panic!(
                    "{what}: hang: not done after {PHASE_TIMEOUT:?}; producer stats {:?}",
                    producer.stats()
                ),
            }
        });
        let wall = start.elapsed();
        let cpu = process_cpu().saturating_sub(cpu_before);
        let broker_cpu = self.broker.since(broker_before);
        let d = stats_delta(stats_before, producer.stats());
        assert_eq!(
            (d.records_acked, d.records_failed),
            (records as u64, 0),
            "{what}: producer stats disagree with the records sent: {d:?}"
        );
        let stored = self.main().watermarks.total() - stored_before;
        assert_eq!(
            stored, records as i64,
            "{what}: the broker stored {stored} records, {records} were acknowledged"
        );
        (out, wall, cpu, broker_cpu)
    }

    /// One fire-and-forget phase of the plugin comparison: `records` records of 100 B, then
    /// one flush.
    fn publish_phase(
        &self,
        w: &WasmBench,
        path: PublishPath,
        owner: &Owner,
        instance: &mut PluginInstance,
        records: usize,
        label: &str,
    ) -> PublishResult {
        let what = format!("{label} {}", path.name());
        let topic = self.main().topic.as_str();
        let value = vec![b'v'; WASM_VALUE_SIZE];
        let stats_before = instance.stats();
        let sent_before = owner.records_sent();
        let work = async {
            match path {
                PublishPath::Native => {
                    let record = Record::new(topic, &value);
                    let start = Instant::now();
                    for i in 0..records {
                        send(owner, &record, &what, i).await;
                    }
                    let publish_wall = start.elapsed();
                    if let Err(e) = owner.flush().await {
                        panic!("{what}: flush: {e}");
                    }
                    publish_wall
                }
                PublishPath::WasmOneEvent => {
                    let event = format!("bench {topic} {records} {WASM_VALUE_SIZE}");
                    let start = Instant::now();
                    handle(instance, event.as_bytes(), &what).await;
                    let publish_wall = start.elapsed();
                    flush_instance(instance, &what).await;
                    publish_wall
                }
                PublishPath::WasmEventPerRecord => {
                    let event = format!("bench {topic} 1 {WASM_VALUE_SIZE}");
                    let start = Instant::now();
                    for _ in 0..records {
                        handle(instance, event.as_bytes(), &what).await;
                    }
                    let publish_wall = start.elapsed();
                    flush_instance(instance, &what).await;
                    publish_wall
                }
            }
        };
        let (publish_wall, wall, cpu, broker_cpu) =
            self.measured(&what, &w.producer, records, work);
        let (events, by_plugin, by_owner) = match path {
            PublishPath::Native => (0, 0, records),
            PublishPath::WasmOneEvent => (1, records, 0),
            PublishPath::WasmEventPerRecord => (records, records, 0),
        };
        check_instance(&what, stats_before, instance.stats(), events, by_plugin);
        assert_eq!(
            owner.records_sent() - sent_before,
            by_owner as u64,
            "{what}: records sent through the native owner"
        );
        let result = PublishResult {
            records,
            publish_wall,
            wall,
            cpu,
            broker_cpu,
        };
        eprintln!(
            "bench: {what}: {records} records, publish loop {:.3} s ({:.0} ns/record), total {:.3} s, {:.0} records/s, CPU {:.3} s ({:.0} ns/record)",
            publish_wall.as_secs_f64(),
            result.publish_ns(),
            wall.as_secs_f64(),
            result.records_per_s(),
            cpu.as_secs_f64(),
            result.cpu_ns(),
        );
        result
    }

    /// One latency phase: `calls` calls of one record each, after [`LATENCY_WARMUP`] untimed
    /// ones, on a fresh plugin instance or owner.
    fn latency_phase(&self, w: &WasmBench, path: CallPath, calls: usize) -> LatencyResult {
        let what = format!("latency {} ({})", path.name(), path.settings());
        let producer = match path {
            CallPath::WasmAutoflushOnDefaults => &w.defaults,
            CallPath::NativeSendAwaitLinger0 => &w.linger0,
            _ => &w.producer,
        };
        let mut instance = match path {
            CallPath::WasmAutoflushOn | CallPath::WasmAutoflushOnDefaults => {
                Some(w.instance(&self.runtime, &w.on, producer))
            }
            CallPath::WasmAutoflushOff => Some(w.instance(&self.runtime, &w.off, producer)),
            _ => None,
        };
        let owner = native_owner(producer);
        let topic = self.main().topic.as_str();
        let mut result = None;
        for (label, n) in [("warm-up", LATENCY_WARMUP), ("measured", calls)] {
            let what = format!("{what} {label}");
            let stats_before = instance.as_ref().map(PluginInstance::stats);
            let sent_before = owner.records_sent();
            let work = timed_calls(path, instance.as_mut(), &owner, topic, n, &what);
            let (mut latencies, wall, cpu, _) = self.measured(&what, producer, n, work);
            match (stats_before, &instance) {
                (Some(before), Some(instance)) => {
                    check_instance(&what, before, instance.stats(), n, n);
                }
                _ => assert_eq!(
                    owner.records_sent() - sent_before,
                    n as u64,
                    "{what}: records sent through the native owner"
                ),
            }
            latencies.sort_unstable();
            result = Some(LatencyResult {
                calls: n,
                wall,
                cpu,
                p50_ns: percentile(&latencies, 50.0),
                p99_ns: percentile(&latencies, 99.0),
                max_ns: latencies.last().copied().unwrap_or(0),
                mean_ns: latencies.iter().sum::<u64>() / latencies.len().max(1) as u64,
            });
        }
        let result = result.expect("a measured phase");
        eprintln!(
            "bench: {what}: {} calls in {:.3} s, CPU {:.3} s, p50 {} µs, p99 {} µs, max {} µs, mean {} µs",
            result.calls,
            result.wall.as_secs_f64(),
            result.cpu.as_secs_f64(),
            micros(result.p50_ns),
            micros(result.p99_ns),
            micros(result.max_ns),
            micros(result.mean_ns),
        );
        result
    }
}

/// What the plugin tables show.
struct WasmReport {
    loads: LoadTimes,
    publish: HashMap<PublishPath, Vec<PublishResult>>,
    latency: Vec<(CallPath, LatencyResult)>,
    rounds: usize,
    records: usize,
    measured: Duration,
}

/// The plugin phases: load times, the fire-and-forget comparison (a warm-up round, then
/// `rounds` rounds), the latency phases.
fn run_wasm(
    bench: &Bench,
    brokers: &str,
    probe: &Path,
    rounds: usize,
    warmup: usize,
    records: usize,
    calls: usize,
) -> WasmReport {
    let started = Instant::now();
    let w = WasmBench::new(bench, brokers, probe);
    let loads = &w.loads;
    eprintln!(
        "bench: probe ({} bytes): engine {:.1} ms, cold load {:.1} ms (CPU {:.1} ms), reloads {:?} ms",
        loads.wasm_bytes,
        loads.engine_new.0.as_secs_f64() * 1e3,
        loads.cold.0.as_secs_f64() * 1e3,
        loads.cold.1.as_secs_f64() * 1e3,
        loads
            .reloads
            .iter()
            .map(|r| (r.0.as_secs_f64() * 1e3).round())
            .collect::<Vec<_>>(),
    );

    let owner = native_owner(&w.producer);
    let mut instance = w.instance(&bench.runtime, &w.off, &w.producer);
    let mut publish: HashMap<PublishPath, Vec<PublishResult>> = HashMap::new();
    if records > 0 {
        for path in PublishPath::ALL {
            if warmup > 0 {
                bench.publish_phase(&w, path, &owner, &mut instance, warmup, "warm-up");
            }
        }
        for round in 0..rounds {
            let mut order = PublishPath::ALL.to_vec();
            if round % 2 == 1 {
                order.reverse();
            }
            for path in order {
                let label = format!("round {}/{rounds}", round + 1);
                let result = bench.publish_phase(&w, path, &owner, &mut instance, records, &label);
                publish.entry(path).or_default().push(result);
            }
        }
    }
    let latency = if calls > 0 {
        CallPath::ALL
            .iter()
            .map(|&path| (path, bench.latency_phase(&w, path, calls)))
            .collect()
    } else {
        Vec::new()
    };
    w.close(&bench.runtime);
    WasmReport {
        loads: w.loads,
        publish,
        latency,
        rounds,
        records,
        measured: started.elapsed(),
    }
}

// ---------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------

/// One phase over all rounds: the median round by records/s, and the spread.
struct Summary {
    median: PhaseResult,
    min_records_per_s: f64,
    max_records_per_s: f64,
}

fn summarize(mut rounds: Vec<PhaseResult>) -> Summary {
    rounds.sort_by(|a, b| a.records_per_s().total_cmp(&b.records_per_s()));
    Summary {
        min_records_per_s: rounds[0].records_per_s(),
        max_records_per_s: rounds[rounds.len() - 1].records_per_s(),
        median: rounds.swap_remove(rounds.len() / 2),
    }
}

fn micros(ns: u64) -> String {
    format!("{:.0}", ns as f64 / 1000.0)
}

fn table(
    cases: &[Case],
    clients: &[Client],
    results: &HashMap<(usize, Client), Summary>,
) -> String {
    let mut out = String::new();
    out.push_str(
        "| case | client | records | s | records/s | records/s min–max | MB/s | CPU s/M | broker CPU s/M | p50 µs | p99 µs | max µs |\n",
    );
    out.push_str("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
    for (c, case) in cases.iter().enumerate() {
        for &client in clients {
            let Some(summary) = results.get(&(c, client)) else {
                continue;
            };
            let r = &summary.median;
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.2} | {:.0} | {:.0}–{:.0} | {:.1} | {:.2} | {} | {} | {} | {} |",
                case.name,
                client.name(),
                r.records,
                r.wall.as_secs_f64(),
                r.records_per_s(),
                summary.min_records_per_s,
                summary.max_records_per_s,
                r.mb_per_s(),
                r.cpu_per_million(),
                r.broker_cpu_per_million()
                    .map_or_else(|| "n/a".to_owned(), |b| format!("{b:.2}")),
                micros(r.p50_ns),
                micros(r.p99_ns),
                micros(r.max_ns),
            );
        }
        if let (Some(w), Some(l)) = (
            results.get(&(c, Client::Wafka)),
            results.get(&(c, Client::Librdkafka)),
        ) {
            let (w, l) = (&w.median, &l.median);
            let _ = writeln!(
                out,
                "| {} | **wafka / librdkafka** | | | **{:.2}×** | | {:.2}× | **{:.2}×** | {} | {:.2}× | {:.2}× | |",
                case.name,
                w.records_per_s() / l.records_per_s(),
                w.mb_per_s() / l.mb_per_s(),
                w.cpu_per_million() / l.cpu_per_million(),
                match (w.broker_cpu_per_million(), l.broker_cpu_per_million()) {
                    (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
                    _ => String::new(),
                },
                w.p50_ns as f64 / l.p50_ns.max(1) as f64,
                w.p99_ns as f64 / l.p99_ns.max(1) as f64,
            );
        }
    }
    out
}

/// The median of `values` by `key`, with the smallest and largest key.
fn median_by<T: Clone>(values: &[T], key: impl Fn(&T) -> f64) -> (T, f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| key(a).total_cmp(&key(b)));
    let (min, max) = (key(&sorted[0]), key(&sorted[sorted.len() - 1]));
    (sorted.swap_remove(sorted.len() / 2), min, max)
}

fn millis(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

/// The plugin tables, each after a line saying what it measures.
fn wasm_tables(report: &WasmReport) -> String {
    let mut out = String::new();
    if !report.publish.is_empty() {
        let _ = writeln!(
            out,
            "Plugin vs native publish, fire-and-forget: {} records of {WASM_VALUE_SIZE} B (null key) per phase, \
             autoflush off, one flush at the end; {}; {} round(s){}. \
             **publish ns/record**: wall time from the first publish to the return of the last one (the flush not included) per record; \
             **CPU ns/record**: process CPU (all threads, flush and sending included) per record; \
             **overhead**: the row's value minus the native row's, i.e. the host overhead per publish.",
            report.records,
            settings_summary(),
            report.rounds,
            if report.rounds > 1 { " (median by publish ns/record)" } else { "" },
        );
        out.push('\n');
        out.push_str(
            "| path | records | publish ns/record | min–max | overhead ns/publish (wall) | CPU ns/record | overhead ns/publish (CPU) | s | records/s | broker CPU s/M |\n",
        );
        out.push_str("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
        let medians: HashMap<PublishPath, (PublishResult, f64, f64)> = report
            .publish
            .iter()
            .map(|(&path, rounds)| (path, median_by(rounds, PublishResult::publish_ns)))
            .collect();
        let native = medians.get(&PublishPath::Native).map(|m| &m.0);
        for path in PublishPath::ALL {
            let Some((r, min, max)) = medians.get(&path) else {
                continue;
            };
            let overhead = |f: fn(&PublishResult) -> f64| match native {
                Some(n) if path != PublishPath::Native => format!("**{:+.0}**", f(r) - f(n)),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | {:.0}–{:.0} | {} | {:.0} | {} | {:.2} | {:.0} | {} |",
                path.name(),
                r.records,
                r.publish_ns(),
                min,
                max,
                overhead(PublishResult::publish_ns),
                r.cpu_ns(),
                overhead(PublishResult::cpu_ns),
                r.wall.as_secs_f64(),
                r.records_per_s(),
                r.broker_cpu_per_million()
                    .map_or_else(|| "n/a".to_owned(), |b| format!("{b:.2}")),
            );
        }
        out.push('\n');
    }

    if !report.latency.is_empty() {
        let calls = report.latency[0].1.calls;
        let _ = writeln!(
            out,
            "Latency of one publish call, measured on the host: each call handles one {WASM_VALUE_SIZE} B record \
             (plugin: one `handle` event whose `publish` runs once; native: the owner calls named), \
             {calls} calls per row after {LATENCY_WARMUP} untimed ones; settings \"bench\" = {}, \
             \"producer defaults\" = only bootstrap.servers (Kafka 4 defaults, linger.ms=5). \
             Autoflush off and plain `send` return once the record is queued (one flush after the timed calls). \
             **overhead**: p50 minus the p50 of the native call doing the same producer work.",
            settings_summary(),
        );
        out.push('\n');
        out.push_str(
            "| call | settings | calls | p50 µs | p99 µs | max µs | mean µs | calls/s | CPU µs/call | overhead µs (p50) |\n",
        );
        out.push_str("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|\n");
        let find = |path: CallPath| {
            report
                .latency
                .iter()
                .find(|(p, _)| *p == path)
                .map(|(_, r)| r)
        };
        let us = |ns: u64| format!("{:.1}", ns as f64 / 1000.0);
        for (path, r) in &report.latency {
            let overhead = match path.native_peer().and_then(find) {
                Some(n) => format!("**{:+.1}**", (r.p50_ns as f64 - n.p50_ns as f64) / 1000.0),
                None => String::new(),
            };
            let name = if path.is_wasm() {
                format!("**{}**", path.name())
            } else {
                path.name().to_owned()
            };
            let _ = writeln!(
                out,
                "| {name} | {} | {} | {} | {} | {} | {} | {:.0} | {:.1} | {overhead} |",
                path.settings(),
                r.calls,
                us(r.p50_ns),
                us(r.p99_ns),
                us(r.max_ns),
                us(r.mean_ns),
                r.calls as f64 / r.wall.as_secs_f64(),
                r.cpu.as_secs_f64() * 1e6 / r.calls as f64,
            );
        }
        out.push('\n');
    }

    let l = &report.loads;
    let _ = writeln!(
        out,
        "Plugin load (compile) time: probe.wasm ({:.0} KiB), wasmtime with Cranelift, {} CPUs (parallel compilation: CPU can exceed wall); \
         wall and process CPU in ms; plugin tables measured in {:.0} s.",
        l.wasm_bytes as f64 / 1024.0,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        report.measured.as_secs_f64(),
    );
    out.push('\n');
    out.push_str("| step | wall ms | CPU ms |\n|---|--:|--:|\n");
    let _ = writeln!(
        out,
        "| `Engine::new` | {} | {} |",
        millis(l.engine_new.0),
        millis(l.engine_new.1)
    );
    let _ = writeln!(
        out,
        "| **`Engine::load_file`, cold** (first load in the process) | **{}** | {} |",
        millis(l.cold.0),
        millis(l.cold.1)
    );
    for (what, times) in [
        (
            "`Engine::load_file` again (same engine, no cache)",
            &l.reloads,
        ),
        ("`instantiate` + `init`", &l.instantiations),
    ] {
        if times.is_empty() {
            continue;
        }
        let (median, min, max) = median_by(times, |t| t.0.as_secs_f64());
        let _ = writeln!(
            out,
            "| {what}, median of {} (wall min–max {:.1}–{:.1}) | {} | {} |",
            times.len(),
            min * 1e3,
            max * 1e3,
            millis(median.0),
            millis(median.1)
        );
    }
    out
}

// ---------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();

    let records = env_usize("WAFKA_BENCH_RECORDS", 300_000);
    let records_1k = env_usize("WAFKA_BENCH_RECORDS_1K", records / 3);
    let ack_records = env_usize("WAFKA_BENCH_ACK_RECORDS", 1000);
    let warmup = env_usize("WAFKA_BENCH_WARMUP", 20_000);
    let rounds = env_usize("WAFKA_BENCH_ROUNDS", 3).max(1);
    let keyed = env_usize("WAFKA_BENCH_KEYED", 1) != 0;
    let where_mode = table_mode("WAFKA_BENCH_WHERE");
    let wasm = match table_mode("WAFKA_BENCH_WASM") {
        TableMode::Only if where_mode == TableMode::Only => {
            panic!("WAFKA_BENCH_WASM=only and WAFKA_BENCH_WHERE=only exclude each other")
        }
        _ if where_mode == TableMode::Only => TableMode::Skip,
        mode => mode,
    };
    let where_spec = match (where_mode, wasm) {
        (TableMode::Skip, _) | (_, TableMode::Only) => None,
        _ => Some(WhereSpec::from_env(rounds)),
    };
    let wasm_records = env_usize("WAFKA_BENCH_WASM_RECORDS", 100_000);
    let latency_calls = env_usize("WAFKA_BENCH_LATENCY_CALLS", 2000);

    let clients: Vec<Client> = match env_list("WAFKA_BENCH_CLIENTS") {
        _ if wasm == TableMode::Only => Vec::new(),
        None => vec![Client::Wafka, Client::Librdkafka],
        Some(names) => names
            .iter()
            .map(|n| match n.as_str() {
                "wafka" => Client::Wafka,
                "librdkafka" | "rdkafka" => Client::Librdkafka,
                other => panic!("WAFKA_BENCH_CLIENTS: unknown client {other:?}"),
            })
            .collect(),
    };
    let wide = env_usize("WAFKA_BENCH_WIDE_PARTITIONS", 1000) as i32;
    let mut cases = vec![
        Case::new(Mode::FireAndForget, 100, false, records),
        Case::new(Mode::FireAndForget, 1024, false, records_1k),
    ];
    if keyed {
        cases.push(Case::new(Mode::FireAndForget, 100, true, records));
    }
    cases.push(Case::new(Mode::FireAndForget, 100, false, records).on(PARTITIONS, "lz4"));
    cases.push(Case::new(Mode::FireAndForget, 100, false, records).on(PARTITIONS, "zstd"));
    if wide > 0 {
        cases.push(Case::new(Mode::FireAndForget, 100, false, records).on(wide, "none"));
        cases.push(Case::new(Mode::FireAndForget, 100, false, records).on(wide, "lz4"));
    }
    cases.push(Case::new(Mode::WaitForAck, 100, false, ack_records));
    cases.push(Case::new(Mode::WaitForAck, 1024, false, ack_records));
    if let Some(filters) = env_list("WAFKA_BENCH_CASES") {
        cases.retain(|c| filters.iter().any(|f| c.name.contains(f.as_str())));
    }
    cases.retain(|c| c.records > 0);
    if wasm == TableMode::Only || where_mode == TableMode::Only {
        cases.clear();
    } else {
        assert!(!cases.is_empty(), "no case selected");
    }
    let capacity = cases
        .iter()
        .map(|c| c.records)
        .chain([warmup, WARMUP_ACKED])
        .chain(where_spec.iter().flat_map(|w| [w.records, w.warmup]))
        .max()
        .unwrap_or(0);

    // At nisshi's default `info` level, its span logging costs the broker
    // ~170 µs of CPU per record, so the broker would be all we measure.
    if std::env::var_os("WAFKA_BROKER_LOG").is_none() {
        std::env::set_var("WAFKA_BROKER_LOG", "warn");
    }
    // Build the plugins first: a failed build shows at once, and the build does not run
    // during a measurement.
    let probe = (wasm != TableMode::Skip).then(|| wafka_tests::guest("probe"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");

    let mut bench = Bench {
        runtime,
        brokers: String::new(),
        broker: BrokerProcess::with_pid(None),
        own: None,
        topics: 0,
        clients: clients.clone(),
        capacity,
        setups: Vec::new(),
        mock: None,
        recorders: HashMap::new(),
    };
    let (_, rdkafka_version) = rdkafka::util::get_rdkafka_version();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!(
        "bench: librdkafka {rdkafka_version}, {} CPUs, load {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    );

    let mut all: HashMap<(usize, Client), Vec<PhaseResult>> = HashMap::new();
    let started = Instant::now();
    for round in 0..rounds {
        if cases.is_empty() {
            break;
        }
        bench.fresh_broker(warmup);
        eprintln!(
            "bench: round {}/{rounds} on broker {} (pid {})",
            round + 1,
            bench.brokers,
            bench
                .broker
                .pid
                .map_or_else(|| "unknown".to_owned(), |p| p.to_string()),
        );
        for (c, case) in cases.iter().enumerate() {
            // Alternate who goes first, so slow drift (other builds on the
            // machine, the broker's growing log) does not favour one client.
            let mut order = clients.clone();
            if (c + round) % 2 == 1 {
                order.reverse();
            }
            for client in order {
                let label = format!("round {}/{rounds}", round + 1);
                let result = bench.phase(client, case, &label);
                all.entry((c, client)).or_default().push(result);
            }
        }
    }
    let measured = started.elapsed();

    bench.close_setups();
    let slow = if cases.is_empty() || env_usize("WAFKA_BENCH_SLOW", 1) == 0 {
        None
    } else {
        Some(slow_broker(
            &bench,
            &clients,
            env_usize("WAFKA_BENCH_SLOW_RECORDS", 100_000),
            rounds,
        ))
    };
    let results: HashMap<(usize, Client), Summary> =
        all.into_iter().map(|(k, v)| (k, summarize(v))).collect();
    let where_tables = where_spec.as_ref().map(|spec| {
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let tables = run_where(&mut bench, spec);
        (load, tables)
    });
    let wasm_report = probe.map(|probe| {
        bench.fresh_broker(0);
        let brokers = bench.brokers.clone();
        run_wasm(
            &bench,
            &brokers,
            &probe,
            rounds,
            warmup,
            wasm_records,
            latency_calls,
        )
    });

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    if !cases.is_empty() {
        println!();
        println!(
            "Producer benchmark: wafka vs librdkafka {rdkafka_version}, topic with {PARTITIONS} partitions, \
             {}; {rounds} round(s){}, measured phases {:.0} s, load {}",
            settings_summary(),
            if rounds > 1 { " (median by records/s)" } else { "" },
            measured.as_secs_f64(),
            load.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        );
        println!();
        print!("{}", table(&cases, &clients, &results));
    }
    if let Some(slow) = &slow {
        println!();
        print!("{}", slow_table(slow));
    }
    if let (Some(spec), Some((load_before, tables))) = (&where_spec, &where_tables) {
        let loads = |l: &str| l.split_whitespace().take(3).collect::<Vec<_>>().join(" ");
        println!();
        println!(
            "Where users run: wafka vs librdkafka {rdkafka_version}, {} CPUs, load {} before, {} after.",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            loads(load_before),
            loads(&load),
        );
        for table in tables {
            println!();
            print!("{}", where_table(table, spec));
        }
    }
    if let Some(report) = &wasm_report {
        println!();
        print!("{}", wasm_tables(report));
    }
}
