//! TLS and SASL against real brokers: nisshi behind TLS (`SSL`), SASL SCRAM (`SASL_PLAINTEXT`)
//! and both (`SASL_SSL`), started by [`wafka_tests::secure`] with a CA made at test time.
//! Records go through wafka and are read back by librdkafka over the same protocol; each
//! misconfiguration must fail a send with words a user can act on, fast (not after
//! `max.block.ms`), and never show a secret.

use std::time::{Duration, Instant};

use wafka_producer::{Header, ProduceError, Producer, Record};
use wafka_tests::secure::{
    jaas, secure_broker, test_pki, SecureBroker, Secured, PASSWORD, SCRAM256_USER, SCRAM512_USER,
};
use wafka_tests::{brokers, consume_exactly, create_topic_named};

/// What a refused send may take: the broker is on loopback and answers in milliseconds; the
/// bound is ~10x what it takes on a loaded CI machine, and far below `max.block.ms` (60 s).
const REFUSAL_BOUND: Duration = Duration::from_secs(5);

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

fn producer(addr: &str, props: &[(String, String)]) -> Producer {
    init_logs();
    let mut all = vec![
        ("bootstrap.servers".to_owned(), addr.to_owned()),
        ("linger.ms".to_owned(), "5".to_owned()),
    ];
    all.extend_from_slice(props);
    Producer::from_properties(all).expect("config")
}

