//! Binds what a plugin imports: WASI 0.2 (with no capabilities) and `wafka:producer/producer`.
//!
//! Owns the choice made once per plugin at link time: which function `publish` is.
//! - `Autoflush::Off` binds `publish` to the buffered path, `Autoflush::On` to the autoflush
//!   wrapper (publish, then flush). Neither looks at a flag per record, and `set-autoflush` is
//!   bound to a function that refuses.
//! - `Autoflush::Guest` binds `publish` to a call through the instance's current publish
//!   function, and `set-autoflush` to the function that swaps it: switching changes which
//!   function runs, it adds no check.
//!
//! It must not know about batches or the wire format.

use std::future::Future;
use std::pin::Pin;

use wasmtime::component::Linker;
use wasmtime::StoreContextMut;

use crate::runtime::bindings::ProduceError as GuestError;
use crate::runtime::plugin::{Autoflush, PluginState};
use crate::runtime::publish::{self, GuestMessage, PublishResult};

/// The instance name of the producer interface in the component model.
const PRODUCER: &str = "wafka:producer/producer@0.1.0";

/// A publish path, as stored in an instance under `Autoflush::Guest`.
pub(crate) type PublishFn = for<'a> fn(
    StoreContextMut<'a, PluginState>,
    GuestMessage,
) -> Pin<Box<dyn Future<Output = PublishResult> + Send + 'a>>;

pub(crate) fn buffered(
    store: StoreContextMut<'_, PluginState>,
    msg: GuestMessage,
) -> Pin<Box<dyn Future<Output = PublishResult> + Send + '_>> {
    Box::pin(publish::publish_buffered(store, msg))
}

pub(crate) fn autoflush(
    store: StoreContextMut<'_, PluginState>,
    msg: GuestMessage,
) -> Pin<Box<dyn Future<Output = PublishResult> + Send + '_>> {
    Box::pin(publish::publish_autoflush(store, msg))
}

/// Where a linker's `publish` sends records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Target {
    /// The producer core (Kafka).
    Kafka,
    /// Memory, for `wafka test`.
    Capture,
}

/// A linker for plugins under `policy`, publishing to `target`.
pub(crate) fn plugin_linker(
    engine: &wasmtime::Engine,
    policy: Autoflush,
    target: Target,
) -> wasmtime::Result<Linker<PluginState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    let mut producer = linker.instance(PRODUCER)?;
    match (target, policy) {
        (Target::Capture, _) => {
            producer.func_wrap("publish", |store, (msg,): (GuestMessage,)| {
                crate::runtime::capture::publish(store, msg)
            })?;
            producer.func_wrap("take-reports", |mut store, (max,): (u32,)| {
                Ok((crate::runtime::capture::take_reports(
                    store.data_mut(),
                    max,
                )?,))
            })?;
        }
        (Target::Kafka, Autoflush::Off) => producer
            .func_wrap_async("publish", |store, (msg,): (GuestMessage,)| {
                Box::new(publish::publish_buffered(store, msg))
            })?,
        (Target::Kafka, Autoflush::On) => producer
            .func_wrap_async("publish", |store, (msg,): (GuestMessage,)| {
                Box::new(publish::publish_autoflush(store, msg))
            })?,
        (Target::Kafka, Autoflush::Guest) => {
            producer.func_wrap_async("publish", |store, (msg,): (GuestMessage,)| {
                let current: PublishFn = store.data().publish;
                Box::new(current(store, msg))
            })?
        }
    }
    if target == Target::Kafka {
        producer.func_wrap("take-reports", |store, (max,): (u32,)| {
            Ok((publish::take_reports(store.data(), max)?,))
        })?;
    }
    match policy {
        Autoflush::Guest => {
            producer.func_wrap("set-autoflush", |mut store, (enabled,): (bool,)| {
                store.data_mut().publish = if enabled { autoflush } else { buffered };
                Ok((Ok::<(), GuestError>(()),))
            })?
        }
        fixed => producer.func_wrap("set-autoflush", move |_store, (_enabled,): (bool,)| {
            let mode = if fixed == Autoflush::On { "on" } else { "off" };
            Ok((Err::<(), GuestError>(GuestError::NotAllowed(format!(
                "the host fixed autoflush to {mode} for this plugin"
            ))),))
        })?,
    }
    producer.func_wrap_async("flush", |store, (): ()| Box::new(publish::flush(store)))?;
    Ok(linker)
}
