//! The Kafka sink: a guest's `message` becomes a producer record, and producer errors go back
//! to the guest. The paths are generic over `message::Outgoing`: wafka's `publish` (bytes in
//! guest memory) and wasi:messaging's `send` (bytes the host holds) each get their own copy.
//!
//! Owns the two publish paths an instance can be bound to — buffered, and autoflush (publish,
//! then settle this instance's records) — plus `flush` and `take-reports` for the producer,
//! and the mapping of `wafka-producer` errors to the contract's `produce-error`. A record is
//! checked (topic, ACL, number of headers, topic budget: `ProducerCtx::admit`) before any
//! header is lifted; key, value and header values are then read in place from guest memory
//! and copied once, into the batch, after the producer checked the size. It must not choose a
//! path per record: the instance's context holds the bound one.

use std::future::Future;

use wafka_producer::{kafka_error_name, Delivery, ProduceError};
use wasmtime::StoreContextMut;

use crate::runtime::bindings::{BrokerError, DeliveryReport, ProduceError as GuestError, Receipt};
use crate::runtime::message::Outgoing;
use crate::runtime::state::{PluginState, PublishResult};

/// The buffered path, as a [`crate::runtime::state::PathFn`].
pub(crate) fn buffered<M: Outgoing>(
    store: StoreContextMut<'_, PluginState>,
    msg: M,
) -> Box<dyn Future<Output = PublishResult> + Send + '_> {
    Box::new(publish_buffered(store, msg))
}

/// The autoflush path, as a [`crate::runtime::state::PathFn`].
pub(crate) fn autoflush<M: Outgoing>(
    store: StoreContextMut<'_, PluginState>,
    msg: M,
) -> Box<dyn Future<Output = PublishResult> + Send + '_> {
    Box::new(publish_autoflush(store, msg))
}

/// Checks the message, then queues it for the instance's owner. The borrowed slices live only
/// inside this function; the record bytes are copied into the batch by `Owner::send`.
async fn queue<M: Outgoing>(
    store: &mut StoreContextMut<'_, PluginState>,
    msg: &M,
) -> wasmtime::Result<Result<Delivery, GuestError>> {
    if let Err(e) = admit(store, msg)? {
        store.data_mut().producer.stats.refused += 1;
        return Ok(Err(e));
    }
    let limit = store.data().producer.record_limit;
    let headers = match msg.lift_headers(store, limit)? {
        Ok(h) => h,
        Err(at_least) => {
            store.data_mut().producer.stats.refused += 1;
            return Ok(Err(GuestError::RecordTooLarge(at_least as u64)));
        }
    };
    let owner = store.data().producer.owner()?.clone();
    // Borrow every slice out of guest memory in a block: the store itself (not `Sync`) must
    // not be held across the send's await, only the slices (which are).
    let borrowed = {
        let s = &*store;
        msg.borrow(s, &headers)?
    };
    let header_refs = borrowed.headers();
    let record = borrowed.record(&header_refs, msg.partition());
    let size = record.payload_len() as u64;
    let deadline = store.data().producer.wait_deadline();
    let sent = if size > limit as u64 {
        // Over the plugin's own `max_record_bytes` (the producer checks its limits itself).
        Err(GuestError::RecordTooLarge(size))
    } else {
        within_call(owner.send(&record), deadline, "queued").await
    };
    drop(header_refs);
    drop(borrowed);
    let stats = &mut store.data_mut().producer.stats;
    Ok(match sent {
        Ok(Ok(d)) => {
            stats.records += 1;
            stats.bytes += size;
            Ok(d)
        }
        Ok(Err(e)) => {
            stats.refused += 1;
            Err(guest_error(e))
        }
        Err(e) => {
            stats.refused += 1;
            Err(e)
        }
    })
}

