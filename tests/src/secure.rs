//! Secured brokers for the TLS and SASL tests: nisshi behind TLS, SASL SCRAM or both.
//!
//! Owns the test PKI (a CA and server certificates made with rcgen at test time, never
//! checked in), the SCRAM users, and the librdkafka properties that reach each secured
//! broker: [`client_properties`] gives them for an address, so [`crate::consume`] and
//! [`crate::create_topic_named`] read back over the same protocol the producer used.
//!
//! A broker is started once per test process and kind (see [`Secured`]) through
//! `scripts/broker`: first plain on sqlite storage to create the users (nisshi's own client
//! speaks plaintext only), then restarted on the same storage with `--cert/--key` and/or
//! `--authentication`; ready once librdkafka reads its metadata over the secured protocol.
//! The watchdog of `--owner-pid` stops it and deletes its folder when the process exits.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::broker_script;

/// SCRAM-SHA-256 user of every SASL broker.
pub const SCRAM256_USER: &str = "alice256";
/// SCRAM-SHA-512 user of every SASL broker.
pub const SCRAM512_USER: &str = "bob512";
/// The password of both users.
pub const PASSWORD: &str = "wafka-s3cret-pw";

/// What a secured test broker asks of its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Secured {
    /// TLS with a certificate for `localhost` and `127.0.0.1` (`security.protocol=SSL`).
    Ssl,
    /// SASL SCRAM without TLS (`SASL_PLAINTEXT`).
    SaslPlaintext,
    /// SASL SCRAM over TLS (`SASL_SSL`).
    SaslSsl,
    /// TLS with a certificate that names only `kafka.invalid`, signed by the same CA: a
    /// client checking hostnames must refuse it.
    SslWrongName,
}

impl Secured {
    /// The `security.protocol` that reaches it.
    pub fn protocol(self) -> &'static str {
        match self {
            Secured::Ssl | Secured::SslWrongName => "SSL",
            Secured::SaslPlaintext => "SASL_PLAINTEXT",
            Secured::SaslSsl => "SASL_SSL",
        }
    }

    fn tls(self) -> bool {
        self != Secured::SaslPlaintext
    }

    fn sasl(self) -> bool {
        matches!(self, Secured::SaslPlaintext | Secured::SaslSsl)
    }
}

/// A running secured broker.
#[derive(Debug, Clone)]
pub struct SecureBroker {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// What it asks of clients.
    pub kind: Secured,
    /// The CA that signed its certificate (PEM file), for `ssl.truststore.location`.
    pub ca_file: PathBuf,
}

impl SecureBroker {
    /// The Java-named producer properties that reach it (trust store, SASL as SCRAM-SHA-512
    /// user [`SCRAM512_USER`]), without `bootstrap.servers`.
    pub fn producer_properties(&self) -> Vec<(String, String)> {
        let mut props = vec![(
            "security.protocol".to_owned(),
            self.kind.protocol().to_owned(),
        )];
        if self.kind.tls() {
            props.push(("ssl.truststore.type".into(), "PEM".into()));
            props.push((
                "ssl.truststore.location".into(),
                self.ca_file.display().to_string(),
            ));
        }
        if self.kind.sasl() {
            props.push(("sasl.mechanism".into(), "SCRAM-SHA-512".into()));
            props.push(("sasl.jaas.config".into(), jaas(SCRAM512_USER, PASSWORD)));
        }
        props
    }
}

/// A `sasl.jaas.config` value for SCRAM.
pub fn jaas(user: &str, password: &str) -> String {
    format!(
        "org.apache.kafka.common.security.scram.ScramLoginModule required \
         username=\"{user}\" password=\"{password}\";"
    )
}

/// The librdkafka properties (beyond `bootstrap.servers`) that reach `brokers`: empty for
/// the plain test broker, the protocol, CA and SCRAM user for a secured one.
pub fn client_properties(brokers: &str) -> Vec<(String, String)> {
    registry()
        .lock()
        .unwrap()
        .get(brokers)
        .cloned()
        .unwrap_or_default()
}

/// A librdkafka config for `brokers`, with the properties that reach it.
pub fn client_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    for (k, v) in client_properties(brokers) {
        config.set(k, v);
    }
    config
}

/// librdkafka properties by broker address.
type Registry = Mutex<HashMap<String, Vec<(String, String)>>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// The secured broker of kind `kind`, started on first use (once per test process).
///
/// # Panics
///
/// If it cannot be started or does not answer librdkafka over its protocol within 30 s.
pub fn secure_broker(kind: Secured) -> SecureBroker {
    static BROKERS: OnceLock<Mutex<HashMap<Secured, SecureBroker>>> = OnceLock::new();
    let brokers = BROKERS.get_or_init(Default::default);
    // Held while starting: concurrent tests wait for the one start.
    let mut started = brokers.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(b) = started.get(&kind) {
        return b.clone();
    }
    let broker = start(kind);
    started.insert(kind, broker.clone());
    broker
}

