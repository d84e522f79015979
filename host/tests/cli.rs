//! `wafka produce` end to end: the binary against nisshi, read back with librdkafka.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use wafka_tests::{brokers, consume_exactly, create_topic, librdkafka_partition};

fn produce(args: &[&str], input: &str) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wafka"))
        .arg("produce")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run wafka");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
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
