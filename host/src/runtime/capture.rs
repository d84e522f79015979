//! The capture sink: records kept in memory instead of sent, for `wafka test` (the way
//! FastStream's test broker runs handlers without a broker).
//!
//! Owns the capture's publish paths (generic over `message::Outgoing`, as the Kafka sink's),
//! `flush` and `take-reports`. A plugin must not be able to
//! tell it from the Kafka sink except by the data: the same checks (`ProducerCtx::admit`), the
//! same size limit (`max.request.size`, checked before anything is copied), receipts with
//! offset -1 unless autoflush is on, and at most `plugin::MAX_REPORTS` reports kept. Partitions are
//! what the Java client would choose for keyed records (murmur2) or the explicit one; null keys
//! go to partition 0; offsets count from 0 per partition. It must not touch the producer
//! core's batching or the network.

use std::future::Future;

use wafka_producer::batch::single_record_batch_upper_bound;
use wafka_producer::partitioner::partition_for_key;
use wasmtime::StoreContextMut;

use crate::runtime::bindings::{DeliveryReport, ProduceError as GuestError, Receipt};
use crate::runtime::faults::{Faults, Injected};
use crate::runtime::message::Outgoing;
use crate::runtime::publish::admit;
use crate::runtime::state::{Capture, PluginState, PublishResult, Sink};

pub use crate::runtime::message::CapturedRecord;

/// The capture sink's settings: what a plugin in `wafka test` sees of the cluster and the
/// producer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureOptions {
    /// Partitions every topic is assumed to have.
    pub partitions: i32,
    /// The producer's `max.request.size`: larger records fail with `record-too-large`.
    pub max_request_size: usize,
    /// The producer's `buffer.memory`: records not yet taken may hold this much, then
    /// `buffer-full`.
    pub buffer_memory: usize,
    /// Failures to inject (none by default).
    pub faults: Faults,
}

impl CaptureOptions {
    /// `partitions` partitions and the producer's defaults (1 MiB requests, 32 MiB buffer).
    pub fn new(partitions: i32) -> Self {
        let defaults = wafka_producer::ProducerConfig::new();
        CaptureOptions {
            partitions,
            max_request_size: defaults.max_request_size,
            buffer_memory: defaults.buffer_memory,
            faults: Faults::default(),
        }
    }
}

impl Capture {
    /// A sink that pretends every topic has `partitions` partitions, refuses records whose
    /// single-record batch would exceed `max_request_size`, and holds at most `buffer_memory`
    /// bytes of records not yet taken (then `buffer-full`, as a producer whose buffer stays
    /// full).
    pub(crate) fn new(options: CaptureOptions) -> Self {
        Capture {
            partitions: options.partitions.max(1),
            max_request_size: options.max_request_size,
            buffer_memory: options.buffer_memory,
            faults: options.faults,
            ..Default::default()
        }
    }

    /// Keeps a delivery report (at most `plugin::MAX_REPORTS`, dropping the oldest).
    fn report(&mut self, report: DeliveryReport) {
        self.reports.push_back(report);
        if self.reports.len() > crate::runtime::plugin::MAX_REPORTS {
            self.reports.pop_front();
            self.reports_dropped += 1;
        }
    }

    /// Records captured since the last call.
    pub(crate) fn take(&mut self) -> Vec<CapturedRecord> {
        self.held = 0;
        std::mem::take(&mut self.records)
    }
}

/// The buffered path: the receipt has offset -1, as from the producer.
pub(crate) fn buffered<M: Outgoing>(
    store: StoreContextMut<'_, PluginState>,
    msg: M,
) -> Box<dyn Future<Output = PublishResult> + Send + '_> {
    Box::new(async move {
        let r = capture(store, msg, false)?;
        Ok((r.map(|receipt| Receipt {
            offset: -1,
            ..receipt
        }),))
    })
}

/// The autoflush path: the receipt has the record's offset.
pub(crate) fn autoflush<M: Outgoing>(
    store: StoreContextMut<'_, PluginState>,
    msg: M,
) -> Box<dyn Future<Output = PublishResult> + Send + '_> {
    Box::new(async move { Ok((capture(store, msg, true)?,)) })
}

fn capture_of(state: &mut PluginState) -> wasmtime::Result<&mut Capture> {
    match &mut state.producer.sink {
        Sink::Capture(c) => Ok(c),
        Sink::Producer(_) => Err(wasmtime::format_err!(
            "capture function linked to a producer instance"
        )),
    }
}

