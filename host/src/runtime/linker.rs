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

use wasmtime::component::Linker;

use crate::runtime::bindings::ProduceError as GuestError;
use crate::runtime::message::GuestMessage;
use crate::runtime::options::Autoflush;
use crate::runtime::route::gated;
use crate::runtime::state::{PluginState, PublishFn, Sink};
use crate::runtime::{capture, messaging, publish};

/// The instance name of the producer interface in the component model.
const PRODUCER: &str = "wafka:producer/producer@0.1.0";

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
