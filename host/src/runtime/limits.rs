//! What one plugin instance may use: memory and CPU time.
//!
//! Owns the numbers and how they become wasmtime settings (a `StoreLimits` for memory, an epoch
//! deadline for CPU). It must not run plugins.

use std::time::Duration;

use wasmtime::{StoreLimits, StoreLimitsBuilder};

/// How often the engine's epoch advances; CPU limits are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Per-instance limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most linear memory an instance may grow to, in bytes (all its memories together).
    pub memory_bytes: usize,
    /// Most time one call into the plugin (`init`, `handle`, instantiation) may spend running
    /// its own code, counted in epoch ticks while it runs; host calls do not refill it. A
    /// plugin that loops is stopped with a trap. While it runs it yields its thread every tick.
    pub cpu_time: Duration,
    /// Most wall time one call into the plugin may take, host calls and sleeps included. An
    /// instance that overruns it is discarded.
    pub call_time: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 64 << 20,
            cpu_time: Duration::from_secs(5),
            call_time: Duration::from_secs(10),
        }
    }
}

impl Limits {
    pub(crate) fn store_limits(&self) -> StoreLimits {
        StoreLimitsBuilder::new()
            .memory_size(self.memory_bytes)
            .instances(64)
            .tables(64)
            .memories(16)
            .table_elements(1 << 20)
            .trap_on_grow_failure(true)
            .build()
    }

    pub(crate) fn cpu_ticks(&self) -> u64 {
        (self.cpu_time.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
    }
}