/// The test PKI: a CA, and a server certificate + PKCS#8 key signed by it for `names`.
pub struct TestPki {
    /// The CA certificate (PEM).
    pub ca_pem: String,
    /// The server certificate (PEM).
    pub cert_pem: String,
    /// The server's private key (PKCS#8 PEM).
    pub key_pem: String,
}

/// Makes a fresh CA and a server certificate for `names` (DNS names or IP addresses).
pub fn test_pki(names: &[&str]) -> TestPki {
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "wafka test CA");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("CA key")).expect("CA");
    let key = KeyPair::generate().expect("server key");
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let cert = CertificateParams::new(names)
        .expect("server params")
        .signed_by(&key, &ca)
        .expect("server certificate");
    TestPki {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

fn start(kind: Secured) -> SecureBroker {
    let dir = std::env::temp_dir().join(format!(
        "wafka-secure-{}-{:?}-{}",
        std::process::id(),
        kind,
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).expect("state dir");
    let names: &[&str] = match kind {
        Secured::SslWrongName => &["kafka.invalid"],
        _ => &["localhost", "127.0.0.1"],
    };
    let pki = test_pki(names);
    let ca_file = dir.join("ca.pem");
    let cert_file = dir.join("server.pem");
    let key_file = dir.join("server.key");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();
    std::fs::write(&cert_file, &pki.cert_pem).unwrap();
    std::fs::write(&key_file, &pki.key_pem).unwrap();

    if kind.sasl() {
        // Users first, on a plain broker over the same sqlite storage.
        let plain = script(&["start", "--engine", "sqlite", "--state-dir"], &dir, &[]);
        for (user, mechanism) in [(SCRAM256_USER, "scram256"), (SCRAM512_USER, "scram512")] {
            script(
                &["user", &plain, user, PASSWORD, mechanism],
                Path::new(""),
                &[],
            );
        }
        script(&["stop", "--state-dir"], &dir, &[]);
    }
    // From now on the broker's watchdog deletes the folder when this process exits.
    std::fs::write(dir.join(".auto"), "").unwrap();
    let mut extra: Vec<String> = vec!["--owner-pid".into(), std::process::id().to_string()];
    if kind.tls() {
        extra.extend([
            "--cert".into(),
            cert_file.display().to_string(),
            "--key".into(),
            key_file.display().to_string(),
        ]);
    }
    if kind.sasl() {
        extra.push("--authentication".into());
    }
    let addr = script(
        &["start", "--engine", "sqlite", "--state-dir"],
        &dir,
        &extra,
    );

    let mut props = vec![("security.protocol".to_owned(), kind.protocol().to_owned())];
    if kind.tls() {
        props.push(("ssl.ca.location".into(), ca_file.display().to_string()));
        if kind == Secured::SslWrongName {
            props.push((
                "ssl.endpoint.identification.algorithm".into(),
                "none".into(),
            ));
        }
    }
    if kind.sasl() {
        props.push(("sasl.mechanism".into(), "SCRAM-SHA-512".into()));
        props.push(("sasl.username".into(), SCRAM512_USER.into()));
        props.push(("sasl.password".into(), PASSWORD.into()));
    }
    registry().lock().unwrap().insert(addr.clone(), props);
    wait_answers(&addr, kind);
    SecureBroker {
        addr,
        kind,
        ca_file,
    }
}

/// Runs `scripts/broker ARGS [DIR] EXTRA...` and returns the last line it printed.
fn script(args: &[&str], dir: &Path, extra: &[String]) -> String {
    let mut cmd = Command::new(broker_script());
    cmd.args(args);
    if !dir.as_os_str().is_empty() {
        cmd.arg(dir);
    }
    cmd.args(extra)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run scripts/broker: {e}"));
    assert!(
        output.status.success(),
        "scripts/broker {args:?} failed ({})",
        output.status
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// Waits until librdkafka reads the broker's metadata over its protocol.
fn wait_answers(addr: &str, kind: Secured) {
    let client: BaseConsumer = client_config(addr)
        .set("log_level", "3")
        .create()
        .expect("metadata client");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match client.fetch_metadata(None, Duration::from_secs(5)) {
            Ok(_) => return,
            Err(e) => assert!(
                Instant::now() < deadline,
                "secured broker {addr} ({kind:?}) does not answer librdkafka: {e}"
            ),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
