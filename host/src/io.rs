//! The producer's own threads: Kafka I/O apart from plugins.
//!
//! Owns a small tokio runtime on which a host's producers run their tasks (one per broker,
//! metadata, housekeeping), so that plugins running on the host's main runtime — even ones
//! spinning until their CPU limit — never delay a connection's reads and writes, the way the
//! Java producer keeps its Sender thread to itself. It must not run plugins.

use tokio::runtime::{Builder, Runtime};
use wafka_producer::{Producer, ProducerConfig};

/// A runtime for producers' tasks.
pub struct ProducerRuntime {
    runtime: Option<Runtime>,
}

impl ProducerRuntime {
    /// A runtime of `threads` threads named `wafka-io`.
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let runtime = Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("wafka-io")
            .enable_all()
            .build()?;
        Ok(ProducerRuntime {
            runtime: Some(runtime),
        })
    }

    /// A producer whose tasks run here; it can be used from any runtime.
    pub fn producer(&self, config: ProducerConfig) -> Producer {
        let _inside = self.runtime.as_ref().expect("running").enter();
        Producer::new(config)
    }

    /// Something that starts producers on this runtime, from any thread (for
    /// [`crate::serve::Producers`]: cores started as tenants with their own identity come).
    pub fn starter(&self) -> crate::serve::producers::StartProducer {
        let handle = self.runtime.as_ref().expect("running").handle().clone();
        std::sync::Arc::new(move |config| {
            let _inside = handle.enter();
            Producer::new(config)
        })
    }
}

impl Drop for ProducerRuntime {
    /// Stops the threads without waiting for them (dropping a runtime may not block inside
    /// another one): close the producers first.
    fn drop(&mut self) {
        if let Some(r) = self.runtime.take() {
            r.shutdown_background();
        }
    }
}
