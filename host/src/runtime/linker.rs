//! Binds what a plugin imports: WASI 0.2 (with no capabilities), `wafka:producer/producer`, and
//! wasi:messaging's `producer` and `types` (bound by `messaging`, onto the same paths).
//!
//! One linker serves every plugin, whatever its sink and autoflush policy: those are data of
//! the instance (`state::ProducerCtx`), so a new configuration needs no relinking.
//! - `publish` calls the instance's bound publish path (`ProducerCtx::publish`): buffered or
//!   autoflush, for the producer or the capture, chosen when the instance starts. No flag is
//!   looked at per record. A plugin whose options carry a [`PublishGate`] (a tenant's quota
//!   and metrics) has it asked before and told after each publish.
//! - `set-autoflush` swaps that path where the policy is `guest`, and refuses otherwise.
//! - `flush` and `take-reports` go to the instance's sink.
//!
//! It must not know about batches or the wire format.

use std::sync::Arc;

use wasmtime::component::Linker;
use wasmtime::{AsContextMut, StoreContextMut};

use crate::runtime::bindings::ProduceError as GuestError;
use crate::runtime::gate::{PublishGate, Published};
use crate::runtime::message::{GuestMessage, Outgoing};
use crate::runtime::options::Autoflush;
use crate::runtime::state::{PathFn, PluginState, PublishFn, PublishResult, Sink};
use crate::runtime::{capture, messaging, publish};

/// The instance name of the producer interface in the component model.
const PRODUCER: &str = "wafka:producer/producer@0.1.0";

/// The publish paths of a sink: `[buffered, autoflush]`.
pub(crate) fn paths<M: Outgoing>(sink: &Sink) -> [PathFn<M>; 2] {
    match sink {
        Sink::Producer(_) => [publish::buffered::<M>, publish::autoflush::<M>],
        Sink::Capture(_) => [capture::buffered::<M>, capture::autoflush::<M>],
    }
}

/// The linker for every plugin.
pub(crate) fn plugin_linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<PluginState>> {
    let mut linker = Linker::<PluginState>::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    let mut producer = linker.instance(PRODUCER)?;
    producer.func_wrap_async("publish", |store, (msg,): (GuestMessage,)| {
        let bound: PublishFn = store.data().producer.publish;
        match store.data().producer.options.gate.clone() {
            None => bound(store, msg),
            Some(gate) => Box::new(gated(gate, bound, store, msg)),
        }
    })?;
    producer.func_wrap("set-autoflush", |mut store, (enabled,): (bool,)| {
        let ctx = &mut store.data_mut().producer;
        Ok((match ctx.options.autoflush {
            Autoflush::Guest => {
                ctx.publish = if enabled { ctx.autoflush } else { ctx.buffered };
                Ok(())
            }
            fixed => Err(GuestError::NotAllowed(format!(
                "the host fixed autoflush to {} for this plugin",
                if fixed == Autoflush::On { "on" } else { "off" }
            ))),
        },))
    })?;
    producer.func_wrap_async("flush", |mut store, (): ()| {
        Box::new(async move {
            match &store.data().producer.sink {
                Sink::Producer(_) => publish::flush(store).await,
                Sink::Capture(_) => Ok((capture::flush(store.data_mut())?,)),
            }
        })
    })?;
    producer.func_wrap("take-reports", |mut store, (max,): (u32,)| {
        let state = store.data_mut();
        Ok((match &state.producer.sink {
            Sink::Producer(_) => publish::take_reports(state, max)?,
            Sink::Capture(_) => capture::take_reports(state, max)?,
        },))
    })?;
    messaging::add_to_linker(&mut linker)?;
    Ok(linker)
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
