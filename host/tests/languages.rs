//! The same guarantees for plugins in every guest language: each language's examples
//! (examples/<lang>, built by scripts/build-guests) run in `wafka run` against nisshi, and the
//! records are read back with librdkafka.
//!
//! - `hello::<lang>`: the `hello` example publishes the same records, byte for byte (keys,
//!   values, headers, order, offsets), in every language, for inputs with empty keys and
//!   values, multi-byte UTF-8 and bytes that are not UTF-8.
//! - `reporter::<lang>`: the `reporter` example under `--autoflush guest` switches autoflush on
//!   and gets each record's offset back from `publish`; without it, it drains delivery reports
//!   of earlier records; under a fixed policy its `set-autoflush` is refused and `init` fails.
//! - `errors::<lang>`: every `produce-error` case reaches the `reporter` as itself, in the same
//!   words in every language, from `publish` and in delivery reports (injected by `wafka
//!   test`, no broker).

mod support;

use std::time::Duration;

use wafka_tests::{brokers, consume_exactly, create_topic, guest, Consumed};

/// The `hello` input: edge cases first, then enough records to fill a few batches.
fn hello_input() -> Vec<u8> {
    let mut input = b"alice:hello\nno key here\nk:\n:v\n\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87:\xe2\x9c\x93 a:b\nbin:\xff\x00\x01\n".to_vec();
    for n in 0..300 {
        input.extend_from_slice(format!("user{}:event {n}\n", n % 7).as_bytes());
    }
    input
}

/// What `hello` with `key-delimiter=:` must publish for `input`, one record per line, in order.
fn hello_expected(input: &[u8]) -> Vec<(Option<Vec<u8>>, Vec<u8>)> {
    input
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| match line.iter().position(|&b| b == b':') {
            Some(at) => (Some(line[..at].to_vec()), line[at + 1..].to_vec()),
            None => (None, line.to_vec()),
        })
        .collect()
}

fn read(topic: &str, n: usize) -> Vec<Consumed> {
    consume_exactly(&brokers(), topic, n, Duration::from_secs(60))
}

/// Runs `examples/build/<plugin>.wasm` with `wafka run -b <broker> ARGS`, `gap` between the
/// input's chunks, and plugin output in the log.
fn run(plugin: &str, args: &[&str], input: &[&[u8]], gap: Duration) -> support::Outcome {
    let path = guest(plugin);
    let b = brokers();
    let mut all = vec!["run", path.to_str().unwrap(), "-b", &b];
    all.extend_from_slice(args);
    support::wafka(&all, input, gap, "info")
}

fn hello(plugin: &str) {
    let topic = create_topic(&format!("lang-{plugin}"), 1);
    let input = hello_input();
    let expected = hello_expected(&input);
    let config = format!("topic={topic}");
    let args = ["--config", &config, "--config", "key-delimiter=:"];
    let out = run(plugin, &args, &[&input], Duration::ZERO);
    assert!(out.ok, "{plugin}: {}", out.stderr);
    let got = read(&topic, expected.len());
    assert_eq!(got.len(), expected.len(), "{plugin}: record count");
    for (n, (record, (key, value))) in got.iter().zip(&expected).enumerate() {
        let what = format!("{plugin}: record {n}");
        assert_eq!(record.offset, n as i64, "{what}: order");
        assert_eq!(record.key.as_ref(), key.as_ref(), "{what}: key");
        assert_eq!(record.value.as_ref(), Some(value), "{what}: value");
        assert_eq!(
            record.headers,
            vec![("source".to_string(), Some(b"hello".to_vec()))],
            "{what}: headers"
        );
    }
}

/// What `plugin` printed on lines that contain `marker`, from the marker on: the host's log
/// tags each line of plugin output with ` plugin="<name>"` at the end.
fn printed<'a>(stderr: &'a str, plugin: &str, marker: &str) -> Vec<&'a str> {
    let tag = format!(" plugin=\"{plugin}\"");
    stderr
        .lines()
        .filter_map(|line| Some(&line[line.find(marker)?..]))
        .map(|line| line.trim_end().strip_suffix(&tag).expect("a tagged line"))
        .collect()
}

fn reporter(plugin: &str) {
    let events: [&[u8]; 3] = [b"first\n", b"second\n", b"third\n"];

    // Autoflush on, asked for by the plugin: each publish returns the record's offset.
    let topic = create_topic(&format!("lang-{plugin}-ack"), 1);
    let config = format!("topic={topic}");
    let args = [
        "--autoflush",
        "guest",
        "--config",
        &config,
        "--config",
        "autoflush=true",
    ];
    let out = run(plugin, &args, &[&events.concat()], Duration::ZERO);
    assert!(out.ok, "{plugin}: {}", out.stderr);
    assert_eq!(
        printed(&out.stderr, plugin, "receipt "),
        [
            "receipt partition=0 offset=0",
            "receipt partition=0 offset=1",
            "receipt partition=0 offset=2"
        ],
        "{plugin}: {}",
        out.stderr
    );
    let got = read(&topic, 3);
    let values: Vec<_> = got.iter().map(|c| c.value.clone().unwrap()).collect();
    assert_eq!(
        values,
        [b"first".to_vec(), b"second".to_vec(), b"third".to_vec()]
    );

    // Autoflush off: events arrive 500 ms apart, so each of the first two records is acknowledged
    // before the next event comes, and the plugin drains its report then.
    let topic = create_topic(&format!("lang-{plugin}-reports"), 1);
    let config = format!("topic={topic}");
    let args = ["--autoflush", "guest", "--config", &config];
    let out = run(plugin, &args, &events, Duration::from_millis(500));
    assert!(out.ok, "{plugin}: {}", out.stderr);
    assert!(
        printed(&out.stderr, plugin, "receipt ").is_empty(),
        "{plugin}: {}",
        out.stderr
    );
    let reports = printed(&out.stderr, plugin, "report id=");
    for offset in [0, 1] {
        let want = format!("topic={topic} partition=0 offset={offset}");
        assert!(
            reports.iter().any(|r| r.ends_with(&want)),
            "{plugin}: no report of offset {offset}: {}",
            out.stderr
        );
    }
    assert_eq!(read(&topic, 3).len(), 3, "{plugin}");

    // A fixed policy refuses the switch: init fails with the host's reason, nothing is sent.
    let args = [
        "--autoflush",
        "off",
        "--config",
        &config,
        "--config",
        "autoflush=true",
    ];
    let out = run(plugin, &args, &[b"refused\n"], Duration::ZERO);
    assert!(!out.ok, "{plugin}: init must fail");
    assert!(
        out.stderr.contains("the host fixed autoflush to off"),
        "{plugin}: {}",
        out.stderr
    );
    assert_eq!(read(&topic, 3).len(), 3, "{plugin}: nothing more was sent");
}

