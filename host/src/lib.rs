//! wafka's host: runs WebAssembly component plugins that publish through wafka's producer.
//!
//! - [`engine`] compiles plugins (once per machine, with the [`cache`] on disk) (wasmtime, component model, WASI 0.2, async) and keeps the
//!   epoch clock that bounds a plugin's CPU time;
//! - `linker` binds the `wafka:producer/producer` interface into a plugin. **Autoflush is chosen
//!   there, at link time**: `publish` is bound to the buffered function or to the autoflush
//!   wrapper (publish, then flush), so no flag is looked at per record;
//! - [`plugin`] is a compiled plugin and its instances (one store each);
//! - [`limits`] and [`acl`] are what an operator fixes per plugin: memory, CPU, topics;
//! - `publish` turns a guest's message into a producer record, copying key, value and headers
//!   straight from guest memory into the batch;
//! - `output` sends a plugin's stdout and stderr to the host's log, tagged with the plugin.
//!
//! The wire format stays in `wafka-producer`; this crate only calls its API.

pub mod acl;
pub mod bindings;
pub mod cache;
pub mod capture;
pub mod engine;
pub mod limits;
mod linker;
mod output;
pub mod plugin;
mod publish;

pub use acl::TopicAcl;
pub use cache::ComponentCache;
pub use capture::CapturedRecord;
pub use engine::{Engine, LoadError, LoadInfo};
pub use limits::Limits;
pub use plugin::{Autoflush, Plugin, PluginError, PluginInstance, PluginOptions, PluginStats};
