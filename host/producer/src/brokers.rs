//! The producer's connections to the cluster: one per broker, opened on demand.
//!
//! Owns the map from node id to [`Connection`], reconnect backoff, and the bootstrap servers
//! (which have no node id yet, so they get negative ids, as in the Java client). It must not
//! decide what to send; the sender and the metadata refresher ask it for a connection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::connection::{Connection, NetError};

#[derive(Default)]
struct Slot {
    conn: Option<Arc<Connection>>,
    failures: u32,
    retry_at: Option<Instant>,
    last_error: Option<NetError>,
}

/// Connection settings taken from the producer config.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// `client.id`
    pub client_id: String,
    /// `socket.connection.setup.timeout.ms`
    pub setup_timeout: Duration,
    /// `request.timeout.ms`
    pub request_timeout: Duration,
    /// `reconnect.backoff.ms`
    pub backoff: Duration,
    /// `reconnect.backoff.max.ms`
    pub backoff_max: Duration,
}

/// All connections of one producer.
pub struct Brokers {
    slots: Mutex<HashMap<i32, Arc<tokio::sync::Mutex<Slot>>>>,
    bootstrap: Vec<String>,
    options: ConnectOptions,
}

impl Brokers {
    /// A pool that knows only the bootstrap servers.
    pub fn new(bootstrap: Vec<String>, options: ConnectOptions) -> Self {
        Brokers {
            slots: Mutex::new(HashMap::new()),
            bootstrap,
            options,
        }
    }

    /// A live connection to `node` at `addr`, connecting if needed. Fails at once while the
    /// node is in reconnect backoff.
    pub async fn get(&self, node: i32, addr: &str) -> Result<Arc<Connection>, NetError> {
        let slot = self
            .slots
            .lock()
            .expect("brokers lock")
            .entry(node)
            .or_default()
            .clone();
        let mut slot = slot.lock().await;
        if let Some(c) = &slot.conn {
            if !c.is_dead() && c.addr() == addr {
                return Ok(c.clone());
            }
            slot.conn = None;
        }
        if let (Some(at), Some(e)) = (slot.retry_at, &slot.last_error) {
            if Instant::now() < at {
                return Err(e.clone());
            }
        }
        let o = &self.options;
        match Connection::connect(addr, &o.client_id, o.setup_timeout, o.request_timeout).await {
            Ok(c) => {
                slot.conn = Some(c.clone());
                slot.failures = 0;
                slot.retry_at = None;
                slot.last_error = None;
                Ok(c)
            }
            Err(e) => {
                let backoff = o
                    .backoff
                    .saturating_mul(1 << slot.failures.min(10))
                    .min(o.backoff_max);
                slot.failures += 1;
                slot.retry_at = Some(Instant::now() + backoff);
                slot.last_error = Some(e.clone());
                tracing::debug!(node, addr, error = %e, "connect failed");
                Err(e)
            }
        }
    }

    /// Any live connection: first an open one, then the known brokers, then the bootstrap
    /// servers. Returns the last error when none can be had.
    pub async fn any(&self, known: &[(i32, String)]) -> Result<Arc<Connection>, NetError> {
        let open: Vec<(i32, String)> = {
            let slots = self.slots.lock().expect("brokers lock");
            known
                .iter()
                .filter(|(id, _)| slots.contains_key(id))
                .cloned()
                .collect()
        };
        let bootstrap = self
            .bootstrap
            .iter()
            .enumerate()
            .map(|(i, a)| (-1 - i as i32, a.clone()));
        let mut last = None;
        for (node, addr) in open
            .into_iter()
            .chain(known.iter().cloned())
            .chain(bootstrap)
        {
            match self.get(node, &addr).await {
                Ok(c) => return Ok(c),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| NetError::Connect {
            addr: self.bootstrap.join(","),
            reason: "no broker to connect to".into(),
        }))
    }

    /// Drops the connection to `node` so that the next request opens a new one.
    pub fn forget(&self, node: i32) {
        let slot = self.slots.lock().expect("brokers lock").get(&node).cloned();
        if let Some(slot) = slot {
            if let Ok(mut s) = slot.try_lock() {
                if let Some(c) = s.conn.take() {
                    c.kill("closed by the producer");
                }
            }
        }
    }

    /// Closes every connection.
    pub fn close_all(&self) {
        let slots: Vec<_> = self.slots.lock().expect("brokers lock").drain().collect();
        for (_, slot) in slots {
            if let Ok(mut s) = slot.try_lock() {
                if let Some(c) = s.conn.take() {
                    c.kill("producer closed");
                }
            }
        }
    }
}
