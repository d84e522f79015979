//! `probe`: a plugin for the host's tests, driven by one command per event.
//!
//! An event is UTF-8 text: a command and its arguments, separated by spaces. A command that
//! goes as asked returns `Ok(())`; otherwise `handle` returns an error whose message says why
//! (always one line). The commands:
//!
//! | command | what it does |
//! | --- | --- |
//! | `publish TOPIC KEY VALUE [PARTITION]` | publishes one record; KEY `-` is Kafka's null key; without PARTITION the partitioner chooses. Fails with the producer error's message (e.g. `not authorized: …`). |
//! | `publish-n TOPIC N` | publishes N records with null keys and the values `0`, `1`, … `N-1` (decimal text). Fails at the first error with `record I: <error>`. |
//! | `publish-size TOPIC BYTES` | publishes one record, null key, whose value is BYTES bytes of `x` (for size limits and quotas). Fails with the error's message. |
//! | `bench TOPIC N SIZE` | publishes N records with null keys whose values are SIZE bytes of `v`, for the host's benchmark: the record is built once before the loop, so each iteration is only the `publish` call. Fails at the first error with `record I: <error>`. |
//! | `flush` | flushes; fails with the error's message. |
//! | `autoflush on\|off` | switches autoflush; fails with the error's message if the host refuses (`not allowed: …`). |
//! | `receipt TOPIC KEY VALUE` | publishes like `publish` and fails unless the receipt has an offset ≥ 0, i.e. the broker acknowledged the record before `publish` returned (only with autoflush on); the message then shows the receipt: `receipt not acknowledged: id=0 partition=1 offset=-1`. |
//! | `reports N` | takes up to N+1 delivery reports and fails unless exactly N came back, all delivered; the message lists what came back. |
//! | `trap` | panics: the instance traps. |
//! | `loop` | spins forever without calling the host: only an interruption (epoch, fuel) stops it. |
//! | `grow MB` | allocates MB mebibytes in 1 MiB blocks and writes to every byte, then frees them and succeeds; an allocation beyond the host's memory limit aborts (a trap). |
//! | `print TEXT` | writes TEXT (the rest of the event, spaces included) as one line to stdout and to stderr. |
//! | `env` | succeeds only if the plugin sees no environment variable and `std::fs::read_dir("/")` fails; otherwise fails listing the variables' names and what `read_dir` gave. |
//! | `sleep MS` | sleeps MS milliseconds (`std::thread::sleep`: a WASI `poll`, which epoch interruption does not stop), then succeeds. |
//! | `publish-loop TOPIC` | publishes to TOPIC forever, ignoring every error: a loop of host calls. |
//! | `recurse N` | recurses N levels deep with a 1 KiB frame each, then succeeds (a large N overflows the stack). |
//!
//! Configuration: with `fail-init=MESSAGE`, `init` fails with MESSAGE (to test the host's
//! handling of a failed `init`); with `sleep-init=MS`, `init` sleeps MS milliseconds first;
//! every other setting is ignored.

use std::hint::black_box;

use wafka_guest::{Config, Plugin, Record};

/// The probe keeps no state between events.
struct Probe;

impl Plugin for Probe {
    fn init(config: Config) -> Result<Self, String> {
        if let Some(ms) = config.get("sleep-init") {
            std::thread::sleep(std::time::Duration::from_millis(number(ms)?));
        }
        match config.get("fail-init") {
            Some(message) => Err(message.to_string()),
            None => Ok(Probe),
        }
    }

    fn handle(&mut self, event: &[u8]) -> Result<(), String> {
        let line = std::str::from_utf8(event).map_err(|e| format!("event is not UTF-8: {e}"))?;
        let (command, rest) = line.split_once(' ').unwrap_or((line, ""));
        let args: Vec<&str> = rest.split_ascii_whitespace().collect();
        match (command, args.as_slice()) {
            ("publish", [topic, key, value]) => publish(topic, key, value, None),
            ("publish", [topic, key, value, partition]) => {
                publish(topic, key, value, Some(number(partition)?))
            }
            ("publish-n", [topic, n]) => publish_n(topic, number(n)?),
            ("publish-size", [topic, bytes]) => {
                Record::new(*topic, vec![b'x'; number(bytes)?]).publish()?;
                Ok(())
            }
            ("bench", [topic, n, size]) => bench(topic, number(n)?, number(size)?),
            ("flush", []) => Ok(wafka_guest::flush()?),
            ("autoflush", ["on"]) => Ok(wafka_guest::set_autoflush(true)?),
            ("autoflush", ["off"]) => Ok(wafka_guest::set_autoflush(false)?),
            ("receipt", [topic, key, value]) => receipt(topic, key, value),
            ("reports", [n]) => reports(number(n)?),
            ("trap", []) => panic!("probe: trap requested"),
            ("loop", []) => spin(),
            ("grow", [mib]) => grow(number(mib)?),
            ("print", _) => {
                println!("{rest}");
                eprintln!("{rest}");
                Ok(())
            }
            ("env", []) => env(),
            ("sleep", [ms]) => {
                std::thread::sleep(std::time::Duration::from_millis(number(ms)?));
                Ok(())
            }
            ("publish-loop", [topic]) => loop {
                let _ = Record::new(*topic, "x").publish();
            },
            ("recurse", [n]) => {
                black_box(recurse(number(n)?));
                Ok(())
            }
            _ => Err(format!("unknown command or wrong arguments: {line:?}")),
        }
    }
}

