//! Tenants: who may publish, what each may use, and their plugins' instance pools.
//!
//! Owns [`Tenants`] (the set in effect, built from a [`ServeConfig`], reusing the tenants a
//! reload did not change), [`Tenant`] (token, limits, rate quotas, share of `buffer.memory`,
//! output rate, start rate, plugin pools) and [`TenantGate`], which the runtime asks before and tells after every
//! publish of a tenant's plugin (quotas, metrics). A plugin file is compiled once however many
//! tenants use it. It must not read HTTP requests (see `http`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::Digest;
use subtle::ConstantTimeEq;
use wafka_producer::MemoryShare;

use crate::serve::producers::Producers;

use crate::runtime::acl::TopicAcl;
use crate::runtime::engine::Engine;
use crate::runtime::gate::{PublishGate, Published};
use crate::runtime::limits::{CpuGroup, Limits};
use crate::runtime::options::PluginOptions;
use crate::runtime::output::OutputRate;
use crate::runtime::plugin::Plugin;
use crate::serve::config::{ConfigError, ServeConfig, TenantConfig};
use crate::serve::metrics::{Metrics, PluginMetrics};
use crate::serve::pool::{PluginPool, Starts};
use crate::serve::quota::{StartRate, Throttle};

/// One tenant in effect.
#[derive(Debug)]
pub struct Tenant {
    /// Its name.
    pub name: String,
    /// Its configuration, as read (a reload compares it).
    pub config: TenantConfig,
    /// Its rate quotas.
    pub throttle: Arc<Throttle>,
    /// Its share of `buffer.memory`, counted over all its instances.
    pub share: MemoryShare,
    /// Its plugins.
    pub plugins: BTreeMap<String, Arc<PluginPool>>,
    /// Its requests in progress (see `TenantConfig::max_requests`).
    pub requests: Arc<tokio::sync::Semaphore>,
    /// The most requests it may have in progress.
    pub max_requests: usize,
    /// The CPU group of all its instances.
    pub cpu_group: Option<Arc<CpuGroup>>,
    /// The byte rate of all its plugins' stdout and stderr.
    pub output_rate: Arc<OutputRate>,
    /// How many instances its plugins may start.
    pub start_rate: Arc<StartRate>,
}

impl Tenant {
    /// Whether `token_sha256` is this tenant's (constant time).
    pub fn owns(&self, token_sha256: &[u8; 32]) -> bool {
        self.config.token_sha256.ct_eq(token_sha256).into()
    }
}

/// Checks a tenant's rate quotas before and counts after each publish of one of its plugins.
#[derive(Debug)]
pub struct TenantGate {
    tenant: String,
    throttle: Arc<Throttle>,
    metrics: PluginMetrics,
}

impl PublishGate for TenantGate {
    fn admit(&self) -> Result<(), String> {
        if !self.throttle.is_limited() {
            return Ok(());
        }
        let left = self.throttle.remaining(Instant::now());
        if left.is_zero() {
            Ok(())
        } else {
            Err(format!(
                "tenant `{}` is over its quota ({}): throttled for {} ms more",
                self.tenant,
                self.throttle.describe(),
                left.as_millis().max(1)
            ))
        }
    }

    fn published(&self, outcome: &Published) {
        self.metrics
            .publish_seconds
            .observe(outcome.elapsed.as_secs_f64());
        if let Some(bytes) = outcome.bytes {
            self.metrics.records.inc();
            self.metrics.bytes.inc_by(bytes);
            if self.throttle.is_limited() {
                self.throttle.record(bytes, Instant::now());
            }
        }
        if let Some(kind) = outcome.refused {
            self.metrics.error(kind);
        }
    }
}

/// The tenants in effect: swapped whole by a reload.
#[derive(Debug, Default)]
pub struct Tenants {
    by_name: BTreeMap<String, Arc<Tenant>>,
    /// Token hash to tenant name, to tell a wrong token (401) from another tenant's (403).
    by_token: HashMap<[u8; 32], String>,
    /// Shares of tenants carried over from the previous set, with their new sizes: applied
    /// when this set takes over ([`Tenants::took_over`]), not before.
    resizes: Vec<(MemoryShare, usize)>,
}

