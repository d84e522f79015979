//! The fuzz targets of `wafka_producer::fuzzing` on stable Rust, as part of `cargo test`
//! (issue 18). cargo-fuzz (`fuzz/`, nightly, libFuzzer) runs the same targets for long,
//! coverage-guided runs; this harness keeps what they found and looks around it briefly.
//!
//! For each target (one test each): every file of the kept corpus (`fuzz/corpus/<target>/`)
//! and of the crash regressions (`fuzz/regressions/<target>/`) is run, then inputs made by
//! mutating those (bit flips, boundary integers, insertions, cuts, splices) or made at
//! random, for `WAFKA_FUZZ_SECONDS` seconds (default 8; with the two test threads of this
//! machine the eight targets take about half a minute, one at a time about a minute). The
//! seed is printed; `WAFKA_FUZZ_SEED` repeats a run. A failure is a broken property, a panic,
//! an allocation over 256 MiB or over 1 GiB live (the process aborts, printing the input), or
//! an input running over `WAFKA_FUZZ_INPUT_SECONDS` (default 60; aborts likewise). Failing
//! inputs are written to `<target dir>/fuzz-failures/<target>/`: copy them into
//! `fuzz/regressions/<target>/` once understood.
//!
//! Known, open findings are tolerated by the targets (see `wafka_producer::fuzzing`); their
//! inputs are in `fuzz/known/<target>/`, and `-- --ignored known_findings_are_fixed` replays
//! them with the targets strict. `-- --ignored write_seed_corpus` writes the seed inputs
//! (valid answers at every version, a batch per codec, small configs) into `fuzz/corpus/`.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wafka_producer::fuzzing::{Api, BoundedAlloc, Outcome, Target};

#[global_allocator]
static ALLOC: BoundedAlloc = BoundedAlloc::new(256 << 20, 1 << 30);

/// The `fuzz/` folder of the repository.
fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn env_number(name: &str, default: f64) -> f64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v}: expected a number")),
        Err(_) => default,
    }
}

/// splitmix64: a small, seedable generator, so that a run can be repeated.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Integers at the edges, as a fuzzer tries them: lengths and counts that mean null, nothing,
/// one, a sign flip, or far too much.
const BOUNDARY: &[u64] = &[
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x7fff,
    0x8000,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x7fff_ffff_ffff_ffff,
    0x8000_0000_0000_0000,
    u64::MAX,
];

/// One to four mutations of `data`, another corpus input `other` for splices.
fn mutate(rng: &mut Rng, data: &[u8], other: &[u8]) -> Vec<u8> {
    let mut d = data.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = d.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                d[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                d[i] = rng.next() as u8;
            }
            2 if len > 0 => {
                // A boundary integer of 1, 2, 4 or 8 bytes, big-endian as Kafka's.
                let width = [1, 2, 4, 8][rng.below(4)];
                let v = BOUNDARY[rng.below(BOUNDARY.len())].to_be_bytes();
                let at = rng.below(len);
                for (k, b) in v[8 - width..].iter().enumerate() {
                    if let Some(slot) = d.get_mut(at + k) {
                        *slot = *b;
                    }
                }
            }
            3 => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let extra = rng.bytes(n);
                d.splice(at..at, extra);
            }
            4 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(64));
                d.drain(at..at + n);
            }
            5 if len > 0 => {
                d.truncate(rng.below(len));
            }
            6 if len > 0 => {
                // Copy a piece of the input elsewhere in it.
                let from = rng.below(len);
                let n = 1 + rng.below((len - from).min(64));
                let piece = d[from..from + n].to_vec();
                let at = rng.below(len + 1);
                d.splice(at..at, piece);
            }
            7 if !other.is_empty() => {
                // This input's head, the other's tail.
                let cut = rng.below(len + 1);
                let from = rng.below(other.len());
                d.truncate(cut);
                d.extend_from_slice(&other[from..]);
            }
            _ => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(4);
                d.splice(at..at, std::iter::repeat_n(0xff, n));
            }
        }
    }
    d.truncate(64 * 1024);
    d
}

