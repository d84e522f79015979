//! How a record's fate reaches the caller: a future, a callback, or an owner's report queue.
//!
//! Owns [`BatchOutcome`], the one result a batch gets, shared by every record in it (a record's
//! future is that outcome plus the record's offset delta, so waiting costs no allocation per
//! record), and the public [`Delivery`], [`RecordMetadata`] and [`DeliveryReport`] types. A
//! batch the broker found too large is split and its halves answered apart, so an outcome is
//! either one result or one per range of offset deltas ([`Settled`]). It must not decide
//! outcomes; the sinks do, through the ledger.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::Notify;

use crate::error::ProduceError;

/// Where and when the broker stored a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchAck {
    /// Offset of the batch's first record; `-1` when unknown (`acks=0`, or a duplicate the
    /// broker had already stored).
    pub base_offset: i64,
    /// The broker's append time when the topic uses `LogAppendTime`.
    pub log_append_time: Option<i64>,
}

/// One batch's result: one for all its records, or (after the batch was split) one per range
/// of offset deltas, each range starting at its delta, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Settled {
    /// Every record of the batch.
    Whole(Result<BatchAck, ProduceError>),
    /// `(first offset delta, result)`, sorted; a range ends where the next starts.
    Parts(Vec<(i32, Result<BatchAck, ProduceError>)>),
}

impl Settled {
    /// The result for the record at `offset_delta`, with the delta within its part.
    pub(crate) fn part(&self, offset_delta: i32) -> (&Result<BatchAck, ProduceError>, i32) {
        match self {
            Settled::Whole(r) => (r, offset_delta),
            Settled::Parts(parts) => {
                let i = parts
                    .partition_point(|(start, _)| *start <= offset_delta)
                    .saturating_sub(1);
                let (start, r) = &parts[i];
                (r, offset_delta - start)
            }
        }
    }

    /// Whether any record failed.
    pub(crate) fn first_error(&self) -> Option<&ProduceError> {
        match self {
            Settled::Whole(r) => r.as_ref().err(),
            Settled::Parts(parts) => parts.iter().find_map(|(_, r)| r.as_ref().err()),
        }
    }

    /// Shifts every part by `by` offset deltas (a half's parts, placed in its whole).
    pub(crate) fn into_parts(self, by: i32) -> Vec<(i32, Result<BatchAck, ProduceError>)> {
        match self {
            Settled::Whole(r) => vec![(by, r)],
            Settled::Parts(parts) => parts.into_iter().map(|(s, r)| (s + by, r)).collect(),
        }
    }
}

/// The single result of one batch, shared by all its records.
#[derive(Debug)]
pub struct BatchOutcome {
    topic: Arc<str>,
    partition: i32,
    result: OnceLock<Settled>,
    done: Notify,
    /// Someone waits for this batch (a flush): send it without waiting for `linger.ms`.
    hurry: AtomicBool,
}

impl BatchOutcome {
    pub(crate) fn new(topic: Arc<str>, partition: i32) -> Arc<Self> {
        Arc::new(BatchOutcome {
            topic,
            partition,
            result: OnceLock::new(),
            done: Notify::new(),
            hurry: AtomicBool::new(false),
        })
    }

    /// Sets the result (once) and wakes every waiter.
    pub(crate) fn set(&self, result: Settled) {
        if self.result.set(result).is_ok() {
            self.done.notify_waiters();
        }
    }

    /// The batch's topic.
    pub fn topic(&self) -> Arc<str> {
        self.topic.clone()
    }

    /// The batch's partition.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// Whether the batch has its result.
    pub fn is_done(&self) -> bool {
        self.result.get().is_some()
    }

    /// Asks for the batch to leave without lingering; returns whether it was not asked before.
    pub(crate) fn hurry(&self) -> bool {
        !self.hurry.swap(true, Ordering::AcqRel)
    }

    /// Whether a flush waits for this batch.
    pub(crate) fn hurried(&self) -> bool {
        self.hurry.load(Ordering::Acquire)
    }

    /// Waits for the result.
    pub(crate) async fn wait(&self) -> &Settled {
        loop {
            let notified = self.done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(r) = self.result.get() {
                return r;
            }
            notified.await;
        }
    }

    pub(crate) fn record(&self, offset_delta: i32) -> Option<Result<RecordMetadata, ProduceError>> {
        self.result.get().map(|r| self.metadata(r, offset_delta))
    }

