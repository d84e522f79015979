//! A pool of instances of one tenant's plugin.
//!
//! Owns the instances of one plugin (at most the tenant's `max_instances`): an event is handed
//! to a free instance, started from the pooling allocator and `init`ed when none is idle once
//! the tenant's start rate allows one more start (waited for within the lease's wait, else
//! [`LeaseError::Throttled`]); an instance that trapped or overran its wall time is dropped
//! and replaced by the next lease. A dropped instance's records stay queued in the producer
//! and are delivered. It must not read HTTP requests or parse events (see `http`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wafka_producer::Producer;

use crate::runtime::plugin::{Plugin, PluginError, PluginInstance};
use crate::serve::metrics::{PluginMetrics, TenantLimitMetrics};
use crate::serve::quota::StartRate;

/// Why no instance could be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    /// Every instance stayed busy for the wait given.
    #[error("all {0} instances of the plugin are busy")]
    Busy(usize),
    /// A new instance could not start, or its `init` failed.
    #[error("{0}")]
    Start(PluginError),
    /// The tenant started instances faster than its start rate: none may start for the time
    /// given.
    #[error("tenant `{tenant}` starts instances faster than its start rate ({rate}): no start for {} ms more", .retry_after.as_millis().max(1))]
    Throttled {
        /// The tenant.
        tenant: String,
        /// Its start rate, as configured.
        rate: String,
        /// Until the next start is allowed.
        retry_after: Duration,
    },
}

/// What a tenant's pools share about starting instances: its start rate, and where starts are
/// counted.
#[derive(Debug, Clone)]
pub struct Starts {
    /// The tenant's name.
    pub tenant: String,
    /// Its start rate.
    pub rate: Arc<StartRate>,
    /// Its counters.
    pub metrics: TenantLimitMetrics,
}

/// The instances of one plugin of one tenant.
pub struct PluginPool {
    plugin: Plugin,
    config: Vec<(String, String)>,
    producer: Producer,
    idle: Mutex<Idle>,
    slots: Arc<Semaphore>,
    max: usize,
    live: AtomicUsize,
    /// Instances alive in every pool of the host (the engine's pool is shared by all).
    host_live: Arc<AtomicUsize>,
    /// Woken when the last live instance is dropped (a finishing pool waits for it).
    emptied: tokio::sync::Notify,
    pub(crate) metrics: PluginMetrics,
    starts: Starts,
}

/// The idle instances, and whether the pool is finishing: one lock, so that an instance a
/// request gives back is either taken by `finish_idle` or finishes on its own, never neither.
#[derive(Default)]
struct Idle {
    instances: Vec<PluginInstance>,
    /// Set once the pool is finishing (a drain, or a reload retired it): until when an
    /// instance that comes back from a request may still finish.
    finishing_until: Option<tokio::time::Instant>,
}

impl std::fmt::Debug for PluginPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginPool")
            .field("plugin", &self.plugin.options().name)
            .field("max", &self.max)
            .finish()
    }
}

impl PluginPool {
    /// A pool of at most `max` instances of `plugin`, each `init`ed with `config`, publishing
    /// through `producer`, started within `starts`.
    pub fn new(
        plugin: Plugin,
        config: Vec<(String, String)>,
        producer: Producer,
        max: usize,
        metrics: PluginMetrics,
        host_live: Arc<AtomicUsize>,
        starts: Starts,
    ) -> Arc<PluginPool> {
        Arc::new(PluginPool {
            plugin,
            config,
            producer,
            idle: Mutex::new(Idle::default()),
            slots: Arc::new(Semaphore::new(max.max(1))),
            max: max.max(1),
            live: AtomicUsize::new(0),
            host_live,
            emptied: tokio::sync::Notify::new(),
            metrics,
            starts,
        })
    }

    /// The plugin.
    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    /// Instances alive (idle or leased).
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Starts one instance ahead of the first event, so that it costs no `init`.
    pub async fn prewarm(self: &Arc<Self>) -> Result<(), LeaseError> {
        let lease = self.lease(Duration::ZERO).await?;
        drop(lease);
        Ok(())
    }

    /// A free instance, waiting at most `wait` for one (then [`LeaseError::Busy`]) and, when
    /// one must start, for the tenant's start rate to allow it within the same `wait` (then
    /// [`LeaseError::Throttled`]): a tenant over its start rate has its requests held, as
    /// Kafka holds a throttled client's answers, not answered at once for it to send again.
    pub async fn lease(self: &Arc<Self>, wait: Duration) -> Result<Lease, LeaseError> {
        let deadline = tokio::time::Instant::now() + wait;
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => tokio::time::timeout(wait, self.slots.clone().acquire_owned())
                .await
                .map_err(|_| LeaseError::Busy(self.max))?
                .map_err(|_| LeaseError::Busy(self.max))?,
        };
        let instance = loop {
            // An instance given back meanwhile serves without a start.
            if let Some(i) = self.idle().instances.pop() {
                break i;
            }
            match self.starts.rate.start(std::time::Instant::now()) {
                Ok(()) => break self.start().await?,
                Err(retry_after) if tokio::time::Instant::now() + retry_after > deadline => {
                    self.starts.metrics.instance_starts_refused.inc();
                    return Err(LeaseError::Throttled {
                        tenant: self.starts.tenant.clone(),
                        rate: self.starts.rate.describe(),
                        retry_after,
                    });
                }
                Err(retry_after) => tokio::time::sleep(retry_after).await,
            }
        };
        Ok(Lease {
            pool: self.clone(),
            instance: Some(instance),
            permit: Some(permit),
        })
    }

    /// Starts and `init`s a new instance (the start rate allowed it), counted.
    async fn start(&self) -> Result<PluginInstance, LeaseError> {
        self.starts.metrics.instance_starts.inc();
        let mut i = self
            .plugin
            .instantiate(&self.producer)
            .await
            .map_err(LeaseError::Start)?;
        self.count(1);
        // Un-counted again if `init` fails or the request goes away meanwhile.
        let uncount = Uncount(self);
        i.init(&self.config).await.map_err(LeaseError::Start)?;
        std::mem::forget(uncount);
        Ok(i)
    }
}

