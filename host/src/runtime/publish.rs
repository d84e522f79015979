//! From a guest's `message` to a producer record, and producer errors back to the guest.
//!
//! Owns the two publish paths the linker chooses between — buffered, and autoflush (publish,
//! then flush this instance's records) — and the mapping of `wafka-producer` errors to the
//! contract's `produce-error`. Key, value and header values are read in place from guest
//! memory (`WasmList::as_le_slice`) and copied once, into the batch. It must not choose a
//! path per record: the linker binds one of them.

use std::borrow::Cow;
use std::time::Instant;

use wafka_producer::{Delivery, Header, ProduceError, Record};
use wasmtime::component::{ComponentType, Lift, WasmList, WasmStr};
use wasmtime::StoreContextMut;

use crate::runtime::bindings::{BrokerError, DeliveryReport, ProduceError as GuestError, Receipt};
use crate::runtime::plugin::{PluginState, Sink};

/// `wafka:producer/types.header`, lifted without copying out of guest memory.
#[derive(ComponentType, Lift)]
#[component(record)]
pub(crate) struct GuestHeader {
    key: WasmStr,
    value: Option<WasmList<u8>>,
}

/// `wafka:producer/types.message`, lifted without copying out of guest memory.
#[derive(ComponentType, Lift)]
#[component(record)]
pub(crate) struct GuestMessage {
    topic: WasmStr,
    key: Option<WasmList<u8>>,
    value: WasmList<u8>,
    headers: WasmList<GuestHeader>,
    partition: Option<i32>,
}

impl GuestMessage {
    /// Copies the message out of guest memory (test mode only; the Kafka path reads in place).
    #[allow(clippy::type_complexity)]
    pub(crate) fn to_owned(
        &self,
        store: &mut StoreContextMut<'_, PluginState>,
    ) -> wasmtime::Result<(
        String,
        Option<Vec<u8>>,
        Vec<u8>,
        Vec<(String, Option<Vec<u8>>)>,
        Option<i32>,
    )> {
        let headers: Vec<GuestHeader> = self
            .headers
            .iter(&mut *store)?
            .collect::<wasmtime::Result<_>>()?;
        let s = &*store;
        let mut owned = Vec::with_capacity(headers.len());
        for h in headers {
            owned.push((
                h.key.to_str(s)?.into_owned(),
                h.value.map(|v| v.as_le_slice(s).to_vec()),
            ));
        }
        Ok((
            self.topic.to_str(s)?.into_owned(),
            self.key.as_ref().map(|k| k.as_le_slice(s).to_vec()),
            self.value.as_le_slice(s).to_vec(),
            owned,
            self.partition,
        ))
    }
}

/// What every host function returns: the WIT result, or a trap.
pub(crate) type PublishResult = wasmtime::Result<(Result<Receipt, GuestError>,)>;

/// Stops a plugin whose call ran past its wall-time limit, even while it keeps calling us.
pub(crate) fn check_call_time(state: &PluginState) -> wasmtime::Result<()> {
    if Instant::now() > state.call_deadline {
        return Err(wasmtime::format_err!(
            "plugin exceeded its call time limit of {} ms",
            state.limits.call_time.as_millis()
        ));
    }
    Ok(())
}

/// Queues the message for the instance's owner. The borrowed slices live only inside this
/// function; the record bytes are copied into the batch by `Owner::send`.
async fn queue(
    store: &mut StoreContextMut<'_, PluginState>,
    msg: &GuestMessage,
) -> wasmtime::Result<Result<Delivery, GuestError>> {
    check_call_time(store.data())?;
    // Headers are a list of records: lift their handles first (this needs the store mutably),
    // then borrow every slice immutably for the send.
    let headers: Vec<GuestHeader> = msg
        .headers
        .iter(&mut *store)?
        .collect::<wasmtime::Result<_>>()?;
    // Borrow every slice out of guest memory in a block: the store itself (not `Sync`) must
    // not be held across the send's await, only the slices (which are).
    let owner = store.data().owner()?.clone();
    let (topic, key, value, header_keys, header_values) = {
        let s = &*store;
        let topic: Cow<'_, str> = msg.topic.to_str(s)?;
        let state = s.data();
        if !state.acl.allows(&topic) {
            return Ok(Err(GuestError::NotAuthorized(format!(
                "plugin `{}` may not publish to topic `{topic}`",
                state.name
            ))));
        }
        let mut keys: Vec<Cow<'_, str>> = Vec::with_capacity(headers.len());
        for h in &headers {
            keys.push(h.key.to_str(s)?);
        }
        let values: Vec<Option<&[u8]>> = headers
            .iter()
            .map(|h| h.value.as_ref().map(|v| v.as_le_slice(s)))
            .collect();
        let key = msg.key.as_ref().map(|k| k.as_le_slice(s));
        (topic, key, msg.value.as_le_slice(s), keys, values)
    };
    let header_refs: Vec<Header<'_>> = header_keys
        .iter()
        .zip(&header_values)
        .map(|(k, v)| Header { key: k, value: *v })
        .collect();
    let record = Record {
        topic: &topic,
        partition: msg.partition,
        key,
        value: Some(value),
        headers: &header_refs,
        timestamp: None,
    };
    let size = record.payload_len() as u64;
    let sent = owner.send(&record).await;
    drop(header_refs);
    let stats = &mut store.data_mut().stats;
    Ok(match sent {
        Ok(d) => {
            stats.records += 1;
            stats.bytes += size;
            Ok(d)
        }
        Err(e) => {
            stats.refused += 1;
            Err(guest_error(e))
        }
    })
}

