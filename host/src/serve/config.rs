//! The serve configuration file: TOML read into checked, typed settings.
//!
//! Owns the file's shape (`[kafka]`, `[http]`, `[tenants.NAME]` with `[tenants.NAME.kafka]` and
//! `[[tenants.NAME.plugins]]`),
//! its defaults and its checks. Every error is one line naming the file and the key. Unknown
//! keys are errors (a typo must not silently leave a limit at its default). It reads plugin
//! files only to fingerprint them; it must not compile, start or serve anything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::runtime::options::{Autoflush, DEFAULT_MAX_TOPICS};

/// Why a configuration could not be used. Always one line, naming the file and the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {reason}")]
    Read {
        /// The file.
        file: String,
        /// The OS error.
        reason: String,
    },
    /// Not TOML, or not the expected shape (a wrong type, an unknown key).
    #[error("{file}:{line}: {message}")]
    Syntax {
        /// The file.
        file: String,
        /// Line of the error (1-based; 0 when unknown).
        line: usize,
        /// What is wrong, naming the key.
        message: String,
    },
    /// A value that does not make sense.
    #[error("{file}: `{key}`: {message}")]
    Invalid {
        /// The file.
        file: String,
        /// The key, dotted from the top (`tenants.acme.max_memory_mb`).
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// The whole configuration, checked. `Debug` hides secrets (passwords, keys) in `[kafka]`.
#[derive(Clone, PartialEq)]
pub struct ServeConfig {
    /// The file it was read from.
    pub file: PathBuf,
    /// Producer properties by their Java names, as strings.
    pub kafka: BTreeMap<String, String>,
    /// The HTTP side.
    pub http: HttpConfig,
    /// Tenants by name.
    pub tenants: BTreeMap<String, TenantConfig>,
}

impl std::fmt::Debug for ServeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeConfig")
            .field("file", &self.file)
            .field("kafka", &KafkaIdentity(self.kafka.clone()))
            .field("http", &self.http)
            .field("tenants", &self.tenants)
            .finish()
    }
}

/// `[http]`.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    /// Address and port to listen on.
    pub listen: String,
    /// SHA-256 of the admin token (`/metrics`, `/v1/admin/*`); without it those are refused.
    pub admin_token_sha256: Option<[u8; 32]>,
    /// Largest request body taken by default (a tenant may set its own); larger: 413.
    pub max_body_bytes: usize,
    /// How long a drain (SIGTERM) waits for events in progress and for every tenant's records.
    pub drain_timeout: Duration,
    /// How long a client may take to send a request's headers (also: how long an idle
    /// connection stays open); then the connection is closed.
    pub header_timeout: Duration,
    /// How long a client may take to send a request's body; then 408.
    pub body_timeout: Duration,
    /// Connections open at once; more are answered 503 and closed as they come.
    pub max_connections: usize,
    // Before authentication (issue 19): each applies as a connection is accepted or its
    // headers read.
    /// Largest request head (request line and headers), bytes; larger: 431.
    pub max_header_bytes: usize,
    /// Connections open at once from one client address (an IPv6 /64 counts as one).
    pub max_connections_per_address: usize,
    /// The share of `max_connections` kept for clients that have authenticated: connections
    /// from others may hold the rest only.
    pub authenticated_share: f64,
    /// Whether `/readyz` also asks the cluster (503 while no broker answers).
    pub readyz_checks_cluster: bool,
}

/// `[tenants.NAME]`.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantConfig {
    /// SHA-256 of the tenant's bearer token.
    pub token_sha256: [u8; 32],
    /// Topic patterns (`name`, `prefix*`) its plugins may publish to; empty: none (a tenant
    /// with no topics yet), never "every topic".
    pub topics: Vec<String>,
    /// Autoflush policy of its plugins.
    pub autoflush: Autoflush,
    /// Memory of one instance, MiB.
    pub max_memory_mb: usize,
    /// CPU time of one call, ms.
    pub max_cpu_ms: u64,
    /// Wall time of one call, ms.
    pub max_call_ms: u64,
    /// Instances per plugin (events handled at once).
    pub max_instances: usize,
    /// Requests in progress at once, all its plugins together (running or waiting for an
    /// instance); more get 429 before their body is read.
    pub max_requests: usize,
    /// Largest record (key, value, headers), bytes.
    pub max_record_bytes: Option<usize>,
    /// Distinct topics per instance.
    pub max_topics: usize,
    /// Largest request body, bytes.
    pub max_body_bytes: Option<usize>,
    /// Bytes per second over all its plugins (Kafka's `producer_byte_rate`).
    pub producer_byte_rate: Option<u64>,
    /// Records per second over all its plugins.
    pub producer_record_rate: Option<u64>,
    /// Its share of `buffer.memory`, as a fraction; `None`: an equal share (in bytes: see
    /// [`ServeConfig::buffer_shares`]).
    pub buffer_memory_share: Option<f64>,
    /// Bytes per second its plugins' stdout and stderr may put in the host's log, all of them
    /// together (0: none).
    pub output_bytes_per_second: u64,
    /// Bytes of output at once above that rate.
    pub output_burst_bytes: u64,
    /// Instances its plugins may start per second, all of them together (each trap or timeout
    /// costs a start).
    pub instance_starts_per_second: u64,
    /// Starts at once above that rate.
    pub instance_start_burst: u64,
    /// Its own Kafka identity (`[tenants.NAME.kafka]`), over `[kafka]`: empty, it publishes
    /// through the host's producer.
    pub kafka: KafkaIdentity,
    /// Its plugins by name.
    pub plugins: BTreeMap<String, PluginConfig>,
}

/// Producer properties a tenant may set for itself: who it is to the cluster (SASL user,
/// client certificate, `client.id`), so the broker's ACLs and quotas apply to it. Everything
/// else (brokers, trust store, batching) is the host's: tenants with the same identity share
/// one producer core, which cannot differ in anything else.
pub const TENANT_KAFKA_PROPERTIES: &[&str] = &[
    "client.id",
    "security.protocol",
    "sasl.mechanism",
    "sasl.jaas.config",
    "sasl.username",
    "sasl.password",
    "ssl.keystore.type",
    "ssl.keystore.location",
    "ssl.keystore.certificate.chain",
    "ssl.keystore.key",
    "ssl.certificate.location",
    "ssl.key.location",
];

