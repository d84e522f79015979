//! Test support for wafka's end-to-end tests.
//!
//! Everything here checks wafka against an independent Kafka client, librdkafka
//! (through the `rdkafka` crate):
//!
//! - [`brokers`] gives the bootstrap address of a real broker (nisshi, started
//!   once per test process through `scripts/broker`, or `WAFKA_TEST_BROKERS`).
//! - [`create_topic`] makes a fresh, uniquely named topic on it.
//! - [`consume`] / [`consume_exactly`] read a topic back with librdkafka's consumer
//!   (CRC checks on, every compression codec supported).
//! - [`librdkafka_partition`] says which partition librdkafka's `murmur2_random`
//!   partitioner (the Java client's default) picks for a key.
//! - [`mock_cluster`] starts librdkafka's in-process mock cluster for fault tests.
//! - [`Proxy`] turns the real broker into several virtual brokers that can misbehave.
//! - [`secure::secure_broker`] starts brokers behind TLS and SASL; every helper here reaches
//!   them over their protocol.

pub mod alloc;
pub mod bench;
pub mod check;
pub mod mock;
pub mod proxy;
pub mod secure;

pub use mock::{mock_cluster, MockKafka};
pub use proxy::{Fault, Proxy};

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

pub use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

/// Environment variable naming an already running broker (`host:port[,host:port...]`).
/// `scripts/test` sets it; when unset, [`brokers`] starts a broker itself.
pub const BROKERS_ENV: &str = "WAFKA_TEST_BROKERS";

/// How long [`create_topic`] waits for the topic to show up in metadata.
const TOPIC_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The bootstrap servers of the broker the end-to-end tests run against.
///
/// Returns `$WAFKA_TEST_BROKERS` when it is set (as `scripts/test` does).
/// Otherwise the first call starts one broker for the whole test process with
/// `scripts/broker start --owner-pid <this process>` (a watchdog stops the
/// broker when this process exits, so it never leaks) and every later call
/// returns the same address.
///
/// # Panics
///
/// If the broker cannot be started; the script's error output (e.g. the last
/// lines of the broker's log) is on stderr.
pub fn brokers() -> String {
    static BROKERS: OnceLock<String> = OnceLock::new();
    BROKERS
        .get_or_init(|| match std::env::var(BROKERS_ENV) {
            Ok(brokers) if !brokers.trim().is_empty() => brokers.trim().to_owned(),
            _ => start_broker(),
        })
        .clone()
}

/// The repository's root: the nearest folder above the running test's package (cargo sets
/// `CARGO_MANIFEST_DIR` at run time) that has `scripts/broker`. Not this crate's compile-time
/// path: two checkouts sharing a CARGO_TARGET_DIR share this compiled crate, and its baked-in
/// path may be the other checkout's.
pub fn repo_root() -> PathBuf {
    let package = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    package
        .ancestors()
        .find(|dir| dir.join("scripts").join("broker").is_file())
        .unwrap_or(&package)
        .to_path_buf()
}

/// Path of `scripts/broker` in this repository.
pub fn broker_script() -> PathBuf {
    repo_root().join("scripts").join("broker")
}

fn start_broker() -> String {
    let script = broker_script();
    // stderr is inherited: install/start progress shows up in the test output,
    // and so does the script's error message on failure.
    let output = Command::new(&script)
        .arg("start")
        .arg("--owner-pid")
        .arg(std::process::id().to_string())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let address = stdout.lines().last().unwrap_or_default().trim().to_owned();
    assert!(
        output.status.success() && !address.is_empty(),
        "`{} start` failed ({}); set {BROKERS_ENV} to use a running broker instead",
        script.display(),
        output.status,
    );
    address
}

/// A random lowercase suffix for unique names.
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..10)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Runs `f` on a fresh thread with its own single-threaded tokio runtime.
///
/// This keeps the helpers synchronous and callable both from plain `#[test]`s
/// and from inside a `#[tokio::test]` (where `Runtime::block_on` would panic).
fn on_own_runtime<T: Send>(f: impl std::future::Future<Output = T> + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime")
                    .block_on(f)
            })
            .join()
            .expect("helper thread panicked")
    })
}

