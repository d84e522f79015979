//! Per-partition queues of record batches: linger, batch size, `buffer.memory`, expiry, and
//! the ready lists that tell each sink which partitions to look at.
//!
//! Owns the batches from the moment a record is appended until a sink takes one, and again
//! when a sink puts one back for a retry. Appending copies the record once into the open batch
//! of its partition, whose buffer was reserved from `buffer.memory` when it opened (at least
//! `batch.size`, as the Java client's pool: `buffer.memory` bounds what batches allocate, not
//! just the record bytes). A batch closes when full; it becomes sendable when closed, when
//! `linger.ms` passed, when a flush waits for it (only the batches that hold the flushing
//! owner's records), or while a send waits for memory.
//!
//! Order: a partition has up to `max.in.flight.requests.per.connection` batches in flight (one
//! per request; one without idempotence, where nothing else would keep a batch from being
//! stored before an earlier one's retry), taken from the head of its queue in the order they
//! were made. A batch that
//! comes back without being stored (put back for a retry, or dropped) goes back into the queue
//! at its place by that order, and the partition then **drains**: nothing more of it leaves
//! until none of its batches is in flight, so retries leave in order too, and the idempotence
//! module numbers what follows from a settled state (Java's "unresolved sequences" rule, made
//! simpler: an error costs the partition one round trip). A sink learns of a partition through its
//! [`ReadyList`] (pushed when a batch opens, closes, is hurried or put back), never by
//! scanning. Expired batches are failed where they are found, outside the partition's lock.
//! It must not talk to brokers nor decide retries.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use rustc_hash::FxHashMap;
use tokio::sync::Notify;

use crate::batch::{
    record_size_upper_bound, BatchBuilder, ClosedBatch, CodecPool, BATCH_HEADER_LEN,
};
use crate::delivery::{BatchOutcome, Callback};
use crate::error::ProduceError;
use crate::idempotence::{Idempotence, NoStamp, Sequence, Stamp};
use crate::ledger::{Completion, Ledger, OwnerAccount, Settle};
use crate::partitioner::StickyPartition;
use crate::record::Record;

/// How early a lingering batch may leave: tokio's timer wakes on whole milliseconds, rounding
/// up, so a batch within this of its due time goes now rather than a tick late.
const LINGER_SLACK: Duration = Duration::from_millis(1);

/// The smallest buffer a batch opens with: a partition holding one small record counts about
/// this much of `buffer.memory`, not `batch.size`.
const MIN_BATCH_BUFFER: usize = 1024;

/// What a sink drains: partitions that may have something to send, and the sink's health as
/// the partitioner sees it.
pub(crate) struct ReadyList {
    pub(crate) node: i32,
    list: Mutex<Vec<Arc<PartitionQueue>>>,
    pub(crate) wake: Notify,
    /// Connected and past the handshake: new records without a key may go here.
    up: AtomicBool,
    /// When the oldest request in flight was sent (`None`: nothing in flight), and how long it
    /// may wait before the partitioner stops choosing this broker (zero: forever).
    waiting_since: Mutex<Option<Instant>>,
    patience: Duration,
    /// Until when the broker asked us to hold back (KIP-219): no new records without a key.
    throttled_until: Mutex<Option<Instant>>,
    /// Whether `throttled_until` is set: the partitioner asks for every record without a key,
    /// and a broker that never throttled costs it no lock and no clock.
    throttled: AtomicBool,
    /// The broker left the cluster: the sink ends once nothing is in flight.
    retired: AtomicBool,
}

impl ReadyList {
    pub(crate) fn new(node: i32, patience: Duration) -> Arc<Self> {
        Arc::new(ReadyList {
            node,
            list: Mutex::new(Vec::new()),
            wake: Notify::new(),
            up: AtomicBool::new(false),
            waiting_since: Mutex::new(None),
            patience,
            throttled_until: Mutex::new(None),
            throttled: AtomicBool::new(false),
            retired: AtomicBool::new(false),
        })
    }

    /// Asks the sink to look at `p`.
    pub(crate) fn signal(&self, p: &Arc<PartitionQueue>) {
        if !p.signaled.swap(true, Ordering::AcqRel) {
            self.list.lock().push(p.clone());
            self.wake.notify_one();
        }
    }

    /// The partitions signaled since the last call.
    pub(crate) fn take(&self) -> Vec<Arc<PartitionQueue>> {
        let taken = std::mem::take(&mut *self.list.lock());
        for p in &taken {
            p.signaled.store(false, Ordering::Release);
        }
        taken
    }

    /// Whether partitions were signaled and not taken yet.
    pub(crate) fn has_signals(&self) -> bool {
        !self.list.lock().is_empty()
    }

    /// Whether new records without a key may come here: reachable (connected, or its last
    /// connection closed while idle), not throttled, and (with
    /// `partitioner.availability.timeout.ms`) answering in time.
    pub(crate) fn is_available(&self) -> bool {
        self.up.load(Ordering::Acquire)
            && !self.is_throttled()
            && (self.patience.is_zero()
                || self
                    .waiting_since
                    .lock()
                    .is_none_or(|since| since.elapsed() < self.patience))
    }

    /// Records when the oldest request in flight was sent.
    pub(crate) fn set_waiting_since(&self, since: Option<Instant>) {
        // Only `partitioner.availability.timeout.ms` reads it.
        if self.patience.is_zero() {
            return;
        }
        *self.waiting_since.lock() = since;
    }

