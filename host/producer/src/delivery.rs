//! How a record's fate reaches the caller: a future, a callback, or an owner's report queue.
//!
//! Owns [`BatchOutcome`], the one result a batch gets, shared by every record in it (a record's
//! future is that outcome plus the record's offset delta, so waiting costs no allocation per
//! record), and the public [`Delivery`], [`RecordMetadata`] and [`DeliveryReport`] types. It
//! must not decide outcomes; the sender does.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
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

/// The single result of one batch, shared by all its records.
#[derive(Debug)]
pub struct BatchOutcome {
    topic: Arc<str>,
    partition: i32,
    result: OnceLock<Result<BatchAck, ProduceError>>,
    done: Notify,
}

impl BatchOutcome {
    pub(crate) fn new(topic: Arc<str>, partition: i32) -> Arc<Self> {
        Arc::new(BatchOutcome {
            topic,
            partition,
            result: OnceLock::new(),
            done: Notify::new(),
        })
    }

    /// Sets the result (once) and wakes every waiter.
    pub(crate) fn set(&self, result: Result<BatchAck, ProduceError>) {
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

    /// Waits for the result.
    pub async fn wait(&self) -> &Result<BatchAck, ProduceError> {
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
        r: &Result<BatchAck, ProduceError>,
        offset_delta: i32,
    ) -> Result<RecordMetadata, ProduceError> {
        match r {
            Ok(ack) => Ok(RecordMetadata {
                topic: self.topic.clone(),
                partition: self.partition,
                offset: if ack.base_offset < 0 {
                    -1
                } else {
                    ack.base_offset + offset_delta as i64
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
    /// Offset in the partition; `-1` when the broker did not tell (`acks=0`).
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

/// A function called once with the record's result, on the producer's I/O task: keep it short.
pub type Callback = Box<dyn FnOnce(Result<RecordMetadata, ProduceError>) + Send + 'static>;
