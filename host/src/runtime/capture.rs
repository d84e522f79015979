//! A sink that keeps records in memory instead of sending them: `wafka test` runs plugins on it,
//! the way FastStream's test broker runs handlers without a broker.
//!
//! Owns the captured records and the receipts and delivery reports it makes up for them
//! (partition as the Java client would choose it for keyed records — murmur2 — or the explicit
//! one; partition 0 for null keys; offsets counting from 0 per partition). It must not touch the
//! producer core's batching or the network.

use std::collections::{HashMap, VecDeque};

use wafka_producer::partitioner::partition_for_key;
use wasmtime::StoreContextMut;

use crate::runtime::bindings::{DeliveryReport, ProduceError as GuestError, Receipt};
use crate::runtime::plugin::{PluginState, Sink};
use crate::runtime::publish::{check_call_time, GuestMessage, PublishResult};

/// One record a plugin published in test mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedRecord {
    /// Topic.
    pub topic: String,
    /// Partition it would go to.
    pub partition: i32,
    /// Offset within the captured partition.
    pub offset: i64,
    /// Key (`None` for a null key).
    pub key: Option<Vec<u8>>,
    /// Value.
    pub value: Vec<u8>,
    /// Headers in order.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// In-memory sink of one instance.
#[derive(Debug, Default)]
pub struct Capture {
    partitions: i32,
    records: Vec<CapturedRecord>,
    next_offset: HashMap<(String, i32), i64>,
    reports: VecDeque<DeliveryReport>,
    next_id: u64,
}

impl Capture {
    /// A sink that pretends every topic has `partitions` partitions.
    pub fn new(partitions: i32) -> Self {
        Capture {
            partitions: partitions.max(1),
            ..Default::default()
        }
    }

    /// Records captured since the last call.
    pub fn take(&mut self) -> Vec<CapturedRecord> {
        std::mem::take(&mut self.records)
    }
}

fn capture_of(state: &mut PluginState) -> wasmtime::Result<&mut Capture> {
    match &mut state.sink {
        Sink::Capture(c) => Ok(c),
        Sink::Producer(_) => Err(wasmtime::format_err!(
            "capture function linked to a producer instance"
        )),
    }
}

/// `publish` in test mode: copies the message out of guest memory into the capture.
pub(crate) fn publish(
    mut store: StoreContextMut<'_, PluginState>,
    msg: GuestMessage,
) -> PublishResult {
    check_call_time(store.data())?;
    let (topic, key, value, headers, partition) = msg.to_owned(&mut store)?;
    let state = store.data_mut();
    if !state.acl.allows(&topic) {
        let name = state.name.clone();
        return Ok((Err(GuestError::NotAuthorized(format!(
            "plugin `{name}` may not publish to topic `{topic}`"
        ))),));
    }
    state.stats.records += 1;
    state.stats.bytes += (key.as_ref().map_or(0, Vec::len) + value.len()) as u64;
    let capture = capture_of(state)?;
    let partition = match (partition, &key) {
        (Some(p), _) if p < 0 || p >= capture.partitions => {
            return Ok((Err(GuestError::InvalidTopic(format!(
                "partition {p} does not exist: topic `{topic}` has {} partitions in test mode",
                capture.partitions
            ))),))
        }
        (Some(p), _) => p,
        (None, Some(k)) => partition_for_key(k, capture.partitions),
        (None, None) => 0,
    };
    let next = capture
        .next_offset
        .entry((topic.clone(), partition))
        .or_insert(0);
    let offset = *next;
    *next += 1;
    let id = capture.next_id;
    capture.next_id += 1;
    capture.reports.push_back(DeliveryReport {
        id,
        topic: topic.clone(),
        partition,
        outcome: Ok(offset),
    });
    capture.records.push(CapturedRecord {
        topic,
        partition,
        offset,
        key,
        value,
        headers,
    });
    Ok((Ok(Receipt {
        id,
        partition,
        offset,
    }),))
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
