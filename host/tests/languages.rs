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
//! - `provoked::<lang>`: the cases a real run provokes (ACL, bad and missing topics, a record
//!   over the limit, an unreachable cluster) reach the `reporter` under `wafka run` as
//!   themselves, in the same words;
//! - `errors::<lang>`: every `produce-error` case reaches the `reporter` as itself, in the same
//!   words in every language, from `publish` and in delivery reports (injected by `wafka
//!   test`, no broker).
//! - `router::<lang>`: the `router` example sends JSON events to the topics their `type` names,
//!   keyed by their `id`, values unchanged, and fails each bad event with the same one-line
//!   error in every language, going on with the next.
//! - `batcher::<lang>`: the `batcher` example delivers every event in order against the broker
//!   with nothing dead-lettered; under `wafka test` with injected delivery failures, exactly the
//!   failed records reach the dead-letter topic (values, headers, order), the last batch's
//!   through `finish`.

mod support;

use std::time::Duration;

use wafka_tests::{
    brokers, consume_all, consume_exactly, create_topic, create_topic_named, guest, Consumed,
};

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
/// The `produce-error` cases a real run can provoke, provoked for real under `wafka run` (the
/// host's ACL, a topic name Kafka refuses, a topic the cluster lacks, a record over
/// `max.request.size`, a cluster that cannot be reached): the `reporter` fails the event with
/// exactly what it was given, in the same words in every language. (`errors::<lang>` covers
/// every case, these and the rest, as `wafka test` injects them.)
fn provoked(plugin: &str) {
    let b = brokers();
    let topic = create_topic(&format!("lang-{plugin}-provoked"), 1);
    let at = |args: &[&str], event: &[u8]| {
        let path = guest(plugin);
        let mut all = vec!["run", path.to_str().unwrap(), "--autoflush", "on"];
        all.extend_from_slice(args);
        let out = support::wafka(&all, &[event], Duration::ZERO, "warn");
        let line = out
            .stderr
            .lines()
            .find(|l| l.contains("event 1: "))
            .unwrap_or_else(|| panic!("{plugin}: no failed event in:\n{}", out.stderr))
            .to_string();
        line[line.find("failed: ").expect("a failure") + 8..].to_string()
    };
    let config = format!("topic={topic}");
    assert_eq!(
        at(
            &["-b", &b, "--allow-topic", "elsewhere", "--config", &config],
            b"x\n"
        ),
        format!("not authorized: plugin `{plugin}` may not publish to topic `{topic}`")
    );
    assert_eq!(
        at(&["-b", &b, "--config", "topic=bad topic!"], b"x\n"),
        "invalid topic: invalid topic name `bad topic!`: only ASCII letters, digits, `.`, `_` and `-` are allowed"
    );
    let missing = format!("{topic}-missing");
    let config_missing = format!("topic={missing}");
    assert_eq!(
        at(&["-b", &b, "--config", &config_missing], b"x\n"),
        format!("invalid topic: topic `{missing}` does not exist on the cluster")
    );
    let mut big = vec![b'a'; 3000];
    big.push(b'\n');
    assert_eq!(
        at(
            &["-b", &b, "-X", "max.request.size=1000", "--config", &config],
            &big
        ),
        "record too large: 3000 bytes"
    );
    let unreachable = at(
        &[
            "-b",
            "127.0.0.1:1",
            "-X",
            "max.block.ms=300",
            "--config",
            &config,
        ],
        b"x\n",
    );
    assert!(
        unreachable.starts_with(&format!(
            "timed out: no metadata for topic `{topic}` after max.block.ms=300 ms: cannot connect to 127.0.0.1:1"
        )),
        "{plugin}: {unreachable}"
    );
}

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

/// What must become of an event given to the `router`: a record on (topic, key), or the
/// event's error.
type RouterOutcome = Result<(String, Option<String>), &'static str>;

