//! Producer configuration with the Java client's property names and Kafka 4 defaults.
//!
//! Owns parsing `key=value` properties into a typed [`ProducerConfig`] and the rules that tie
//! properties together (idempotence vs. `acks`, `delivery.timeout.ms` vs. linger + request
//! timeout). It must not act on the settings; the modules that use them read the typed fields.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::error::ConfigError;
use crate::security::sasl::{Credentials, Mechanism};
use crate::security::settings::{
    is_secret, parse_jaas, JaasModule, Pem, SecurityProtocol, SecuritySettings,
};

/// How many replicas must acknowledge a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// `acks=0`: the broker sends no answer; records complete when written to the socket.
    None,
    /// `acks=1`: the partition leader acknowledges.
    Leader,
    /// `acks=all` (or `-1`): all in-sync replicas acknowledge.
    All,
}

impl Acks {
    /// The value of the `acks` field of a Produce request.
    pub fn wire(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

/// Codec applied to each record batch (`compression.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// `none`
    None,
    /// `gzip`
    Gzip,
    /// `snappy`
    Snappy,
    /// `lz4`
    Lz4,
    /// `zstd`
    Zstd,
}

impl Compression {
    /// Parses a `compression.type` value.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "none" => Compression::None,
            "gzip" => Compression::Gzip,
            "snappy" => Compression::Snappy,
            "lz4" => Compression::Lz4,
            "zstd" => Compression::Zstd,
            _ => return None,
        })
    }

    /// The codec id in the low three bits of a record batch's attributes.
    pub fn attribute(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// The property value naming this codec.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// Typed producer settings. Build with [`ProducerConfig::from_properties`] or start from
/// [`ProducerConfig::new`] and use [`ProducerConfig::set`].
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// `bootstrap.servers`: `host:port` pairs to learn the cluster from.
    pub bootstrap_servers: Vec<String>,
    /// `client.id` sent with every request.
    pub client_id: String,
    /// `acks` (default `all`).
    pub acks: Acks,
    /// `linger.ms` (default 5 ms).
    pub linger: Duration,
    /// `batch.size` in bytes: the most a batch holds (default 1,000,000, as librdkafka and
    /// franz-go, not Java's 16384: see [`ProducerConfig::new`]).
    pub batch_size: usize,
    /// `buffer.memory` in bytes (default 32 MiB).
    pub buffer_memory: usize,
    /// `max.block.ms`: how long `send` may wait for metadata or memory (default 60 s).
    pub max_block: Duration,
    /// `max.request.size` in bytes (default 1 MiB).
    pub max_request_size: usize,
    /// `enable.idempotence` as in effect after the conflict rules (default true).
    pub enable_idempotence: bool,
    /// `max.in.flight.requests.per.connection` (default 5).
    pub max_in_flight: usize,
    /// `retries` (default `i32::MAX`).
    pub retries: u32,
    /// `retry.backoff.ms` (default 100 ms).
    pub retry_backoff: Duration,
    /// `retry.backoff.max.ms` (default 1 s).
    pub retry_backoff_max: Duration,
    /// `delivery.timeout.ms` (default 120 s).
    pub delivery_timeout: Duration,
    /// `request.timeout.ms` (default 30 s).
    pub request_timeout: Duration,
    /// `compression.type` (default `none`).
    pub compression: Compression,
    /// `compression.gzip.level` (1..=9), when set.
    pub gzip_level: Option<i32>,
    /// `compression.lz4.level` (1..=17; the default, 9, is LZ4's fast compressor), when set.
    pub lz4_level: Option<i32>,
    /// `compression.zstd.level` (-131072..=22), when set.
    pub zstd_level: Option<i32>,
    /// `metadata.max.age.ms` (default 5 min).
    pub metadata_max_age: Duration,
    /// `metadata.max.idle.ms` (default 5 min): a topic not sent to for this long leaves the
    /// metadata requests.
    pub metadata_max_idle: Duration,
    /// `partitioner.ignore.keys` (default false).
    pub partitioner_ignore_keys: bool,
    /// `partitioner.availability.timeout.ms` (default 0: off): a leader that has not answered a
    /// Produce request for this long gets no new records without a key.
    pub partitioner_availability_timeout: Duration,
    /// `socket.connection.setup.timeout.ms` (default 10 s).
    pub connection_setup_timeout: Duration,
    /// `reconnect.backoff.ms` (default 50 ms).
    pub reconnect_backoff: Duration,
    /// `reconnect.backoff.max.ms` (default 1 s).
    pub reconnect_backoff_max: Duration,
    /// `security.protocol`, `sasl.*` and `ssl.*`.
    pub security: SecuritySettings,
    /// The properties set, as given (secret values as `(hidden)`).
    explicit: BTreeMap<String, String>,
    /// `sasl.username` / `sasl.password` (librdkafka's names), joined when both are set.
    sasl_user: (Option<String>, Option<Hidden>),
}

