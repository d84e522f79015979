//! One TCP connection to one broker: setup within bounds, bounded framing, ApiVersions, and
//! two small tasks that move bytes (a writer, a reader).
//!
//! Owns the socket and nothing else: its owner (a sink, or the control link) writes framed
//! requests with [`Connection::send`] and reads answers as [`Event`]s, in order, and matches
//! them to its requests by correlation id; it also keeps the deadlines. Dropping a connection
//! aborts both tasks and closes the socket at once, even mid-write. A frame's length is checked
//! against a bound before anything is set aside for it, and the buffer grows only as bytes
//! arrive. Only answers asked for are read: the connection counts the requests that expect
//! one, and a frame that comes when none is outstanding closes the connection with a protocol
//! error as soon as its length is read (an idle link must not park what a broker pushes); once
//! the reader stops, the socket is closed. It must not know what the requests mean.

use std::collections::HashMap;
use std::io::IoSlice;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::{
    Decodable, Encodable, HeaderVersion, Request, StrBytes, VersionRange,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::security::sasl::{Credentials, Mechanism, SaslClient, Step};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

/// Largest answer a producer accepts (librdkafka's `receive.message.max.bytes` default).
pub(crate) const MAX_ANSWER: usize = 100_000_000;

/// The ApiVersions version asked first (the first with flexible fields, Kafka 2.4).
const API_VERSIONS_VERSION: i16 = 3;
/// UNSUPPORTED_VERSION.
const UNSUPPORTED_VERSION: i16 = 35;

/// The soonest a connection is renewed after it authenticated (KIP-368).
const MIN_RENEWAL: Duration = Duration::from_secs(1);

/// What went wrong talking to a broker. Every variant means the connection is gone (or was
/// never there), so a request on it may be retried on a new one.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NetError {
    /// Connecting failed.
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// `host:port`
        addr: String,
        /// The OS or timeout reason.
        reason: String,
    },
    /// Reading or writing failed, or the broker closed the connection.
    #[error("connection to {addr} lost: {reason}")]
    Io {
        /// `host:port`
        addr: String,
        /// What happened.
        reason: String,
    },
    /// No answer within `request.timeout.ms`.
    #[error("no answer from {addr} within {} ms", timeout.as_millis())]
    Timeout {
        /// `host:port`
        addr: String,
        /// The timeout that passed.
        timeout: Duration,
    },
    /// SASL authentication failed: wrong credentials, or a mechanism the broker does not
    /// enable. Trying again will not help until the configuration changes.
    #[error("authentication with {addr} failed: {reason}")]
    Auth {
        /// `host:port`
        addr: String,
        /// Kafka's error code for it: SASL_AUTHENTICATION_FAILED (58),
        /// UNSUPPORTED_SASL_MECHANISM (33), ILLEGAL_SASL_STATE (34), …
        code: i16,
        /// The broker's answer (never a secret).
        reason: String,
    },
    /// TLS failed: the broker's certificate is refused, or one side speaks TLS and the other
    /// does not. Trying again will not help until the configuration changes.
    #[error("TLS with {addr} failed: {reason}")]
    Tls {
        /// `host:port`
        addr: String,
        /// What went wrong, in words (never a secret).
        reason: String,
    },
    /// The broker sent something we cannot read, or does not support what we need.
    #[error("protocol error with {addr}: {reason}")]
    Protocol {
        /// `host:port`
        addr: String,
        /// What is wrong.
        reason: String,
    },
}

impl NetError {
    /// Whether the broker refused us for our security settings (SASL credentials or
    /// mechanism, TLS certificate or protocol), as opposed to a network or broker fault:
    /// Java's `AuthenticationException`. Waiting will not help; sends fail at once.
    pub fn is_refusal(&self) -> bool {
        matches!(self, NetError::Auth { .. } | NetError::Tls { .. })
    }
}

/// What a connection tells its owner, in order.
#[derive(Debug)]
pub(crate) enum Event {
    /// One answer frame (after its length prefix): header and body.
    Answer(Bytes),
    /// A request sent with `notify_written` is on the socket (answers to `acks=0` never come).
    Written(i32),
    /// The connection is gone.
    Closed(NetError),
}

struct Outgoing {
    segments: Vec<Bytes>,
    written: Option<i32>,
}

