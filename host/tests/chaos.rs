//! Chaos through `wafka serve` (issue 19, item 12): two tenants, one with autoflush on and one
//! with it off, post numbered keyed events over HTTP to `wafka serve` (the binary, a child
//! process, so that the drain's exit code is real). Its producer reaches a broker of the
//! test's own (nisshi on sqlite storage, so it restarts with its data and the shared broker of
//! the other tests is left alone) through a proxy ([`wafka_tests::Proxy`]) that cuts the
//! connections, stalls every byte both ways for up to 2 s (longer than the host's
//! `request.timeout.ms`, so requests the broker may hold time out and go again), and in
//! between the broker is restarted. Then SIGTERM while the clients still post: the drain
//! exits 0, and the topics read back with librdkafka hold every event answered as run
//! without failure exactly once, in order per key, at the offset its ack gave (autoflush on).
//!
//! What the `off` tenant may lose: nothing. Its 200 means queued, not stored, but the drain
//! flushes every queued record and exits 0 only when nothing accepted was left out, so an
//! event it answered as run is held to the same bar as the `on` tenant's. An event answered
//! as failed may be on the broker at most once (a plugin call that timed out waiting for its
//! ack leaves its record in the producer); one whose request got no answer (the listener
//! closing at the end of the drain) likewise. Nothing may be on the broker that no event
//! published, and nothing twice.
//!
//! Sized by the environment, so that `scripts/chaos` makes the long run with this code (the
//! fault phase lasts until every minimum is reached):
//!
//! | variable | meaning | default |
//! | --- | --- | --- |
//! | `WAFKA_CHAOS_SECS` | the fault phase's least length, seconds | 40 |
//! | `WAFKA_CHAOS_MIN_EVENTS` | events answered as run, least | 0 |
//! | `WAFKA_CHAOS_MIN_FAULTS` | faults, least | 20 |
//! | `WAFKA_CHAOS_RESTART_EVERY` | every Nth fault restarts the broker | 12 |
//! | `WAFKA_CHAOS_MIN_RESTARTS` | broker restarts, least | 2 |
//! | `WAFKA_CHAOS_RATE` | events a second the `off` tenant posts at most (`0`: as fast as it is answered; `on` always is) | 4,000 |
//! | `WAFKA_CHAOS_FAULTS` | `0`: no faults at all (the baseline for the rate) | 1 |
//! | `WAFKA_CHAOS_SEED` | the fault schedule's seed | the time |
//!
//! The figures are one line on stderr, `chaos: faults … events … lost … duplicated …
//! reordered …` (shown with `--nocapture`), printed before the checks.

use std::collections::{HashMap, VecDeque};
use std::io::BufRead;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};
use wafka_tests::{consume_all, create_topic_named, guest, Fault, LocalBroker, Proxy};

/// Partitions of each tenant's topic.
const PARTITIONS: i32 = 3;
/// Longest stall of every byte through the proxy.
const MAX_STALL: Duration = Duration::from_secs(2);
/// Stderr lines of `wafka serve` kept (the last ones).
const STDERR_LINES: usize = 400;

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number")),
        _ => default,
    }
}

/// How the run is sized (module doc).
#[derive(Debug, Clone, Copy)]
struct Plan {
    secs: u64,
    min_events: u64,
    min_faults: u64,
    restart_every: u64,
    min_restarts: u64,
    rate: u64,
    faults: bool,
    seed: u64,
}

impl Plan {
    fn from_env() -> Plan {
        let faults = env_u64("WAFKA_CHAOS_FAULTS", 1) != 0;
        let seed = env_u64(
            "WAFKA_CHAOS_SEED",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64,
        );
        Plan {
            secs: env_u64("WAFKA_CHAOS_SECS", 40),
            min_events: env_u64("WAFKA_CHAOS_MIN_EVENTS", 0),
            min_faults: if faults {
                env_u64("WAFKA_CHAOS_MIN_FAULTS", 20)
            } else {
                0
            },
            restart_every: env_u64("WAFKA_CHAOS_RESTART_EVERY", 12).max(1),
            min_restarts: if faults {
                env_u64("WAFKA_CHAOS_MIN_RESTARTS", 2)
            } else {
                0
            },
            rate: env_u64("WAFKA_CHAOS_RATE", 4000),
            faults,
            seed: seed.max(1),
        }
    }
}