/// A secret kept for a while; `Debug` does not show it.
#[derive(Clone)]
struct Hidden(String);

impl std::fmt::Debug for Hidden {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("(hidden)")
    }
}

/// Properties of the Java producer that wafka refuses, with the reason.
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "key.serializer",
        "records are bytes; serialize before sending",
    ),
    (
        "value.serializer",
        "records are bytes; serialize before sending",
    ),
    ("transactional.id", "transactions are not implemented"),
    ("transaction.timeout.ms", "transactions are not implemented"),
    (
        "partitioner.class",
        "the partitioner is built in (murmur2 for keys, sticky otherwise)",
    ),
    (
        "partitioner.adaptive.partitioning.enable",
        "the sticky partitioner is uniform among partitions whose leader is connected",
    ),
    ("interceptor.classes", "there are no interceptors"),
    (
        "ssl.key.password",
        "encrypted private keys are not read: give an unencrypted PKCS#8, SEC1 or RSA PEM key",
    ),
    (
        "sasl.login.callback.handler.class",
        "SASL credentials come from sasl.jaas.config or sasl.username/sasl.password",
    ),
    ("send.buffer.bytes", "socket buffers are left to the OS"),
    ("receive.buffer.bytes", "socket buffers are left to the OS"),
    (
        "metrics.sample.window.ms",
        "metrics are exposed by the host instead",
    ),
    (
        "metric.reporters",
        "metrics are exposed by the host instead",
    ),
];

/// `batch.size` when none is set: librdkafka's (1,000,000) and about franz-go's, not Java's
/// 16,384. Measured (README, "Where users run"): with 16 KiB batches a broker 10 ms away caps a
/// partition at 16 KiB per round trip and a broker holding data spends ~14× the CPU on the
/// same records; a batch is a ceiling, not a reservation (it grows as records come and counts
/// only what it holds against `buffer.memory`), so a large default costs nothing on quiet
/// partitions. Never more than `max.request.size` when that is lowered.
pub const DEFAULT_BATCH_SIZE: usize = 1_000_000;

impl Default for ProducerConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl ProducerConfig {
    /// Kafka 4 defaults, with `bootstrap.servers` empty.
    pub fn new() -> Self {
        ProducerConfig {
            bootstrap_servers: Vec::new(),
            client_id: "wafka".to_string(),
            acks: Acks::All,
            linger: Duration::from_millis(5),
            batch_size: DEFAULT_BATCH_SIZE,
            buffer_memory: 33_554_432,
            max_block: Duration::from_millis(60_000),
            max_request_size: 1_048_576,
            enable_idempotence: true,
            max_in_flight: 5,
            retries: i32::MAX as u32,
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_millis(1000),
            delivery_timeout: Duration::from_millis(120_000),
            request_timeout: Duration::from_millis(30_000),
            compression: Compression::None,
            gzip_level: None,
            lz4_level: None,
            zstd_level: None,
            metadata_max_age: Duration::from_millis(300_000),
            metadata_max_idle: Duration::from_millis(300_000),
            partitioner_ignore_keys: false,
            partitioner_availability_timeout: Duration::ZERO,
            connection_setup_timeout: Duration::from_millis(10_000),
            reconnect_backoff: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_millis(1000),
            security: SecuritySettings::default(),
            explicit: BTreeMap::new(),
            sasl_user: (None, None),
        }
    }

    /// Builds a config from `(name, value)` pairs and checks it.
    pub fn from_properties<I, K, V>(props: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut config = Self::new();
        for (k, v) in props {
            config.set(k.as_ref(), v.as_ref())?;
        }
        config.validate()?;
        Ok(config)
    }

