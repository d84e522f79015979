//! Owners: who a record belongs to, so that flush, delivery reports and memory are scoped.
//!
//! Owns [`Owner`], the handle a caller (a plugin instance, a tenant) gets from the producer.
//! Owners' records to the same partition share batches; an owner's flush sends at once only
//! the batches that hold its records and waits only for them; its reports and its memory
//! quota are its own (the account lives in the ledger). It must not send anything itself.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::accumulator::first_capacity;
use crate::batch::{record_size_bound, BATCH_HEADER_LEN};
use crate::config::ProducerConfig;
use crate::core::{Core, Guard};
use crate::delivery::{Callback, Delivery, DeliveryReport};
use crate::error::ProduceError;
use crate::ledger::{OwnerAccount, SharedQuota};
use crate::record::Record;

pub use crate::ledger::MAX_REPORTS;

/// How an owner is set up.
#[derive(Debug, Clone, Default)]
pub struct OwnerOptions {
    /// A name for errors and logs (e.g. a tenant or plugin name).
    pub name: String,
    /// Most bytes this owner may have buffered at once; `None` for no limit besides
    /// `buffer.memory`. Over the quota, `send` fails at once with `QuotaExceeded`.
    pub memory_limit: Option<usize>,
    /// A memory quota this owner counts against together with other owners (a tenant's
    /// instances): over it, `send` fails at once with `QuotaExceeded` naming the share.
    pub share: Option<MemoryShare>,
    /// Whether to queue a [`DeliveryReport`] for every record, to take with
    /// [`Owner::take_reports`].
    pub delivery_reports: bool,
    /// Most reports kept undrained (the oldest are dropped, and counted); `None` for
    /// [`MAX_REPORTS`].
    pub max_reports: Option<usize>,
    /// Told how this owner's records ended, a batch at a time (for counting them), if set.
    pub outcomes: Option<Arc<dyn Outcomes>>,
}

/// Told how an owner's records ended (acknowledged, or failed and why), a batch — or each
/// part of a split batch — at a time, with the number of the owner's records in it: counts
/// without a report or a callback per record. Called on the producer's threads while the
/// batch settles, before its flushes return: it must be quick (an atomic add), must not block
/// and must not panic.
pub trait Outcomes: Send + Sync + std::fmt::Debug {
    /// `n` of the owner's records were acknowledged.
    fn delivered(&self, n: u64);
    /// `n` of the owner's records failed with `error`.
    fn failed(&self, n: u64, error: &ProduceError);
}

/// A memory quota shared by several owners: the bytes all of them have buffered together
/// may not pass its limit. Cheap to clone; every clone is the same quota.
#[derive(Debug, Clone)]
pub struct MemoryShare(pub(crate) Arc<SharedQuota>);

impl MemoryShare {
    /// A quota of `limit` bytes called `name` (in errors).
    pub fn new(name: impl Into<String>, limit: usize) -> Self {
        MemoryShare(Arc::new(SharedQuota {
            name: name.into(),
            limit: limit.into(),
            buffered: Default::default(),
        }))
    }

    /// The least limit with which an owner of a share can always send a record while nothing
    /// else holds the share: any record `config` accepts (`payload` `None`: up to
    /// `max.request.size`), or any whose key, value and headers hold at most `payload` bytes
    /// with at most `headers` headers. That is the record's bytes plus the rest of the
    /// buffer of a batch of its own (about a KiB at least), all a share ever pays for one
    /// record: growing an open batch is paid by the grower only if it can (a growth the
    /// share cannot pay sends the batch as it is, and the record opens a new one), so
    /// `batch.size` does not enter.
    pub fn least_limit(config: &ProducerConfig, payload: Option<usize>, headers: usize) -> usize {
        // A record whose batch would pass max.request.size or buffer.memory is refused before
        // its share is asked.
        let cap = config.max_request_size.min(config.buffer_memory);
        let batch = match payload {
            Some(p) => BATCH_HEADER_LEN
                .saturating_add(record_size_bound(p, headers))
                .min(cap),
            None => cap,
        };
        first_capacity(batch, config.batch_size)
    }

    /// Bytes the owners sharing it have buffered now.
    pub fn buffered_bytes(&self) -> usize {
        self.0.buffered.load(Ordering::Relaxed)
    }

    /// The limit, in bytes.
    pub fn limit(&self) -> usize {
        self.0.limit.load(Ordering::Relaxed)
    }

    /// A new limit, from the next send on (bytes already held stay held).
    pub fn set_limit(&self, limit: usize) {
        self.0.limit.store(limit, Ordering::Relaxed);
    }
}

/// A handle for sending records that belong to one party. Cheap to clone.
#[derive(Clone)]
pub struct Owner {
    pub(crate) account: Arc<OwnerAccount>,
    pub(crate) core: Arc<Core>,
    pub(crate) _guard: Arc<Guard>,
}

impl std::fmt::Debug for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Owner")
            .field("name", &self.account.name)
            .finish()
    }
}

impl Owner {
    /// The owner's name.
    pub fn name(&self) -> &str {
        &self.account.name
    }

    /// Queues `record`. Returns once the record is in a batch (waiting up to `max.block.ms` for
    /// metadata and buffer memory together); the returned [`Delivery`] resolves when the broker
    /// answers.
    pub async fn send(&self, record: &Record<'_>) -> Result<Delivery, ProduceError> {
        self.core.send(&self.account, record, None).await
    }

    /// Queues `record` and calls `callback` once with its result.
    pub async fn send_with_callback(
        &self,
        record: &Record<'_>,
        callback: Callback,
    ) -> Result<Delivery, ProduceError> {
        self.core.send(&self.account, record, Some(callback)).await
    }

    /// Sends at once this owner's lingering batches (only those) and waits until every record
    /// this owner queued before the call is acknowledged or failed (at most about
    /// `delivery.timeout.ms`). Returns the first failure among this owner's records since the
    /// previous flush, and forgets it.
    pub async fn flush(&self) -> Result<(), ProduceError> {
        self.settle().await;
        match self.account.take_first_error() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// [`Owner::flush`], giving up after `timeout` with [`ProduceError::FlushTimeout`] (the
    /// records go on).
    pub async fn flush_timeout(&self, timeout: Duration) -> Result<(), ProduceError> {
        self.core
            .flush(self.account.pending(), Some(timeout))
            .await?;
        match self.account.take_first_error() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Like [`Owner::flush`], without taking the failure it reports.
    pub async fn settle(&self) {
        let _ = self.core.flush(self.account.pending(), None).await;
    }

    /// Delivery reports queued since the last call (only with `delivery_reports` enabled).
    pub fn take_reports(&self, max: usize) -> Vec<DeliveryReport> {
        self.account.take_reports(max)
    }

    /// Reports dropped because more than [`MAX_REPORTS`] were waiting.
    pub fn reports_dropped(&self) -> u64 {
        self.account.reports_dropped.load(Ordering::Relaxed)
    }

    /// Bytes of this owner's records in buffers now (queued or in flight).
    pub fn buffered_bytes(&self) -> usize {
        self.account.buffered.load(Ordering::Relaxed)
    }

    /// Records this owner queued so far.
    pub fn records_sent(&self) -> u64 {
        self.account.next_id.load(Ordering::Relaxed)
    }

    /// Refuses further sends from this owner. Records already queued are still delivered.
    pub fn close(&self) {
        self.account.closed.store(true, Ordering::Relaxed);
    }
}
