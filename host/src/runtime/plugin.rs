//! A compiled plugin and its instances: one wasmtime store each.
//!
//! Owns the life of an instance: building its store (WASI with no capabilities, the resource
//! budget, the epoch callback that meters its CPU budget and makes it yield, the producer
//! context), and the calls into it (`init`, `handle`; for a wasi:messaging plugin, its
//! handler with each event as a message) with their wall-time bound. An instance
//! that trapped or overran its wall time is stopped for good; records it published before stay
//! queued and are delivered. It must not link functions (see `linker`) or say why a call
//! failed (see `trap`).

use std::sync::Arc;
use std::time::Duration;

use wafka_producer::{OwnerOptions, ProduceError, Producer};
use wasmtime::component::{ComponentExportIndex, InstancePre, Resource, ResourceTable, TypedFunc};
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::WasiCtxBuilder;

use crate::runtime::bindings;
use crate::runtime::capture::{CaptureOptions, CapturedRecord};
use crate::runtime::limits::{CpuGroup, ResourceUse, StoreBudget};
use crate::runtime::messaging::{self, HeldMessage, MessagingError};
use crate::runtime::output::{OutputBudget, PluginLog, Stream};
use crate::runtime::route;
use crate::runtime::state::{Capture, PluginState, ProducerCtx, Sink};
use crate::runtime::trap::{describe, one_line};

pub use crate::runtime::options::{Autoflush, PluginOptions, PluginStats, RecordAck};

/// Most resources (streams, pollables…) one instance may hold in its WASI resource table.
pub const MAX_RESOURCES: usize = 4_096;

/// Most delivery reports an instance keeps undrained (the oldest are dropped): a plugin that
/// never calls `take-reports` holds at most this many.
pub const MAX_REPORTS: usize = 4_096;

/// What one host call may lift out of guest memory, at least.
const MIN_HOSTCALL_BYTES: usize = 8 << 20;

/// Most bytes one `get-random-bytes` call may ask for.
const MAX_RANDOM_BYTES: u64 = 1 << 20;

/// Why a call into a plugin did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    /// The plugin returned an error for this call; it can go on with the next one.
    #[error("plugin `{plugin}` failed: {message}")]
    Failed {
        /// Plugin name.
        plugin: String,
        /// The plugin's message.
        message: String,
    },
    /// The plugin trapped (panicked, looped past its CPU limit, ran out of memory...). The
    /// instance is gone.
    #[error("plugin `{plugin}` trapped: {reason}")]
    Trapped {
        /// Plugin name.
        plugin: String,
        /// What happened, in one line.
        reason: String,
    },
    /// The plugin could not be instantiated.
    #[error("plugin `{plugin}` cannot start: {reason}")]
    Instantiate {
        /// Plugin name.
        plugin: String,
        /// Why.
        reason: String,
    },
    /// The call ran longer than the plugin's wall-time limit. The instance is gone.
    #[error("plugin `{plugin}` ran longer than its wall-time limit of {limit_ms} ms")]
    TimedOut {
        /// Plugin name.
        plugin: String,
        /// The limit, in milliseconds.
        limit_ms: u128,
    },
    /// The instance trapped or timed out earlier and takes no more calls.
    #[error("plugin `{0}` was stopped by an earlier trap or timeout")]
    Stopped(String),
}

/// How a plugin was loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadInfo {
    /// Compiling (or reading from the cache) and linking.
    pub time: Duration,
    /// Whether the compiled code came from the disk cache.
    pub from_cache: bool,
    /// Size of the component in bytes.
    pub size: usize,
}

/// The world a plugin targets, as found when it was loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginWorld {
    /// wafka's own: `wafka:producer@0.1.0`'s `plugin` or `plugin-lifecycle`.
    Wafka,
    /// wasi:messaging@0.2.0-draft's `messaging-core` (`wit/wasi-messaging`).
    Messaging,
}

/// A plugin's world and what the host calls in it.
#[derive(Clone)]
pub(crate) enum World {
    /// wafka's: `init`, `handle` (and `finish`, kept beside).
    Plugin(bindings::PluginPre<PluginState>),
    /// wasi:messaging's: the handler's `handle`.
    Messaging {
        pre: InstancePre<PluginState>,
        handle: ComponentExportIndex,
    },
}

