//! Per-partition queues of record batches: linger, batch size and the memory bound.
//!
//! Owns the batches from the moment a record is appended until the sender takes them, and again
//! when the sender puts a batch back for a retry. Appending copies the record once into the open
//! batch of its partition; a batch closes when it reaches `batch.size`, and becomes sendable when
//! closed, when `linger.ms` passed, or while someone flushes. `buffer.memory` is a byte
//! semaphore: a record holds its bytes until its batch is done. It must not talk to brokers and
//! must not decide retries; it only keeps order (batches leave and come back in sequence order).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore};

use crate::batch::{record_size_upper_bound, BatchBuilder, ClosedBatch, BATCH_HEADER_LEN};
use crate::config::Compression;
use crate::delivery::{BatchAck, BatchOutcome, Callback, DeliveryReport};
use crate::error::ProduceError;
use crate::owner::OwnerState;
use crate::partitioner::StickyPartition;
use crate::record::Record;

/// Where done batches settle up: the memory they give back and the counts of what happened.
#[derive(Debug)]
pub(crate) struct Ledger {
    /// `buffer.memory`, as a semaphore of bytes.
    pub(crate) memory: Semaphore,
    pub(crate) batches_acked: AtomicU64,
    pub(crate) records_acked: AtomicU64,
    pub(crate) records_failed: AtomicU64,
}

/// How early a lingering batch may leave (see [`Accumulator::drain`]).
const LINGER_SLACK: Duration = Duration::from_millis(1);

/// One owner's share of a batch.
struct OwnerShare {
    owner: Arc<OwnerState>,
    bytes: usize,
}

/// Everything needed to finish a batch's records once its result is known.
pub(crate) struct Completion {
    pub(crate) outcome: Arc<BatchOutcome>,
    owners: Vec<OwnerShare>,
    /// `(owner index, offset delta, record id)` for owners that want reports.
    reports: Vec<(u32, i32, u64)>,
    callbacks: Vec<(i32, Callback)>,
    permits: usize,
    records: u64,
}

impl Completion {
    fn new(topic: Arc<str>, partition: i32) -> Self {
        Completion {
            outcome: BatchOutcome::new(topic, partition),
            owners: Vec::new(),
            reports: Vec::new(),
            callbacks: Vec::new(),
            permits: 0,
            records: 0,
        }
    }

    fn add(
        &mut self,
        owner: &Arc<OwnerState>,
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
                });
                self.owners.len() - 1
            }
        };
        self.owners[idx].bytes += bytes;
        owner.buffered.fetch_add(bytes, Ordering::Relaxed);
        self.permits += bytes;
        self.records += 1;
        if owner.reports_enabled {
            self.reports.push((idx as u32, offset_delta, id));
        }
        if let Some(cb) = callback {
            self.callbacks.push((offset_delta, cb));
        }
    }

    /// Publishes the result to callbacks, reports, owners and futures, and frees the memory.
    /// Callbacks and reports come first, so that whoever waits on the batch (a flush) sees them.
    pub(crate) fn complete(self, result: Result<BatchAck, ProduceError>, ledger: &Ledger) {
        let Completion {
            outcome,
            owners,
            reports,
            callbacks,
            permits,
            records,
        } = self;
        match &result {
            Ok(_) => {
                ledger.batches_acked.fetch_add(1, Ordering::Relaxed);
                ledger.records_acked.fetch_add(records, Ordering::Relaxed);
            }
            Err(_) => {
                ledger.records_failed.fetch_add(records, Ordering::Relaxed);
            }
        }
        if let Err(e) = &result {
            for s in &owners {
                s.owner.record_failure(e);
            }
        }
        if !reports.is_empty() {
            let mut by_owner: Vec<Vec<DeliveryReport>> =
                owners.iter().map(|_| Vec::new()).collect();
            for (idx, delta, id) in reports {
                by_owner[idx as usize].push(DeliveryReport {
                    id,
                    topic: outcome.topic(),
                    partition: outcome.partition(),
                    result: outcome.metadata(&result, delta).map(|m| m.offset),
                });
            }
            for (s, reports) in owners.iter().zip(by_owner) {
                if !reports.is_empty() {
                    s.owner.push_reports(reports.into_iter());
                }
            }
        }
        for (delta, cb) in callbacks {
            cb(outcome.metadata(&result, delta));
        }
        for s in &owners {
            s.owner.buffered.fetch_sub(s.bytes, Ordering::Relaxed);
        }
        ledger.memory.add_permits(permits);
        outcome.set(result);
    }
}

struct OpenBatch {
    builder: BatchBuilder,
    created: Instant,
    completion: Completion,
}

