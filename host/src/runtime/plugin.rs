//! A compiled plugin and its instances: one wasmtime store each.
//!
//! Owns an instance's state (its WASI context with no capabilities, its limits, its producer
//! owner, its ACL and its current publish function) and the calls into the plugin (`init`,
//! `handle`), with traps turned into one-line errors. A trap kills the instance; records it
//! published before stay queued and are delivered. It must not link functions (see `linker`).

use std::sync::Arc;
use std::time::Instant;

use wafka_producer::{Owner, OwnerOptions, ProduceError, Producer};
use wasmtime::component::ResourceTable;
use wasmtime::{Store, StoreLimits, Trap, UpdateDeadline, WasmBacktrace};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::runtime::acl::TopicAcl;
use crate::runtime::bindings;
use crate::runtime::capture::{Capture, CapturedRecord};
use crate::runtime::limits::Limits;
use crate::runtime::linker::Target;
use crate::runtime::linker::{self, PublishFn};
use crate::runtime::output::{PluginLog, Stream};

/// Who decides whether `publish` waits for the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Autoflush {
    /// Always: `publish` returns after the broker acknowledged the record.
    On,
    /// Never: `publish` returns once the record is queued.
    Off,
    /// The plugin, with `set-autoflush`; it starts off.
    Guest,
}

impl std::str::FromStr for Autoflush {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "on" => Ok(Autoflush::On),
            "off" => Ok(Autoflush::Off),
            "guest" => Ok(Autoflush::Guest),
            _ => Err(format!("`{s}`: expected on, off or guest")),
        }
    }
}

/// What an operator fixes for a plugin.
#[derive(Debug, Clone)]
pub struct PluginOptions {
    /// Name used in logs and errors.
    pub name: String,
    /// Autoflush policy, applied when the plugin is linked.
    pub autoflush: Autoflush,
    /// Memory and CPU limits of each instance.
    pub limits: Limits,
    /// Topics the plugin may publish to.
    pub acl: TopicAcl,
    /// Most bytes an instance may have buffered in the producer; over it `publish` fails with
    /// `quota-exceeded`.
    pub buffer_quota: Option<usize>,
}

impl PluginOptions {
    /// Defaults for a plugin called `name`: autoflush off, default limits, every topic.
    pub fn new(name: impl Into<String>) -> Self {
        PluginOptions {
            name: name.into(),
            autoflush: Autoflush::Off,
            limits: Limits::default(),
            acl: TopicAcl::allow_all(),
            buffer_quota: None,
        }
    }
}

/// Counters of one instance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PluginStats {
    /// Events handled (successfully or not).
    pub events: u64,
    /// Events the plugin returned an error for.
    pub failed_events: u64,
    /// Records queued.
    pub records: u64,
    /// Key, value and header bytes of the records queued.
    pub bytes: u64,
    /// Records refused by the producer (the plugin got an error back).
    pub refused: u64,
}

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

/// The state of one instance, held by its store.
pub struct PluginState {
    pub(crate) name: Arc<str>,
    wasi: WasiCtx,
    table: ResourceTable,
    store_limits: StoreLimits,
    pub(crate) limits: Limits,
    pub(crate) sink: Sink,
    pub(crate) acl: Arc<TopicAcl>,
    /// The publish path in use under `Autoflush::Guest` (ignored under fixed policies).
    pub(crate) publish: PublishFn,
    pub(crate) call_deadline: Instant,
    /// Epoch ticks the current call has run its own code for (its CPU budget's use).
    cpu_ticks_used: u64,
    pub(crate) stats: PluginStats,
}

/// Where an instance's records go; fixed when it is instantiated, matching how its plugin was
/// linked (see `linker::Target`).
pub(crate) enum Sink {
    /// The producer core, through this instance's owner.
    Producer(Owner),
    /// Memory (`wafka test`).
    Capture(Capture),
}