/// How connections are secured: TLS (a rustls configuration built once per producer) and
/// SASL (mechanism and credentials), each if the protocol asks for it.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConnSecurity {
    pub(crate) tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    pub(crate) sasl: Option<(Mechanism, Credentials)>,
}

impl ConnSecurity {
    /// What `settings` ask of every connection. A TLS configuration that cannot be built was
    /// refused when the config was validated; should it fail here (a file removed since), the
    /// connections fail with that error instead of falling back to plaintext.
    pub(crate) fn from_settings(settings: &crate::security::settings::SecuritySettings) -> Self {
        let tls = settings.protocol.tls().then(|| {
            crate::security::tls::client_config(&settings.tls).unwrap_or_else(|e| {
                tracing::error!("TLS cannot be set up, connections will fail: {e}");
                std::sync::Arc::new(unusable_tls())
            })
        });
        let sasl = if settings.protocol.sasl() {
            settings.mechanism.zip(settings.credentials.clone())
        } else {
            None
        };
        ConnSecurity { tls, sasl }
    }
}

/// A TLS configuration that trusts nothing: every handshake fails.
fn unusable_tls() -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default versions")
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth()
}

/// A live connection to a broker, owned by one task.
pub(crate) struct Connection {
    addr: String,
    client_id: StrBytes,
    versions: HashMap<i16, (i16, i16)>,
    next_correlation: i32,
    writes: mpsc::UnboundedSender<Outgoing>,
    events: mpsc::Receiver<Event>,
    tasks: [AbortHandle; 2],
    /// When to replace this connection because the broker's SASL session ends (KIP-368):
    /// at 85% of the lifetime the broker gave, as Java re-authenticates at 85-95%.
    renew_at: Option<std::time::Instant>,
    /// Answers read so far (ApiVersions is the first).
    answers: u64,
    /// Whether this connection authenticated with SASL.
    authenticated: bool,
    /// Requests sent that expect an answer and have none yet (the reader counts down).
    outstanding: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Connection {
    /// Connects (TCP, then TLS if asked) within `setup_timeout`, negotiates API versions and
    /// authenticates (SASL, if asked) within `request_timeout` per request.
    pub(crate) async fn connect(
        addr: &str,
        client_id: &str,
        setup_timeout: Duration,
        request_timeout: Duration,
        security: &ConnSecurity,
    ) -> Result<Connection, NetError> {
        let connect_err = |reason: String| NetError::Connect {
            addr: addr.to_string(),
            reason,
        };
        let started = tokio::time::Instant::now();
        let stream = tokio::time::timeout(setup_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| connect_err(format!("timed out after {} ms", setup_timeout.as_millis())))?
            .map_err(|e| connect_err(e.to_string()))?;
        stream.set_nodelay(true).ok();
        let (events_tx, events) = mpsc::channel(16);
        let (writes, writes_rx) = mpsc::unbounded_channel();
        let name = addr.to_string();
        let outstanding = Arc::new(AtomicUsize::new(0));
        let io = Io {
            addr: name,
            writes: writes_rx,
            events: events_tx,
            outstanding: outstanding.clone(),
        };
        let tasks = match &security.tls {
            None => {
                let (read, write) = stream.into_split();
                spawn_io(read, write, io)
            }
            Some(config) => {
                let left = setup_timeout.saturating_sub(started.elapsed());
                let tls_err = |reason: String| NetError::Tls {
                    addr: addr.to_string(),
                    reason,
                };
                let tls = tokio::time::timeout(
                    left,
                    crate::security::tls::handshake(config.clone(), addr, stream),
                )
                .await
                .map_err(|_| {
                    // A plain listener may read the ClientHello as the length of a huge
                    // request and wait for the rest; a slow network looks the same, so this
                    // is not a refusal.
                    connect_err(format!(
                        "the broker did not answer the TLS handshake within {} ms: is its listener PLAINTEXT? (security.protocol)",
                        setup_timeout.as_millis()
                    ))
                })?
                .map_err(|e| match e {
                    crate::security::tls::TlsError::Handshake {
                        reason,
                        refused: true,
                        ..
                    } => tls_err(reason),
                    // The connection broke during the handshake (a plain listener hangs up on
                    // a ClientHello, but so does a broker restarting): sends wait, as Java's.
                    crate::security::tls::TlsError::Handshake { reason, .. } => {
                        connect_err(reason)
                    }
                    other => tls_err(other.to_string()),
                })?;
                let (read, write) = tokio::io::split(tls);
                spawn_io(read, write, io)
            }
        };
        let mut conn = Connection {
            addr: addr.to_string(),
            client_id: StrBytes::from_string(client_id.to_string()),
            versions: HashMap::new(),
            next_correlation: 0,
            writes,
            events,
            tasks,
            renew_at: None,
            answers: 0,
            authenticated: false,
            outstanding,
        };
        conn.versions = conn.negotiate(request_timeout).await?;
        if let Some((mechanism, credentials)) = &security.sasl {
            conn.authenticate(*mechanism, credentials, request_timeout)
                .await?;
            conn.authenticated = true;
        }
        Ok(conn)
    }

    /// When this connection should be replaced, if the broker limits its SASL session
    /// (KIP-368): a new connection authenticates again. Java re-authenticates on the same
    /// connection; wafka opens a new one, which the broker's view of the session cannot tell
    /// apart.
    pub(crate) fn renew_at(&self) -> Option<std::time::Instant> {
        self.renew_at
    }

    /// SaslHandshake, then SaslAuthenticate rounds until the mechanism is done.
    async fn authenticate(
        &mut self,
        mechanism: Mechanism,
        credentials: &Credentials,
        timeout: Duration,
    ) -> Result<(), NetError> {
        let auth = |conn: &Connection, code: i16, reason: String| NetError::Auth {
            addr: conn.addr.clone(),
            code,
            reason,
        };
        let version = self.version::<SaslHandshakeRequest>(1)?;
        let mut hs = SaslHandshakeRequest::default();
        hs.mechanism = StrBytes::from_static_str(mechanism.name());
        let resp = self.request(&hs, version, timeout).await?;
        if resp.error_code != 0 {
            let enabled: Vec<&str> = resp.mechanisms.iter().map(|m| m.as_str()).collect();
            return Err(auth(
                self,
                resp.error_code,
                if resp.error_code == 33 {
                    format!(
                        "the broker does not enable {} (it enables: {})",
                        mechanism.name(),
                        if enabled.is_empty() {
                            "none".to_string()
                        } else {
                            enabled.join(", ")
                        }
                    )
                } else if resp.error_code == 34 {
                    // ILLEGAL_SASL_STATE: what a listener without SASL answers.
                    "the listener does not take SASL (SaslHandshake answered ILLEGAL_SASL_STATE): for it, security.protocol=PLAINTEXT or SSL".into()
                } else {
                    format!(
                        "SaslHandshake answered {}",
                        crate::error::kafka_error_name(resp.error_code)
                    )
                },
            ));
        }
        let version = self.version::<SaslAuthenticateRequest>(2)?;
        let mut client = SaslClient::new(mechanism, credentials);
        let mut out = client.start();
        loop {
            let mut req = SaslAuthenticateRequest::default();
            req.auth_bytes = Bytes::from(std::mem::take(&mut out));
            let resp = self.request(&req, version, timeout).await?;
            if resp.error_code != 0 {
                return Err(auth(
                    self,
                    resp.error_code,
                    format!(
                        "{} with {}: {}",
                        crate::error::kafka_error_name(resp.error_code),
                        mechanism.name(),
                        resp.error_message
                            .as_ref()
                            .map(|m| m.as_str().to_string())
                            .unwrap_or_else(|| "(no message)".into())
                    ),
                ));
            }
            if let Some(at) = renewal(std::time::Instant::now(), resp.session_lifetime_ms) {
                self.renew_at = Some(at);
            }
            match client.step(&resp.auth_bytes) {
                Ok(Step::Send(next)) => out = next,
                Ok(Step::Done) => return Ok(()),
                // A refusal inside the exchange (SCRAM's `e=`) or a server that cannot prove
                // it knows the password: Kafka's SASL_AUTHENTICATION_FAILED.
                Err(e) => return Err(auth(self, 58, e.to_string())),
            }
        }
    }

    /// `host:port` of the broker.
    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    /// The highest version of `R` both sides speak, capped at `our_max`.
    pub(crate) fn version<R: Request>(&self, our_max: i16) -> Result<i16, NetError> {
        common_version(&self.versions, R::KEY, R::VERSIONS, our_max)
            .map_err(|e| self.protocol(e.to_string()))
    }

    pub(crate) fn protocol(&self, reason: String) -> NetError {
        NetError::Protocol {
            addr: self.addr.clone(),
            reason,
        }
    }

    fn gone(&self) -> NetError {
        NetError::Io {
            addr: self.addr.clone(),
            reason: "connection closed".into(),
        }
    }

    /// ApiVersions at v3; a broker that does not speak it (Kafka before 2.4) answers
    /// UNSUPPORTED_VERSION in v0 whatever was asked (KIP-511), listing the versions it speaks:
    /// that answer is read as v0 and the question asked again at the highest version listed.
    async fn negotiate(&mut self, timeout: Duration) -> Result<HashMap<i16, (i16, i16)>, NetError> {
        let mut req = ApiVersionsRequest::default();
        req.client_software_name = StrBytes::from_static_str("wafka");
        req.client_software_version = StrBytes::from_static_str(env!("CARGO_PKG_VERSION"));
        let correlation = self.send(&req, API_VERSIONS_VERSION)?;
        let frame = self.answer(timeout).await?;
        let first =
            self.decode::<ApiVersionsRequest>(frame.clone(), API_VERSIONS_VERSION, correlation);
        let resp = match first {
            Ok(resp) if resp.error_code != UNSUPPORTED_VERSION => resp,
            first => {
                let v0 = match self.decode::<ApiVersionsRequest>(frame, 0, correlation) {
                    Ok(v0) if v0.error_code == UNSUPPORTED_VERSION => v0,
                    // Not a v0 refusal: what the v3 reading said stands.
                    _ => first?,
                };
                let theirs = supported_versions(&v0)
                    .get(&ApiVersionsRequest::KEY)
                    .map_or(0, |&(_, max)| max)
                    .clamp(0, API_VERSIONS_VERSION - 1);
                self.request(&ApiVersionsRequest::default(), theirs, timeout)
                    .await?
            }
        };
        if resp.error_code != 0 {
            return Err(self.protocol(format!(
                "ApiVersions failed with {}",
                crate::error::kafka_error_name(resp.error_code)
            )));
        }
        Ok(supported_versions(&resp))
    }

    /// A fresh correlation id.
    pub(crate) fn next_correlation(&mut self) -> i32 {
        let c = self.next_correlation;
        self.next_correlation = self.next_correlation.wrapping_add(1);
        c
    }

    /// The request header of an `api_key` request at `version`, for `correlation_id`.
    pub(crate) fn header(&self, api_key: i16, version: i16, correlation_id: i32) -> RequestHeader {
        let mut header = RequestHeader::default();
        header.request_api_key = api_key;
        header.request_api_version = version;
        header.correlation_id = correlation_id;
        header.client_id = Some(self.client_id.clone());
        header
    }

    /// Queues a framed request (its segments are written back to back, without copying) and
    /// returns at once. `expects_answer` is false for a request the broker does not answer
    /// (Produce with `acks=0`): a frame that comes while no request expects one closes the
    /// connection. With `notify_written`, an [`Event::Written`] follows once it is on the
    /// socket.
    pub(crate) fn send_frame(
        &self,
        segments: Vec<Bytes>,
        expects_answer: bool,
        notify_written: Option<i32>,
    ) -> Result<(), NetError> {
        if expects_answer {
            // Counted before the write is queued, so before the answer can come.
            self.outstanding.fetch_add(1, Ordering::AcqRel);
        }
        self.writes
            .send(Outgoing {
                segments,
                written: notify_written,
            })
            .map_err(|_| self.gone())
    }

    /// Encodes `req` (header and body, one buffer) and queues it; returns its correlation id.
    pub(crate) fn send<R: Request>(&mut self, req: &R, version: i16) -> Result<i32, NetError> {
        let correlation_id = self.next_correlation();
        let header = self.header(R::KEY, version, correlation_id);
        let header_version = R::header_version(version);
        let size = header
            .compute_size(header_version)
            .and_then(|h| req.compute_size(version).map(|b| h + b))
            .map_err(|e| self.protocol(format!("cannot encode request: {e}")))?;
        let mut buf = BytesMut::with_capacity(4 + size);
        buf.put_u32(size as u32);
        header
            .encode(&mut buf, header_version)
            .and_then(|_| req.encode(&mut buf, version))
            .map_err(|e| self.protocol(format!("cannot encode request: {e}")))?;
        self.send_frame(vec![buf.freeze()], true, None)?;
        Ok(correlation_id)
    }

    /// The next event; `Closed` forever once the connection is gone. Cancel-safe.
    pub(crate) async fn next_event(&mut self) -> Event {
        let event = match self.events.recv().await {
            Some(e) => e,
            None => Event::Closed(self.gone()),
        };
        match event {
            Event::Answer(_) => {
                self.answers += 1;
                event
            }
            Event::Closed(e) => Event::Closed(self.hint_sasl(e)),
            written => written,
        }
    }

    /// A listener that requires SASL answers ApiVersions, then closes the connection on the
    /// first other request of a client that did not authenticate: say so. Only a hint (a
    /// broker going away looks the same), so not a refusal: sends wait as for any lost
    /// connection.
    fn hint_sasl(&self, e: NetError) -> NetError {
        match e {
            NetError::Io { addr, reason } if !self.authenticated && self.answers == 1 => {
                NetError::Io {
                    addr,
                    reason: format!(
                        "{reason} after its first request: if its listener requires SASL, set security.protocol=SASL_PLAINTEXT or SASL_SSL and sasl.mechanism"
                    ),
                }
            }
            other => other,
        }
    }

    /// Decodes an answer to `R` at `version`, checking that it answers `correlation_id`.
    pub(crate) fn decode<R: Request>(
        &self,
        frame: Bytes,
        version: i16,
        correlation_id: i32,
    ) -> Result<R::Response, NetError> {
        decode_answer::<R>(frame, version, correlation_id).map_err(|e| self.protocol(e.to_string()))
    }

    /// Sends `req` and waits up to `timeout` for its answer. For a connection with nothing
    /// else in flight (the control link, the handshake).
    pub(crate) async fn request<R: Request>(
        &mut self,
        req: &R,
        version: i16,
        timeout: Duration,
    ) -> Result<R::Response, NetError> {
        let correlation_id = self.send(req, version)?;
        let frame = self.answer(timeout).await?;
        self.decode::<R>(frame, version, correlation_id)
    }

    /// Waits up to `timeout` for the next answer.
    async fn answer(&mut self, timeout: Duration) -> Result<Bytes, NetError> {
        let addr = self.addr.clone();
        let event = tokio::time::timeout(timeout, async {
            loop {
                match self.next_event().await {
                    Event::Written(_) => continue,
                    e => return e,
                }
            }
        })
        .await
        .map_err(|_| NetError::Timeout { addr, timeout })?;
        match event {
            Event::Answer(frame) => Ok(frame),
            Event::Closed(e) => Err(e),
            Event::Written(_) => unreachable!("skipped above"),
        }
    }
}

#[cfg(test)]
impl Connection {
    /// A connection whose writer and reader are gone (as after the broker reset it): every
    /// send fails.
    pub(crate) fn gone_for_tests(addr: &str) -> Connection {
        let (writes, _) = mpsc::unbounded_channel();
        let (_, events) = mpsc::channel(1);
        let task = || tokio::spawn(async {}).abort_handle();
        Connection {
            addr: addr.to_string(),
            client_id: StrBytes::from_static_str("t"),
            versions: HashMap::new(),
            next_correlation: 0,
            writes,
            events,
            tasks: [task(), task()],
            renew_at: None,
            answers: 0,
            authenticated: false,
            outstanding: Arc::default(),
        }
    }
}

/// Why an answer frame could not be read as the answer to a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AnswerError {
    /// The response header does not decode.
    #[error("bad answer header: {0}")]
    Header(String),
    /// The header names another request.
    #[error("answer to request {got} where request {expected} was next")]
    Correlation {
        /// The correlation id in the answer.
        got: i32,
        /// The one the connection waited for.
        expected: i32,
    },
    /// The body does not decode as the answer to that API at that version.
    #[error("cannot decode answer to API key {api_key}: {reason}")]
    Body {
        /// The request's API key.
        api_key: i16,
        /// The decoder's error, on one line.
        reason: String,
    },
}

