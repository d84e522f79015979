//! The ways a record leaves a plugin, shared by wafka's `publish` (`linker`) and
//! wasi:messaging's `send` (`messaging`): a sink's two publish paths (buffered, autoflush) and
//! the tenant's gate around them.
//!
//! A leaf of the runtime: it knows the sinks and the gate, not the linker nor either world's
//! bindings beyond the error type, and must not check or copy records (the sinks do).

use std::sync::Arc;

use wasmtime::{AsContextMut, StoreContextMut};

use crate::runtime::bindings::ProduceError as GuestError;
use crate::runtime::gate::{PublishGate, Published};
use crate::runtime::message::Outgoing;
use crate::runtime::state::{PathFn, PluginState, PublishResult, Sink};
use crate::runtime::{capture, publish};

/// The publish paths of a sink: `[buffered, autoflush]`.
pub(crate) fn paths<M: Outgoing>(sink: &Sink) -> [PathFn<M>; 2] {
    match sink {
        Sink::Producer(_) => [publish::buffered::<M>, publish::autoflush::<M>],
        Sink::Capture(_) => [capture::buffered::<M>, capture::autoflush::<M>],
    }
}

/// A publish through `gate`: refused with `quota-exceeded` if the gate says so (before anything
/// of the record is read), otherwise the bound path, then the gate is told what happened.
pub(crate) async fn gated<M: Outgoing>(
    gate: Arc<dyn PublishGate>,
    bound: PathFn<M>,
    mut store: StoreContextMut<'_, PluginState>,
    msg: M,
) -> PublishResult {
    let started = std::time::Instant::now();
    if let Err(why) = gate.admit() {
        store.data_mut().producer.stats.refused += 1;
        gate.published(&Published {
            bytes: None,
            refused: Some("quota-exceeded"),
            elapsed: started.elapsed(),
        });
        return Ok((Err(GuestError::QuotaExceeded(why)),));
    }
    let bytes_before = store.data().producer.stats.bytes;
    let (result,) = Box::into_pin(bound(store.as_context_mut(), msg)).await?;
    // Bytes queued count even when waiting for the acknowledgement then failed (the record
    // may still be delivered): quotas and metrics count what entered the producer.
    let bytes = store.data().producer.stats.bytes - bytes_before;
    let queued = bytes > 0 || result.is_ok();
    gate.published(&Published {
        bytes: queued.then_some(bytes),
        refused: result.as_ref().err().map(error_kind),
        elapsed: started.elapsed(),
    });
    Ok((result,))
}

/// The contract's name of an error's case.
pub(crate) fn error_kind(e: &GuestError) -> &'static str {
    match e {
        GuestError::NotAuthorized(_) => "not-authorized",
        GuestError::InvalidTopic(_) => "invalid-topic",
        GuestError::RecordTooLarge(_) => "record-too-large",
        GuestError::BufferFull => "buffer-full",
        GuestError::QuotaExceeded(_) => "quota-exceeded",
        GuestError::TimedOut(_) => "timed-out",
        GuestError::Closed => "closed",
        GuestError::NotAllowed(_) => "not-allowed",
        GuestError::Broker(_) => "broker",
    }
}
