//! wafka's host: runs WebAssembly component plugins that publish through wafka's producer.
//!
//! [`runtime`] is the wasm runtime (engine, linker, instances, limits, the publish path);
//! [`serve`] is tenancy: many tenants' plugins behind HTTP (`wafka serve`);
//! [`io`] gives producers threads of their own, apart from plugins; the `wafka` command line
//! lives in the binary (`src/cli`).
//!
//! The wire format stays in `wafka-producer`; this crate only calls its API.

pub mod io;
pub mod runtime;
pub mod serve;

pub use runtime::{acl, bindings, cache, capture, engine, gate, limits, options, plugin};

pub use io::ProducerRuntime;
pub use runtime::acl::TopicAcl;
pub use runtime::cache::ComponentCache;
pub use runtime::capture::{CaptureOptions, CapturedRecord};
pub use runtime::engine::{Engine, EngineOptions, LoadError};
pub use runtime::faults::{FaultKind, Faults};
pub use runtime::gate::{PublishGate, Published};
pub use runtime::limits::{CpuGroup, Limits, ResourceUse};
pub use runtime::messaging::MessagingError;
pub use runtime::options::{Autoflush, PluginOptions, PluginStats, RecordAck};
pub use runtime::plugin::{LoadInfo, Plugin, PluginError, PluginInstance, PluginWorld};
