//! wasi:messaging@0.2.0-draft served by the same host: the `messaging-core` world (vendored,
//! pinned, in `wit/wasi-messaging`), whose components import `producer` and `types` and export
//! `incoming-handler`.
//!
//! Owns that world's host side: the `client` and `message` resources (held in the instance's
//! resource table, their bytes counted against its memory limit), `producer.send`, the mapping
//! of a message to a record (topic → topic, data → value, no key, metadata → headers in order,
//! then the content-type as the header `content-type`) and of wafka's `produce-error` to the
//! draft's `error`, and the message an input event becomes for the handler. `send` takes the
//! same publish paths as wafka's `publish` (`route::paths`, `route::gated`: the ACL, limits,
//! quotas, the gate, the autoflush policy, the producer or the capture). It must not check or
//! copy a record itself (the sinks do, through `message::Outgoing`), and must not touch
//! wafka's own `publish`: that path costs what it did before.

use std::borrow::Cow;

use wasmtime::component::{ComponentType, Lift, Linker, Lower, Resource, ResourceType};
use wasmtime::{AsContextMut, StoreContextMut};

use crate::runtime::bindings::ProduceError as GuestError;
use crate::runtime::message::{Borrowed, Outgoing};
use crate::runtime::options::Autoflush;
use crate::runtime::route;
use crate::runtime::state::{PluginState, Sink};
use crate::runtime::{capture, publish};

/// The pinned draft (`wit/wasi-messaging/README.md`).
pub const VERSION: &str = "0.2.0-draft";
/// The instance a messaging component imports its resources from.
const TYPES: &str = "wasi:messaging/types@0.2.0-draft";
/// The instance a messaging component imports `send` from.
const PRODUCER: &str = "wasi:messaging/producer@0.2.0-draft";
/// The request-reply interface of the draft, which the host does not serve.
pub(crate) const REQUEST_REPLY: &str = "wasi:messaging/request-reply@0.2.0-draft";
/// The instance a messaging component exports its handler in.
pub(crate) const HANDLER: &str = "wasi:messaging/incoming-handler@0.2.0-draft";
/// The header a message's content-type becomes (the Kafka convention).
pub const CONTENT_TYPE_HEADER: &str = "content-type";
/// Bytes a metadata entry counts beyond its key and value (so that empty entries count too).
const ENTRY_BYTES: usize = 48;

/// `wasi:messaging/types.error`.
#[derive(ComponentType, Lift, Lower, Debug, Clone, PartialEq, Eq)]
#[component(variant)]
pub enum MessagingError {
    /// The request or operation timed out.
    #[component(name = "timeout")]
    Timeout,
    /// An error occurred with the connection.
    #[component(name = "connection")]
    Connection(String),
    /// A permission error occurred.
    #[component(name = "permission-denied")]
    PermissionDenied(String),
    /// Any other error.
    #[component(name = "other")]
    Other(String),
}

impl std::fmt::Display for MessagingError {
    /// The case's WIT name, then its text: `permission-denied: plugin ...`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MessagingError::Timeout => f.write_str("timeout"),
            MessagingError::Connection(s) => write!(f, "connection: {s}"),
            MessagingError::PermissionDenied(s) => write!(f, "permission-denied: {s}"),
            MessagingError::Other(s) => write!(f, "other: {s}"),
        }
    }
}

/// The draft's error for one of wafka's: `not-authorized` is `permission-denied`, `timed-out`
/// is `timeout` (which carries no text), `closed` is `connection`; every other case is
/// `other`, its text starting with wafka's case name (`record-too-large: ...`).
pub(crate) fn messaging_error(e: GuestError) -> MessagingError {
    let kind = route::error_kind(&e);
    match e {
        GuestError::NotAuthorized(s) => MessagingError::PermissionDenied(s),
        GuestError::TimedOut(_) => MessagingError::Timeout,
        GuestError::Closed => {
            MessagingError::Connection("closed: the producer or this instance is closed".into())
        }
        GuestError::InvalidTopic(s) | GuestError::QuotaExceeded(s) | GuestError::NotAllowed(s) => {
            MessagingError::Other(format!("{kind}: {s}"))
        }
        GuestError::RecordTooLarge(n) => MessagingError::Other(format!(
            "{kind}: the record is {n} bytes (at least), more than the host allows"
        )),
        GuestError::BufferFull => MessagingError::Other(format!(
            "{kind}: the producer's buffer stayed full for the host's maximum wait"
        )),
        GuestError::Broker(b) => MessagingError::Other(format!(
            "{kind}: {} ({}){}",
            b.name,
            b.code,
            b.message.map(|m| format!(": {m}")).unwrap_or_default()
        )),
    }
}

/// `client`: every client publishes to the cluster (or capture) the host gave the instance;
/// the name `connect` was given is not interpreted.
pub(crate) struct Client {
    connected: bool,
}