    /// Parses one `key=value` string (as given to `-X`) and applies it.
    pub fn set_pair(&mut self, pair: &str) -> Result<(), ConfigError> {
        let (k, v) = pair.split_once('=').ok_or_else(|| {
            // A mistyped secret must not be echoed.
            let lower = pair.to_ascii_lowercase();
            ConfigError::Malformed(
                if lower.contains("password") || lower.contains("jaas") || lower.contains("key") {
                    "(hidden)".into()
                } else {
                    pair.to_string()
                },
            )
        })?;
        self.set(k.trim(), v.trim())
    }

    /// Sets one property. Call [`ProducerConfig::validate`] after the last one.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        let shown = if is_secret(name) { "(hidden)" } else { value };
        let invalid = |reason: &str| ConfigError::Invalid {
            name: name.to_string(),
            value: shown.to_string(),
            reason: reason.to_string(),
        };
        let pem_path = || -> Result<Pem, ConfigError> {
            if value.trim().is_empty() {
                Err(invalid("expected the path of a PEM file"))
            } else {
                Ok(Pem::File(value.trim().into()))
            }
        };
        let pem_text = || -> Result<Pem, ConfigError> {
            if value.contains("-----BEGIN ") {
                Ok(Pem::Inline(value.to_string()))
            } else {
                Err(invalid("expected PEM text (-----BEGIN ...)"))
            }
        };
        let ms = || -> Result<Duration, ConfigError> {
            value
                .parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| invalid("expected milliseconds as a non-negative integer"))
        };
        let bytes = |min: usize| -> Result<usize, ConfigError> {
            match value.parse::<usize>() {
                Ok(n) if n >= min => Ok(n),
                _ => Err(invalid(&format!("expected an integer >= {min}"))),
            }
        };
        let level = |min: i32, max: i32| -> Result<i32, ConfigError> {
            match value.parse::<i32>() {
                Ok(n) if (min..=max).contains(&n) => Ok(n),
                _ => Err(invalid(&format!(
                    "expected an integer level from {min} to {max}"
                ))),
            }
        };
        let boolean = || -> Result<bool, ConfigError> {
            match value {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(invalid("expected true or false")),
            }
        };
        match name {
            "bootstrap.servers" => {
                let servers: Vec<String> = value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
                if servers.is_empty() || servers.iter().any(|s| parse_host_port(s).is_none()) {
                    return Err(invalid("expected host:port[,host:port...]"));
                }
                self.bootstrap_servers = servers;
            }
            "client.id" => self.client_id = value.to_string(),
            "acks" => {
                self.acks = match value {
                    "0" => Acks::None,
                    "1" => Acks::Leader,
                    "all" | "-1" => Acks::All,
                    _ => return Err(invalid("expected 0, 1, all or -1")),
                }
            }
            "linger.ms" => self.linger = ms()?,
            "batch.size" => self.batch_size = bytes(0)?.max(1),
            "buffer.memory" => self.buffer_memory = bytes(1)?,
            "max.block.ms" => self.max_block = ms()?,
            "max.request.size" => self.max_request_size = bytes(1)?,
            "enable.idempotence" => self.enable_idempotence = boolean()?,
            "max.in.flight.requests.per.connection" => self.max_in_flight = bytes(1)?,
            "retries" => {
                self.retries = value
                    .parse::<u32>()
                    .ok()
                    .filter(|&n| n <= i32::MAX as u32)
                    .ok_or_else(|| invalid("expected an integer between 0 and 2147483647"))?
            }
            "retry.backoff.ms" => self.retry_backoff = ms()?,
            "retry.backoff.max.ms" => self.retry_backoff_max = ms()?,
            "delivery.timeout.ms" => self.delivery_timeout = ms()?,
            "request.timeout.ms" => self.request_timeout = ms()?,
            "compression.type" => {
                self.compression = Compression::parse(value)
                    .ok_or_else(|| invalid("expected none, gzip, snappy, lz4 or zstd"))?
            }
            "compression.gzip.level" => self.gzip_level = Some(level(1, 9)?),
            "compression.lz4.level" => self.lz4_level = Some(level(1, 17)?),
            "compression.zstd.level" => self.zstd_level = Some(level(-131_072, 22)?),
            "metadata.max.age.ms" => self.metadata_max_age = ms()?,
            "metadata.max.idle.ms" => {
                self.metadata_max_idle = ms()?;
                if self.metadata_max_idle < Duration::from_millis(5000) {
                    return Err(invalid("must be at least 5000"));
                }
            }
            "partitioner.ignore.keys" => self.partitioner_ignore_keys = boolean()?,
            "partitioner.availability.timeout.ms" => self.partitioner_availability_timeout = ms()?,
            "socket.connection.setup.timeout.ms" => self.connection_setup_timeout = ms()?,
            "reconnect.backoff.ms" => self.reconnect_backoff = ms()?,
            "reconnect.backoff.max.ms" => self.reconnect_backoff_max = ms()?,
            "security.protocol" => {
                self.security.protocol = SecurityProtocol::parse(value)
                    .ok_or_else(|| invalid("expected PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"))?
            }
            "sasl.mechanism" => {
                if value.trim().eq_ignore_ascii_case("GSSAPI") {
                    return Err(ConfigError::Unsupported {
                        name: name.to_string(),
                        reason: "GSSAPI (Kerberos) is not spoken: use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
                    });
                }
                self.security.mechanism = Some(value.parse::<Mechanism>().map_err(|e| invalid(&e))?)
            }
            "sasl.jaas.config" => {
                let (module, credentials) = parse_jaas(value).map_err(|e| invalid(&e))?;
                self.security.jaas_module = Some(module);
                self.security.credentials = Some(credentials);
            }
            "sasl.username" | "sasl.password" => {
                if name == "sasl.username" {
                    self.sasl_user.0 = Some(value.to_string());
                } else {
                    self.sasl_user.1 = Some(Hidden(value.to_string()));
                }
                if let (Some(u), Some(p)) = &self.sasl_user {
                    self.security.credentials = Some(Credentials::new(u.clone(), p.0.clone()));
                }
            }
            "ssl.truststore.type" | "ssl.keystore.type" => {
                if !value.trim().eq_ignore_ascii_case("PEM") {
                    return Err(ConfigError::Unsupported {
                        name: name.to_string(),
                        reason: "only PEM stores are read (convert JKS or PKCS12 with keytool or openssl)",
                    });
                }
            }
            "ssl.truststore.location" | "ssl.ca.location" => {
                self.security.tls.trust = Some(pem_path()?)
            }
            "ssl.truststore.certificates" => self.security.tls.trust = Some(pem_text()?),
            "ssl.keystore.location" => {
                // One PEM file holding the private key and the certificate chain.
                let pem = pem_path()?;
                self.security.tls.client_chain = Some(pem.clone());
                self.security.tls.client_key = Some(pem);
            }
            "ssl.keystore.certificate.chain" => self.security.tls.client_chain = Some(pem_text()?),
            "ssl.keystore.key" => self.security.tls.client_key = Some(pem_text()?),
            "ssl.certificate.location" => self.security.tls.client_chain = Some(pem_path()?),
            "ssl.key.location" => self.security.tls.client_key = Some(pem_path()?),
            "ssl.endpoint.identification.algorithm" => {
                self.security.tls.verify_hostname = match value.trim() {
                    "" | "none" => false,
                    v if v.eq_ignore_ascii_case("https") => true,
                    _ => return Err(invalid("expected https, or empty to turn it off")),
                }
            }
            _ => {
                if let Some((_, reason)) = UNSUPPORTED.iter().find(|(n, _)| *n == name) {
                    return Err(ConfigError::Unsupported {
                        name: name.to_string(),
                        reason,
                    });
                }
                return Err(ConfigError::Unknown(name.to_string()));
            }
        }
        self.explicit.insert(name.to_string(), shown.to_string());
        Ok(())
    }

    /// The level set for the codec in use, if any.
    pub fn compression_level(&self) -> Option<i32> {
        match self.compression {
            Compression::None | Compression::Snappy => None,
            Compression::Gzip => self.gzip_level,
            Compression::Lz4 => self.lz4_level,
            Compression::Zstd => self.zstd_level,
        }
    }

    /// Whether the user set `name` (as opposed to relying on its default).
    pub fn is_explicit(&self, name: &str) -> bool {
        self.explicit.contains_key(name)
    }

    /// Forgets the SASL credentials (`sasl.jaas.config`, `sasl.username`, `sasl.password`),
    /// so that others can be set without inheriting any part of these: a tenant's identity
    /// laid over the host's config must not keep the host's password.
    pub fn clear_sasl_credentials(&mut self) {
        self.security.credentials = None;
        self.security.jaas_module = None;
        self.sasl_user = (None, None);
        for k in ["sasl.jaas.config", "sasl.username", "sasl.password"] {
            self.explicit.remove(k);
        }
    }

    /// Forgets the client certificate and key (`ssl.keystore.*`, `ssl.certificate.location`,
    /// `ssl.key.location`), for the same reason.
    pub fn clear_client_certificate(&mut self) {
        self.security.tls.client_chain = None;
        self.security.tls.client_key = None;
        for k in [
            "ssl.keystore.location",
            "ssl.keystore.certificate.chain",
            "ssl.keystore.key",
            "ssl.certificate.location",
            "ssl.key.location",
        ] {
            self.explicit.remove(k);
        }
    }

    /// The properties the user set, as given.
    pub fn explicit_properties(&self) -> impl Iterator<Item = (&str, &str)> {
        self.explicit.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Applies the rules between properties, as the Java client does:
    /// - `bootstrap.servers` is required;
    /// - `delivery.timeout.ms` must be at least `linger.ms + request.timeout.ms`;
    /// - idempotence needs `acks=all`, `retries > 0` and at most 5 requests in flight. When the
    ///   user asked for idempotence explicitly a conflict is an error; when it is only the
    ///   default, idempotence is switched off instead.
    pub fn validate(&mut self) -> Result<(), ConfigError> {
        if self.bootstrap_servers.is_empty() {
            return Err(ConfigError::Invalid {
                name: "bootstrap.servers".into(),
                value: String::new(),
                reason: "required: host:port[,host:port...]".into(),
            });
        }
        if self.delivery_timeout < self.linger + self.request_timeout {
            return Err(ConfigError::Invalid {
                name: "delivery.timeout.ms".into(),
                value: self.delivery_timeout.as_millis().to_string(),
                reason: format!(
                    "must be at least linger.ms + request.timeout.ms = {} ms",
                    (self.linger + self.request_timeout).as_millis()
                ),
            });
        }
        // A batch goes out in one request and counts against buffer.memory: a batch.size the
        // user set beyond either is refused; the default shrinks to fit them.
        for (limit, limit_name) in [
            (self.max_request_size, "max.request.size"),
            (self.buffer_memory, "buffer.memory"),
        ] {
            if self.batch_size > limit {
                if !self.is_explicit("batch.size") {
                    self.batch_size = limit;
                    continue;
                }
                return Err(ConfigError::Invalid {
                    name: "batch.size".into(),
                    value: self.batch_size.to_string(),
                    reason: format!(
                        "a batch must fit in {limit_name}={limit}: lower batch.size or raise {limit_name}"
                    ),
                });
            }
        }
        self.validate_security()?;
        if self.retry_backoff_max < self.retry_backoff {
            self.retry_backoff_max = self.retry_backoff;
        }
        if self.enable_idempotence {
            let conflict = if self.acks != Acks::All {
                Some(("acks", "idempotence requires acks=all"))
            } else if self.retries == 0 {
                Some(("retries", "idempotence requires retries > 0"))
            } else if self.max_in_flight > 5 {
                Some((
                    "max.in.flight.requests.per.connection",
                    "idempotence allows at most 5 requests in flight",
                ))
            } else {
                None
            };
            if let Some((name, reason)) = conflict {
                if self.is_explicit("enable.idempotence") {
                    return Err(ConfigError::Invalid {
                        name: name.into(),
                        value: self.explicit.get(name).cloned().unwrap_or_default(),
                        reason: format!("{reason} (enable.idempotence=true was set)"),
                    });
                }
                self.enable_idempotence = false;
            }
        }
        Ok(())
    }
}