/// An answer frame (after its length prefix) read as `R`'s answer at `version`: the response
/// header at the header version of that answer, the correlation check, then the body. What
/// [`Connection::decode`] runs; needs no connection.
pub(crate) fn decode_answer<R: Request>(
    mut frame: Bytes,
    version: i16,
    correlation_id: i32,
) -> Result<R::Response, AnswerError> {
    let header_version = <R::Response as HeaderVersion>::header_version(version);
    let header = ResponseHeader::decode(&mut frame, header_version)
        .map_err(|e| AnswerError::Header(one_line(&e)))?;
    if header.correlation_id != correlation_id {
        return Err(AnswerError::Correlation {
            got: header.correlation_id,
            expected: correlation_id,
        });
    }
    R::Response::decode(&mut frame, version).map_err(|e| AnswerError::Body {
        api_key: R::KEY,
        reason: one_line(&e),
    })
}

/// What an ApiVersions answer says the broker speaks: API key to its version range.
pub(crate) fn supported_versions(resp: &ApiVersionsResponse) -> HashMap<i16, (i16, i16)> {
    resp.api_keys
        .iter()
        .map(|k| (k.api_key, (k.min_version, k.max_version)))
        .collect()
}

/// Why no version of an API can be used with a broker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum VersionError {
    /// The broker does not list the API.
    #[error("broker does not support API key {0}")]
    Unsupported(i16),
    /// The broker's range and ours do not meet.
    #[error("no common version for API key {api_key} (broker {broker_min}..={broker_max}, client {client_min}..={client_max})")]
    NoCommon {
        /// The API.
        api_key: i16,
        /// Oldest version the broker speaks.
        broker_min: i16,
        /// Newest version the broker speaks.
        broker_max: i16,
        /// Oldest version we speak.
        client_min: i16,
        /// Newest version we speak (capped by what the caller asks for).
        client_max: i16,
    },
}

