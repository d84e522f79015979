//! What `wafka serve` counts, in Prometheus' text format (through the `prometheus-client`
//! library).
//!
//! Owns the registry and its families: per tenant and plugin, events, records, bytes, errors
//! by kind, traps, instances, publish and event latency; per tenant, throttled time and
//! buffered bytes; HTTP answers and refused connections; the producer's own counters; the
//! tasks alive on the host's runtime.
//! Counters are handed out as handles ([`PluginMetrics`]) so the hot path never looks a
//! label set up; gauges that mirror state (instances, buffered bytes, throttled time) are set
//! when scraped. It must not decide anything: it only counts.

use std::sync::Arc;

use crate::serve::producers::Producers;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of a plugin's series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabels {
    /// Tenant name.
    pub tenant: String,
    /// Plugin name.
    pub plugin: String,
}

/// Labels of an error count.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    tenant: String,
    plugin: String,
    kind: String,
}

/// Labels of a tenant's series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabels {
    tenant: String,
}

fn latency_histogram() -> Histogram {
    // 10 µs to ~42 s.
    Histogram::new(exponential_buckets(1e-5, 4.0, 12))
}

type HistogramFamily = Family<PluginLabels, Histogram, fn() -> Histogram>;

/// Every metric of a serving host.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    events: Family<PluginLabels, Counter>,
    records: Family<PluginLabels, Counter>,
    bytes: Family<PluginLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    traps: Family<PluginLabels, Counter>,
    publish_seconds: HistogramFamily,
    event_seconds: HistogramFamily,
    instances: Family<PluginLabels, Gauge>,
    buffered: Family<TenantLabels, Gauge>,
    throttled: Family<TenantLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    requests: Family<Vec<(String, String)>, Counter>,
    refused: Family<Vec<(String, String)>, Counter>,
}

/// Every kind of error counted: the contract's `produce-error` cases, then what can happen to
/// an event or an instance.
pub const ERROR_KINDS: [&str; 13] = [
    "not-authorized",
    "invalid-topic",
    "record-too-large",
    "buffer-full",
    "quota-exceeded",
    "timed-out",
    "closed",
    "not-allowed",
    "broker",
    "event-failed",
    "trapped",
    "start-failed",
    "other",
];

/// The handles a plugin's hot path counts with.
#[derive(Debug, Clone)]
pub struct PluginMetrics {
    /// Events handled.
    pub events: Counter,
    /// Records queued.
    pub records: Counter,
    /// Key, value and header bytes queued.
    pub bytes: Counter,
    /// Traps and wall-time overruns.
    pub traps: Counter,
    /// Seconds per `publish` call.
    pub publish_seconds: Histogram,
    /// Seconds per event (`handle` call).
    pub event_seconds: Histogram,
    /// One counter per [`ERROR_KINDS`] entry, made once: counting an error looks nothing up.
    errors: Arc<[Counter; ERROR_KINDS.len()]>,
}

impl PluginMetrics {
    /// Counts an error of `kind` (one of [`ERROR_KINDS`]; anything else counts as `other`).
    pub fn error(&self, kind: &str) {
        let i = ERROR_KINDS
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(ERROR_KINDS.len() - 1);
        self.errors[i].inc();
    }
}

/// The producer cores' counters (added up over the host's and the tenant identities'), read
/// when scraped.
#[derive(Debug)]
struct ProducerCollector(Arc<Producers>);

