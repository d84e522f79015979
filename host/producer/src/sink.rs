//! A sink: one task per broker, as franz-go's sink. It owns the connection to its broker, the
//! requests in flight on it, and the sending of the batches of the partitions that broker
//! leads.
//!
//! The loop never awaits the network inline: connecting (TCP and ApiVersions, within
//! `socket.connection.setup.timeout.ms`) runs beside it, writes go through the connection's
//! writer task, answers come in as events. Every wait has a deadline it watches: a request not
//! answered within `request.timeout.ms` (also one stuck because the broker stopped reading)
//! closes the connection and sends its batches again with the same numbers; a batch whose
//! `delivery.timeout.ms` passes while in flight fails at that moment (its records may still be
//! stored, as with the Java client). A broker that is slow or down holds up only its own
//! partitions: the other sinks are other tasks.
//!
//! A sink learns which partitions to look at from its ready list ([`ReadyList`]): a partition
//! is pushed there when a batch opens, closes, is hurried by a flush, or comes back. Requests
//! carry at most one batch per partition (a partition with more to send goes into the next
//! request, up to `max.in.flight.requests.per.connection` of its batches in flight), at most
//! `max.request.size` bytes, and point at the batch bytes ([`crate::request`]); they wait in
//! the sink's outbox ([`crate::outbox`]) while their batches are compressed and stamped,
//! outside any partition lock and, when large, on other threads. Answers are judged by the Java client's rules, with the idempotence
//! module deciding about numbers. It must not build batches or choose partitions.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::accumulator::{Accumulator, Body, PartitionQueue, ProducerBatch, ReadyList, Take};
use crate::batch::CodecPool;
use crate::config::{Acks, ProducerConfig};
use crate::connection::{Connection, Event, NetError};
use crate::control::ConnectOptions;
use crate::delivery::BatchAck;
use crate::error::{kafka_error_name, ProduceError};
use crate::idempotence::{Idempotence, Stamp};
use crate::ledger::Ledger;
use crate::metadata::Metadata;
use crate::outbox::{Added, Finished, Outbox, SealFailed, Sent};
use crate::request::{self, PartitionData, PRODUCE, PRODUCE_MAX_VERSION, PRODUCE_MIN_VERSION};

/// Counters of what the sinks did.
#[derive(Debug, Default)]
pub(crate) struct SinkStats {
    pub(crate) produce_requests: std::sync::atomic::AtomicU64,
    pub(crate) retries: std::sync::atomic::AtomicU64,
    pub(crate) connections: std::sync::atomic::AtomicU64,
    pub(crate) splits: std::sync::atomic::AtomicU64,
}

/// What every sink of a producer shares.
pub(crate) struct SinkContext {
    pub(crate) config: Arc<ProducerConfig>,
    pub(crate) accumulator: Arc<Accumulator>,
    pub(crate) ledger: Arc<Ledger>,
    pub(crate) idempotence: Arc<Idempotence>,
    pub(crate) metadata: Arc<Metadata>,
    pub(crate) stats: Arc<SinkStats>,
    pub(crate) connect: ConnectOptions,
    pub(crate) shutdown: watch::Receiver<bool>,
    /// The producer's runtime: sinks run there, whichever task started them.
    pub(crate) runtime: tokio::runtime::Handle,
    /// Codecs for every batch the sinks compress.
    pub(crate) codecs: Arc<CodecPool>,
}

/// A running sink, as the router holds it.
pub(crate) struct SinkHandle {
    pub(crate) ready: Arc<ReadyList>,
    addr: watch::Sender<String>,
    task: JoinHandle<()>,
}

impl SinkHandle {
    /// Points the sink at a broker's new address (it reconnects).
    pub(crate) fn set_addr(&self, addr: &str) {
        self.addr.send_if_modified(|a| {
            let changed = a != addr;
            if changed {
                *a = addr.to_string();
            }
            changed
        });
    }

    /// The broker's address.
    pub(crate) fn addr(&self) -> String {
        self.addr.borrow().clone()
    }