    /// Records that the broker throttles us until `until` (KIP-219).
    pub(crate) fn set_throttled_until(&self, until: Option<Instant>) {
        let mut t = self.throttled_until.lock();
        *t = until;
        self.throttled.store(until.is_some(), Ordering::Release);
    }

    /// Whether the broker's throttle still holds (forgotten once passed).
    fn is_throttled(&self) -> bool {
        if !self.throttled.load(Ordering::Acquire) {
            return false;
        }
        let mut t = self.throttled_until.lock();
        if t.is_some_and(|until| until > Instant::now()) {
            return true;
        }
        *t = None;
        self.throttled.store(false, Ordering::Release);
        false
    }

    pub(crate) fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Release);
    }

    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    pub(crate) fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }
}

/// A batch's bytes: still as appended, or closed (compressed, header filled).
pub(crate) enum Body {
    Open(BatchBuilder),
    Closed(ClosedBatch),
}

/// A batch on its way to the broker (or back for a retry).
pub(crate) struct ProducerBatch {
    pub(crate) body: Body,
    pub(crate) count: i32,
    /// Its place among the partition's batches (both halves of a split keep the batch's).
    pub(crate) order: u64,
    pub(crate) created: Instant,
    pub(crate) attempts: u32,
    pub(crate) retry_at: Option<Instant>,
    pub(crate) stamp: Option<Stamp>,
    /// Why the last attempt failed.
    pub(crate) last_error: Option<String>,
    /// Sent before without an answer: the broker may have stored it.
    pub(crate) maybe_stored: bool,
    pub(crate) settle: Settle,
}

impl ProducerBatch {
    /// Closes the body (compressing it) if it is still open. Runs outside any lock.
    pub(crate) fn close(&mut self, codecs: &CodecPool) -> std::io::Result<&mut ClosedBatch> {
        if let Body::Open(_) = self.body {
            let Body::Open(builder) =
                std::mem::replace(&mut self.body, Body::Open(BatchBuilder::new(0)))
            else {
                unreachable!()
            };
            self.body = Body::Closed(codecs.close(builder)?);
        }
        match &mut self.body {
            Body::Closed(c) => Ok(c),
            Body::Open(_) => unreachable!("closed above"),
        }
    }

    /// The error for this batch's records when `delivery.timeout.ms` passes now.
    pub(crate) fn expiry(&self, timeout: Duration, why: Option<&str>) -> ProduceError {
        let mut cause = self
            .last_error
            .clone()
            .or_else(|| why.map(str::to_string))
            .unwrap_or_else(|| "no broker took the batch".into());
        if self.maybe_stored && !cause.contains("may") {
            cause.push_str("; the broker may have stored the records");
        }
        ProduceError::DeliveryTimeout { timeout, cause }
    }
}

struct OpenBatch {
    builder: BatchBuilder,
    order: u64,
    created: Instant,
    completion: Completion,
}

/// Queue state of one partition.
#[derive(Default)]
pub(crate) struct PartitionState {
    open: Option<OpenBatch>,
    /// Closed batches not in flight, by `order` (a batch put back goes to its place).
    queued: VecDeque<ProducerBatch>,
    /// Batches of this partition in flight.
    in_flight: usize,
    /// A batch came back unsettled: take nothing until none is in flight.
    draining: bool,
    /// The `order` of the next batch to open.
    next_order: u64,
    /// Sequence numbers, owned by the idempotence module.
    pub(crate) sequence: Sequence,
    /// Why the head cannot go (no leader, no producer id, ...), for the expiry error.
    pub(crate) stuck: Option<String>,
    /// The topic was forgotten (idle): appends go to its new queues instead.
    evicted: bool,
}

impl PartitionState {
    fn busy(&self) -> bool {
        self.open.is_some() || !self.queued.is_empty() || self.in_flight > 0
    }

    /// One batch taken by a sink is back (stored, put back or dropped).
    fn returned(&mut self, settled: bool) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if !settled {
            self.draining = true;
        }
        if self.in_flight == 0 {
            self.draining = false;
        }
    }
}

/// One partition's queue.
pub(crate) struct PartitionQueue {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
    pub(crate) state: Mutex<PartitionState>,
    route: RwLock<Option<Arc<ReadyList>>>,
    signaled: AtomicBool,
}

impl PartitionQueue {
    fn new(topic: Arc<str>, partition: i32) -> Arc<Self> {
        Arc::new(PartitionQueue {
            topic,
            partition,
            state: Mutex::new(PartitionState::default()),
            route: RwLock::new(None),
            signaled: AtomicBool::new(false),
        })
    }

    /// The sink of the partition's leader now.
    pub(crate) fn route(&self) -> Option<Arc<ReadyList>> {
        self.route.read().clone()
    }

    /// Whether `list` is the sink of the partition's leader now.
    pub(crate) fn routed_to(&self, list: &Arc<ReadyList>) -> bool {
        self.route
            .read()
            .as_ref()
            .is_some_and(|r| Arc::ptr_eq(r, list))
    }

    /// Points the partition at `to`; returns whether it changed.
    pub(crate) fn set_route(self: &Arc<Self>, to: Option<Arc<ReadyList>>) -> bool {
        let mut r = self.route.write();
        let same = match (&*r, &to) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if !same {
            *r = to;
            // A signal pending at the old sink must not keep the new one from hearing of it.
            self.signaled.store(false, Ordering::Release);
        }
        !same
    }

