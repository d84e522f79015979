//! TLS for broker connections, through rustls (no OpenSSL).
//!
//! Owns turning [`TlsSettings`] into a rustls client configuration (PEM trust store or the
//! system's; a PEM client certificate and key for mutual TLS; hostname verification, which
//! `ssl.endpoint.identification.algorithm=` with an empty value turns off while the chain is
//! still verified), the handshake over a connected socket, and errors a user can act on
//! (an untrusted or mismatched certificate, a listener that does not speak TLS). Built once per
//! producer; it must not frame Kafka requests.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::security::settings::{Pem, TlsSettings};

/// Why TLS could not be set up or a handshake failed. One line, no key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// A PEM file or text could not be used.
    #[error("{what}: {reason}")]
    Pem {
        /// Which setting (`ssl.truststore.location`, …).
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The TLS settings do not make a configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
    /// The handshake with the broker failed.
    #[error("TLS handshake with {addr}: {reason}")]
    Handshake {
        /// `host:port`.
        addr: String,
        /// Why, in words a user can act on.
        reason: String,
        /// Whether TLS itself refused (a certificate, an alert, a peer that does not speak
        /// TLS): trying again will not help. Otherwise the connection broke (EOF, reset),
        /// which a broker restarting also does.
        refused: bool,
    },
}

/// A client configuration for `settings`.
pub fn client_config(settings: &TlsSettings) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    match &settings.trust {
        Some(pem) => {
            let what = "ssl.truststore.location";
            let certs = certificates(pem, what)?;
            for c in certs {
                roots.add(c).map_err(|e| TlsError::Pem {
                    what,
                    reason: format!("a certificate cannot be trusted: {e}"),
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                let _ = roots.add(c);
            }
            if roots.is_empty() {
                return Err(TlsError::Config(
                    "no trust store given (ssl.truststore.location) and none found on this system"
                        .into(),
                ));
            }
        }
    }
    let roots = Arc::new(roots);
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = if settings.verify_hostname {
        builder.with_root_certificates(roots)
    } else {
        let inner = WebPkiServerVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyName(inner)))
    };
    let config = match (&settings.client_chain, &settings.client_key) {
        (Some(chain), Some(key)) => {
            let chain = certificates(chain, "ssl.keystore.certificate.chain")?;
            let key = private_key(key)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| TlsError::Pem {
                    what: "ssl.keystore.key",
                    reason: format!("does not fit the certificate: {e}"),
                })?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The TLS handshake over `tcp` with the broker at `addr` (`host:port`).
pub async fn handshake(
    config: Arc<ClientConfig>,
    addr: &str,
    tcp: TcpStream,
) -> Result<TlsStream<TcpStream>, TlsError> {
    let host = crate::config::parse_host_port(addr)
        .map(|(h, _)| h)
        .unwrap_or_else(|| addr.to_string());
    let name = ServerName::try_from(host.clone()).map_err(|_| TlsError::Handshake {
        addr: addr.to_string(),
        reason: format!("`{host}` is not a host name or address"),
        refused: true,
    })?;
    TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| TlsError::Handshake {
            addr: addr.to_string(),
            reason: explain(&e, &host),
            refused: refusal(&e),
        })
}

/// The TLS error inside an I/O error from a TLS stream, if it is one.
fn tls_error(e: &std::io::Error) -> Option<rustls::Error> {
    e.get_ref()
        .and_then(|i| i.downcast_ref::<rustls::Error>())
        .cloned()
}

/// Whether a handshake error is TLS refusing our settings (a certificate, a peer that does
/// not speak TLS, nothing in common, an alert), rather than the connection breaking or the
/// broker going away (an `internal_error` or `close_notify` alert).
pub fn refusal(e: &std::io::Error) -> bool {
    match tls_error(e) {
        Some(rustls::Error::AlertReceived(a)) => !matches!(
            a,
            rustls::AlertDescription::InternalError
                | rustls::AlertDescription::CloseNotify
                | rustls::AlertDescription::UserCanceled
        ),
        Some(_) => true,
        None => false,
    }
}

/// An error reading from an established TLS stream, in words, and whether it refuses our
/// client certificate: under TLS 1.3 the broker checks it after our side of the handshake
/// ended, so its refusal is an alert on the first read. Any other TLS error (a corrupt
/// record, a broker shutting down) is only a broken connection.
pub fn explain_read(e: &std::io::Error) -> Option<(String, bool)> {
    match tls_error(e)? {
        rustls::Error::AlertReceived(a) => Some((alert_words(a), certificate_alert(a))),
        other => Some((other.to_string(), false)),
    }
}

/// Whether an alert says our client certificate was refused (or missing).
fn certificate_alert(a: rustls::AlertDescription) -> bool {
    use rustls::AlertDescription as A;
    matches!(
        a,
        A::CertificateRequired
            | A::UnknownCA
            | A::BadCertificate
            | A::CertificateUnknown
            | A::CertificateExpired
            | A::CertificateRevoked
            | A::UnsupportedCertificate
            | A::DecryptError
    )
}