/// `message`, held by the host.
#[derive(Debug, Default)]
pub(crate) struct HeldMessage {
    /// Where it was received: `None` for every message the host makes from an input event.
    topic: Option<String>,
    data: Vec<u8>,
    content_type: Option<String>,
    metadata: Vec<(String, String)>,
    /// Bytes counted against the instance's budget for it (`StoreBudget::hold`).
    counted: usize,
}

impl HeldMessage {
    /// The message the handler gets for an input event: the event as data, no topic, no
    /// metadata, no content-type. Counted like every message the instance holds (the caller
    /// holds `data.len()` bytes for it): a plugin that keeps its events keeps them within its
    /// memory limit.
    pub(crate) fn event(data: &[u8]) -> Self {
        HeldMessage {
            data: data.to_vec(),
            counted: data.len(),
            ..Default::default()
        }
    }

    fn bytes(&self) -> usize {
        self.data.len()
            + self.content_type.as_ref().map_or(0, String::len)
            + self
                .metadata
                .iter()
                .map(|(k, v)| k.len() + v.len() + ENTRY_BYTES)
                .sum::<usize>()
    }
}

/// A message on its way to a sink: the parts the host holds, with the topic `send` named.
pub(crate) struct HeldRecord {
    topic: String,
    value: Vec<u8>,
    headers: Vec<(String, String)>,
}

impl HeldRecord {
    fn new(topic: String, m: HeldMessage) -> Self {
        let mut headers = m.metadata;
        if let Some(ct) = m.content_type {
            headers.push((CONTENT_TYPE_HEADER.to_string(), ct));
        }
        HeldRecord {
            topic,
            value: m.data,
            headers,
        }
    }
}

impl Outgoing for HeldRecord {
    type Headers = ();

    fn topic<'a>(
        &'a self,
        _store: &'a StoreContextMut<'_, PluginState>,
    ) -> wasmtime::Result<Cow<'a, str>> {
        Ok(Cow::Borrowed(&self.topic))
    }

    fn header_count(&self) -> usize {
        self.headers.len()
    }

    fn partition(&self) -> Option<i32> {
        None
    }

    /// Nothing to lift: the sinks check the whole record's size before copying it.
    fn lift_headers(
        &self,
        _store: &mut StoreContextMut<'_, PluginState>,
        _limit: usize,
    ) -> wasmtime::Result<Result<(), usize>> {
        Ok(Ok(()))
    }

    fn borrow<'a>(
        &'a self,
        _store: &'a StoreContextMut<'_, PluginState>,
        _headers: &'a (),
    ) -> wasmtime::Result<Borrowed<'a>> {
        Ok(Borrowed::held(&self.topic, &self.value, &self.headers))
    }
}

/// Changes a message through `f`, then counts the bytes it grew by (a trap past the
/// instance's memory limit) or gives back those it shrank by.
fn change(
    mut store: StoreContextMut<'_, PluginState>,
    message: &Resource<HeldMessage>,
    f: impl FnOnce(&mut HeldMessage),
) -> wasmtime::Result<()> {
    let state = store.data_mut();
    let m = state.table().get_mut(message)?;
    f(m);
    let (before, after) = (m.counted, m.bytes());
    if after > before {
        // (On a trap the message keeps its old count: what is counted is what was granted.)
        state.budget.hold(after - before)?;
    } else {
        state.budget.release(before - after);
    }
    state.table().get_mut(message)?.counted = after;
    Ok(())
}

/// Reads a message.
fn read<R>(
    mut store: StoreContextMut<'_, PluginState>,
    message: &Resource<HeldMessage>,
    f: impl FnOnce(&HeldMessage) -> R,
) -> wasmtime::Result<R> {
    Ok(f(store.data_mut().table().get(message)?))
}

/// Binds `wasi:messaging/types` and `wasi:messaging/producer` into `linker` (beside wafka's
/// own interfaces: one linker serves both worlds).
/// Counts `bytes` for a message just put in the table, which says so (`counted`); if that
/// takes the instance over its memory limit, the message counts nothing (the error traps the
/// instance) so that dropping it gives nothing back twice.
pub(crate) fn hold_for(
    state: &mut PluginState,
    message: &Resource<HeldMessage>,
    bytes: usize,
) -> wasmtime::Result<()> {
    if let Err(e) = state.budget.hold(bytes) {
        state.table().get_mut(message)?.counted = 0;
        return Err(e);
    }
    Ok(())
}

