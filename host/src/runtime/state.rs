//! What one instance's store holds, and the checks every record passes before the host copies
//! anything from it.
//!
//! Owns [`PluginState`] (the store's data: the WASI context with no capabilities, the resource
//! budget, the CPU ticks of the current call, and the producer context) and [`ProducerCtx`],
//! the producer interface's side of an instance: its options (ACL, limits, autoflush policy),
//! its sink (the producer core or a capture), the publish path bound when it was instantiated,
//! its call deadline, and the state a plugin can make the host keep (the topics it used, its
//! counters), each bounded. It is a leaf of the runtime: it must not call into wasmtime
//! beyond holding the WASI context, and must not know the wire format.
//!
//! The layout follows wasmtime-wasi's (a context type, host functions per interface in their
//! own modules, one `add_to_linker`: `linker::plugin_linker`) without its view trait: the host
//! has one store type, so host functions reach the context as `store.data().producer`. A
//! second store type (say, a tenant-aware one) would bring the trait in.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use wafka_producer::Owner;
use wasmtime::component::ResourceTable;
use wasmtime::StoreContextMut;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::runtime::bindings::{DeliveryReport, ProduceError as GuestError, Receipt};
use crate::runtime::limits::StoreBudget;
use crate::runtime::message::CapturedRecord;
use crate::runtime::message::GuestMessage;
use crate::runtime::options::{Autoflush, PluginOptions, PluginStats, RecordAck};

/// Most headers one record may carry. Kafka sets no number; the host does, so that a record's
/// headers cost the host a bounded amount of work before its size is known.
pub const MAX_HEADERS: usize = 1_000;

/// Most acknowledgements kept between two [`ProducerCtx::take_acks`]; more are counted only.
pub const MAX_ACKS: usize = 65_536;

/// Longest part of a plugin-supplied name (a topic) that the host copies into an error.
const SHOWN_NAME: usize = 64;

/// What every `publish` returns: the WIT result, or a trap.
pub(crate) type PublishResult = wasmtime::Result<(Result<Receipt, GuestError>,)>;

/// A publish path: buffered or autoflush, for the Kafka or the capture sink. Chosen when an
/// instance starts (and by `set-autoflush` where the plugin may choose); `publish` calls it
/// without looking at any flag.
pub(crate) type PublishFn = PathFn<GuestMessage>;

/// A publish path for records of any kind (see `message::Outgoing`): wafka's `publish` binds
/// [`PublishFn`]; wasi:messaging's `send` picks its path per call (`messaging`).
pub(crate) type PathFn<M> = for<'a> fn(
    StoreContextMut<'a, PluginState>,
    M,
) -> Box<dyn Future<Output = PublishResult> + Send + 'a>;

/// The data of one instance's store.
pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) budget: StoreBudget,
    /// Epoch ticks the current call has run its own code for (its CPU budget's use).
    pub(crate) cpu_ticks_used: u64,
    pub(crate) producer: ProducerCtx,
}

impl PluginState {
    pub(crate) fn new(wasi: WasiCtx, table: ResourceTable, producer: ProducerCtx) -> Self {
        PluginState {
            wasi,
            table,
            budget: StoreBudget::new(&producer.options.limits),
            cpu_ticks_used: 0,
            producer,
        }
    }
}

impl PluginState {
    /// The instance's resource table (WASI's resources and wasi:messaging's clients and
    /// messages), bounded by `plugin::MAX_RESOURCES`.
    pub(crate) fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Where an instance's records go, fixed when it is instantiated.
pub(crate) enum Sink {
    /// The producer core, through this instance's owner.
    Producer(Owner),
    /// Memory (`wafka test`).
    Capture(Box<Capture>),
}

/// The producer interface's context of one instance.
pub(crate) struct ProducerCtx {
    pub(crate) name: Arc<str>,
    /// The plugin's options when the instance started (or when it was last reconfigured).
    pub(crate) options: Arc<PluginOptions>,
    pub(crate) sink: Sink,
    /// The publish path in use.
    pub(crate) publish: PublishFn,
    /// The other path, which `set-autoflush` swaps in where the plugin may choose.
    pub(crate) buffered: PublishFn,
    pub(crate) autoflush: PublishFn,
    /// Most bytes of key, value and headers one record may have before its headers are
    /// even lifted: the sink's `max.request.size` or `buffer.memory`, whichever is smaller.
    pub(crate) record_limit: usize,
    /// Topics this instance has published to (each one enters the producer's metadata).
    topics: HashSet<Box<str>>,
    /// The topic of the last record admitted: most plugins publish to one topic over and
    /// over, and that one needs no check again until the options change.
    last_topic: Option<Box<str>>,
    /// When the current call must be over; host calls that would wait past
    /// [`ProducerCtx::wait_deadline`] answer `timed-out` instead.
    pub(crate) call_deadline: Instant,
    pub(crate) stats: PluginStats,
    /// Acknowledged records kept for the host (autoflush on), when it asked for them.
    acks: Option<Vec<RecordAck>>,
    /// Acknowledgements not kept since the last take, past [`MAX_ACKS`].
    acks_dropped: u64,
}

impl ProducerCtx {
    pub(crate) fn new(
        name: Arc<str>,
        options: Arc<PluginOptions>,
        sink: Sink,
        paths: [PublishFn; 2],
        record_limit: usize,
    ) -> Self {
        let [buffered, autoflush] = paths;
        let publish = if options.autoflush == Autoflush::On {
            autoflush
        } else {
            buffered
        };
        ProducerCtx {
            name,
            options,
            sink,
            publish,
            buffered,
            autoflush,
            record_limit,
            topics: HashSet::new(),
            last_topic: None,
            call_deadline: Instant::now(),
            stats: PluginStats::default(),
            acks: None,
            acks_dropped: 0,
        }
    }