impl Collector for ProducerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.0.stats();
        for (name, help, v) in [
            (
                "wafka_producer_produce_requests",
                "Produce requests written to brokers",
                s.produce_requests,
            ),
            (
                "wafka_producer_batches_acked",
                "Batches acknowledged",
                s.batches_acked,
            ),
            (
                "wafka_producer_records_acked",
                "Records acknowledged",
                s.records_acked,
            ),
            (
                "wafka_producer_records_failed",
                "Records that failed after being queued",
                s.records_failed,
            ),
            ("wafka_producer_retries", "Batch retries", s.retries),
            (
                "wafka_producer_metadata_requests",
                "Metadata requests sent",
                s.metadata_requests,
            ),
            (
                "wafka_producer_connections",
                "Connections to brokers opened",
                s.connections,
            ),
            (
                "wafka_producer_epoch_bumps",
                "Producer epochs bumped after a sequence gap",
                s.epoch_bumps,
            ),
            (
                "wafka_producer_splits",
                "Batches split after MESSAGE_TOO_LARGE",
                s.splits,
            ),
        ] {
            let c = ConstCounter::new(v);
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        let cores = ConstGauge::new(self.0.all().len() as i64);
        cores.encode(encoder.encode_descriptor(
            "wafka_producer_cores",
            "Producer cores: the host's, and one per distinct tenant identity",
            None,
            cores.metric_type(),
        )?)?;
        // Scraped on the host's runtime (the HTTP handler): its tasks, for soaks to see leaks.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let tasks = ConstGauge::new(runtime.metrics().num_alive_tasks() as i64);
            tasks.encode(encoder.encode_descriptor(
                "wafka_runtime_tasks",
                "Tasks alive on the host's runtime (connections, requests, reloads; not the producer's I/O threads)",
                None,
                tasks.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

impl Metrics {
    /// The families, registered, with the producer cores' counters.
    pub fn new(producers: Arc<Producers>) -> Arc<Metrics> {
        let mut registry = Registry::default();
        let m = Metrics {
            events: Family::default(),
            records: Family::default(),
            bytes: Family::default(),
            errors: Family::default(),
            traps: Family::default(),
            publish_seconds: Family::new_with_constructor(latency_histogram),
            event_seconds: Family::new_with_constructor(latency_histogram),
            instances: Family::default(),
            buffered: Family::default(),
            throttled: Family::default(),
            requests: Family::default(),
            refused: Family::default(),
            registry: Registry::default(),
        };
        registry.register("wafka_tenant_events", "Events handled", m.events.clone());
        registry.register("wafka_tenant_records", "Records queued", m.records.clone());
        registry.register(
            "wafka_tenant_bytes",
            "Key, value and header bytes queued",
            m.bytes.clone(),
        );
        registry.register(
            "wafka_tenant_errors",
            "Errors by kind: refused publishes (produce-error cases), failed events, traps, timeouts, instances that could not start",
            m.errors.clone(),
        );
        registry.register(
            "wafka_tenant_traps",
            "Instances stopped by a trap or their wall-time limit",
            m.traps.clone(),
        );
        registry.register(
            "wafka_tenant_publish_seconds",
            "Time of one publish call",
            m.publish_seconds.clone(),
        );
        registry.register(
            "wafka_tenant_event_seconds",
            "Time of one event (handle call)",
            m.event_seconds.clone(),
        );
        registry.register(
            "wafka_tenant_instances",
            "Plugin instances alive",
            m.instances.clone(),
        );
        registry.register(
            "wafka_tenant_buffered_bytes",
            "Bytes of the tenant's records in the producer's buffers",
            m.buffered.clone(),
        );
        registry.register(
            "wafka_tenant_throttled_seconds",
            "Throttle time imposed by the tenant's rate quotas, in all",
            m.throttled.clone(),
        );
        registry.register(
            "wafka_http_requests",
            "HTTP requests answered, by status",
            m.requests.clone(),
        );
        registry.register(
            "wafka_http_connections_refused",
            "Connections answered 503 and closed as they came, by reason (descriptors, max-connections, per-address, not-authenticated)",
            m.refused.clone(),
        );
        registry.register_collector(Box::new(ProducerCollector(producers)));
        Arc::new(Metrics { registry, ..m })
    }

    /// The handles of one plugin of one tenant.
    pub fn plugin(&self, tenant: &str, plugin: &str) -> PluginMetrics {
        let labels = PluginLabels {
            tenant: tenant.to_string(),
            plugin: plugin.to_string(),
        };
        let errors = ERROR_KINDS.map(|kind| {
            self.errors.get_or_create_owned(&ErrorLabels {
                tenant: tenant.to_string(),
                plugin: plugin.to_string(),
                kind: kind.to_string(),
            })
        });
        PluginMetrics {
            events: self.events.get_or_create_owned(&labels),
            records: self.records.get_or_create_owned(&labels),
            bytes: self.bytes.get_or_create_owned(&labels),
            traps: self.traps.get_or_create_owned(&labels),
            publish_seconds: self.publish_seconds.get_or_create_owned(&labels),
            event_seconds: self.event_seconds.get_or_create_owned(&labels),
            errors: Arc::new(errors),
        }
    }

    /// Counts an HTTP answer.
    pub fn answered(&self, status: u16) {
        self.requests
            .get_or_create(&vec![("code".to_string(), status.to_string())])
            .inc();
    }

    /// Counts a connection refused as it came, for `reason`.
    pub fn connection_refused(&self, reason: &str) {
        self.refused
            .get_or_create(&vec![("reason".to_string(), reason.to_string())])
            .inc();
    }

    /// Forgets the state gauges (before they are set again for a scrape).
    pub fn clear_gauges(&self) {
        self.instances.clear();
        self.buffered.clear();
        self.throttled.clear();
    }

    /// Sets a plugin's live instances.
    pub fn set_instances(&self, tenant: &str, plugin: &str, n: usize) {
        self.instances
            .get_or_create(&PluginLabels {
                tenant: tenant.to_string(),
                plugin: plugin.to_string(),
            })
            .set(n as i64);
    }

    /// Sets a tenant's buffered bytes and throttle time so far.
    pub fn set_tenant(&self, tenant: &str, buffered: usize, throttled: std::time::Duration) {
        let labels = TenantLabels {
            tenant: tenant.to_string(),
        };
        self.buffered.get_or_create(&labels).set(buffered as i64);
        self.throttled
            .get_or_create(&labels)
            .set(throttled.as_secs_f64());
    }

    /// Everything, in Prometheus' text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
