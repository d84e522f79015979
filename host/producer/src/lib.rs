//! wafka's own Kafka producer: tokio + bytes, the wire format through `kafka-protocol`.
//!
//! Records flow one way: the caller's bytes → [`Record`] → a batch in the
//! [`accumulator`](crate::accumulator) (copied once) → a Produce request built by the
//! [`sender`](crate::sender) → the broker. Every record ends in exactly one result, reached
//! through its [`Delivery`], a callback, or its [`Owner`]'s delivery reports.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use wafka_producer::{Producer, Record};
//! let producer = Producer::from_properties([("bootstrap.servers", "127.0.0.1:9092")])?;
//! // Fire and forget:
//! producer.send(&Record::new("events", b"hello")).await?;
//! // Wait for the acknowledgement:
//! let meta = producer.send(&Record::new("events", b"world").key(b"k")).await?.await?;
//! println!("stored at {}-{}@{}", meta.topic, meta.partition, meta.offset);
//! producer.close().await;
//! # Ok(()) }
//! ```
//!
//! This crate must not depend on wasmtime: the host joins it to the wasm runtime.

#![warn(missing_docs)]

mod accumulator;
pub mod batch;
mod brokers;
pub mod config;
mod connection;
mod delivery;
mod error;
mod metadata;
mod owner;
pub mod partitioner;
mod producer;
mod record;
mod sender;

pub use config::{Acks, Compression, ProducerConfig};
pub use delivery::{BatchAck, Callback, Delivery, DeliveryReport, RecordMetadata};
pub use error::{kafka_error_name, ConfigError, ProduceError};
pub use owner::{Owner, OwnerOptions};
pub use producer::{Producer, ProducerStats};
pub use record::{Header, Record};
