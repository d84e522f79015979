//! What `wafka serve` counts, in Prometheus' text format (through the `prometheus-client`
//! library).
//!
//! Owns the registry and its families: per tenant and plugin, events, records, bytes, errors
//! by kind, traps, instances, publish and event latency, records delivered and failed (by
//! kind, told by the producer as they settle: [`Deliveries`]); per tenant, throttled time,
//! buffered bytes, answers by code and request latency; HTTP answers, refused connections and
//! reloads by outcome; the producer's own counters; the tasks alive on the host's runtime.
//! Labels are bounded: tenant and plugin names from the config, codes, kinds and outcomes
//! from fixed lists — never a topic, a request id or a name from a URL.
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
    requests: Family<Vec<(String, String)>, Counter>,
    refused: Family<Vec<(String, String)>, Counter>,
    outcomes: TenantOutcomes,
    /// A tenant's plugin output and instance starts (the block at the end).
    limits: TenantLimitFamilies,
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
        // The host's own log lines a stuck or slow stderr made the log writer drop (process
        // wide: the writer is the process's).
        let dropped = ConstCounter::new(crate::runtime::log_writer::host_lines_dropped() as u64);
        dropped.encode(encoder.encode_descriptor(
            "wafka_log_lines_dropped",
            "The host's own log lines (access lines, warnings) dropped because the log could not keep up",
            None,
            dropped.metric_type(),
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
            requests: Family::default(),
            refused: Family::default(),
            outcomes: TenantOutcomes::default(),
            limits: TenantLimitFamilies::default(),
            registry: Registry::default(),
        };
        m.limits.register(&mut registry);
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
        m.outcomes.register(&mut registry);
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
        self.outcomes.throttled.clear();
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

    /// Sets a tenant's buffered bytes and throttle time so far (a counter: the time only
    /// grows, a tenant's quota carried across reloads).
    pub fn set_tenant(&self, tenant: &str, buffered: usize, throttled: std::time::Duration) {
        let labels = TenantLabels {
            tenant: tenant.to_string(),
        };
        self.buffered.get_or_create(&labels).set(buffered as i64);
        self.outcomes.throttled.set(tenant, throttled.as_secs_f64());
    }

    /// Everything, in Prometheus' text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

// ---- Every tenant's outcome (issue 19 item 9): records delivered and failed, answers and
// their latency per tenant, reloads, throttle time as a counter. Kept apart from the families
// above so that each can grow on its own.

/// What a record queued can end with, as counted in
/// `wafka_tenant_records_failed_total{kind}`: the contract's `produce-error` cases a delivery
/// can fail with, and `other`.
pub const DELIVERY_FAILURE_KINDS: [&str; 8] = [
    "timed-out",
    "broker",
    "not-authorized",
    "invalid-topic",
    "record-too-large",
    "buffer-full",
    "closed",
    "other",
];

/// The kind a failed delivery is counted as (an index into [`DELIVERY_FAILURE_KINDS`]): the
/// case the plugin's own reports would carry (see `runtime::publish::guest_error`), without
/// building its message.
fn delivery_failure_kind(e: &wafka_producer::ProduceError) -> usize {
    use wafka_producer::ProduceError as E;
    match e {
        E::MetadataTimeout { .. } | E::DeliveryTimeout { .. } | E::FlushTimeout { .. } => 0,
        E::Broker { code: 29, .. } => 2,
        E::Broker { .. } | E::Refused { .. } | E::Fatal(_) => 1,
        E::UnknownTopic(_)
        | E::InvalidTopic { .. }
        | E::InvalidPartition { .. }
        | E::BadMetadata { .. } => 3,
        E::RecordTooLarge { .. } => 4,
        E::BufferExhausted { .. } => 5,
        E::Closed => 6,
        _ => 7,
    }
}

/// One plugin's delivery counters (`wafka_tenant_records_delivered_total`,
/// `wafka_tenant_records_failed_total{kind}`), made when its tenant is built and told by the
/// producer as each batch settles, a count at a time: nothing is allocated or looked up per
/// record.
#[derive(Debug)]
pub struct Deliveries {
    delivered: Counter,
    failed: [Counter; DELIVERY_FAILURE_KINDS.len()],
}

impl wafka_producer::Outcomes for Deliveries {
    fn delivered(&self, n: u64) {
        self.delivered.inc_by(n);
    }

    fn failed(&self, n: u64, error: &wafka_producer::ProduceError) {
        self.failed[delivery_failure_kind(error)].inc_by(n);
    }
}

/// Labels of a tenant's answers.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AnswerLabels {
    tenant: String,
    code: String,
}

/// Labels of a reload's outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    outcome: String,
}

fn request_histogram() -> Histogram {
    // 100 µs to ~100 s.
    Histogram::new(exponential_buckets(1e-4, 4.0, 11))
}

/// Each tenant's throttle time so far, as set when scraped, encoded as a counter.
#[derive(Debug, Clone, Default)]
struct Throttled(Arc<std::sync::Mutex<std::collections::BTreeMap<String, f64>>>);

impl Throttled {
    fn clear(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    fn set(&self, tenant: &str, seconds: f64) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(tenant.to_string(), seconds);
    }
}