/// `wasi:messaging/incoming-handler.handle`.
type MessagingHandle = TypedFunc<(Resource<HeldMessage>,), (Result<(), MessagingError>,)>;

/// What an instance's host calls, by world.
enum Calls {
    Plugin(bindings::Plugin),
    Messaging(MessagingHandle),
}

/// A compiled, pre-linked plugin. Instantiate it as often as needed.
pub struct Plugin {
    pub(crate) options: Arc<PluginOptions>,
    pub(crate) engine: wasmtime::Engine,
    pub(crate) world: World,
    /// Its `finish` export, where it has one (the `plugin-lifecycle` world).
    pub(crate) finish: Option<ComponentExportIndex>,
    pub(crate) load: LoadInfo,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("options", &self.options)
            .finish()
    }
}

impl Plugin {
    /// The plugin's options.
    pub fn options(&self) -> &PluginOptions {
        &self.options
    }

    /// The world the plugin targets.
    pub fn world(&self) -> PluginWorld {
        match self.world {
            World::Plugin(_) => PluginWorld::Wafka,
            World::Messaging { .. } => PluginWorld::Messaging,
        }
    }

    /// New options (ACL, limits, autoflush policy, quotas) for instances started from now on,
    /// without compiling or linking again. Running instances keep theirs until
    /// [`PluginInstance::reconfigure`].
    pub fn set_options(&mut self, options: PluginOptions) {
        self.options = Arc::new(options);
    }

    /// The same compiled plugin under other options (another tenant's, say): nothing is
    /// compiled or linked again, and the compiled code is shared.
    pub fn with_options(&self, options: PluginOptions) -> Plugin {
        Plugin {
            options: Arc::new(options),
            engine: self.engine.clone(),
            world: self.world.clone(),
            finish: self.finish,
            load: self.load,
        }
    }

    /// How long loading took and whether the compiled code came from the cache.
    pub fn load_info(&self) -> LoadInfo {
        self.load
    }

    /// A new instance publishing through `producer`, with its own store and producer owner.
    pub async fn instantiate(&self, producer: &Producer) -> Result<PluginInstance, PluginError> {
        let owner = producer.owner(OwnerOptions {
            name: self.options.name.clone(),
            memory_limit: self.options.buffer_quota,
            delivery_reports: true,
            max_reports: Some(MAX_REPORTS),
            share: self.options.memory_share.clone(),
            outcomes: self.options.outcomes.clone(),
        });
        let config = producer.config();
        let limit = config.max_request_size.min(config.buffer_memory);
        self.instantiate_with(Sink::Producer(owner), limit).await
    }

    /// A new instance whose records are kept in memory instead of sent (`wafka test`).
    pub async fn instantiate_capture(
        &self,
        capture: CaptureOptions,
    ) -> Result<PluginInstance, PluginError> {
        let limit = capture.max_request_size.min(capture.buffer_memory);
        let sink = Sink::Capture(Box::new(Capture::new(capture)));
        self.instantiate_with(sink, limit).await
    }

