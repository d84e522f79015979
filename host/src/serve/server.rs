//! A serving host: the tenants in effect, the HTTP listener, reload and drain.
//!
//! Owns [`Server`] and its shared state: the engine (one for every tenant, with the compile
//! cache and a pool sized from the tenants' instance limits), the producer cores the tenants
//! publish through ([`Producers`]), the tenants (swapped whole by a reload, never edited in place), the
//! metrics, and the draining flag with the count of events in progress. Reloads run one at a
//! time and none swaps tenants in once a drain began. It must not parse
//! requests (see `http`) or know the config file's shape (see `config`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Notify;

use crate::runtime::cache::ComponentCache;
use crate::runtime::engine::{Engine, EngineOptions};
use crate::serve::admission::{Admission, Limits};
use crate::serve::config::{ConfigError, HttpConfig, ServeConfig};
use crate::serve::fds::Budget;
use crate::serve::metrics::Metrics;
use crate::serve::pool::PluginPool;
use crate::serve::producers::Producers;
use crate::serve::tenant::Tenants;

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration (a plugin in it) could not be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// wasmtime could not start.
    #[error("cannot start wasmtime: {0}")]
    Engine(String),
    /// The descriptor limit leaves too few for connections.
    #[error("the descriptor limit (RLIMIT_NOFILE) is {limit}: with {open} open and {reserve} kept for the producer and reloads, {left} are left for connections; raise it (ulimit -n, or LimitNOFILE= under systemd)")]
    Descriptors {
        /// The soft limit, as raised.
        limit: u64,
        /// Descriptors open at start.
        open: usize,
        /// Descriptors kept for the producer and reloads.
        reserve: usize,
        /// What is left.
        left: usize,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: String,
        /// The OS error.
        reason: String,
    },
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The configuration (a plugin in it) could not be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A drain began: it finishes the tenants in effect when it began, so none may take over
    /// after it.
    #[error("the host is draining: the running configuration stays until it exits")]
    Draining,
}

/// What a reload did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Reloaded {
    /// Tenants in effect now.
    pub tenants: usize,
    /// Tenants kept as they were (same configuration and plugin files).
    pub kept: usize,
    /// Tenants new or changed: they got new instances.
    pub started: usize,
    /// Tenants removed.
    pub removed: usize,
    /// What was read but not applied (the producer's and the listener's settings need a
    /// restart).
    pub warnings: Vec<String>,
}

/// What a drain did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drained {
    /// Events still in progress when the bound ran out (0: all finished).
    pub events_cut: usize,
    /// Whether every accepted record was acknowledged or failed within the bound.
    pub flushed: bool,
    /// How long it took.
    pub took: Duration,
}

/// The shared state of a serving host.
pub(crate) struct State {
    pub(crate) file: PathBuf,
    pub(crate) http: RwLock<HttpConfig>,
    kafka: RwLock<std::collections::BTreeMap<String, String>>,
    tenants: RwLock<Arc<Tenants>>,
    engine: Engine,
    pub(crate) producers: Arc<Producers>,
    pub(crate) metrics: Arc<Metrics>,
    draining: AtomicBool,
    in_flight: AtomicUsize,
    idle: Notify,
    reloading: tokio::sync::Mutex<()>,
    /// Instances the engine's pool holds (fixed at start).
    capacity: usize,
    /// Instances alive in every pool, retired ones included.
    host_live: Arc<AtomicUsize>,
    /// Pools a reload retired whose instances may still be finishing: a drain waits for them
    /// as for the pools in effect.
    retired: std::sync::Mutex<Vec<Arc<crate::serve::pool::PluginPool>>>,
}