/// Parses a command's numeric argument.
fn number<T: std::str::FromStr>(word: &str) -> Result<T, String> {
    word.parse()
        .map_err(|_| format!("not a valid number: {word:?}"))
}

/// `-` is the null key.
fn record(topic: &str, key: &str, value: &str) -> Record {
    Record::new(topic, value).maybe_key((key != "-").then_some(key))
}

fn publish(topic: &str, key: &str, value: &str, partition: Option<i32>) -> Result<(), String> {
    let mut record = record(topic, key, value);
    if let Some(partition) = partition {
        record = record.partition(partition);
    }
    record.publish()?;
    Ok(())
}

fn publish_n(topic: &str, n: u64) -> Result<(), String> {
    for i in 0..n {
        Record::new(topic, i.to_string())
            .publish()
            .map_err(|e| format!("record {i}: {e}"))?;
    }
    Ok(())
}

/// One record, built once, published `n` times: the loop does nothing but `publish`.
fn bench(topic: &str, n: u64, size: usize) -> Result<(), String> {
    let record = Record::new(topic, vec![b'v'; size]);
    for i in 0..n {
        record.publish().map_err(|e| format!("record {i}: {e}"))?;
    }
    Ok(())
}

fn receipt(topic: &str, key: &str, value: &str) -> Result<(), String> {
    let receipt = record(topic, key, value).publish()?;
    if receipt.is_acknowledged() {
        Ok(())
    } else {
        Err(format!("receipt not acknowledged: {receipt}"))
    }
}

fn reports(n: u32) -> Result<(), String> {
    let reports = wafka_guest::take_reports(n.saturating_add(1));
    if reports.len() == n as usize && reports.iter().all(|r| r.is_ok()) {
        return Ok(());
    }
    let listed: Vec<String> = reports.iter().map(ToString::to_string).collect();
    Err(format!(
        "expected {n} delivered reports, took {}: [{}]",
        reports.len(),
        listed.join("; ")
    ))
}

/// Spins forever without calling the host.
fn spin() -> ! {
    let mut i: u64 = 0;
    loop {
        i = black_box(i.wrapping_add(1));
    }
}

fn grow(mib: usize) -> Result<(), String> {
    const MIB: usize = 1 << 20;
    let mut blocks: Vec<Vec<u8>> = Vec::with_capacity(mib);
    for i in 0..mib {
        // A non-zero fill writes every byte (zeroed memory might be left untouched).
        blocks.push(vec![(i % 255) as u8 + 1; MIB]);
    }
    black_box(&blocks);
    Ok(())
}

/// Recursion with a 1 KiB frame per level.
fn recurse(n: u64) -> u64 {
    let frame = black_box([n as u8; 1024]);
    if n == 0 {
        return frame[0] as u64;
    }
    recurse(n - 1).wrapping_add(frame[(n % 1024) as usize] as u64)
}

fn env() -> Result<(), String> {
    let vars: Vec<String> = std::env::vars_os()
        .map(|(name, _)| name.to_string_lossy().into_owned())
        .collect();
    let read_dir = std::fs::read_dir("/").map(|entries| entries.count());
    if vars.is_empty() && read_dir.is_err() {
        return Ok(());
    }
    let read_dir = match read_dir {
        Ok(count) => format!("works ({count} entries)"),
        Err(e) => format!("fails ({e})"),
    };
    Err(format!(
        "{} environment variables [{}]; read_dir(\"/\") {read_dir}",
        vars.len(),
        vars.join(", ")
    ))
}

wafka_guest::export_plugin!(Probe);