/// Creates a topic named `<prefix>-<random suffix>` with `partitions` partitions
/// (replication factor 1) on [`brokers`] and returns its name.
///
/// Uses librdkafka's admin client (CreateTopics), then waits until the topic
/// and a leader for every partition are visible in metadata, so a producer can
/// use it right away.
///
/// # Panics
///
/// If the topic cannot be created or does not become visible within 30 s.
pub fn create_topic(prefix: &str, partitions: i32) -> String {
    let brokers = brokers();
    let name = format!("{prefix}-{}", random_suffix());
    create_topic_named(&brokers, &name, partitions);
    name
}

/// Creates the topic `name` on `brokers` (replication factor 1), succeeding if
/// it already exists, and waits until it is usable (see [`wait_for_topic`]).
///
/// # Panics
///
/// If the topic cannot be created or does not become visible within 30 s.
pub fn create_topic_named(brokers: &str, name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = secure::client_config(brokers)
        .create()
        .expect("admin client");
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = on_own_runtime(admin.create_topics([&topic], &options))
        .unwrap_or_else(|e| panic!("CreateTopics {name} on {brokers} failed: {e}"));
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => panic!("CreateTopics {topic} on {brokers} failed: {code}"),
        }
    }
    wait_for_topic(brokers, name, partitions, TOPIC_READY_TIMEOUT);
}

