//! Tenancy: many tenants' plugins in one host, over HTTP, isolated and fair (`wafka serve`).
//!
//! Leaves first:
//! - [`config`] reads the TOML file into checked settings (one-line errors naming the key);
//! - [`fds`] raises the descriptor limit and says how many connections it leaves;
//! - `admission` decides, as each connection is accepted, whether it is served (descriptors,
//!   connection caps per host, per address and for clients not yet authenticated);
//! - [`quota`] measures rates as Kafka's quota manager does and says how long to throttle;
//! - [`metrics`] counts, for Prometheus;
//! - [`pool`] keeps one plugin's instances for one tenant;
//! - [`tenant`] builds the tenants in effect from a config (ACL, limits, quota, memory share,
//!   pools) and the gate each plugin's publishes pass;
//! - [`producers`] keeps the producer cores: the host's, and one per tenant identity;
//! - `server` holds the state (tenants, producers, engine), reloads and drains;
//! - `http` is the interface.
//!
//! It sits on the wasm runtime (`crate::runtime`) and the producer core; nothing below it
//! knows it exists: the runtime sees a tenant only as plugin options and a
//! [`crate::runtime::gate::PublishGate`].

mod admission;
pub mod config;
pub mod fds;
mod http;
pub mod metrics;
pub mod pool;
pub mod producers;
pub mod quota;
mod server;
pub mod tenant;

pub use config::{ConfigError, ServeConfig};
pub use producers::Producers;
pub use server::{Drained, ReloadError, Reloaded, Server, StartError};