    pub(crate) fn metadata(
        &self,
        settled: &Settled,
        offset_delta: i32,
    ) -> Result<RecordMetadata, ProduceError> {
        let (r, delta) = settled.part(offset_delta);
        match r {
            Ok(ack) => Ok(RecordMetadata {
                topic: self.topic.clone(),
                partition: self.partition,
                // The broker stored the batch (it answered without error), so an offset past
                // i64::MAX from a hostile base offset is not a failure: like acks=0's, it is
                // unknown (-1). Failing the record would tell the caller it was not stored.
                offset: if ack.base_offset < 0 {
                    -1
                } else {
                    ack.base_offset.checked_add(delta.into()).unwrap_or(-1)
                },
                log_append_time: ack.log_append_time,
            }),
            Err(e) => Err(e.clone()),
        }
    }
}

/// Where a record was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    /// Topic.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// Offset in the partition; `-1` when the broker did not tell (`acks=0`, or a retry the
    /// broker recognised as already stored) or gave a base offset that puts it past `i64::MAX`.
    pub offset: i64,
    /// The broker's append time when the topic uses `LogAppendTime`.
    pub log_append_time: Option<i64>,
}

/// A queued record's pending result: `.await` it to wait for the acknowledgement, or drop it
/// to fire and forget (the record is sent all the same).
#[derive(Debug)]
pub struct Delivery {
    pub(crate) outcome: Arc<BatchOutcome>,
    pub(crate) offset_delta: i32,
    pub(crate) id: u64,
}

impl Delivery {
    /// The record's id within its owner (the id its [`DeliveryReport`] carries).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The partition the record was queued for.
    pub fn partition(&self) -> i32 {
        self.outcome.partition
    }

    /// The result, if the record is already acknowledged or failed.
    pub fn try_result(&self) -> Option<Result<RecordMetadata, ProduceError>> {
        self.outcome.record(self.offset_delta)
    }

    /// Waits for the broker's acknowledgement (or the failure).
    pub async fn wait(self) -> Result<RecordMetadata, ProduceError> {
        let r = self.outcome.wait().await;
        self.outcome.metadata(r, self.offset_delta)
    }
}

impl IntoFuture for Delivery {
    type Output = Result<RecordMetadata, ProduceError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.wait())
    }
}

/// How one record ended, as queued for its owner when the owner asked for reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    /// The record's id within its owner ([`Delivery::id`]).
    pub id: u64,
    /// Topic.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// The offset, or why the record was not delivered.
    pub result: Result<i64, ProduceError>,
}

/// A function called once with the record's result, on one of the producer's tasks: keep it
/// short. A callback that panics loses only its own call (the panic is caught and logged).
pub type Callback = Box<dyn FnOnce(Result<RecordMetadata, ProduceError>) + Send + 'static>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_answer_each_record_by_its_range() {
        let ack = |b| {
            Ok(BatchAck {
                base_offset: b,
                log_append_time: None,
            })
        };
        let s = Settled::Parts(vec![
            (0, ack(100)),
            (3, Err(ProduceError::Closed)),
            (5, ack(7)),
        ]);
        let o = BatchOutcome::new(Arc::from("t"), 0);
        o.set(s);
        assert_eq!(o.record(0).unwrap().unwrap().offset, 100);
        assert_eq!(o.record(2).unwrap().unwrap().offset, 102);
        assert_eq!(o.record(3).unwrap(), Err(ProduceError::Closed));
        assert_eq!(o.record(4).unwrap(), Err(ProduceError::Closed));
        assert_eq!(o.record(5).unwrap().unwrap().offset, 7);
        assert_eq!(o.record(9).unwrap().unwrap().offset, 11);
    }

    /// A broker that answers a batch with a base offset near `i64::MAX`: the records past the
    /// largest offset get `-1` (unknown), not a panic (debug) or a negative offset (release).
    #[test]
    fn an_offset_past_i64_max_is_unknown() {
        for base in [i64::MAX, i64::MAX - 1] {
            let o = BatchOutcome::new(Arc::from("t"), 0);
            o.set(Settled::Whole(Ok(BatchAck {
                base_offset: base,
                log_append_time: None,
            })));
            assert_eq!(o.record(0).unwrap().unwrap().offset, base);
            assert_eq!(o.record(2).unwrap().unwrap().offset, -1, "base {base}");
            assert_eq!(o.record(i32::MAX).unwrap().unwrap().offset, -1);
        }
    }
}