/// Takes one from the live counts when dropped.
struct Uncount<'a>(&'a PluginPool);

impl Drop for Uncount<'_> {
    fn drop(&mut self) {
        self.0.uncount(1);
    }
}

impl PluginPool {
    fn count(&self, n: usize) {
        self.live.fetch_add(n, Ordering::Relaxed);
        self.host_live.fetch_add(n, Ordering::Relaxed);
    }

    fn uncount(&self, n: usize) {
        if self.live.fetch_sub(n, Ordering::AcqRel) == n {
            self.emptied.notify_waiters();
        }
        self.host_live.fetch_sub(n, Ordering::Relaxed);
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Idle> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An instance lent to one request; back to the pool when dropped, unless it was stopped (or
/// the pool is finishing: then it finishes, holding its slot until it is dropped).
pub struct Lease {
    pool: Arc<PluginPool>,
    instance: Option<PluginInstance>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Lease {
    /// The instance.
    pub fn instance(&mut self) -> &mut PluginInstance {
        self.instance.as_mut().expect("leased")
    }

    /// The pool it came from.
    pub fn pool(&self) -> &Arc<PluginPool> {
        &self.pool
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(instance) = self.instance.take() else {
            return;
        };
        if instance.is_stopped() {
            self.pool.uncount(1);
            return;
        }
        let mut idle = self.pool.idle();
        let Some(until) = idle.finishing_until else {
            idle.instances.push(instance);
            return;
        };
        drop(idle);
        let counted = Counted(self.pool.clone());
        let permit = self.permit.take();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) if tokio::time::Instant::now() < until => {
                runtime.spawn(async move {
                    finish(instance, counted, until).await;
                    drop(permit);
                });
            }
            // Too late, or no runtime to finish it on: dropped as the pool drops its idle ones.
            _ => drop((instance, counted, permit)),
        }
    }
}

impl PluginPool {
    /// Lets every instance finish its work (the plugin's `finish`, within its limits: flush,
    /// drain its last reports) and drops it, all at once and within `within`; for a drain, or a
    /// pool a reload retired. The idle ones finish now; the leased ones when their requests give
    /// them back, and this waits for them too (what is not done by then is dropped). Returns
    /// how many idle ones finished without an error.
    pub async fn finish_idle(self: &Arc<Self>, within: Duration) -> usize {
        let until = tokio::time::Instant::now() + within;
        let idle = {
            let mut idle = self.idle();
            let earliest = idle.finishing_until.map_or(until, |u| u.min(until));
            idle.finishing_until = Some(earliest);
            std::mem::take(&mut idle.instances)
        };
        let mut finishing = tokio::task::JoinSet::new();
        for instance in idle {
            finishing.spawn(finish(instance, Counted(self.clone()), until));
        }
        let finished = async {
            let mut finished = 0;
            while let Some(r) = finishing.join_next().await {
                finished += usize::from(matches!(r, Ok(true)));
            }
            finished
        };
        // Past `until`, the unfinished ones are dropped (the set aborts them).
        let finished = tokio::time::timeout_at(until, finished).await.unwrap_or(0);
        // The leased ones finish as their requests give them back: wait for the last.
        let _ = tokio::time::timeout_at(until, self.emptied()).await;
        finished
    }

    /// Returns once no instance of the pool is alive.
    async fn emptied(&self) {
        loop {
            let notified = self.emptied.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.live() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Runs `instance`'s `finish` until `until` at the latest, then drops it (and with `counted`,
/// its place in the pool's count); whether it finished without an error.
async fn finish(
    mut instance: PluginInstance,
    counted: Counted,
    until: tokio::time::Instant,
) -> bool {
    let finished = match tokio::time::timeout_at(until, instance.finish()).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::warn!("{e}");
            false
        }
        // Past the pool's time it is dropped unfinished.
        Err(_) => false,
    };
    drop(instance);
    drop(counted);
    finished
}

/// One instance counted as its pool's (and the host's) until dropped.
struct Counted(Arc<PluginPool>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.uncount(1);
    }
}

impl Drop for PluginPool {
    fn drop(&mut self) {
        // Idle instances go with the pool; their records stay queued in the producer.
        let n = self.idle.get_mut().map(|i| i.instances.len()).unwrap_or(0);
        self.uncount(n);
    }
}