/// A tenant's own producer properties (see [`TENANT_KAFKA_PROPERTIES`]); `Debug` hides the
/// secrets' values.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KafkaIdentity(pub BTreeMap<String, String>);

impl KafkaIdentity {
    /// Whether the tenant uses the host's identity.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The producer config of this identity: `base` (the host's) without its credentials
    /// where this identity has its own (no part of the host's, a password say, is inherited),
    /// with this identity's properties over it, checked. With `check_protocol`, its
    /// credentials must also fit the protocol in force: SASL credentials need SASL, a client
    /// certificate TLS, and under SASL a certificate alone is refused (the broker knows a SASL
    /// client by its user: it would publish as the host's).
    pub fn apply(
        &self,
        base: &wafka_producer::ProducerConfig,
        check_protocol: bool,
    ) -> Result<wafka_producer::ProducerConfig, (String, String)> {
        const SASL_CREDENTIALS: [&str; 3] = ["sasl.jaas.config", "sasl.username", "sasl.password"];
        let sasl = self
            .0
            .keys()
            .any(|k| SASL_CREDENTIALS.contains(&k.as_str()));
        // (`ssl.keystore.type` names no certificate.)
        let certificate = self.0.keys().any(|k| {
            matches!(
                k.as_str(),
                "ssl.keystore.location"
                    | "ssl.keystore.certificate.chain"
                    | "ssl.keystore.key"
                    | "ssl.certificate.location"
                    | "ssl.key.location"
            )
        });
        // Anything but client.id says who the tenant is to the cluster: then it must say it
        // whole, or it would publish as the host's principal.
        let principal = self.0.keys().any(|k| k != "client.id");
        let mut config = base.clone();
        if sasl {
            config.clear_sasl_credentials();
        }
        if certificate {
            config.clear_client_certificate();
        }
        for (k, v) in &self.0 {
            config.set(k, v).map_err(|e| (k.clone(), e.to_string()))?;
        }
        if check_protocol {
            let protocol = config.security.protocol;
            let whole = |m: &str| Err((String::new(), m.to_string()));
            if self.0.keys().any(|k| k.starts_with("sasl.")) && !protocol.sasl() {
                return whole("SASL settings need security.protocol=SASL_PLAINTEXT or SASL_SSL (here or in [kafka])");
            }
            if certificate && !protocol.tls() {
                return whole("a client certificate needs security.protocol=SSL or SASL_SSL (here or in [kafka])");
            }
            if principal && protocol.sasl() && !sasl {
                return whole("under SASL the broker knows a client by its SASL user: give the tenant its own credentials (sasl.jaas.config, or sasl.username and sasl.password), or it would publish as the host's user");
            }
            if principal && protocol.tls() && !protocol.sasl() && !certificate {
                return whole("under SSL the broker knows a client by its certificate: give the tenant its own (ssl.keystore.location, …), or it would publish as the host's");
            }
            if principal && !protocol.tls() && !protocol.sasl() {
                return whole("under PLAINTEXT the broker knows no users: a tenant may only have its own client.id");
            }
        }
        config
            .validate()
            .map_err(|e| (String::new(), e.to_string()))?;
        Ok(config)
    }
}

impl std::fmt::Debug for KafkaIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| {
                let shown = if wafka_producer::security::settings::is_secret(k) {
                    "(hidden)"
                } else {
                    v.as_str()
                };
                (k, shown)
            }))
            .finish()
    }
}

/// `[[tenants.NAME.plugins]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginConfig {
    /// The component file (relative paths are relative to the config file).
    pub path: PathBuf,
    /// Passed to the plugin's `init`.
    pub config: Vec<(String, String)>,
    /// SHA-256 of the file's bytes when the config was read: a reload compares it.
    pub file_sha256: [u8; 32],
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    kafka: toml::Table,
    http: RawHttp,
    #[serde(default)]
    tenants: BTreeMap<String, RawTenant>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: String,
    admin_token_sha256: Option<String>,
    max_body_bytes: Option<usize>,
    drain_timeout_ms: Option<u64>,
    header_timeout_ms: Option<u64>,
    body_timeout_ms: Option<u64>,
    max_connections: Option<usize>,
    // Before authentication.
    max_header_bytes: Option<usize>,
    max_connections_per_address: Option<usize>,
    authenticated_share: Option<f64>,
    // Readiness.
    readyz_checks_cluster: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    token_sha256: String,
    topics: Vec<String>,
    autoflush: Option<String>,
    max_memory_mb: Option<usize>,
    max_cpu_ms: Option<u64>,
    max_call_ms: Option<u64>,
    max_instances: Option<usize>,
    max_requests: Option<usize>,
    max_record_bytes: Option<usize>,
    max_topics: Option<usize>,
    max_body_bytes: Option<usize>,
    producer_byte_rate: Option<u64>,
    producer_record_rate: Option<u64>,
    buffer_memory_share: Option<f64>,
    output_bytes_per_second: Option<u64>,
    output_burst_bytes: Option<u64>,
    instance_starts_per_second: Option<u64>,
    instance_start_burst: Option<u64>,
    #[serde(default)]
    kafka: toml::Table,
    #[serde(default)]
    plugins: Vec<RawPlugin>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlugin {
    name: String,
    path: PathBuf,
    #[serde(default)]
    config: toml::Table,
}

/// Default of [`HttpConfig::max_body_bytes`]: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;
/// Default of [`HttpConfig::drain_timeout`].
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Most instance slots one host's engine pool may have: each reserves about 8 GiB of address
/// space (two memories of 4 GiB, nearly all untouched), and 16,000 do not fit in a process.
pub const MAX_POOL_SLOTS: usize = 12_000;

