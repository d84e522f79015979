//! wafka's host: runs WebAssembly component plugins that publish through wafka's producer.
//!
//! [`runtime`] is the wasm runtime (engine, linker, instances, limits, the publish path);
//! [`io`] gives producers threads of their own, apart from plugins; the `wafka` command line
//! lives in the binary (`src/cli`).
//!
//! The wire format stays in `wafka-producer`; this crate only calls its API.

pub mod io;
pub mod runtime;

pub use runtime::{acl, bindings, cache, capture, engine, limits, options, plugin};

pub use io::ProducerRuntime;
pub use runtime::acl::TopicAcl;
pub use runtime::cache::ComponentCache;
pub use runtime::capture::{CaptureOptions, CapturedRecord};
pub use runtime::engine::{Engine, EngineOptions, LoadError};
pub use runtime::limits::{Limits, ResourceUse};
pub use runtime::options::{Autoflush, PluginOptions, PluginStats};
pub use runtime::plugin::{LoadInfo, Plugin, PluginError, PluginInstance};
