//! What a producer's properties say about security: the protocol, the SASL mechanism and
//! credentials, the TLS trust store, client certificate and hostname check.
//!
//! Owns the typed settings and the reading of `sasl.jaas.config`; `config` parses properties
//! into them. Secrets (passwords, private keys) never appear in `Debug` output or errors. It
//! must not open files or sockets (the connection does, when it connects).

use std::path::PathBuf;

use crate::security::sasl::{Credentials, Mechanism};

/// `security.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecurityProtocol {
    /// No TLS, no SASL (Kafka's default).
    #[default]
    Plaintext,
    /// TLS.
    Ssl,
    /// SASL without TLS.
    SaslPlaintext,
    /// SASL over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// Whether connections use TLS.
    pub fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// Whether connections authenticate with SASL.
    pub fn sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }

    /// Parses a `security.protocol` value (any case, as Java).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.trim().to_ascii_uppercase().as_str() {
            "PLAINTEXT" => SecurityProtocol::Plaintext,
            "SSL" => SecurityProtocol::Ssl,
            "SASL_PLAINTEXT" => SecurityProtocol::SaslPlaintext,
            "SASL_SSL" => SecurityProtocol::SaslSsl,
            _ => return None,
        })
    }
}

/// PEM text from a file or given inline.
#[derive(Clone, PartialEq, Eq)]
pub enum Pem {
    /// A file to read when connecting.
    File(PathBuf),
    /// The PEM text itself.
    Inline(String),
}

impl std::fmt::Debug for Pem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pem::File(p) => write!(f, "File({})", p.display()),
            Pem::Inline(t) => write!(f, "Inline({} bytes)", t.len()),
        }
    }
}

/// TLS settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// CA certificates to trust (`ssl.truststore.location`/`.certificates`, librdkafka's
    /// `ssl.ca.location`); `None`: the system's trust store.
    pub trust: Option<Pem>,
    /// Client certificate chain for mutual TLS (`ssl.keystore.certificate.chain`, or the
    /// certificates in `ssl.keystore.location`).
    pub client_chain: Option<Pem>,
    /// Client private key (`ssl.keystore.key`, or the key in `ssl.keystore.location`).
    pub client_key: Option<Pem>,
    /// `ssl.endpoint.identification.algorithm=https` (the default): the broker's certificate
    /// must name the host connected to. Empty turns it off, as Java.
    pub verify_hostname: bool,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            trust: None,
            client_chain: None,
            client_key: None,
            verify_hostname: true,
        }
    }
}

/// Everything security-related a producer was given.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SecuritySettings {
    /// `security.protocol`.
    pub protocol: SecurityProtocol,
    /// `sasl.mechanism` if set (Kafka's default, GSSAPI, is not spoken by wafka).
    pub mechanism: Option<Mechanism>,
    /// From `sasl.jaas.config` or `sasl.username` + `sasl.password`.
    pub credentials: Option<Credentials>,
    /// The login module `sasl.jaas.config` named, to check against the mechanism.
    pub jaas_module: Option<JaasModule>,
    /// TLS.
    pub tls: TlsSettings,
}

/// The login modules wafka reads from `sasl.jaas.config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JaasModule {
    /// `org.apache.kafka.common.security.plain.PlainLoginModule`.
    Plain,
    /// `org.apache.kafka.common.security.scram.ScramLoginModule`.
    Scram,
}

/// Properties whose values are secret: shown as `(hidden)` wherever a value would be shown.
pub const SECRET_PROPERTIES: &[&str] = &[
    "sasl.jaas.config",
    "sasl.password",
    "ssl.keystore.key",
    "ssl.key.password",
    "ssl.keystore.password",
    "ssl.truststore.password",
];

/// Whether `name`'s value must not be shown.
pub fn is_secret(name: &str) -> bool {
    SECRET_PROPERTIES.contains(&name)
}