    async fn instantiate_with(
        &self,
        sink: Sink,
        sink_limit: usize,
    ) -> Result<PluginInstance, PluginError> {
        let record_limit = sink_limit.min(self.options.max_record_bytes.unwrap_or(usize::MAX));
        let name: Arc<str> = Arc::from(self.options.name.as_str());
        let output = OutputBudget::default();
        // No preopened directories, no environment, no arguments, and no network, said
        // explicitly so that a change of wasmtime-wasi's defaults cannot open it: only the
        // clocks, random numbers, and stdout/stderr into the host's log.
        let wasi = WasiCtxBuilder::new()
            .stdout(PluginLog::new(
                name.clone(),
                Stream::Stdout,
                output.clone(),
                self.options.output_rate.clone(),
            ))
            .stderr(PluginLog::new(
                name.clone(),
                Stream::Stderr,
                output.clone(),
                self.options.output_rate.clone(),
            ))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .max_random_size(MAX_RANDOM_BYTES)
            .build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        let paths = route::paths::<crate::runtime::message::GuestMessage>(&sink);
        let ctx = ProducerCtx::new(
            name.clone(),
            self.options.clone(),
            sink,
            paths,
            record_limit,
        );
        let limits = self.options.limits;
        let mut store = Store::new(&self.engine, PluginState::new(wasi, table, ctx));
        store.limiter(|s| &mut s.budget);
        // What one host call may lift out of guest memory (wasmtime's default, 128 MiB, is
        // above a plugin's whole memory): a record a few times over the sink's limit still
        // gets a typed `record-too-large`; a larger one, or a `write` or `poll` list that
        // large, traps.
        store.set_hostcall_fuel(record_limit.saturating_add(1 << 20).max(MIN_HOSTCALL_BYTES));
        // Every epoch tick the plugin's code runs, it yields its thread (a spinning plugin
        // shares it) and uses one tick of its call's CPU budget; at the end of the budget, a
        // trap. The budget is set per call and host calls do not refill it.
        store.epoch_deadline_callback(|mut ctx| {
            let st = ctx.data_mut();
            st.cpu_ticks_used += 1;
            if st.cpu_ticks_used >= st.producer.options.limits.cpu_ticks() {
                return Ok(UpdateDeadline::Interrupt);
            }
            // tokio's own yield: the worker also runs its timers and I/O before coming back
            // (a plain wake-up would wait up to 61 polls, over half a second, for them). In a
            // CPU group, once for every call of the group running now.
            let turns = st
                .producer
                .options
                .cpu_group
                .as_ref()
                .map_or(1, |g| g.running().max(1));
            if turns == 1 {
                Ok(UpdateDeadline::YieldCustom(
                    1,
                    Box::pin(tokio::task::yield_now()),
                ))
            } else {
                Ok(UpdateDeadline::YieldCustom(
                    1,
                    Box::pin(async move {
                        for _ in 0..turns {
                            tokio::task::yield_now().await;
                        }
                    }),
                ))
            }
        });
        store.set_epoch_deadline(1);
        // Instantiating runs the plugin's start functions: it counts in the CPU group as a
        // call does (a plugin trapping on every event is instantiated on every event).
        let in_group = self.options.cpu_group.as_ref().map(CpuGroup::join);
        let finish_export = self.finish;
        let world = &self.world;
        let instantiate = async {
            let (instance, bindings) = match world {
                World::Plugin(pre) => {
                    let instance = pre.instance_pre().instantiate_async(&mut store).await?;
                    let bindings = bindings::Plugin::new(&mut store, &instance)?;
                    (instance, Calls::Plugin(bindings))
                }
                World::Messaging { pre, handle } => {
                    let instance = pre.instantiate_async(&mut store).await?;
                    let handle = instance
                        .get_typed_func::<_, _>(&mut store, handle)
                        .map_err(|e| {
                            wasmtime::format_err!(
                                "its `handle` is not wasi:messaging@0.2.0-draft's `func(message: message) -> result<_, error>`: {e}"
                            )
                        })?;
                    (instance, Calls::Messaging(handle))
                }
            };
            let finish = match finish_export {
                Some(index) => Some(
                    instance
                        .get_typed_func::<(), (Result<(), String>,)>(&mut store, index)
                        .map_err(|e| {
                            wasmtime::format_err!(
                                "its `finish` export is not `func() -> result<_, string>`: {e}"
                            )
                        })?,
                ),
                None => None,
            };
            Ok::<_, wasmtime::Error>((bindings, finish))
        };
        let instantiated = tokio::time::timeout(limits.call_time, instantiate).await;
        drop(in_group);
        let (bindings, finish) = match instantiated {
            Ok(r) => r.map_err(|e| PluginError::Instantiate {
                plugin: name.to_string(),
                reason: describe(&e, &limits),
            })?,
            Err(_) => {
                return Err(PluginError::Instantiate {
                    plugin: name.to_string(),
                    reason: format!(
                        "it ran longer than its wall-time limit of {} ms",
                        limits.call_time.as_millis()
                    ),
                })
            }
        };
        Ok(PluginInstance {
            store,
            bindings,
            finish,
            output,
            stopped: false,
            in_call: false,
        })
    }
}

impl Drop for PluginInstance {
    /// A call abandoned midway no longer runs.
    fn drop(&mut self) {
        self.end_call();
    }
}