/// `publish` with autoflush off: returns once the record is queued.
pub(crate) async fn publish_buffered(
    mut store: StoreContextMut<'_, PluginState>,
    msg: GuestMessage,
) -> PublishResult {
    let queued = queue(&mut store, &msg).await?;
    Ok((queued.map(|d| Receipt {
        id: d.id(),
        partition: d.partition(),
        offset: -1,
    }),))
}

/// `publish` with autoflush on: publish, then flush this instance's records; returns the
/// record's partition and offset once the broker acknowledged it.
pub(crate) async fn publish_autoflush(
    mut store: StoreContextMut<'_, PluginState>,
    msg: GuestMessage,
) -> PublishResult {
    let queued = queue(&mut store, &msg).await?;
    let result = match queued {
        Ok(d) => {
            store.data().owner()?.settle().await;
            let id = d.id();
            match d.try_result() {
                Some(Ok(m)) => Ok(Receipt {
                    id,
                    partition: m.partition,
                    offset: m.offset,
                }),
                Some(Err(e)) => Err(guest_error(e)),
                None => Err(GuestError::Closed),
            }
        }
        Err(e) => Err(e),
    };
    Ok((result,))
}

/// `flush`: every record of this instance acknowledged or failed; the first failure since the
/// previous flush.
pub(crate) async fn flush(
    store: StoreContextMut<'_, PluginState>,
) -> wasmtime::Result<(Result<(), GuestError>,)> {
    check_call_time(store.data())?;
    let r = match &store.data().sink {
        Sink::Producer(owner) => owner.clone().flush().await.map_err(guest_error),
        Sink::Capture(_) => Ok(()),
    };
    Ok((r,))
}

/// `take-reports`.
pub(crate) fn take_reports(store: &PluginState, max: u32) -> wasmtime::Result<Vec<DeliveryReport>> {
    Ok(store
        .owner()?
        .take_reports(max as usize)
        .into_iter()
        .map(|r| DeliveryReport {
            id: r.id,
            topic: r.topic.to_string(),
            partition: r.partition,
            outcome: r.result.map_err(guest_error),
        })
        .collect())
}

/// The contract's error for a producer error.
pub(crate) fn guest_error(e: ProduceError) -> GuestError {
    let text = e.to_string();
    match e {
        ProduceError::RecordTooLarge { size, .. } => GuestError::RecordTooLarge(size as u64),
        ProduceError::BufferExhausted { .. } => GuestError::BufferFull,
        ProduceError::QuotaExceeded { .. } => GuestError::QuotaExceeded(text),
        ProduceError::UnknownTopic(_)
        | ProduceError::InvalidTopic { .. }
        | ProduceError::InvalidPartition { .. }
        | ProduceError::BadMetadata { .. } => GuestError::InvalidTopic(text),
        ProduceError::MetadataTimeout { .. }
        | ProduceError::DeliveryTimeout { .. }
        | ProduceError::FlushTimeout { .. } => GuestError::TimedOut(text),
        ProduceError::Closed => GuestError::Closed,
        ProduceError::Broker {
            code: 29, topic, ..
        } => GuestError::NotAuthorized(topic),
        ProduceError::Broker {
            name,
            code,
            message,
            ..
        } => GuestError::Broker(BrokerError {
            name,
            code,
            message,
        }),
        ProduceError::Fatal(m) => GuestError::Broker(BrokerError {
            name: "PRODUCER_FAILED".into(),
            code: -1,
            message: Some(m),
        }),
    }
}