/// The highest version of API `key` that the broker (`versions`, from ApiVersions) and we
/// (`ours`, capped at `our_max`) both speak.
pub(crate) fn common_version(
    versions: &HashMap<i16, (i16, i16)>,
    key: i16,
    ours: VersionRange,
    our_max: i16,
) -> Result<i16, VersionError> {
    let (min, max) = versions
        .get(&key)
        .copied()
        .ok_or(VersionError::Unsupported(key))?;
    let v = max.min(ours.max).min(our_max);
    if v < min.max(ours.min) {
        return Err(VersionError::NoCommon {
            api_key: key,
            broker_min: min,
            broker_max: max,
            client_min: ours.min,
            client_max: ours.max.min(our_max),
        });
    }
    Ok(v)
}

/// When a connection authenticated at `now` is replaced, for a SASL session the broker limits
/// to `session_lifetime_ms` (KIP-368; 0 or less: no limit): at 85% of it, as Java
/// re-authenticates at 85-95%, and never sooner than [`MIN_RENEWAL`]: a broker (or a rogue
/// one over SASL_PLAINTEXT) giving tiny sessions must not make every request a new connection.
pub(crate) fn renewal(
    now: std::time::Instant,
    session_lifetime_ms: i64,
) -> Option<std::time::Instant> {
    if session_lifetime_ms <= 0 {
        return None;
    }
    let lifetime = Duration::from_millis(session_lifetime_ms as u64);
    Some(now + lifetime.mul_f64(0.85).max(MIN_RENEWAL))
}