/// Default of [`HttpConfig::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default of [`HttpConfig::max_header_bytes`]: 16 KiB (Node's; nginx allows 8 KiB a line).
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 << 10;
/// Default of [`HttpConfig::authenticated_share`].
pub const DEFAULT_AUTHENTICATED_SHARE: f64 = 0.25;
/// Default of [`TenantConfig::max_instances`].
pub const DEFAULT_MAX_INSTANCES: usize = 4;
/// Default of [`TenantConfig::output_bytes_per_second`]: 64 KiB.
pub const DEFAULT_OUTPUT_BYTES_PER_SECOND: u64 = 64 << 10;
/// Default of [`TenantConfig::output_burst_bytes`]: 256 KiB.
pub const DEFAULT_OUTPUT_BURST_BYTES: u64 = 256 << 10;
/// Least [`TenantConfig::output_burst_bytes`]: 16 KiB, so that any line of plugin output (cut
/// at `runtime::output::MAX_LINE`, 8 KiB) can pass.
pub const MIN_OUTPUT_BURST_BYTES: u64 = 16 << 10;
/// Default of [`TenantConfig::instance_starts_per_second`].
pub const DEFAULT_INSTANCE_STARTS_PER_SECOND: u64 = 10;
/// Least default of [`TenantConfig::instance_start_burst`] (otherwise `max_instances` ×
/// plugins: all its instances at once).
pub const MIN_DEFAULT_INSTANCE_START_BURST: u64 = 10;

impl ServeConfig {
    /// Reads and checks `file`; plugin files are read to fingerprint them.
    pub fn load(file: &Path) -> Result<ServeConfig, ConfigError> {
        let name = file.display().to_string();
        let text = std::fs::read_to_string(file).map_err(|e| ConfigError::Read {
            file: name.clone(),
            reason: e.to_string(),
        })?;
        let base = file.parent().unwrap_or(Path::new("."));
        Self::parse(&text, &name, base)
    }

