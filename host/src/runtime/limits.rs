//! What one plugin instance may use: memory, tables, CPU time and wall time.
//!
//! Owns the numbers and how they are enforced: [`StoreBudget`], the store's resource limiter,
//! counts every linear memory and every table of an instance against one byte budget (a plugin
//! cannot multiply its limit by declaring more memories or tables), with the bytes of the
//! wasi:messaging messages the host holds for it (a plugin cannot move its data out of its
//! memory into the host's to escape its limit), and the epoch ticks that
//! make up a call's CPU budget. It must not run plugins.

use std::time::Duration;

/// How often the engine's epoch advances; CPU limits are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Host bytes counted per table element: wasmtime keeps a table's elements in host memory, a
/// pointer-sized slot (or two) each.
pub const TABLE_ELEMENT_BYTES: usize = 16;

/// Most linear memories one instance may create (JavaScript components use two, every other
/// toolchain wafka supports one). The pooling allocator holds this many per instance slot, so
/// no instance can take another's share.
pub const MAX_MEMORIES: usize = 2;
/// Most tables one instance may create (every supported toolchain uses two).
pub const MAX_TABLES: usize = 8;
/// Most core instances one plugin instance may create.
pub const MAX_CORE_INSTANCES: usize = 16;

/// Instances that share one instance's worth of CPU when they all spin (a tenant's): each
/// yields its thread once per tick for every call of the group running at that moment, so a
/// group with k calls running gets about what a group with one gets, and a party cannot take
/// more of the host by keeping more instances busy. An instantiation counts as a call (its
/// start functions run under the same epoch callback), so a party starting instances over and
/// over (a plugin that traps on every event) shares the same turns. Cheap to share (`Arc`).
#[derive(Debug, Default)]
pub struct CpuGroup {
    running: std::sync::atomic::AtomicUsize,
}

impl CpuGroup {
    /// A group with nothing running.
    pub fn new() -> std::sync::Arc<CpuGroup> {
        std::sync::Arc::default()
    }

