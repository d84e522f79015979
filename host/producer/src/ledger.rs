//! Where every batch settles: the memory it gives back, the counts of what happened, its
//! owners' accounts, their reports, outcome counts and callbacks, and the futures of its
//! records.
//!
//! A leaf module: it knows owners' accounts and batch outcomes, nothing about partitions,
//! brokers or requests. Its guarantee is the producer's: **every record ends in exactly one
//! result**. A [`Completion`] that is dropped without a result (its batch was lost in a
//! shutdown, a task ended, a queue was dropped) settles itself with [`ProduceError::Closed`];
//! a callback that panics is caught, logged and counted, and never leaves a lock poisoned or
//! a batch half settled. A batch split in two after MESSAGE_TOO_LARGE settles through a
//! [`Settle::Part`] per half, joined back into the batch's one outcome.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Semaphore;

use crate::delivery::{BatchAck, BatchOutcome, Callback, DeliveryReport, Settled};
use crate::error::ProduceError;

/// `buffer.memory` and the producer-wide counts of what happened to records.
#[derive(Debug)]
pub(crate) struct Ledger {
    /// `buffer.memory`, as a semaphore of bytes: a batch holds its buffer's bytes until done.
    pub(crate) memory: Semaphore,
    /// Sends waiting for memory now: lingering batches leave at once to free it.
    pressure: AtomicUsize,
    pub(crate) batches_acked: AtomicU64,
    pub(crate) records_acked: AtomicU64,
    pub(crate) records_failed: AtomicU64,
    pub(crate) callback_panics: AtomicU64,
}

impl Ledger {
    pub(crate) fn new(buffer_memory: usize) -> Arc<Self> {
        Arc::new(Ledger {
            memory: Semaphore::new(buffer_memory.min(Semaphore::MAX_PERMITS)),
            pressure: AtomicUsize::new(0),
            batches_acked: AtomicU64::new(0),
            records_acked: AtomicU64::new(0),
            records_failed: AtomicU64::new(0),
            callback_panics: AtomicU64::new(0),
        })
    }

    /// Whether a send waits for memory (lingering batches should leave now).
    pub(crate) fn under_pressure(&self) -> bool {
        self.pressure.load(Ordering::Acquire) > 0
    }

    /// Marks a send as waiting for memory until the guard drops (also when the waiting send
    /// is cancelled).
    pub(crate) fn pressure_guard(self: &Arc<Self>) -> PressureGuard {
        self.pressure.fetch_add(1, Ordering::AcqRel);
        PressureGuard(self.clone())
    }
}

/// See [`Ledger::pressure_guard`].
pub(crate) struct PressureGuard(Arc<Ledger>);

impl Drop for PressureGuard {
    fn drop(&mut self) {
        self.0.pressure.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Most delivery reports an owner keeps undrained; older ones are dropped (and counted).
pub const MAX_REPORTS: usize = 65_536;

/// A memory quota several owners count against together (a tenant's plugin instances).
#[derive(Debug)]
pub(crate) struct SharedQuota {
    pub(crate) name: String,
    /// Can change while owners use it (a tenant's share after a reload).
    pub(crate) limit: AtomicUsize,
    pub(crate) buffered: AtomicUsize,
}

impl SharedQuota {
    /// Takes `bytes` of the quota if they fit (atomically: concurrent sends cannot all pass a
    /// check and then overrun it); the hold gives them back when dropped, unless
    /// [`ShareHold::keep`] hands them to the batch the record went into.
    pub(crate) fn take(&self, bytes: usize) -> Option<ShareHold<'_>> {
        self.buffered
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                (b + bytes <= self.limit.load(Ordering::Relaxed)).then_some(b + bytes)
            })
            .ok()
            .map(|_| ShareHold { share: self, bytes })
    }
}

/// Bytes taken from a [`SharedQuota`] for a send in progress.
pub(crate) struct ShareHold<'a> {
    share: &'a SharedQuota,
    bytes: usize,
}