/// Waits until `topic` shows up in `brokers`' metadata with `partitions`
/// partitions, each with a leader.
///
/// # Panics
///
/// If that does not happen within `timeout`.
pub fn wait_for_topic(brokers: &str, topic: &str, partitions: i32, timeout: Duration) {
    let client: BaseConsumer = secure::client_config(brokers)
        .create()
        .expect("metadata client");
    let deadline = Instant::now() + timeout;
    loop {
        let last = match client.fetch_metadata(Some(topic), Duration::from_secs(5)) {
            Ok(metadata) => match metadata.topics().iter().find(|t| t.name() == topic) {
                Some(t) if t.error().is_none() => {
                    let led = t.partitions().iter().filter(|p| p.leader() >= 0).count();
                    if t.partitions().len() == partitions as usize && led == partitions as usize {
                        return;
                    }
                    format!("{} partitions, {led} with a leader", t.partitions().len())
                }
                Some(t) => format!("topic error {:?}", t.error()),
                None => "topic missing from metadata".to_owned(),
            },
            Err(e) => e.to_string(),
        };
        assert!(
            Instant::now() < deadline,
            "topic {topic} not ready on {brokers} after {timeout:?}: {last}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One record read back by [`consume`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consumed {
    /// Partition the record was read from.
    pub partition: i32,
    /// Offset of the record in its partition.
    pub offset: i64,
    /// The record's key (`None` for a null key).
    pub key: Option<Vec<u8>>,
    /// The record's value (`None` for a null value / tombstone).
    pub value: Option<Vec<u8>>,
    /// The record's headers, in order (`None` value for a null header value).
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// The record's timestamp in milliseconds (create or log-append time), if any.
    pub timestamp: Option<i64>,
}

/// Reads `topic` from the beginning of all its partitions with librdkafka's
/// consumer and returns the records sorted by `(partition, offset)`.
///
/// Returns as soon as `expected` records were read, or when `timeout` passed
/// (then with whatever was read: callers assert the count). No consumer group
/// protocol is used: every partition is assigned explicitly at the earliest
/// offset.
///
/// The consumer verifies record-batch CRCs (`check.crcs=true`) and reads gzip,
/// snappy, lz4 and zstd compressed batches, so this also validates the
/// producer's encoding. Only committed records are returned (librdkafka's
/// default `read_committed`).
///
/// This function blocks. From async tests, call it after awaiting the sends
/// (or wrap it in `tokio::task::spawn_blocking`).
///
/// # Panics
///
/// On consumer errors other than transient ones (for example a CRC mismatch or
/// an unknown topic).
pub fn consume(brokers: &str, topic: &str, expected: usize, timeout: Duration) -> Vec<Consumed> {
    consume_inner(brokers, topic, expected, timeout, Duration::ZERO)
}

/// Like [`consume`], but after reaching `expected` records it keeps polling for
/// about 300 ms more, so extra (for example duplicated) records are returned
/// too and `assert_eq!(records.len(), expected)` catches them.
///
/// # Panics
///
/// Like [`consume`].
pub fn consume_exactly(
    brokers: &str,
    topic: &str,
    expected: usize,
    timeout: Duration,
) -> Vec<Consumed> {
    consume_inner(
        brokers,
        topic,
        expected,
        timeout,
        Duration::from_millis(300),
    )
}

/// Reads `topic` from the beginning of every partition up to its high watermark (what the
/// broker holds now, whatever the producer reported), waiting up to `timeout`. Records are
/// sorted by `(partition, offset)`.
///
/// # Panics
///
/// On consumer errors other than transient ones, or when the watermarks are not reached in
/// time.
pub fn consume_all(brokers: &str, topic: &str, timeout: Duration) -> Vec<Consumed> {
    let deadline = Instant::now() + timeout;
    let probe: BaseConsumer = secure::client_config(brokers)
        .create()
        .expect("watermark client");
    let partitions = partition_count(&probe, brokers, topic, deadline);
    let mut total = 0i64;
    for p in 0..partitions {
        let (low, high) = probe
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("watermarks of {topic}-{p}: {e}"));
        total += high - low;
    }
    let got = consume_inner(
        brokers,
        topic,
        total as usize,
        deadline.saturating_duration_since(Instant::now()),
        Duration::ZERO,
    );
    assert_eq!(
        got.len() as i64,
        total,
        "read {} of the {total} records {topic} holds",
        got.len()
    );
    got
}

/// A broker of a test's own (not the shared one), on sqlite storage so that it can restart
/// with its data: `scripts/broker start --engine sqlite --state-dir DIR`. Stopped (and its
/// state removed) when dropped.
#[derive(Debug)]
pub struct LocalBroker {
    /// `host:port` it listens on now.
    pub addr: String,
    state: PathBuf,
}

impl LocalBroker {
    /// Starts a broker with a fresh state directory.
    ///
    /// # Panics
    ///
    /// If `scripts/broker start` fails.
    pub fn start(engine: &str) -> LocalBroker {
        let state = std::env::temp_dir().join(format!("wafka-own-broker-{}", random_suffix()));
        let mut b = LocalBroker {
            addr: String::new(),
            state,
        };
        b.addr = b.run_start(engine);
        b
    }

    fn run_start(&self, engine: &str) -> String {
        let out = Command::new(broker_script())
            .args(["start", "--engine", engine, "--state-dir"])
            .arg(&self.state)
            .arg("--owner-pid")
            .arg(std::process::id().to_string())
            .stderr(Stdio::inherit())
            .output()
            .expect("scripts/broker start");
        assert!(out.status.success(), "scripts/broker start failed");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// Stops the broker (its data stays).
    pub fn stop(&self) {
        let _ = Command::new(broker_script())
            .args(["stop", "--state-dir"])
            .arg(&self.state)
            .stderr(Stdio::null())
            .status();
    }

    /// Starts it again on its data (sqlite), on a new port; returns the new address.
    pub fn restart(&mut self) -> String {
        self.stop();
        self.addr = self.run_start("sqlite");
        self.addr.clone()
    }

    /// The broker process's id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.state.join("nisshi.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for LocalBroker {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

fn consume_inner(
    brokers: &str,
    topic: &str,
    expected: usize,
    timeout: Duration,
    linger: Duration,
) -> Vec<Consumed> {
    let deadline = Instant::now() + timeout;
    let consumer: BaseConsumer = secure::client_config(brokers)
        // librdkafka's consumer wants a group id; no group protocol is used,
        // because partitions are assigned explicitly and nothing is committed.
        .set("group.id", format!("wafka-tests-{}", random_suffix()))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        .set("check.crcs", "true")
        .set("fetch.wait.max.ms", "100")
        .set("topic.metadata.refresh.interval.ms", "1000")
        .create()
        .expect("consumer");

    let partitions = partition_count(&consumer, brokers, topic, deadline);
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .expect("assignment");
    }
    consumer.assign(&assignment).expect("assign");

    let mut records = Vec::new();
    let mut seen = BTreeSet::new();
    let mut stop_at = deadline;
    let mut lingering = false;
    loop {
        let now = Instant::now();
        if now >= stop_at {
            break;
        }
        match consumer.poll((stop_at - now).min(Duration::from_millis(100))) {
            None => {}
            Some(Ok(message)) => {
                let record = to_consumed(&message);
                // A refetch after a reconnect may deliver a record twice; the
                // broker holds it once, so report it once.
                if seen.insert((record.partition, record.offset)) {
                    records.push(record);
                }
            }
            Some(Err(e)) if is_transient(&e) => {}
            Some(Err(e)) => panic!("consuming {topic} from {brokers} failed: {e}"),
        }
        if records.len() >= expected && !lingering {
            if linger.is_zero() {
                break;
            }
            lingering = true;
            stop_at = Instant::now() + linger;
        }
    }
    records.sort_by_key(|r| (r.partition, r.offset));
    records
}

fn to_consumed(message: &BorrowedMessage<'_>) -> Consumed {
    Consumed {
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec),
        headers: message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default(),
        timestamp: message.timestamp().to_millis(),
    }
}

/// Errors the consumer reports but recovers from by itself.
fn is_transient(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::PartitionEOF
                | RDKafkaErrorCode::NotLeaderForPartition
                | RDKafkaErrorCode::LeaderNotAvailable
                | RDKafkaErrorCode::OperationTimedOut
                | RDKafkaErrorCode::RequestTimedOut
        )
    )
}

