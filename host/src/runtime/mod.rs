//! The wasm runtime: compiling plugins, linking the producer interface into them, running
//! their instances within limits. It knows the producer's API, not its wire details.
//!
//! - [`engine`] compiles plugins (once per machine, with the [`cache`] on disk) and keeps the
//!   epoch clock that bounds a plugin's CPU time;
//! - `linker` binds WASI (no capabilities) and `wafka:producer/producer` into a plugin.
//!   **Autoflush is chosen there, at link time**: `publish` is bound to the buffered function or
//!   to the autoflush wrapper, so no flag is looked at per record;
//! - [`plugin`] is a compiled plugin and its instances (one store each);
//! - [`limits`] and [`acl`] are what an operator fixes per plugin: memory, CPU, wall time,
//!   topics;
//! - `publish` turns a guest's message into a producer record, copying key, value and headers
//!   straight from guest memory into the batch; [`capture`] keeps them in memory instead
//!   (`wafka test`);
//! - `output` sends a plugin's stdout and stderr to the host's log, tagged with the plugin.

pub mod acl;
pub mod bindings;
pub mod cache;
pub mod capture;
pub mod engine;
pub mod limits;
pub(crate) mod linker;
mod output;
pub mod plugin;
pub(crate) mod publish;