pub(crate) fn add_to_linker(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
    let mut types = linker.instance(TYPES)?;
    types.resource(
        "message",
        ResourceType::host::<HeldMessage>(),
        |mut store, rep| {
            let state = store.data_mut();
            let m = state
                .table()
                .delete(Resource::<HeldMessage>::new_own(rep))?;
            state.budget.release(m.counted);
            Ok(())
        },
    )?;
    types.resource(
        "client",
        ResourceType::host::<Client>(),
        |mut store, rep| {
            store
                .data_mut()
                .table()
                .delete(Resource::<Client>::new_own(rep))?;
            Ok(())
        },
    )?;
    types.func_wrap("[constructor]message", |mut store, (data,): (Vec<u8>,)| {
        let state = store.data_mut();
        let counted = data.len();
        let m = state.table().push(HeldMessage {
            data,
            counted,
            ..Default::default()
        })?;
        hold_for(state, &m, counted)?;
        Ok((m,))
    })?;
    types.func_wrap(
        "[method]message.topic",
        |store, (m,): (Resource<HeldMessage>,)| Ok((read(store, &m, |m| m.topic.clone())?,)),
    )?;
    types.func_wrap(
        "[method]message.content-type",
        |store, (m,): (Resource<HeldMessage>,)| Ok((read(store, &m, |m| m.content_type.clone())?,)),
    )?;
    types.func_wrap(
        "[method]message.set-content-type",
        |store, (m, ct): (Resource<HeldMessage>, String)| {
            change(store, &m, |m| m.content_type = Some(ct))
        },
    )?;
    types.func_wrap(
        "[method]message.data",
        |store, (m,): (Resource<HeldMessage>,)| Ok((read(store, &m, |m| m.data.clone())?,)),
    )?;
    types.func_wrap(
        "[method]message.set-data",
        |store, (m, data): (Resource<HeldMessage>, Vec<u8>)| change(store, &m, |m| m.data = data),
    )?;
    types.func_wrap(
        "[method]message.metadata",
        |store, (m,): (Resource<HeldMessage>,)| {
            Ok((read(store, &m, |m| {
                (!m.metadata.is_empty()).then(|| m.metadata.clone())
            })?,))
        },
    )?;
    types.func_wrap(
        "[method]message.add-metadata",
        |store, (m, key, value): (Resource<HeldMessage>, String, String)| {
            change(store, &m, |m| {
                // Overwrites the first entry of that key, in place, and drops any other.
                match m.metadata.iter().position(|(k, _)| *k == key) {
                    Some(at) => {
                        m.metadata[at].1 = value;
                        let mut n = 0;
                        m.metadata.retain(|(k, _)| {
                            n += 1;
                            n - 1 == at || *k != key
                        });
                    }
                    None => m.metadata.push((key, value)),
                }
            })
        },
    )?;
    types.func_wrap(
        "[method]message.set-metadata",
        |store, (m, meta): (Resource<HeldMessage>, Vec<(String, String)>)| {
            change(store, &m, |m| m.metadata = meta)
        },
    )?;
    types.func_wrap(
        "[method]message.remove-metadata",
        |store, (m, key): (Resource<HeldMessage>, String)| {
            change(store, &m, |m| m.metadata.retain(|(k, _)| *k != key))
        },
    )?;
    types.func_wrap(
        "[static]client.connect",
        |mut store, (_name,): (String,)| {
            let c = store.data_mut().table().push(Client { connected: true })?;
            Ok((Ok::<_, MessagingError>(c),))
        },
    )?;
    // Disconnecting waits for the instance's records, as closing a connection would: the
    // plugin learns there of a delivery failure that a buffered `send` did not wait for.
    types.func_wrap_async(
        "[method]client.disconnect",
        |mut store, (c,): (Resource<Client>,)| {
            Box::new(async move {
                store.data_mut().table().get_mut(&c)?.connected = false;
                let flushed = match &store.data().producer.sink {
                    Sink::Producer(_) => publish::flush(store.as_context_mut()).await?.0,
                    Sink::Capture(_) => capture::flush(store.data_mut())?,
                };
                Ok((flushed.map_err(messaging_error),))
            })
        },
    )?;
    let mut producer = linker.instance(PRODUCER)?;
    producer.func_wrap_async(
        "send",
        |mut store, (c, topic, m): (Resource<Client>, String, Resource<HeldMessage>)| {
            Box::new(async move {
                let state = store.data_mut();
                // The message is the plugin's no more, whatever happens to the record.
                let message = state.table().delete(m)?;
                state.budget.release(message.counted);
                if !state.table().get(&c)?.connected {
                    return Ok((Err(MessagingError::Connection(
                        "the client is disconnected".into(),
                    )),));
                }
                let record = HeldRecord::new(topic, message);
                let ctx = &store.data().producer;
                // A messaging plugin cannot choose: `guest` leaves it buffered.
                let [buffered, autoflush] = route::paths::<HeldRecord>(&ctx.sink);
                let bound = match ctx.options.autoflush {
                    Autoflush::On => autoflush,
                    Autoflush::Off | Autoflush::Guest => buffered,
                };
                let (result,) = match ctx.options.gate.clone() {
                    None => Box::into_pin(bound(store.as_context_mut(), record)).await?,
                    Some(gate) => route::gated(gate, bound, store.as_context_mut(), record).await?,
                };
                Ok((result.map(|_| ()).map_err(messaging_error),))
            })
        },
    )?;
    Ok(())
}
