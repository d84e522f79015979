//! wafka's own Kafka producer: tokio + bytes, the wire format through `kafka-protocol`.
//!
//! Records flow one way: the caller's bytes → [`Record`] → a batch in the accumulator (copied
//! once) → the sink of the partition's leader (one task per broker), which writes a Produce
//! request pointing at the batch bytes → the broker. Every record ends in exactly one result,
//! reached through its [`Delivery`], a callback, or its [`Owner`]'s delivery reports.
//!
//! Modules, leaves first: `record`, `config`, `error`, `batch` (v2 bytes, codecs), `delivery`
//! (outcomes), `ledger` (what settles a batch), `partitioner`, `idempotence` (producer id,
//! epochs, sequences), `connection` and `control` (sockets), `metadata`, `accumulator` (queues,
//! linger, memory, ready lists), `request` (Produce wire layout), `outbox` (a sink's requests
//! not written yet, their batches compressed beside it), `sink` (one per broker), `security`
//! (SASL exchanges), `routing` (partitions to sinks), `core` (send path, flush, close,
//! housekeeping), `owner` and `producer` (the public handles).
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
pub mod config;
mod connection;
mod control;
mod core;
mod delivery;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod idempotence;
mod ledger;
mod metadata;
mod outbox;
mod owner;
pub mod partitioner;
mod producer;
mod record;
mod request;
mod routing;
pub mod security;
mod sink;

pub use crate::core::{check_topic_name, ProducerStats};
pub use config::{Acks, Compression, ProducerConfig};
pub use delivery::{BatchAck, Callback, Delivery, DeliveryReport, RecordMetadata};
pub use error::{kafka_error_name, ConfigError, ProduceError};
pub use owner::{MemoryShare, Outcomes, Owner, OwnerOptions, MAX_REPORTS};
pub use producer::Producer;
pub use record::{Header, Record};
