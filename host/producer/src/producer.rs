//! The producer: the public entry point.
//!
//! Owns [`Producer`], a cheap handle on the core (config, queues, sinks, metadata) with a
//! default owner, and the lifecycle: the core starts with the first handle and stops when the
//! last handle (producer or owner) goes away or [`Producer::close`] is called. `send` returns
//! once a record is in a batch; the three ways of sending are: drop the [`Delivery`] (fire and
//! forget), `.await` it (wait for the ack), or pass a callback / read an owner's delivery
//! reports. It must not hold state of its own beyond the handles.

use std::sync::Arc;
use std::time::Duration;

use crate::config::ProducerConfig;
use crate::core::{Core, Guard, ProducerStats};
use crate::delivery::{Callback, Delivery};
use crate::error::{ConfigError, ProduceError};
use crate::ledger::OwnerAccount;
use crate::owner::{Owner, OwnerOptions, MAX_REPORTS};
use crate::record::Record;

/// A Kafka producer. Cheap to clone; all clones share one set of connections and batches.
/// Must be created inside a tokio runtime.
#[derive(Clone)]
pub struct Producer {
    core: Arc<Core>,
    guard: Arc<Guard>,
    default_owner: Arc<OwnerAccount>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("bootstrap", &self.core.config.bootstrap_servers)
            .finish()
    }
}

impl Producer {
    /// Starts a producer from properties (`bootstrap.servers` is required).
    pub fn from_properties<I, K, V>(props: I) -> Result<Producer, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        Ok(Producer::new(ProducerConfig::from_properties(props)?))
    }

    /// Starts a producer. Connections are opened lazily, on the first send.
    ///
    /// Its tasks (one per broker, metadata, housekeeping) run on the tokio runtime that is
    /// current here, whichever runtime later sends through it: to keep them apart from other
    /// work (a host running plugins, say), create the producer inside a runtime of its own.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn new(config: ProducerConfig) -> Producer {
        let core = Core::start(config);
        let default_owner = core.register("default".into(), None, None, None, None);
        Producer {
            guard: Arc::new(Guard(core.clone())),
            core,
            default_owner,
        }
    }

    /// The settings in effect.
    pub fn config(&self) -> &ProducerConfig {
        &self.core.config
    }

    /// A new owner: records sent through it can be flushed, reported and counted apart from
    /// other owners' records, while sharing batches with them.
    pub fn owner(&self, options: OwnerOptions) -> Owner {
        Owner {
            account: self.core.register(
                options.name,
                options.memory_limit,
                options.share.map(|s| s.0),
                options
                    .delivery_reports
                    .then(|| options.max_reports.unwrap_or(MAX_REPORTS).min(MAX_REPORTS)),
                options.outcomes,
            ),
            core: self.core.clone(),
            _guard: self.guard.clone(),
        }
    }

    /// Whether the cluster answers: a metadata answer from the last second counts, else it
    /// asks for metadata now and waits at most `timeout` (an attempt in progress counts;
    /// concurrent probes share one). `Err` says why not. For health checks: at most one
    /// metadata request a second.
    pub async fn probe(&self, timeout: Duration) -> Result<(), String> {
        self.core
            .metadata
            .probe(std::time::Instant::now() + timeout)
            .await
    }

    /// Queues `record` for the producer's default owner. See [`Owner::send`].
    pub async fn send(&self, record: &Record<'_>) -> Result<Delivery, ProduceError> {
        self.core.send(&self.default_owner, record, None).await
    }

    /// Queues `record` and calls `callback` once with its result.
    pub async fn send_with_callback(
        &self,
        record: &Record<'_>,
        callback: Callback,
    ) -> Result<Delivery, ProduceError> {
        self.core
            .send(&self.default_owner, record, Some(callback))
            .await
    }

    /// Sends at once whatever lingers and waits until every record queued before the call, by
    /// any owner, is acknowledged or failed (every record ends within about
    /// `delivery.timeout.ms`).
    pub async fn flush(&self) {
        let _ = self.core.flush(self.core.all_pending(), None).await;
    }

    /// [`Producer::flush`], giving up after `timeout` with [`ProduceError::FlushTimeout`].
    pub async fn flush_timeout(&self, timeout: Duration) -> Result<(), ProduceError> {
        self.core
            .flush(self.core.all_pending(), Some(timeout))
            .await
    }

    /// Refuses new records, waits for the pending ones (at most `delivery.timeout.ms` +
    /// `request.timeout.ms`), then stops the background tasks and connections.
    pub async fn close(&self) {
        let _ = self.core.close(self.core.default_close_timeout()).await;
    }

    /// Like [`Producer::close`], waiting at most `timeout`: records still pending then end with
    /// [`ProduceError::Closed`] (those in flight may still be stored by the broker), and the
    /// result says how many batches were left.
    pub async fn close_timeout(&self, timeout: Duration) -> Result<(), ProduceError> {
        self.core.close(timeout).await
    }

    /// What the producer did so far.
    pub fn stats(&self) -> ProducerStats {
        self.core.stats()
    }
}