impl State {
    /// The tenants in effect (a snapshot: a reload does not change it).
    pub(crate) fn tenants(&self) -> Arc<Tenants> {
        self.tenants
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Counts an event batch in progress until the guard is dropped; `None` while draining.
    pub(crate) fn begin(self: &Arc<Self>) -> Option<InFlight> {
        // SeqCst with the drain's store-then-load: either the drain sees this request, or this
        // request sees the drain.
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        if self.draining.load(Ordering::SeqCst) {
            self.end();
            return None;
        }
        Some(InFlight(self.clone()))
    }

    fn end(&self) {
        if self.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }

    /// Re-reads the configuration file and the plugin files; the tenants it describes take
    /// over. On an error, nothing changes; once a drain began, every reload is refused (one
    /// that was under way when it began included).
    pub(crate) async fn reload(self: &Arc<Self>) -> Result<Reloaded, ReloadError> {
        let _one = self.reloading.lock().await;
        if self.is_draining() {
            self.metrics.reloaded("draining");
            return Err(ReloadError::Draining);
        }
        let result = self.reload_locked().await;
        if result.is_err() {
            // Producer cores the failed reload started for new identities close again.
            self.retire_unused_cores();
        }
        self.metrics.reloaded(match &result {
            Ok(_) => "applied",
            Err(ReloadError::Draining) => "draining",
            Err(_) => "refused",
        });
        result
    }

    async fn reload_locked(self: &Arc<Self>) -> Result<Reloaded, ReloadError> {
        let file = self.file.clone();
        let config = tokio::task::spawn_blocking(move || ServeConfig::load(&file))
            .await
            .map_err(|e| ConfigError::Read {
                file: self.file.display().to_string(),
                reason: e.to_string(),
            })??;
        let previous = self.tenants();
        let state = self.clone();
        let prev = previous.clone();
        let cfg = config.clone();
        let tenants = tokio::task::spawn_blocking(move || {
            Tenants::build(
                &cfg,
                &state.engine,
                &state.producers,
                &state.metrics,
                Some(&prev),
                &state.host_live,
            )
        })
        .await
        .map_err(|e| ConfigError::Read {
            file: self.file.display().to_string(),
            reason: e.to_string(),
        })??;
        let mut tenants = tenants;
        // The engine's pool is shared by every instance of the host, old and new: the new
        // tenants' instances, plus those of pools this reload (or an earlier one) retires
        // that still finish their events, must fit in it.
        let wanted = Tenants::instance_slots(&config);
        let kept_live: usize = tenants.kept_pools(&previous).map(|p| p.live()).sum();
        let retiring = self
            .host_live
            .load(Ordering::Relaxed)
            .saturating_sub(kept_live);
        if wanted + retiring > self.capacity {
            return Err(ReloadError::Config(ConfigError::Invalid {
                file: self.file.display().to_string(),
                key: "tenants.*.max_instances".into(),
                message: format!(
                    "{wanted} instances, next to the {retiring} of replaced tenants still running, exceed this host's pool of {} (sized at start): restart to grow it",
                    self.capacity
                ),
            }));
        }
        // Every plugin the new set starts anew must start: one whose instances cannot (its
        // `init` fails) would answer every event of its tenant with `start-failed`, each
        // paying a fresh instantiation, until the next good reload.
        start_new_pools(&tenants, &previous, &self.file).await?;
        let mut warnings = Vec::new();
        if *self.kafka.read().unwrap_or_else(|e| e.into_inner()) != config.kafka {
            warnings
                .push("[kafka] changed: the producer keeps its settings until a restart".into());
        }
        {
            let http = self.http.read().unwrap_or_else(|e| e.into_inner());
            if http.listen != config.http.listen {
                warnings.push(format!(
                    "http.listen changed: still listening on {} until a restart",
                    http.listen
                ));
            }
            // What the listener was started with stays until a restart.
            let listener = |h: &HttpConfig| {
                (
                    h.header_timeout,
                    h.max_connections,
                    h.max_header_bytes,
                    h.max_connections_per_address,
                    h.authenticated_share,
                )
            };
            let kept = listener(&http);
            if kept != listener(&config.http) {
                warnings.push(
                    "http.header_timeout_ms, max_connections, max_header_bytes, max_connections_per_address and authenticated_share apply after a restart".into(),
                );
            }
        }
        let kept = tenants
            .iter()
            .filter(|t| previous.get(&t.name).is_some_and(|old| Arc::ptr_eq(old, t)))
            .count();
        let removed = previous
            .iter()
            .filter(|t| tenants.get(&t.name).is_none())
            .count();
        let reloaded = Reloaded {
            tenants: config.tenants.len(),
            kept,
            started: config.tenants.len() - kept,
            removed,
            warnings,
        };
        // Swap, resize carried-over shares and retire the pools of replaced and removed
        // tenants, all under the tenants' lock and with nothing awaited: an abandoned reload
        // changes nothing, and a drain (which sets `draining`, then takes this lock once
        // before it looks at the pools) sees either the set before or the set after, with
        // the retired pools listed. After it, no set swaps in: the drain would never finish
        // its instances nor flush what they publish.
        let retiring: Vec<Arc<PluginPool>> = {
            let mut current = self.tenants.write().unwrap_or_else(|e| e.into_inner());
            if self.is_draining() {
                return Err(ReloadError::Draining);
            }
            let kept: Vec<*const PluginPool> =
                tenants.kept_pools(&previous).map(Arc::as_ptr).collect();
            tenants.took_over();
            *current = Arc::new(tenants);
            let gone: Vec<Arc<PluginPool>> = previous
                .iter()
                .flat_map(|t| t.plugins.values())
                .filter(|pool| !kept.contains(&Arc::as_ptr(pool)))
                .cloned()
                .collect();
            let mut retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
            retired.retain(|pool| pool.live() > 0);
            retired.extend(gone.iter().cloned());
            gone
        };
        // The HTTP settings (but those that need a restart) apply from now on.
        {
            let mut http = self.http.write().unwrap_or_else(|e| e.into_inner());
            *http = HttpConfig {
                listen: std::mem::take(&mut http.listen),
                header_timeout: http.header_timeout,
                max_connections: http.max_connections,
                max_header_bytes: http.max_header_bytes,
                max_connections_per_address: http.max_connections_per_address,
                authenticated_share: http.authenticated_share,
                ..config.http.clone()
            };
        }
        // The retired pools' idle instances finish their work (the plugins' `finish`) before
        // they go, within the drain timeout: the cores of removed identities close after it.
        let grace = config.http.drain_timeout;
        for pool in retiring {
            tokio::spawn(async move {
                pool.finish_idle(grace).await;
            });
        }
        // Identities no tenant has any more: their cores close once the replaced tenants'
        // last events had the drain timeout to finish.
        self.retire_unused_cores();
        Ok(reloaded)
    }

    /// Retires the producer cores of identities no tenant in effect has, after the drain
    /// timeout.
    fn retire_unused_cores(&self) {
        let current = self.tenants();
        let grace = self
            .http
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .drain_timeout;
        self.producers
            .retire_unused(current.iter().map(|t| &t.config.kafka), grace);
    }
}

/// An event batch in progress.
pub(crate) struct InFlight(Arc<State>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// Starts one instance of every plugin ahead of its first event (from the pooling
/// allocator, `init` run). At start a plugin whose instance cannot start is logged and tried
/// again on each of its events (its tenant answers 500 `start-failed`; the others are
/// served); for a reload see [`start_new_pools`].
async fn prewarm(tenants: &Tenants) {
    for t in tenants.iter() {
        for (name, pool) in &t.plugins {
            if pool.live() == 0 {
                if let Err(e) = pool.prewarm().await {
                    tracing::warn!(tenant = %t.name, plugin = %name, "cannot start an instance ahead: {e}");
                }
            }
        }
    }
}

/// For a reload: starts one instance of every pool `tenants` has anew (not kept from
/// `previous`), and refuses the set when one cannot start, naming the tenant and plugin with
/// the plugin's own words (the pools built are dropped with the set). Kept pools left with no
/// instance (their last one trapped) are warmed as at start: they are the running
/// configuration's, not the reload's.
async fn start_new_pools(
    tenants: &Tenants,
    previous: &Tenants,
    file: &std::path::Path,
) -> Result<(), ConfigError> {
    let cold: Vec<(&str, &str, &Arc<PluginPool>, bool)> = {
        let kept: Vec<*const PluginPool> = tenants.kept_pools(previous).map(Arc::as_ptr).collect();
        tenants
            .iter()
            .flat_map(|t| t.plugins.iter().map(move |(name, pool)| (t, name, pool)))
            .filter(|(_, _, pool)| pool.live() == 0)
            .map(|(t, name, pool)| {
                let is_kept = kept.contains(&Arc::as_ptr(pool));
                (t.name.as_str(), name.as_str(), pool, is_kept)
            })
            .collect()
    };
    for (tenant, name, pool, kept) in cold {
        match pool.prewarm().await {
            Ok(()) => {}
            Err(e) if kept => {
                tracing::warn!(%tenant, plugin = %name, "cannot start an instance ahead: {e}");
            }
            Err(e) => {
                return Err(ConfigError::Invalid {
                    file: file.display().to_string(),
                    key: format!("tenants.{tenant}.plugins.{name}"),
                    message: format!(
                        "its instances cannot start: {}",
                        crate::runtime::trap::one_line(&e.to_string())
                    ),
                })
            }
        }
    }
    Ok(())
}

/// The descriptors left for connections once the host is up (producer connected, plugins
/// compiled, listening): under the limit in force now (`wafka serve` raised it before), less
/// what is open and the reserve.
fn descriptors(
    listener: &tokio::net::TcpListener,
    max_connections: usize,
) -> Result<Budget, StartError> {
    use std::os::fd::AsRawFd;
    let limit = crate::serve::fds::limit().unwrap_or(crate::serve::fds::NoFile {
        soft: u64::MAX,
        hard: u64::MAX,
        raised_from: None,
    });
    // Without /proc: descriptors are handed out lowest first, so at least those below the
    // listener's are open.
    let open = crate::serve::fds::open_now().unwrap_or(listener.as_raw_fd() as usize + 1);
    Budget::new(limit, open, max_connections).map_err(|b| StartError::Descriptors {
        limit: b.limit.soft,
        open: b.open,
        reserve: b.reserve,
        left: b.connections,
    })
}

/// A serving host: tenants' plugins behind HTTP.
pub struct Server {
    state: Arc<State>,
    addr: SocketAddr,
    descriptors: Budget,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Loads every tenant's plugins, starts one instance of each, and listens.
    /// `producers` carry the tenants' records: the host's core, and one per tenant identity
    /// (start them on a runtime of their own: [`crate::ProducerRuntime`]).
    pub async fn start(
        config: ServeConfig,
        producers: Arc<Producers>,
    ) -> Result<Server, StartError> {
        // Room for every pool twice over: a reload starts new instances while old ones finish.
        let slots = Tenants::instance_slots(&config);
        // (`ServeConfig` refused more than MAX_POOL_SLOTS.)
        let capacity = slots * 2 + 16;
        let engine_options = EngineOptions {
            max_instances: capacity as u32,
        };
        let mut engine =
            Engine::with_options(engine_options).map_err(|e| StartError::Engine(e.to_string()))?;
        match ComponentCache::open_default() {
            Ok(cache) => engine = engine.with_cache(cache),
            Err(e) => tracing::warn!("not using the compile cache: {e}"),
        }
        let metrics = Metrics::new(producers.clone());
        // Compiling blocks this thread: nothing else is being served yet.
        let host_live = Arc::new(AtomicUsize::new(0));
        let tenants = Tenants::build(&config, &engine, &producers, &metrics, None, &host_live)?;
        prewarm(&tenants).await;
        let listener = tokio::net::TcpListener::bind(&config.http.listen)
            .await
            .map_err(|e| StartError::Listen {
                addr: config.http.listen.clone(),
                reason: e.to_string(),
            })?;
        let addr = listener.local_addr().map_err(|e| StartError::Listen {
            addr: config.http.listen.clone(),
            reason: e.to_string(),
        })?;
        let descriptors = descriptors(&listener, config.http.max_connections)?;
        let state = Arc::new(State {
            file: config.file.clone(),
            http: RwLock::new(config.http.clone()),
            kafka: RwLock::new(config.kafka.clone()),
            tenants: RwLock::new(Arc::new(tenants)),
            engine,
            producers,
            metrics,
            draining: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
            reloading: tokio::sync::Mutex::new(()),
            capacity,
            host_live,
            retired: std::sync::Mutex::new(Vec::new()),
        });
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let app = crate::serve::http::router(state.clone());
        let h = &config.http;
        // `http.body_timeout_ms` as last reloaded, read when a write begins to stall.
        let write_timeout: crate::serve::http::WriteBound = {
            let state = state.clone();
            Arc::new(move || {
                state
                    .http
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .body_timeout
            })
        };
        let listening = crate::serve::http::Listening {
            admission: Admission::new(Limits::new(
                &descriptors,
                h.max_connections_per_address,
                h.authenticated_share,
            )),
            metrics: state.metrics.clone(),
            header_timeout: h.header_timeout,
            write_timeout,
            max_header_bytes: h.max_header_bytes,
        };
        let task = tokio::spawn(crate::serve::http::accept(
            listener, app, listening, stopped,
        ));
        Ok(Server {
            state,
            addr,
            descriptors,
            stop,
            task,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The descriptors it started with, and the connections they allow.
    pub fn descriptors(&self) -> Budget {
        self.descriptors
    }

    /// Re-reads the configuration and plugin files (see `POST /v1/admin/reload`).
    pub async fn reload(&self) -> Result<Reloaded, ReloadError> {
        self.state.reload().await
    }

    /// How long a drain may take (`http.drain_timeout_ms`, as last reloaded).
    pub fn drain_timeout(&self) -> Duration {
        self.state
            .http
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .drain_timeout
    }

    /// Whether a drain has begun.
    pub fn is_draining(&self) -> bool {
        self.state.is_draining()
    }

    /// Stops taking events (`/readyz` and new requests answer 503), waits for the events in
    /// progress, stops listening and flushes every tenant's records, all within `timeout`.
    pub async fn drain(self, timeout: Duration) -> Drained {
        let started = Instant::now();
        let deadline = started + timeout;
        let s = &self.state;
        s.draining.store(true, Ordering::SeqCst);
        // A reload swaps tenants under this lock, checking `draining` first: once it was
        // taken here, the set in effect (and the pools retired) are final.
        drop(s.tenants.write().unwrap_or_else(|e| e.into_inner()));
        // Events get three quarters of the bound (each body stops after its current event);
        // flushing the records gets the rest at least.
        let events_deadline = started + timeout * 3 / 4;
        loop {
            let idle = s.idle.notified();
            if s.in_flight.load(Ordering::SeqCst) == 0 {
                break;
            }
            if tokio::time::timeout_at(events_deadline.into(), idle)
                .await
                .is_err()
            {
                break;
            }
        }
        let events_cut = s.in_flight.load(Ordering::SeqCst);
        let _ = self.stop.send(true);
        // Every instance finishes its work (its last flush and reports), in the pools in effect
        // and in those a reload retired, in at most half of what is left; then the records are
        // flushed.
        let half = deadline.saturating_duration_since(Instant::now()) / 2;
        let mut finishing = tokio::task::JoinSet::new();
        let retired = s.retired.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let tenants = s.tenants();
        let current = tenants.iter().flat_map(|t| t.plugins.values());
        for pool in current.chain(retired.iter()) {
            let pool = pool.clone();
            finishing.spawn(async move { pool.finish_idle(half).await });
        }
        let _ = tokio::time::timeout(half, finishing.join_all()).await;
        let left = deadline.saturating_duration_since(Instant::now());
        let flushed = s.producers.flush_timeout(left).await;
        let _ = tokio::time::timeout(Duration::from_secs(1), self.task).await;
        Drained {
            events_cut,
            flushed,
            took: started.elapsed(),
        }
    }
}