/// The files of a folder, by name; none if it does not exist.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<_> = entries
        .map(|e| e.expect("a corpus entry").path())
        .filter(|p| p.is_file() && p.file_name().is_none_or(|n| n != "README.md"))
        .map(|p| {
            let data = std::fs::read(&p).expect("a corpus file");
            (p.file_name().unwrap().to_string_lossy().into_owned(), data)
        })
        .collect();
    out.sort();
    out
}

/// The input running now, for the watchdog: when it started, and its bytes.
type Running = Arc<Mutex<Option<(Instant, Vec<u8>)>>>;

/// Aborts the process, printing the input, when one input runs longer than `limit`.
fn watchdog(name: &'static str, running: Running, limit: Duration, done: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        while !done.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(200));
            let guard = running.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((started, data)) = &*guard {
                if started.elapsed() > limit {
                    eprintln!(
                        "fuzz {name}: an input ran over {limit:?}; the input (hex): {}",
                        hex(data)
                    );
                    std::process::abort();
                }
            }
        }
    });
}

fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

/// What one run of one input gave.
enum Ran {
    Accepted,
    Refused,
    Failed(String),
}

fn run_one(target: Target, data: &[u8], running: &Running) -> Ran {
    *running.lock().unwrap() = Some((Instant::now(), data.to_vec()));
    let result = catch_unwind(AssertUnwindSafe(|| target.run(data)));
    *running.lock().unwrap() = None;
    match result {
        Ok(Ok(Outcome::Accepted)) => Ran::Accepted,
        Ok(Ok(Outcome::Refused(_))) => Ran::Refused,
        Ok(Err(violation)) => Ran::Failed(violation.to_string()),
        Err(panic) => Ran::Failed(format!(
            "panic: {}",
            panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(not a string)")
        )),
    }
}

/// Where failing inputs go: beside the build, never into the repository by themselves.
fn failures_dir(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("fuzz-failures").join(name)
}

fn fuzz(target: Target) {
    let name = target.name();
    let seconds = env_number("WAFKA_FUZZ_SECONDS", 8.0);
    let input_limit = Duration::from_secs_f64(env_number("WAFKA_FUZZ_INPUT_SECONDS", 60.0));
    let seed = match std::env::var("WAFKA_FUZZ_SEED") {
        Ok(s) => s.parse().expect("WAFKA_FUZZ_SEED: a number"),
        Err(_) => {
            let mut h = DefaultHasher::new();
            (Instant::now(), std::process::id(), name).hash(&mut h);
            h.finish()
        }
    };
    let running: Running = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    watchdog(name, running.clone(), input_limit, done.clone());

    let started = Instant::now();
    let mut failures: Vec<(String, Vec<u8>, String)> = Vec::new();
    let kept: Vec<(String, Vec<u8>)> = ["corpus", "regressions"]
        .iter()
        .flat_map(|kind| {
            files(&fuzz_dir().join(kind).join(name))
                .into_iter()
                .map(move |(file, data)| (format!("{kind}/{name}/{file}"), data))
        })
        .collect();
    let mut accepted = 0usize;
    for (file, data) in &kept {
        match run_one(target, data, &running) {
            Ran::Accepted => accepted += 1,
            Ran::Refused => {}
            Ran::Failed(why) => failures.push((file.clone(), data.clone(), why)),
        }
    }
    let replay = started.elapsed();

    // Inputs to mutate: the kept ones, and (up to a bound) new ones the target accepted.
    let mut pool: Vec<Vec<u8>> = kept.into_iter().map(|(_, d)| d).collect();
    let kept_count = pool.len();
    let mut rng = Rng(seed);
    let mut runs = 0u64;
    let mut slowest = Duration::ZERO;
    let budget = Duration::from_secs_f64(seconds);
    let fuzzing = Instant::now();
    while fuzzing.elapsed() < budget && failures.len() < 5 {
        let data = if pool.is_empty() || rng.below(10) == 0 {
            let n = rng.below(512);
            rng.bytes(n)
        } else {
            let a = rng.below(pool.len());
            let b = rng.below(pool.len());
            mutate(&mut rng, &pool[a], &pool[b])
        };
        let t = Instant::now();
        let ran = run_one(target, &data, &running);
        slowest = slowest.max(t.elapsed());
        runs += 1;
        match ran {
            Ran::Accepted => {
                accepted += 1;
                if pool.len() < kept_count + 512 {
                    pool.push(data);
                } else {
                    let i = kept_count + rng.below(512);
                    pool[i] = data;
                }
            }
            Ran::Refused => {}
            Ran::Failed(why) => failures.push((format!("run {runs}"), data, why)),
        }
    }
    done.store(true, Ordering::Relaxed);
    eprintln!(
        "fuzz {name}: {kept_count} kept inputs in {:.1} s, then {runs} new in {:.1} s \
         (seed {seed}, slowest {:.0} ms); {accepted} accepted; peak memory {} KiB",
        replay.as_secs_f64(),
        fuzzing.elapsed().as_secs_f64(),
        slowest.as_secs_f64() * 1000.0,
        ALLOC.peak() >> 10
    );
    if !failures.is_empty() {
        let dir = failures_dir(name);
        std::fs::create_dir_all(&dir).expect("the failures folder");
        let mut report = String::new();
        for (origin, data, why) in &failures {
            let mut h = DefaultHasher::new();
            data.hash(&mut h);
            let path = dir.join(format!("failure-{:016x}", h.finish()));
            std::fs::write(&path, data).expect("a failure file");
            report += &format!("\n- {origin} ({}): {why}", path.display());
        }
        panic!(
            "fuzz {name} (seed {seed}): {} failing inputs:{report}",
            failures.len()
        );
    }
}