impl PluginState {
    /// The instance's producer owner (not there in test mode).
    pub(crate) fn owner(&self) -> wasmtime::Result<&Owner> {
        match &self.sink {
            Sink::Producer(o) => Ok(o),
            Sink::Capture(_) => Err(wasmtime::format_err!("no producer in test mode")),
        }
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

/// A compiled, pre-linked plugin. Instantiate it as often as needed.
pub struct Plugin {
    pub(crate) options: PluginOptions,
    pub(crate) acl: Arc<TopicAcl>,
    pub(crate) engine: wasmtime::Engine,
    pub(crate) pre: bindings::PluginPre<PluginState>,
    pub(crate) load: crate::runtime::engine::LoadInfo,
    pub(crate) target: Target,
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

    /// How long loading took and whether the compiled code came from the cache.
    pub fn load_info(&self) -> crate::runtime::engine::LoadInfo {
        self.load
    }

    /// A new instance publishing through `producer`, with its own store and producer owner.
    pub async fn instantiate(&self, producer: &Producer) -> Result<PluginInstance, PluginError> {
        let owner = producer.owner(OwnerOptions {
            name: self.options.name.clone(),
            memory_limit: self.options.buffer_quota,
            delivery_reports: true,
        });
        self.instantiate_with(Target::Kafka, Sink::Producer(owner))
            .await
    }

    /// A new instance whose records are kept in memory (the plugin must have been loaded with
    /// [`crate::Engine::load_for_test`]). Keyed records get the partition murmur2 gives among
    /// `partitions`; null keys partition 0.
    pub async fn instantiate_capture(
        &self,
        partitions: i32,
    ) -> Result<PluginInstance, PluginError> {
        self.instantiate_with(Target::Capture, Sink::Capture(Capture::new(partitions)))
            .await
    }

    async fn instantiate_with(
        &self,
        target: Target,
        sink: Sink,
    ) -> Result<PluginInstance, PluginError> {
        let name: Arc<str> = Arc::from(self.options.name.as_str());
        if target != self.target {
            return Err(PluginError::Instantiate {
                plugin: name.to_string(),
                reason: "loaded for the other sink (Kafka vs. test capture)".into(),
            });
        }
        // No preopened directories, no environment, no arguments, no network: only the
        // clocks, random numbers, and stdout/stderr into the host's log.
        let wasi = WasiCtxBuilder::new()
            .stdout(PluginLog::new(name.clone(), Stream::Stdout))
            .stderr(PluginLog::new(name.clone(), Stream::Stderr))
            .allow_ip_name_lookup(false)
            .build();
        let limits = self.options.limits;
        let state = PluginState {
            name: name.clone(),
            wasi,
            table: ResourceTable::new(),
            store_limits: limits.store_limits(),
            limits,
            sink,
            acl: self.acl.clone(),
            publish: linker::buffered,
            call_deadline: Instant::now() + limits.call_time,
            cpu_ticks_used: 0,
            stats: PluginStats::default(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.store_limits);
        // Every epoch tick the plugin's code runs, it yields its thread (a spinning plugin
        // shares it) and uses one tick of its call's CPU budget; at the end of the budget, a
        // trap. The budget is set per call and host calls do not refill it.
        store.epoch_deadline_callback(|mut ctx| {
            let st = ctx.data_mut();
            st.cpu_ticks_used += 1;
            if st.cpu_ticks_used >= st.limits.cpu_ticks() {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store.set_epoch_deadline(1);
        let instantiate = self.pre.instantiate_async(&mut store);
        let bindings = match tokio::time::timeout(limits.call_time, instantiate).await {
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
            stopped: false,
        })
    }
}

/// One running instance of a plugin.
pub struct PluginInstance {
    store: Store<PluginState>,
    bindings: bindings::Plugin,
    stopped: bool,
}

impl PluginInstance {
    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.store.data().name
    }

    /// The producer owner of this instance's records (`None` in test mode).
    pub fn owner(&self) -> Option<&Owner> {
        self.store.data().owner().ok()
    }

    /// Records captured since the last call (test mode; empty otherwise).
    pub fn take_captured(&mut self) -> Vec<CapturedRecord> {
        match &mut self.store.data_mut().sink {
            Sink::Capture(c) => c.take(),
            Sink::Producer(_) => Vec::new(),
        }
    }

    /// This instance's counters.
    pub fn stats(&self) -> PluginStats {
        self.store.data().stats
    }

    /// Gets the instance ready for a call: a fresh CPU budget and wall-time deadline. Returns
    /// the wall-time limit.
    fn arm(&mut self) -> Result<std::time::Duration, PluginError> {
        if self.stopped {
            return Err(PluginError::Stopped(self.name().to_string()));
        }
        let limits = self.store.data().limits;
        let st = self.store.data_mut();
        st.call_deadline = Instant::now() + limits.call_time;
        st.cpu_ticks_used = 0;
        self.store.set_epoch_deadline(1);
        Ok(limits.call_time)
    }

    /// The call overran its wall-time limit (its future was dropped): the instance is gone.
    fn timed_out(&mut self, limit: std::time::Duration) -> PluginError {
        self.stopped = true;
        PluginError::TimedOut {
            plugin: self.name().to_string(),
            limit_ms: limit.as_millis(),
        }
    }

    fn settle(&mut self, r: wasmtime::Result<Result<(), String>>) -> Result<(), PluginError> {
        match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(PluginError::Failed {
                plugin: self.name().to_string(),
                message,
            }),
            Err(e) => {
                self.stopped = true;
                let limits = self.store.data().limits;
                Err(PluginError::Trapped {
                    plugin: self.name().to_string(),
                    reason: describe(&e, &limits),
                })
            }
        }
    }

    /// Calls the plugin's `init` with its configuration.
    pub async fn init(&mut self, config: &[(String, String)]) -> Result<(), PluginError> {
        let limit = self.arm()?;
        let call = self.bindings.call_init(&mut self.store, config);
        match tokio::time::timeout(limit, call).await {
            Ok(r) => self.settle(r),
            Err(_) => Err(self.timed_out(limit)),
        }
    }

    /// Calls the plugin's `handle` with one event.
    pub async fn handle(&mut self, event: &[u8]) -> Result<(), PluginError> {
        let limit = self.arm()?;
        let call = self.bindings.call_handle(&mut self.store, event);
        let r = match tokio::time::timeout(limit, call).await {
            Ok(r) => r,
            Err(_) => {
                let stats = &mut self.store.data_mut().stats;
                stats.events += 1;
                stats.failed_events += 1;
                return Err(self.timed_out(limit));
            }
        };
        let stats = &mut self.store.data_mut().stats;
        stats.events += 1;
        if !matches!(r, Ok(Ok(()))) {
            stats.failed_events += 1;
        }
        self.settle(r)
    }

    /// Waits until every record of this instance is acknowledged or failed; the first failure
    /// since the last flush.
    pub async fn flush(&self) -> Result<(), ProduceError> {
        match &self.store.data().sink {
            Sink::Producer(owner) => owner.flush().await,
            Sink::Capture(_) => Ok(()),
        }
    }
}

/// Whether the trap's wasm backtrace is one function calling itself over and over.
fn deep_recursion(e: &wasmtime::Error) -> bool {
    let Some(bt) = e.downcast_ref::<WasmBacktrace>() else {
        return false;
    };
    // The innermost frame may be a helper (memset filling the frame), so count the most
    // repeated function rather than the top one; the backtrace may be cut short (20 frames were seen).
    let mut counts = std::collections::HashMap::new();
    bt.frames().iter().any(|f| {
        let n = counts
            .entry((f.module().name().map(str::to_owned), f.func_index()))
            .or_insert(0u32);
        *n += 1;
        *n >= 16
    })
}

/// One line saying why a call into a plugin failed.
fn describe(e: &wasmtime::Error, limits: &Limits) -> String {
    if let Some(trap) = e.downcast_ref::<Trap>() {
        if *trap == Trap::MemoryOutOfBounds && deep_recursion(e) {
            // Rust and C guests keep their stack in linear memory: recursing past it runs off
            // the memory instead of off wasmtime's own stack.
            return "stack overflow (deep recursion ran off the plugin's stack)".into();
        }
        return match trap {
            Trap::Interrupt => format!(
                "it ran longer than its CPU time limit of {} ms without returning to the host",
                limits.cpu_time.as_millis()
            ),
            Trap::UnreachableCodeReached => {
                "it panicked or aborted (wasm `unreachable` executed); see its stderr above".into()
            }
            Trap::StackOverflow => "stack overflow".into(),
            other => other.to_string(),
        };
    }
    // The error's own text is a wasm backtrace; what happened is its innermost cause, which
    // the debug form lists under "Caused by:".
    let full = format!("{e:?}");
    // One line per cause until a blank line (a Rust backtrace may follow); the last is the root.
    let cause = full
        .split("Caused by:")
        .nth(1)
        .and_then(|c| {
            c.lines()
                .map(str::trim)
                .skip_while(|l| l.is_empty())
                .take_while(|l| !l.is_empty())
                .last()
        })
        .or_else(|| full.lines().next())
        .unwrap_or("unknown error");
    if cause.contains("growing memory") || cause.contains("memory growth") {
        return format!(
            "it tried to grow its memory beyond its limit of {} MiB",
            limits.memory_bytes >> 20
        );
    }
    cause
        .trim_start_matches(|c: char| c.is_ascii_digit() || c == ':' || c == ' ')
        .to_string()
}