    /// Whether the task ended.
    pub(crate) fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

/// Starts the sink of broker `node` at `addr`.
pub(crate) fn spawn(ctx: Arc<SinkContext>, node: i32, addr: &str) -> SinkHandle {
    let ready = ReadyList::new(node, ctx.config.partitioner_availability_timeout);
    let runtime = ctx.runtime.clone();
    let (addr_tx, addr_rx) = watch::channel(addr.to_string());
    let sink = Sink {
        identity: ctx.idempotence.subscribe(),
        outbox: Outbox::new(ctx.codecs.clone(), runtime.clone()),
        ctx,
        ready: ready.clone(),
        addr: addr_rx,
        link: Link::Down { retry_at: None },
        failures: 0,
        examine: VecDeque::new(),
        timers: BinaryHeap::new(),
        timer_seq: 0,
        waiting: Vec::new(),
        in_flight: VecDeque::new(),
        throttled_until: None,
    };
    let task = runtime.spawn(sink.run());
    SinkHandle {
        ready,
        addr: addr_tx,
        task,
    }
}

enum Link {
    Down { retry_at: Option<Instant> },
    Connecting(JoinHandle<Result<(Connection, i16), NetError>>),
    Up(Connection, i16),
}

struct Timer {
    at: Instant,
    seq: u64,
    queue: Arc<PartitionQueue>,
    /// A lingering batch's due time (memory pressure makes it due at once), as opposed to a
    /// retry backoff or a wait for a producer id (which pressure does not shorten).
    linger: bool,
}

impl PartialEq for Timer {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Timer {}
impl PartialOrd for Timer {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Timer {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

struct InFlight {
    sent: Instant,
    correlation: i32,
    version: i16,
    deadline: Instant,
    /// The earliest delivery deadline of a batch in it that has not failed yet.
    expires: Option<Instant>,
    batches: Vec<Sent>,
    acks0: bool,
}

/// What an answer means for one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Stored: complete with the broker's offset.
    Stored,
    /// DUPLICATE_SEQUENCE_NUMBER: an earlier attempt was stored; complete without an offset.
    Duplicate,
    /// Not stored; send again with the same numbers after a backoff.
    Retry,
    /// Not stored, out of order: an earlier batch is not stored yet (send again with the same
    /// numbers after it), or the broker lost the producer's sequence (renumber under a newer
    /// identity, then send again): the idempotence module tells which.
    OutOfOrder,
    /// Not stored, the broker refused the epoch: renumber under a fetched identity.
    Refused,
    /// Not stored, too large: split in two and send both halves.
    Split,
    /// A final error for this batch's records.
    Fail,
}

/// The Java client's judgement of a Produce error code.
fn verdict(code: i16) -> Verdict {
    match code {
        0 => Verdict::Stored,
        46 => Verdict::Duplicate,
        45 | 59 => Verdict::OutOfOrder,
        47 | 90 => Verdict::Refused,
        10 | 18 => Verdict::Split,
        // REQUEST_TIMED_OUT, NETWORK_EXCEPTION, NOT_ENOUGH_REPLICAS(_AFTER_APPEND) are
        // retriable whatever the table says.
        7 | 13 | 19 | 20 => Verdict::Retry,
        _ if kafka_protocol::error::ParseResponseErrorCode::err(code)
            .is_some_and(|e| e.is_retriable()) =>
        {
            Verdict::Retry
        }
        _ => Verdict::Fail,
    }
}

/// The first Produce version whose throttle the client applies (KIP-219).
const KIP_219_VERSION: i16 = 6;

/// Errors that mean our view of leaders is stale.
fn needs_metadata(code: i16) -> bool {
    matches!(code, 3 | 5 | 6 | 13 | 56 | 74 | 75)
}

/// Why a batch failed to go, for the error its records get.
struct Failure {
    cause: String,
    /// The Kafka error, when the broker gave one.
    code: Option<i16>,
    /// No answer came: the broker may have stored it.
    maybe_stored: bool,
}

struct Sink {
    ctx: Arc<SinkContext>,
    ready: Arc<ReadyList>,
    addr: watch::Receiver<String>,
    link: Link,
    failures: u32,
    examine: VecDeque<Arc<PartitionQueue>>,
    timers: BinaryHeap<Reverse<Timer>>,
    timer_seq: u64,
    /// Partitions whose head waits for a producer id.
    waiting: Vec<Arc<PartitionQueue>>,
    in_flight: VecDeque<InFlight>,
    /// Requests put together and not written yet.
    outbox: Outbox,
    throttled_until: Option<Instant>,
    identity: watch::Receiver<u64>,
}

impl Sink {
    fn node(&self) -> i32 {
        self.ready.node
    }

    fn who(&self) -> String {
        format!("broker {} ({})", self.node(), &*self.addr.borrow())
    }

