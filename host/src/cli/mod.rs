//! The command line: argument parsing and the commands, each on top of the library (the wasm
//! runtime and the producer). Nothing here is needed to embed wafka.
//!
//! - [`produce`]: `wafka produce`, stdin lines to a topic (like `kcat -P`);
//! - [`run`]: `wafka run`, a plugin over input lines;
//! - [`test`]: `wafka test`, a plugin without a broker (records printed as JSON lines);
//! - [`serve`]: `wafka serve`, many tenants' plugins behind HTTP;
//! - [`new`], [`build`]: `wafka new`, `wafka build`, plugin projects (`crate::project`);
//! - `local_broker`: the local broker the commands start without `-b`;
//! - `plugin_args`: what `run` and `test` read the same way (config pairs, names, events).

pub(crate) mod build;
pub(crate) mod local_broker;
pub(crate) mod new;
pub(crate) mod plugin_args;
pub(crate) mod produce;
pub(crate) mod run;
pub(crate) mod serve;
pub(crate) mod test;