/// Awaits `wait`, but not past `deadline` (see `ProducerCtx::wait_deadline`): then the
/// guest gets `timed-out`. What is ready at once (most sends) needs no timer.
async fn within_call<T>(
    wait: impl Future<Output = T>,
    deadline: std::time::Instant,
    what: &str,
) -> Result<T, GuestError> {
    let mut wait = std::pin::pin!(wait);
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(wait.as_mut().poll(cx))).await;
    if let std::task::Poll::Ready(out) = first {
        return Ok(out);
    }
    tokio::time::timeout_at(deadline.into(), wait)
        .await
        .map_err(|_| {
            GuestError::TimedOut(format!(
                "the record could not be {what} within this call's wall time"
            ))
        })
}

/// `ProducerCtx::admit` for a message still in guest memory (or held by the host): its topic
/// is borrowed, and copied only when it differs from the last one admitted.
pub(crate) fn admit<M: Outgoing>(
    store: &mut StoreContextMut<'_, PluginState>,
    msg: &M,
) -> wasmtime::Result<Result<(), GuestError>> {
    let s = &*store;
    let topic = msg.topic(s)?;
    let ctx = &s.data().producer;
    let new = match ctx.admit(&topic, msg.header_count()) {
        Ok(new) => new,
        Err(e) => return Ok(Err(e)),
    };
    if new || ctx.last_topic() != Some(&*topic) {
        let topic = topic.into_owned();
        store.data_mut().producer.admitted(&topic, new);
    }
    Ok(Ok(()))
}

/// `publish` with autoflush off: returns once the record is queued.
pub(crate) async fn publish_buffered<M: Outgoing>(
    mut store: StoreContextMut<'_, PluginState>,
    msg: M,
) -> PublishResult {
    let queued = queue(&mut store, &msg).await?;
    Ok((queued.map(|d| Receipt {
        id: d.id(),
        partition: d.partition(),
        offset: -1,
    }),))
}

/// `publish` with autoflush on: publish, then settle this instance's records; returns the
/// record's partition and offset once the broker acknowledged it.
pub(crate) async fn publish_autoflush<M: Outgoing>(
    mut store: StoreContextMut<'_, PluginState>,
    msg: M,
) -> PublishResult {
    let queued = queue(&mut store, &msg).await?;
    let result = match queued {
        Ok(d) => {
            let ctx = &store.data().producer;
            let deadline = ctx.wait_deadline();
            let owner = ctx.owner()?.clone();
            match within_call(owner.settle(), deadline, "acknowledged").await {
                Err(e) => Err(e),
                Ok(()) => {
                    let id = d.id();
                    match d.try_result() {
                        Some(Ok(m)) => {
                            store.data_mut().producer.acked(m.partition, m.offset);
                            Ok(Receipt {
                                id,
                                partition: m.partition,
                                offset: m.offset,
                            })
                        }
                        Some(Err(e)) => Err(guest_error(e)),
                        None => Err(GuestError::Closed),
                    }
                }
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
    let ctx = &store.data().producer;
    let (owner, deadline) = (ctx.owner()?.clone(), ctx.wait_deadline());
    Ok((
        match within_call(owner.flush(), deadline, "flushed").await {
            Ok(r) => r.map_err(guest_error),
            Err(e) => Err(e),
        },
    ))
}

/// `take-reports`.
pub(crate) fn take_reports(state: &PluginState, max: u32) -> wasmtime::Result<Vec<DeliveryReport>> {
    Ok(state
        .producer
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
        // SASL's refusals carry Kafka's code; a TLS failure never reached a broker.
        ProduceError::Refused {
            code: Some(code), ..
        } => GuestError::Broker(BrokerError {
            name: kafka_error_name(code),
            code,
            message: Some(text),
        }),
        ProduceError::Refused { code: None, .. } => GuestError::Broker(BrokerError {
            name: "SSL_HANDSHAKE_FAILED".into(),
            code: -1,
            message: Some(text),
        }),
        ProduceError::Fatal(m) => GuestError::Broker(BrokerError {
            name: "PRODUCER_FAILED".into(),
            code: -1,
            message: Some(m),
        }),
    }
}