/// `router::<lang>`: good events go to `<prefix><type>` (topics created first) keyed by `id`,
/// byte for byte; each bad event fails with its one-line error and the next ones still go out.
fn router(plugin: &str) {
    let base = create_topic(&format!("lang-{plugin}-route"), 1);
    let [clicks, views, sevens] = ["click", "view", "7"].map(|t| format!("{base}.{t}"));
    for topic in [&clicks, &views, &sevens] {
        create_topic_named(&brokers(), topic, 1);
    }
    // Each event, and what must become of it: a record on a topic with a key, or the event's
    // error (or its start, with `…`).
    let ok = |topic: &str, key: Option<&str>| Ok((topic.to_string(), key.map(str::to_string)));
    let cases: Vec<(&[u8], RouterOutcome)> =
        vec![
        (br#"{"type":"click","id":"u1","n":1}"#, ok(&clicks, Some("u1"))),
        (b"not json", Err("event is not JSON…")),
        // Nested values with brackets, quotes and a `type` of their own are skipped.
        (
            br#" { "id" : 42, "tags":["a","}\"]"], "n":{"type":"x","a":[{}]}, "type" : "view" } "#,
            ok(&views, Some("42")),
        ),
        (b"[1,2]", Err("event is a JSON array, not an object")),
        (br#"{"id":"u3"}"#, Err("event has no field `type`")),
        (br#"{"type":"","id":"u4"}"#, Err("field `type` is empty")),
        (br#"{"type":7,"id":null}"#, ok(&sevens, None)),
        (
            br#"{"type":{"a":1}}"#,
            Err("field `type` is a JSON object, not a string or number"),
        ),
        // Escapes in names and values, \uXXXX included (a surrogate pair: U+1F600).
        (
            br#"{"ty\u0070e":"cl\u0069ck","id":"caf\u00e9 \"q\" \ud83d\ude00\\"}"#,
            ok(&clicks, Some("café \"q\" 😀\\")),
        ),
        (br#"{"type":"click"} {"#, Err("event is not JSON…")),
        (b"{\"type\":\"click\xff\"}", Err("event is not JSON…")),
        (b"\"click\"", Err("event is a JSON string, not an object")),
        // A lone surrogate: Rust, C and Zig refuse it as not JSON; Python, JavaScript and Go
        // read it, and then the topic (not UTF-8) is refused. Either way only this event fails.
        (br#"{"type":"\ud800x"}"#, Err("…")),
        // A repeated name: the last one counts.
        (
            br#"{"type":"view","id":true,"type":"click"}"#,
            ok(&clicks, Some("true")),
        ),
        (br#"{"type":"view","id":"last"}"#, ok(&views, Some("last"))),
    ];
    let mut input = Vec::new();
    for (event, _) in &cases {
        input.extend_from_slice(event);
        input.push(b'\n');
    }
    let prefix = format!("prefix={base}.");
    let out = run(plugin, &["--config", &prefix], &[&input], Duration::ZERO);
    assert!(!out.ok, "{plugin}: bad events fail the run: {}", out.stderr);
    // Per topic, the (key, value) of each record it must get, in order.
    type Records<'a> = Vec<(Option<&'a [u8]>, &'a [u8])>;
    let mut want: Vec<(&str, Records)> =
        vec![(&clicks, vec![]), (&views, vec![]), (&sevens, vec![])];
    for (n, (event, outcome)) in cases.iter().enumerate() {
        let failed = format!("event {}: plugin `{plugin}` failed: ", n + 1);
        let line = out.stderr.lines().find(|l| l.contains(&failed));
        match outcome {
            Ok((topic, key)) => {
                assert!(line.is_none(), "{plugin}: event {}: {}", n + 1, out.stderr);
                let records = &mut want.iter_mut().find(|(t, _)| t == topic).unwrap().1;
                records.push((key.as_ref().map(|k| k.as_bytes()), event));
            }
            Err(error) => {
                let line = line.unwrap_or_else(|| {
                    panic!("{plugin}: event {} did not fail: {}", n + 1, out.stderr)
                });
                let message = &line[line.find(&failed).unwrap() + failed.len()..];
                match error.strip_suffix('…') {
                    Some(start) => assert!(message.starts_with(start), "{plugin}: {line}"),
                    None => assert_eq!(message, *error, "{plugin}: event {}", n + 1),
                }
            }
        }
    }
    for (topic, records) in want {
        let got = read(topic, records.len());
        assert_eq!(got.len(), records.len(), "{plugin}: records in {topic}");
        for (n, (record, (key, value))) in got.iter().zip(&records).enumerate() {
            let what = format!("{plugin}: {topic} record {n}");
            assert_eq!(record.key.as_deref(), *key, "{what}: key");
            assert_eq!(record.value.as_deref(), Some(*value), "{what}: value");
            assert!(record.headers.is_empty(), "{what}: headers");
        }
    }
}

/// The events the `batcher` gets: `n` lines, some with multi-byte UTF-8.
fn batcher_events(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("event {i}{}", if i % 5 == 0 { " ✓ é" } else { "" }))
        .collect()
}

/// A record the `batcher` publishes: (topic, value, headers).
type Published = (String, String, Vec<(String, String)>);

/// The `batcher` under `wafka test --fail-every EVERY=broker`, replayed: records are counted
/// (for `--fail-every`, from 1) and reported in the order they are published, and a drain
/// takes reports until none is left, those of the dead letters it published included.
struct BatcherModel {
    topic: String,
    every: u64,
    published: u64,
    /// Published and not yet reported: (id, record, failed).
    unreported: std::collections::VecDeque<(u64, Published, bool)>,
    /// What `wafka test` captures (prints), in order.
    captured: Vec<Published>,
    /// What the plugin prints.
    printed: Vec<String>,
}

impl BatcherModel {
    const ERROR: &str = "broker error NOT_ENOUGH_REPLICAS (19): the broker refused the record (injected by wafka test)";

    /// What the `batcher` with `topic=TOPIC` and `batch=BATCH` captures and prints for `events`.
    fn run(
        events: &[String],
        batch: usize,
        every: u64,
        topic: &str,
    ) -> (Vec<Published>, Vec<String>) {
        let mut m = BatcherModel {
            topic: topic.to_string(),
            every,
            published: 0,
            unreported: Default::default(),
            captured: vec![],
            printed: vec![],
        };
        for (n, event) in events.iter().enumerate() {
            m.publish((topic.to_string(), event.clone(), vec![]));
            if (n + 1) % batch == 0 {
                m.drain();
            }
        }
        m.drain(); // finish
        (m.captured, m.printed)
    }

    fn publish(&mut self, record: Published) {
        self.published += 1;
        let failed = self.published.is_multiple_of(self.every);
        self.unreported
            .push_back((self.published - 1, record, failed));
    }

    fn drain(&mut self) {
        while let Some((id, (topic, value, headers), failed)) = self.unreported.pop_front() {
            let error = Self::ERROR;
            if !failed {
                self.captured.push((topic, value, headers));
            } else if topic == self.topic {
                self.printed
                    .push(format!("dead-letter id={id} topic={topic} error={error}"));
                let headers = vec![("error".into(), error.into()), ("topic".into(), topic)];
                self.publish((format!("{}.dlq", self.topic), value, headers));
            } else {
                self.printed
                    .push(format!("lost id={id} topic={topic} error={error}"));
            }
        }
    }
}

/// `batcher::<lang>`: against the broker, 250 events with `batch=100` arrive in order and
/// nothing is dead-lettered; under `wafka test` with every 7th record failed, exactly the
/// failed records reach the dead-letter topic with their values and headers, those of the last
/// (partial) batch through `finish`, and a dead letter that fails too is printed as lost.
fn batcher(plugin: &str) {
    let events = batcher_events(250);
    let input: Vec<u8> = events
        .iter()
        .flat_map(|e| format!("{e}\n").into_bytes())
        .collect();

    let topic = create_topic(&format!("lang-{plugin}-batch"), 1);
    let dlq = format!("{topic}.dlq");
    create_topic_named(&brokers(), &dlq, 1);
    let config = format!("topic={topic}");
    let args = ["--config", &config, "--config", "batch=100"];
    let out = run(plugin, &args, &[&input], Duration::ZERO);
    assert!(out.ok, "{plugin}: {}", out.stderr);
    let got = read(&topic, events.len());
    assert_eq!(got.len(), events.len(), "{plugin}: record count");
    for (n, (record, event)) in got.iter().zip(&events).enumerate() {
        assert_eq!(record.offset, n as i64, "{plugin}: record {n}: order");
        assert_eq!(record.key, None, "{plugin}: record {n}: key");
        assert_eq!(
            record.value.as_deref(),
            Some(event.as_bytes()),
            "{plugin}: record {n}"
        );
        assert!(record.headers.is_empty(), "{plugin}: record {n}: headers");
    }
    assert!(
        consume_all(&brokers(), &dlq, Duration::from_secs(30)).is_empty(),
        "{plugin}: dead letters"
    );
    assert!(
        !out.stderr.contains("dead-letter id="),
        "{plugin}: {}",
        out.stderr
    );

    // Injected failures: every 7th record published (dead letters counted) is not delivered.
    let path = guest(plugin);
    let args = [
        "test",
        path.to_str().unwrap(),
        "--config",
        "topic=orders",
        "--config",
        "batch=100",
        "--fail-every",
        "7=broker",
    ];
    let out = support::wafka(&args, &[&input], Duration::ZERO, "info");
    assert!(out.ok, "{plugin}: {}", out.stderr);
    let (want, want_printed) = BatcherModel::run(&events, 100, 7, "orders");
    let got: Vec<Published> = out
        .stdout
        .lines()
        .map(|line| {
            let r: serde_json::Value = serde_json::from_str(line).unwrap();
            let headers = r["headers"].as_array().unwrap().iter().map(|h| {
                (
                    h[0].as_str().unwrap().to_string(),
                    h[1].as_str().unwrap().to_string(),
                )
            });
            (
                r["topic"].as_str().unwrap().to_string(),
                r["value"].as_str().unwrap().to_string(),
                headers.collect(),
            )
        })
        .collect();
    let dead: Vec<_> = want.iter().filter(|(t, _, _)| t == "orders.dlq").collect();
    assert!(
        dead.len() > 20,
        "the expectation has dead letters: {}",
        dead.len()
    );
    let number = |v: &str| v.split(' ').nth(1).unwrap().parse::<usize>().unwrap();
    assert!(
        dead.iter().any(|(_, v, _)| number(v) >= 200),
        "the expectation has dead letters from the last batch"
    );
    assert!(
        want_printed.iter().any(|l| l.starts_with("lost id=")),
        "the expectation has a dead letter that failed too"
    );
    assert_eq!(got.len(), want.len(), "{plugin}: captured records");
    for (n, (got, want)) in got.iter().zip(&want).enumerate() {
        assert_eq!(got, want, "{plugin}: captured record {n}");
    }
    let mut lines = printed(&out.stderr, plugin, "dead-letter id=");
    lines.extend(printed(&out.stderr, plugin, "lost id="));
    lines.sort();
    let mut want_printed = want_printed;
    want_printed.sort();
    assert_eq!(lines, want_printed, "{plugin}: printed lines");
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
languages!(provoked: rust => "reporter", c => "reporter-c", zig => "reporter-zig", python => "reporter-py",
    js => "reporter-js", go => "reporter-go");
languages!(finish: rust => "reporter", c => "reporter-c", zig => "reporter-zig", python => "reporter-py",
    js => "reporter-js", go => "reporter-go");
languages!(router: rust => "router", c => "router-c", zig => "router-zig", python => "router-py",
    js => "router-js", go => "router-go");
languages!(batcher: rust => "batcher", c => "batcher-c", zig => "batcher-zig", python => "batcher-py",
    js => "batcher-js", go => "batcher-go");