    async fn run(mut self) {
        let mut shutdown = self.ctx.shutdown.clone();
        let mut addr = self.addr.clone();
        // The router holds the sender; once it lets go (the broker left the cluster), the sink
        // only finishes what is in flight.
        let mut addr_open = true;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let now = Instant::now();
            self.fire_timers(now);
            self.expire_in_flight(now);
            if let Some(front) = self.in_flight.front() {
                if front.deadline <= now {
                    let e = NetError::Timeout {
                        addr: self.addr.borrow().clone(),
                        timeout: self.ctx.config.request_timeout,
                    };
                    self.lost(e, now);
                }
            }
            match &self.link {
                Link::Up(conn, _) if conn.renew_at().is_some_and(|t| t <= now) => {
                    // KIP-368: the broker's SASL session ends soon. No new requests here;
                    // once the ones in flight are answered, a new connection authenticates.
                    if self.in_flight.is_empty() {
                        self.link = Link::Down { retry_at: None };
                        if self.has_work() {
                            self.connect();
                        }
                    }
                }
                Link::Up(..) => self.send(now),
                Link::Down { retry_at } => {
                    if self.has_work() && retry_at.is_none_or(|at| at <= now) {
                        self.connect();
                    }
                }
                Link::Connecting(_) => {}
            }
            if self.ready.is_retired() && self.in_flight.is_empty() && self.outbox.is_empty() {
                break;
            }
            self.ready
                .set_waiting_since(self.in_flight.front().map(|r| r.sent));
            let wake = self.next_wake(now);
            tokio::select! {
                _ = self.ready.wake.notified() => {}
                happened = on_link(&mut self.link) => match happened {
                    OnLink::Event(event) => self.on_event(event),
                    OnLink::Connected(joined) => self.on_connected(joined),
                },
                done = job(self.outbox.next_job()) => {
                    let finished = self.outbox.job_done(done);
                    self.on_sealed(finished);
                }
                _ = self.identity.changed() => {
                    for p in std::mem::take(&mut self.waiting) {
                        self.ready.signal(&p);
                    }
                }
                changed = addr.changed(), if addr_open => {
                    if changed.is_err() {
                        addr_open = false;
                        continue;
                    }
                    // The broker moved: start over on the new address.
                    if !matches!(self.link, Link::Down { .. }) {
                        let e = NetError::Io {
                            addr: addr.borrow().clone(),
                            reason: "the broker moved".into(),
                        };
                        self.lost(e, Instant::now());
                        self.link = Link::Down { retry_at: None };
                    }
                }
                _ = sleep_until(wake) => {}
                _ = shutdown.changed() => {}
            }
        }
        self.ready.set_up(false);
        // Whatever is still here ends now: put back what was never sent, and what was sent
        // ends Closed (its completion settles when dropped).
        self.give_back();
        while let Some(j) = self.outbox.next_job() {
            let done = j.await;
            let finished = self.outbox.job_done(done);
            self.on_sealed(finished);
        }
        let timers = std::mem::take(&mut self.timers)
            .into_iter()
            .map(|Reverse(t)| t.queue);
        let waiting = std::mem::take(&mut self.waiting);
        for p in self
            .examine
            .drain(..)
            .chain(self.ready.take())
            .chain(timers)
            .chain(waiting)
        {
            if !p.routed_to(&self.ready) {
                p.signal();
            }
        }
        if let Link::Connecting(h) = &self.link {
            h.abort();
        }
    }

    fn has_work(&self) -> bool {
        !self.examine.is_empty()
            || !self.outbox.is_empty()
            || !self.timers.is_empty()
            || !self.waiting.is_empty()
            || self.ready.has_signals()
    }

    fn next_wake(&self, now: Instant) -> Option<Instant> {
        let mut wake: Option<Instant> = None;
        let mut at = |t: Instant| wake = Some(wake.map_or(t, |w: Instant| w.min(t)));
        if let Some(Reverse(t)) = self.timers.peek() {
            at(t.at);
        }
        if let Some(f) = self.in_flight.front() {
            at(f.deadline);
        }
        for r in &self.in_flight {
            if let Some(e) = r.expires {
                at(e);
            }
        }
        if let Some(t) = self.outbox.oldest() {
            at(t + self.ctx.config.delivery_timeout);
        }
        if let Link::Up(conn, _) = &self.link {
            // Once passed, the renewal waits for the answers in flight, and they wake the
            // task: a past time here would spin it until they come.
            if let Some(t) = conn.renew_at().filter(|t| *t > now) {
                at(t);
            }
        }
        if let Link::Down {
            retry_at: Some(retry),
        } = self.link
        {
            if self.has_work() {
                at(retry);
            }
        }
        if let Some(t) = self.throttled_until {
            if t > now {
                at(t);
            }
        }
        wake
    }

    fn timer(&mut self, at: Instant, queue: Arc<PartitionQueue>, linger: bool) {
        self.timer_seq += 1;
        self.timers.push(Reverse(Timer {
            at,
            seq: self.timer_seq,
            queue,
            linger,
        }));
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some(Reverse(t)) = self.timers.peek() {
            if t.at > now {
                break;
            }
            let Reverse(t) = self.timers.pop().expect("peeked");
            self.ready.signal(&t.queue);
        }
        // A send waits for memory: lingering batches leave now (retries keep their backoff).
        if self.ctx.ledger.under_pressure() && self.timers.iter().any(|Reverse(t)| t.linger) {
            let (linger, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.timers)
                .into_iter()
                .partition(|Reverse(t)| t.linger);
            self.timers = rest.into_iter().collect();
            for Reverse(t) in linger {
                self.ready.signal(&t.queue);
            }
        }
    }

    fn connect(&mut self) {
        let addr = self.addr.borrow().clone();
        let options = self.ctx.connect.clone();
        self.link = Link::Connecting(tokio::spawn(async move {
            let conn = options.connect(&addr).await?;
            let version = conn.version::<ProduceRequest>(PRODUCE_MAX_VERSION)?;
            if version < PRODUCE_MIN_VERSION {
                return Err(conn.protocol(format!(
                    "the broker speaks Produce up to v{version}; wafka needs v{PRODUCE_MIN_VERSION}"
                )));
            }
            Ok((conn, version))
        }));
    }