/// Reads `LoginModule required username="…" password="…";` — the module and the credentials.
/// Errors never quote the text (it holds the password).
pub fn parse_jaas(text: &str) -> Result<(JaasModule, Credentials), String> {
    let text = text.trim();
    let (module, rest) = text
        .split_once(char::is_whitespace)
        .ok_or("expected `LoginModule required username=\"…\" password=\"…\";`")?;
    let module = match module.rsplit('.').next().unwrap_or_default() {
        "PlainLoginModule" => JaasModule::Plain,
        "ScramLoginModule" => JaasModule::Scram,
        // Not quoted: a text that does not start with a module may start with the password.
        _ => {
            return Err(
                "the login module is not one wafka reads: PlainLoginModule or ScramLoginModule"
                    .into(),
            )
        }
    };
    let rest = rest.trim_start();
    let rest = rest
        .strip_prefix("required")
        .ok_or("expected the flag `required` after the login module")?;
    let rest = rest.trim().trim_end_matches(';');
    let (mut username, mut password) = (None, None);
    let mut s = rest.trim();
    while !s.is_empty() {
        let (key, after) = s.split_once('=').ok_or("expected key=\"value\" options")?;
        let after = after.trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            // Quoted: up to the closing quote; \" and \\ escape.
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => value.push(c),
                }
            }
            let end = end.ok_or("an option's quoted value is not closed")?;
            (value, &quoted[end..])
        } else {
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            (after[..end].to_string(), &after[end..])
        };
        match key.trim() {
            "username" => username = Some(value),
            "password" => password = Some(value),
            _ => {}
        }
        s = next.trim();
    }
    match (username, password) {
        (Some(u), Some(p)) => Ok((module, Credentials::new(u, p))),
        _ => Err("the login module needs username=\"…\" and password=\"…\"".into()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_unknown_login_module_is_not_quoted_it_may_be_the_password() {
        for text in [
            "S3cr3t-Markk required username=\"u\" password=\"p\";",
            "password=\"S3cr3t-Markk\" username=\"u\";",
        ] {
            let e = parse_jaas(text).unwrap_err();
            assert!(!e.contains("S3cr3t"), "{e}");
            assert!(e.contains("PlainLoginModule"), "{e}");
        }
    }

    use super::*;

    #[test]
    fn jaas_config_as_java_writes_it() {
        let (m, c) = parse_jaas(
            r#"org.apache.kafka.common.security.scram.ScramLoginModule required username="alice" password="p a\"ss";"#,
        )
        .unwrap();
        assert_eq!(m, JaasModule::Scram);
        assert_eq!(c, Credentials::new("alice", "p a\"ss"));
        let (m, c) = parse_jaas(
            "org.apache.kafka.common.security.plain.PlainLoginModule required\n  username=bob\n  password=\"x\";",
        )
        .unwrap();
        assert_eq!((m, c), (JaasModule::Plain, Credentials::new("bob", "x")));
        for bad in [
            r#"com.sun.security.auth.module.Krb5LoginModule required useKeyTab=true;"#,
            r#"org.apache.kafka.common.security.plain.PlainLoginModule required username="u";"#,
            r#"org.apache.kafka.common.security.plain.PlainLoginModule required username="u" password="open;"#,
        ] {
            let e = parse_jaas(bad).unwrap_err();
            assert!(!e.contains("open"), "{e}");
        }
    }

    #[test]
    fn protocols_and_secrets() {
        assert_eq!(
            SecurityProtocol::parse("sasl_ssl"),
            Some(SecurityProtocol::SaslSsl)
        );
        assert!(SecurityProtocol::SaslSsl.tls() && SecurityProtocol::SaslSsl.sasl());
        assert_eq!(SecurityProtocol::parse("TLS"), None);
        assert!(is_secret("sasl.jaas.config") && !is_secret("sasl.username"));
        let shown = format!("{:?}", Pem::Inline("-----BEGIN PRIVATE KEY-----".into()));
        assert!(!shown.contains("PRIVATE"), "{shown}");
    }
}
