//! The `wafka` binary end to end (`produce`, `run`, `test`) against nisshi, read back with
//! librdkafka.

mod support;

use std::time::Duration;

use wafka_tests::{brokers, consume_exactly, create_topic, librdkafka_partition};

fn produce(args: &[&str], input: &str) -> (bool, String) {
    support::wafka_at_once("produce", args, input, "warn")
}

#[test]
fn produce_sends_lines_with_keys_headers_and_properties() {
    let b = brokers();
    let topic = create_topic("cli", 4);
    let input: String = (0..500)
        .map(|i| format!("k{}:value {i}\n", i % 7))
        .collect();
    let (ok, err) = produce(
        &[
            "-b",
            &b,
            "-t",
            &topic,
            "-K",
            ":",
            "-z",
            "lz4",
            "-X",
            "linger.ms=1",
            "-H",
            "src=cli",
        ],
        &input,
    );
    assert!(ok, "{err}");
    assert!(
        err.contains("500 delivered, 0 failed of 500 records"),
        "{err}"
    );
    let got = consume_exactly(&b, &topic, 500, Duration::from_secs(30));
    assert_eq!(got.len(), 500);
    for c in &got {
        let key = c.key.clone().unwrap();
        let value = String::from_utf8(c.value.clone().unwrap()).unwrap();
        let i: usize = value.strip_prefix("value ").unwrap().parse().unwrap();
        assert_eq!(key, format!("k{}", i % 7).into_bytes());
        assert_eq!(c.partition, librdkafka_partition(&key, 4));
        assert_eq!(c.headers, vec![("src".to_string(), Some(b"cli".to_vec()))]);
    }
}

#[test]
fn produce_to_a_fixed_partition() {
    let b = brokers();
    let topic = create_topic("cli-p", 3);
    let (ok, err) = produce(&["-b", &b, "-t", &topic, "-p", "2"], "a\nb\nc\n");
    assert!(ok, "{err}");
    let got = consume_exactly(&b, &topic, 3, Duration::from_secs(30));
    let values: Vec<_> = got
        .iter()
        .map(|c| (c.partition, c.value.clone().unwrap()))
        .collect();
    assert_eq!(
        values,
        vec![(2, b"a".to_vec()), (2, b"b".to_vec()), (2, b"c".to_vec())]
    );
}

#[test]
fn produce_fails_clearly_and_non_zero() {
    let b = brokers();
    let (ok, err) = produce(&["-b", &b, "-t", "wafka-cli-missing-topic"], "x\n");
    assert!(!ok);
    assert!(
        err.contains("topic `wafka-cli-missing-topic` does not exist"),
        "{err}"
    );

    let (ok, err) = produce(&["-b", &b, "-t", "x", "-X", "lingr.ms=5"], "x\n");
    assert!(!ok);
    assert!(
        err.contains("unknown producer property `lingr.ms`"),
        "{err}"
    );

    // One line too large: reported and skipped, the others delivered, exit non-zero.
    let topic = create_topic("cli-big", 1);
    let big = "y".repeat(3000);
    let (ok, err) = produce(
        &["-b", &b, "-t", &topic, "-X", "max.request.size=2000"],
        &format!("a\n{big}\nb\n"),
    );
    assert!(!ok);
    assert!(
        err.contains("line 2 not sent") && err.contains("max.request.size=2000"),
        "{err}"
    );
    assert!(err.contains("2 delivered, 1 failed of 3 records"), "{err}");
    let got = consume_exactly(&b, &topic, 2, Duration::from_secs(30));
    assert_eq!(
        got.iter()
            .map(|c| c.value.clone().unwrap())
            .collect::<Vec<_>>(),
        vec![b"a".to_vec(), b"b".to_vec()]
    );
}

fn run(args: &[&str], input: &str, log: &str) -> (bool, String) {
    support::wafka_at_once("run", args, input, log)
}