#[test]
fn answer_api_versions() {
    fuzz(Target::Answer(Api::ApiVersions));
}

#[test]
fn answer_metadata() {
    fuzz(Target::Answer(Api::Metadata));
}

#[test]
fn answer_init_producer_id() {
    fuzz(Target::Answer(Api::InitProducerId));
}

#[test]
fn answer_produce() {
    fuzz(Target::Answer(Api::Produce));
}

#[test]
fn answer_sasl_handshake() {
    fuzz(Target::Answer(Api::SaslHandshake));
}

#[test]
fn answer_sasl_authenticate() {
    fuzz(Target::Answer(Api::SaslAuthenticate));
}

#[test]
fn record_batch() {
    fuzz(Target::RecordBatch);
}

#[test]
fn config() {
    fuzz(Target::Config);
}

/// Every target has a kept corpus, and every folder under `fuzz/corpus` and
/// `fuzz/regressions` names a target.
#[test]
fn the_kept_corpus_covers_every_target() {
    for target in Target::ALL {
        let dir = fuzz_dir().join("corpus").join(target.name());
        assert!(!files(&dir).is_empty(), "no corpus in {}", dir.display());
    }
    for kind in ["corpus", "regressions", "known"] {
        let Ok(entries) = std::fs::read_dir(fuzz_dir().join(kind)) else {
            continue;
        };
        for e in entries {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            assert!(
                name == "README.md" || Target::from_name(&name).is_some(),
                "fuzz/{kind}/{name} is no target"
            );
        }
    }
}

/// Writes the seed inputs into `fuzz/corpus/<target>/seed-*` (see the module's documentation).
#[test]
#[ignore = "writes into the repository; run by hand"]
fn write_seed_corpus() {
    for target in Target::ALL {
        let dir = fuzz_dir().join("corpus").join(target.name());
        std::fs::create_dir_all(&dir).unwrap();
        for (i, data) in seeds::for_target(target).into_iter().enumerate() {
            assert!(
                !matches!(run_one(target, &data, &Arc::default()), Ran::Failed(_)),
                "seed {i} of {} fails",
                target.name()
            );
            std::fs::write(dir.join(format!("seed-{i:03}")), data).unwrap();
        }
    }
}

