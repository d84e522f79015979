//! The control link: one connection to any broker, for the requests that are not tied to a
//! partition's leader (Metadata, InitProducerId).
//!
//! Owns that connection and the choice of broker: the one that answered last, then the known
//! brokers and the bootstrap servers in turn, at most [`MAX_NEW_TRIES`] of them per request,
//! each attempt bounded (connection setup by `socket.connection.setup.timeout.ms`, the request
//! by `request.timeout.ms`), so a metadata answer listing thousands of unreachable brokers
//! cannot hold a request for hours; the next request goes on where this one stopped. A broker
//! that fails is left for the next. Each user (the metadata refresher, the producer id fetch) has a
//! link of its own, so a slow answer to one never holds up the other. It must not interpret
//! the answers.

use std::time::Duration;

use kafka_protocol::protocol::Request;

use crate::connection::{ConnSecurity, Connection, NetError};

/// Most brokers a request connects to before it gives up (the next request tries the next
/// ones).
pub(crate) const MAX_NEW_TRIES: usize = 4;

/// Connection settings taken from the producer config.
#[derive(Debug, Clone)]
pub(crate) struct ConnectOptions {
    /// `client.id`
    pub(crate) client_id: String,
    /// `socket.connection.setup.timeout.ms`: TCP connect and ApiVersions.
    pub(crate) setup_timeout: Duration,
    /// `request.timeout.ms`
    pub(crate) request_timeout: Duration,
    /// `reconnect.backoff.ms`
    pub(crate) backoff: Duration,
    /// `reconnect.backoff.max.ms`
    pub(crate) backoff_max: Duration,
    /// TLS and SASL, as `security.protocol` says.
    pub(crate) security: ConnSecurity,
}

impl ConnectOptions {
    /// Opens a connection to `addr` within the setup timeout.
    pub(crate) async fn connect(&self, addr: &str) -> Result<Connection, NetError> {
        Connection::connect(
            addr,
            &self.client_id,
            self.setup_timeout,
            self.setup_timeout,
            &self.security,
        )
        .await
    }

    /// The wait before the `failures`-th reconnect (exponential, with ±20% jitter).
    pub(crate) fn backoff(&self, failures: u32) -> Duration {
        let base = self
            .backoff
            .saturating_mul(1 << failures.min(16))
            .min(self.backoff_max);
        base.mul_f64(rand::random_range(0.8..1.2))
    }
}

/// A connection to some broker of the cluster.
pub(crate) struct ControlLink {
    options: ConnectOptions,
    bootstrap: Vec<String>,
    conn: Option<Connection>,
    /// Where the next attempt starts among the candidates.
    next: usize,
}

impl ControlLink {
    pub(crate) fn new(options: ConnectOptions, bootstrap: Vec<String>) -> Self {
        ControlLink {
            options,
            bootstrap,
            conn: None,
            next: 0,
        }
    }

    /// Sends the request `build` makes for a connection (it picks the version) and returns the
    /// answer. Tries the current connection, then up to [`MAX_NEW_TRIES`] of `known` and the
    /// bootstrap servers, in turn; returns the last error when none answered (the last
    /// refusal, if any broker refused our security settings).
    pub(crate) async fn request<R, F>(
        &mut self,
        known: &[String],
        build: F,
    ) -> Result<R::Response, NetError>
    where
        R: Request,
        F: Fn(&Connection) -> Result<(R, i16), NetError>,
    {
        let timeout = self.options.request_timeout;
        // A connection whose SASL session ends soon (KIP-368) is replaced.
        if self
            .conn
            .as_ref()
            .and_then(Connection::renew_at)
            .is_some_and(|t| t <= std::time::Instant::now())
        {
            self.conn = None;
        }
        if let Some(conn) = self.conn.as_mut() {
            let r = match build(conn) {
                Ok((req, version)) => conn.request(&req, version, timeout).await,
                Err(e) => Err(e),
            };
            match r {
                Ok(resp) => return Ok(resp),
                Err(e) => {
                    tracing::debug!(addr = conn.addr(), error = %e, "control request failed");
                    self.conn = None;
                }
            }
        }
        let mut candidates: Vec<&str> = known.iter().map(String::as_str).collect();
        for b in &self.bootstrap {
            if !candidates.contains(&b.as_str()) {
                candidates.push(b);
            }
        }
        let mut last = NetError::Connect {
            addr: self.bootstrap.join(","),
            reason: "no broker to connect to".into(),
        };
        let n = candidates.len();
        let tries = n.min(MAX_NEW_TRIES);
        for i in 0..tries {
            let addr = candidates[(self.next + i) % n];
            let attempt = async {
                let mut conn = self.options.connect(addr).await?;
                let (req, version) = build(&conn)?;
                let resp = conn.request(&req, version, timeout).await?;
                Ok::<_, NetError>((conn, resp))
            };
            match attempt.await {
                Ok((conn, resp)) => {
                    self.conn = Some(conn);
                    self.next = (self.next + i) % n;
                    return Ok(resp);
                }
                Err(e) => {
                    tracing::debug!(addr, error = %e, "control request failed");
                    // A refusal (credentials, certificates) says more than another broker
                    // being down: keep it.
                    if e.is_refusal() || !last.is_refusal() {
                        last = e;
                    }
                }
            }
        }
        self.next = (self.next + tries.max(1)) % n.max(1);
        Err(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::MetadataRequest;

    /// A metadata answer may list thousands of brokers: a request that finds none of them
    /// answering gives up after a few, not after trying each (here: 2,000 × 100 ms).
    #[tokio::test]
    async fn a_request_tries_a_few_brokers_not_thousands() {
        // Accepts connections and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let accepted = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let options = ConnectOptions {
            client_id: "t".into(),
            setup_timeout: Duration::from_millis(100),
            request_timeout: Duration::from_millis(100),
            backoff: Duration::from_millis(10),
            backoff_max: Duration::from_millis(10),
            security: Default::default(),
        };
        let mut link = ControlLink::new(options, vec![addr.clone()]);
        let known: Vec<String> = (0..2000).map(|_| addr.clone()).collect();
        let started = std::time::Instant::now();
        let r = link
            .request::<MetadataRequest, _>(&known, |_| Ok((MetadataRequest::default(), 1)))
            .await;
        let took = started.elapsed();
        assert!(
            matches!(
                &r,
                Err(NetError::Timeout { .. }) | Err(NetError::Connect { .. })
            ),
            "{r:?}"
        );
        assert!(
            took < Duration::from_secs(5),
            "gave up after {took:?} (4 tries × 100 ms expected)"
        );
        accepted.abort();
    }
}
