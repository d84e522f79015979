//! The wasmtime engine: configuration, compiling plugins, and the epoch clock.
//!
//! Owns the `wasmtime::Engine` (component model, async, epoch interruption, the pooling
//! allocator), the one linker every plugin is linked with, and the checks that turn a bad plugin file into a one-line [`LoadError`]:
//! which world a component targets (wafka's `plugin`/`plugin-lifecycle`, or wasi:messaging's
//! `messaging-core` when it exports that proposal's handler) is decided here, once.
//! It must not run plugins (see `plugin`).

use std::path::Path;
use std::sync::Arc;

use wasmtime::component::{Component, Linker};

use crate::runtime::bindings;
use crate::runtime::cache::ComponentCache;
use crate::runtime::limits::EPOCH_TICK;
use crate::runtime::linker::plugin_linker;
use crate::runtime::messaging;
use crate::runtime::plugin::{LoadInfo, Plugin, PluginOptions, World};
use crate::runtime::state::PluginState;

/// Why a plugin could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read plugin `{path}`: {reason}")]
    Read {
        /// The path given.
        path: String,
        /// The OS error.
        reason: String,
    },
    /// Not WebAssembly at all.
    #[error("`{0}` is not a WebAssembly file (it does not start with `\\0asm`)")]
    NotWasm(String),
    /// A core module instead of a component.
    #[error("`{0}` is a core WebAssembly module, not a component: build it for wasm32-wasip2 or wrap it with `wasm-tools component new`")]
    CoreModule(String),
    /// The component is malformed or uses features wafka does not enable.
    #[error("`{plugin}` is not a valid component: {reason}")]
    Invalid {
        /// Plugin name.
        plugin: String,
        /// The validator's message.
        reason: String,
    },
    /// The component targets neither wafka's `plugin` world nor wasi:messaging's
    /// `messaging-core` (or it imports what the host does not give, such as `request-reply`).
    #[error("`{plugin}` does not fit wafka's plugin world (wafka:producer@0.1.0) or wasi:messaging@0.2.0-draft's messaging-core: {reason}")]
    WrongWorld {
        /// Plugin name.
        plugin: String,
        /// What is missing or different.
        reason: String,
    },
}

/// How an engine holds its instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineOptions {
    /// Most instances alive at once, all plugins together: the size of wasmtime's pooling
    /// allocator. Its memory slots, tables, instance records and fiber stacks are reserved up
    /// front (address space: about 8 GiB per instance, two memories of 4 GiB each, nearly all
    /// of it never touched) and
    /// reused, and a memory starts from the plugin's copy-on-write image, so an instance
    /// starts in microseconds. One more instance than this is refused ("maximum concurrent
    /// instance limit"). `0` allocates every instance on demand instead: nothing reserved,
    /// slower to start.
    pub max_instances: u32,
}

impl Default for EngineOptions {
    /// A pool of 100 instances.
    fn default() -> Self {
        EngineOptions { max_instances: 100 }
    }
}

/// Elements one table may have in the pool (Go and Python plugins use about 6,000).
const POOL_TABLE_ELEMENTS: usize = 100_000;

/// Compiles and links plugins. One per host; cheap to share by reference.
pub struct Engine {
    engine: wasmtime::Engine,
    linker: Linker<PluginState>,
    cache: Option<ComponentCache>,
}

impl Engine {
    /// An engine for component plugins, with its epoch clock running and the default pool.
    pub fn new() -> wasmtime::Result<Engine> {
        Self::with_options(EngineOptions::default())
    }

    /// An engine for component plugins, with its epoch clock running.
    pub fn with_options(options: EngineOptions) -> wasmtime::Result<Engine> {
        use crate::runtime::limits::{MAX_CORE_INSTANCES, MAX_MEMORIES, MAX_TABLES};
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true).epoch_interruption(true);
        let n = options.max_instances;
        if n > 0 {
            let mut pool = wasmtime::PoolingAllocationConfig::new();
            // Every total is the per-instance cap times the slots: one plugin that uses all it
            // may cannot leave another without a slot.
            let (cores, memories, tables) = (
                MAX_CORE_INSTANCES as u32,
                MAX_MEMORIES as u32,
                MAX_TABLES as u32,
            );
            pool.total_component_instances(n)
                .total_core_instances(n.saturating_mul(cores))
                .max_core_instances_per_component(cores)
                .total_memories(n.saturating_mul(memories))
                .max_memories_per_component(memories)
                .max_memories_per_module(memories)
                .total_tables(n.saturating_mul(tables))
                .max_tables_per_component(tables)
                .max_tables_per_module(MAX_TABLES as u32)
                .table_elements(POOL_TABLE_ELEMENTS)
                .total_stacks(n);
            config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = wasmtime::Engine::new(&config)?;
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("wafka-epoch".into())
            .spawn(move || loop {
                std::thread::sleep(EPOCH_TICK);
                match weak.upgrade() {
                    Some(e) => e.increment_epoch(),
                    None => break,
                }
            })?;
        let linker = plugin_linker(&engine)?;
        Ok(Engine {
            engine,
            linker,
            cache: None,
        })
    }