/// Checks the message as the Kafka sink would, then copies it into the capture, or fails it
/// as injected (`acked`: `publish` waits for the acknowledgement, so a failure the cluster
/// would give shows there too).
fn capture<M: Outgoing>(
    mut store: StoreContextMut<'_, PluginState>,
    msg: M,
    acked: bool,
) -> wasmtime::Result<Result<Receipt, GuestError>> {
    let captured = match admit(&mut store, &msg)? {
        Err(e) => Err(e),
        Ok(()) => {
            let limit = store.data().producer.record_limit;
            let headers = match msg.lift_headers(&mut store, limit)? {
                Ok(h) => h,
                Err(at_least) => {
                    store.data_mut().producer.stats.refused += 1;
                    return Ok(Err(GuestError::RecordTooLarge(at_least as u64)));
                }
            };
            let (max, partitions, room) = {
                let c = capture_of(store.data_mut())?;
                (
                    c.max_request_size,
                    c.partitions,
                    c.buffer_memory.saturating_sub(c.held),
                )
            };
            let s = &store;
            let borrowed = msg.borrow(s, &headers)?;
            let header_refs = borrowed.headers();
            let record = borrowed.record(&header_refs, msg.partition());
            let size = single_record_batch_upper_bound(&record);
            if size > max {
                Err(GuestError::RecordTooLarge(size as u64))
            } else if record.payload_len() > limit {
                Err(GuestError::RecordTooLarge(record.payload_len() as u64))
            } else if size > room {
                Err(GuestError::BufferFull)
            } else {
                let partition = match (msg.partition(), record.key) {
                    (Some(p), _) if p < 0 || p >= partitions => Err(GuestError::InvalidTopic(
                        format!(
                            "partition {p} does not exist: topic `{}` has {partitions} partitions in test mode",
                            record.topic
                        ),
                    )),
                    (Some(p), _) => Ok(p),
                    (None, Some(k)) => Ok(partition_for_key(k, partitions)),
                    (None, None) => Ok(0),
                };
                // The one copy out of guest memory.
                partition.map(|p| {
                    (
                        CapturedRecord::copy(&record, p, 0),
                        size,
                        record.payload_len(),
                    )
                })
            }
        }
    };
    let state = store.data_mut();
    let (mut record, held, size) = match captured {
        Ok(c) => c,
        Err(e) => {
            state.producer.stats.refused += 1;
            return Ok(Err(e));
        }
    };
    let injected = {
        let c = capture_of(state)?;
        c.seen += 1;
        c.faults.for_record(&record.topic, c.seen)
    };
    let failure = match injected {
        None => None,
        Some(Injected::AtPublish(kind)) => {
            // Refused at `publish`, as the host or the producer refuses: never queued.
            state.producer.stats.refused += 1;
            capture_of(state)?.injected_at_publish += 1;
            return Ok(Err(kind.error(&record.topic, held)));
        }
        Some(Injected::InReport(kind)) => Some(kind.error(&record.topic, held)),
    };
    // Queued: delivered (captured at its offset), or, as injected, never delivered: then its
    // report and the next `flush` say why (as the producer keeps a failure for the next
    // flush), and under autoflush `publish` too.
    state.producer.stats.records += 1;
    state.producer.stats.bytes += size as u64;
    let c = capture_of(state)?;
    let outcome = match failure {
        Some(error) => {
            c.injected_in_reports += 1;
            c.first_failure.get_or_insert_with(|| error.clone());
            Err(error)
        }
        None => {
            c.held += held;
            let next = c
                .next_offset
                .entry((record.topic.as_str().into(), record.partition))
                .or_insert(0);
            record.offset = *next;
            *next += 1;
            Ok(record.offset)
        }
    };
    let id = c.next_id;
    c.next_id += 1;
    c.report(DeliveryReport {
        id,
        topic: record.topic.clone(),
        partition: record.partition,
        outcome: outcome.clone(),
    });
    match outcome {
        Err(error) if acked => Ok(Err(error)),
        Err(_) => Ok(Ok(Receipt {
            id,
            partition: record.partition,
            offset: -1,
        })),
        Ok(offset) => {
            let receipt = Receipt {
                id,
                partition: record.partition,
                offset,
            };
            c.records.push(record);
            Ok(Ok(receipt))
        }
    }
}

/// `flush` in test mode: fails as injected (`--fail-flush`), else with the first injected
/// delivery failure since the previous flush, as the producer's flush does.
pub(crate) fn flush(state: &mut PluginState) -> wasmtime::Result<Result<(), GuestError>> {
    let c = capture_of(state)?;
    if let Some(kind) = &c.faults.flush {
        return Ok(Err(kind.error("(flush)", 0)));
    }
    Ok(match c.first_failure.take() {
        Some(e) => Err(e),
        None => Ok(()),
    })
}

/// `take-reports` in test mode.
pub(crate) fn take_reports(
    state: &mut PluginState,
    max: u32,
) -> wasmtime::Result<Vec<DeliveryReport>> {
    let c = capture_of(state)?;
    let n = c.reports.len().min(max as usize);
    Ok(c.reports.drain(..n).collect())
}
