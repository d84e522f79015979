//! One TCP connection to one broker: framing, correlation ids, pipelining and ApiVersions.
//!
//! Owns the socket. Requests are written in order by whoever calls [`Connection::request`];
//! a reader task matches responses to requests by correlation id (Kafka answers in order on a
//! connection). Once anything goes wrong the connection is dead for good: every waiting request
//! fails and the caller opens a new one. It must not know what the requests mean.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiVersionsRequest, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// What went wrong talking to a broker. Every variant means the connection is gone
/// (or was never there), so the request may be retried on a new one.
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
    #[error("request to {addr} timed out after {} ms", timeout.as_millis())]
    Timeout {
        /// `host:port`
        addr: String,
        /// The timeout that passed.
        timeout: Duration,
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

struct Pending {
    correlation_id: i32,
    header_version: i16,
    reply: oneshot::Sender<Result<Bytes, NetError>>,
}

/// A live connection to a broker, shared by everything that talks to that broker.
pub struct Connection {
    addr: String,
    client_id: StrBytes,
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    pending: Arc<Mutex<VecDeque<Pending>>>,
    next_correlation: AtomicI32,
    dead: Arc<AtomicBool>,
    versions: HashMap<i16, (i16, i16)>,
    request_timeout: Duration,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Connection {
    /// Connects, starts the reader and negotiates API versions.
    pub async fn connect(
        addr: &str,
        client_id: &str,
        setup_timeout: Duration,
        request_timeout: Duration,
    ) -> Result<Arc<Connection>, NetError> {
        let connect_err = |reason: String| NetError::Connect {
            addr: addr.to_string(),
            reason,
        };
        let stream = tokio::time::timeout(setup_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| connect_err(format!("timed out after {} ms", setup_timeout.as_millis())))?
            .map_err(|e| connect_err(e.to_string()))?;
        stream.set_nodelay(true).ok();
        let (read, write) = stream.into_split();
        let pending = Arc::new(Mutex::new(VecDeque::new()));
        let dead = Arc::new(AtomicBool::new(false));
        tokio::spawn(read_responses(
            read,
            addr.to_string(),
            pending.clone(),
            dead.clone(),
        ));
        let mut conn = Connection {
            addr: addr.to_string(),
            client_id: StrBytes::from_string(client_id.to_string()),
            writer: tokio::sync::Mutex::new(write),
            pending,
            next_correlation: AtomicI32::new(0),
            dead,
            versions: HashMap::new(),
            request_timeout,
        };
        conn.versions = conn.negotiate().await?;
        Ok(Arc::new(conn))
    }

    /// `host:port` of the broker.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Whether the connection failed and must be replaced.
    pub fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Acquire)
    }

    /// The highest version of `R` both sides speak, capped at `our_max`.
    pub fn version<R: Request>(&self, our_max: i16) -> Result<i16, NetError> {
        let ours = R::VERSIONS;
        let (min, max) =
            self.versions.get(&R::KEY).copied().ok_or_else(|| {
                self.protocol(format!("broker does not support API key {}", R::KEY))
            })?;
        let v = max.min(ours.max).min(our_max);
        if v < min.max(ours.min) {
            return Err(self.protocol(format!(
                "no common version for API key {} (broker {min}..={max}, client {}..={})",
                R::KEY,
                ours.min,
                ours.max.min(our_max)
            )));
        }
        Ok(v)
    }

    fn protocol(&self, reason: String) -> NetError {
        NetError::Protocol {
            addr: self.addr.clone(),
            reason,
        }
    }

    async fn negotiate(&self) -> Result<HashMap<i16, (i16, i16)>, NetError> {
        let mut req = ApiVersionsRequest::default();
        req.client_software_name = StrBytes::from_static_str("wafka");
        req.client_software_version = StrBytes::from_static_str(env!("CARGO_PKG_VERSION"));
        let mut resp = self.request(&req, 3).await?;
        if resp.error_code == 35 {
            // UNSUPPORTED_VERSION: the broker answered in v0 and lists what it speaks.
            resp = self.request(&ApiVersionsRequest::default(), 0).await?;
        }
        if resp.error_code != 0 {
            return Err(self.protocol(format!(
                "ApiVersions failed with {}",
                crate::error::kafka_error_name(resp.error_code)
            )));
        }
        Ok(resp
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect())
    }

    fn frame<R: Request>(
        &self,
        req: &R,
        version: i16,
        correlation_id: i32,
    ) -> Result<Bytes, NetError> {
        let mut header = RequestHeader::default();
        header.request_api_key = R::KEY;
        header.request_api_version = version;
        header.correlation_id = correlation_id;
        header.client_id = Some(self.client_id.clone());
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
        Ok(buf.freeze())
    }

    /// Writes `frame`; registers `reply` for its answer first when one is expected.
    async fn write(&self, frame: Bytes, pending: Option<Pending>) -> Result<(), NetError> {
        let mut w = self.writer.lock().await;
        if self.is_dead() {
            return Err(NetError::Io {
                addr: self.addr.clone(),
                reason: "connection closed".into(),
            });
        }
        if let Some(p) = pending {
            self.pending.lock().expect("pending lock").push_back(p);
        }
        if let Err(e) = w.write_all(&frame).await {
            self.kill(&e.to_string());
            return Err(NetError::Io {
                addr: self.addr.clone(),
                reason: e.to_string(),
            });
        }
        Ok(())
    }

    /// Sends `req` at `version` and waits for the broker's answer.
    pub async fn request<R: Request>(
        &self,
        req: &R,
        version: i16,
    ) -> Result<R::Response, NetError> {
        self.start(req, version).await?.wait(self).await
    }

    /// Writes `req` and returns at once; the answer is awaited with [`PendingResponse::wait`].
    /// Requests started one after the other reach the broker in that order.
    pub async fn start<R: Request>(
        &self,
        req: &R,
        version: i16,
    ) -> Result<PendingResponse<R>, NetError> {
        let correlation_id = self.next_correlation.fetch_add(1, Ordering::Relaxed);
        let frame = self.frame(req, version, correlation_id)?;
        let (tx, rx) = oneshot::channel();
        let pending = Pending {
            correlation_id,
            header_version: <R::Response as HeaderVersion>::header_version(version),
            reply: tx,
        };
        self.write(frame, Some(pending)).await?;
        Ok(PendingResponse {
            rx,
            version,
            _request: std::marker::PhantomData,
        })
    }

    /// Sends `req` without waiting for an answer (a Produce request with `acks=0`).
    pub async fn send_only<R: Request>(&self, req: &R, version: i16) -> Result<(), NetError> {
        let correlation_id = self.next_correlation.fetch_add(1, Ordering::Relaxed);
        let frame = self.frame(req, version, correlation_id)?;
        self.write(frame, None).await
    }

    /// Marks the connection dead and fails everything waiting on it.
    pub fn kill(&self, reason: &str) {
        kill(&self.dead, &self.pending, &self.addr, reason);
    }
}