/// A small xorshift generator: the fault schedule, reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// Faults made so far.
#[derive(Debug, Default, Clone, Copy)]
struct Faults {
    cuts: u64,
    stalls: u64,
    stalled_ms: u64,
    restarts: u64,
}

impl Faults {
    fn total(&self) -> u64 {
        self.cuts + self.stalls + self.restarts
    }
}

/// What became of one event (one line, one record), as its answer said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ran {
    /// Run without failure; under autoflush with its ack's partition and offset when the
    /// answer's acks could be matched to its events (no event of the request failed).
    Ok(Option<(i32, i64)>),
    /// Run and failed (its error is in the answer).
    Failed,
    /// Sent, but no answer came (only once the drain began).
    Unknown,
}

/// One client's events: per key, what became of each sequence number, in order.
type Log = Vec<(String, Vec<Ran>)>;

/// One tenant, as the clients see it.
#[derive(Clone)]
struct Tenant {
    name: &'static str,
    topic: String,
    clients: usize,
    keys: usize,
    lines: usize,
    /// Events a second the tenant's clients post at most, together (0: as fast as answered).
    rate: u64,
}

/// Shared state of the clients.
struct Clients {
    http: reqwest::Client,
    base: String,
    /// Set just before SIGTERM: from then on a 503 or a failed request ends a client.
    draining: AtomicBool,
    /// Events answered as run without failure, all clients.
    ok: AtomicU64,
    /// Answers carrying failed events, by their error text (first 20 kinds).
    errors: Mutex<HashMap<String, u64>>,
}