/// Every `produce-error` case, as `wafka test` injects it and as every SDK must present it:
/// the KIND on the command line and the plugin's words for it (the Rust SDK's, which every
/// language must match exactly).
const ERRORS: &[(&str, &str)] = &[
    ("not-authorized", "not authorized: reports"),
    (
        "invalid-topic",
        "invalid topic: topic `reports` does not exist (injected by wafka test)",
    ),
    ("record-too-large", "record too large: "),
    ("buffer-full", "producer buffer full"),
    (
        "quota-exceeded",
        "quota exceeded: quota used up (injected by wafka test)",
    ),
    (
        "timed-out",
        "timed out: record expired after delivery.timeout.ms=120000 ms (injected by wafka test)",
    ),
    ("closed", "producer closed"),
    (
        "not-allowed",
        "not allowed: the host's policy does not allow this (injected by wafka test)",
    ),
    (
        "broker:7",
        "broker error REQUEST_TIMED_OUT (7): the broker refused the record (injected by wafka test)",
    ),
];

/// `errors::<lang>`: every `produce-error` case reaches the plugin as itself, through both
/// ways a plugin meets errors: `publish` (`wafka test --autoflush on --fail-topic`: the
/// `reporter` fails its event with the error's words) and, for the cases a delivery can end
/// with, delivery reports (`--fail-reports`: it prints `report id=0 error=<words>`). Broker-less: the host injects them (run's own
/// paths to the same errors are tested in `plugins.rs`, `hostile.rs` and `security.rs`).
fn errors(plugin: &str) {
    let path = guest(plugin);
    let path = path.to_str().unwrap();
    for (kind, words) in ERRORS {
        let at_publish = support::wafka(
            &[
                "test",
                path,
                "--autoflush",
                "on",
                "--fail-topic",
                &format!("reports={kind}"),
            ],
            &[b"x\n"],
            Duration::ZERO,
            "warn",
        );
        let expected = format!("event 1: plugin `{plugin}` failed: {words}");
        assert!(
            at_publish.stderr.contains(&expected),
            "{plugin}, {kind} at publish: expected `{expected}` in:\n{}",
            at_publish.stderr
        );
        // A delivery never ends with these: the host gives them at publish only.
        if ["buffer-full", "quota-exceeded", "not-allowed"].contains(kind) {
            continue;
        }
        let in_report = support::wafka(
            &["test", path, "--fail-reports", kind],
            &[b"x\n"],
            Duration::ZERO,
            "info",
        );
        let expected = format!("report id=0 error={words}");
        assert!(
            in_report.stderr.contains(&expected),
            "{plugin}, {kind} in a report: expected `{expected}` in:\n{}",
            in_report.stderr
        );
    }
}

/// `finish::<lang>`: with autoflush off and events back to back, most records are acknowledged
/// after the event that published them ended; the `reporter`'s `finish` (the
/// `plugin-lifecycle` world) flushes and prints their reports, so every record's report is
/// printed, the last one's included.
fn finish(plugin: &str) {
    let topic = create_topic(&format!("lang-{plugin}-finish"), 1);
    let config = format!("topic={topic}");
    let events: &[u8] = b"one\ntwo\nthree\n";
    let out = run(plugin, &["--config", &config], &[events], Duration::ZERO);
    assert!(out.ok, "{plugin}: {}", out.stderr);
    let reports = printed(&out.stderr, plugin, "report id=");
    for offset in [0, 1, 2] {
        let want = format!("topic={topic} partition=0 offset={offset}");
        assert!(
            reports.iter().any(|r| r.ends_with(&want)),
            "{plugin}: no report of offset {offset}: {}",
            out.stderr
        );
    }
}

/// One test per language and example, named `<example>::<language>`.
macro_rules! languages {
    ($example:ident: $($lang:ident => $plugin:literal),* $(,)?) => {
        mod $example {
            $(
                #[test]
                fn $lang() {
                    super::$example($plugin);
                }
            )*
        }
    };
}

languages!(hello: rust => "hello", c => "hello-c", zig => "hello-zig", python => "hello-py",
    js => "hello-js", go => "hello-go");
languages!(reporter: rust => "reporter", c => "reporter-c", zig => "reporter-zig", python => "reporter-py",
    js => "reporter-js", go => "reporter-go");
languages!(errors: rust => "reporter", c => "reporter-c", zig => "reporter-zig", python => "reporter-py",
    js => "reporter-js", go => "reporter-go");
languages!(finish: rust => "reporter", c => "reporter-c", zig => "reporter-zig", python => "reporter-py",
    js => "reporter-js", go => "reporter-go");
