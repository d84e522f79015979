//! A sink's outbox: the requests it has put together and not written yet.
//!
//! A sink takes batches from its partitions in order and puts them into requests here; every
//! batch is compressed and stamped ("sealed") before its request leaves. A large batch still
//! to compress is sealed on the runtime's blocking threads, so that while it compresses the
//! sink goes on taking and sealing the next ones and a busy broker's batches compress on every
//! core (a one-broker cluster would otherwise compress on one task); a small batch, one closed
//! before (a retry only takes new numbers), or one that finds as many batches compressing
//! beside as the machine has cores, is sealed at once. Requests leave in the
//! order they were put together, each once all its batches are sealed: a partition's batches
//! stay in order.
//!
//! Until a batch is sealed its size is an estimate: its raw bytes times the compression ratio
//! seen so far, which moves fast toward worse ratios and slowly toward better ones (the idea
//! of the Java client's `CompressionRatioEstimator`). A request that turns out larger than
//! `max.request.size` leaves in two. This module must not choose batches (the sink and the
//! accumulator do), talk to the broker or judge answers.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::runtime::Handle;
use tokio::task::{JoinError, JoinHandle};

use crate::accumulator::{Body, PartitionQueue, ProducerBatch};
use crate::batch::{CodecPool, BATCH_HEADER_LEN};
use crate::config::Compression;
use crate::idempotence::Stamp;

/// Raw bytes from which a batch is compressed beside the sink rather than on its task: below
/// this, handing it to another thread costs about what compressing it does.
pub(crate) const SEAL_BESIDE_MIN: usize = 64 * 1024;

/// What a request holds besides its batches (header, acks, timeout, array lengths), and what
/// each batch adds besides its bytes and its topic's name: upper bounds.
pub(crate) const REQUEST_OVERHEAD: usize = 128;
const PARTITION_OVERHEAD: usize = 16;

/// A batch taken for sending, stamped and sealed.
pub(crate) struct Sent {
    pub(crate) queue: Arc<PartitionQueue>,
    /// Its `stamp` is the one it went out with.
    pub(crate) batch: ProducerBatch,
    pub(crate) bytes: Bytes,
}

impl Sent {
    /// What the batch adds to a request.
    fn wire_size(&self) -> usize {
        self.bytes.len() + self.queue.topic.len() + PARTITION_OVERHEAD
    }
}

/// A batch that could not be sealed (its codec failed): the sink ends its records.
pub(crate) struct SealFailed {
    pub(crate) queue: Arc<PartitionQueue>,
    pub(crate) batch: ProducerBatch,
    pub(crate) reason: String,
}

/// What sealing one batch gave, and the raw size it compressed (0: nothing compressed).
type Sealing = (Result<Sent, Box<SealFailed>>, usize);

enum Part {
    Ready(Box<Sent>),
    /// Compressing on a blocking thread.
    Beside {
        queue: Arc<PartitionQueue>,
        job: JoinHandle<Sealing>,
    },
}

impl Part {
    fn queue(&self) -> &Arc<PartitionQueue> {
        match self {
            Part::Ready(s) => &s.queue,
            Part::Beside { queue, .. } => queue,
        }
    }
}

#[derive(Default)]
struct Request {
    parts: Vec<Part>,
    /// Estimated bytes on the wire.
    size: usize,
}

/// What became of a batch given to [`Outbox::add`].
pub(crate) enum Added {
    /// It is in the request being put together.
    Joined,
    /// It would make that request too large: it opens the next one (the current is done).
    Carried,
    /// It could not be sealed.
    Failed(Box<SealFailed>),
}

/// What a finished sealing job means to the sink.
pub(crate) enum Finished {
    /// Nothing for the sink to do: the batch waits sealed in its request (or went with a job
    /// the shutting-down runtime dropped).
    Placed,
    /// It belonged to requests given back: put the batch back in its queue.
    Back(Box<Sent>),
    /// Its codec failed: end the batch's records.
    Failed(Box<SealFailed>),
}

/// Requests put together, in order, and the sealing of their batches.
pub(crate) struct Outbox {
    requests: VecDeque<Request>,
    /// The request being put together (between [`Outbox::start`] and [`Outbox::finish`]).
    filling: Option<Request>,
    /// A batch that did not fit in the last request: it opens the next one.
    carry: Option<(Part, usize)>,
    /// Jobs of batches given back while compressing (the link went down): they go back to
    /// their queues once done.
    returning: VecDeque<JoinHandle<Sealing>>,
    /// Compressed bytes per raw byte, as seen so far.
    ratio: f64,
    codecs: Arc<CodecPool>,
    runtime: Handle,
}