#[test]
fn run_feeds_lines_to_a_plugin_and_publishes_its_records() {
    let b = brokers();
    let topic = create_topic("run", 2);
    let hello = wafka_tests::guest("hello");
    let dir = std::env::temp_dir().join(format!("wafka-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("events.txt");
    std::fs::write(
        &input,
        (0..300)
            .map(|i| format!("k{}=v{i}\n", i % 5))
            .collect::<String>(),
    )
    .unwrap();
    let (ok, err) = run(
        &[
            hello.to_str().unwrap(),
            "-b",
            &b,
            "--config",
            &format!("topic={topic}"),
            "--config",
            "key-delimiter==",
            "--input",
            input.to_str().unwrap(),
            "-X",
            "linger.ms=2",
        ],
        "",
        "warn",
    );
    assert!(ok, "{err}");
    assert!(err.contains("300 events (0 failed), 300 records"), "{err}");
    assert!(err.contains("300 delivered, 0 failed"), "{err}");
    let got = consume_exactly(&b, &topic, 300, Duration::from_secs(30));
    assert_eq!(got.len(), 300);
    assert!(got
        .iter()
        .all(|c| c.key.as_ref().is_some_and(|k| k.starts_with(b"k"))));
}

#[test]
fn run_logs_plugin_output_and_reports_a_trap_in_one_line() {
    let b = brokers();
    let topic = create_topic("run-trap", 1);
    let probe = wafka_tests::guest("probe");
    let input = format!(
        "publish {topic} k before\nprint hello from the probe\ntrap\npublish {topic} k after\n"
    );
    let (ok, err) = run(&[probe.to_str().unwrap(), "-b", &b], &input, "info");
    assert!(!ok, "a trap exits non-zero");
    let trap_lines: Vec<&str> = err.lines().filter(|l| l.contains("trapped")).collect();
    assert_eq!(trap_lines.len(), 1, "{err}");
    assert!(
        trap_lines[0].contains("event 3") && trap_lines[0].contains("panicked"),
        "{err}"
    );
    assert!(
        err.lines()
            .any(|l| l.contains("probe") && l.contains("hello from the probe")),
        "plugin stdout in the host's log, tagged: {err}"
    );
    // The record published before the trap is delivered; nothing after it was handled.
    let got = consume_exactly(&b, &topic, 1, Duration::from_secs(30));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].value.as_deref(), Some(&b"before"[..]));
}