    /// Checks `text` as the contents of `file`, with relative plugin paths under `base`.
    pub fn parse(text: &str, file: &str, base: &Path) -> Result<ServeConfig, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            file: file.to_string(),
            line: e.span().map_or(0, |s| {
                text[..s.start.min(text.len())].lines().count().max(1)
            }),
            message: e.message().replace('\n', " ").trim().to_string(),
        })?;
        let invalid = |key: String, message: String| ConfigError::Invalid {
            file: file.to_string(),
            key,
            message,
        };
        let mut kafka = BTreeMap::new();
        flatten("", &raw.kafka, &mut kafka).map_err(|(k, m)| invalid(format!("kafka.{k}"), m))?;
        let mut probe = wafka_producer::ProducerConfig::new();
        for (k, v) in &kafka {
            probe
                .set(k, v)
                .map_err(|e| invalid(format!("kafka.{k}"), e.to_string()))?;
        }

        let admin_token_sha256 = match &raw.http.admin_token_sha256 {
            Some(h) => {
                Some(sha256_hex(h).map_err(|m| invalid("http.admin_token_sha256".into(), m))?)
            }
            None => None,
        };
        raw.http
            .listen
            .parse::<std::net::SocketAddr>()
            .map_err(|e| {
                invalid(
                    "http.listen".into(),
                    format!("`{}` is not an address:port ({e})", raw.http.listen),
                )
            })?;
        let connections = connection_limits(&raw.http).map_err(|(k, m)| invalid(k, m))?;
        let http = HttpConfig {
            listen: raw.http.listen,
            admin_token_sha256,
            max_body_bytes: positive(
                raw.http.max_body_bytes,
                DEFAULT_MAX_BODY_BYTES,
                "http.max_body_bytes",
            )
            .map_err(|(k, m)| invalid(k, m))?,
            drain_timeout: Duration::from_millis(
                raw.http
                    .drain_timeout_ms
                    .unwrap_or(DEFAULT_DRAIN_TIMEOUT.as_millis() as u64),
            ),
            header_timeout: millis(raw.http.header_timeout_ms, 10_000, "http.header_timeout_ms")
                .map_err(|(k, m)| invalid(k, m))?,
            body_timeout: millis(raw.http.body_timeout_ms, 30_000, "http.body_timeout_ms")
                .map_err(|(k, m)| invalid(k, m))?,
            max_connections: connections.max_connections,
            max_header_bytes: connections.max_header_bytes,
            max_connections_per_address: connections.max_connections_per_address,
            authenticated_share: connections.authenticated_share,
            readyz_checks_cluster: raw.http.readyz_checks_cluster.unwrap_or(false),
        };

        let mut tenants = BTreeMap::new();
        let mut tokens: BTreeMap<[u8; 32], String> = BTreeMap::new();
        // Each plugin file is read and hashed once, however many tenants use it.
        let mut hashed: BTreeMap<PathBuf, [u8; 32]> = BTreeMap::new();
        for (name, t) in raw.tenants {
            let key = |k: &str| format!("tenants.{name}.{k}");
            check_name(&name).map_err(|m| invalid(format!("tenants.{name}"), m))?;
            let token_sha256 =
                sha256_hex(&t.token_sha256).map_err(|m| invalid(key("token_sha256"), m))?;
            if let Some(other) = tokens.insert(token_sha256, name.clone()) {
                return Err(invalid(
                    key("token_sha256"),
                    format!("the same token as tenant `{other}`: every tenant needs its own"),
                ));
            }
            for p in &t.topics {
                let prefix = p.strip_suffix('*').unwrap_or(p);
                if prefix.contains('*') || (p == prefix && p.is_empty()) {
                    return Err(invalid(
                        key("topics"),
                        format!("`{p}`: expected a topic name or `prefix*`"),
                    ));
                }
            }
            let autoflush = match &t.autoflush {
                Some(a) => a.parse().map_err(|m| invalid(key("autoflush"), m))?,
                None => Autoflush::Off,
            };
            let one = |v: Option<u64>, default: u64, k: &str| {
                positive(v.map(|v| v as usize), default as usize, &key(k))
                    .map(|v| v as u64)
                    .map_err(|(k, m)| invalid(k, m))
            };
            let max_memory_mb = one(t.max_memory_mb.map(|v| v as u64), 64, "max_memory_mb")?;
            let max_cpu_ms = one(t.max_cpu_ms, 5_000, "max_cpu_ms")?;
            let max_call_ms = one(t.max_call_ms, 10_000, "max_call_ms")?;
            let max_instances = one(
                t.max_instances.map(|v| v as u64),
                DEFAULT_MAX_INSTANCES as u64,
                "max_instances",
            )?;
            let plugin_count = t.plugins.len().max(1) as u64;
            let max_requests = one(
                t.max_requests.map(|v| v as u64),
                2 * max_instances * plugin_count,
                "max_requests",
            )?;
            if max_requests > 1_000_000 {
                return Err(invalid(
                    key("max_requests"),
                    format!("{max_requests}: at most 1000000"),
                ));
            }
            if max_cpu_ms > max_call_ms {
                return Err(invalid(
                    key("max_cpu_ms"),
                    format!("{max_cpu_ms} is over max_call_ms ({max_call_ms}): the wall time ends first"),
                ));
            }
            if max_instances > MAX_POOL_SLOTS as u64 / 2 {
                return Err(invalid(
                    key("max_instances"),
                    format!("{max_instances}: at most {}", MAX_POOL_SLOTS / 2),
                ));
            }
            if max_memory_mb > 1 << 16 {
                return Err(invalid(
                    key("max_memory_mb"),
                    format!("{max_memory_mb}: at most 65536 (64 GiB)"),
                ));
            }
            let max_topics = one(
                t.max_topics.map(|v| v as u64),
                DEFAULT_MAX_TOPICS as u64,
                "max_topics",
            )?;
            for (k, v) in [
                ("max_record_bytes", t.max_record_bytes.map(|v| v as u64)),
                ("max_body_bytes", t.max_body_bytes.map(|v| v as u64)),
                ("producer_byte_rate", t.producer_byte_rate),
                ("producer_record_rate", t.producer_record_rate),
            ] {
                if v == Some(0) {
                    return Err(invalid(key(k), "must be at least 1".into()));
                }
            }
            let output_bytes_per_second = t
                .output_bytes_per_second
                .unwrap_or(DEFAULT_OUTPUT_BYTES_PER_SECOND);
            let output_burst_bytes = t.output_burst_bytes.unwrap_or(DEFAULT_OUTPUT_BURST_BYTES);
            if output_burst_bytes < MIN_OUTPUT_BURST_BYTES {
                return Err(invalid(
                    key("output_burst_bytes"),
                    format!(
                        "{output_burst_bytes}: at least {MIN_OUTPUT_BURST_BYTES} (any line of plugin output, at most 8 KiB, must pass)"
                    ),
                ));
            }
            let instance_starts_per_second = one(
                t.instance_starts_per_second,
                DEFAULT_INSTANCE_STARTS_PER_SECOND,
                "instance_starts_per_second",
            )?;
            let instance_start_burst = one(
                t.instance_start_burst,
                (max_instances * plugin_count).max(MIN_DEFAULT_INSTANCE_START_BURST),
                "instance_start_burst",
            )?;
            if let Some(s) = t.buffer_memory_share {
                if !(s > 0.0 && s <= 1.0) {
                    return Err(invalid(
                        key("buffer_memory_share"),
                        format!("{s}: expected a fraction of buffer.memory in (0, 1]"),
                    ));
                }
            }
            let identity = tenant_kafka(&kafka, &t.kafka).map_err(|(k, m)| {
                invalid(
                    if k.is_empty() {
                        key("kafka")
                    } else {
                        key(&format!("kafka.{k}"))
                    },
                    m,
                )
            })?;
            let mut plugins = BTreeMap::new();
            for (i, p) in t.plugins.into_iter().enumerate() {
                let pkey = |k: &str| format!("tenants.{name}.plugins[{i}].{k}");
                check_name(&p.name).map_err(|m| invalid(pkey("name"), m))?;
                let path = if p.path.is_absolute() {
                    p.path.clone()
                } else {
                    base.join(&p.path)
                };
                let file_sha256 = match hashed.get(&path) {
                    Some(h) => *h,
                    None => {
                        let bytes = std::fs::read(&path).map_err(|e| {
                            invalid(pkey("path"), format!("cannot read {}: {e}", path.display()))
                        })?;
                        let h: [u8; 32] = Sha256::digest(&bytes).into();
                        hashed.insert(path.clone(), h);
                        h
                    }
                };
                let mut config = BTreeMap::new();
                flatten("", &p.config, &mut config)
                    .map_err(|(k, m)| invalid(pkey(&format!("config.{k}")), m))?;
                let plugin = PluginConfig {
                    path,
                    config: config.into_iter().collect(),
                    file_sha256,
                };
                if plugins.insert(p.name.clone(), plugin).is_some() {
                    return Err(invalid(
                        pkey("name"),
                        format!("tenant `{name}` has two plugins called `{}`", p.name),
                    ));
                }
            }
            tenants.insert(
                name.clone(),
                TenantConfig {
                    token_sha256,
                    topics: t.topics,
                    autoflush,
                    max_memory_mb: max_memory_mb as usize,
                    max_cpu_ms,
                    max_call_ms,
                    max_instances: max_instances as usize,
                    max_requests: max_requests as usize,
                    max_record_bytes: t.max_record_bytes,
                    max_topics: max_topics as usize,
                    max_body_bytes: t.max_body_bytes,
                    producer_byte_rate: t.producer_byte_rate,
                    producer_record_rate: t.producer_record_rate,
                    buffer_memory_share: t.buffer_memory_share,
                    output_bytes_per_second,
                    output_burst_bytes,
                    instance_starts_per_second,
                    instance_start_burst,
                    kafka: identity,
                    plugins,
                },
            );
        }
        // Each pool slot reserves about 8 GiB of address space; the pool holds twice the
        // instances configured (a reload starts new ones while old ones finish), plus 16.
        let slots: usize = tenants
            .values()
            .map(|t: &TenantConfig| t.max_instances * t.plugins.len())
            .sum();
        if slots * 2 + 16 > MAX_POOL_SLOTS {
            return Err(invalid(
                "tenants.*.max_instances".into(),
                format!(
                    "{slots} instances in all (max_instances x plugins, over every tenant) need a pool of {} slots; one host holds at most {MAX_POOL_SLOTS}: lower max_instances or spread the tenants over more hosts",
                    slots * 2 + 16
                ),
            ));
        }
        if let Some(a) = &http.admin_token_sha256 {
            if let Some(t) = tokens.get(a) {
                return Err(invalid(
                    "http.admin_token_sha256".into(),
                    format!("the same token as tenant `{t}`"),
                ));
            }
        }
        let shares: f64 = tenants
            .values()
            .filter_map(|t: &TenantConfig| t.buffer_memory_share)
            .sum();
        if shares > 1.0 + 1e-9 {
            return Err(invalid(
                "tenants.*.buffer_memory_share".into(),
                format!("the shares add up to {shares:.3}, over the whole of buffer.memory"),
            ));
        }
        Ok(ServeConfig {
            file: PathBuf::from(file),
            kafka,
            http,
            tenants,
        })
    }

    /// Each tenant's share of `buffer.memory`, in bytes, for a producer with `producer`'s
    /// settings: its `buffer_memory_share`, or an equal part of what the explicit shares
    /// leave (rounded down: together they never pass `buffer.memory`, so tenants stuck on a
    /// partition fill their own shares, never the buffer the others need). Each must hold one
    /// of the tenant's largest records in a batch of its own
    /// ([`wafka_producer::MemoryShare::least_limit`]: from its `max_record_bytes`, or
    /// `max.request.size`; not `batch.size`, since a share pays a batch's growth only when it
    /// can), or the tenant could never publish its largest record: such a config is refused,
    /// one line with the numbers. Checked when a server starts and at each reload (the
    /// producer's settings may come from the command line too).
    pub fn buffer_shares(
        &self,
        producer: &wafka_producer::ProducerConfig,
    ) -> Result<BTreeMap<String, usize>, ConfigError> {
        let total = producer.buffer_memory;
        let invalid = |key: String, message: String| ConfigError::Invalid {
            file: self.file.display().to_string(),
            key,
            message,
        };
        // The least share a tenant needs, and what its largest record is.
        let least = |t: &TenantConfig| {
            let bytes = wafka_producer::MemoryShare::least_limit(
                producer,
                t.max_record_bytes,
                crate::runtime::state::MAX_HEADERS,
            );
            let from = match t.max_record_bytes {
                Some(m) if m < producer.max_request_size => format!("max_record_bytes = {m}"),
                _ => format!("max.request.size = {}", producer.max_request_size),
            };
            (bytes, from)
        };
        let mut shares = BTreeMap::new();
        let mut explicit = 0usize;
        for (name, t) in &self.tenants {
            let Some(f) = t.buffer_memory_share else {
                continue;
            };
            let bytes = ((total as f64 * f) as usize).min(total);
            let (need, from) = least(t);
            if bytes < need {
                return Err(invalid(
                    format!("tenants.{name}.buffer_memory_share"),
                    format!(
                        "{f} of buffer.memory ({total} bytes) is {bytes} bytes, less than one of its largest records takes in a batch of its own ({need} bytes, from {from}): raise the share or buffer.memory, or lower max_record_bytes"
                    ),
                ));
            }
            explicit += bytes;
            shares.insert(name.clone(), bytes);
        }
        let equal: Vec<(&String, &TenantConfig)> = self
            .tenants
            .iter()
            .filter(|(_, t)| t.buffer_memory_share.is_none())
            .collect();
        let Some((neediest, t)) = equal.iter().max_by_key(|(_, t)| least(t).0) else {
            return Ok(shares);
        };
        let rest = total.saturating_sub(explicit);
        let each = rest / equal.len();
        let (need, from) = least(t);
        if each < need {
            let what = if explicit == 0 {
                format!("buffer.memory ({total} bytes)")
            } else {
                format!("the {rest} bytes of buffer.memory ({total}) the set shares leave")
            };
            return Err(invalid(
                "kafka.buffer.memory".into(),
                format!(
                    "{} tenants share {what} equally: {each} bytes each, less than tenant `{neediest}` needs to hold one of its largest records in a batch of its own ({need} bytes, from {from}); raise buffer.memory, lower max.request.size or the tenants' max_record_bytes, or serve fewer tenants on one host",
                    equal.len()
                ),
            ));
        }
        for (name, _) in equal {
            shares.insert(name.clone(), each);
        }
        Ok(shares)
    }

    /// Whether the file names a cluster (`bootstrap.servers` in `[kafka]`).
    pub fn has_brokers(&self) -> bool {
        self.kafka.contains_key("bootstrap.servers")
    }
}