/// A closed batch on its way to the broker (or back for a retry).
pub(crate) struct ProducerBatch {
    pub(crate) records: ClosedBatch,
    pub(crate) created: Instant,
    pub(crate) attempts: u32,
    pub(crate) retry_at: Option<Instant>,
    pub(crate) sequence: Option<i32>,
    pub(crate) last_error: Option<String>,
    pub(crate) completion: Completion,
}

impl ProducerBatch {
    pub(crate) fn fail(self, e: ProduceError, ledger: &Ledger) {
        self.completion.complete(Err(e), ledger);
    }
}

/// Queue state of one partition.
#[derive(Default)]
pub(crate) struct PartitionState {
    open: Option<OpenBatch>,
    /// Closed batches not in flight, in sequence order (retries first).
    pub(crate) queued: VecDeque<ProducerBatch>,
    /// Batches of this partition in flight.
    pub(crate) in_flight: u32,
    /// The idempotent producer's next sequence number for this partition.
    pub(crate) next_sequence: i32,
    /// Lowest sequence that failed and waits for its retry: later batches answered with
    /// OUT_OF_ORDER_SEQUENCE_NUMBER are then retried too.
    pub(crate) retry_floor: Option<i32>,
}

/// One partition's queue.
pub(crate) struct PartitionQueue {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
    pub(crate) state: Mutex<PartitionState>,
}

/// One topic's queues, one per partition, and its sticky partition.
pub(crate) struct TopicQueues {
    pub(crate) partitions: Vec<Arc<PartitionQueue>>,
    pub(crate) sticky: StickyPartition,
}

/// Settings the accumulator needs.
#[derive(Debug, Clone)]
pub(crate) struct AccumulatorConfig {
    pub batch_size: usize,
    pub linger: Duration,
    pub compression: Compression,
    pub compression_level: Option<i32>,
    pub delivery_timeout: Duration,
    pub buffer_memory: usize,
}

/// What the sender takes from one partition.
pub(crate) enum Drained {
    /// A batch to send.
    Batch(Box<ProducerBatch>),
    /// Nothing now; look again at this time (or when woken).
    Later(Option<Instant>),
}

/// All partitions' queues.
pub(crate) struct Accumulator {
    pub(crate) config: AccumulatorConfig,
    topics: RwLock<HashMap<Arc<str>, Arc<TopicQueues>>>,
    pub(crate) ledger: Ledger,
    /// Flushes (or a close) in progress: lingering batches are sendable at once.
    flushing: AtomicUsize,
    /// Senders waiting for memory: lingering batches are sendable at once to free it.
    pub(crate) blocked: AtomicUsize,
    /// Wakes the sender: a batch became sendable or a new one started lingering.
    pub(crate) wake: Notify,
}

impl Accumulator {
    pub(crate) fn new(config: AccumulatorConfig) -> Self {
        Accumulator {
            ledger: Ledger {
                memory: Semaphore::new(config.buffer_memory),
                batches_acked: AtomicU64::new(0),
                records_acked: AtomicU64::new(0),
                records_failed: AtomicU64::new(0),
            },
            config,
            topics: RwLock::new(HashMap::new()),
            flushing: AtomicUsize::new(0),
            blocked: AtomicUsize::new(0),
            wake: Notify::new(),
        }
    }

    /// The queues of `topic` if it has exactly `partitions` partitions already.
    pub(crate) fn topic(&self, topic: &str) -> Option<Arc<TopicQueues>> {
        self.topics.read().expect("topics lock").get(topic).cloned()
    }

    /// The queues of `topic`, created or grown to `partitions`.
    pub(crate) fn topic_with(&self, topic: &str, partitions: i32) -> Arc<TopicQueues> {
        let mut topics = self.topics.write().expect("topics lock");
        let name: Arc<str> = match topics.get_key_value(topic) {
            Some((_, t)) if t.partitions.len() as i32 >= partitions => return t.clone(),
            Some((k, _)) => k.clone(),
            None => Arc::from(topic),
        };
        let mut queues: Vec<Arc<PartitionQueue>> = topics
            .get(topic)
            .map(|t| t.partitions.clone())
            .unwrap_or_default();
        for p in queues.len() as i32..partitions {
            queues.push(Arc::new(PartitionQueue {
                topic: name.clone(),
                partition: p,
                state: Mutex::new(PartitionState::default()),
            }));
        }
        let t = Arc::new(TopicQueues {
            partitions: queues,
            sticky: StickyPartition::default(),
        });
        topics.insert(name, t.clone());
        t
    }