/// The known, open findings (`fuzz/known/<target>/`, described in `fuzz/known/README.md`)
/// with the targets strict: passes once every one of them is fixed (then move its inputs to
/// `fuzz/regressions/` and drop its tolerance in `wafka_producer::fuzzing`).
#[test]
#[ignore = "known, open findings: passes once they are fixed"]
fn known_findings_are_fixed() {
    wafka_producer::fuzzing::set_strict(true);
    let running: Running = Arc::default();
    let mut open = Vec::new();
    for target in Target::ALL {
        for (file, data) in files(&fuzz_dir().join("known").join(target.name())) {
            if let Ran::Failed(why) = run_one(target, &data, &running) {
                open.push(format!("{}/{file}: {why}", target.name()));
            }
        }
    }
    assert!(open.is_empty(), "still open:\n{}", open.join("\n"));
}

/// Seed inputs: what a good broker answers and what a producer is given, in each target's
/// layout.
mod seeds {
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::produce_response::{
        PartitionProduceResponse, TopicProduceResponse,
    };
    use kafka_protocol::messages::{
        ApiVersionsResponse, BrokerId, InitProducerIdResponse, MetadataResponse, ProduceResponse,
        ResponseHeader, SaslAuthenticateResponse, SaslHandshakeResponse, TopicName,
    };
    use kafka_protocol::protocol::{Encodable, HeaderVersion, StrBytes};
    use wafka_producer::fuzzing::{answers::SCRAM_NONCE, Api, Target};

    pub(super) fn for_target(target: Target) -> Vec<Vec<u8>> {
        match target {
            Target::Answer(api) => answers(api),
            Target::RecordBatch => batches(),
            Target::Config => configs(),
        }
    }

    /// `[version choice][flags][header and body]`, if `msg` encodes at `version`.
    fn framed<M: Encodable + HeaderVersion>(
        api: Api,
        msg: &M,
        version: i16,
        flags: u8,
    ) -> Option<Vec<u8>> {
        let mut buf = BytesMut::new();
        ResponseHeader::default()
            .with_correlation_id(7)
            .encode(&mut buf, M::header_version(version))
            .ok()?;
        msg.encode(&mut buf, version).ok()?;
        let choice = (version - api.versions().start()) as u8;
        let mut out = vec![choice, flags];
        out.extend_from_slice(&buf);
        Some(out)
    }

    fn s(text: &str) -> StrBytes {
        StrBytes::from_string(text.to_string())
    }