/// `[http]`'s connection limits, checked (`max_connections_per_address` defaults to a tenth of
/// `max_connections`, at least 100).
struct ConnectionLimits {
    max_connections: usize,
    max_header_bytes: usize,
    max_connections_per_address: usize,
    authenticated_share: f64,
}

fn connection_limits(raw: &RawHttp) -> Result<ConnectionLimits, (String, String)> {
    let max_connections = positive(
        raw.max_connections,
        DEFAULT_MAX_CONNECTIONS,
        "http.max_connections",
    )?;
    let max_header_bytes = raw.max_header_bytes.unwrap_or(DEFAULT_MAX_HEADER_BYTES);
    if !(1 << 10..=256 << 10).contains(&max_header_bytes) {
        return Err((
            "http.max_header_bytes".into(),
            format!("{max_header_bytes}: expected 1024 to 262144"),
        ));
    }
    let max_connections_per_address = positive(
        raw.max_connections_per_address,
        (max_connections / 10).max(100).min(max_connections),
        "http.max_connections_per_address",
    )?;
    let authenticated_share = raw
        .authenticated_share
        .unwrap_or(DEFAULT_AUTHENTICATED_SHARE);
    if !(0.0..1.0).contains(&authenticated_share) {
        return Err((
            "http.authenticated_share".into(),
            format!("{authenticated_share}: expected a fraction of max_connections in [0, 1)"),
        ));
    }
    Ok(ConnectionLimits {
        max_connections,
        max_header_bytes,
        max_connections_per_address,
        authenticated_share,
    })
}

/// A tenant's `[tenants.NAME.kafka]`, checked: only identity properties, and together with
/// the host's `[kafka]` a configuration the producer accepts (credentials that fit the
/// protocol, files that load). Errors name the key (empty: the table as a whole).
fn tenant_kafka(
    host: &BTreeMap<String, String>,
    table: &toml::Table,
) -> Result<KafkaIdentity, (String, String)> {
    let mut own = BTreeMap::new();
    flatten("", table, &mut own)?;
    if own.is_empty() {
        return Ok(KafkaIdentity::default());
    }
    for k in own.keys() {
        if !TENANT_KAFKA_PROPERTIES.contains(&k.as_str()) {
            return Err((
                k.clone(),
                "not a tenant's own: a tenant may set only who it is to the cluster (client.id, security.protocol, sasl.*, ssl.keystore.*, ssl.certificate.location, ssl.key.location); the rest belongs in [kafka]".into(),
            ));
        }
    }
    let mut probe = wafka_producer::ProducerConfig::new();
    // The cluster may be named on the command line (or be the local broker) instead.
    probe
        .set("bootstrap.servers", "localhost:9092")
        .map_err(|e| (String::new(), e.to_string()))?;
    for (k, v) in host {
        probe.set(k, v).map_err(|e| (k.clone(), e.to_string()))?;
    }
    let identity = KafkaIdentity(own);
    // The protocol may come from the command line (-X) instead; then the host checks the fit
    // when it starts the tenant's core (`Producers::for_identity`).
    let named =
        host.contains_key("security.protocol") || identity.0.contains_key("security.protocol");
    identity.apply(&probe, named)?;
    Ok(identity)
}

