//! The wasm runtime: compiling plugins, linking the producer interface into them, running
//! their instances within limits. It knows the producer's API, not its wire details.
//!
//! Leaves first:
//! - [`options`] and [`limits`] are what an operator fixes per plugin (autoflush policy, ACL,
//!   quotas; memory, CPU, wall time) and the limiter that enforces memory; [`acl`] the topic
//!   allow-list; [`gate`] what a multi-tenant host checks and counts around each publish;
//! - `message` reads a guest's message in place; `state` is an instance's store data and the
//!   producer context every record is checked against (`admit`);
//! - [`faults`] are the failures `wafka test` can inject into the capture;
//! - `publish` (the producer core) and [`capture`] (memory, for `wafka test`) are the two
//!   sinks; an instance's `publish` is bound to one of their paths when it starts; `route`
//!   names a sink's paths and the gate around them, for both worlds;
//! - `linker` binds WASI (no capabilities) and `wafka:producer/producer` once for every plugin,
//!   and [`messaging`] binds wasi:messaging@0.2.0-draft into the same linker, onto the same
//!   publish paths, for plugins of that proposal's `messaging-core` world;
//! - [`plugin`] runs instances (one store each) within their limits; `trap` says in one line
//!   why a call failed; [`output`] carries plugins' stdout and stderr to the log, within a
//!   budget per call and a tenant's [`output::OutputRate`] ([`bucket`]), and [`log_writer`]
//!   writes them on a thread of its own;
//! - [`engine`] compiles plugins (once per machine, with the [`cache`] on disk) and keeps the
//!   epoch clock that meters CPU time.

pub mod acl;
pub mod bindings;
pub mod bucket;
pub mod cache;
pub mod capture;
pub mod engine;
pub mod faults;
pub mod gate;
pub mod limits;
pub(crate) mod linker;
pub mod log_writer;
pub(crate) mod message;
pub mod messaging;
pub mod options;
pub mod output;
pub mod plugin;
pub(crate) mod publish;
pub(crate) mod route;
pub(crate) mod state;
pub(crate) mod trap;