    /// Asks the partition's sink, if any, to look at it.
    pub(crate) fn signal(self: &Arc<Self>) {
        if let Some(r) = self.route() {
            r.signal(self);
        }
    }

    /// How welcome new records without a key are here (see [`crate::partitioner`]).
    pub(crate) fn rank(&self) -> u8 {
        match &*self.route.read() {
            Some(r) if r.is_available() => crate::partitioner::RANK_AVAILABLE,
            Some(_) => crate::partitioner::RANK_LED,
            None => 0,
        }
    }

    /// Whether anything of the partition waits to be sent or is in flight.
    pub(crate) fn busy(&self) -> bool {
        self.state.lock().busy()
    }
}

/// One topic's queues, one per partition, and its sticky partition.
pub(crate) struct TopicQueues {
    pub(crate) name: Arc<str>,
    pub(crate) partitions: Vec<Arc<PartitionQueue>>,
    pub(crate) sticky: StickyPartition,
    /// When a record was last sent to the topic, in ms since the accumulator started.
    last_used: AtomicU64,
}

/// Settings the accumulator needs.
#[derive(Debug, Clone)]
pub(crate) struct AccumulatorConfig {
    pub batch_size: usize,
    /// Most batches of one partition in flight (`max.in.flight.requests.per.connection`).
    pub max_in_flight: usize,
    pub linger: Duration,
    pub delivery_timeout: Duration,
}

/// What a sink takes from one partition.
pub(crate) enum Take {
    /// A batch to send, with the numbers it goes out with.
    Batch(Box<ProducerBatch>, Option<Stamp>),
    /// Nothing now; look again at this time (`true`: a lingering batch's due time).
    Later(Instant, bool),
    /// Waiting for an identity (producer id); look again then, or when it comes.
    Identity(Option<Instant>),
    /// As many batches as may be are in flight, or the partition drains: look again when one
    /// is back.
    Busy,
    /// Nothing queued.
    Empty,
}

/// Why [`Accumulator::append`] did not append.
pub(crate) enum NotAppended {
    /// The reservation in hand is smaller than `bytes`, what a new batch (or, with `grow`, the
    /// open batch's larger buffer) takes.
    NeedMemory {
        /// Bytes of `buffer.memory` needed in hand.
        bytes: usize,
        /// For growing the open batch (the sender may decline: see `may_grow`).
        grow: bool,
    },
    /// The topic's queues were forgotten meanwhile: look them up again.
    Evicted,
    /// The producer is closed.
    Closed,
}

/// All partitions' queues.
pub(crate) struct Accumulator {
    config: AccumulatorConfig,
    topics: RwLock<FxHashMap<Arc<str>, Arc<TopicQueues>>>,
    ledger: Arc<Ledger>,
    closed: AtomicBool,
    started: Instant,
    /// A coarse clock (ms since `started`), moved on by housekeeping: marking a topic used
    /// costs no clock read per record.
    coarse_ms: AtomicU64,
}

impl Accumulator {
    pub(crate) fn new(config: AccumulatorConfig, ledger: Arc<Ledger>) -> Self {
        Accumulator {
            config,
            topics: RwLock::new(FxHashMap::default()),
            ledger,
            closed: AtomicBool::new(false),
            started: Instant::now(),
            coarse_ms: AtomicU64::new(0),
        }
    }

