//! Rust types generated from `wit/` (the `plugin` world). The host uses the generated export
//! bindings (`init`, `handle`) and result types; it links the `producer` imports by hand (see
//! `linker`) so that `publish` can read guest memory in place.

#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
    imports: { default: async },
    exports: { default: async },
});

pub use self::wafka::producer::types::{BrokerError, DeliveryReport, ProduceError, Receipt};