impl ProducerConfig {
    /// The rules between `security.protocol`, `sasl.*` and `ssl.*`.
    fn validate_security(&self) -> Result<(), ConfigError> {
        let sec = &self.security;
        let invalid = |name: &str, reason: String| ConfigError::Invalid {
            name: name.into(),
            value: self.explicit.get(name).cloned().unwrap_or_default(),
            reason,
        };
        if sec.protocol.sasl() {
            let Some(mechanism) = sec.mechanism else {
                return Err(invalid(
                    "sasl.mechanism",
                    "required with SASL (Kafka's default, GSSAPI, is not spoken): PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512".into(),
                ));
            };
            if sec.credentials.is_none() {
                return Err(invalid(
                    "sasl.jaas.config",
                    format!("{} needs credentials: sasl.jaas.config, or sasl.username and sasl.password", mechanism.name()),
                ));
            }
            let module_fits = matches!(
                (sec.jaas_module, mechanism),
                (None, _)
                    | (Some(JaasModule::Plain), Mechanism::Plain)
                    | (
                        Some(JaasModule::Scram),
                        Mechanism::ScramSha256 | Mechanism::ScramSha512
                    )
            );
            if !module_fits {
                return Err(invalid(
                    "sasl.jaas.config",
                    format!(
                        "its login module does not fit sasl.mechanism={}",
                        mechanism.name()
                    ),
                ));
            }
        }
        let tls = &sec.tls;
        if tls.client_chain.is_some() != tls.client_key.is_some() {
            return Err(invalid(
                "ssl.keystore.key",
                "a client certificate needs its key and the key its certificate (ssl.keystore.certificate.chain with ssl.keystore.key, or ssl.keystore.location)".into(),
            ));
        }
        if sec.protocol.tls() {
            // Trust store and client key are read now, so a bad file is a config error.
            if let Err(e) = crate::security::tls::client_config(tls) {
                return Err(ConfigError::Invalid {
                    name: "security.protocol".into(),
                    value: "SSL".into(),
                    reason: e.to_string(),
                });
            }
        }
        Ok(())
    }
}