    fn on_connected(
        &mut self,
        joined: Result<Result<(Connection, i16), NetError>, tokio::task::JoinError>,
    ) {
        let now = Instant::now();
        match joined {
            Ok(Ok((conn, version))) => {
                tracing::debug!(node = self.node(), addr = conn.addr(), version, "connected");
                self.ctx.stats.connections.fetch_add(1, Ordering::Relaxed);
                if self.failures > 0 {
                    tracing::info!("{} reachable again", self.who());
                }
                self.failures = 0;
                self.link = Link::Up(conn, version);
                self.ready.set_up(true);
            }
            Ok(Err(e)) => self.down(e, now),
            Err(e) => {
                let addr = self.addr.borrow().clone();
                self.down(
                    NetError::Connect {
                        addr,
                        reason: e.to_string(),
                    },
                    now,
                )
            }
        }
    }

    /// The link is gone (or never came): back off before the next attempt, and say why on the
    /// partitions that wait for it.
    fn down(&mut self, e: NetError, now: Instant) {
        if self.failures == 0 {
            tracing::warn!("{} unreachable: {e}", self.who());
        } else {
            tracing::debug!("{} still unreachable: {e}", self.who());
        }
        let wait = self.ctx.connect.backoff(self.failures);
        self.failures += 1;
        self.link = Link::Down {
            retry_at: Some(now + wait),
        };
        self.ready.set_up(false);
        self.ctx.metadata.request_refresh();
        let why = format!(
            "the partition's leader, broker {}, is unreachable: {e}",
            self.node()
        );
        let pending: Vec<_> = self.examine.drain(..).chain(self.ready.take()).collect();
        for p in pending {
            self.ctx.accumulator.set_stuck(&p, Some(why.clone()));
            self.ready.signal(&p);
        }
    }

    /// The connection failed with requests in flight: their batches go again with the same
    /// numbers (the broker may have stored them), the link backs off. A connection that
    /// closes with nothing in flight (a broker's `connections.max.idle.ms`) only goes down:
    /// the broker stays available to new records, and the next work connects again at once.
    fn lost(&mut self, e: NetError, now: Instant) {
        if self.in_flight.is_empty() && matches!(e, NetError::Io { .. }) {
            // Batches put together but not written were not sent: they go back in order.
            tracing::debug!("{} closed an idle connection: {e}", self.who());
            self.give_back();
            self.link = Link::Down { retry_at: None };
            return;
        }
        let cause = format!("{e} (broker {})", self.node());
        let requests: Vec<InFlight> = self.in_flight.drain(..).collect();
        for r in requests {
            for s in r.batches {
                self.retry_or_fail(
                    s,
                    Failure {
                        cause: cause.clone(),
                        code: None,
                        maybe_stored: true,
                    },
                    Verdict::Retry,
                );
            }
        }
        self.give_back();
        self.down(e, now);
    }

    /// Puts back in their queues the batches put together and not written (those still
    /// compressing follow when done, see [`Sink::on_sealed`]).
    fn give_back(&mut self) {
        for s in self.outbox.give_back() {
            self.ctx
                .accumulator
                .put_back(&s.queue, vec![s.batch], |_, _| {});
        }
    }

    /// A batch compressed beside the sink is done.
    fn on_sealed(&mut self, finished: Finished) {
        match finished {
            Finished::Placed => {}
            Finished::Back(s) => {
                let s = *s;
                self.ctx
                    .accumulator
                    .put_back(&s.queue, vec![s.batch], |_, _| {});
            }
            Finished::Failed(f) => self.seal_failed(f),
        }
    }

    /// A batch that could not be compressed: its records fail.
    fn seal_failed(&mut self, f: Box<SealFailed>) {
        let SealFailed {
            queue,
            batch,
            reason,
        } = *f;
        self.drop_batch(queue, batch, ProduceError::Fatal(reason));
    }

    /// Puts requests together while the connection has room for them, and writes those whose
    /// batches are sealed.
    fn send(&mut self, now: Instant) {
        let max_in_flight = self.ctx.config.max_in_flight.max(1);
        let max_size = self.ctx.config.max_request_size;
        // Only while up: a write that fails takes the link down (and puts its batches back),
        // and must end the loop, not spin on them.
        while matches!(self.link, Link::Up(..))
            && self.in_flight.len() + self.outbox.requests() < max_in_flight
            && self.throttled_until.is_none_or(|t| t <= now)
        {
            self.outbox.start();
            // Partitions that gave a batch to this request: one batch each per request; they
            // are looked at again for the next one.
            let mut again: Vec<Arc<PartitionQueue>> = Vec::new();
            loop {
                if self.examine.is_empty() {
                    self.examine.extend(self.ready.take());
                    if self.examine.is_empty() {
                        break;
                    }
                }
                let p = self.examine.pop_front().expect("non-empty");
                if !p.routed_to(&self.ready) {
                    // It moved: make sure its new sink hears of it.
                    p.signal();
                    continue;
                }
                if self.outbox.holds(&p) {
                    if !again.iter().any(|a| Arc::ptr_eq(a, &p)) {
                        again.push(p);
                    }
                    continue;
                }
                match self.ctx.accumulator.take(&p, now, &self.ctx.idempotence) {
                    Take::Batch(batch, stamp) => {
                        match self.outbox.add(p.clone(), *batch, stamp, max_size) {
                            Added::Joined => again.push(p),
                            Added::Carried => {
                                again.push(p);
                                break;
                            }
                            Added::Failed(f) => self.seal_failed(f),
                        }
                    }
                    Take::Later(at, linger) => self.timer(at, p, linger),
                    Take::Identity(at) => {
                        if let Some(at) = at {
                            self.timer(at, p.clone(), false);
                        }
                        if !self.waiting.iter().any(|w| Arc::ptr_eq(w, &p)) {
                            self.waiting.push(p);
                        }
                    }
                    Take::Busy | Take::Empty => {}
                }
            }
            // Looked at again for the next requests, after the partitions still waiting their
            // turn (round robin: a hot partition does not starve the others).
            self.examine.extend(again);
            if !self.outbox.finish() {
                break;
            }
        }
        self.write_ready(now);
    }