/// A tenant or plugin name: it is part of URLs and metric labels.
fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}`: a name may have 1 to 64 of A-Z a-z 0-9 . _ -"
        ))
    }
}

/// 64 hex digits.
fn sha256_hex(h: &str) -> Result<[u8; 32], String> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(h.trim(), &mut out)
        .map_err(|_| "expected 64 hex digits (the SHA-256 of the token, e.g. from `printf %s TOKEN | sha256sum`)".to_string())?;
    Ok(out)
}

/// `v`, which must be at least 1, or `default`; errors as (key, message).
fn positive(v: Option<usize>, default: usize, key: &str) -> Result<usize, (String, String)> {
    match v {
        Some(0) => Err((key.to_string(), "must be at least 1".into())),
        Some(v) => Ok(v),
        None => Ok(default),
    }
}

/// `v` milliseconds, at least 1, or `default`; errors as (key, message).
fn millis(v: Option<u64>, default: u64, key: &str) -> Result<Duration, (String, String)> {
    positive(v.map(|v| v as usize), default as usize, key).map(|v| Duration::from_millis(v as u64))
}

/// A table's values as strings under dotted keys: `linger.ms = 5` (a nested table in TOML)
/// and `"linger.ms" = "5"` both give `linger.ms` → `5`.
fn flatten(
    prefix: &str,
    table: &toml::Table,
    out: &mut BTreeMap<String, String>,
) -> Result<(), (String, String)> {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        let text = match v {
            toml::Value::Table(t) => {
                flatten(&key, t, out)?;
                continue;
            }
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(a) => {
                // Lists (bootstrap.servers) as Kafka writes them: comma-separated.
                let mut items = Vec::new();
                for item in a {
                    match item {
                        toml::Value::String(s) => items.push(s.clone()),
                        toml::Value::Integer(i) => items.push(i.to_string()),
                        _ => return Err((key, "expected a list of strings".into())),
                    }
                }
                items.join(",")
            }
            toml::Value::Datetime(_) => return Err((key, "a date is not a value here".into())),
        };
        out.insert(key, text);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    const OTHER: &str = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752";

    fn base() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("wafka-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("p.wasm"), b"\0asm").unwrap();
        dir
    }

    fn parse(text: &str) -> Result<ServeConfig, ConfigError> {
        ServeConfig::parse(text, "serve.toml", &base())
    }

    fn err(text: &str) -> String {
        let e = parse(text).expect_err("an error").to_string();
        assert!(!e.contains('\n'), "one line: {e}");
        e
    }

    #[test]
    fn a_whole_config_reads_with_its_defaults() {
        let c = parse(&format!(
            r#"
[kafka]
bootstrap.servers = "127.0.0.1:9092"
linger.ms = 5
"enable.idempotence" = true
[http]
listen = "127.0.0.1:0"
admin_token_sha256 = "{OTHER}"
[tenants.acme]
token_sha256 = "{TOKEN}"
topics = ["acme-*", "shared"]
autoflush = "on"
producer_byte_rate = 1000
[[tenants.acme.plugins]]
name = "hello"
path = "p.wasm"
config = {{ topic = "acme-x", n = 3 }}
"#
        ))
        .unwrap();
        assert_eq!(c.kafka["bootstrap.servers"], "127.0.0.1:9092");
        assert_eq!(c.kafka["linger.ms"], "5");
        assert_eq!(c.kafka["enable.idempotence"], "true");
        assert!(c.has_brokers());
        let t = &c.tenants["acme"];
        assert_eq!(t.autoflush, Autoflush::On);
        assert_eq!(t.max_memory_mb, 64);
        assert_eq!(t.max_instances, DEFAULT_MAX_INSTANCES);
        assert_eq!(t.producer_byte_rate, Some(1000));
        assert_eq!(
            (t.output_bytes_per_second, t.output_burst_bytes),
            (64 << 10, 256 << 10)
        );
        assert_eq!(
            (t.instance_starts_per_second, t.instance_start_burst),
            (10, 10)
        );
        let p = &t.plugins["hello"];
        assert_eq!(p.path, base().join("p.wasm"));
        assert_eq!(
            p.config,
            vec![("n".into(), "3".into()), ("topic".into(), "acme-x".into())]
        );
        assert_eq!(c.http.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        // `/readyz` asks the cluster only when told to.
        assert!(!c.http.readyz_checks_cluster);
    }

    #[test]
    fn a_tenant_may_have_its_own_identity_and_nothing_else() {
        let head =
            "[kafka]\n\"security.protocol\" = \"SASL_SSL\"\n[http]\nlisten = \"127.0.0.1:0\"\n";
        let tenant = |own: &str| {
            format!("{head}[tenants.a]\ntoken_sha256 = \"{TOKEN}\"\ntopics = []\n[tenants.a.kafka]\n{own}")
        };
        let c = parse(&tenant(
            "\"sasl.mechanism\" = \"SCRAM-SHA-256\"\n\"sasl.username\" = \"alice\"\n\"sasl.password\" = \"hunter2\"\n\"client.id\" = \"a\"\n",
        ))
        .unwrap();
        let own = &c.tenants["a"].kafka;
        assert_eq!(own.0["sasl.username"], "alice");
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("hunter2") && shown.contains("(hidden)"),
            "{shown}"
        );
        // Not an identity property: the host's alone.
        let e = err(&tenant("\"linger.ms\" = 5\n"));
        assert!(
            e.contains("`tenants.a.kafka.linger.ms`") && e.contains("[kafka]"),
            "{e}"
        );
        let e = err(&tenant("\"bootstrap.servers\" = \"elsewhere:9092\"\n"));
        assert!(e.contains("`tenants.a.kafka.bootstrap.servers`"), "{e}");
        // Checked with the host's settings: credentials need a SASL protocol, and must be
        // whole; the password never shows.
        let plain = "[kafka]\n\"security.protocol\" = \"PLAINTEXT\"\n[http]\nlisten = \"127.0.0.1:0\"\n[tenants.a]\ntoken_sha256 = \"".to_string()
            + TOKEN
            + "\"\ntopics = []\n[tenants.a.kafka]\n\"sasl.username\" = \"alice\"\n\"sasl.password\" = \"hunter2\"\n\"sasl.mechanism\" = \"SCRAM-SHA-512\"\n";
        let e = err(&plain);
        assert!(
            e.contains("`tenants.a.kafka`") && e.contains("SASL_PLAINTEXT or SASL_SSL"),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "{e}");
        let e = err(&tenant("\"sasl.mechanism\" = \"SCRAM-SHA-512\"\n"));
        assert!(
            e.contains("`tenants.a.kafka`") && e.contains("credentials"),
            "{e}"
        );
        // Nothing of the host's credentials is inherited: a tenant giving only a user name
        // does not get the host's password, and a certificate alone under SASL would
        // publish as the host's user.
        let host_user = "[kafka]\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.mechanism\" = \"PLAIN\"\n\"sasl.username\" = \"host\"\n\"sasl.password\" = \"host-secret\"\n[http]\nlisten = \"127.0.0.1:0\"\n[tenants.a]\ntoken_sha256 = \"".to_string()
            + TOKEN
            + "\"\ntopics = []\n[tenants.a.kafka]\n";
        let e = err(&(host_user.clone() + "\"sasl.username\" = \"tenant\"\n"));
        assert!(
            e.contains("`tenants.a.kafka`") && e.contains("credentials"),
            "{e}"
        );
        assert!(!e.contains("host-secret"), "{e}");
        let e = err(&(host_user.clone() + "\"ssl.keystore.location\" = \"/etc/tenant.pem\"\n"));
        assert!(e.contains("publish as the host's user"), "{e}");
        // A mechanism (or a protocol) alone is no identity either; client.id alone is one
        // (the broker's client-id quotas).
        let e = err(&(host_user.clone() + "\"sasl.mechanism\" = \"SCRAM-SHA-256\"\n"));
        assert!(e.contains("publish as the host's user"), "{e}");
        let c = parse(&(host_user + "\"client.id\" = \"tenant-a\"\n")).unwrap();
        assert_eq!(c.tenants["a"].kafka.0["client.id"], "tenant-a");
        let ssl = "[kafka]\n\"security.protocol\" = \"SSL\"\n[http]\nlisten = \"127.0.0.1:0\"\n[tenants.a]\ntoken_sha256 = \"".to_string()
            + TOKEN
            + "\"\ntopics = []\n[tenants.a.kafka]\n\"ssl.keystore.type\" = \"PEM\"\n";
        let e = err(&ssl);
        assert!(e.contains("knows a client by its certificate"), "{e}");
        let e = err(&tenant(
            "\"sasl.mechanism\" = \"PLAIN\"\n\"sasl.username\" = \"a\"\n\"sasl.password\" = \"b\"\n\"ssl.keystore.location\" = \"/no/such/key.pem\"\n",
        ));
        assert!(
            e.contains("`tenants.a.kafka") && e.contains("/no/such/key.pem"),
            "{e}"
        );
    }

    /// `n` tenants, each with `extra` lines, no plugins.
    fn tenants(n: usize, extra: &str) -> ServeConfig {
        let mut text = "[http]\nlisten = \"127.0.0.1:0\"\n".to_string();
        for i in 0..n {
            text +=
                &format!("[tenants.t{i:03}]\ntoken_sha256 = \"{i:064x}\"\ntopics = []\n{extra}\n");
        }
        parse(&text).unwrap()
    }

    /// Shares never add up to more than `buffer.memory`, and each holds one of its tenant's
    /// largest records in a batch of its own (`batch.size` is not asked for): with the
    /// defaults (32 MiB, records up to 1 MiB) 32 tenants fit and 33 are refused, naming the
    /// numbers; smaller records (`max_record_bytes`, `max.request.size`) fit more.
    #[test]
    fn buffer_shares_fit_in_buffer_memory_or_are_refused() {
        let producer = wafka_producer::ProducerConfig::new();
        assert_eq!(producer.buffer_memory, 32 << 20);
        assert_eq!(producer.max_request_size, 1 << 20);
        assert_eq!(producer.batch_size, 1_000_000);
        let shares = tenants(32, "").buffer_shares(&producer).unwrap();
        assert!(shares.values().all(|&b| b == 1 << 20), "{shares:?}");
        let e = tenants(33, "")
            .buffer_shares(&producer)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`kafka.buffer.memory`")
                && e.contains(
                    "33 tenants share buffer.memory (33554432 bytes) equally: 1016800 bytes each"
                )
                && e.contains("1048576 bytes, from max.request.size = 1048576"),
            "{e}"
        );
        assert!(!e.contains('\n'));
        // Records of 100 kB at most: 100 tenants get 335,544 bytes each.
        let shares = tenants(100, "max_record_bytes = 100000")
            .buffer_shares(&producer)
            .unwrap();
        assert_eq!(shares.len(), 100);
        assert!(shares.values().all(|&b| b == (32 << 20) / 100));
        // The least a share may be: a record of 100 kB, its framing with up to 1,000 headers,
        // a batch header.
        let least = wafka_producer::MemoryShare::least_limit(&producer, Some(100_000), 1000);
        assert!((100_061..110_000).contains(&least), "{least}");
        let mut small = producer.clone();
        small.set("max.request.size", "200000").unwrap();
        assert_eq!(tenants(167, "").buffer_shares(&small).unwrap().len(), 167);
        assert!(tenants(168, "").buffer_shares(&small).is_err());
        // Set shares count first; the rest share what they leave.
        let mut c = tenants(3, "");
        c.tenants.get_mut("t000").unwrap().buffer_memory_share = Some(0.5);
        let shares = c.buffer_shares(&producer).unwrap();
        assert_eq!(shares["t000"], 16 << 20);
        assert_eq!(shares["t001"], 8 << 20);
        assert!(shares.values().sum::<usize>() <= 32 << 20);
        c.tenants.get_mut("t001").unwrap().buffer_memory_share = Some(0.01);
        let e = c.buffer_shares(&producer).unwrap_err().to_string();
        assert!(
            e.contains("`tenants.t001.buffer_memory_share`: 0.01 of buffer.memory (33554432 bytes) is 335544 bytes, less than one of its largest records"),
            "{e}"
        );
    }

    #[test]
    fn connection_limits_have_defaults_and_bounds() {
        let c = parse("[http]\nlisten = \"127.0.0.1:0\"\nmax_connections = 5000\n").unwrap();
        assert_eq!(
            (
                c.http.max_header_bytes,
                c.http.max_connections_per_address,
                c.http.authenticated_share
            ),
            (16384, 500, 0.25)
        );
        // A tenth, but at least 100 (and at most all).
        let per_address = |max: usize| {
            parse(&format!(
                "[http]\nlisten = \"127.0.0.1:0\"\nmax_connections = {max}\n"
            ))
            .unwrap()
            .http
            .max_connections_per_address
        };
        assert_eq!((per_address(500), per_address(8)), (100, 8));
        for (line, key) in [
            ("max_header_bytes = 100", "http.max_header_bytes"),
            ("max_header_bytes = 1000000", "http.max_header_bytes"),
            (
                "max_connections_per_address = 0",
                "http.max_connections_per_address",
            ),
            ("authenticated_share = 1.0", "http.authenticated_share"),
            ("authenticated_share = -0.5", "http.authenticated_share"),
        ] {
            let e = err(&format!("[http]\nlisten = \"127.0.0.1:0\"\n{line}\n"));
            assert!(e.contains(&format!("`{key}`")), "{e}");
        }
    }

    #[test]
    fn errors_are_one_line_and_name_the_file_and_key() {
        let http = "[http]\nlisten = \"127.0.0.1:0\"\n";
        let e = err(&format!(
            "{http}[tenants.a]\ntoken_sha256 = \"{TOKEN}\"\ntopics = []\nmax_memroy_mb = 3\n"
        ));
        assert!(
            e.starts_with("serve.toml:5:") && e.contains("max_memroy_mb"),
            "{e}"
        );
        let e = err(&format!(
            "{http}[tenants.a]\ntoken_sha256 = \"abc\"\ntopics = []\n"
        ));
        assert!(
            e.contains("`tenants.a.token_sha256`") && e.contains("64 hex"),
            "{e}"
        );
        let e = err(&format!("{http}[kafka]\nlinger.ms = \"soon\"\n"));
        assert!(e.contains("`kafka.linger.ms`"), "{e}");
        let e = err(&format!("{http}[kafka]\nno.such.property = 1\n"));
        assert!(e.contains("`kafka.no.such.property`"), "{e}");
        let e = err(&format!(
            "{http}[tenants.a]\ntoken_sha256 = \"{TOKEN}\"\ntopics = []\nmax_cpu_ms = 0\n"
        ));
        assert!(
            e.contains("`tenants.a.max_cpu_ms`: must be at least 1"),
            "{e}"
        );
        // Output and start rates: 0 bytes a second logs nothing (allowed); a burst must pass
        // any line; a tenant must be able to start an instance.
        let tenant = |extra: &str| {
            format!("{http}[tenants.a]\ntoken_sha256 = \"{TOKEN}\"\ntopics = []\n{extra}\n")
        };
        let c = parse(&tenant("output_bytes_per_second = 0\nmax_instances = 12")).unwrap();
        assert_eq!(c.tenants["a"].output_bytes_per_second, 0);
        // The start burst: every instance at once.
        assert_eq!(c.tenants["a"].instance_start_burst, 12);
        let e = err(&tenant("output_burst_bytes = 100"));
        assert!(
            e.contains("`tenants.a.output_burst_bytes`: 100: at least 16384"),
            "{e}"
        );
        let e = err(&tenant("instance_starts_per_second = 0"));
        assert!(
            e.contains("`tenants.a.instance_starts_per_second`: must be at least 1"),
            "{e}"
        );
        let e = err(&tenant("instance_start_burst = 0"));
        assert!(
            e.contains("`tenants.a.instance_start_burst`: must be at least 1"),
            "{e}"
        );
        let e = err(&format!("{http}[tenants.a]\ntoken_sha256 = \"{TOKEN}\"\ntopics = []\n[tenants.b]\ntoken_sha256 = \"{TOKEN}\"\ntopics = []\n"));
        assert!(
            e.contains("`tenants.b.token_sha256`") && e.contains("tenant `a`"),
            "{e}"
        );
        let e = err(&format!("{http}[tenants.a]\ntoken_sha256 = \"{TOKEN}\"\ntopics = []\n[[tenants.a.plugins]]\nname = \"x\"\npath = \"missing.wasm\"\n"));
        assert!(
            e.contains("`tenants.a.plugins[0].path`: cannot read"),
            "{e}"
        );
        let e = err(&format!(
            "{http}[tenants.\"a/b\"]\ntoken_sha256 = \"{TOKEN}\"\ntopics = []\n"
        ));
        assert!(e.contains("`tenants.a/b`"), "{e}");
        let e = err(&format!(
            "{http}[tenants.a]\ntoken_sha256 = \"{TOKEN}\"\ntopics = [\"a*b*\"]\n"
        ));
        assert!(e.contains("`tenants.a.topics`"), "{e}");
        let e = err(&format!("{http}[tenants.a]\ntoken_sha256 = \"{TOKEN}\"\ntopics = []\nbuffer_memory_share = 1.5\n"));
        assert!(e.contains("`tenants.a.buffer_memory_share`"), "{e}");
        let e = err("[http]\nlisten = \"nowhere\"\n");
        assert!(e.contains("`http.listen`"), "{e}");
        let e = err("[htp]\nlisten = \"127.0.0.1:0\"\n");
        assert!(e.starts_with("serve.toml:1:") && e.contains("htp"), "{e}");
        let e = ServeConfig::load(Path::new("/no/such/serve.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/no/such/serve.toml: cannot read"), "{e}");
    }
}