/// What a TLS alert from the broker means for the user.
fn alert_words(a: rustls::AlertDescription) -> String {
    use rustls::AlertDescription as A;
    match a {
        A::CertificateRequired => "the broker requires a client certificate (ssl.keystore.location, or ssl.certificate.location and ssl.key.location)".into(),
        // A client certificate from a CA the broker does not know comes back as one of these
        // (DecryptError when the stranger CA has the same name as a trusted one).
        A::UnknownCA
        | A::BadCertificate
        | A::CertificateUnknown
        | A::CertificateExpired
        | A::CertificateRevoked
        | A::UnsupportedCertificate
        | A::DecryptError => format!(
            "the broker refused our client certificate ({a:?}): is it signed by a CA the broker trusts, and valid?"
        ),
        other => format!("the broker ended TLS with an alert ({other:?})"),
    }
}

/// A handshake error in words a user can act on.
fn explain(e: &std::io::Error, host: &str) -> String {
    let inner = tls_error(e);
    match inner {
        Some(rustls::Error::InvalidCertificate(c)) => match c {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                "the broker's certificate is not signed by a CA in the trust store (ssl.truststore.location)".into()
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => format!(
                "the broker's certificate does not name `{host}` (or turn the check off with ssl.endpoint.identification.algorithm=)"
            ),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the broker's certificate has expired".into()
            }
            other => format!("the broker's certificate is refused: {other:?}"),
        },
        Some(rustls::Error::InvalidMessage(_)) | Some(rustls::Error::InappropriateMessage { .. }) => {
            "the broker did not answer in TLS: is its listener PLAINTEXT? (security.protocol)".into()
        }
        Some(rustls::Error::AlertReceived(a)) => alert_words(a),
        Some(other) => other.to_string(),
        None if matches!(
            e.kind(),
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
        ) =>
        {
            // A plain listener reads the ClientHello as a request far over its size limit.
            "the broker closed the connection during the TLS handshake: is its listener PLAINTEXT? (security.protocol=SSL and SASL_SSL need a TLS listener)".into()
        }
        None => e.to_string(),
    }
}

fn certificates(pem: &Pem, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |reason: String| TlsError::Pem { what, reason };
    let certs: Result<Vec<_>, _> = match pem {
        Pem::File(p) => CertificateDer::pem_file_iter(p)
            .map_err(|e| err(format!("cannot read {}: {e}", p.display())))?
            .collect(),
        Pem::Inline(t) => CertificateDer::pem_slice_iter(t.as_bytes()).collect(),
    };
    let certs = certs.map_err(|e| err(format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(err("no certificate in it".into()));
    }
    Ok(certs)
}

fn private_key(pem: &Pem) -> Result<PrivateKeyDer<'static>, TlsError> {
    let err = |reason: String| TlsError::Pem {
        what: "ssl.keystore.key",
        reason,
    };
    match pem {
        Pem::File(p) => PrivateKeyDer::from_pem_file(p)
            .map_err(|e| err(format!("no usable private key in {}: {e}", p.display()))),
        Pem::Inline(t) => PrivateKeyDer::from_pem_slice(t.as_bytes())
            .map_err(|_| err("no usable private key (PKCS#8, SEC1 or RSA PEM)".into())),
    }
}