impl Outbox {
    pub(crate) fn new(codecs: Arc<CodecPool>, runtime: Handle) -> Self {
        Outbox {
            requests: VecDeque::new(),
            filling: None,
            carry: None,
            returning: VecDeque::new(),
            ratio: 1.0,
            codecs,
            runtime,
        }
    }

    /// Requests put together and not written (a carried batch does not count).
    pub(crate) fn requests(&self) -> usize {
        self.requests.len()
    }

    /// Whether no batch is here in any form.
    pub(crate) fn is_empty(&self) -> bool {
        self.requests.is_empty()
            && self.filling.is_none()
            && self.carry.is_none()
            && self.returning.is_empty()
    }

    /// Starts putting a request together; a carried batch is its first.
    pub(crate) fn start(&mut self) {
        let mut r = Request {
            parts: Vec::new(),
            size: REQUEST_OVERHEAD,
        };
        if let Some((part, size)) = self.carry.take() {
            r.parts.push(part);
            r.size += size;
        }
        self.filling = Some(r);
    }

    /// Whether the request being put together holds a batch of `queue` (one each).
    pub(crate) fn holds(&self, queue: &Arc<PartitionQueue>) -> bool {
        self.filling
            .as_ref()
            .is_some_and(|r| r.parts.iter().any(|p| Arc::ptr_eq(p.queue(), queue)))
    }

    /// Adds a taken batch to the request being put together (or, if it would make it larger
    /// than `max_size`, carries it to the next) and starts sealing it.
    pub(crate) fn add(
        &mut self,
        queue: Arc<PartitionQueue>,
        batch: ProducerBatch,
        stamp: Option<Stamp>,
        max_size: usize,
    ) -> Added {
        let size = self.estimate(&queue, &batch);
        let beside = match raw_to_compress(&batch, self.codecs.compression()) {
            Some(raw) if raw >= SEAL_BESIDE_MIN => self.codecs.beside(),
            _ => None,
        };
        let part = match beside {
            Some(slot) => {
                let codecs = self.codecs.clone();
                let q = queue.clone();
                let job = self.runtime.spawn_blocking(move || {
                    let sealed = seal(&codecs, q, batch, stamp);
                    drop(slot);
                    sealed
                });
                Part::Beside { queue, job }
            }
            None => {
                let sealing = seal(&self.codecs, queue, batch, stamp);
                match self.observe(sealing) {
                    Ok(sent) => Part::Ready(Box::new(sent)),
                    Err(f) => return Added::Failed(f),
                }
            }
        };
        let r = self
            .filling
            .as_mut()
            .expect("a request is being put together");
        if !r.parts.is_empty() && r.size + size > max_size {
            self.carry = Some((part, size));
            return Added::Carried;
        }
        r.size += size;
        r.parts.push(part);
        Added::Joined
    }

    /// Ends the request being put together; false if it took no batch (then it is dropped).
    pub(crate) fn finish(&mut self) -> bool {
        match self.filling.take() {
            Some(r) if !r.parts.is_empty() => {
                self.requests.push_back(r);
                true
            }
            _ => false,
        }
    }

    /// The first request's batches, once all are sealed. One sealed larger than `max_size`
    /// (the estimate was short) leaves the batches past the limit as the next request.
    pub(crate) fn next_to_write(&mut self, max_size: usize) -> Option<Vec<Sent>> {
        let front = self.requests.front()?;
        if front.parts.iter().any(|p| matches!(p, Part::Beside { .. })) {
            return None;
        }
        let r = self.requests.pop_front().expect("front");
        let mut parts: Vec<Sent> = r
            .parts
            .into_iter()
            .map(|p| match p {
                Part::Ready(s) => *s,
                Part::Beside { .. } => unreachable!("checked above"),
            })
            .collect();
        let mut size = REQUEST_OVERHEAD;
        let fit = parts
            .iter()
            .position(|s| {
                size += s.wire_size();
                size > max_size
            })
            .map_or(parts.len(), |i| i.max(1));
        if fit < parts.len() {
            let rest = parts.split_off(fit);
            let size = REQUEST_OVERHEAD + rest.iter().map(Sent::wire_size).sum::<usize>();
            self.requests.push_front(Request {
                parts: rest.into_iter().map(|s| Part::Ready(Box::new(s))).collect(),
                size,
            });
        }
        Some(parts)
    }