/// A request on the wire whose answer has not been read yet.
pub struct PendingResponse<R: Request> {
    rx: oneshot::Receiver<Result<Bytes, NetError>>,
    version: i16,
    _request: std::marker::PhantomData<fn() -> R>,
}

impl<R: Request> PendingResponse<R> {
    /// Waits up to `request.timeout.ms` for the answer and decodes it. A timeout kills the
    /// connection: later answers on it can no longer be matched with confidence.
    pub async fn wait(self, conn: &Connection) -> Result<R::Response, NetError> {
        let mut body = match tokio::time::timeout(conn.request_timeout, self.rx).await {
            Ok(Ok(r)) => r?,
            Ok(Err(_)) => {
                return Err(NetError::Io {
                    addr: conn.addr.clone(),
                    reason: "connection closed".into(),
                })
            }
            Err(_) => {
                conn.kill("request timed out");
                return Err(NetError::Timeout {
                    addr: conn.addr.clone(),
                    timeout: conn.request_timeout,
                });
            }
        };
        R::Response::decode(&mut body, self.version).map_err(|e| {
            conn.protocol(format!("cannot decode response to API key {}: {e}", R::KEY))
        })
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.kill("connection dropped");
        // Dropping the write half shuts the socket down; the reader then ends.
    }
}

fn kill(dead: &AtomicBool, pending: &Mutex<VecDeque<Pending>>, addr: &str, reason: &str) {
    dead.store(true, Ordering::Release);
    let waiting: Vec<Pending> = pending.lock().expect("pending lock").drain(..).collect();
    for p in waiting {
        let _ = p.reply.send(Err(NetError::Io {
            addr: addr.to_string(),
            reason: reason.to_string(),
        }));
    }
}

async fn read_responses(
    mut read: tokio::net::tcp::OwnedReadHalf,
    addr: String,
    pending: Arc<Mutex<VecDeque<Pending>>>,
    dead: Arc<AtomicBool>,
) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let reason = loop {
        // Frame: 4-byte length, then the response header and body.
        while buf.len() < 4 {
            match read.read_buf(&mut buf).await {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    kill(&dead, &pending, &addr, &e.to_string());
                    return;
                }
            }
        }
        if buf.len() < 4 {
            break "broker closed the connection".to_string();
        }
        let len = u32::from_be_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
        if len > 512 * 1024 * 1024 {
            break format!("response of {len} bytes is not plausible");
        }
        buf.reserve(4 + len);
        let mut eof = false;
        while buf.len() < 4 + len {
            match read.read_buf(&mut buf).await {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    kill(&dead, &pending, &addr, &e.to_string());
                    return;
                }
            }
        }
        if eof {
            break "broker closed the connection mid-response".to_string();
        }
        buf.advance(4);
        let mut frame = buf.split_to(len).freeze();
        let Some(p) = pending.lock().expect("pending lock").pop_front() else {
            break "response to no request".to_string();
        };
        let header = match ResponseHeader::decode(&mut frame, p.header_version) {
            Ok(h) => h,
            Err(e) => break format!("bad response header: {e}"),
        };
        if header.correlation_id != p.correlation_id {
            let reason = format!(
                "correlation id {} does not match request {}",
                header.correlation_id, p.correlation_id
            );
            let _ = p.reply.send(Err(NetError::Protocol {
                addr: addr.clone(),
                reason: reason.clone(),
            }));
            break reason;
        }
        let _ = p.reply.send(Ok(frame));
    };
    kill(&dead, &pending, &addr, &reason);
}