/// A decoder's error as one line (`kafka-protocol`'s "not enough bytes" ends in a newline).
fn one_line(e: &impl std::fmt::Display) -> String {
    e.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// What the reader and writer tasks of a connection share with it.
struct Io {
    addr: String,
    writes: mpsc::UnboundedReceiver<Outgoing>,
    events: mpsc::Sender<Event>,
    outstanding: Arc<AtomicUsize>,
}

/// Starts the reader and writer tasks of a connection's two halves. When the reader stops
/// (the broker closed, a read failed, or it sent what nobody asked for), it stops the writer
/// too, so the socket closes then, not when the owner next looks at the connection.
fn spawn_io<R, W>(read: R, write: W, io: Io) -> [AbortHandle; 2]
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let writer = tokio::spawn(write_requests(
        write,
        io.addr.clone(),
        io.writes,
        io.events.clone(),
    ));
    let stop_writer = writer.abort_handle();
    let reader = tokio::spawn(async move {
        read_answers(read, io.addr, io.events, &io.outstanding).await;
        stop_writer.abort();
    });
    [reader.abort_handle(), writer.abort_handle()]
}

async fn write_requests<W: AsyncWrite + Unpin>(
    mut w: W,
    addr: String,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    events: mpsc::Sender<Event>,
) {
    while let Some(out) = rx.recv().await {
        if let Err(e) = write_all_segments(&mut w, out.segments).await {
            let _ = events
                .send(Event::Closed(NetError::Io {
                    addr,
                    reason: format!("write failed: {e}"),
                }))
                .await;
            return;
        }
        if let Some(c) = out.written {
            if events.send(Event::Written(c)).await.is_err() {
                return;
            }
        }
    }
}