    /// The job to wait for next: a returning one first, else the first still compressing in
    /// the first request (later ones run meanwhile; the first is the one that can leave).
    pub(crate) fn next_job(&mut self) -> Option<&mut JoinHandle<Sealing>> {
        if let Some(j) = self.returning.front_mut() {
            return Some(j);
        }
        self.requests
            .front_mut()?
            .parts
            .iter_mut()
            .find_map(|p| match p {
                Part::Beside { job, .. } => Some(job),
                Part::Ready(_) => None,
            })
    }

    /// Takes the outcome of the job [`Outbox::next_job`] returned.
    pub(crate) fn job_done(&mut self, outcome: Result<Sealing, JoinError>) -> Finished {
        let returning = !self.returning.is_empty();
        let sealed = match outcome {
            Ok(sealing) => Some(self.observe(sealing)),
            // The runtime is shutting down: the batch went with the job (its records end as
            // the producer closes).
            Err(_) => None,
        };
        if returning {
            self.returning.pop_front();
            return match sealed {
                Some(Ok(sent)) => Finished::Back(Box::new(sent)),
                Some(Err(f)) => Finished::Failed(f),
                None => Finished::Placed,
            };
        }
        let front = self.requests.front_mut().expect("a job was waited for");
        let i = front
            .parts
            .iter()
            .position(|p| matches!(p, Part::Beside { .. }))
            .expect("a job was waited for");
        let finished = match sealed {
            Some(Ok(sent)) => {
                front.parts[i] = Part::Ready(Box::new(sent));
                return Finished::Placed;
            }
            Some(Err(f)) => Finished::Failed(f),
            None => Finished::Placed,
        };
        front.parts.remove(i);
        if front.parts.is_empty() {
            self.requests.pop_front();
        }
        finished
    }

    /// Gives back every batch not written (the link went down, or the sink ends): those sealed
    /// are returned now, those compressing once their job is done (see [`Finished::Back`]).
    pub(crate) fn give_back(&mut self) -> Vec<Sent> {
        let mut back = Vec::new();
        let parts = self
            .requests
            .drain(..)
            .chain(self.filling.take())
            .flat_map(|r| r.parts)
            .chain(self.carry.take().map(|(p, _)| p));
        for p in parts {
            match p {
                Part::Ready(s) => back.push(*s),
                Part::Beside { job, .. } => self.returning.push_back(job),
            }
        }
        back
    }

    /// When the oldest sealed batch waiting here was created.
    pub(crate) fn oldest(&self) -> Option<Instant> {
        self.ready().map(|s| s.batch.created).min()
    }

    fn ready(&self) -> impl Iterator<Item = &Sent> {
        self.requests
            .iter()
            .flat_map(|r| &r.parts)
            .chain(self.carry.as_ref().map(|(p, _)| p))
            .filter_map(|p| match p {
                Part::Ready(s) => Some(&**s),
                Part::Beside { .. } => None,
            })
    }

    /// Takes out the sealed batches created `timeout` or longer before `now` (never written:
    /// not stored anywhere), for the sink to fail.
    pub(crate) fn take_expired(&mut self, now: Instant, timeout: Duration) -> Vec<Sent> {
        let expired = |p: &Part| matches!(p, Part::Ready(s) if s.batch.created + timeout <= now);
        let mut out = Vec::new();
        if self.carry.as_ref().is_some_and(|(p, _)| expired(p)) {
            if let Some((Part::Ready(s), _)) = self.carry.take() {
                out.push(*s);
            }
        }
        for r in &mut self.requests {
            if !r.parts.iter().any(expired) {
                continue;
            }
            let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut r.parts)
                .into_iter()
                .partition(|p| expired(p));
            r.parts = kept;
            out.extend(gone.into_iter().filter_map(|p| match p {
                Part::Ready(s) => Some(*s),
                Part::Beside { .. } => None,
            }));
        }
        self.requests.retain(|r| !r.parts.is_empty());
        out
    }

    /// Estimated bytes `batch` adds to a request.
    fn estimate(&self, queue: &PartitionQueue, batch: &ProducerBatch) -> usize {
        let bytes = match &batch.body {
            Body::Closed(c) => c.len(),
            Body::Open(b) if self.codecs.compression() == Compression::None => b.len(),
            // Header, records at the ratio seen, and the codec's own framing.
            Body::Open(b) => {
                let records = b.len().saturating_sub(BATCH_HEADER_LEN) as f64;
                BATCH_HEADER_LEN + (records * self.ratio).ceil() as usize + 64
            }
        };
        bytes + queue.topic.len() + PARTITION_OVERHEAD
    }

    /// Learns the compression ratio from a sealed batch.
    fn observe(&mut self, (sealed, raw): Sealing) -> Result<Sent, Box<SealFailed>> {
        if let Ok(s) = &sealed {
            if raw > BATCH_HEADER_LEN {
                let seen = s.bytes.len().saturating_sub(BATCH_HEADER_LEN) as f64
                    / (raw - BATCH_HEADER_LEN) as f64;
                self.ratio = next_ratio(self.ratio, seen);
            }
        }
        sealed
    }
}