/// Posts `tenant`'s events as client `id` until the drain refuses it; returns what became of
/// each. Line `i` of the client's stream is event `seq = i / keys` of key `i % keys`, so lines
/// not run are sent again as they were and each key's events go in order.
async fn client(c: Arc<Clients>, t: Tenant, id: usize) -> Log {
    let keys: Vec<String> = (0..t.keys)
        .map(|k| format!("{}-c{id}-k{k}", t.name))
        .collect();
    let mut log: Vec<Vec<Ran>> = vec![Vec::new(); t.keys];
    let url = format!("{}/v1/tenants/{}/plugins/probe/events", c.base, t.name);
    let token = format!("{}-token", t.name);
    let mut next = 0usize;
    let started = tokio::time::Instant::now();
    loop {
        if t.rate > 0 {
            // Paced: line `next` is due at next / (rate / clients) seconds.
            let due = Duration::from_secs_f64(next as f64 * t.clients as f64 / t.rate as f64);
            tokio::time::sleep_until(started + due).await;
        }
        let body: String = (next..next + t.lines)
            .map(|i| {
                let key = &keys[i % t.keys];
                format!("publish {} {key} {key}:{}\n", t.topic, i / t.keys)
            })
            .collect();
        let sent = c
            .http
            .post(&url)
            .bearer_auth(&token)
            .body(body)
            .timeout(Duration::from_secs(120))
            .send()
            .await;
        let r = match sent {
            Ok(r) => r,
            Err(e) => {
                assert!(
                    c.draining.load(Ordering::Relaxed),
                    "{} client {id}: no answer before the drain: {e}",
                    t.name
                );
                for i in next..next + t.lines {
                    log[i % t.keys].push(Ran::Unknown);
                }
                eprintln!("{} client {id}: no answer during the drain: {e:?}", t.name);
                break;
            }
        };
        let status = r.status().as_u16();
        let retry_after = r
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let text = match r.text().await {
            Ok(text) => text,
            Err(e) if c.draining.load(Ordering::Relaxed) => {
                for i in next..next + t.lines {
                    log[i % t.keys].push(Ran::Unknown);
                }
                eprintln!("{} client {id}: answer cut during the drain: {e:?}", t.name);
                break;
            }
            Err(e) => panic!("{} client {id}: answer cut: {e}", t.name),
        };
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        match status {
            200 => {}
            503 if c.draining.load(Ordering::Relaxed) => break,
            429 => {
                let wait = retry_after.map_or(200, |s| s * 1000);
                tokio::time::sleep(Duration::from_millis(wait)).await;
                continue;
            }
            s => panic!("{} client {id}: status {s}: {answer}", t.name),
        }
        let count = |k: &str| {
            answer[k]
                .as_u64()
                .unwrap_or_else(|| panic!("no `{k}` in {answer}"))
        };
        let events = count("events") as usize;
        let failed = count("failed");
        assert_eq!(
            answer["errors_not_shown"].as_u64().unwrap_or(0),
            0,
            "every error listed: {answer}"
        );
        let mut errors: HashMap<u64, String> = HashMap::new();
        for e in answer["errors"].as_array().into_iter().flatten() {
            let event = e["event"].as_u64().expect("an error's event");
            let text = e["error"].as_str().unwrap_or_default().to_string();
            errors.insert(event, text);
        }
        assert_eq!(errors.len() as u64, failed, "{answer}");
        let acks: Vec<(i32, i64)> = answer["acks"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                (
                    a["partition"].as_i64().unwrap() as i32,
                    a["offset"].as_i64().unwrap(),
                )
            })
            .collect();
        let matched = failed == 0 && acks.len() == events;
        for n in 0..events {
            let ran = if errors.contains_key(&(n as u64 + 1)) {
                Ran::Failed
            } else {
                Ran::Ok(acks.get(n).copied().filter(|_| matched))
            };
            log[(next + n) % t.keys].push(ran);
        }
        if !errors.is_empty() {
            let mut kinds = c.errors.lock().unwrap();
            for text in errors.values() {
                // The kind of error, without the record's own words.
                let kind: String = text.chars().take(80).collect();
                if kinds.len() < 20 || kinds.contains_key(&kind) {
                    *kinds.entry(kind).or_default() += 1;
                }
            }
        }
        c.ok.fetch_add(events as u64 - failed, Ordering::Relaxed);
        next += events;
        if failed > 0 || count("refused") > 0 {
            // Refused (a full buffer share): give the broker a moment.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    keys.into_iter().zip(log).collect()
}

/// `wafka serve` as a child process, its stderr kept as it comes (the last lines).
struct Serve {
    child: std::process::Child,
    stderr: Arc<Mutex<VecDeque<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Serve {
    fn start(config: &std::path::Path) -> Serve {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wafka"))
            .arg("serve")
            .arg("--config")
            .arg(config)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run wafka serve");
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        let (pipe, kept) = (child.stderr.take().unwrap(), stderr.clone());
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut kept = kept.lock().unwrap();
                if kept.len() == STDERR_LINES {
                    kept.pop_front();
                }
                kept.push_back(line);
            }
        });
        Serve {
            child,
            stderr,
            reader: Some(reader),
        }
    }

    fn stderr(&self) -> String {
        let kept = self.stderr.lock().unwrap();
        kept.iter().map(|l| format!("{l}\n")).collect()
    }

    /// Waits until stderr has a line containing `what`; returns it.
    fn wait_for(&mut self, what: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self
                .stderr
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(what))
            {
                return l.clone();
            }
            let exited = self.child.try_wait().unwrap();
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "no `{what}` from wafka serve ({exited:?}):\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn terminate(&self) {
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) },
            0
        );
    }

    /// Waits for the exit (at most `timeout`); its status and stderr's last lines.
    fn finish(mut self, timeout: Duration) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "wafka serve did not exit within {timeout:?} of SIGTERM:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        self.reader.take().unwrap().join().unwrap();
        (status, self.stderr())
    }
}