    fn answers(api: Api) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for v in api.versions() {
            match api {
                Api::ApiVersions => {
                    let full = ApiVersionsResponse::default().with_api_keys(
                        [
                            (0, 3, 12),
                            (3, 0, 12),
                            (17, 0, 1),
                            (18, 0, 4),
                            (22, 0, 5),
                            (36, 0, 2),
                        ]
                        .map(|(k, min, max)| {
                            ApiVersion::default()
                                .with_api_key(k)
                                .with_min_version(min)
                                .with_max_version(max)
                        })
                        .to_vec(),
                    );
                    out.extend(framed(api, &full, v, 0));
                    out.extend(framed(
                        api,
                        &ApiVersionsResponse::default().with_error_code(35),
                        v,
                        0,
                    ));
                }
                Api::Metadata => {
                    let partition = |i: i32, leader: i32| {
                        MetadataResponsePartition::default()
                            .with_partition_index(i)
                            .with_leader_id(BrokerId(leader))
                            .with_replica_nodes(vec![BrokerId(1), BrokerId(2)])
                            .with_isr_nodes(vec![BrokerId(1)])
                    };
                    let topic = |name: &str, code: i16, parts: Vec<MetadataResponsePartition>| {
                        MetadataResponseTopic::default()
                            .with_name(Some(TopicName(s(name))))
                            .with_error_code(code)
                            .with_partitions(parts)
                    };
                    let full = MetadataResponse::default()
                        .with_brokers(vec![
                            MetadataResponseBroker::default()
                                .with_node_id(BrokerId(1))
                                .with_host(s("broker-1"))
                                .with_port(9092),
                            MetadataResponseBroker::default()
                                .with_node_id(BrokerId(2))
                                .with_host(s("::1"))
                                .with_port(9093),
                        ])
                        .with_topics(vec![
                            topic(
                                "events",
                                0,
                                vec![partition(0, 1), partition(1, 2), partition(2, -1)],
                            ),
                            topic("missing", 3, vec![]),
                            topic("odd", 0, vec![partition(1, 1), partition(1, 2)]),
                        ]);
                    out.extend(framed(api, &full, v, 0));
                    out.extend(framed(api, &MetadataResponse::default(), v, 0));
                }
                Api::InitProducerId => {
                    let r = InitProducerIdResponse::default()
                        .with_producer_id(1000.into())
                        .with_producer_epoch(3);
                    out.extend(framed(api, &r, v, 0));
                }
                Api::Produce => {
                    let r = ProduceResponse::default()
                        .with_throttle_time_ms(5)
                        .with_responses(vec![TopicProduceResponse::default()
                            .with_name(TopicName(s("events")))
                            .with_partition_responses(vec![
                                PartitionProduceResponse::default()
                                    .with_index(0)
                                    .with_base_offset(42),
                                PartitionProduceResponse::default()
                                    .with_index(1)
                                    .with_error_code(6)
                                    .with_base_offset(-1),
                            ])]);
                    out.extend(framed(api, &r, v, 0));
                    let with_message = ProduceResponse::default().with_responses(vec![
                        TopicProduceResponse::default()
                            .with_name(TopicName(s("events")))
                            .with_partition_responses(vec![PartitionProduceResponse::default()
                                .with_index(0)
                                .with_error_code(87)
                                .with_error_message(Some(s("bad record")))]),
                    ]);
                    out.extend(framed(api, &with_message, v, 0));
                }
                Api::SaslHandshake => {
                    let r = SaslHandshakeResponse::default()
                        .with_error_code(33)
                        .with_mechanisms(vec![s("PLAIN"), s("SCRAM-SHA-256")]);
                    out.extend(framed(api, &r, v, 0));
                }
                Api::SaslAuthenticate => {
                    let first = format!("r={SCRAM_NONCE}server,s=c2FsdA==,i=4096");
                    for (flags, bytes) in [
                        (0, String::new()),
                        (1, first.clone()),
                        (2, first.replace("4096", "16384")),
                        (1, "e=unknown-user".to_string()),
                        (3, "v=dGhlIHdyb25nIHNpZ25hdHVyZQ==".to_string()),
                    ] {
                        let r = SaslAuthenticateResponse::default()
                            .with_auth_bytes(Bytes::from(bytes))
                            .with_session_lifetime_ms(3_600_000);
                        out.extend(framed(api, &r, v, flags));
                    }
                }
            }
        }
        out
    }

    fn batches() -> Vec<Vec<u8>> {
        (0..5u8)
            .map(|codec| {
                let mut input = vec![codec, 1, 0x04, 0x00];
                input.extend_from_slice(&1000i64.to_be_bytes());
                input.extend_from_slice(&2i16.to_be_bytes());
                input.extend_from_slice(&7i32.to_be_bytes());
                input.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
                // A key and value; a long value with a header; nulls; a header with no value.
                input.extend_from_slice(&[0x40, 2, b'k', b'0', 1, b'v', 5]);
                input.extend_from_slice(&[0x24, 0, 0x20, 0x00, b'a', b'b', b'c', b'd', 5]);
                input.extend_from_slice(b"trace\x00\x03abc");
                input.extend_from_slice(&[0x03]);
                input.extend_from_slice(&[0x84, 1, b'k', 0, 1, b'h', 1]);
                input
            })
            .collect()
    }

    fn configs() -> Vec<Vec<u8>> {
        // Names and values by their indexes in the target's lists (see fuzzing::config).
        let bootstrap = [0u8, 50];
        vec![
            [&[0u8][..], &bootstrap].concat(),
            [&[1u8][..], &bootstrap, &[2, 30, 15, 33, 8, 28]].concat(),
            // SASL_PLAINTEXT, PLAIN, a JAAS config with a secret.
            [&[0u8][..], &bootstrap, &[26, 39, 27, 41, 28, 209, 0, 1]].concat(),
            // SSL trusting an inline certificate, with a client certificate and key.
            [&[0u8][..], &bootstrap, &[26, 38, 35, 192, 37, 192, 38, 200]].concat(),
        ]
    }
}