/// The estimate after seeing `seen`: up at once (a short estimate makes a request too large),
/// down by small steps (one well-compressing batch says little of the next).
fn next_ratio(estimate: f64, seen: f64) -> f64 {
    if seen > estimate {
        seen.max(estimate + 0.05)
    } else {
        seen.max(estimate - 0.005)
    }
}

/// The raw bytes sealing `batch` compresses (`None` if it compresses nothing).
fn raw_to_compress(batch: &ProducerBatch, compression: Compression) -> Option<usize> {
    match &batch.body {
        Body::Open(b) if compression != Compression::None => Some(b.len()),
        _ => None,
    }
}

/// Closes `batch` (compressing it if still open) and stamps it.
fn seal(
    codecs: &CodecPool,
    queue: Arc<PartitionQueue>,
    mut batch: ProducerBatch,
    stamp: Option<Stamp>,
) -> Sealing {
    let raw = raw_to_compress(&batch, codecs.compression()).unwrap_or(0);
    // A codec that panics fails its batch, not the thread holding it.
    let closed = catch_unwind(AssertUnwindSafe(|| {
        batch.close(codecs).map(|c| match stamp {
            Some(s) => c.seal(s.identity.pid, s.identity.epoch, s.base_sequence),
            None => c.seal(-1, -1, -1),
        })
    }))
    .unwrap_or_else(|_| Err(std::io::Error::other("the codec panicked")));
    let sealed = match closed {
        Ok(bytes) => Ok(Sent {
            queue,
            batch,
            bytes,
        }),
        Err(e) => Err(Box::new(SealFailed {
            queue,
            batch,
            reason: format!("{} compression failed: {e}", codecs.compression().name()),
        })),
    };
    (sealed, raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accumulator::{Accumulator, AccumulatorConfig, NotAppended, Take};
    use crate::ledger::{Ledger, OwnerAccount};
    use crate::record::Record;

    /// An accumulator whose batches close at `batch_size`, due at once.
    fn accumulator(batch_size: usize) -> Arc<Accumulator> {
        Arc::new(Accumulator::new(
            AccumulatorConfig {
                batch_size,
                max_in_flight: 5,
                linger: Duration::ZERO,
                delivery_timeout: Duration::from_secs(120),
            },
            Ledger::new(1 << 30),
        ))
    }

    /// A batch of `count` records taken from `q`, each `value(i)`.
    fn batch(
        a: &Accumulator,
        q: &Arc<PartitionQueue>,
        value: impl Fn(usize) -> Vec<u8>,
        count: usize,
    ) -> ProducerBatch {
        let owner = OwnerAccount::new("o".into(), None, None, None);
        for i in 0..count {
            let value = value(i);
            // Memory as if reserved (the test does not count it).
            let mut reserved = 1 << 30;
            match a.append(
                q,
                &Record::new("t", &value),
                0,
                value.len(),
                &owner,
                0,
                &mut None,
                &mut reserved,
                true,
            ) {
                Ok(_) => {}
                Err(
                    NotAppended::NeedMemory { .. } | NotAppended::Closed | NotAppended::Evicted,
                ) => {
                    panic!("append")
                }
            }
        }
        match a.take(q, Instant::now(), &crate::idempotence::for_tests(false)) {
            Take::Batch(b, _) => *b,
            _ => panic!("a batch is due"),
        }
    }

    fn records(sent: &[Sent]) -> Vec<(i32, i32)> {
        sent.iter()
            .map(|s| (s.queue.partition, s.batch.count))
            .collect()
    }

    fn random(n: usize) -> Vec<u8> {
        (0..n).map(|_| rand::random::<u8>()).collect()
    }

    #[test]
    fn the_ratio_estimate_rises_at_once_and_falls_slowly() {
        assert_eq!(next_ratio(0.3, 0.9), 0.9);
        assert!((next_ratio(0.3, 0.31) - 0.35).abs() < 1e-9);
        assert!((next_ratio(0.9, 0.2) - 0.895).abs() < 1e-9);
        assert_eq!(next_ratio(0.3, 0.3), 0.3);
    }

    /// A large batch compresses on a blocking thread; the small one put together after it is
    /// sealed at once, yet leaves after it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_leave_in_the_order_they_were_put_together() {
        let a = accumulator(1 << 20);
        let t = a.topic_with("t", 2);
        let (big, small) = (&t.partitions[0], &t.partitions[1]);
        let mut outbox = Outbox::new(
            Arc::new(CodecPool::new(Compression::Gzip, Some(9))),
            Handle::current(),
        );
        let value = b"a fairly compressible value, said again and again ".repeat(4);
        outbox.start();
        let b = batch(&a, big, |_| value.clone(), 2_000);
        assert!(matches!(
            outbox.add(big.clone(), b, None, 1 << 20),
            Added::Joined
        ));
        assert!(outbox.finish());
        outbox.start();
        let b = batch(&a, small, |_| b"x".to_vec(), 3);
        assert!(matches!(
            outbox.add(small.clone(), b, None, 1 << 20),
            Added::Joined
        ));
        assert!(outbox.finish());
        assert_eq!(outbox.requests(), 2);
        // The first request's batch is still compressing (gzip level 9, 400 KB): nothing
        // leaves, not even the second, sealed request.
        assert!(outbox.next_to_write(1 << 20).is_none());
        let job = outbox.next_job().expect("a job runs");
        let done = job.await;
        assert!(matches!(outbox.job_done(done), Finished::Placed));
        let first = outbox.next_to_write(1 << 20).expect("sealed");
        assert_eq!(records(&first), [(0, 2_000)]);
        assert!(first[0].bytes.len() < 400_000 / 10, "compressed");
        assert_eq!(records(&outbox.next_to_write(1 << 20).unwrap()), [(1, 3)]);
        assert!(outbox.is_empty());
    }

    /// The estimate was short (batches that do not compress after ones that did): the request
    /// leaves in two, each within `max.request.size`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_sealed_larger_than_its_limit_leaves_in_two() {
        let a = accumulator(1 << 20);
        let t = a.topic_with("t", 6);
        let mut outbox = Outbox::new(
            Arc::new(CodecPool::new(Compression::Lz4, None)),
            Handle::current(),
        );
        outbox.ratio = 0.05;
        let max = 30_000;
        outbox.start();
        for q in &t.partitions[..3] {
            let b = batch(&a, q, |_| random(1_000), 12);
            assert!(matches!(outbox.add(q.clone(), b, None, max), Added::Joined));
        }
        assert!(outbox.finish());
        assert_eq!(outbox.requests(), 1);
        // Sealed at once (12 KB each, under SEAL_BESIDE_MIN), and the estimate learnt.
        assert!(outbox.ratio > 0.9, "{}", outbox.ratio);
        let first = outbox.next_to_write(max).expect("sealed");
        let second = outbox.next_to_write(max).expect("the rest");
        assert_eq!(records(&first), [(0, 12), (1, 12)]);
        assert_eq!(records(&second), [(2, 12)]);
        for r in [&first, &second] {
            assert!(REQUEST_OVERHEAD + r.iter().map(Sent::wire_size).sum::<usize>() <= max);
        }
        // Now the estimate sees it: the third batch of a request goes to the next one.
        outbox.start();
        for (i, q) in t.partitions[3..].iter().enumerate() {
            let b = batch(&a, q, |_| random(1_000), 12);
            let added = outbox.add(q.clone(), b, None, max);
            assert_eq!(matches!(added, Added::Carried), i == 2);
        }
    }

    /// The link went down: sealed batches come back at once, compressing ones when done.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_given_back_come_back_once_sealed() {
        let a = accumulator(1 << 20);
        let t = a.topic_with("t", 2);
        let mut outbox = Outbox::new(
            Arc::new(CodecPool::new(Compression::Zstd, None)),
            Handle::current(),
        );
        outbox.start();
        let b = batch(&a, &t.partitions[0], |_| vec![7; 1_000], 100);
        assert!(matches!(
            outbox.add(t.partitions[0].clone(), b, None, 1 << 20),
            Added::Joined
        ));
        let b = batch(&a, &t.partitions[1], |_| vec![8; 10], 10);
        assert!(matches!(
            outbox.add(t.partitions[1].clone(), b, None, 1 << 20),
            Added::Joined
        ));
        assert!(outbox.finish());
        let back = outbox.give_back();
        assert_eq!(records(&back), [(1, 10)]);
        assert!(!outbox.is_empty(), "one still compresses");
        assert!(outbox.next_to_write(1 << 20).is_none());
        let done = outbox.next_job().expect("returning").await;
        match outbox.job_done(done) {
            Finished::Back(s) => assert_eq!((s.queue.partition, s.batch.count), (0, 100)),
            _ => panic!("the compressed batch comes back"),
        }
        assert!(outbox.is_empty());
    }
}