    fn millis(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.started).as_millis() as u64
    }

    /// The queues of `topic`, if it has any.
    pub(crate) fn topic(&self, topic: &str) -> Option<Arc<TopicQueues>> {
        self.topics.read().get(topic).cloned()
    }

    /// Marks `topic` as used now (by the coarse clock).
    pub(crate) fn touch(&self, topic: &TopicQueues) {
        let now = self.coarse_ms.load(Ordering::Relaxed);
        if topic.last_used.load(Ordering::Relaxed) != now {
            topic.last_used.store(now, Ordering::Relaxed);
        }
    }

    /// Moves the coarse clock on to `now`.
    pub(crate) fn tick(&self, now: Instant) {
        self.coarse_ms.store(self.millis(now), Ordering::Relaxed);
    }

    /// Every topic's queues.
    pub(crate) fn topics(&self) -> Vec<Arc<TopicQueues>> {
        self.topics.read().values().cloned().collect()
    }

    /// The queues of `topic`, created or grown to `partitions` (never shrunk: a partition
    /// that disappears keeps its queue, without a leader, until its batches expire).
    pub(crate) fn topic_with(&self, topic: &str, partitions: i32) -> Arc<TopicQueues> {
        if let Some(t) = self.topic(topic) {
            if t.partitions.len() as i32 >= partitions {
                return t;
            }
        }
        let mut topics = self.topics.write();
        let (name, mut queues, sticky_at, last_used) = match topics.get(topic) {
            Some(t) if t.partitions.len() as i32 >= partitions => return t.clone(),
            Some(t) => (
                t.name.clone(),
                t.partitions.clone(),
                t.sticky.current(),
                t.last_used.load(Ordering::Relaxed),
            ),
            None => (
                Arc::from(topic),
                Vec::new(),
                -1,
                self.millis(Instant::now()),
            ),
        };
        for p in queues.len() as i32..partitions {
            queues.push(PartitionQueue::new(name.clone(), p));
        }
        let t = Arc::new(TopicQueues {
            name: name.clone(),
            partitions: queues,
            sticky: StickyPartition::starting_at(sticky_at),
            last_used: AtomicU64::new(last_used),
        });
        topics.insert(name, t.clone());
        t
    }

    /// Forgets topics not sent to since `idle` ago that hold nothing; returns their names. The
    /// identities their partitions numbered batches with are handed to `forget` (the
    /// idempotence module must not let new queues reuse them from sequence 0).
    pub(crate) fn evict_idle(&self, idle: Duration, idempotence: &Idempotence) -> Vec<Arc<str>> {
        let now = self.millis(Instant::now());
        let idle = idle.as_millis() as u64;
        let candidates: Vec<Arc<TopicQueues>> = self
            .topics
            .read()
            .values()
            .filter(|t| now.saturating_sub(t.last_used.load(Ordering::Relaxed)) >= idle)
            .cloned()
            .collect();
        let mut gone = Vec::new();
        for t in candidates {
            // Every partition locked at once (one lock at a time is the rule elsewhere, so this
            // cannot deadlock): no append slips in between the check and the mark.
            let mut states: Vec<_> = t.partitions.iter().map(|p| p.state.lock()).collect();
            if states.iter().any(|st| st.busy())
                || now.saturating_sub(t.last_used.load(Ordering::Relaxed)) < idle
            {
                continue;
            }
            let mut topics = self.topics.write();
            if !topics.get(&t.name).is_some_and(|cur| Arc::ptr_eq(cur, &t)) {
                continue;
            }
            for st in &mut states {
                st.evicted = true;
                idempotence.forget(&st.sequence);
            }
            topics.remove(&t.name);
            gone.push(t.name.clone());
        }
        gone
    }

    /// Appends `record` to `queue`'s open batch: growing its buffer, or opening a new batch,
    /// with the bytes of `reserved` when the record does not fit (`reserved` gives up what the
    /// batch takes). With `may_grow` false a batch too small for the record closes and the
    /// record opens a new one instead (the sender's share cannot pay for a growth).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn append(
        &self,
        queue: &Arc<PartitionQueue>,
        record: &Record<'_>,
        timestamp: i64,
        bytes: usize,
        owner: &Arc<OwnerAccount>,
        id: u64,
        callback: &mut Option<Callback>,
        reserved: &mut usize,
        may_grow: bool,
    ) -> Result<(Arc<BatchOutcome>, i32), NotAppended> {
        let batch_size = self.config.batch_size;
        let size = record_size_upper_bound(record);
        let mut st = queue.state.lock();
        if self.closed.load(Ordering::Acquire) {
            return Err(NotAppended::Closed);
        }
        if st.evicted {
            return Err(NotAppended::Evicted);
        }
        let mut signal = false;
        // The open batch takes the record if it fits in `batch.size`, growing if it must.
        if let Some(open) = st.open.as_mut() {
            let b = &mut open.builder;
            if !b.fits(size) {
                let want = b.len() + size;
                if want <= batch_size && may_grow {
                    let to = grown_capacity(b.capacity(), want, batch_size);
                    let need = to - b.capacity();
                    if *reserved < need {
                        return Err(NotAppended::NeedMemory {
                            bytes: need,
                            grow: true,
                        });
                    }
                    *reserved -= need;
                    b.grow_to(to);
                    open.completion.hold(need, owner, bytes);
                } else {
                    let o = st.open.take().expect("checked");
                    close_into(&mut st, o);
                    signal = true;
                }
            }
        }
        if st.open.is_none() {
            let need = first_capacity(BATCH_HEADER_LEN + size, batch_size);
            if *reserved < need {
                drop(st);
                if signal {
                    queue.signal();
                }
                return Err(NotAppended::NeedMemory {
                    bytes: need,
                    grow: false,
                });
            }
            *reserved -= need;
            let mut completion =
                Completion::new(queue.topic.clone(), queue.partition, 0, &self.ledger);
            // An owner in a shared quota pays for the buffer it opens (or grows), beyond its
            // record: the sender took that from the share before reserving the memory.
            completion.hold(need, owner, bytes);
            let order = st.next_order;
            st.next_order += 1;
            st.open = Some(OpenBatch {
                order,
                builder: BatchBuilder::new(need),
                created: Instant::now(),
                completion,
            });
            // A new batch starts to linger: its sink must learn when it is due.
            signal = true;
        }
        let open = st.open.as_mut().expect("open batch");
        let delta = open.builder.append(record, timestamp);
        open.completion
            .add(owner, bytes, delta, id, callback.take());
        let outcome = open.completion.outcome.clone();
        if open.builder.len() >= batch_size {
            let o = st.open.take().expect("open batch");
            close_into(&mut st, o);
            signal = true;
        }
        drop(st);
        if signal {
            queue.signal();
        }
        Ok((outcome, delta))
    }

    /// Takes the next batch of `queue` to send, if one is due and nothing of the partition is
    /// in flight, with its numbers. Expired batches are failed on the way.
    pub(crate) fn take(
        &self,
        queue: &PartitionQueue,
        now: Instant,
        idempotence: &Arc<Idempotence>,
    ) -> Take {
        let mut expired = Vec::new();
        let take = {
            let mut st = queue.state.lock();
            self.expire_locked(&mut st, now, idempotence, &mut expired);
            take_locked(
                &mut st,
                now,
                self.config.max_in_flight,
                self.config.linger,
                self.ledger.under_pressure(),
                idempotence,
            )
        };
        for (s, e) in expired {
            s.finish(Err(e));
        }
        match take {
            Ok(t) => t,
            Err(failed) => {
                let (batch, e) = *failed;
                // The producer cannot go on: this batch and the rest of the queue fail.
                batch.settle.finish(Err(e.clone()));
                self.fail_queued(queue, &e);
                Take::Empty
            }
        }
    }

    /// Fails what expired in `queue`; returns the earliest deadline left, if anything waits.
    fn expire(
        &self,
        queue: &PartitionQueue,
        now: Instant,
        idempotence: &Arc<Idempotence>,
    ) -> Option<Instant> {
        let mut expired = Vec::new();
        let next = {
            let mut st = queue.state.lock();
            self.expire_locked(&mut st, now, idempotence, &mut expired);
            let timeout = self.config.delivery_timeout;
            st.queued
                .front()
                .map(|b| b.created + timeout)
                .or_else(|| st.open.as_ref().map(|o| o.created + timeout))
        };
        for (s, e) in expired {
            s.finish(Err(e));
        }
        next
    }

    fn expire_locked(
        &self,
        st: &mut PartitionState,
        now: Instant,
        idempotence: &Arc<Idempotence>,
        out: &mut Vec<(Settle, ProduceError)>,
    ) {
        let timeout = self.config.delivery_timeout;
        while st
            .queued
            .front()
            .is_some_and(|b| b.created + timeout <= now)
        {
            let b = st.queued.pop_front().expect("head");
            let e = b.expiry(timeout, st.stuck.as_deref());
            idempotence.dropped(&mut st.sequence, b.stamp);
            // Batches after it in flight are out of order now: let them come back first.
            if b.stamp.is_some() && st.in_flight > 0 {
                st.draining = true;
            }
            out.push((b.settle, e));
        }
        if st.queued.is_empty() && st.open.as_ref().is_some_and(|o| o.created + timeout <= now) {
            let o = st.open.take().expect("open batch");
            let cause = st
                .stuck
                .clone()
                .unwrap_or_else(|| "no broker took the batch".into());
            out.push((
                Settle::Whole(o.completion),
                ProduceError::DeliveryTimeout { timeout, cause },
            ));
        }
    }

    /// Fails what expired anywhere; returns when to look again.
    pub(crate) fn expire_all(
        &self,
        now: Instant,
        idempotence: &Arc<Idempotence>,
    ) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        for t in self.topics() {
            for p in &t.partitions {
                if let Some(at) = self.expire(p, now, idempotence) {
                    next = Some(next.map_or(at, |n| n.min(at)));
                }
            }
        }
        next
    }

    /// Records why `queue` cannot send now (for the expiry error), or clears it.
    pub(crate) fn set_stuck(&self, queue: &PartitionQueue, why: Option<String>) {
        queue.state.lock().stuck = why;
    }

    /// A batch of `queue` was stored (`stamp`, `count`: its numbers): the partition may send
    /// another.
    pub(crate) fn done(
        &self,
        queue: &Arc<PartitionQueue>,
        stamp: Option<Stamp>,
        count: i32,
        idempotence: &Idempotence,
    ) {
        {
            let mut st = queue.state.lock();
            idempotence.stored(&mut st.sequence, stamp, count);
            st.returned(true);
        }
        queue.signal();
    }

    /// Puts `batches` (one batch taken, or both halves of it) back into the queue at their
    /// place; the partition drains before sending again. `f` runs on the partition's sequence
    /// state first (under the lock): the idempotence module's verdict.
    pub(crate) fn put_back(
        &self,
        queue: &Arc<PartitionQueue>,
        mut batches: Vec<ProducerBatch>,
        f: impl FnOnce(&mut Sequence, &mut [ProducerBatch]),
    ) {
        {
            let mut st = queue.state.lock();
            f(&mut st.sequence, &mut batches);
            st.returned(false);
            // After the producer closed nothing drains the queue: the batches end (Closed) as
            // they are dropped, outside the lock.
            if !self.closed.load(Ordering::Acquire) {
                for b in batches.drain(..) {
                    let at = st.queued.partition_point(|q| q.order <= b.order);
                    st.queued.insert(at, b);
                }
            }
        }
        drop(batches);
        queue.signal();
    }

    /// A numbered batch of `queue` ended without being stored for sure. `f` runs on the
    /// partition's sequence state first (under the lock).
    pub(crate) fn dropped(
        &self,
        queue: &Arc<PartitionQueue>,
        stamp: Option<Stamp>,
        idempotence: &Idempotence,
    ) {
        self.dropped_with(queue, |seq| idempotence.dropped(seq, stamp));
    }

    /// [`Accumulator::dropped`] with the sequence bookkeeping given by the caller.
    pub(crate) fn dropped_with(&self, queue: &Arc<PartitionQueue>, f: impl FnOnce(&mut Sequence)) {
        {
            let mut st = queue.state.lock();
            f(&mut st.sequence);
            st.returned(false);
        }
        queue.signal();
    }

    /// Fails every batch of `queue` not in flight with `e`.
    pub(crate) fn fail_queued(&self, queue: &PartitionQueue, e: &ProduceError) {
        let (open, queued) = {
            let mut st = queue.state.lock();
            (st.open.take(), std::mem::take(&mut st.queued))
        };
        if let Some(o) = open {
            o.completion
                .complete(crate::delivery::Settled::Whole(Err(e.clone())));
        }
        for b in queued {
            b.settle.finish(Err(e.clone()));
        }
    }

    /// Refuses further appends and fails every batch not in flight (the producer is closing
    /// for good).
    pub(crate) fn abort_all(&self, e: &ProduceError) {
        self.closed.store(true, Ordering::Release);
        for t in self.topics() {
            for p in &t.partitions {
                self.fail_queued(p, e);
            }
        }
    }

    /// Asks that the batch of `outcome` leave without lingering (a flush waits for it).
    pub(crate) fn hurry(&self, outcome: &BatchOutcome) {
        if !outcome.hurry() {
            return;
        }
        if let Some(t) = self.topic(&outcome.topic()) {
            if let Some(p) = t.partitions.get(outcome.partition() as usize) {
                p.signal();
            }
        }
    }
}