fn partition_count(consumer: &BaseConsumer, brokers: &str, topic: &str, deadline: Instant) -> i32 {
    loop {
        let last = match consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) {
            Ok(metadata) => match metadata.topics().iter().find(|t| t.name() == topic) {
                Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                    return t.partitions().len() as i32;
                }
                Some(t) => format!("topic error {:?}", t.error()),
                None => "topic missing from metadata".to_owned(),
            },
            Err(e) => e.to_string(),
        };
        assert!(
            Instant::now() < deadline,
            "cannot consume {topic}: no metadata from {brokers}: {last}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The partition librdkafka's `murmur2_random` partitioner (the Java client's
/// default for keyed records) picks for `key` among `partitions` partitions.
///
/// Computed by librdkafka itself (`rd_kafka_msg_partitioner_murmur2_random`),
/// not by a reimplementation, so it is an independent reference for wafka's
/// partitioner. Only keyed records are covered: for a null key that
/// partitioner picks a random available partition.
///
/// # Panics
///
/// If `partitions` is not positive.
pub fn librdkafka_partition(key: &[u8], partitions: i32) -> i32 {
    assert!(
        partitions > 0,
        "partitions must be positive, got {partitions}"
    );
    // SAFETY: with a non-null key, rd_kafka_msg_partitioner_murmur2_random
    // (librdkafka/src/rdkafka_msg.c) only hashes `keylen` bytes at `key`; it
    // does not touch the topic handle or the opaques, so null is fine there.
    // A slice pointer is never null (an empty slice gives a dangling, non-null
    // pointer with keylen 0, which murmur2 does not read).
    unsafe {
        rdkafka::bindings::rd_kafka_msg_partitioner_murmur2_random(
            std::ptr::null(),
            key.as_ptr().cast(),
            key.len(),
            partitions,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    }
}

/// Path of a guest example built by `scripts/build-guests` (e.g. `guest("hello")`).
///
/// The first call in a test process runs `scripts/build-guests` once (it installs the
/// `wasm32-wasip2` target if needed and caches builds outside the checkout), so tests always
/// run the plugins as they are in this checkout.
///
/// # Panics
///
/// If the build fails.
pub fn guest(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    let root = repo_root();
    BUILT.get_or_init(|| {
        // scripts/test builds every guest before the tests start.
        if std::env::var_os("WAFKA_GUESTS_BUILT").is_some() {
            return;
        }
        let script = root.join("scripts").join("build-guests");
        let status = Command::new(&script)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(status.success(), "{} failed ({status})", script.display());
    });
    let path = root
        .join("examples")
        .join("build")
        .join(format!("{name}.wasm"));
    assert!(path.exists(), "{} was not built", path.display());
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_java_hashes() {
        // Java `Utils.murmur2` hashes (as listed in librdkafka's rdmurmur2.c
        // unit test); the partition is `(hash & 0x7fffffff) % partitions`.
        let cases: [(&[u8], u32); 4] = [
            (b"kafka", 0xd067_cf64),
            (b"giberish123456789", 0x8f55_2b0c),
            (b"1234", 0x9fc9_7b14),
            (b"", 0x106e_08d9),
        ];
        for (key, hash) in cases {
            for partitions in [1, 3, 7, 1000] {
                let expected = ((hash & 0x7fff_ffff) % partitions as u32) as i32;
                assert_eq!(librdkafka_partition(key, partitions), expected, "{key:?}");
            }
        }
    }

    #[test]
    fn random_suffix_is_topic_safe() {
        let s = random_suffix();
        assert_eq!(s.len(), 10);
        assert!(s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    }

    #[test]
    fn mock_kafka_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<MockKafka>();
    }
}