    /// Keeps compiled plugins in `cache`, so that loading the same component again skips
    /// compilation (seconds for large components such as Python or JavaScript ones).
    pub fn with_cache(mut self, cache: ComponentCache) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Reads and loads the plugin at `path`.
    pub fn load_file(&self, path: &Path, options: PluginOptions) -> Result<Plugin, LoadError> {
        let bytes = std::fs::read(path).map_err(|e| LoadError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        self.load(&bytes, options)
    }

    /// Compiles `bytes` once and links it. Its instances can publish to a producer or to a
    /// capture, under any options: those are given per instance, not linked in.
    pub fn load(&self, bytes: &[u8], options: PluginOptions) -> Result<Plugin, LoadError> {
        let name = options.name.clone();
        if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
            return Err(LoadError::NotWasm(name));
        }
        if bytes[4..8] == [1, 0, 0, 0] {
            return Err(LoadError::CoreModule(name));
        }
        let started = std::time::Instant::now();
        let cached = self.cache.as_ref().and_then(|c| c.get(&self.engine, bytes));
        let from_cache = cached.is_some();
        let component = match cached {
            Some(c) => c,
            None => {
                let c = Component::new(&self.engine, bytes).map_err(|e| LoadError::Invalid {
                    plugin: name.clone(),
                    reason: first_line(&e),
                })?;
                if let Some(cache) = &self.cache {
                    cache.put(&self.engine, bytes, &c);
                }
                c
            }
        };
        let wrong_world = |e: wasmtime::Error| LoadError::WrongWorld {
            plugin: name.clone(),
            reason: first_line(&e),
        };
        if component
            .component_type()
            .get_import(&self.engine, messaging::REQUEST_REPLY)
            .is_some()
        {
            return Err(LoadError::WrongWorld {
                plugin: name.clone(),
                reason: format!(
                    "it imports `{}` (the messaging-request-reply world), which wafka does not serve (Kafka has no reply path here): build it for messaging-core",
                    messaging::REQUEST_REPLY
                ),
            });
        }
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(wrong_world)?;
        let load = LoadInfo {
            time: started.elapsed(),
            from_cache,
            size: bytes.len(),
        };
        // A component exporting wasi:messaging's handler is of that world; any other must be
        // of wafka's.
        if let Some(handler) = component.get_export_index(None, messaging::HANDLER) {
            use wasmtime::component::types::{ComponentItem, Type};
            // Its shape: an owned resource (the message) in, `result<_, error>` out (the
            // resource's identity is checked when an instance starts).
            let fits = |f: &wasmtime::component::types::ComponentFunc| {
                f.params().len() == 1
                    && f.params().all(|(_, t)| matches!(t, Type::Own(_)))
                    && f.results().len() == 1
                    && f.results().all(|r| match r {
                        Type::Result(r) => {
                            r.ok().is_none() && matches!(r.err(), Some(Type::Variant(_)))
                        }
                        _ => false,
                    })
            };
            let handle = match component.get_export(Some(&handler), "handle") {
                Some((ComponentItem::ComponentFunc(f), index)) if fits(&f) => index,
                _ => {
                    return Err(LoadError::WrongWorld {
                        plugin: name.clone(),
                        reason: format!(
                            "its `{}` export has no `handle: func(message: message) -> result<_, error>`",
                            messaging::HANDLER
                        ),
                    })
                }
            };
            return Ok(Plugin {
                options: Arc::new(options),
                engine: self.engine.clone(),
                world: World::Messaging { pre, handle },
                finish: None,
                load,
            });
        }
        let pre = bindings::PluginPre::new(pre).map_err(wrong_world)?;
        // The `plugin-lifecycle` world adds `finish`; a `plugin` component has none. Its type
        // is checked now, so a wrong one is a load error, not a failure of every instance.
        let finish = match component.get_export(None, "finish") {
            None => None,
            Some((item, index)) => {
                use wasmtime::component::types::{ComponentItem, Type};
                let fits = match &item {
                    ComponentItem::ComponentFunc(f) => {
                        f.params().len() == 0
                            && f.results().len() == 1
                            && f.results().all(|r| match r {
                                Type::Result(r) => {
                                    r.ok().is_none() && matches!(r.err(), Some(Type::String))
                                }
                                _ => false,
                            })
                    }
                    _ => false,
                };
                if !fits {
                    return Err(LoadError::WrongWorld {
                        plugin: name.clone(),
                        reason: "its `finish` export is not `func() -> result<_, string>` (the plugin-lifecycle world)".into(),
                    });
                }
                Some(index)
            }
        };
        Ok(Plugin {
            options: Arc::new(options),
            engine: self.engine.clone(),
            world: World::Plugin(pre),
            finish,
            load,
        })
    }
}

fn first_line(e: &wasmtime::Error) -> String {
    // `{:#}` joins the context chain on one line; names in it come from the component.
    let s = format!("{e:#}");
    crate::runtime::trap::one_line(s.lines().next().unwrap_or_default())
}