    /// The instance's producer owner (not there in test mode).
    pub(crate) fn owner(&self) -> wasmtime::Result<&Owner> {
        match &self.sink {
            Sink::Producer(o) => Ok(o),
            Sink::Capture(_) => Err(wasmtime::format_err!("no producer in test mode")),
        }
    }

    /// The checks a record passes before the host lifts or copies anything but its topic:
    /// the topic's name, the ACL, the number of headers, and the instance's topic budget.
    /// `Ok(true)` for a topic new to this instance (to be [`ProducerCtx::remember_topic`]ed).
    pub(crate) fn admit(&self, topic: &str, headers: usize) -> Result<bool, GuestError> {
        if self.last_topic.as_deref() == Some(topic) && headers <= MAX_HEADERS {
            return Ok(false);
        }
        if let Err(e) = wafka_producer::check_topic_name(topic) {
            return Err(GuestError::InvalidTopic(e.to_string()));
        }
        if !self.options.acl.allows(topic) {
            return Err(GuestError::NotAuthorized(format!(
                "plugin `{}` may not publish to topic `{}`",
                self.name,
                shown(topic)
            )));
        }
        if headers > MAX_HEADERS {
            return Err(GuestError::NotAllowed(format!(
                "a record may have at most {MAX_HEADERS} headers, this one has {headers}"
            )));
        }
        if self.topics.contains(topic) {
            return Ok(false);
        }
        // (`last_topic` is set by `admitted`, once the store can be borrowed mutably.)
        let limit = self.options.max_topics;
        if self.topics.len() >= limit {
            return Err(GuestError::QuotaExceeded(format!(
                "plugin `{}` may publish to at most {limit} distinct topics per instance; `{}` would be one more",
                self.name,
                shown(topic)
            )));
        }
        Ok(true)
    }

    /// Records that `topic` was admitted; `new` as [`ProducerCtx::admit`] said.
    pub(crate) fn admitted(&mut self, topic: &str, new: bool) {
        if self.last_topic.as_deref() != Some(topic) {
            self.last_topic = Some(topic.into());
        }
        if new {
            self.topics.insert(topic.into());
        }
    }

    /// The topic of the last record admitted.
    pub(crate) fn last_topic(&self) -> Option<&str> {
        self.last_topic.as_deref()
    }

    /// The options changed: every topic is checked again.
    pub(crate) fn forget_last_topic(&mut self) {
        self.last_topic = None;
    }

    /// How long a host call may wait for the producer (buffer space, metadata, an ack): until
    /// a tenth of the call's wall time before its end, so that the plugin gets `timed-out`
    /// and time to react instead of being discarded for the producer's backlog.
    pub(crate) fn wait_deadline(&self) -> Instant {
        self.call_deadline - self.options.limits.call_time / 10
    }

    /// Keeps (or stops keeping) the records acknowledged under autoflush.
    pub(crate) fn collect_acks(&mut self, on: bool) {
        self.acks = on.then(Vec::new);
        self.acks_dropped = 0;
    }

    /// Keeps an acknowledged record of the last topic admitted, if asked to.
    pub(crate) fn acked(&mut self, partition: i32, offset: i64) {
        if let Some(acks) = &mut self.acks {
            if acks.len() >= MAX_ACKS {
                self.acks_dropped += 1;
            } else {
                let topic = self.last_topic.as_deref().unwrap_or_default().to_string();
                acks.push(RecordAck {
                    topic,
                    partition,
                    offset,
                });
            }
        }
    }

    /// The acknowledgements kept since the last call, and how many were not kept.
    pub(crate) fn take_acks(&mut self) -> (Vec<RecordAck>, u64) {
        let acks = self.acks.as_mut().map(std::mem::take).unwrap_or_default();
        (acks, std::mem::take(&mut self.acks_dropped))
    }

    /// Topics this instance has published to.
    pub(crate) fn topic_count(&self) -> usize {
        self.topics.len()
    }
}

/// A plugin-supplied name as the host shows it in errors: at most [`SHOWN_NAME`] characters.
pub(crate) fn shown(name: &str) -> String {
    match name.char_indices().nth(SHOWN_NAME) {
        Some((end, _)) => format!("{}… ({} bytes)", &name[..end], name.len()),
        None => name.to_string(),
    }
}

/// The in-memory sink of one instance (`wafka test`): the records captured since they were
/// last taken, and the receipts and reports made up for them.
#[derive(Debug, Default)]
pub(crate) struct Capture {
    pub(crate) partitions: i32,
    pub(crate) max_request_size: usize,
    pub(crate) buffer_memory: usize,
    /// Bytes of the records not yet taken (their single-record batch sizes).
    pub(crate) held: usize,
    pub(crate) records: Vec<CapturedRecord>,
    pub(crate) next_offset: HashMap<(Box<str>, i32), i64>,
    pub(crate) reports: VecDeque<DeliveryReport>,
    pub(crate) reports_dropped: u64,
    pub(crate) next_id: u64,
    /// Failures `wafka test` injects.
    pub(crate) faults: crate::runtime::faults::Faults,
    /// Records that passed the host's checks (what `--fail-every` counts).
    pub(crate) seen: u64,
    /// Injected failures `publish` answered.
    pub(crate) injected_at_publish: u64,
    /// Injected failures in delivery reports.
    pub(crate) injected_in_reports: u64,
    /// The first injected delivery failure since the last `flush`.
    pub(crate) first_failure: Option<crate::runtime::bindings::ProduceError>,
}