    /// Writes the requests whose batches are all sealed, in order, while there is room.
    fn write_ready(&mut self, now: Instant) {
        let max_in_flight = self.ctx.config.max_in_flight.max(1);
        let max_size = self.ctx.config.max_request_size;
        while matches!(self.link, Link::Up(..))
            && self.in_flight.len() < max_in_flight
            && self.throttled_until.is_none_or(|t| t <= now)
        {
            let Some(parts) = self.outbox.next_to_write(max_size) else {
                break;
            };
            self.write(parts, now);
        }
    }

    fn write(&mut self, mut parts: Vec<Sent>, now: Instant) {
        let Link::Up(conn, version) = &mut self.link else {
            // Not reachable (send checks the link), but never lose the batches: back they go.
            for s in parts {
                self.ctx
                    .accumulator
                    .put_back(&s.queue, vec![s.batch], |_, _| {});
            }
            return;
        };
        let version = *version;
        let c = &self.ctx.config;
        parts.sort_by(|a, b| a.queue.topic.cmp(&b.queue.topic));
        let correlation = conn.next_correlation();
        let header = conn.header(PRODUCE, version, correlation);
        let data: Vec<PartitionData<'_>> = parts
            .iter()
            .map(|s| PartitionData {
                topic: &s.queue.topic,
                partition: s.queue.partition,
                records: s.bytes.clone(),
            })
            .collect();
        let timeout_ms = c.request_timeout.as_millis().min(i32::MAX as u128) as i32;
        let segments = request::produce_request(&header, version, c.acks.wire(), timeout_ms, &data);
        drop(data);
        let acks0 = c.acks == Acks::None;
        let written = conn.send_frame(segments, !acks0, acks0.then_some(correlation));
        self.ctx
            .stats
            .produce_requests
            .fetch_add(1, Ordering::Relaxed);
        let timeout = self.ctx.config.delivery_timeout;
        let expires = parts
            .iter()
            .filter(|s| !s.batch.settle.is_settled())
            .map(|s| s.batch.created + timeout)
            .min();
        self.in_flight.push_back(InFlight {
            sent: now,
            correlation,
            version,
            deadline: now + c.request_timeout,
            expires,
            batches: parts,
            acks0,
        });
        if let Err(e) = written {
            self.lost(e, now);
        }
    }

    fn on_event(&mut self, event: Event) {
        let now = Instant::now();
        match event {
            Event::Answer(frame) => {
                let Some(req) = self.in_flight.pop_front() else {
                    let e = self.protocol("an answer to no request");
                    return self.lost(e, now);
                };
                if req.acks0 {
                    self.in_flight.push_front(req);
                    let e = self.protocol("an answer to an acks=0 request");
                    return self.lost(e, now);
                }
                let decoded = match &self.link {
                    Link::Up(conn, _) => {
                        conn.decode::<ProduceRequest>(frame, req.version, req.correlation)
                    }
                    _ => return,
                };
                match decoded {
                    Ok(resp) => self.answered(req, resp, now),
                    Err(e) => {
                        self.in_flight.push_front(req);
                        self.lost(e, now);
                    }
                }
            }
            Event::Written(correlation) => {
                if self
                    .in_flight
                    .front()
                    .is_some_and(|r| r.acks0 && r.correlation == correlation)
                {
                    let req = self.in_flight.pop_front().expect("front");
                    for s in req.batches {
                        self.stored(
                            s,
                            BatchAck {
                                base_offset: -1,
                                log_append_time: None,
                            },
                        );
                    }
                }
            }
            Event::Closed(e) => self.lost(e, now),
        }
    }

    fn protocol(&self, reason: &str) -> NetError {
        NetError::Protocol {
            addr: self.addr.borrow().clone(),
            reason: reason.to_string(),
        }
    }