impl ShareHold<'_> {
    /// The record is in a batch: its completion gives the bytes back.
    pub(crate) fn keep(mut self) {
        self.bytes = 0;
    }

    /// Hands `n` of the held bytes to a batch (its completion gives them back) and gives the
    /// rest back now.
    pub(crate) fn keep_only(mut self, n: usize) {
        self.bytes = self.bytes.saturating_sub(n);
    }

    /// The bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Takes over `other`'s bytes (of the same quota).
    pub(crate) fn absorb(&mut self, mut other: ShareHold<'_>) {
        debug_assert!(std::ptr::eq(self.share, other.share));
        self.bytes += std::mem::take(&mut other.bytes);
    }
}

impl Drop for ShareHold<'_> {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.share.buffered.fetch_sub(self.bytes, Ordering::AcqRel);
        }
    }
}

/// One owner's account: what it has buffered, its quota, its unfinished batches, its reports.
#[derive(Debug)]
pub(crate) struct OwnerAccount {
    pub(crate) name: String,
    pub(crate) memory_limit: Option<usize>,
    /// The quota this owner shares with others, if any.
    pub(crate) share: Option<Arc<SharedQuota>>,
    pub(crate) reports_enabled: bool,
    /// Most reports kept undrained.
    max_reports: usize,
    pub(crate) buffered: AtomicUsize,
    pub(crate) next_id: AtomicU64,
    /// Batches holding this owner's records, and the length at which to prune done ones.
    incomplete: Mutex<(Vec<Arc<BatchOutcome>>, usize)>,
    reports: Mutex<VecDeque<DeliveryReport>>,
    first_error: Mutex<Option<ProduceError>>,
    pub(crate) closed: AtomicBool,
    pub(crate) reports_dropped: AtomicU64,
    /// Told how this owner's records ended, if set.
    outcomes: Option<Arc<dyn crate::owner::Outcomes>>,
}

impl OwnerAccount {
    /// An account keeping up to `reports` delivery reports (`None`: none kept).
    #[cfg(test)]
    pub(crate) fn new(
        name: String,
        memory_limit: Option<usize>,
        share: Option<Arc<SharedQuota>>,
        reports: Option<usize>,
    ) -> Arc<Self> {
        Self::with_outcomes(name, memory_limit, share, reports, None)
    }

    /// [`OwnerAccount::new`], telling `outcomes` how its records end.
    pub(crate) fn with_outcomes(
        name: String,
        memory_limit: Option<usize>,
        share: Option<Arc<SharedQuota>>,
        reports: Option<usize>,
        outcomes: Option<Arc<dyn crate::owner::Outcomes>>,
    ) -> Arc<Self> {
        Arc::new(OwnerAccount {
            name,
            memory_limit,
            share,
            reports_enabled: reports.is_some(),
            max_reports: reports.unwrap_or(0),
            buffered: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            incomplete: Mutex::new((Vec::new(), 64)),
            reports: Mutex::new(VecDeque::new()),
            first_error: Mutex::new(None),
            closed: AtomicBool::new(false),
            reports_dropped: AtomicU64::new(0),
            outcomes,
        })
    }

    /// Remembers a batch that now holds one of this owner's records.
    fn track(&self, outcome: &Arc<BatchOutcome>) {
        let mut guard = self.incomplete.lock();
        let (v, prune_at) = &mut *guard;
        // Prune done batches only when the list doubled since the last prune: amortized O(1)
        // even with thousands of batches in flight.
        if v.len() >= *prune_at {
            v.retain(|b| !b.is_done());
            *prune_at = (v.len() * 2).max(64);
        }
        v.push(outcome.clone());
    }

    fn record_failure(&self, e: &ProduceError) {
        let mut first = self.first_error.lock();
        if first.is_none() {
            *first = Some(e.clone());
        }
    }

    /// The first failure since the last call, forgotten.
    pub(crate) fn take_first_error(&self) -> Option<ProduceError> {
        self.first_error.lock().take()
    }

    /// Queues reports, keeping the newest `max_reports` when the owner does not drain them.
    fn push_reports(&self, reports: impl Iterator<Item = DeliveryReport>) {
        let mut q = self.reports.lock();
        q.extend(reports);
        if q.len() > self.max_reports {
            let excess = q.len() - self.max_reports;
            q.drain(..excess);
            self.reports_dropped
                .fetch_add(excess as u64, Ordering::Relaxed);
        }
    }