impl Collector for Throttled {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let all = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut family = encoder.encode_descriptor(
            "wafka_tenant_throttled_seconds",
            "Throttle time imposed by the tenant's rate quotas, in all",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (tenant, seconds) in all {
            let labels = TenantLabels { tenant };
            ConstCounter::new(seconds).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// The families of every tenant's outcome.
#[derive(Debug)]
struct TenantOutcomes {
    delivered: Family<PluginLabels, Counter>,
    failed: Family<ErrorLabels, Counter>,
    answers: Family<AnswerLabels, Counter>,
    request_seconds: Family<TenantLabels, Histogram, fn() -> Histogram>,
    reloads: Family<ReloadLabels, Counter>,
    throttled: Throttled,
}

impl Default for TenantOutcomes {
    fn default() -> Self {
        TenantOutcomes {
            delivered: Family::default(),
            failed: Family::default(),
            answers: Family::default(),
            request_seconds: Family::new_with_constructor(request_histogram),
            reloads: Family::default(),
            throttled: Throttled::default(),
        }
    }
}

impl TenantOutcomes {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "wafka_tenant_records_delivered",
            "Records the broker acknowledged",
            self.delivered.clone(),
        );
        registry.register(
            "wafka_tenant_records_failed",
            "Records queued that failed afterwards, by kind (timed-out, broker, not-authorized, invalid-topic, record-too-large, buffer-full, closed, other)",
            self.failed.clone(),
        );
        registry.register(
            "wafka_tenant_requests",
            "Answers to the tenant's authenticated requests, by status",
            self.answers.clone(),
        );
        registry.register(
            "wafka_tenant_request_seconds",
            "Time from a tenant's request to its answer",
            self.request_seconds.clone(),
        );
        registry.register(
            "wafka_reloads",
            "Reloads by outcome (applied, refused, draining)",
            self.reloads.clone(),
        );
        registry.register_collector(Box::new(self.throttled.clone()));
    }
}

impl Metrics {
    /// The delivery counters of one plugin of one tenant, for its instances' producer owners.
    pub fn deliveries(&self, tenant: &str, plugin: &str) -> Arc<Deliveries> {
        let o = &self.outcomes;
        Arc::new(Deliveries {
            delivered: o.delivered.get_or_create_owned(&PluginLabels {
                tenant: tenant.to_string(),
                plugin: plugin.to_string(),
            }),
            failed: DELIVERY_FAILURE_KINDS.map(|kind| {
                o.failed.get_or_create_owned(&ErrorLabels {
                    tenant: tenant.to_string(),
                    plugin: plugin.to_string(),
                    kind: kind.to_string(),
                })
            }),
        })
    }

    /// Counts an answer to one of `tenant`'s requests (authenticated as it: the name is the
    /// config's), and how long it took.
    pub fn tenant_answered(&self, tenant: &str, status: u16, took: std::time::Duration) {
        let o = &self.outcomes;
        o.answers
            .get_or_create(&AnswerLabels {
                tenant: tenant.to_string(),
                code: status.to_string(),
            })
            .inc();
        o.request_seconds
            .get_or_create(&TenantLabels {
                tenant: tenant.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    /// Counts a reload: `applied`, `refused` (the running configuration stays) or `draining`.
    pub fn reloaded(&self, outcome: &str) {
        self.outcomes
            .reloads
            .get_or_create(&ReloadLabels {
                outcome: outcome.to_string(),
            })
            .inc();
    }
}

// A tenant's plugin output and instance starts: its own families, registered with the others.

/// The families of what a tenant's plugins wrote to the log and the instances they started.
#[derive(Debug, Default)]
struct TenantLimitFamilies {
    output_bytes: Family<TenantLabels, Counter>,
    output_dropped: Family<TenantLabels, Counter>,
    starts: Family<TenantLabels, Counter>,
    starts_refused: Family<TenantLabels, Counter>,
}

impl TenantLimitFamilies {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "wafka_tenant_output_bytes",
            "Bytes of its plugins' stdout and stderr written to the host's log",
            self.output_bytes.clone(),
        );
        registry.register(
            "wafka_tenant_output_dropped_bytes",
            "Bytes of its plugins' stdout and stderr dropped: over its output rate, over a call's 1 MiB, or the log's queue full",
            self.output_dropped.clone(),
        );
        registry.register(
            "wafka_tenant_instance_starts",
            "Plugin instances started, those that failed to instantiate or init included (a trap or timeout costs one more)",
            self.starts.clone(),
        );
        registry.register(
            "wafka_tenant_instance_starts_refused",
            "Instance starts refused by its start rate (answered 429)",
            self.starts_refused.clone(),
        );
    }
}

/// The handles a tenant's plugin output and instance starts are counted with.
#[derive(Debug, Clone)]
pub struct TenantLimitMetrics {
    /// Bytes of output written to the log.
    pub output_bytes: Counter,
    /// Bytes of output dropped.
    pub output_dropped_bytes: Counter,
    /// Instances started.
    pub instance_starts: Counter,
    /// Starts refused by the start rate.
    pub instance_starts_refused: Counter,
}

impl Metrics {
    /// The handles of `tenant`'s plugin output and instance starts.
    pub fn tenant_limits(&self, tenant: &str) -> TenantLimitMetrics {
        let labels = TenantLabels {
            tenant: tenant.to_string(),
        };
        let f = &self.limits;
        TenantLimitMetrics {
            output_bytes: f.output_bytes.get_or_create_owned(&labels),
            output_dropped_bytes: f.output_dropped.get_or_create_owned(&labels),
            instance_starts: f.starts.get_or_create_owned(&labels),
            instance_starts_refused: f.starts_refused.get_or_create_owned(&labels),
        }
    }
}

impl crate::runtime::output::OutputCounts for TenantLimitMetrics {
    fn logged(&self, bytes: u64) {
        self.output_bytes.inc_by(bytes);
    }

    fn dropped(&self, bytes: u64) {
        self.output_dropped_bytes.inc_by(bytes);
    }
}