#[test]
fn run_refuses_bad_plugins_in_one_line() {
    let b = brokers();
    let dir = std::env::temp_dir().join(format!("wafka-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases: [(&str, &[u8], &str); 3] = [
        ("notes.wasm", b"just text", "is not a WebAssembly file"),
        (
            "core.wasm",
            b"\0asm\x01\0\0\0",
            "is a core WebAssembly module, not a component",
        ),
        (
            "empty.wasm",
            b"\0asm\x0d\0\x01\0",
            "does not fit wafka's plugin world",
        ),
    ];
    for (name, bytes, want) in cases {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        let (ok, err) = run(&[path.to_str().unwrap(), "-b", &b], "", "warn");
        assert!(!ok, "{name}");
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{name}: one line: {err}");
        assert!(lines[0].contains(want), "{name}: {err}");
    }
    let (ok, err) = run(&["/no/such/plugin.wasm", "-b", &b], "", "warn");
    assert!(!ok && err.contains("cannot read plugin"), "{err}");
}

#[test]
fn test_prints_the_records_a_plugin_would_publish_without_a_broker() {
    let hello = wafka_tests::guest("hello");
    let out = support::wafka(
        &[
            "test",
            hello.to_str().unwrap(),
            "--config",
            "topic=t",
            "--config",
            "key-delimiter=:",
            "--partitions",
            "3",
        ],
        &[b"k1:hello\nplain\n"],
        Duration::ZERO,
        "warn",
    );
    assert!(out.ok, "{}", out.stderr);
    let stdout = out.stdout;
    let lines: Vec<&str> = stdout.lines().collect();
    let p = librdkafka_partition(b"k1", 3);
    assert_eq!(
        lines,
        vec![
            format!(r#"{{"topic":"t","partition":{p},"offset":0,"key":"k1","value":"hello","headers":[["source","hello"]]}}"#).as_str(),
            r#"{"topic":"t","partition":0,"offset":0,"key":null,"value":"plain","headers":[["source","hello"]]}"#,
        ]
    );
    assert!(
        out.stderr
            .contains("2 records captured, 0 refused (nothing was sent)"),
        "{}",
        out.stderr
    );
}

#[test]
fn run_refuses_create_topic_on_a_given_cluster() {
    let b = brokers();
    let hello = wafka_tests::guest("hello");
    let (ok, err) = run(
        &[hello.to_str().unwrap(), "-b", &b, "--create-topic", "t"],
        "x\n",
        "warn",
    );
    assert!(!ok);
    assert!(
        err.trim()
            .ends_with("--create-topic only works with the local broker (no -b): create topics on your cluster with its own tools"),
        "{err}"
    );
}

#[test]
fn run_counts_records_refused_by_the_acl_as_failures() {
    let b = brokers();
    let topic = create_topic("run-acl", 1);
    let probe = wafka_tests::guest("probe");
    let input = format!("try-publish {topic} allowed\ntry-publish denied-topic refused\n");
    let (ok, err) = run(
        &[probe.to_str().unwrap(), "-b", &b, "--allow-topic", &topic],
        &input,
        "warn",
    );
    assert!(!ok, "a refused record fails the run: {err}");
    assert!(err.contains("2 events (0 failed), 1 records"), "{err}");
    assert!(err.contains("1 delivered, 0 failed, 1 refused"), "{err}");
    assert!(
        err.contains("publish refused: not authorized: plugin `probe` may not publish to topic `denied-topic`"),
        "{err}"
    );
}

#[test]
fn run_delivers_what_a_failing_init_published() {
    let b = brokers();
    let topic = create_topic("run-init", 1);
    let probe = wafka_tests::guest("probe");
    let (ok, err) = run(
        &[
            probe.to_str().unwrap(),
            "-b",
            &b,
            "--config",
            &format!("publish-init={topic}"),
            "--config",
            "fail-init=no config for you",
        ],
        "never handled\n",
        "warn",
    );
    assert!(!ok, "{err}");
    assert!(
        err.contains("wafka: init: plugin `probe` failed: no config for you"),
        "{err}"
    );
    assert!(err.contains("1 delivered"), "{err}");
    let got = consume_exactly(&b, &topic, 1, Duration::from_secs(30));
    assert_eq!(got[0].value.as_deref(), Some(&b"init"[..]));
}

#[test]
fn run_summarises_failures_past_the_first_ten() {
    let b = brokers();
    let probe = wafka_tests::guest("probe");
    let input: String = (0..25).map(|i| format!("nonsense {i}\n")).collect();
    let (ok, err) = run(&[probe.to_str().unwrap(), "-b", &b], &input, "warn");
    assert!(!ok);
    let shown = err
        .lines()
        .filter(|l| l.contains("unknown command"))
        .count();
    assert_eq!(shown, 10, "{err}");
    assert!(
        err.contains("… and 15 more failed events (only the first 10 are shown)"),
        "{err}"
    );
    assert!(err.contains("25 events (25 failed)"), "{err}");
}

/// Mistakes in the arguments are found before a local broker is started (or installed).
#[test]
fn run_checks_its_arguments_before_starting_a_broker() {
    let hello = wafka_tests::guest("hello");
    let hello = hello.to_str().unwrap();
    let cases: [(&[&str], &str); 5] = [
        (
            &[hello, "--config", "topic"],
            "bad --config `topic`: expected KEY=VALUE",
        ),
        (
            &[hello, "--create-topic", "t:0"],
            "partitions must be a positive number",
        ),
        (
            &[hello, "--create-topic", "bad topic"],
            "invalid topic name",
        ),
        (
            &["/no/such/plugin.wasm"],
            "cannot read plugin `/no/such/plugin.wasm`",
        ),
        (
            &[hello, "--input", "/no/such/events"],
            "cannot open /no/such/events",
        ),
    ];
    for (args, want) in cases {
        let started = std::time::Instant::now();
        let (ok, err) = run(args, "", "warn");
        assert!(!ok, "{args:?}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("local broker"), "{args:?}: {err}");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{args:?} took {:?}",
            started.elapsed()
        );
    }
}

/// `wafka test` answers `publish` as the real host does: offset -1 until acknowledged, i.e.
/// unless autoflush is on.
#[test]
fn test_answers_receipts_as_the_real_host() {
    let probe = wafka_tests::guest("probe");
    let probe = probe.to_str().unwrap();
    let off = support::wafka(
        &["test", probe],
        &[b"receipt t k v\n"],
        Duration::ZERO,
        "warn",
    );
    assert!(!off.ok);
    assert!(
        off.stderr
            .contains("receipt not acknowledged: id=0 partition=0 offset=-1"),
        "{}",
        off.stderr
    );
    let on = support::wafka(
        &["test", probe, "--autoflush", "on"],
        &[b"receipt t k v\n"],
        Duration::ZERO,
        "warn",
    );
    assert!(on.ok, "{}", on.stderr);
}

/// `wafka test` refuses what the producer would: a record over `max.request.size`, an
/// invalid topic, a topic outside the ACL.
#[test]
fn test_checks_records_as_the_real_host() {
    let probe = wafka_tests::guest("probe");
    let probe = probe.to_str().unwrap();
    let out = support::wafka(
        &[
            "test",
            probe,
            "--allow-topic",
            "t*",
            "-X",
            "max.request.size=2000",
        ],
        &[b"publish-size t 1000\npublish-size t 3000\npublish bad/topic k v\npublish u k v\n"],
        Duration::ZERO,
        "warn",
    );
    assert!(!out.ok);
    let err = &out.stderr;
    assert!(
        err.contains("event 2: plugin `probe` failed: record too large"),
        "{err}"
    );
    assert!(
        err.contains("event 3: plugin `probe` failed: invalid topic"),
        "{err}"
    );
    assert!(
        err.contains("event 4: plugin `probe` failed: not authorized"),
        "{err}"
    );
    assert!(err.contains("1 records captured, 3 refused"), "{err}");
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
}

/// What a plugin writes to stdout and stderr reaches the log up to a budget per call; the rest
/// is dropped with one warning.
#[test]
fn run_bounds_what_a_plugin_writes_per_call() {
    let b = brokers();
    let probe = wafka_tests::guest("probe");
    // 8 MiB of stdout, logged at info level.
    let (ok, err) = run(
        &[probe.to_str().unwrap(), "-b", &b],
        "stdout 8192\n",
        "info",
    );
    assert!(ok, "{}", &err[err.len().saturating_sub(2000)..]);
    assert!(
        err.len() < 3 << 20,
        "{} bytes of log for 8 MiB of plugin output",
        err.len()
    );
    assert!(
        err.contains("the rest of this call's output is dropped"),
        "{}",
        &err[err.len().saturating_sub(2000)..]
    );
}

/// A compile cache that others may write is not used, in one line, and the run goes on.
#[test]
fn run_refuses_a_cache_others_may_write() {
    use std::os::unix::fs::PermissionsExt;
    let b = brokers();
    let topic = create_topic("run-cache", 1);
    let hello = wafka_tests::guest("hello");
    let dir = std::env::temp_dir().join(format!("wafka-shared-cache-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("components")).unwrap();
    std::fs::set_permissions(
        dir.join("components"),
        std::fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wafka"))
        .args(["run", hello.to_str().unwrap(), "-b", &b])
        .args(["--config", &format!("topic={topic}")])
        .env("WAFKA_CACHE", &dir)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let line = err
        .lines()
        .find(|l| l.contains("not using the compile cache"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        line.contains("may be written by group or others (mode 777)"),
        "{line}"
    );
    assert!(err.contains(", compiled"), "{err}");
    assert_eq!(
        std::fs::read_dir(dir.join("components")).unwrap().count(),
        0
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// `produce` and `run` reach a SASL_SSL cluster with kcat's `-X` names; at debug log level
/// the password still appears nowhere in what they print.
#[test]
fn produce_and_run_over_sasl_ssl_with_x_properties() {
    use wafka_tests::secure::{secure_broker, Secured, PASSWORD, SCRAM256_USER};
    let broker = secure_broker(Secured::SaslSsl);
    let topic = format!("cli-sasl-{}", std::process::id());
    wafka_tests::create_topic_named(&broker.addr, &topic, 2);
    let ca = format!("ssl.ca.location={}", broker.ca_file.display());
    let user = format!("sasl.username={SCRAM256_USER}");
    let password = format!("sasl.password={PASSWORD}");
    let security: Vec<&str> = vec![
        "-X",
        "security.protocol=SASL_SSL",
        "-X",
        "sasl.mechanism=SCRAM-SHA-256",
        "-X",
        &user,
        "-X",
        &password,
        "-X",
        &ca,
    ];
    let mut args = vec!["-b", broker.addr.as_str(), "-t", topic.as_str(), "-K", ":"];
    args.extend_from_slice(&security);
    let input: String = (0..20).map(|i| format!("k{i}:v{i}\n")).collect();
    let (ok, err) = support::wafka_at_once("produce", &args, &input, "debug");
    assert!(ok, "{err}");
    assert!(
        err.contains("20 delivered, 0 failed of 20 records"),
        "{err}"
    );
    assert!(!err.contains(PASSWORD), "the password is in the output");

    let hello = wafka_tests::guest("hello");
    let config = format!("topic={topic}");
    let mut args = vec![
        hello.to_str().unwrap(),
        "-b",
        broker.addr.as_str(),
        "--config",
        config.as_str(),
        "--config",
        "key-delimiter==",
    ];
    args.extend_from_slice(&security);
    let input: String = (0..10).map(|i| format!("r{i}=w{i}\n")).collect();
    let (ok, err) = run(&args, &input, "debug");
    assert!(ok, "{err}");
    assert!(err.contains("10 delivered, 0 failed"), "{err}");
    assert!(!err.contains(PASSWORD), "the password is in the output");
    let got = consume_exactly(&broker.addr, &topic, 30, Duration::from_secs(30));
    assert_eq!(got.len(), 30);
}

/// A wrong password: `produce` fails fast, non-zero, with the broker's refusal in one line
/// that names the user and never the password.
#[test]
fn produce_with_a_wrong_password_says_so_in_one_line() {
    use wafka_tests::secure::{secure_broker, Secured, SCRAM512_USER};
    let broker = secure_broker(Secured::SaslSsl);
    let ca = format!("ssl.ca.location={}", broker.ca_file.display());
    let user = format!("sasl.username={SCRAM512_USER}");
    let started = std::time::Instant::now();
    let (ok, err) = produce(
        &[
            "-b",
            &broker.addr,
            "-t",
            "any-topic",
            "-X",
            "security.protocol=SASL_SSL",
            "-X",
            "sasl.mechanism=SCRAM-SHA-512",
            "-X",
            &user,
            "-X",
            "sasl.password=wr0ng-pa55",
            "-X",
            &ca,
        ],
        "x\n",
    );
    let took = started.elapsed();
    assert!(!ok);
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert!(err.contains("SASL_AUTHENTICATION_FAILED"), "{err}");
    assert!(err.contains(SCRAM512_USER), "{err}");
    assert!(!err.contains("wr0ng-pa55"), "{err}");
    let line = err
        .lines()
        .find(|l| l.contains("SASL_AUTHENTICATION_FAILED"))
        .unwrap();
    assert!(line.len() < 400, "{line}");
}

/// `wafka test` injects failures where a real cluster gives them, so a plugin's error paths
/// can be exercised without a broker: a failed topic at `publish`; every Nth record failed by
/// the broker in its delivery report and the next flush (at `publish` under autoflush); a
/// failing flush; reports that all carry an error. Injected failures alone do not fail the run.
#[test]
fn test_injects_failures_where_a_cluster_would() {
    let probe = wafka_tests::guest("probe");
    let probe = probe.to_str().unwrap();
    let run = |args: &[&str], input: &str| {
        let mut all = vec!["test", probe];
        all.extend_from_slice(args);
        support::wafka(&all, &[input.as_bytes()], Duration::ZERO, "warn")
    };
    // A topic failed at publish; other topics captured.
    let out = run(
        &["--fail-topic", "orders=not-authorized"],
        "publish orders k v\npublish audit k v\n",
    );
    assert!(!out.ok, "the handler failed on the refused record");
    assert!(
        out.stderr
            .contains("event 1: plugin `probe` failed: not authorized"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
    assert!(out.stdout.contains(r#""topic":"audit""#), "{}", out.stdout);
    assert!(
        out.stderr
            .contains("injected: 1 refused at publish, 0 failed in delivery reports"),
        "{}",
        out.stderr
    );

    // Every 2nd record refused by the broker: queued (publish succeeds), not captured; the
    // report says so and flush reports it.
    let out = run(
        &["--fail-every", "2=broker:19"],
        "try-publish t a\ntry-publish t b\ntry-publish t c\nreports 3\nflush\n",
    );
    let err = &out.stderr;
    assert!(
        err.contains("event 4: plugin `probe` failed: expected 3 delivered reports, took 3"),
        "{err}"
    );
    assert!(err.contains("NOT_ENOUGH_REPLICAS"), "{err}");
    assert!(
        err.contains("event 5: plugin `probe` failed: broker"),
        "{err}"
    );
    let values: Vec<&str> = out
        .stdout
        .lines()
        .map(|l| {
            l.split(r#""value":""#)
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
        })
        .collect();
    assert_eq!(values, vec!["a", "c"], "{}", out.stdout);
    assert!(
        err.contains("0 refused at publish, 1 failed in delivery reports"),
        "{err}"
    );
    // Under autoflush the same failure comes back to publish.
    let out = run(
        &["--fail-every", "2=timed-out", "--autoflush", "on"],
        "publish t k a\npublish t k b\n",
    );
    assert!(
        out.stderr
            .contains("event 2: plugin `probe` failed: timed out"),
        "{}",
        out.stderr
    );

    // A failing flush; and every report failed, nothing captured.
    let out = run(&["--fail-flush", "closed"], "publish t k a\nflush\n");
    assert!(
        out.stderr
            .contains("event 2: plugin `probe` failed: producer closed"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stdout.lines().count(), 1);
    let out = run(
        &["--fail-reports", "not-authorized"],
        "publish t k a\nreports 1\n",
    );
    assert!(
        out.stderr.contains("took 1") && out.stderr.contains("not authorized"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stdout.lines().count(), 0, "{}", out.stdout);

    // Injected failures alone keep the exit status 0.
    let out = run(&["--fail-topic", "t=quota-exceeded"], "try-publish t a\n");
    assert!(out.ok, "{}", out.stderr);
    // A kind no delivery ends with is refused for reports, naming what is allowed.
    let out = run(&["--fail-reports", "buffer-full"], "");
    assert!(!out.ok);
    assert!(
        out.stderr.contains("never ends a delivery") && out.stderr.contains("timed-out"),
        "{}",
        out.stderr
    );
    // Under autoflush a failure after queueing comes back to publish and still has its
    // report, and the next flush says it again (as the producer keeps it).
    let out = run(
        &["--fail-reports", "timed-out", "--autoflush", "on"],
        "try-publish t a\nreports 1\nflush\n",
    );
    assert!(
        out.stderr
            .contains("event 2: plugin `probe` failed: expected 1 delivered reports, took 1")
            && out
                .stderr
                .contains("event 3: plugin `probe` failed: timed out"),
        "{}",
        out.stderr
    );
    // A bad KIND is one line naming the allowed ones.
    let out = run(&["--fail-flush", "sometimes"], "");
    assert!(!out.ok);
    assert!(
        out.stderr.contains("`sometimes` is not an error to inject")
            && out.stderr.contains("broker[:CODE]"),
        "{}",
        out.stderr
    );
}

/// The lifecycle hook: after the last event, `run` and `test` call the plugin's `finish`
/// (here the probe publishes one more record there); a failing `finish` is reported in one
/// line and fails the run, and what it published is still delivered.
#[test]
fn run_and_test_call_finish_after_the_last_event() {
    let b = brokers();
    let topic = create_topic("finish", 1);
    let probe = wafka_tests::guest("probe");
    let finish = format!("publish-finish={topic}");
    let (ok, err) = run(
        &[probe.to_str().unwrap(), "-b", &b, "--config", &finish],
        &format!("publish {topic} k first\n"),
        "warn",
    );
    assert!(ok, "{err}");
    let got = consume_exactly(&b, &topic, 2, Duration::from_secs(30));
    let values: Vec<_> = got.iter().map(|c| c.value.clone().unwrap()).collect();
    assert_eq!(values, [b"first".to_vec(), b"finish".to_vec()]);

    let (ok, err) = run(
        &[
            probe.to_str().unwrap(),
            "-b",
            &b,
            "--config",
            &finish,
            "--config",
            "fail-finish=could not drain",
        ],
        "noop\n",
        "warn",
    );
    assert!(!ok);
    assert!(
        err.contains("wafka: finish: plugin `probe` failed: could not drain"),
        "{err}"
    );
    assert_eq!(
        consume_exactly(&b, &topic, 3, Duration::from_secs(30)).len(),
        3,
        "the record published in the failed finish is delivered"
    );

    let out = support::wafka(
        &[
            "test",
            probe.to_str().unwrap(),
            "--config",
            "publish-finish=t",
        ],
        &[b"publish t k a\n"],
        Duration::ZERO,
        "warn",
    );
    assert!(out.ok, "{}", out.stderr);
    let last = out.stdout.lines().last().unwrap_or_default().to_string();
    assert!(last.contains(r#""value":"finish""#), "{}", out.stdout);
}

/// A plugin written for wasi:messaging@0.2.0-draft (`messenger`) under `wafka run` (autoflush
/// on: `send` waits for the acknowledgement) and `wafka test`: its messages land as records
/// with their metadata and content-type as headers, in order; a topic the ACL refuses reaches
/// it as the draft's `permission-denied` and fails that event in one line.
#[test]
fn run_and_test_serve_a_wasi_messaging_plugin() {
    let b = brokers();
    let topic = create_topic("run-msg", 1);
    let messenger = wafka_tests::guest("messenger");
    let mut input: String = (0..20).map(|i| format!("{topic} event {i}\n")).collect();
    input.push_str("denied-topic nope\n");
    let (ok, err) = run(
        &[
            messenger.to_str().unwrap(),
            "-b",
            &b,
            "--allow-topic",
            &topic,
            "--autoflush",
            "on",
        ],
        &input,
        "warn",
    );
    assert!(!ok, "a failed event fails the run: {err}");
    assert!(
        err.contains("event 21: plugin `messenger` failed: permission-denied: plugin `messenger` may not publish to topic `denied-topic`"),
        "{err}"
    );
    assert!(err.contains("21 events (1 failed), 20 records"), "{err}");
    assert!(err.contains("20 delivered, 0 failed, 1 refused"), "{err}");
    let got = consume_exactly(&b, &topic, 20, Duration::from_secs(30));
    assert_eq!(got.len(), 20);
    for (i, c) in got.iter().enumerate() {
        assert_eq!(c.offset, i as i64);
        assert_eq!(c.key, None);
        assert_eq!(c.value.as_deref(), Some(format!("event {i}").as_bytes()));
        assert_eq!(
            c.headers,
            vec![
                ("source".to_string(), Some(b"messenger".to_vec())),
                ("seq".to_string(), Some(i.to_string().into_bytes())),
                (
                    "bytes".to_string(),
                    Some(format!("event {i}").len().to_string().into_bytes())
                ),
                (
                    "content-type".to_string(),
                    Some(b"text/plain; charset=utf-8".to_vec())
                ),
            ]
        );
    }
    let out = support::wafka(
        &["test", messenger.to_str().unwrap()],
        &[b"t a\nt *2\n"],
        Duration::ZERO,
        "warn",
    );
    assert!(out.ok, "{}", out.stderr);
    assert!(
        out.stderr.contains("; a wasi:messaging@0.2.0-draft plugin"),
        "{}",
        out.stderr
    );
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        vec![
            r#"{"topic":"t","partition":0,"offset":0,"key":null,"value":"a","headers":[["source","messenger"],["seq","0"],["bytes","1"],["content-type","text/plain; charset=utf-8"]]}"#,
            r#"{"topic":"t","partition":0,"offset":1,"key":null,"value":"xx","headers":[["source","messenger"],["seq","1"],["bytes","2"],["content-type","application/octet-stream"]]}"#,
        ]
    );
    // It has no `init`: `--config` is refused in one line rather than silently dropped.
    let out = support::wafka(
        &["test", messenger.to_str().unwrap(), "--config", "topic=t"],
        &[b"t a\n"],
        Duration::ZERO,
        "warn",
    );
    assert!(!out.ok);
    assert!(
        out.stderr
            .contains("a wasi:messaging plugin takes no configuration"),
        "{}",
        out.stderr
    );
}