/// The buffer a batch opens with: room for its first record, and at least
/// [`MIN_BATCH_BUFFER`] (a few more small records) unless `batch.size` is smaller.
pub(crate) fn first_capacity(first: usize, batch_size: usize) -> usize {
    first.max(MIN_BATCH_BUFFER.min(batch_size))
}

/// The buffer a batch of `capacity` grows to for `want` bytes: doubled (copies stay linear in
/// the batch's size), at least `want`, at most `batch.size`.
fn grown_capacity(capacity: usize, want: usize, batch_size: usize) -> usize {
    capacity.saturating_mul(2).min(batch_size).max(want)
}

fn close_into(st: &mut PartitionState, o: OpenBatch) {
    let OpenBatch {
        builder,
        order,
        created,
        completion,
    } = o;
    st.queued.push_back(ProducerBatch {
        count: builder.count(),
        order,
        body: Body::Open(builder),
        created,
        attempts: 0,
        retry_at: None,
        stamp: None,
        last_error: None,
        maybe_stored: false,
        settle: Settle::Whole(completion),
    });
}

type TakeFailed = Box<(ProducerBatch, ProduceError)>;

fn take_locked(
    st: &mut PartitionState,
    now: Instant,
    max_in_flight: usize,
    linger: Duration,
    pressure: bool,
    idempotence: &Arc<Idempotence>,
) -> Result<Take, TakeFailed> {
    // Without idempotence nothing stops the broker from storing a batch behind one that
    // failed before that one's retry: one batch in flight keeps order (Java's
    // max.in.flight.requests.per.connection=1; Java with more may reorder).
    let max_in_flight = if idempotence.enabled() {
        max_in_flight
    } else {
        1
    };
    if st.in_flight > 0 && (st.draining || st.in_flight >= max_in_flight) {
        return Ok(Take::Busy);
    }
    if st.queued.is_empty() {
        let Some(open) = &st.open else {
            return Ok(Take::Empty);
        };
        let due = open.created + linger;
        if due <= now + LINGER_SLACK || pressure || open.completion.outcome.hurried() {
            let o = st.open.take().expect("open batch");
            close_into(st, o);
        } else {
            return Ok(Take::Later(due - LINGER_SLACK, true));
        }
    }
    let head = st.queued.front_mut().expect("queued");
    if let Some(at) = head.retry_at {
        if at > now {
            return Ok(Take::Later(at, false));
        }
    }
    match idempotence.stamp(&mut st.sequence, &mut head.stamp, head.count) {
        Ok(stamp) => {
            let batch = st.queued.pop_front().expect("head");
            st.in_flight += 1;
            st.stuck = None;
            Ok(Take::Batch(Box::new(batch), stamp))
        }
        Err(NoStamp::Wait(at, why)) => {
            st.stuck = Some(why);
            Ok(Take::Identity(at))
        }
        Err(NoStamp::Fatal(e)) => {
            let batch = st.queued.pop_front().expect("head");
            Err(Box::new((batch, e)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::{BatchAck, Settled};

    fn acc(linger_ms: u64, batch_size: usize) -> (Accumulator, Arc<Ledger>) {
        let ledger = Ledger::new(1 << 20);
        (
            Accumulator::new(
                AccumulatorConfig {
                    batch_size,
                    max_in_flight: 5,
                    linger: Duration::from_millis(linger_ms),
                    delivery_timeout: Duration::from_secs(120),
                },
                ledger.clone(),
            ),
            ledger,
        )
    }

    fn no_idempotence() -> Arc<Idempotence> {
        crate::idempotence::for_tests(false)
    }

    fn append(
        a: &Accumulator,
        q: &Arc<PartitionQueue>,
        owner: &Arc<OwnerAccount>,
        value: &[u8],
    ) -> Arc<BatchOutcome> {
        let r = Record::new("t", value);
        let mut reserved = 0;
        loop {
            match a.append(
                q,
                &r,
                0,
                value.len(),
                owner,
                0,
                &mut None,
                &mut reserved,
                true,
            ) {
                Ok((o, _)) => {
                    a.ledger.memory.add_permits(reserved);
                    return o;
                }
                Err(NotAppended::NeedMemory { bytes: n, .. }) => {
                    a.ledger
                        .memory
                        .try_acquire_many((n - reserved) as u32)
                        .unwrap()
                        .forget();
                    reserved = n;
                }
                Err(NotAppended::Closed | NotAppended::Evicted) => panic!("closed"),
            }
        }
    }

    fn take(a: &Accumulator, q: &PartitionQueue, now: Instant) -> Option<ProducerBatch> {
        match a.take(q, now, &no_idempotence()) {
            Take::Batch(b, _) => Some(*b),
            _ => None,
        }
    }

    fn owner() -> Arc<OwnerAccount> {
        OwnerAccount::new("o".into(), None, None, None)
    }

    #[test]
    fn a_batch_closes_at_batch_size_and_lingers_otherwise() {
        let (a, _) = acc(100, 200);
        let t = a.topic_with("t", 1);
        let q = &t.partitions[0];
        let o = owner();
        let first = append(&a, q, &o, &[1; 90]);
        match a.take(q, Instant::now(), &no_idempotence()) {
            Take::Later(due, true) => assert!(due > Instant::now() + Duration::from_millis(50)),
            _ => panic!("a fresh batch lingers"),
        }
        // The second record does not fit in 200 bytes: the first batch closes and is due now.
        let second = append(&a, q, &o, &[2; 90]);
        assert!(!Arc::ptr_eq(&first, &second));
        let b = take(&a, q, Instant::now()).expect("closed batch is due at once");
        assert_eq!(b.count, 1);
        // Without idempotence, one batch in flight per partition.
        assert!(matches!(
            a.take(
                q,
                Instant::now() + Duration::from_secs(1),
                &no_idempotence()
            ),
            Take::Busy
        ));
        a.done(q, None, 1, &no_idempotence());
        let b2 =
            take(&a, q, Instant::now() + Duration::from_millis(100)).expect("due after linger");
        assert_eq!(b2.count, 1);
        drop((b, b2));
    }

    #[test]
    fn several_batches_fly_and_one_put_back_drains_the_partition_then_goes_in_order() {
        let (a, _) = acc(0, 100);
        let t = a.topic_with("t", 1);
        let q = &t.partitions[0];
        let o = owner();
        // Each record fills a batch: seven batches, made in order 0..7.
        for i in 0..7 {
            append(&a, q, &o, &[i; 60]);
        }
        let now = Instant::now();
        let idem = crate::idempotence::for_tests_with_id();
        let take = |a: &Accumulator, q: &PartitionQueue, now| match a.take(q, now, &idem) {
            Take::Batch(b, _) => Some(*b),
            _ => None,
        };
        let mut flying: Vec<ProducerBatch> = (0..5).map(|_| take(&a, q, now).unwrap()).collect();
        assert_eq!(
            flying.iter().map(|b| b.order).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4]
        );
        assert!(
            matches!(a.take(q, now, &idem), Take::Busy),
            "max.in.flight.requests.per.connection=5 per partition"
        );
        let b4 = flying.pop().unwrap();
        let b3 = flying.pop().unwrap();
        let b2 = flying.pop().unwrap();
        let b1 = flying.pop().unwrap();
        let b0 = flying.pop().unwrap();
        a.done(q, None, 1, &idem);
        drop(b0);
        // Batch 1 comes back for a retry: nothing leaves until the rest are back.
        a.put_back(q, vec![b1], |_, _| {});
        assert!(matches!(a.take(q, now, &idem), Take::Busy), "draining");
        a.put_back(q, vec![b3], |_, _| {});
        a.done(q, None, 1, &idem);
        drop(b2);
        assert!(
            matches!(a.take(q, now, &idem), Take::Busy),
            "still draining"
        );
        a.put_back(q, vec![b4], |_, _| {});
        // Back in the order they were made, retries included.
        let again: Vec<u64> = (0..5).map(|_| take(&a, q, now).unwrap().order).collect();
        assert_eq!(again, [1, 3, 4, 5, 6]);
    }

    #[test]
    fn buffer_memory_counts_what_batches_hold_not_batch_size() {
        let ledger = Ledger::new(8 << 20);
        let a = Accumulator::new(
            AccumulatorConfig {
                batch_size: 1_000_000,
                max_in_flight: 5,
                linger: Duration::from_secs(60),
                delivery_timeout: Duration::from_secs(120),
            },
            ledger.clone(),
        );
        let total = ledger.memory.available_permits();
        let t = a.topic_with("t", 1000);
        let o = owner();
        for p in 0..1000 {
            append(&a, &t.partitions[p], &o, b"x");
        }
        // 1,000 partitions with a tiny record each hold about a KiB each, not 1 GB.
        let held = total - ledger.memory.available_permits();
        assert_eq!(held, 1000 * MIN_BATCH_BUFFER, "held {held}");
        // One partition's batch grows as records come, counting every growth.
        let q = &t.partitions[0];
        let mut outcomes = Vec::new();
        for _ in 0..5000 {
            outcomes.push(append(&a, q, &o, &[7; 100]));
        }
        let grown = total - ledger.memory.available_permits() - 999 * MIN_BATCH_BUFFER;
        let len = match &q.state.lock().open {
            Some(open) => {
                assert_eq!(open.builder.capacity(), grown, "counted what is allocated");
                open.builder.len()
            }
            None => panic!("500 KB of records stay in one open batch of 1 MB"),
        };
        assert!(
            grown >= len && grown < 2 * len,
            "buffer {grown} for {len} bytes"
        );
        assert!(Arc::ptr_eq(&outcomes[0], &outcomes[4999]), "one batch");
        // Up to batch.size and no further: the next records go into a new batch.
        for _ in 0..6000 {
            append(&a, q, &o, &[8; 100]);
        }
        let st = q.state.lock();
        assert_eq!(st.queued.len(), 1, "one full batch closed");
        match &st.queued[0].body {
            Body::Open(b) => {
                assert!(b.len() <= 1_000_000 && b.len() > 990_000, "{}", b.len());
                assert_eq!(b.capacity(), 1_000_000);
            }
            Body::Closed(_) => panic!("closed by a sink only"),
        }
        drop(st);
        // Everything goes back when the batches end.
        a.abort_all(&ProduceError::Closed);
        assert_eq!(ledger.memory.available_permits(), total);
    }

    #[test]
    fn a_hurried_batch_leaves_and_completion_frees_memory() {
        let (a, ledger) = acc(60_000, 16384);
        let t = a.topic_with("t", 1);
        let q = &t.partitions[0];
        let o = owner();
        let outcome = append(&a, q, &o, b"x");
        assert!(take(&a, q, Instant::now()).is_none());
        a.hurry(&outcome);
        let b = take(&a, q, Instant::now()).expect("a flush hurries the batch");
        a.done(q, None, 1, &no_idempotence());
        b.settle.finish(Ok(BatchAck {
            base_offset: 7,
            log_append_time: None,
        }));
        assert_eq!(
            ledger.memory.available_permits(),
            1 << 20,
            "memory given back"
        );
        assert_eq!(o.buffered.load(Ordering::Relaxed), 0);
        assert_eq!(outcome.record(0).unwrap().unwrap().offset, 7);
    }

    #[test]
    fn an_evicted_topic_takes_no_more_records_and_its_numbers_are_not_reused() {
        let (a, _) = acc(0, 1000);
        let t = a.topic_with("t", 1);
        let q = &t.partitions[0];
        let o = owner();
        let idem = no_idempotence();
        // Busy: not evicted.
        append(&a, q, &o, b"x");
        assert!(a.evict_idle(Duration::ZERO, &idem).is_empty());
        let b = take(&a, q, Instant::now()).unwrap();
        drop(b);
        a.done(q, None, 1, &no_idempotence());
        assert_eq!(a.evict_idle(Duration::ZERO, &idem), vec![Arc::from("t")]);
        assert!(a.topic("t").is_none());
        // A send that still holds the old queues is sent to the new ones.
        let mut reserved = 1 << 20;
        assert!(matches!(
            a.append(
                q,
                &Record::new("t", b"late"),
                0,
                4,
                &o,
                0,
                &mut None,
                &mut reserved,
                true
            ),
            Err(NotAppended::Evicted)
        ));
    }

    #[test]
    fn batches_put_back_go_first_in_their_order() {
        let (a, _) = acc(0, 100);
        let t = a.topic_with("t", 1);
        let q = &t.partitions[0];
        let o = owner();
        for i in 0..3 {
            append(&a, q, &o, &[i; 60]);
        }
        let now = Instant::now();
        let b0 = take(&a, q, now).unwrap();
        let first = b0.settle.outcome().unwrap();
        a.put_back(q, vec![b0], |_, _| {});
        let again = take(&a, q, now).unwrap();
        assert!(
            Arc::ptr_eq(&again.settle.outcome().unwrap(), &first),
            "the retry goes first"
        );
        drop(again);
    }

    #[test]
    fn batches_expire_after_delivery_timeout_and_nothing_is_left_unanswered() {
        let ledger = Ledger::new(1 << 20);
        let a = Accumulator::new(
            AccumulatorConfig {
                batch_size: 16384,
                max_in_flight: 5,
                linger: Duration::ZERO,
                delivery_timeout: Duration::from_millis(10),
            },
            ledger.clone(),
        );
        let t = a.topic_with("t", 1);
        let q = &t.partitions[0];
        let o = owner();
        let outcome = append(&a, q, &o, b"late");
        let idem = no_idempotence();
        assert!(a.expire_all(Instant::now(), &idem).is_some());
        assert!(a
            .expire_all(Instant::now() + Duration::from_millis(20), &idem)
            .is_none());
        match outcome.record(0) {
            Some(Err(ProduceError::DeliveryTimeout { .. })) => {}
            other => panic!("expected a delivery timeout, got {other:?}"),
        }
        // After abort, appends are refused and queued records end Closed, and so does a batch
        // a sink puts back afterwards (nothing would send it any more).
        let other = append(&a, q, &o, b"queued");
        let in_flight = take(&a, q, Instant::now()).unwrap();
        let back = append(&a, q, &o, b"later");
        a.abort_all(&ProduceError::Closed);
        assert_eq!(back.record(0), Some(Err(ProduceError::Closed)));
        assert!(
            other.record(0).is_none(),
            "in flight when the producer closed"
        );
        a.put_back(q, vec![in_flight], |_, _| {});
        assert_eq!(other.record(0), Some(Err(ProduceError::Closed)));
        let mut reserved = 1 << 20;
        assert!(matches!(
            a.append(
                q,
                &Record::new("t", b"x"),
                0,
                1,
                &o,
                0,
                &mut None,
                &mut reserved,
                true
            ),
            Err(NotAppended::Closed)
        ));
        let _ = Settled::Whole(Err(ProduceError::Closed));
    }
}