fn owned(props: &[(&str, &str)]) -> Vec<(String, String)> {
    props
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn topic_on(broker: &SecureBroker, prefix: &str, partitions: i32) -> String {
    let name = format!("{prefix}-{}", rand::random::<u32>());
    create_topic_named(&broker.addr, &name, partitions);
    name
}

/// Sends `n` keyed records with a header through `p`, waits for every acknowledgement and
/// reads them back with librdkafka over the broker's own protocol.
async fn round_trip(p: &Producer, addr: &str, topic: &str, n: usize, tag: &str) {
    let mut deliveries = Vec::new();
    for i in 0..n {
        let key = format!("k{i}");
        let value = format!("{tag}-{i}");
        let headers = [Header::new("via", tag.as_bytes())];
        let record = Record::new(topic, value.as_bytes())
            .key(key.as_bytes())
            .headers(&headers);
        deliveries.push(p.send(&record).await.expect("queued"));
    }
    for d in deliveries {
        let meta = d.await.expect("acknowledged");
        assert!(meta.offset >= 0);
    }
    let (addr, topic) = (addr.to_owned(), topic.to_owned());
    let records = tokio::task::spawn_blocking(move || {
        consume_exactly(&addr, &topic, n, Duration::from_secs(30))
    })
    .await
    .unwrap();
    assert_eq!(records.len(), n);
    let mut values: Vec<String> = records
        .iter()
        .map(|r| String::from_utf8(r.value.clone().unwrap()).unwrap())
        .collect();
    values.sort_by_key(|v| v.rsplit('-').next().unwrap().parse::<usize>().unwrap());
    let expected: Vec<String> = (0..n).map(|i| format!("{tag}-{i}")).collect();
    assert_eq!(values, expected);
    for r in &records {
        let value = String::from_utf8(r.value.clone().unwrap()).unwrap();
        let i = value.rsplit('-').next().unwrap();
        assert_eq!(r.key.as_deref(), Some(format!("k{i}").as_bytes()));
        assert_eq!(
            r.headers,
            vec![("via".to_owned(), Some(tag.as_bytes().to_vec()))]
        );
    }
}

/// Sends one record and expects it refused fast; returns the error's text.
async fn refused(p: &Producer, topic: &str) -> (ProduceError, String) {
    let started = Instant::now();
    let err = match p.send(&Record::new(topic, b"x")).await {
        Err(e) => e,
        Ok(d) => d
            .await
            .expect_err("a refused connection delivered a record"),
    };
    let took = started.elapsed();
    let text = err.to_string();
    assert!(
        took < REFUSAL_BOUND,
        "refused only after {took:?} (bound {REFUSAL_BOUND:?}): {text}"
    );
    assert!(
        !text.contains(PASSWORD),
        "the error shows the password: {text}"
    );
    assert!(!text.contains('\n'), "not one line: {text}");
    (err, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_round_trip_with_a_pem_trust_store() {
    let broker = secure_broker(Secured::Ssl);
    let topic = topic_on(&broker, "ssl", 3);
    let p = producer(&broker.addr, &broker.producer_properties());
    round_trip(&p, &broker.addr, &topic, 50, "ssl").await;
    // The same CA given inline (ssl.truststore.certificates), by host name.
    let ca = std::fs::read_to_string(&broker.ca_file).unwrap();
    let port = broker.addr.rsplit(':').next().unwrap();
    let by_name = format!("localhost:{port}");
    let p = producer(
        &by_name,
        &owned(&[
            ("security.protocol", "SSL"),
            ("ssl.truststore.type", "PEM"),
            ("ssl.truststore.certificates", &ca),
        ]),
    );
    let topic = topic_on(&broker, "ssl-inline", 1);
    round_trip(&p, &broker.addr, &topic, 10, "inline").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_plaintext_round_trip_with_scram_256_and_512() {
    let broker = secure_broker(Secured::SaslPlaintext);
    for (mechanism, user) in [
        ("SCRAM-SHA-256", SCRAM256_USER),
        ("SCRAM-SHA-512", SCRAM512_USER),
    ] {
        let topic = topic_on(&broker, "sasl-plain", 3);
        let p = producer(
            &broker.addr,
            &owned(&[
                ("security.protocol", "SASL_PLAINTEXT"),
                ("sasl.mechanism", mechanism),
                ("sasl.jaas.config", &jaas(user, PASSWORD)),
            ]),
        );
        round_trip(&p, &broker.addr, &topic, 30, mechanism).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_ssl_round_trip_with_scram_256_and_512_and_librdkafka_names() {
    let broker = secure_broker(Secured::SaslSsl);
    // Java's names: sasl.jaas.config and ssl.truststore.location.
    let topic = topic_on(&broker, "sasl-ssl-256", 3);
    let p = producer(
        &broker.addr,
        &owned(&[
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "SCRAM-SHA-256"),
            ("sasl.jaas.config", &jaas(SCRAM256_USER, PASSWORD)),
            (
                "ssl.truststore.location",
                &broker.ca_file.display().to_string(),
            ),
        ]),
    );
    round_trip(&p, &broker.addr, &topic, 40, "sha256").await;
    // librdkafka's names, as kcat users type them.
    let topic = topic_on(&broker, "sasl-ssl-512", 3);
    let p = producer(
        &broker.addr,
        &owned(&[
            ("security.protocol", "sasl_ssl"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", SCRAM512_USER),
            ("sasl.password", PASSWORD),
            ("ssl.ca.location", &broker.ca_file.display().to_string()),
        ]),
    );
    round_trip(&p, &broker.addr, &topic, 40, "sha512").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_refused_fast_with_the_brokers_words() {
    let broker = secure_broker(Secured::SaslSsl);
    let topic = topic_on(&broker, "wrong-pw", 1);
    let wrong = "not-the-password";
    let mut props = broker.producer_properties();
    props.retain(|(k, _)| k != "sasl.jaas.config");
    props.push(("sasl.jaas.config".into(), jaas(SCRAM512_USER, wrong)));
    let p = producer(&broker.addr, &props);
    let (err, text) = refused(&p, &topic).await;
    assert!(
        matches!(err, ProduceError::Refused { code: Some(58), .. }),
        "{err:?}"
    );
    assert!(text.contains("SASL_AUTHENTICATION_FAILED"), "{text}");
    assert!(
        text.contains("SCRAM-SHA-512") && text.contains(SCRAM512_USER),
        "{text}"
    );
    assert!(text.contains("invalid-proof"), "the broker's words: {text}");
    assert!(!text.contains(wrong), "{text}");
    // An unknown user too.
    let mut props = broker.producer_properties();
    props.retain(|(k, _)| k != "sasl.jaas.config");
    props.push(("sasl.jaas.config".into(), jaas("mallory", PASSWORD)));
    let p = producer(&broker.addr, &props);
    let (_, text) = refused(&p, &topic).await;
    assert!(
        text.contains("SASL_AUTHENTICATION_FAILED") && text.contains("mallory"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mechanism_the_broker_does_not_enable_names_the_ones_it_does() {
    let broker = secure_broker(Secured::SaslPlaintext);
    let p = producer(
        &broker.addr,
        &owned(&[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "PLAIN"),
            ("sasl.username", SCRAM512_USER),
            ("sasl.password", PASSWORD),
        ]),
    );
    let (err, text) = refused(&p, "any-topic").await;
    assert!(
        matches!(err, ProduceError::Refused { code: Some(33), .. }),
        "{err:?}"
    );
    assert!(text.contains("does not enable PLAIN"), "{text}");
    assert!(
        text.contains("SCRAM-SHA-256") && text.contains("SCRAM-SHA-512"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_is_refused_fast() {
    let broker = secure_broker(Secured::Ssl);
    let other_ca = test_pki(&["localhost"]).ca_pem;
    let p = producer(
        &broker.addr,
        &owned(&[
            ("security.protocol", "SSL"),
            ("ssl.truststore.certificates", &other_ca),
        ]),
    );
    let (err, text) = refused(&p, "any-topic").await;
    assert!(
        matches!(err, ProduceError::Refused { code: None, .. }),
        "{err:?}"
    );
    assert!(
        text.contains("not signed by a CA in the trust store"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_name_is_refused_unless_the_check_is_off() {
    let broker = secure_broker(Secured::SslWrongName);
    let mut props = broker.producer_properties();
    let p = producer(&broker.addr, &props);
    let (err, text) = refused(&p, "any-topic").await;
    assert!(
        matches!(err, ProduceError::Refused { code: None, .. }),
        "{err:?}"
    );
    assert!(text.contains("does not name `127.0.0.1`"), "{text}");
    assert!(
        text.contains("ssl.endpoint.identification.algorithm"),
        "{text}"
    );
    // Java's way to turn the check off: an empty algorithm. The chain is still checked.
    props.push((
        "ssl.endpoint.identification.algorithm".into(),
        String::new(),
    ));
    let topic = topic_on(&broker, "no-name-check", 1);
    let p = producer(&broker.addr, &props);
    round_trip(&p, &broker.addr, &topic, 5, "unchecked").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_against_a_plain_listener_says_so() {
    // The plain listener hangs up on the ClientHello, as a broker restarting would: not a
    // refusal (sends wait, as Java's), but what the send says after max.block.ms names the
    // likely cause.
    let plain = brokers();
    let p = producer(
        &plain,
        &owned(&[
            ("security.protocol", "SSL"),
            ("max.block.ms", "1500"),
            ("socket.connection.setup.timeout.ms", "1000"),
        ]),
    );
    let started = Instant::now();
    let err = p.send(&Record::new("any-topic", b"x")).await.unwrap_err();
    let took = started.elapsed();
    let text = err.to_string();
    assert!(took < Duration::from_secs(15), "{took:?}: {text}");
    assert!(
        matches!(err, ProduceError::MetadataTimeout { .. }),
        "{err:?}"
    );
    assert!(text.contains("is its listener PLAINTEXT?"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_client_against_a_tls_listener_says_so() {
    let broker = secure_broker(Secured::Ssl);
    let p = producer(&broker.addr, &[]);
    let (err, text) = refused(&p, "any-topic").await;
    assert!(
        matches!(err, ProduceError::Refused { code: None, .. }),
        "{err:?}"
    );
    assert!(text.contains("expects TLS"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_against_a_listener_without_it_and_the_reverse_say_so() {
    // SASL asked of the plain test broker.
    let p = producer(
        &brokers(),
        &owned(&[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.jaas.config", &jaas(SCRAM512_USER, PASSWORD)),
        ]),
    );
    let (err, text) = refused(&p, "any-topic").await;
    assert!(
        matches!(err, ProduceError::Refused { code: Some(34), .. }),
        "{err:?}"
    );
    assert!(
        text.contains("does not take SASL") && text.contains("ILLEGAL_SASL_STATE"),
        "{text}"
    );
    // No SASL against a broker that requires it: the broker answers ApiVersions, then hangs
    // up. A broker going away looks the same, so this is a hint, not a refusal: the send
    // waits max.block.ms as for any lost connection, and says why.
    let broker = secure_broker(Secured::SaslPlaintext);
    let p = producer(&broker.addr, &owned(&[("max.block.ms", "1500")]));
    let started = Instant::now();
    let err = p.send(&Record::new("any-topic", b"x")).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    let text = err.to_string();
    assert!(
        matches!(err, ProduceError::MetadataTimeout { .. }),
        "{err:?}"
    );
    assert!(
        text.contains("security.protocol=SASL_PLAINTEXT or SASL_SSL"),
        "{text}"
    );
}

/// A SASL_PLAINTEXT broker behind a proxy that gives sessions `lifetime_ms`, a fresh topic
/// of `partitions` on it, and a SCRAM-SHA-256 producer (with `extra` properties) through the
/// proxy.
fn short_sessions(
    prefix: &str,
    partitions: i32,
    lifetime_ms: u64,
    extra: &[(&str, &str)],
) -> (SecureBroker, String, wafka_tests::Proxy, Producer) {
    let broker = secure_broker(Secured::SaslPlaintext);
    let topic = topic_on(&broker, prefix, partitions);
    let proxy = wafka_tests::Proxy::start(&broker.addr, 1);
    proxy.set_session_lifetime(Duration::from_millis(lifetime_ms));
    let jaas = jaas(SCRAM256_USER, PASSWORD);
    let mut props = vec![
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanism", "SCRAM-SHA-256"),
        ("sasl.jaas.config", jaas.as_str()),
    ];
    props.extend_from_slice(extra);
    let p = producer(&proxy.bootstrap(), &owned(&props));
    (broker, topic, proxy, p)
}

/// KIP-368: when the broker gives SASL sessions a lifetime, connections are authenticated
/// again before it ends: through a proxy that gives every session 1.5 s and closes a
/// connection used after its session ended (as a broker does), records sent for 6 s are all
/// delivered, no request ever comes after its session, and the client authenticated again
/// and again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_sessions_are_renewed_before_the_broker_ends_them() {
    // Metadata is asked for every 300 ms, so the control link is renewed too.
    let (broker, topic, proxy, p) =
        short_sessions("kip368", 2, 1500, &[("metadata.max.age.ms", "300")]);
    let started = Instant::now();
    let mut deliveries = Vec::new();
    let mut n = 0;
    while started.elapsed() < Duration::from_secs(6) {
        let value = format!("r{n}");
        deliveries.push(
            p.send(&Record::new(&topic, value.as_bytes()).partition(n % 2))
                .await
                .expect("queued"),
        );
        n += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for d in deliveries {
        d.await.expect("delivered");
    }
    assert_eq!(
        proxy.expired_requests(),
        0,
        "a request came after its session ended"
    );
    // Two connections (the sink's, the control link's) over 6 s of 1.5 s sessions, each
    // renewed about every 1.3 s: at least two renewals each.
    assert!(
        proxy.authentications() >= 6,
        "{} authentications",
        proxy.authentications()
    );
    let (addr, t) = (broker.addr.clone(), topic.clone());
    let got = tokio::task::spawn_blocking(move || {
        consume_exactly(&addr, &t, n as usize, Duration::from_secs(30))
    })
    .await
    .unwrap();
    assert_eq!(got.len(), n as usize, "each record exactly once");
}

/// KIP-368 with a request in flight when the session ends: the sink stops sending and waits
/// for the answer before it reconnects, without spinning on the passed renewal time
/// (measured: this process's CPU time while the answer is held).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_waiting_for_answers_does_not_spin() {
    let (_broker, topic, proxy, p) = short_sessions("kip368-wait", 1, 1000, &[]);
    p.send(&Record::new(&topic, b"first"))
        .await
        .unwrap()
        .await
        .expect("delivered");
    // A request in flight whose answer is held past the renewal time (850 ms into the
    // session).
    proxy.set_fault(1, wafka_tests::Fault::HoldAnswers);
    let held = p.send(&Record::new(&topic, b"held")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let cpu = wafka_tests::bench::process_cpu();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let spent = wafka_tests::bench::process_cpu() - cpu;
    proxy.set_fault(1, wafka_tests::Fault::None);
    held.await.expect("delivered after the answer came");
    assert!(
        spent < Duration::from_millis(300),
        "{spent:?} of CPU in 1 s while waiting for one answer"
    );
}