/// Splits `host:port`, accepting `[v6]:port`.
pub(crate) fn parse_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then(|| (host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Result<ProducerConfig, ConfigError> {
        let mut all = vec![("bootstrap.servers", "127.0.0.1:9092")];
        all.extend_from_slice(pairs);
        ProducerConfig::from_properties(all)
    }

    #[test]
    fn kafka_4_defaults() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.acks, Acks::All);
        assert_eq!(c.linger, Duration::from_millis(5));
        assert_eq!(c.batch_size, 1_000_000);
        assert_eq!(c.buffer_memory, 33554432);
        assert!(c.enable_idempotence);
        assert_eq!(c.max_in_flight, 5);
        assert_eq!(c.delivery_timeout, Duration::from_secs(120));
        assert_eq!(c.compression, Compression::None);
    }

    #[test]
    fn unknown_and_malformed_properties_are_errors() {
        assert_eq!(
            cfg(&[("lingr.ms", "5")]).unwrap_err(),
            ConfigError::Unknown("lingr.ms".into())
        );
        let e = cfg(&[("acks", "2")]).unwrap_err().to_string();
        assert!(
            e.contains("`acks`") && e.contains("expected 0, 1, all"),
            "{e}"
        );
        assert!(matches!(
            cfg(&[("transactional.id", "x")]),
            Err(ConfigError::Unsupported { .. })
        ));
        let mut c = ProducerConfig::new();
        assert_eq!(
            c.set_pair("linger.ms"),
            Err(ConfigError::Malformed("linger.ms".into()))
        );
        assert!(ProducerConfig::from_properties(Vec::<(&str, &str)>::new()).is_err());
    }

    #[test]
    fn a_batch_must_fit_in_a_request_and_in_buffer_memory() {
        let e = cfg(&[("batch.size", "2000000")]).unwrap_err().to_string();
        assert!(
            e.contains("batch.size") && e.contains("max.request.size=1048576"),
            "{e}"
        );
        assert!(cfg(&[("batch.size", "2000"), ("buffer.memory", "1000")]).is_err());
        // The default shrinks to what the user's limits allow.
        let c = cfg(&[("max.request.size", "100000")]).unwrap();
        assert_eq!(c.batch_size, 100_000);
        let c = cfg(&[("buffer.memory", "50000")]).unwrap();
        assert_eq!(c.batch_size, 50_000);
        // Java's 16 KiB is there for whoever sets it.
        assert_eq!(cfg(&[("batch.size", "16384")]).unwrap().batch_size, 16384);
    }

    #[test]
    fn idempotence_conflicts_follow_java() {
        // Default idempotence gives way to acks=1 ...
        let c = cfg(&[("acks", "1")]).unwrap();
        assert!(!c.enable_idempotence);
        // ... but an explicit request for it is an error.
        assert!(cfg(&[("acks", "1"), ("enable.idempotence", "true")]).is_err());
        assert!(cfg(&[("max.in.flight.requests.per.connection", "6")])
            .map(|c| !c.enable_idempotence)
            .unwrap());
    }

    #[test]
    fn each_codec_has_its_own_level() {
        let c = cfg(&[("compression.gzip.level", "9"), ("compression.type", "lz4")]).unwrap();
        assert_eq!(c.compression_level(), None, "gzip's level is not lz4's");
        let c = cfg(&[
            ("compression.zstd.level", "-5"),
            ("compression.type", "zstd"),
        ])
        .unwrap();
        assert_eq!(c.compression_level(), Some(-5));
        assert!(cfg(&[("compression.lz4.level", "18")]).is_err());
        assert!(cfg(&[("compression.gzip.level", "0")]).is_err());
        assert!(cfg(&[("metadata.max.idle.ms", "4999")]).is_err());
        assert!(cfg(&[("batch.size", "2000"), ("buffer.memory", "1000")]).is_err());
    }

    #[test]
    fn delivery_timeout_must_cover_linger_and_request_timeout() {
        assert!(cfg(&[("delivery.timeout.ms", "1000")]).is_err());
        assert!(cfg(&[
            ("delivery.timeout.ms", "1000"),
            ("request.timeout.ms", "500")
        ])
        .is_ok());
    }

    #[test]
    fn security_properties_as_java_and_librdkafka_name_them() {
        let mut c = ProducerConfig::new();
        for (k, v) in [
            ("security.protocol", "sasl_ssl"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            (
                "sasl.jaas.config",
                r#"org.apache.kafka.common.security.scram.ScramLoginModule required username="alice" password="s3cret";"#,
            ),
            ("ssl.truststore.type", "PEM"),
            ("ssl.truststore.location", "/etc/ca.pem"),
            ("ssl.endpoint.identification.algorithm", ""),
        ] {
            c.set(k, v).unwrap();
        }
        let s = &c.security;
        assert_eq!(s.protocol, SecurityProtocol::SaslSsl);
        assert_eq!(s.mechanism, Some(Mechanism::ScramSha512));
        assert_eq!(s.credentials, Some(Credentials::new("alice", "s3cret")));
        assert_eq!(s.tls.trust, Some(Pem::File("/etc/ca.pem".into())));
        assert!(!s.tls.verify_hostname);
        // librdkafka's names, as kcat users type them.
        let mut k = ProducerConfig::new();
        for (n, v) in [
            ("sasl.username", "bob"),
            ("sasl.password", "pw"),
            ("ssl.ca.location", "/ca.pem"),
        ] {
            k.set(n, v).unwrap();
        }
        assert_eq!(k.security.credentials, Some(Credentials::new("bob", "pw")));
        assert_eq!(k.security.tls.trust, Some(Pem::File("/ca.pem".into())));
        // No secret in Debug output or in the properties listed.
        for shown in [format!("{c:?}"), format!("{k:?}")] {
            assert!(
                !shown.contains("s3cret") && !shown.contains("\"pw\""),
                "{shown}"
            );
        }
        assert!(c.explicit_properties().all(|(_, v)| !v.contains("s3cret")));
    }

    #[test]
    fn security_rules_and_errors_without_secrets() {
        let e = |pairs: &[(&str, &str)]| cfg(pairs).unwrap_err().to_string();
        let m = e(&[("security.protocol", "SASL_PLAINTEXT")]);
        assert!(m.contains("sasl.mechanism") && m.contains("GSSAPI"), "{m}");
        let m = e(&[
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "PLAIN"),
        ]);
        assert!(m.contains("needs credentials"), "{m}");
        let m = e(&[
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "SCRAM-SHA-256"),
            (
                "sasl.jaas.config",
                r#"org.apache.kafka.common.security.plain.PlainLoginModule required username="u" password="hush";"#,
            ),
        ]);
        assert!(
            m.contains("does not fit sasl.mechanism=SCRAM-SHA-256") && !m.contains("hush"),
            "{m}"
        );
        let m = e(&[(
            "sasl.jaas.config",
            "Krb5LoginModule required password=\"hush\";",
        )]);
        assert!(m.contains("(hidden)") && !m.contains("hush"), "{m}");
        let m = e(&[("sasl.mechanism", "GSSAPI")]);
        assert!(m.contains("Kerberos"), "{m}");
        let m = e(&[("ssl.keystore.type", "JKS")]);
        assert!(m.contains("only PEM"), "{m}");
        let m = e(&[(
            "ssl.keystore.certificate.chain",
            "-----BEGIN CERTIFICATE-----",
        )]);
        assert!(m.contains("needs its key"), "{m}");
        let m = ProducerConfig::new()
            .set_pair("sasl.password:hush")
            .unwrap_err()
            .to_string();
        assert!(!m.contains("hush"), "{m}");
    }
}