    /// Up to `max` reports, oldest first.
    pub(crate) fn take_reports(&self, max: usize) -> Vec<DeliveryReport> {
        let mut q = self.reports.lock();
        let n = q.len().min(max);
        q.drain(..n).collect()
    }

    /// Batches holding this owner's records that are not done yet.
    pub(crate) fn pending(&self) -> Vec<Arc<BatchOutcome>> {
        let mut guard = self.incomplete.lock();
        let (v, prune_at) = &mut *guard;
        v.retain(|b| !b.is_done());
        *prune_at = (v.len() * 2).max(64);
        v.clone()
    }
}

/// One owner's share of a batch.
struct OwnerShare {
    owner: Arc<OwnerAccount>,
    bytes: usize,
    /// Its records in the batch.
    records: u64,
}

/// Everything needed to finish a batch's records once its result is known.
pub(crate) struct Completion {
    pub(crate) outcome: Arc<BatchOutcome>,
    owners: Vec<OwnerShare>,
    /// `(owner index, offset delta, record id)` for owners that want reports or outcomes (the
    /// latter to count the parts of a split batch apart).
    reports: Vec<(u32, i32, u64)>,
    callbacks: Vec<(i32, Callback)>,
    /// Bytes of `buffer.memory` the batch holds: its buffer as allocated.
    permits: usize,
    /// What the owners that opened or grew the batch's buffer were charged in their shared
    /// quotas beyond their own records (see `SharedQuota::take`), given back with the batch.
    share_charges: Vec<(Arc<SharedQuota>, usize)>,
    records: u64,
    ledger: Arc<Ledger>,
    done: bool,
}

impl Completion {
    /// A batch for `topic`-`partition` holding `permits` bytes of `buffer.memory`.
    pub(crate) fn new(
        topic: Arc<str>,
        partition: i32,
        permits: usize,
        ledger: &Arc<Ledger>,
    ) -> Self {
        Completion {
            outcome: BatchOutcome::new(topic, partition),
            owners: Vec::new(),
            reports: Vec::new(),
            callbacks: Vec::new(),
            permits,
            share_charges: Vec::new(),
            records: 0,
            ledger: ledger.clone(),
            done: false,
        }
    }

    /// Counts `bytes` more of `buffer.memory` held by the batch's buffer, allocated for a
    /// record of `record` bytes of `owner`: an owner in a shared quota was charged the rest
    /// (`bytes - record`) before the memory was reserved.
    pub(crate) fn hold(&mut self, bytes: usize, owner: &OwnerAccount, record: usize) {
        self.permits += bytes;
        if let Some(share) = &owner.share {
            let charge = bytes.saturating_sub(record);
            match self
                .share_charges
                .iter_mut()
                .find(|(s, _)| Arc::ptr_eq(s, share))
            {
                Some((_, n)) => *n += charge,
                None => self.share_charges.push((share.clone(), charge)),
            }
        }
    }

    /// Counts one more record of `owner` (its `bytes`, its id, its callback).
    pub(crate) fn add(
        &mut self,
        owner: &Arc<OwnerAccount>,
        bytes: usize,
        offset_delta: i32,
        id: u64,
        callback: Option<Callback>,
    ) {
        let idx = match self
            .owners
            .iter()
            .rposition(|s| Arc::ptr_eq(&s.owner, owner))
        {
            Some(i) => i,
            None => {
                owner.track(&self.outcome);
                self.owners.push(OwnerShare {
                    owner: owner.clone(),
                    bytes: 0,
                    records: 0,
                });
                self.owners.len() - 1
            }
        };
        self.owners[idx].bytes += bytes;
        self.owners[idx].records += 1;
        owner.buffered.fetch_add(bytes, Ordering::Relaxed);
        // (A shared quota was taken when the send was checked: `SharedQuota::take`.)
        self.records += 1;
        if owner.reports_enabled || owner.outcomes.is_some() {
            self.reports.push((idx as u32, offset_delta, id));
        }
        if let Some(cb) = callback {
            self.callbacks.push((offset_delta, cb));
        }
    }

