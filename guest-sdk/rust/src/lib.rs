//! Write wafka plugins in Rust.
//!
//! A wafka plugin is a WebAssembly component targeting the `plugin-lifecycle` world of the WIT package
//! `wafka:producer@0.1.0`: the host calls `init` once with the plugin's configuration, then
//! `handle` once per input event, and the plugin publishes Kafka records through the host's
//! `producer` interface. This crate hides the generated bindings behind a small API:
//!
//! * implement [`Plugin`] for your state and register it with [`export_plugin!`];
//! * read settings from [`Config`];
//! * build records with [`Record`] and send them with [`Record::publish`] (or [`publish`]);
//! * control delivery with [`flush`], [`set_autoflush`] and [`take_reports`];
//! * act on the producer's failures through [`Error`]; `init`, `handle` and `finish` return
//!   [`Failure`], which `?` makes from any error (and from `String` and `&str`), and
//!   [`fail!`] returns one made with `format!`.
//!
//! ```no_run
//! use wafka_guest::{Config, Failure, Plugin, Record};
//!
//! struct Echo {
//!     topic: String,
//! }
//!
//! impl Plugin for Echo {
//!     fn init(config: Config) -> Result<Self, Failure> {
//!         Ok(Echo { topic: config.get_or("topic", "echo").to_string() })
//!     }
//!
//!     fn handle(&mut self, event: &[u8]) -> Result<(), Failure> {
//!         Record::new(self.topic.as_str(), event).publish()?;
//!         Ok(())
//!     }
//! }
//!
//! wafka_guest::export_plugin!(Echo);
//! ```
//!
//! Build the plugin crate as a `cdylib` for the `wasm32-wasip2` target; cargo then produces a
//! component directly (`target/wasm32-wasip2/release/<name>.wasm`).
//!
//! On targets other than `wasm32`, the crate compiles with a fake host ([`testing`]), so plugin
//! crates can unit-test themselves natively with `cargo test`: publishing, receipts, delivery
//! reports and refusals behave as the host's.

#![warn(missing_docs)]

mod config;
mod error;
mod failure;
mod plugin;
mod record;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

pub use config::Config;
pub use error::{BrokerError, Error};
pub use failure::{Failure, Result};
pub use plugin::Plugin;
pub use record::{flush, publish, set_autoflush, take_reports, DeliveryReport, Receipt, Record};

/// The raw bindings generated from the WIT package. Not part of the API: use the types and
/// functions at the crate root instead.
#[doc(hidden)]
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "plugin-lifecycle",
        // The crate's own copy of wit/ (packaged with it; host/tests/contract.rs checks that
        // it is the same file).
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "__export_plugin_world",
        additional_derives: [PartialEq, Eq],
    });
}

/// Support for [`export_plugin!`]; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::bindings::Guest;
    pub use crate::plugin::{finish, handle, init};
}

/// Makes a [`Plugin`] the implementation of the component's `init`, `handle` and `finish`
/// exports (the `plugin-lifecycle` world).
///
/// Invoke it exactly once, at module level, in the plugin's `cdylib` crate:
///
/// ```no_run
/// # use wafka_guest::{Config, Failure, Plugin};
/// # struct MyPlugin;
/// # impl Plugin for MyPlugin {
/// #     fn init(_: Config) -> Result<Self, Failure> { Ok(MyPlugin) }
/// #     fn handle(&mut self, _: &[u8]) -> Result<(), Failure> { Ok(()) }
/// # }
/// wafka_guest::export_plugin!(MyPlugin);
/// ```
///
/// The SDK keeps the value returned by [`Plugin::init`] for the lifetime of the instance and
/// hands it to [`Plugin::handle`] for every event. `handle` before a successful `init` returns
/// an error without calling the plugin; a second `init` replaces the state.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        const _: () = {
            struct __WafkaPluginExports;

            impl $crate::__private::Guest for __WafkaPluginExports {
                fn init(
                    config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::__private::init::<$plugin>(config)
                }

                fn handle(
                    event: ::std::vec::Vec<u8>,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::__private::handle(&event)
                }

                fn finish() -> ::std::result::Result<(), ::std::string::String> {
                    $crate::__private::finish()
                }
            }

            $crate::bindings::__export_plugin_world!(
                __WafkaPluginExports with_types_in $crate::bindings
            );
        };
    };
}