/// Verifies the chain as usual but accepts any name
/// (`ssl.endpoint.identification.algorithm=`).
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    struct Pki {
        ca_pem: String,
        server_chain: Vec<CertificateDer<'static>>,
        server_key: PrivateKeyDer<'static>,
    }

    /// A CA and a server certificate for `names`.
    fn pki(names: &[&str]) -> Pki {
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        Pki {
            ca_pem: ca.pem(),
            server_chain: vec![cert.der().clone()],
            server_key: PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap(),
        }
    }

    /// A TLS echo server on loopback; returns its `127.0.0.1:port`.
    async fn server(pki: &Pki) -> String {
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(pki.server_chain.clone(), pki.server_key.clone_key())
        .unwrap();
        echo(config).await
    }

    /// Serves TLS with `config` on loopback, echoing the first 5 bytes; returns the address.
    async fn echo(config: rustls::ServerConfig) -> String {
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(mut s) = acceptor.accept(tcp).await {
                        let mut buf = [0u8; 5];
                        if s.read_exact(&mut buf).await.is_ok() {
                            let _ = s.write_all(&buf).await;
                        }
                    }
                });
            }
        });
        addr
    }

    fn settings(ca: Option<&str>, verify_hostname: bool) -> TlsSettings {
        TlsSettings {
            trust: ca.map(|c| Pem::Inline(c.to_string())),
            verify_hostname,
            ..Default::default()
        }
    }

    async fn connect(s: &TlsSettings, addr: &str) -> Result<(), TlsError> {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut t = handshake(client_config(s)?, addr, tcp).await?;
        t.write_all(b"hello").await.unwrap();
        let mut back = [0u8; 5];
        t.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"hello");
        Ok(())
    }

    #[tokio::test]
    async fn a_trusted_certificate_that_names_the_host_connects() {
        let pki = pki(&["127.0.0.1", "localhost"]);
        let addr = server(&pki).await;
        connect(&settings(Some(&pki.ca_pem), true), &addr)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn an_untrusted_or_mismatched_certificate_is_refused_in_words() {
        let pki_a = pki(&["127.0.0.1"]);
        let other = pki(&["127.0.0.1"]);
        let addr = server(&pki_a).await;
        let e = connect(&settings(Some(&other.ca_pem), true), &addr)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("not signed by a CA in the trust store"), "{e}");
        let elsewhere = pki(&["broker.example.com"]);
        let addr = server(&elsewhere).await;
        let e = connect(&settings(Some(&elsewhere.ca_pem), true), &addr)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not name `127.0.0.1`"), "{e}");
        // With the name check off, the chain still counts: the same server is accepted, a
        // stranger's still refused.
        connect(&settings(Some(&elsewhere.ca_pem), false), &addr)
            .await
            .unwrap();
        let e = connect(&settings(Some(&other.ca_pem), false), &addr)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("not signed"), "{e}");
    }

    #[tokio::test]
    async fn a_plain_listener_is_named_as_such() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            // A Kafka broker without TLS reads the ClientHello as a request and answers
            // garbage or closes: write a few bytes, then close.
            if let Ok((mut s, _)) = listener.accept().await {
                let _ = s.write_all(&[0, 0, 0, 4, 0, 0, 0, 0]).await;
            }
        });
        let pki = pki(&["127.0.0.1"]);
        let e = connect(&settings(Some(&pki.ca_pem), true), &addr)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("PLAINTEXT") || e.contains("is its listener TLS"),
            "{e}"
        );
    }

    /// A TLS echo server that requires a client certificate signed by `client_ca`.
    async fn mtls_server(pki: &Pki, client_ca: &str) -> String {
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(client_ca.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(pki.server_chain.clone(), pki.server_key.clone_key())
            .unwrap();
        echo(config).await
    }

    /// A client certificate (PEM chain, PEM key) signed by a fresh CA; returns the CA too.
    fn client_identity() -> (String, String, String) {
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["tenant-a".to_string()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        (ca.pem(), cert.pem(), key.serialize_pem())
    }

    /// Mutual TLS: the right client certificate connects; none, or one from a CA the broker
    /// does not trust, is refused in words. Under TLS 1.3 the client's handshake ends before
    /// the server checks the certificate: the refusal comes with the first read.
    #[tokio::test]
    async fn mutual_tls_connects_and_a_refused_client_certificate_says_so() {
        let pki = pki(&["127.0.0.1"]);
        let (client_ca, chain, key) = client_identity();
        let addr = mtls_server(&pki, &client_ca).await;
        let mut s = settings(Some(&pki.ca_pem), true);
        s.client_chain = Some(Pem::Inline(chain));
        s.client_key = Some(Pem::Inline(key));
        connect(&s, &addr).await.unwrap();

        async fn first_read(s: &TlsSettings, addr: &str) -> String {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let words = match handshake(client_config(s).unwrap(), addr, tcp).await {
                Err(e) => return e.to_string(),
                Ok(mut t) => {
                    let _ = t.write_all(b"hello").await;
                    let mut back = [0u8; 5];
                    let e = t.read_exact(&mut back).await.unwrap_err();
                    explain_read(&e).map(|(w, _)| w)
                }
            };
            words.unwrap_or_default()
        }
        let none = settings(Some(&pki.ca_pem), true);
        let e = first_read(&none, &addr).await;
        assert!(e.contains("requires a client certificate"), "{e}");
        let (_, other_chain, other_key) = client_identity();
        let mut stranger = settings(Some(&pki.ca_pem), true);
        stranger.client_chain = Some(Pem::Inline(other_chain));
        stranger.client_key = Some(Pem::Inline(other_key));
        let e = first_read(&stranger, &addr).await;
        assert!(e.contains("refused our client certificate"), "{e}");
    }

    #[test]
    fn bad_pem_is_one_line_naming_the_setting() {
        let e = client_config(&settings(Some("-----BEGIN CERTIFICATE-----\nnope\n"), true))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("ssl.truststore.location:") && !e.contains('\n'),
            "{e}"
        );
        let s = TlsSettings {
            trust: Some(Pem::File("/no/such/ca.pem".into())),
            ..Default::default()
        };
        let e = client_config(&s).unwrap_err().to_string();
        assert!(e.contains("cannot read /no/such/ca.pem"), "{e}");
    }
}