impl Tenants {
    /// This set is the one in effect now: carried-over shares take their new sizes.
    pub fn took_over(&mut self) {
        for (share, bytes) in self.resizes.drain(..) {
            share.set_limit(bytes);
        }
    }

    /// The pools this set keeps from `previous` (same `Arc`).
    pub fn kept_pools<'a>(
        &'a self,
        previous: &'a Tenants,
    ) -> impl Iterator<Item = &'a Arc<PluginPool>> {
        previous.iter().flat_map(move |old| {
            let kept = self.get(&old.name).is_some_and(|t| Arc::ptr_eq(t, old));
            old.plugins.values().filter(move |_| kept)
        })
    }

    /// The tenant called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Tenant>> {
        self.by_name.get(name)
    }

    /// The tenant whose token hashes to `token_sha256`, if any.
    pub fn by_token(&self, token_sha256: &[u8; 32]) -> Option<&str> {
        self.by_token.get(token_sha256).map(String::as_str)
    }

    /// Every tenant.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Tenant>> {
        self.by_name.values()
    }

    /// Every instance pool, for instance limits: `max_instances` over all plugins.
    pub fn instance_slots(config: &ServeConfig) -> usize {
        config
            .tenants
            .values()
            .map(|t| t.max_instances * t.plugins.len())
            .sum()
    }

    /// The tenants `config` describes. A tenant whose configuration (plugin files included) is
    /// the same in `previous` is kept as it is, instances and quotas included; the others get
    /// new pools. Plugins are compiled (or read from the compile cache) once per file.
    pub fn build(
        config: &ServeConfig,
        engine: &Engine,
        producers: &Producers,
        metrics: &Metrics,
        previous: Option<&Tenants>,
        host_live: &Arc<std::sync::atomic::AtomicUsize>,
    ) -> Result<Tenants, ConfigError> {
        let file = config.file.display().to_string();
        // Every tenant's share of buffer.memory in bytes, checked to fit (before anything is
        // compiled or started).
        let shares = config.buffer_shares(producers.host().config())?;
        let mut compiled: HashMap<[u8; 32], Plugin> = HashMap::new();
        let mut out = Tenants::default();
        let mut resized = Vec::new();
        for (name, t) in &config.tenants {
            out.by_token.insert(t.token_sha256, name.clone());
            if let Some(old) = previous.and_then(|p| p.by_name.get(name)) {
                if old.config == *t {
                    // Kept as it is; its share (an equal part: the number of tenants may have
                    // changed) is resized in place once the whole config loaded.
                    resized.push((old.share.clone(), shares[name]));
                    out.by_name.insert(name.clone(), old.clone());
                    continue;
                }
            }
            let share_bytes = shares[name];
            let old = previous.and_then(|p| p.by_name.get(name));
            // A changed tenant keeps its quota's measurements where its quotas did not change,
            // and its memory share (its old instances' records still count on it), resized.
            let share = match old {
                Some(o) => {
                    resized.push((o.share.clone(), share_bytes));
                    o.share.clone()
                }
                None => MemoryShare::new(format!("tenant {name}"), share_bytes),
            };
            let throttle = match old {
                Some(o)
                    if (o.config.producer_byte_rate, o.config.producer_record_rate)
                        == (t.producer_byte_rate, t.producer_record_rate) =>
                {
                    o.throttle.clone()
                }
                _ => {
                    let new = Throttle::new(t.producer_byte_rate, t.producer_record_rate);
                    // The throttle time so far stays with the tenant (a counter never goes
                    // down).
                    if let Some(o) = old {
                        new.carry_throttled(&o.throttle);
                    }
                    Arc::new(new)
                }
            };
            // All of a tenant's instances, every plugin, share one instance's worth of CPU.
            let cpu_group = old.and_then(|o| o.cpu_group.clone()).unwrap_or_default();
            // Its output and start rates, kept where they did not change (a reload does not
            // give a flooding tenant a new burst).
            let limit_metrics = metrics.tenant_limits(name);
            let output_rate = match old {
                Some(o)
                    if (
                        o.config.output_bytes_per_second,
                        o.config.output_burst_bytes,
                    ) == (t.output_bytes_per_second, t.output_burst_bytes) =>
                {
                    o.output_rate.clone()
                }
                _ => Arc::new(OutputRate::new(
                    format!("tenant `{name}`"),
                    t.output_bytes_per_second,
                    t.output_burst_bytes,
                    Arc::new(limit_metrics.clone()),
                )),
            };
            let start_rate = match old {
                Some(o)
                    if (
                        o.config.instance_starts_per_second,
                        o.config.instance_start_burst,
                    ) == (t.instance_starts_per_second, t.instance_start_burst) =>
                {
                    o.start_rate.clone()
                }
                _ => Arc::new(StartRate::new(
                    t.instance_starts_per_second,
                    t.instance_start_burst,
                )),
            };
            let starts = Starts {
                tenant: name.clone(),
                rate: start_rate.clone(),
                metrics: limit_metrics,
            };
            // Its identity's producer core (the host's when it has none of its own).
            let producer =
                producers
                    .for_identity(&t.kafka)
                    .map_err(|message| ConfigError::Invalid {
                        file: file.clone(),
                        key: format!("tenants.{name}.kafka"),
                        message,
                    })?;
            let mut plugins = BTreeMap::new();
            for (pname, p) in &t.plugins {
                // Counted as its records settle (delivered, failed by kind).
                let deliveries = metrics.deliveries(name, pname);
                let metrics = metrics.plugin(name, pname);
                let mut options = PluginOptions::new(format!("{name}/{pname}"));
                options.autoflush = t.autoflush;
                options.acl = TopicAcl::new(&t.topics);
                options.max_topics = t.max_topics;
                options.max_record_bytes = t.max_record_bytes;
                options.memory_share = Some(share.clone());
                options.cpu_group = Some(cpu_group.clone());
                options.output_rate = Some(output_rate.clone());
                options.limits = Limits {
                    memory_bytes: t.max_memory_mb << 20,
                    cpu_time: Duration::from_millis(t.max_cpu_ms),
                    call_time: Duration::from_millis(t.max_call_ms),
                };
                options.outcomes = Some(deliveries);
                options.gate = Some(Arc::new(TenantGate {
                    tenant: name.clone(),
                    throttle: throttle.clone(),
                    metrics: metrics.clone(),
                }));
                let plugin = match compiled.get(&p.file_sha256) {
                    Some(c) => c.with_options(options),
                    None => {
                        let bytes = std::fs::read(&p.path).map_err(|e| ConfigError::Invalid {
                            file: file.clone(),
                            key: format!("tenants.{name}.plugins.{pname}.path"),
                            message: format!("cannot read {}: {e}", p.path.display()),
                        })?;
                        // What is compiled is what the config's fingerprint says, or nothing.
                        let sha: [u8; 32] = sha2::Sha256::digest(&bytes).into();
                        if sha != p.file_sha256 {
                            return Err(ConfigError::Invalid {
                                file: file.clone(),
                                key: format!("tenants.{name}.plugins.{pname}.path"),
                                message: format!(
                                    "{} changed while it was being loaded: load again",
                                    p.path.display()
                                ),
                            });
                        }
                        let plugin =
                            engine
                                .load(&bytes, options)
                                .map_err(|e| ConfigError::Invalid {
                                    file: file.clone(),
                                    key: format!("tenants.{name}.plugins.{pname}.path"),
                                    message: e.to_string(),
                                })?;
                        compiled.insert(p.file_sha256, plugin.with_options(PluginOptions::new("")));
                        plugin
                    }
                };
                plugins.insert(
                    pname.clone(),
                    PluginPool::new(
                        plugin,
                        p.config.clone(),
                        producer.clone(),
                        t.max_instances,
                        metrics,
                        host_live.clone(),
                        starts.clone(),
                    ),
                );
            }
            out.by_name.insert(
                name.clone(),
                Arc::new(Tenant {
                    name: name.clone(),
                    config: t.clone(),
                    throttle,
                    share,
                    plugins,
                    requests: Arc::new(tokio::sync::Semaphore::new(t.max_requests)),
                    cpu_group: Some(cpu_group),
                    max_requests: t.max_requests,
                    output_rate,
                    start_rate,
                }),
            );
        }
        out.resizes = resized;
        Ok(out)
    }
}