/// Writes every segment, in order, with vectored writes: the batch bytes go to the socket from
/// where they are.
async fn write_all_segments<W: AsyncWrite + Unpin>(
    w: &mut W,
    mut segments: Vec<Bytes>,
) -> std::io::Result<()> {
    let mut first = 0;
    while first < segments.len() {
        let n = {
            let slices: Vec<IoSlice<'_>> = segments[first..]
                .iter()
                .take(64)
                .map(|b| IoSlice::new(b))
                .collect();
            w.write_vectored(&slices).await?
        };
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        let mut left = n;
        while left > 0 {
            let seg = &mut segments[first];
            if seg.len() <= left {
                left -= seg.len();
                first += 1;
            } else {
                seg.advance(left);
                left = 0;
            }
        }
        while first < segments.len() && segments[first].is_empty() {
            first += 1;
        }
    }
    Ok(())
}

/// Whether an answer's first bytes are a TLS record header (an alert or a handshake) rather
/// than a Kafka length: a plain client talking to a TLS listener. As a length they would
/// announce more than [`MAX_ANSWER`], so no real answer is mistaken for one.
fn looks_like_tls(head: &[u8]) -> bool {
    matches!(head, [0x15 | 0x16, 0x03, 0x00..=0x04, _])
}

async fn read_answers<R: AsyncRead + Unpin>(
    mut r: R,
    addr: String,
    events: mpsc::Sender<Event>,
    outstanding: &AtomicUsize,
) {
    let closed = |reason: String| {
        Event::Closed(NetError::Io {
            addr: addr.clone(),
            reason,
        })
    };
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut answered = false;
    loop {
        let need = if buf.len() >= 4 {
            let len = u32::from_be_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
            if looks_like_tls(&buf[..4]) {
                let _ = events
                    .send(Event::Closed(NetError::Tls {
                        addr: addr.clone(),
                        reason: "the broker answered in TLS: its listener expects TLS (security.protocol=SSL or SASL_SSL)".into(),
                    }))
                    .await;
                return;
            }
            if outstanding.load(Ordering::Acquire) == 0 {
                // Nothing was asked: whatever this is, it is not kept (on an idle link it
                // would sit here, up to MAX_ANSWER a frame, until the next request).
                let _ = events
                    .send(Event::Closed(NetError::Protocol {
                        addr: addr.clone(),
                        reason: format!(
                            "the broker sent an answer nobody asked for (a frame of {len} bytes)"
                        ),
                    }))
                    .await;
                return;
            }
            if len > MAX_ANSWER {
                let _ = events
                    .send(Event::Closed(NetError::Protocol {
                        addr: addr.clone(),
                        reason: format!(
                            "the broker announced an answer of {len} bytes (at most {MAX_ANSWER} are accepted)"
                        ),
                    }))
                    .await;
                return;
            }
            if buf.len() >= 4 + len {
                buf.advance(4);
                let frame = buf.split_to(len).freeze();
                outstanding.fetch_sub(1, Ordering::AcqRel);
                answered = true;
                if events.send(Event::Answer(frame)).await.is_err() {
                    return;
                }
                continue;
            }
            4 + len - buf.len()
        } else {
            4 - buf.len()
        };
        // Grow as bytes arrive, never by what the broker merely announced.
        buf.reserve(need.min(64 * 1024));
        match r.read_buf(&mut buf).await {
            Ok(0) => {
                let reason = if buf.is_empty() {
                    "the broker closed the connection"
                } else {
                    "the broker closed the connection mid-answer"
                };
                let _ = events.send(closed(reason.into())).await;
                return;
            }
            Ok(_) => {}
            Err(e) => {
                let event = match crate::security::tls::explain_read(&e) {
                    // Our client certificate refused before any answer (TLS 1.3): as much a
                    // refusal as one during the handshake.
                    Some((reason, true)) if !answered => Event::Closed(NetError::Tls {
                        addr: addr.clone(),
                        reason,
                    }),
                    Some((reason, _)) => closed(reason),
                    None => closed(e.to_string()),
                };
                let _ = events.send(event).await;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// Reads one request frame: its API version and correlation id.
    async fn read_request(s: &mut tokio::net::TcpStream) -> (i16, i32) {
        let len = s.read_u32().await.expect("length");
        let mut req = vec![0; len as usize];
        s.read_exact(&mut req).await.expect("request");
        let version = i16::from_be_bytes(req[2..4].try_into().expect("2 bytes"));
        let correlation = i32::from_be_bytes(req[4..8].try_into().expect("4 bytes"));
        (version, correlation)
    }

    /// Writes an ApiVersions answer (its header is v0 at every version) listing `apis`.
    async fn answer_versions(
        s: &mut tokio::net::TcpStream,
        correlation: i32,
        version: i16,
        error_code: i16,
        apis: &[(i16, i16, i16)],
    ) {
        use kafka_protocol::messages::api_versions_response::ApiVersion;
        let mut body = ApiVersionsResponse::default().with_error_code(error_code);
        body.api_keys = apis
            .iter()
            .map(|&(key, min, max)| {
                ApiVersion::default()
                    .with_api_key(key)
                    .with_min_version(min)
                    .with_max_version(max)
            })
            .collect();
        let mut answer = BytesMut::new();
        ResponseHeader::default()
            .with_correlation_id(correlation)
            .encode(&mut answer, 0)
            .expect("header");
        body.encode(&mut answer, version).expect("body");
        s.write_u32(answer.len() as u32).await.expect("length");
        s.write_all(&answer).await.expect("answer");
    }

    /// KIP-511: a broker that does not speak ApiVersions v3 (Kafka before 2.4) answers
    /// UNSUPPORTED_VERSION in v0, listing the versions it speaks; the client asks again at the
    /// highest ApiVersions version listed and goes on with what that answer says.
    #[tokio::test]
    async fn a_broker_without_api_versions_v3_is_asked_again_in_its_version() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let (first, correlation) = read_request(&mut s).await;
            answer_versions(&mut s, correlation, 0, 35, &[(18, 0, 2)]).await;
            let (second, correlation) = read_request(&mut s).await;
            answer_versions(&mut s, correlation, second, 0, &[(18, 0, 2), (0, 3, 8)]).await;
            (first, second)
        });
        let timeout = Duration::from_secs(5);
        let conn = Connection::connect(&addr, "t", timeout, timeout, &ConnSecurity::default())
            .await
            .expect("connected");
        assert_eq!(server.await.expect("server"), (3, 2));
        let produce = conn.version::<kafka_protocol::messages::ProduceRequest>(11);
        assert_eq!(produce.expect("Produce spoken"), 8);
    }

    /// A broker that answers ApiVersions, then sends a frame nobody asked for: the connection
    /// ends with a protocol error naming the broker, and its socket is closed at once (not
    /// when its owner drops it).
    #[tokio::test]
    async fn a_frame_nobody_asked_for_closes_the_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let len = s.read_u32().await.expect("length");
            let mut req = vec![0; len as usize];
            s.read_exact(&mut req).await.expect("request");
            let correlation = i32::from_be_bytes(req[4..8].try_into().expect("4 bytes"));
            let mut answer = BytesMut::new();
            ResponseHeader::default()
                .with_correlation_id(correlation)
                .encode(&mut answer, 0)
                .expect("header");
            ApiVersionsResponse::default()
                .encode(&mut answer, 3)
                .expect("body");
            let mut out = BytesMut::new();
            out.put_u32(answer.len() as u32);
            out.put_slice(&answer);
            // Then a frame of 1 MB, of which only the length and 4 bytes are sent.
            out.put_u32(1_000_000);
            out.put_i32(i32::MAX);
            s.write_all(&out).await.expect("write");
            let mut rest = [0u8; 16];
            tokio::time::timeout(Duration::from_secs(5), s.read(&mut rest)).await
        });
        let timeout = Duration::from_secs(5);
        let mut conn = Connection::connect(&addr, "t", timeout, timeout, &ConnSecurity::default())
            .await
            .expect("connected");
        match tokio::time::timeout(timeout, conn.next_event()).await {
            Ok(Event::Closed(NetError::Protocol { addr: a, reason })) => {
                assert_eq!(a, addr);
                assert!(reason.contains("an answer nobody asked for"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        let read = server
            .await
            .expect("server")
            .expect("the socket closed while the connection is still held");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        drop(conn);
    }
}