    /// Every partition queue, for the sender's scan.
    pub(crate) fn all_partitions(&self) -> Vec<Arc<PartitionQueue>> {
        self.topics
            .read()
            .expect("topics lock")
            .values()
            .flat_map(|t| t.partitions.iter().cloned())
            .collect()
    }

    /// Appends `record` to `queue`'s open batch. `bytes` were already taken from the memory
    /// semaphore (and forgotten) by the caller; they are given back when the batch is done.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn append(
        &self,
        queue: &PartitionQueue,
        record: &Record<'_>,
        timestamp: i64,
        bytes: usize,
        owner: &Arc<OwnerState>,
        id: u64,
        callback: Option<Callback>,
    ) -> (Arc<BatchOutcome>, i32) {
        let batch_size = self.config.batch_size;
        let size = record_size_upper_bound(record);
        let mut wake = false;
        let mut st = queue.state.lock().expect("partition lock");
        let full = match &st.open {
            Some(o) => !o.builder.is_empty() && o.builder.len() + size > batch_size,
            None => true,
        };
        if full {
            if let Some(o) = st.open.take() {
                self.close_into(&mut st, o);
            }
            st.open = Some(OpenBatch {
                builder: BatchBuilder::new(batch_size.max(BATCH_HEADER_LEN + size)),
                created: Instant::now(),
                completion: Completion::new(queue.topic.clone(), queue.partition),
            });
            // A new batch starts to linger: the sender must know when it is due.
            wake = true;
        }
        let open = st.open.as_mut().expect("open batch");
        let delta = open.builder.append(record, timestamp);
        open.completion.add(owner, bytes, delta, id, callback);
        let outcome = open.completion.outcome.clone();
        if open.builder.len() >= batch_size {
            let o = st.open.take().expect("open batch");
            self.close_into(&mut st, o);
            wake = true;
        }
        drop(st);
        if wake {
            self.wake.notify_one();
        }
        (outcome, delta)
    }

    fn close_into(&self, st: &mut PartitionState, o: OpenBatch) {
        let OpenBatch {
            builder,
            created,
            completion,
        } = o;
        match builder.close(self.config.compression, self.config.compression_level) {
            Ok(records) => st.queued.push_back(ProducerBatch {
                records,
                created,
                attempts: 0,
                retry_at: None,
                sequence: None,
                last_error: None,
                completion,
            }),
            Err(e) => completion.complete(
                Err(ProduceError::Fatal(format!(
                    "{} compression failed: {e}",
                    self.config.compression.name()
                ))),
                &self.ledger,
            ),
        }
    }

    /// Marks the start of a flush: lingering batches become sendable.
    pub(crate) fn begin_flush(&self) {
        self.flushing.fetch_add(1, Ordering::AcqRel);
        self.wake.notify_one();
    }

    /// Marks the end of a flush.
    pub(crate) fn end_flush(&self) {
        self.flushing.fetch_sub(1, Ordering::AcqRel);
    }

    /// Takes the next batch of `queue` to send, if one is due and the partition's ordering rules
    /// allow it. `max_in_flight` caps batches of this partition in flight. Expired batches are
    /// failed on the way.
    pub(crate) fn drain(
        &self,
        queue: &PartitionQueue,
        now: Instant,
        max_in_flight: u32,
        idempotent: bool,
    ) -> Drained {
        let mut st = queue.state.lock().expect("partition lock");
        let taken = self.take(&mut st, now, max_in_flight);
        match taken {
            Drained::Batch(mut b) => {
                st.in_flight += 1;
                if idempotent && b.sequence.is_none() {
                    b.sequence = Some(st.next_sequence);
                    st.next_sequence = st.next_sequence.wrapping_add(b.records.count()) & i32::MAX;
                }
                Drained::Batch(b)
            }
            later => later,
        }
    }

    /// Fails what expired in `queue`; returns whether it still holds records.
    pub(crate) fn expire_only(&self, queue: &PartitionQueue, now: Instant) -> bool {
        let mut st = queue.state.lock().expect("partition lock");
        self.expire(&mut st, now);
        st.open.is_some() || !st.queued.is_empty()
    }

    fn take(&self, st: &mut PartitionState, now: Instant, max_in_flight: u32) -> Drained {
        self.expire(st, now);
        if st.in_flight >= max_in_flight {
            return Drained::Later(None);
        }
        if let Some(head) = st.queued.front() {
            // A retry goes alone, after everything before it came back, to keep order.
            if head.attempts > 0 && st.in_flight > 0 {
                return Drained::Later(None);
            }
            if let Some(at) = head.retry_at {
                if at > now {
                    return Drained::Later(Some(at));
                }
            }
            return Drained::Batch(Box::new(st.queued.pop_front().expect("head")));
        }
        let Some(open) = &st.open else {
            return Drained::Later(None);
        };
        let due = open.created + self.config.linger;
        let hurry =
            self.flushing.load(Ordering::Acquire) > 0 || self.blocked.load(Ordering::Acquire) > 0;
        // tokio's timer wakes on whole milliseconds, rounding up: a batch within LINGER_SLACK
        // of its due time goes now rather than a tick late.
        if due <= now + LINGER_SLACK || hurry {
            let o = st.open.take().expect("open batch");
            self.close_into(st, o);
            match st.queued.pop_front() {
                Some(b) => Drained::Batch(Box::new(b)),
                None => Drained::Later(None),
            }
        } else {
            Drained::Later(Some(due - LINGER_SLACK))
        }
    }

    fn expire(&self, st: &mut PartitionState, now: Instant) {
        let timeout = self.config.delivery_timeout;
        let expired = |created: Instant| created + timeout <= now;
        if st.open.as_ref().is_some_and(|o| expired(o.created)) {
            let o = st.open.take().expect("open batch");
            o.completion.complete(
                Err(ProduceError::DeliveryTimeout {
                    timeout,
                    cause: "no broker took the batch (is the partition's leader reachable?)".into(),
                }),
                &self.ledger,
            );
        }
        while st.queued.front().is_some_and(|b| expired(b.created)) {
            let b = st.queued.pop_front().expect("head");
            let cause = b.last_error.clone().unwrap_or_else(|| {
                "no broker took the batch (is the partition's leader reachable?)".into()
            });
            b.fail(
                ProduceError::DeliveryTimeout { timeout, cause },
                &self.ledger,
            );
        }
    }

    /// Puts a batch back for a retry, in sequence order.
    pub(crate) fn requeue(&self, queue: &PartitionQueue, batch: ProducerBatch) {
        let mut st = queue.state.lock().expect("partition lock");
        st.in_flight = st.in_flight.saturating_sub(1);
        if let Some(seq) = batch.sequence {
            st.retry_floor = Some(st.retry_floor.map_or(seq, |f| f.min(seq)));
        }
        let pos = st
            .queued
            .iter()
            .position(|b| match (b.sequence, batch.sequence) {
                (Some(s), Some(mine)) => s > mine,
                (None, _) => true,
                (Some(_), None) => false,
            })
            .unwrap_or(st.queued.len());
        st.queued.insert(pos, batch);
        drop(st);
        self.wake.notify_one();
    }

    /// Records that a batch of `queue` came back done (acknowledged or failed).
    pub(crate) fn done(&self, queue: &PartitionQueue, sequence: Option<i32>) {
        let mut st = queue.state.lock().expect("partition lock");
        st.in_flight = st.in_flight.saturating_sub(1);
        if let (Some(f), Some(s)) = (st.retry_floor, sequence) {
            if s >= f && !st.queued.iter().any(|b| b.attempts > 0) {
                st.retry_floor = None;
            }
        }
    }

    /// Fails every batch not in flight (the producer is closing for good).
    pub(crate) fn abort_all(&self, e: &ProduceError) {
        for q in self.all_partitions() {
            let mut st = q.state.lock().expect("partition lock");
            if let Some(o) = st.open.take() {
                o.completion.complete(Err(e.clone()), &self.ledger);
            }
            for b in st.queued.drain(..) {
                b.fail(e.clone(), &self.ledger);
            }
        }
    }

    /// Forgets every assigned sequence number (after a new producer id): queued batches get
    /// new ones when they are next drained.
    pub(crate) fn reset_sequences(&self) {
        for q in self.all_partitions() {
            let mut st = q.state.lock().expect("partition lock");
            st.next_sequence = 0;
            st.retry_floor = None;
            for b in st.queued.iter_mut() {
                b.sequence = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::owner::OwnerOptions;

    fn acc(linger_ms: u64, batch_size: usize) -> Accumulator {
        Accumulator::new(AccumulatorConfig {
            batch_size,
            linger: Duration::from_millis(linger_ms),
            compression: Compression::None,
            compression_level: None,
            delivery_timeout: Duration::from_secs(120),
            buffer_memory: 1 << 20,
        })
    }

    fn append(
        a: &Accumulator,
        q: &PartitionQueue,
        owner: &Arc<OwnerState>,
        value: &[u8],
    ) -> Arc<BatchOutcome> {
        let r = Record::new("t", value);
        let bytes = record_size_upper_bound(&r);
        a.ledger
            .memory
            .try_acquire_many(bytes as u32)
            .unwrap()
            .forget();
        a.append(q, &r, 0, bytes, owner, 0, None).0
    }

    fn take(a: &Accumulator, q: &PartitionQueue, now: Instant) -> Option<ProducerBatch> {
        match a.drain(q, now, 5, true) {
            Drained::Batch(b) => Some(*b),
            Drained::Later(_) => None,
        }
    }

    #[test]
    fn a_batch_closes_at_batch_size_and_lingers_otherwise() {
        let a = acc(100, 200);
        let t = a.topic_with("t", 1);
        let q = &t.partitions[0];
        let owner = OwnerState::new(OwnerOptions::default());
        let first = append(&a, q, &owner, &[1; 90]);
        // Lingering: not due yet, and the sender is told when it will be.
        match a.drain(q, Instant::now(), 5, true) {
            Drained::Later(Some(due)) => assert!(due > Instant::now() + Duration::from_millis(50)),
            _ => panic!("a fresh batch lingers"),
        }
        // The second record does not fit in 200 bytes: the first batch closes and is due now.
        let second = append(&a, q, &owner, &[2; 90]);
        assert!(!Arc::ptr_eq(&first, &second));
        let b = take(&a, q, Instant::now()).expect("closed batch is due at once");
        assert_eq!(b.records.count(), 1);
        assert_eq!(
            b.sequence,
            Some(0),
            "sequences are assigned when a batch leaves"
        );
        // The open one is due after linger.ms.
        assert!(take(&a, q, Instant::now()).is_none());
        let b2 =
            take(&a, q, Instant::now() + Duration::from_millis(100)).expect("due after linger");
        assert_eq!(b2.sequence, Some(1));
    }

    #[test]
    fn flush_makes_lingering_batches_due_and_completion_frees_memory() {
        let a = acc(60_000, 16384);
        let t = a.topic_with("t", 1);
        let q = &t.partitions[0];
        let owner = OwnerState::new(OwnerOptions::default());
        let outcome = append(&a, q, &owner, b"x");
        assert!(a.ledger.memory.available_permits() < 1 << 20);
        assert!(take(&a, q, Instant::now()).is_none());
        a.begin_flush();
        let b = take(&a, q, Instant::now()).expect("flush hurries the batch");
        a.end_flush();
        a.done(q, b.sequence);
        b.completion.complete(
            Ok(BatchAck {
                base_offset: 7,
                log_append_time: None,
            }),
            &a.ledger,
        );
        assert_eq!(
            a.ledger.memory.available_permits(),
            1 << 20,
            "memory given back"
        );
        assert_eq!(owner.buffered.load(Ordering::Relaxed), 0);
        assert_eq!(outcome.record(0).unwrap().unwrap().offset, 7);
    }

    #[test]
    fn retries_go_back_in_sequence_order_and_alone() {
        let a = acc(0, 100);
        let t = a.topic_with("t", 1);
        let q = &t.partitions[0];
        let owner = OwnerState::new(OwnerOptions::default());
        for i in 0..3 {
            append(&a, q, &owner, &[i; 60]);
        }
        let now = Instant::now();
        let b0 = take(&a, q, now).unwrap();
        let b1 = take(&a, q, now).unwrap();
        assert_eq!((b0.sequence, b1.sequence), (Some(0), Some(1)));
        // Both fail; they come back in the opposite order but are queued by sequence.
        let mut r1 = b1;
        r1.attempts = 1;
        a.requeue(q, r1);
        let mut r0 = b0;
        r0.attempts = 1;
        a.requeue(q, r0);
        let next = take(&a, q, now).unwrap();
        assert_eq!(next.sequence, Some(0), "the oldest failed batch goes first");
        // While it is in flight, the next retry waits.
        assert!(take(&a, q, now).is_none(), "a retry goes alone");
        a.done(q, next.sequence);
        assert_eq!(take(&a, q, now).unwrap().sequence, Some(1));
    }

    #[test]
    fn batches_expire_after_delivery_timeout() {
        let mut c = acc(0, 16384).config.clone();
        c.delivery_timeout = Duration::from_millis(10);
        let a = Accumulator::new(c);
        let t = a.topic_with("t", 1);
        let q = &t.partitions[0];
        let owner = OwnerState::new(OwnerOptions::default());
        let outcome = append(&a, q, &owner, b"late");
        assert!(a.expire_only(q, Instant::now()));
        assert!(!a.expire_only(q, Instant::now() + Duration::from_millis(20)));
        match outcome.record(0) {
            Some(Err(ProduceError::DeliveryTimeout { .. })) => {}
            other => panic!("expected a delivery timeout, got {other:?}"),
        }
        assert!(owner.first_error.lock().unwrap().is_some());
    }
}
