//! Owners: who a record belongs to, so that flush, delivery reports and memory can be scoped.
//!
//! Owns [`Owner`], the handle a caller (later: one plugin instance) gets from the producer, and
//! its bookkeeping: bytes it has buffered, its memory quota, the batches holding its records
//! that are not done yet, its queue of delivery reports and the first failure since its last
//! flush. Owners' records to the same partition share batches; a batch lists the owners in it.
//! It must not send anything.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::delivery::{BatchOutcome, Callback, Delivery, DeliveryReport};
use crate::error::ProduceError;
use crate::producer::Shared;
use crate::record::Record;

/// How an owner is set up.
#[derive(Debug, Clone, Default)]
pub struct OwnerOptions {
    /// A name for errors and logs (e.g. a tenant or plugin name).
    pub name: String,
    /// Most bytes this owner may have buffered at once; `None` for no limit besides
    /// `buffer.memory`. Over the quota, `send` fails at once with `QuotaExceeded`.
    pub memory_limit: Option<usize>,
    /// Whether to queue a [`DeliveryReport`] for every record, to take with
    /// [`Owner::take_reports`].
    pub delivery_reports: bool,
}

#[derive(Debug)]
pub(crate) struct OwnerState {
    pub(crate) name: String,
    pub(crate) memory_limit: Option<usize>,
    pub(crate) reports_enabled: bool,
    pub(crate) buffered: AtomicUsize,
    pub(crate) next_id: AtomicU64,
    /// Batches holding this owner's records, and the length at which to prune done ones.
    pub(crate) incomplete: Mutex<(Vec<Arc<BatchOutcome>>, usize)>,
    pub(crate) reports: Mutex<VecDeque<DeliveryReport>>,
    pub(crate) first_error: Mutex<Option<ProduceError>>,
    pub(crate) closed: AtomicBool,
    pub(crate) reports_dropped: AtomicU64,
}

/// Most delivery reports an owner keeps undrained; older ones are dropped (and counted).
pub const MAX_REPORTS: usize = 65_536;

impl OwnerState {
    pub(crate) fn new(options: OwnerOptions) -> Arc<Self> {
        Arc::new(OwnerState {
            name: options.name,
            memory_limit: options.memory_limit,
            reports_enabled: options.delivery_reports,
            buffered: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            incomplete: Mutex::new((Vec::new(), 64)),
            reports: Mutex::new(VecDeque::new()),
            first_error: Mutex::new(None),
            closed: AtomicBool::new(false),
            reports_dropped: AtomicU64::new(0),
        })
    }

    /// Remembers a batch that now holds one of this owner's records.
    pub(crate) fn track(&self, outcome: &Arc<BatchOutcome>) {
        let mut guard = self.incomplete.lock().expect("owner lock");
        let (v, prune_at) = &mut *guard;
        // Prune done batches only when the list doubled since the last prune: amortized O(1)
        // even with thousands of batches in flight.
        if v.len() >= *prune_at {
            v.retain(|b| !b.is_done());
            *prune_at = (v.len() * 2).max(64);
        }
        v.push(outcome.clone());
    }

    pub(crate) fn record_failure(&self, e: &ProduceError) {
        let mut first = self.first_error.lock().expect("owner lock");
        if first.is_none() {
            *first = Some(e.clone());
        }
    }

    /// Queues reports, keeping the newest [`MAX_REPORTS`] when the owner does not drain them.
    pub(crate) fn push_reports(&self, reports: impl Iterator<Item = DeliveryReport>) {
        let mut q = self.reports.lock().expect("owner lock");
        q.extend(reports);
        if q.len() > MAX_REPORTS {
            let excess = q.len() - MAX_REPORTS;
            q.drain(..excess);
            self.reports_dropped
                .fetch_add(excess as u64, Ordering::Relaxed);
        }
    }

    /// Batches holding this owner's records that are not done yet.
    pub(crate) fn pending(&self) -> Vec<Arc<BatchOutcome>> {
        let mut guard = self.incomplete.lock().expect("owner lock");
        let (v, prune_at) = &mut *guard;
        v.retain(|b| !b.is_done());
        *prune_at = (v.len() * 2).max(64);
        v.clone()
    }
}

/// A handle for sending records that belong to one party. Cheap to clone.
#[derive(Clone)]
pub struct Owner {
    pub(crate) state: Arc<OwnerState>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) _guard: Arc<dyn std::any::Any + Send + Sync>,
}

impl std::fmt::Debug for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Owner")
            .field("name", &self.state.name)
            .finish()
    }
}

impl Owner {
    /// The owner's name.
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// Queues `record`. Returns once the record is in a batch (waiting up to `max.block.ms` for
    /// metadata or buffer memory); the returned [`Delivery`] resolves when the broker answers.
    pub async fn send(&self, record: &Record<'_>) -> Result<Delivery, ProduceError> {
        self.shared.send(&self.state, record, None).await
    }

    /// Queues `record` and calls `callback` once with its result.
    pub async fn send_with_callback(
        &self,
        record: &Record<'_>,
        callback: Callback,
    ) -> Result<Delivery, ProduceError> {
        self.shared.send(&self.state, record, Some(callback)).await
    }

    /// Sends at once whatever lingers and waits until every record this owner queued before
    /// the call is acknowledged or failed. Returns the first failure among this owner's records
    /// since the previous flush, and forgets it.
    pub async fn flush(&self) -> Result<(), ProduceError> {
        let pending = self.state.pending();
        self.shared.flush_batches(pending).await;
        match self.state.first_error.lock().expect("owner lock").take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Sends at once whatever lingers and waits until every record this owner queued before
    /// the call is acknowledged or failed, without taking the failure [`Owner::flush`] reports.
    pub async fn settle(&self) {
        let pending = self.state.pending();
        self.shared.flush_batches(pending).await;
    }

    /// Delivery reports queued since the last call (only with `delivery_reports` enabled).
    pub fn take_reports(&self, max: usize) -> Vec<DeliveryReport> {
        let mut q = self.state.reports.lock().expect("owner lock");
        let n = q.len().min(max);
        q.drain(..n).collect()
    }

    /// Reports dropped because more than [`MAX_REPORTS`] were waiting.
    pub fn reports_dropped(&self) -> u64 {
        self.state.reports_dropped.load(Ordering::Relaxed)
    }

    /// Bytes of this owner's records in buffers now (queued or in flight).
    pub fn buffered_bytes(&self) -> usize {
        self.state.buffered.load(Ordering::Relaxed)
    }

    /// Records this owner queued so far.
    pub fn records_sent(&self) -> u64 {
        self.state.next_id.load(Ordering::Relaxed)
    }

    /// Refuses further sends from this owner. Records already queued are still delivered.
    pub fn close(&self) {
        self.state.closed.store(true, Ordering::Relaxed);
    }
}