    /// Publishes the result to callbacks, reports, owners and futures, and frees the memory.
    /// Callbacks and reports come first, so that whoever waits on the batch (a flush) sees them.
    pub(crate) fn complete(mut self, settled: Settled) {
        self.finish(settled);
    }

    /// Tells the owners that want them how their records in the batch ended: once per owner,
    /// or once per owner and part of a split batch.
    fn tell_outcomes(&self, settled: &Settled) {
        let told = self
            .owners
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.owner.outcomes.as_ref().map(|o| (i, s, o)));
        match settled {
            Settled::Whole(Ok(_)) => told.for_each(|(_, s, o)| o.delivered(s.records)),
            Settled::Whole(Err(e)) => told.for_each(|(_, s, o)| o.failed(s.records, e)),
            Settled::Parts(parts) => {
                for (i, _, o) in told {
                    for (p, (start, r)) in parts.iter().enumerate() {
                        let end = parts.get(p + 1).map_or(i32::MAX, |(next, _)| *next);
                        let n = self
                            .reports
                            .iter()
                            .filter(|(idx, d, _)| *idx as usize == i && (*start..end).contains(d))
                            .count() as u64;
                        match r {
                            _ if n == 0 => {}
                            Ok(_) => o.delivered(n),
                            Err(e) => o.failed(n, e),
                        }
                    }
                }
            }
        }
    }

    fn finish(&mut self, settled: Settled) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let ledger = &self.ledger;
        let outcome = &self.outcome;
        let (mut ok, mut failed) = (0u64, 0u64);
        match &settled {
            Settled::Whole(Ok(_)) => ok = self.records,
            Settled::Whole(Err(_)) => failed = self.records,
            Settled::Parts(parts) => {
                for (i, (start, r)) in parts.iter().enumerate() {
                    let end = parts
                        .get(i + 1)
                        .map_or(self.records as i32, |(next, _)| *next);
                    let n = (end - start).max(0) as u64;
                    if r.is_ok() {
                        ok += n;
                    } else {
                        failed += n;
                    }
                }
            }
        }
        if ok > 0 {
            ledger.batches_acked.fetch_add(1, Ordering::Relaxed);
            ledger.records_acked.fetch_add(ok, Ordering::Relaxed);
        }
        ledger.records_failed.fetch_add(failed, Ordering::Relaxed);
        if let Some(e) = settled.first_error() {
            for s in &self.owners {
                s.owner.record_failure(e);
            }
        }
        self.tell_outcomes(&settled);
        if !self.reports.is_empty() {
            let mut by_owner: Vec<Vec<DeliveryReport>> =
                self.owners.iter().map(|_| Vec::new()).collect();
            for (idx, delta, id) in self.reports.drain(..) {
                if !self.owners[idx as usize].owner.reports_enabled {
                    continue;
                }
                by_owner[idx as usize].push(DeliveryReport {
                    id,
                    topic: outcome.topic(),
                    partition: outcome.partition(),
                    result: outcome.metadata(&settled, delta).map(|m| m.offset),
                });
            }
            for (s, reports) in self.owners.iter().zip(by_owner) {
                if !reports.is_empty() {
                    s.owner.push_reports(reports.into_iter());
                }
            }
        }
        for (delta, cb) in self.callbacks.drain(..) {
            let result = outcome.metadata(&settled, delta);
            if catch_unwind(AssertUnwindSafe(move || cb(result))).is_err() {
                ledger.callback_panics.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    topic = %outcome.topic(),
                    partition = outcome.partition(),
                    "a delivery callback panicked; the panic was caught"
                );
            }
        }
        for s in &self.owners {
            s.owner.buffered.fetch_sub(s.bytes, Ordering::Relaxed);
            if let Some(share) = &s.owner.share {
                share.buffered.fetch_sub(s.bytes, Ordering::Relaxed);
            }
        }
        for (share, bytes) in self.share_charges.drain(..) {
            share.buffered.fetch_sub(bytes, Ordering::AcqRel);
        }
        ledger.memory.add_permits(self.permits);
        outcome.set(settled);
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        if !self.done {
            self.finish(Settled::Whole(Err(ProduceError::Closed)));
        }
    }
}