    /// Calls of the group running now.
    pub fn running(&self) -> usize {
        self.running.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn enter(&self) {
        self.running
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn leave(&self) {
        self.running
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Counts one call (or instantiation) running until the guard is dropped.
    pub(crate) fn join(self: &std::sync::Arc<Self>) -> InGroup {
        self.enter();
        InGroup(self.clone())
    }
}

/// One call of a [`CpuGroup`] running; it leaves the group when dropped (also when the future
/// it lives in is dropped midway).
#[derive(Debug)]
pub(crate) struct InGroup(std::sync::Arc<CpuGroup>);

impl Drop for InGroup {
    fn drop(&mut self) {
        self.0.leave();
    }
}

/// Per-instance limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes an instance may hold in linear memory and tables, all of them together
    /// (table elements count [`TABLE_ELEMENT_BYTES`] each).
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
    pub(crate) fn cpu_ticks(&self) -> u64 {
        (self.cpu_time.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
    }
}

/// What an instance holds: its memories and tables, as counted against its limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResourceUse {
    /// Bytes of linear memory, all memories together.
    pub memory_bytes: usize,
    /// Elements of all tables together.
    pub table_elements: usize,
    /// Linear memories created.
    pub memories: usize,
    /// Tables created.
    pub tables: usize,
    /// Bytes of wasi:messaging messages the host holds for the instance (data, metadata,
    /// content-type): counted while the messages live, given back when they are dropped or
    /// sent.
    pub held_bytes: usize,
}

impl ResourceUse {
    /// Bytes counted against [`Limits::memory_bytes`].
    pub fn counted_bytes(&self) -> usize {
        self.memory_bytes
            .saturating_add(self.table_elements.saturating_mul(TABLE_ELEMENT_BYTES))
            .saturating_add(self.held_bytes)
    }
}

/// The store's resource limiter: one budget for every memory and table of the instance.
///
/// wasmtime asks before a memory or table is created (growing from 0) and before it grows;
/// memories and tables never shrink, so what was granted stays counted. Going over the budget
/// traps the plugin (the error says which limit), rather than failing `memory.grow`, so that a
/// plugin cannot probe the host's limit and so that the cause is clear. The numbers of
/// memories, tables and core instances are capped too (wasmtime refuses an instance that
/// would go over: "memory count too high").
#[derive(Debug)]
pub(crate) struct StoreBudget {
    limit: usize,
    used: ResourceUse,
}

impl StoreBudget {
    pub(crate) fn new(limits: &Limits) -> Self {
        StoreBudget {
            limit: limits.memory_bytes,
            used: ResourceUse::default(),
        }
    }

    /// The same use under new limits (what was granted stays granted).
    pub(crate) fn carry(old: &StoreBudget, limits: &Limits) -> Self {
        StoreBudget {
            limit: limits.memory_bytes,
            used: old.used,
        }
    }

    pub(crate) fn used(&self) -> ResourceUse {
        self.used
    }

    /// Counts `bytes` more held by the host for the instance (wasi:messaging messages); the
    /// error that traps the plugin if they would take it over its budget (the calls that
    /// hold bytes cannot fail otherwise: `message`'s constructor and setters).
    pub(crate) fn hold(&mut self, bytes: usize) -> wasmtime::Result<()> {
        if self.used.counted_bytes().saturating_add(bytes) > self.limit {
            return Err(self.over("wasi:messaging messages", bytes));
        }
        self.used.held_bytes += bytes;
        Ok(())
    }

    /// Gives back `bytes` [`StoreBudget::hold`] counted.
    pub(crate) fn release(&mut self, bytes: usize) {
        self.used.held_bytes = self.used.held_bytes.saturating_sub(bytes);
    }

    fn over(&self, what: &str, extra: usize) -> wasmtime::Error {
        wasmtime::Error::new(OverLimit(format!(
            "it tried to grow its {what} beyond its memory limit of {} MiB ({} MiB in use, {} more asked)",
            self.limit >> 20,
            self.used.counted_bytes() >> 20,
            extra.div_ceil(1 << 20),
        )))
    }
}

/// The error that traps a plugin going over its budget (its text is the whole reason).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct OverLimit(pub(crate) String);

impl wasmtime::ResourceLimiter for StoreBudget {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let extra = desired.saturating_sub(current);
        if self.used.counted_bytes().saturating_add(extra) > self.limit {
            return Err(self.over("memory", extra));
        }
        // A new memory grows from 0 (wasmtime checked their number against `memories`).
        self.used.memories += usize::from(current == 0);
        self.used.memory_bytes += extra;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let extra = desired.saturating_sub(current);
        let bytes = extra.saturating_mul(TABLE_ELEMENT_BYTES);
        if self.used.counted_bytes().saturating_add(bytes) > self.limit {
            return Err(self.over("tables", bytes));
        }
        self.used.tables += usize::from(current == 0);
        self.used.table_elements += extra;
        Ok(true)
    }

    // A growth that fails is not taken back: wasmtime also reports failures it never asked
    // about (a memory growing past 4 GiB fails by its type), which cannot be told apart from
    // the failure of the growth just granted. A grant that the system then failed to map
    // stays counted: the budget errs on the safe side.

    fn instances(&self) -> usize {
        MAX_CORE_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

#[cfg(test)]
mod tests {
    use wasmtime::ResourceLimiter;

    use super::*;

    fn budget(mib: usize) -> StoreBudget {
        StoreBudget::new(&Limits {
            memory_bytes: mib << 20,
            ..Limits::default()
        })
    }

    #[test]
    fn every_memory_counts_against_one_budget() {
        let mut b = budget(64);
        assert!(b.memory_growing(0, 40 << 20, None).unwrap());
        // A second memory of 40 MiB would be within a per-memory limit, not within the budget.
        let e = b.memory_growing(0, 40 << 20, None).unwrap_err();
        assert!(e.to_string().contains("limit of 64 MiB"), "{e}");
        assert!(b.memory_growing(40 << 20, 60 << 20, None).unwrap());
        assert_eq!(b.used().memory_bytes, 60 << 20);
        assert_eq!(b.used().memories, 1);
    }

    /// wasmtime reports a growth past 4 GiB as failed without asking first: that must not
    /// take back an earlier grant (a plugin could otherwise grow without limit by alternating
    /// a small growth and an impossible one).
    #[test]
    fn failures_do_not_take_back_grants() {
        let mut b = budget(16);
        let mut size = 0;
        while size < 100 << 20 {
            if b.memory_growing(size, size + (1 << 20), None).is_err() {
                break;
            }
            size += 1 << 20;
            b.memory_grow_failed(wasmtime::format_err!("past 4 GiB"))
                .unwrap();
        }
        assert_eq!(size, 16 << 20, "grew to {} MiB under 16 MiB", size >> 20);
        let mut b = budget(16);
        b.table_growing(0, 1000, None).unwrap();
        b.table_grow_failed(wasmtime::format_err!("too many elements"))
            .unwrap();
        assert_eq!(b.used().table_elements, 1000);
    }

    #[test]
    fn tables_count_in_the_same_budget() {
        let mut b = budget(16);
        assert!(b.memory_growing(0, 15 << 20, None).unwrap());
        assert!(b.table_growing(0, 1000, None).unwrap());
        let e = b.table_growing(1000, 1 << 20, None).unwrap_err();
        assert!(e.to_string().contains("tables"), "{e}");
        assert_eq!(b.used().table_elements, 1000);
    }
}