impl Drop for Serve {
    /// A test that failed midway does not leave the process behind.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn sha(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The config: the host's producer through the proxy, a request timeout shorter than the
/// longest stall, and the two tenants with the probe plugin.
fn config(dir: &std::path::Path, bootstrap: &str, on: &str, off: &str) -> PathBuf {
    let tenant = |name: &str, topic: &str, autoflush: &str| {
        format!(
            "[tenants.{name}]\ntoken_sha256 = \"{}\"\ntopics = [\"{topic}\"]\nautoflush = \"{autoflush}\"\n\
             [[tenants.{name}.plugins]]\nname = \"probe\"\npath = \"{}\"\n\n",
            sha(&format!("{name}-token")),
            guest("probe").display()
        )
    };
    let text = format!(
        "[kafka]\nbootstrap.servers = \"{bootstrap}\"\nlinger.ms = 5\nrequest.timeout.ms = 1000\n\n\
         [http]\nlisten = \"127.0.0.1:0\"\n\n{}{}",
        tenant("on", on, "on"),
        tenant("off", off, "off"),
    );
    let file = dir.join("serve.toml");
    std::fs::write(&file, text).unwrap();
    file
}

/// Makes faults until the plan's minimums are met and `events` reached its least; returns
/// them and the broker.
fn make_faults(
    plan: Plan,
    proxy: &Proxy,
    mut broker: LocalBroker,
    events: &AtomicU64,
) -> (Faults, LocalBroker, Duration) {
    let mut rng = Rng(plan.seed);
    let mut f = Faults::default();
    let started = Instant::now();
    let done = |f: &Faults| {
        started.elapsed() >= Duration::from_secs(plan.secs)
            && events.load(Ordering::Relaxed) >= plan.min_events
            && f.total() >= plan.min_faults
            && f.restarts >= plan.min_restarts
    };
    while !done(&f) {
        std::thread::sleep(Duration::from_millis(rng.range(300, 1200)));
        if !plan.faults {
            continue;
        }
        if (f.total() + 1) % plan.restart_every == 0 {
            let addr = broker.restart();
            proxy.set_upstream(&addr);
            // Connections the proxy opened to nobody during the restart: closed.
            proxy.drop_connections(1);
            f.restarts += 1;
        } else if rng.next().is_multiple_of(2) {
            proxy.drop_connections(1);
            f.cuts += 1;
        } else {
            let ms = rng.range(200, MAX_STALL.as_millis() as u64);
            proxy.set_fault(1, Fault::Stall);
            std::thread::sleep(Duration::from_millis(ms));
            proxy.set_fault(1, Fault::None);
            f.stalls += 1;
            f.stalled_ms += ms;
        }
    }
    (f, broker, started.elapsed())
}

/// What the topic holds against what the answers said, for one tenant.
#[derive(Debug, Default)]
struct Check {
    /// Events answered as run without failure.
    ok: u64,
    /// Of those, not on the broker.
    lost: u64,
    /// Copies past the first of any record.
    duplicated: u64,
    /// Records of a key after one with a higher sequence number.
    reordered: u64,
    /// Events answered as failed, and how many of them are on the broker (once).
    failed: u64,
    failed_stored: u64,
    /// Events sent without an answer, and how many of them are on the broker (once).
    unknown: u64,
    unknown_stored: u64,
    /// Records no event published (not sent, or not run).
    strangers: u64,
    /// Acks whose partition and offset are not where the record is.
    ack_mismatches: u64,
    /// Acks compared.
    acks_checked: u64,
    /// Of those, acks with offset -1 (the partition alone compared).
    acks_without_offset: u64,
    /// Records in the topic.
    records: u64,
    /// First few problems, for the message.
    examples: Vec<String>,
}

impl Check {
    fn note(&mut self, what: String) {
        if self.examples.len() < 10 {
            self.examples.push(what);
        }
    }
}

fn check(brokers: &str, topic: &str, logs: &[Log]) -> Check {
    let mut sent: HashMap<&str, &Vec<Ran>> = HashMap::new();
    for log in logs {
        for (key, ran) in log {
            sent.insert(key.as_str(), ran);
        }
    }
    let mut copies: HashMap<&str, Vec<u32>> = sent
        .iter()
        .map(|(k, ran)| (*k, vec![0; ran.len()]))
        .collect();
    let mut c = Check::default();
    let records = consume_all(brokers, topic, Duration::from_secs(600));
    c.records = records.len() as u64;
    let mut last: HashMap<String, usize> = HashMap::new();
    // Sorted by (partition, offset); a key lives in one partition.
    for r in &records {
        let value = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned();
        let Some((key, seq)) = value
            .rsplit_once(':')
            .and_then(|(k, s)| Some((k, s.parse::<usize>().ok()?)))
        else {
            c.strangers += 1;
            c.note(format!("{value:?} at {}/{}", r.partition, r.offset));
            continue;
        };
        let Some(ran) = sent.get(key).and_then(|ran| ran.get(seq)) else {
            c.strangers += 1;
            c.note(format!(
                "{value} at {}/{}: no event published it",
                r.partition, r.offset
            ));
            continue;
        };
        let n = &mut copies.get_mut(key).unwrap()[seq];
        *n += 1;
        if *n > 1 {
            c.duplicated += 1;
            c.note(format!(
                "{value} again at {}/{} ({ran:?})",
                r.partition, r.offset
            ));
        }
        if let Ran::Ok(Some(ack)) = ran {
            c.acks_checked += 1;
            // Offset -1: the broker had stored the batch already (its answer to an earlier
            // attempt was lost; DUPLICATE_SEQUENCE_NUMBER), so the producer knows no offset.
            c.acks_without_offset += u64::from(ack.1 == -1);
            if ack.0 != r.partition || (ack.1 != -1 && ack.1 != r.offset) {
                c.ack_mismatches += 1;
                c.note(format!(
                    "{value} at {}/{}, acked at {}/{}",
                    r.partition, r.offset, ack.0, ack.1
                ));
            }
        }
        if let Some(prev) = last.insert(key.to_string(), seq) {
            if seq < prev {
                c.reordered += 1;
                c.note(format!(
                    "{value} at {}/{} after seq {prev}",
                    r.partition, r.offset
                ));
            }
        }
    }
    for (key, ran) in &sent {
        for (seq, (state, n)) in ran.iter().zip(&copies[key]).enumerate() {
            match state {
                Ran::Ok(_) => {
                    c.ok += 1;
                    if *n == 0 {
                        c.lost += 1;
                        c.note(format!("{key}:{seq} answered as run, not on the broker"));
                    }
                }
                Ran::Failed => {
                    c.failed += 1;
                    c.failed_stored += u64::from(*n > 0);
                }
                Ran::Unknown => {
                    c.unknown += 1;
                    c.unknown_stored += u64::from(*n > 0);
                }
            }
        }
    }
    c
}

/// The numbers in `wafka: drained in T ms: N records delivered, F failed`.
fn drained(stderr: &str) -> Option<(u64, u64, u64)> {
    let line = stderr.lines().find(|l| l.contains("drained in"))?;
    let numbers: Vec<u64> = line
        .split(|ch: char| !ch.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect();
    (numbers.len() >= 3).then(|| (numbers[0], numbers[1], numbers[2]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_through_serve_loses_duplicates_and_reorders_nothing() {
    let plan = Plan::from_env();
    let started = Instant::now();
    let broker = LocalBroker::start("sqlite");
    let (on_topic, off_topic) = ("chaos-on", "chaos-off");
    create_topic_named(&broker.addr, on_topic, PARTITIONS);
    create_topic_named(&broker.addr, off_topic, PARTITIONS);
    let proxy = Arc::new(Proxy::start(&broker.addr, 1));
    let dir = std::env::temp_dir().join(format!("wafka-chaos-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = config(&dir, &proxy.bootstrap(), on_topic, off_topic);
    let mut serve = Serve::start(&file);
    let line = serve.wait_for("serving 2 tenants", Duration::from_secs(120));
    let base = format!("http://{}", line.rsplit("http://").next().unwrap().trim());

    let clients = Arc::new(Clients {
        http: reqwest::Client::new(),
        base,
        draining: AtomicBool::new(false),
        ok: AtomicU64::new(0),
        errors: Mutex::new(HashMap::new()),
    });
    // `on` waits for each record's ack: more clients, fewer lines a request, never paced.
    let tenants = [
        Tenant {
            name: "on",
            topic: on_topic.into(),
            clients: 3,
            keys: 4,
            lines: 20,
            rate: 0,
        },
        Tenant {
            name: "off",
            topic: off_topic.into(),
            clients: 2,
            keys: 8,
            lines: 100,
            rate: plan.rate,
        },
    ];
    let mut tasks = Vec::new();
    for t in &tenants {
        for id in 0..t.clients {
            tasks.push((t.name, tokio::spawn(client(clients.clone(), t.clone(), id))));
        }
    }
    let (faults, broker, phase) = {
        let (proxy, clients) = (proxy.clone(), clients.clone());
        tokio::task::spawn_blocking(move || make_faults(plan, &proxy, broker, &clients.ok))
            .await
            .unwrap()
    };
    proxy.set_fault(1, Fault::None);
    let ok_in_phase = clients.ok.load(Ordering::Relaxed);

    // The drain, with the clients still posting.
    clients.draining.store(true, Ordering::Relaxed);
    let sigterm = Instant::now();
    serve.terminate();
    let mut logs: HashMap<&str, Vec<Log>> = HashMap::new();
    for (name, task) in tasks {
        logs.entry(name).or_default().push(task.await.unwrap());
    }
    let (status, stderr) =
        tokio::task::spawn_blocking(move || serve.finish(Duration::from_secs(90)))
            .await
            .unwrap();
    let drain = sigterm.elapsed();

    let addr = broker.addr.clone();
    let (on, off) = tokio::task::spawn_blocking(move || {
        (
            check(&addr, on_topic, &logs["on"]),
            check(&addr, off_topic, &logs["off"]),
        )
    })
    .await
    .unwrap();
    let (delivered, producer_failed) = drained(&stderr).map_or((0, 0), |(_, d, f)| (d, f));
    let sum = |f: fn(&Check) -> u64| f(&on) + f(&off);
    eprintln!(
        "chaos: seed {} faults {} (cuts {}, stalls {} totalling {} ms, broker restarts {}) in {:.1} s; \
         events {} (on {}, off {}) at {:.0}/s; lost {} duplicated {} reordered {}; \
         failed {} (on the broker {}), unanswered {} (on the broker {}), strangers {}, acks checked {} (without offset {}, wrong {}); \
         records {}, producer delivered {} failed {}; drain {:.1} s {}; total {:.1} s",
        plan.seed,
        faults.total(),
        faults.cuts,
        faults.stalls,
        faults.stalled_ms,
        faults.restarts,
        phase.as_secs_f64(),
        sum(|c| c.ok),
        on.ok,
        off.ok,
        ok_in_phase as f64 / phase.as_secs_f64(),
        sum(|c| c.lost),
        sum(|c| c.duplicated),
        sum(|c| c.reordered),
        sum(|c| c.failed),
        sum(|c| c.failed_stored),
        sum(|c| c.unknown),
        sum(|c| c.unknown_stored),
        sum(|c| c.strangers),
        sum(|c| c.acks_checked),
        sum(|c| c.acks_without_offset),
        sum(|c| c.ack_mismatches),
        sum(|c| c.records),
        delivered,
        producer_failed,
        drain.as_secs_f64(),
        status,
        started.elapsed().as_secs_f64(),
    );
    let errors = clients.errors.lock().unwrap().clone();
    if !errors.is_empty() {
        eprintln!("chaos: failed events by error: {errors:?}");
    }

    assert!(status.success(), "the drain exits 0 ({status}):\n{stderr}");
    for (name, c) in [("on", &on), ("off", &off)] {
        assert!(
            c.lost == 0
                && c.duplicated == 0
                && c.reordered == 0
                && c.strangers == 0
                && c.ack_mismatches == 0,
            "tenant {name}: {c:?}\nwafka serve's last lines:\n{stderr}"
        );
        assert!(c.ok > 0, "tenant {name} ran events: {c:?}");
    }
    assert!(on.acks_checked > 0, "acks were compared: {on:?}");
    assert!(
        faults.total() >= plan.min_faults && faults.restarts >= plan.min_restarts,
        "{faults:?}"
    );
    assert_eq!(
        (delivered, producer_failed),
        (sum(|c| c.records), 0),
        "the producer's count of delivered records is what the topics hold:\n{stderr}"
    );
    drop(proxy);
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
}