    fn answered(&mut self, req: InFlight, resp: ProduceResponse, now: Instant) {
        // KIP-219: from Produce v6 the broker answers at once and asks us to hold back; before
        // v6 it delayed the answer itself, so the wait is already served.
        if resp.throttle_time_ms > 0 && req.version >= KIP_219_VERSION {
            let asked = Duration::from_millis(resp.throttle_time_ms as u64);
            // A broker asking for more than request.timeout.ms is held to it: one answer must
            // not mute a broker for days (i32::MAX ms is 24.8 days).
            let wait = asked.min(self.ctx.config.request_timeout);
            if wait < asked {
                tracing::warn!(
                    "{} asked to be left alone for {} ms; waiting {} ms (request.timeout.ms)",
                    self.who(),
                    asked.as_millis(),
                    wait.as_millis()
                );
            }
            let until = now + wait;
            self.throttled_until = Some(until);
            // New records without a key go elsewhere meanwhile.
            self.ready.set_throttled_until(Some(until));
        }
        let mut index: HashMap<(&str, i32), usize> = HashMap::new();
        let mut flat = Vec::new();
        for t in &resp.responses {
            for p in &t.partition_responses {
                index.insert((t.name.0.as_str(), p.index), flat.len());
                flat.push(p);
            }
        }
        let mut refresh = false;
        let answers: Vec<_> = req
            .batches
            .iter()
            .map(|s| {
                index
                    .get(&(&*s.queue.topic, s.queue.partition))
                    .map(|&i| flat[i])
            })
            .map(|p| {
                p.map(|p| {
                    (
                        p.error_code,
                        p.base_offset,
                        p.log_append_time_ms,
                        p.error_message.as_ref().map(|m| m.to_string()),
                    )
                })
            })
            .collect();
        for (s, answer) in req.batches.into_iter().zip(answers) {
            let Some((code, base_offset, append_time, message)) = answer else {
                let cause = format!("{} did not answer for this partition", self.who());
                self.retry_or_fail(
                    s,
                    Failure {
                        cause,
                        code: None,
                        maybe_stored: false,
                    },
                    Verdict::Retry,
                );
                continue;
            };
            refresh |= needs_metadata(code);
            let v = verdict(code);
            match v {
                Verdict::Stored => self.stored(
                    s,
                    BatchAck {
                        base_offset,
                        log_append_time: (append_time >= 0).then_some(append_time),
                    },
                ),
                Verdict::Duplicate => self.stored(
                    s,
                    BatchAck {
                        base_offset: -1,
                        log_append_time: None,
                    },
                ),
                Verdict::Split if s.batch.count > 1 => self.split(s),
                Verdict::Fail | Verdict::Split => {
                    let err = ProduceError::Broker {
                        name: kafka_error_name(code),
                        code,
                        topic: s.queue.topic.to_string(),
                        partition: s.queue.partition,
                        message,
                    };
                    self.fail(s, err);
                }
                Verdict::Retry | Verdict::OutOfOrder | Verdict::Refused => {
                    let cause = match &message {
                        Some(m) => format!("{}: {m}", kafka_error_name(code)),
                        None => kafka_error_name(code),
                    };
                    self.retry_or_fail(
                        s,
                        Failure {
                            cause,
                            code: Some(code),
                            maybe_stored: false,
                        },
                        v,
                    );
                }
            }
        }
        if refresh {
            self.ctx.metadata.request_refresh();
        }
    }

    fn stored(&mut self, s: Sent, ack: BatchAck) {
        let Sent { queue, batch, .. } = s;
        let (stamp, count) = (batch.stamp, batch.count);
        batch.settle.finish(Ok(ack));
        self.ctx
            .accumulator
            .done(&queue, stamp, count, &self.ctx.idempotence);
    }

    fn fail(&mut self, s: Sent, err: ProduceError) {
        self.drop_batch(s.queue, s.batch, err);
    }

    /// Ends a batch's records with `err`; its numbers, if any, leave a gap.
    fn drop_batch(
        &mut self,
        queue: Arc<PartitionQueue>,
        mut batch: ProducerBatch,
        err: ProduceError,
    ) {
        batch.settle.finish_now(Err(err));
        self.ctx
            .accumulator
            .dropped(&queue, batch.stamp, &self.ctx.idempotence);
    }