/// How a batch (or half of one) settles.
pub(crate) enum Settle {
    /// A whole batch: its own completion.
    Whole(Completion),
    /// One half of a split batch: its result joins the other half's.
    Part(PartOf),
    /// Already settled (its records failed while the batch was still in flight).
    Settled,
}

impl Settle {
    /// Settles with one result for every record.
    pub(crate) fn finish(self, result: Result<BatchAck, ProduceError>) {
        self.finish_settled(Settled::Whole(result));
    }

    /// Settles now and leaves [`Settle::Settled`] in its place.
    pub(crate) fn finish_now(&mut self, result: Result<BatchAck, ProduceError>) {
        std::mem::replace(self, Settle::Settled).finish(result);
    }

    /// Whether the records already have their result.
    pub(crate) fn is_settled(&self) -> bool {
        matches!(self, Settle::Settled)
    }

    fn finish_settled(self, settled: Settled) {
        match self {
            Settle::Whole(c) => c.complete(settled),
            Settle::Part(mut p) => p.finish(settled),
            Settle::Settled => {}
        }
    }

    /// Splits into the settlement of records `0..at` and of records `at..` (whose offset deltas
    /// start again at 0).
    pub(crate) fn split(self, at: i32) -> (Settle, Settle) {
        let join = Arc::new(Join {
            state: Mutex::new(JoinState {
                parts: Vec::with_capacity(2),
                left: 2,
                parent: Some(self),
            }),
        });
        (
            Settle::Part(PartOf {
                join: join.clone(),
                start: 0,
                done: false,
            }),
            Settle::Part(PartOf {
                join,
                start: at,
                done: false,
            }),
        )
    }

    /// The batch's outcome, as its records' futures see it.
    #[cfg(test)]
    pub(crate) fn outcome(&self) -> Option<Arc<BatchOutcome>> {
        match self {
            Settle::Whole(c) => Some(c.outcome.clone()),
            _ => None,
        }
    }
}

/// One half of a split batch: where its records start in the whole.
pub(crate) struct PartOf {
    join: Arc<Join>,
    start: i32,
    done: bool,
}

impl PartOf {
    fn finish(&mut self, settled: Settled) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let parent = {
            let mut st = self.join.state.lock();
            st.parts.extend(settled.into_parts(self.start));
            st.left -= 1;
            if st.left > 0 {
                return;
            }
            let mut parts = std::mem::take(&mut st.parts);
            parts.sort_by_key(|(s, _)| *s);
            st.parent.take().map(|p| (p, parts))
        };
        if let Some((parent, parts)) = parent {
            parent.finish_settled(Settled::Parts(parts));
        }
    }
}

impl Drop for PartOf {
    fn drop(&mut self) {
        if !self.done {
            self.finish(Settled::Whole(Err(ProduceError::Closed)));
        }
    }
}

struct Join {
    state: Mutex<JoinState>,
}

struct JoinState {
    parts: Vec<(i32, Result<BatchAck, ProduceError>)>,
    left: u8,
    parent: Option<Settle>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(base: i64) -> Result<BatchAck, ProduceError> {
        Ok(BatchAck {
            base_offset: base,
            log_append_time: None,
        })
    }