/// One running instance of a plugin.
pub struct PluginInstance {
    store: Store<PluginState>,
    bindings: Calls,
    /// `finish`, if the plugin exports it.
    finish: Option<TypedFunc<(), (Result<(), String>,)>>,
    output: OutputBudget,
    stopped: bool,
    /// A call began and has not ended: if its future was dropped (the caller went away),
    /// wasmtime left the instance unusable, so it counts as stopped.
    in_call: bool,
}

impl PluginInstance {
    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.store.data().producer.name
    }

    /// The producer owner of this instance's records (`None` in test mode).
    pub fn owner(&self) -> Option<&wafka_producer::Owner> {
        self.store.data().producer.owner().ok()
    }

    /// Records captured since the last call (test mode; empty otherwise).
    pub fn take_captured(&mut self) -> Vec<CapturedRecord> {
        match &mut self.store.data_mut().producer.sink {
            Sink::Capture(c) => c.take(),
            Sink::Producer(_) => Vec::new(),
        }
    }

    /// Failures `wafka test` injected so far: those `publish` answered, and those in delivery
    /// reports (zero outside test mode).
    pub fn injected_failures(&self) -> (u64, u64) {
        match &self.store.data().producer.sink {
            Sink::Capture(c) => (c.injected_at_publish, c.injected_in_reports),
            Sink::Producer(_) => (0, 0),
        }
    }

    /// This instance's counters.
    pub fn stats(&self) -> PluginStats {
        self.store.data().producer.stats
    }

    /// What the instance holds in memories and tables, as counted against its limit.
    pub fn resources(&self) -> ResourceUse {
        self.store.data().budget.used()
    }

    /// Distinct topics this instance has published to.
    pub fn topics(&self) -> usize {
        self.store.data().producer.topic_count()
    }

    /// Keeps (or stops keeping) the partition and offset of every record `publish` waited for
    /// (autoflush on), at most `state::MAX_ACKS` between two [`PluginInstance::take_acks`].
    pub fn collect_acks(&mut self, on: bool) {
        self.store.data_mut().producer.collect_acks(on);
    }

    /// The records acknowledged since the last call (see [`PluginInstance::collect_acks`]),
    /// and how many more were not kept.
    pub fn take_acks(&mut self) -> (Vec<RecordAck>, u64) {
        self.store.data_mut().producer.take_acks()
    }

    /// Whether an earlier trap or timeout stopped the instance, or a call into it was
    /// abandoned midway (its future dropped).
    pub fn is_stopped(&self) -> bool {
        self.stopped || self.in_call
    }

    /// Takes the plugin's current options: ACL, limits and quotas apply from the next record
    /// or call; a fixed autoflush policy rebinds `publish` (under `guest`, the plugin's own
    /// choice stays). Memory already granted stays granted.
    pub fn reconfigure(&mut self, plugin: &Plugin) {
        let st = self.store.data_mut();
        st.budget = StoreBudget::carry(&st.budget, &plugin.options.limits);
        let ctx = &mut st.producer;
        ctx.options = plugin.options.clone();
        ctx.forget_last_topic();
        match ctx.options.autoflush {
            Autoflush::On => ctx.publish = ctx.autoflush,
            Autoflush::Off => ctx.publish = ctx.buffered,
            Autoflush::Guest => {}
        }
    }

    /// Gets the instance ready for a call: a fresh CPU budget, output budget and wall-time
    /// deadline. Returns the deadline and the wall-time limit.
    fn arm(&mut self) -> Result<(tokio::time::Instant, Duration), PluginError> {
        if self.is_stopped() {
            return Err(PluginError::Stopped(self.name().to_string()));
        }
        self.in_call = true;
        if let Some(g) = &self.store.data().producer.options.cpu_group {
            g.enter();
        }
        self.output.reset();
        let st = self.store.data_mut();
        let limit = st.producer.options.limits.call_time;
        let deadline = std::time::Instant::now() + limit;
        st.producer.call_deadline = deadline;
        st.cpu_ticks_used = 0;
        self.store.set_epoch_deadline(1);
        Ok((deadline.into(), limit))
    }

    /// The call overran its wall-time limit (its future was dropped): the instance is gone.
    fn timed_out(&mut self, limit: Duration) -> PluginError {
        self.end_call();
        self.stopped = true;
        PluginError::TimedOut {
            plugin: self.name().to_string(),
            limit_ms: limit.as_millis(),
        }
    }

    /// The call that `arm` began is over.
    fn end_call(&mut self) {
        if std::mem::replace(&mut self.in_call, false) {
            if let Some(g) = &self.store.data().producer.options.cpu_group {
                g.leave();
            }
        }
    }

    fn settle(&mut self, r: wasmtime::Result<Result<(), String>>) -> Result<(), PluginError> {
        self.end_call();
        match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(PluginError::Failed {
                plugin: self.name().to_string(),
                message: one_line(&message),
            }),
            Err(e) => {
                self.stopped = true;
                let limits = self.store.data().producer.options.limits;
                Err(PluginError::Trapped {
                    plugin: self.name().to_string(),
                    reason: describe(&e, &limits),
                })
            }
        }
    }

    /// Calls the plugin's `init` with its configuration. A wasi:messaging plugin has no
    /// `init`: nothing is called, and a configuration it could not receive is refused.
    pub async fn init(&mut self, config: &[(String, String)]) -> Result<(), PluginError> {
        if let Calls::Messaging(_) = &self.bindings {
            if !config.is_empty() {
                return Err(PluginError::Failed {
                    plugin: self.name().to_string(),
                    message: format!(
                        "a wasi:messaging plugin takes no configuration (its world has no `init`), but it was given {} setting(s), `{}` first",
                        config.len(),
                        one_line(&config[0].0)
                    ),
                });
            }
            return Ok(());
        }
        let (deadline, limit) = self.arm()?;
        let Calls::Plugin(bindings) = &self.bindings else {
            return Ok(());
        };
        let call = bindings.call_init(&mut self.store, config);
        match tokio::time::timeout_at(deadline, call).await {
            Ok(r) => self.settle(r),
            Err(_) => Err(self.timed_out(limit)),
        }
    }

    /// Calls the plugin's `handle` with one event; a wasi:messaging plugin gets it as a
    /// message (`HeldMessage::event`), and its error in one line, the case's name first.
    pub async fn handle(&mut self, event: &[u8]) -> Result<(), PluginError> {
        let (deadline, limit) = self.arm()?;
        let r = match &self.bindings {
            Calls::Plugin(b) => {
                let call = b.call_handle(&mut self.store, event);
                tokio::time::timeout_at(deadline, call).await
            }
            Calls::Messaging(handle) => {
                let handle = *handle;
                let call = async {
                    let state = self.store.data_mut();
                    let message = state.table().push(HeldMessage::event(event))?;
                    // Its destructor gives the bytes back; kept, they count.
                    messaging::hold_for(state, &message, event.len())?;
                    let (r,) = handle.call_async(&mut self.store, (message,)).await?;
                    Ok::<_, wasmtime::Error>(r.map_err(|e| e.to_string()))
                };
                tokio::time::timeout_at(deadline, call).await
            }
        };
        let stats = &mut self.store.data_mut().producer.stats;
        stats.events += 1;
        if !matches!(r, Ok(Ok(Ok(())))) {
            stats.failed_events += 1;
        }
        match r {
            Ok(r) => self.settle(r),
            Err(_) => Err(self.timed_out(limit)),
        }
    }

    /// Whether the plugin exports `finish` (the `plugin-lifecycle` world).
    pub fn has_finish(&self) -> bool {
        self.finish.is_some()
    }

    /// Calls the plugin's `finish`, once its last event was handled (its input ended, or the
    /// host drains or drops it), within the same limits as an event; nothing when the plugin
    /// does not export it. Publishing still works during the call.
    pub async fn finish(&mut self) -> Result<(), PluginError> {
        let Some(finish) = self.finish else {
            return Ok(());
        };
        let (deadline, limit) = self.arm()?;
        let call = finish.call_async(&mut self.store, ());
        match tokio::time::timeout_at(deadline, call).await {
            Ok(r) => self.settle(r.map(|(r,)| r)),
            Err(_) => Err(self.timed_out(limit)),
        }
    }

    /// Waits until every record of this instance is acknowledged or failed; the first failure
    /// since the last flush.
    pub async fn flush(&self) -> Result<(), ProduceError> {
        match &self.store.data().producer.sink {
            Sink::Producer(owner) => owner.flush().await,
            Sink::Capture(_) => Ok(()),
        }
    }
}
