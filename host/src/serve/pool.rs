//! A pool of instances of one tenant's plugin.
//!
//! Owns the instances of one plugin (at most the tenant's `max_instances`): an event is handed
//! to a free instance, started from the pooling allocator and `init`ed when none is idle; an
//! instance that trapped or overran its wall time is dropped and replaced by the next lease.
//! A dropped instance's records stay queued in the producer and are delivered. It must not
//! read HTTP requests or parse events (see `http`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wafka_producer::Producer;

use crate::runtime::plugin::{Plugin, PluginError, PluginInstance};
use crate::serve::metrics::PluginMetrics;

/// Why no instance could be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    /// Every instance stayed busy for the wait given.
    #[error("all {0} instances of the plugin are busy")]
    Busy(usize),
    /// A new instance could not start, or its `init` failed.
    #[error("{0}")]
    Start(PluginError),
}

/// The instances of one plugin of one tenant.
pub struct PluginPool {
    plugin: Plugin,
    config: Vec<(String, String)>,
    producer: Producer,
    idle: Mutex<Vec<PluginInstance>>,
    slots: Arc<Semaphore>,
    max: usize,
    live: AtomicUsize,
    /// Instances alive in every pool of the host (the engine's pool is shared by all).
    host_live: Arc<AtomicUsize>,
    /// Set once the pool is finishing (a drain, or a reload retired it): until when an
    /// instance that comes back from a request may still finish.
    finishing_until: Mutex<Option<tokio::time::Instant>>,
    pub(crate) metrics: PluginMetrics,
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
    /// through `producer`.
    pub fn new(
        plugin: Plugin,
        config: Vec<(String, String)>,
        producer: Producer,
        max: usize,
        metrics: PluginMetrics,
        host_live: Arc<AtomicUsize>,
    ) -> Arc<PluginPool> {
        Arc::new(PluginPool {
            plugin,
            config,
            producer,
            idle: Mutex::new(Vec::new()),
            slots: Arc::new(Semaphore::new(max.max(1))),
            max: max.max(1),
            live: AtomicUsize::new(0),
            host_live,
            finishing_until: Mutex::new(None),
            metrics,
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

    /// A free instance, waiting at most `wait` for one (then [`LeaseError::Busy`]).
    pub async fn lease(self: &Arc<Self>, wait: Duration) -> Result<Lease, LeaseError> {
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => tokio::time::timeout(wait, self.slots.clone().acquire_owned())
                .await
                .map_err(|_| LeaseError::Busy(self.max))?
                .map_err(|_| LeaseError::Busy(self.max))?,
        };
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let instance = match idle {
            Some(i) => i,
            None => {
                let mut i = self
                    .plugin
                    .instantiate(&self.producer)
                    .await
                    .map_err(LeaseError::Start)?;
                self.count(1);
                // Un-counted again if `init` fails or the request goes away meanwhile.
                let uncount = Uncount(self);
                let started = i.init(&self.config).await;
                if let Err(e) = started {
                    return Err(LeaseError::Start(e));
                }
                std::mem::forget(uncount);
                i
            }
        };
        Ok(Lease {
            pool: self.clone(),
            instance: Some(instance),
            _permit: permit,
        })
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
        self.live.fetch_sub(n, Ordering::Relaxed);
        self.host_live.fetch_sub(n, Ordering::Relaxed);
    }
}

/// An instance lent to one request; back to the pool when dropped, unless it was stopped.
pub struct Lease {
    pool: Arc<PluginPool>,
    instance: Option<PluginInstance>,
    _permit: OwnedSemaphorePermit,
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
        if let Some(i) = self.instance.take() {
            if i.is_stopped() {
                self.pool.uncount(1);
            } else if let Some(i) = self.pool.finish_returned(i) {
                self.pool
                    .idle
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(i);
            }
        }
    }
}

impl PluginPool {
    /// Lets every idle instance finish its work (the plugin's `finish`, within its limits:
    /// flush, drain its last reports), all at once and within `within`, and drops it; for a
    /// drain, or a pool a reload retired. Instances leased now are not waited for: each
    /// finishes when its request gives it back, if that is within `within` (else it is dropped
    /// with the pool). Returns how many idle ones finished without an error.
    pub async fn finish_idle(self: &Arc<Self>, within: Duration) -> usize {
        // Instances leased now finish when they come back, within the same time.
        *self
            .finishing_until
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(tokio::time::Instant::now() + within);
        let idle: Vec<PluginInstance> =
            std::mem::take(&mut *self.idle.lock().unwrap_or_else(|e| e.into_inner()));
        let mut finishing = tokio::task::JoinSet::new();
        for mut instance in idle {
            // The instance holds its pool slot until it is dropped, whichever way this ends.
            let counted = Counted(self.clone());
            finishing.spawn(async move {
                let r = instance.finish().await;
                drop(instance);
                drop(counted);
                r.map_err(|e| tracing::warn!("{e}")).is_ok()
            });
        }
        let all = async {
            let mut finished = 0;
            while let Some(r) = finishing.join_next().await {
                finished += usize::from(matches!(r, Ok(true)));
            }
            finished
        };
        // Past `within`, the unfinished ones are dropped (the set aborts them).
        tokio::time::timeout(within, all).await.unwrap_or(0)
    }
}

impl PluginPool {
    /// For an instance a request gives back: `Some` to keep it idle, or `None` when the pool
    /// is finishing, in which case it finishes on its own task (within what is left of the
    /// pool's time) and is dropped.
    fn finish_returned(self: &Arc<Self>, mut instance: PluginInstance) -> Option<PluginInstance> {
        let until = *self
            .finishing_until
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let (Some(until), Ok(runtime)) = (until, tokio::runtime::Handle::try_current()) else {
            return Some(instance);
        };
        let counted = Counted(self.clone());
        runtime.spawn(async move {
            // Past the pool's time the instance is dropped unfinished, as an idle one is.
            if let Ok(Err(e)) = tokio::time::timeout_at(until, instance.finish()).await {
                tracing::warn!("{e}");
            }
            drop(instance);
            drop(counted);
        });
        None
    }
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
        let n = self.idle.get_mut().map(|v| v.len()).unwrap_or(0);
        self.uncount(n);
    }
}