    /// Puts a batch back with a backoff (renumbered if the verdict says so), or fails it when
    /// retries or `delivery.timeout.ms` ran out.
    fn retry_or_fail(&mut self, s: Sent, failure: Failure, v: Verdict) {
        let c = &self.ctx.config;
        let now = Instant::now();
        let Sent {
            queue, mut batch, ..
        } = s;
        if batch.settle.is_settled() {
            // Its records already failed (delivery.timeout.ms passed in flight): its numbers
            // leave a gap (and a refused epoch is remembered).
            let mut stamp = batch.stamp;
            let idem = self.ctx.idempotence.clone();
            self.ctx.accumulator.dropped_with(&queue, |seq| {
                if v == Verdict::Refused {
                    let kept = stamp;
                    idem.refused(seq, &mut stamp);
                    idem.dropped(seq, kept);
                } else {
                    idem.dropped(seq, stamp);
                }
            });
            return;
        }
        batch.maybe_stored |= failure.maybe_stored;
        let attempt = batch.attempts + 1;
        let backoff = c
            .retry_backoff
            .saturating_mul(1 << (attempt - 1).min(16))
            .min(c.retry_backoff_max)
            .mul_f64(rand::random_range(0.8..1.2));
        let deadline = batch.created + c.delivery_timeout;
        let mut cause = failure.cause;
        if batch.maybe_stored {
            cause.push_str("; the broker may have stored the records");
        }
        if now + backoff >= deadline {
            let err = ProduceError::DeliveryTimeout {
                timeout: c.delivery_timeout,
                cause,
            };
            return self.drop_batch(queue, batch, err);
        }
        if batch.attempts >= c.retries {
            let (name, code) = match failure.code {
                Some(code) => (kafka_error_name(code), code),
                None => ("NETWORK_EXCEPTION".to_string(), 13),
            };
            let err = ProduceError::Broker {
                name,
                code,
                topic: queue.topic.to_string(),
                partition: queue.partition,
                message: Some(format!("gave up after retries={}: {cause}", c.retries)),
            };
            return self.drop_batch(queue, batch, err);
        }
        tracing::debug!(topic = %queue.topic, partition = queue.partition, attempt, %cause, "retrying batch");
        self.ctx.stats.retries.fetch_add(1, Ordering::Relaxed);
        batch.attempts = attempt;
        batch.retry_at = Some(now + backoff);
        batch.last_error = Some(cause);
        let idem = self.ctx.idempotence.clone();
        self.ctx
            .accumulator
            .put_back(&queue, vec![batch], move |seq, batches| {
                let stamp = &mut batches[0].stamp;
                match v {
                    Verdict::OutOfOrder => idem.out_of_order(seq, stamp),
                    Verdict::Refused => idem.refused(seq, stamp),
                    _ => {}
                }
            });
    }

    /// MESSAGE_TOO_LARGE / RECORD_LIST_TOO_LARGE for a batch of several records: both halves go
    /// again, numbered within the batch's range (the first half from where it started), so
    /// batches numbered after it keep theirs.
    fn split(&mut self, s: Sent) {
        let level = self.ctx.config.compression_level();
        let Sent { queue, batch, .. } = s;
        let stamp = batch.stamp;
        if batch.settle.is_settled() {
            // Its records already failed (delivery.timeout.ms passed in flight): not again.
            self.ctx
                .accumulator
                .dropped(&queue, stamp, &self.ctx.idempotence);
            return;
        }
        let halves = match &batch.body {
            Body::Closed(c) => c.split(level),
            Body::Open(_) => Ok(None),
        };
        let (a, b) = match halves {
            Ok(Some(h)) => h,
            other => {
                let why = match other {
                    Err(e) => format!("; cannot split it: {e}"),
                    _ => String::new(),
                };
                let err = ProduceError::Broker {
                    name: "MESSAGE_TOO_LARGE".into(),
                    code: 10,
                    topic: queue.topic.to_string(),
                    partition: queue.partition,
                    message: Some(format!("the broker refused the batch as too large{why}")),
                };
                return self.drop_batch(queue, batch, err);
            }
        };
        self.ctx.stats.splits.fetch_add(1, Ordering::Relaxed);
        let ProducerBatch {
            created,
            attempts,
            order,
            settle,
            ..
        } = batch;
        let (sa, sb) = settle.split(a.count());
        let stamp_b = stamp.map(|s| Stamp {
            identity: s.identity,
            base_sequence: s.base_sequence.wrapping_add(a.count()) & i32::MAX,
        });
        let half = |body: crate::batch::ClosedBatch, settle, stamp| ProducerBatch {
            count: body.count(),
            order,
            body: Body::Closed(body),
            created,
            attempts,
            retry_at: None,
            stamp,
            last_error: Some("MESSAGE_TOO_LARGE".into()),
            maybe_stored: false,
            settle,
        };
        let halves = vec![half(a, sa, stamp), half(b, sb, stamp_b)];
        self.ctx.accumulator.put_back(&queue, halves, |_, _| {});
    }