    #[test]
    fn a_dropped_completion_ends_its_records_closed_and_frees_memory() {
        let ledger = Ledger::new(1000);
        ledger.memory.try_acquire_many(100).unwrap().forget();
        let owner = OwnerAccount::new("o".into(), None, None, Some(MAX_REPORTS));
        let mut c = Completion::new(Arc::from("t"), 0, 100, &ledger);
        c.add(&owner, 10, 0, 7, None);
        let outcome = c.outcome.clone();
        drop(c);
        assert_eq!(outcome.record(0), Some(Err(ProduceError::Closed)));
        assert_eq!(ledger.memory.available_permits(), 1000);
        assert_eq!(owner.buffered.load(Ordering::Relaxed), 0);
        let reports = owner.take_reports(10);
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].result, Err(ProduceError::Closed));
        assert_eq!(ledger.records_failed.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_panicking_callback_is_caught_and_the_others_still_run() {
        let ledger = Ledger::new(1000);
        let owner = OwnerAccount::new("o".into(), None, None, None);
        let mut c = Completion::new(Arc::from("t"), 0, 0, &ledger);
        let ran = Arc::new(AtomicBool::new(false));
        c.add(&owner, 1, 0, 0, Some(Box::new(|_| panic!("boom"))));
        let r = ran.clone();
        c.add(
            &owner,
            1,
            1,
            1,
            Some(Box::new(move |_| r.store(true, Ordering::Relaxed))),
        );
        let outcome = c.outcome.clone();
        c.complete(Settled::Whole(ack(5)));
        assert!(ran.load(Ordering::Relaxed));
        assert_eq!(ledger.callback_panics.load(Ordering::Relaxed), 1);
        assert_eq!(outcome.record(1).unwrap().unwrap().offset, 6);
    }

    #[test]
    fn split_halves_join_into_one_outcome() {
        let ledger = Ledger::new(1000);
        let owner = OwnerAccount::new("o".into(), None, None, Some(MAX_REPORTS));
        let mut c = Completion::new(Arc::from("t"), 0, 0, &ledger);
        for i in 0..4 {
            c.add(&owner, 1, i, i as u64, None);
        }
        let outcome = c.outcome.clone();
        let (a, b) = Settle::Whole(c).split(2);
        // The second half splits again.
        let (b1, b2) = b.split(1);
        b2.finish(Err(ProduceError::Closed));
        a.finish(ack(10));
        assert!(!outcome.is_done());
        b1.finish(ack(20));
        assert!(outcome.is_done());
        assert_eq!(outcome.record(1).unwrap().unwrap().offset, 11);
        assert_eq!(outcome.record(2).unwrap().unwrap().offset, 20);
        assert_eq!(outcome.record(3).unwrap(), Err(ProduceError::Closed));
        let ids: Vec<_> = owner.take_reports(10).into_iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![0, 1, 2, 3]);
        assert_eq!(ledger.records_acked.load(Ordering::Relaxed), 3);
        assert_eq!(ledger.records_failed.load(Ordering::Relaxed), 1);
    }

    /// Counts what an owner's `Outcomes` hears.
    #[derive(Debug, Default)]
    struct Counted {
        delivered: AtomicU64,
        failed: AtomicU64,
    }

    impl crate::owner::Outcomes for Counted {
        fn delivered(&self, n: u64) {
            self.delivered.fetch_add(n, Ordering::Relaxed);
        }
        fn failed(&self, n: u64, _: &ProduceError) {
            self.failed.fetch_add(n, Ordering::Relaxed);
        }
    }

    #[test]
    fn outcomes_count_an_owners_records_whole_and_split() {
        let ledger = Ledger::new(1000);
        let counted = Arc::new(Counted::default());
        let told = OwnerAccount::with_outcomes("t".into(), None, None, None, Some(counted.clone()));
        let other = OwnerAccount::new("o".into(), None, None, Some(MAX_REPORTS));
        // Whole: 2 of its records acknowledged, beside another owner's.
        let mut c = Completion::new(Arc::from("t"), 0, 0, &ledger);
        c.add(&told, 1, 0, 0, None);
        c.add(&other, 1, 1, 0, None);
        c.add(&told, 1, 2, 1, None);
        c.complete(Settled::Whole(ack(0)));
        assert_eq!(counted.delivered.load(Ordering::Relaxed), 2);
        // Split: records 0..2 acknowledged, 2..4 failed; its records are 1, 2 and 3.
        let mut c = Completion::new(Arc::from("t"), 0, 0, &ledger);
        c.add(&other, 1, 0, 1, None);
        for i in 1..4 {
            c.add(&told, 1, i, i as u64, None);
        }
        let (a, b) = Settle::Whole(c).split(2);
        b.finish(Err(ProduceError::Closed));
        a.finish(ack(10));
        assert_eq!(counted.delivered.load(Ordering::Relaxed), 3);
        assert_eq!(counted.failed.load(Ordering::Relaxed), 2);
        // Reports only for the owner that asked for them.
        assert_eq!(other.take_reports(10).len(), 2);
        assert!(told.take_reports(10).is_empty());
    }
}