    /// Fails, at their delivery deadline, the batches still waiting for an answer (they stay in
    /// flight until the answer or the request timeout settles their sequence numbers).
    fn expire_in_flight(&mut self, now: Instant) {
        let timeout = self.ctx.config.delivery_timeout;
        // Taken but never written (the requests ahead stayed in flight, or the broker
        // throttled us): not stored.
        for s in self.outbox.take_expired(now, timeout) {
            let err = s.batch.expiry(timeout, None);
            self.fail(s, err);
        }
        let who = self.who();
        for r in &mut self.in_flight {
            if r.expires.is_none_or(|e| e > now) {
                continue;
            }
            let mut next = None;
            for s in &mut r.batches {
                if s.batch.settle.is_settled() {
                    continue;
                }
                let deadline = s.batch.created + timeout;
                if deadline <= now {
                    let cause = format!(
                        "{who} had not answered yet; the broker may still store the records"
                    );
                    s.batch
                        .settle
                        .finish_now(Err(ProduceError::DeliveryTimeout { timeout, cause }));
                } else {
                    next = Some(next.map_or(deadline, |n: Instant| n.min(deadline)));
                }
            }
            r.expires = next;
        }
    }
}

enum OnLink {
    Event(Event),
    Connected(Result<Result<(Connection, i16), NetError>, tokio::task::JoinError>),
}

/// What the link has to say: an event while up, the end of a connection attempt.
async fn on_link(link: &mut Link) -> OnLink {
    match link {
        Link::Up(conn, _) => OnLink::Event(conn.next_event().await),
        Link::Connecting(h) => OnLink::Connected(h.await),
        Link::Down { .. } => std::future::pending().await,
    }
}

/// The end of a sealing job, if there is one to wait for.
async fn job<T>(job: Option<&mut JoinHandle<T>>) -> Result<T, tokio::task::JoinError> {
    match job {
        Some(j) => j.await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accumulator::{AccumulatorConfig, NotAppended};
    use crate::config::Compression;
    use crate::ledger::OwnerAccount;
    use crate::record::Record;

    /// A sink whose connection broke under it (writes fail) with batches of two partitions
    /// waiting: `send` stops, the batches go back to their queues, the link goes down; it does
    /// not spin on them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_to_a_broken_connection_ends_the_round_and_puts_batches_back() {
        let mut config = ProducerConfig::new();
        config.max_request_size = 300;
        config.linger = Duration::ZERO;
        let ledger = Ledger::new(1 << 20);
        let accumulator = Arc::new(Accumulator::new(
            AccumulatorConfig {
                batch_size: 200,
                max_in_flight: 5,
                linger: Duration::ZERO,
                delivery_timeout: Duration::from_secs(120),
            },
            ledger.clone(),
        ));
        let connect = ConnectOptions {
            client_id: "t".into(),
            setup_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            backoff: Duration::from_secs(1),
            backoff_max: Duration::from_secs(1),
            security: Default::default(),
        };
        let ctx = Arc::new(SinkContext {
            runtime: tokio::runtime::Handle::current(),
            config: Arc::new(config),
            accumulator: accumulator.clone(),
            ledger: ledger.clone(),
            idempotence: crate::idempotence::for_tests(false),
            metadata: Arc::new(Metadata::default()),
            stats: Arc::new(SinkStats::default()),
            connect: connect.clone(),
            shutdown: watch::channel(false).1,
            codecs: Arc::new(CodecPool::new(Compression::None, None)),
        });
        let ready = ReadyList::new(1, Duration::ZERO);
        let topic = accumulator.topic_with("t", 2);
        let owner = OwnerAccount::new("o".into(), None, None, None);
        let mut outcomes = Vec::new();
        for q in &topic.partitions {
            q.set_route(Some(ready.clone()));
            for v in [[1u8; 150], [2u8; 150]] {
                // Memory as if reserved (the test does not count it).
                let mut reserved = 1 << 20;
                match accumulator.append(
                    q,
                    &Record::new("t", &v),
                    0,
                    150,
                    &owner,
                    0,
                    &mut None,
                    &mut reserved,
                    true,
                ) {
                    Ok((o, _)) => outcomes.push(o),
                    Err(
                        NotAppended::NeedMemory { .. } | NotAppended::Closed | NotAppended::Evicted,
                    ) => {
                        panic!("append")
                    }
                }
            }
        }
        let (_addr_tx, addr) = watch::channel("127.0.0.1:1".to_string());
        let mut sink = Sink {
            identity: ctx.idempotence.subscribe(),
            outbox: Outbox::new(ctx.codecs.clone(), tokio::runtime::Handle::current()),
            ctx,
            ready: ready.clone(),
            addr,
            link: Link::Up(Connection::gone_for_tests("127.0.0.1:1"), 9),
            failures: 0,
            examine: VecDeque::new(),
            timers: BinaryHeap::new(),
            timer_seq: 0,
            waiting: Vec::new(),
            in_flight: VecDeque::new(),
            throttled_until: None,
        };
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            sink.send(Instant::now());
            let _ = done_tx.send(sink);
        });
        let sink = done_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("send returned (it spun on the batches)");
        assert!(matches!(sink.link, Link::Down { .. }));
        assert!(sink.in_flight.is_empty() && sink.outbox.is_empty());
        assert!(
            outcomes.iter().all(|o| !o.is_done()),
            "nothing lost or failed"
        );
        for q in &topic.partitions {
            assert!(q.busy(), "the batches are back in their queue");
        }
    }

    #[test]
    fn verdicts_follow_the_java_client() {
        assert_eq!(verdict(0), Verdict::Stored);
        // NOT_LEADER_OR_FOLLOWER, LEADER_NOT_AVAILABLE, UNKNOWN_TOPIC_OR_PARTITION: retry.
        for code in [6, 5, 3, 7, 13, 19, 20, 56] {
            assert_eq!(verdict(code), Verdict::Retry, "{code}");
        }
        assert!(needs_metadata(6) && needs_metadata(5) && !needs_metadata(19));
        assert_eq!(verdict(45), Verdict::OutOfOrder);
        assert_eq!(verdict(59), Verdict::OutOfOrder);
        assert_eq!(verdict(46), Verdict::Duplicate);
        assert_eq!(verdict(90), Verdict::Refused);
        assert_eq!(verdict(10), Verdict::Split);
        // TOPIC_AUTHORIZATION_FAILED, INVALID_RECORD, unknown codes: final.
        for code in [29, 87, 10_000] {
            assert_eq!(verdict(code), Verdict::Fail, "{code}");
        }
    }
}
