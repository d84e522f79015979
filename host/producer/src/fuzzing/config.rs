//! The config parser with arbitrary `(name, value)` pairs: `ProducerConfig::from_properties`
//! (or `set_pair` on `name=value` lines, then `validate`), with names drawn from the real
//! property names, the refused ones and others, and values from a dictionary of what each
//! kind of property takes, mixed with arbitrary text.
//!
//! Owns the layout of a `config` input and the checks: an accepted config validates again to
//! the same config (`validate` is idempotent) and keeps the rules it stands for; no error and
//! no `Debug` output shows a secret value. An input is a mode byte, then pairs (a name choice,
//! a value choice and what the choice needs) while bytes are left. File paths
//! (`*.location`) always point into a folder that does not exist: the parser must not read
//! what a fuzzer names (`/dev/zero`).

use std::time::Duration;

use super::input::Input;
use super::{Outcome, Violation};
use crate::config::{parse_host_port, Acks, ProducerConfig};
use crate::security::settings::is_secret;

/// The properties `ProducerConfig::set` takes.
const PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "client.id",
    "acks",
    "linger.ms",
    "batch.size",
    "buffer.memory",
    "max.block.ms",
    "max.request.size",
    "enable.idempotence",
    "max.in.flight.requests.per.connection",
    "retries",
    "retry.backoff.ms",
    "retry.backoff.max.ms",
    "delivery.timeout.ms",
    "request.timeout.ms",
    "compression.type",
    "compression.gzip.level",
    "compression.lz4.level",
    "compression.zstd.level",
    "metadata.max.age.ms",
    "metadata.max.idle.ms",
    "partitioner.ignore.keys",
    "partitioner.availability.timeout.ms",
    "socket.connection.setup.timeout.ms",
    "reconnect.backoff.ms",
    "reconnect.backoff.max.ms",
    "security.protocol",
    "sasl.mechanism",
    "sasl.jaas.config",
    "sasl.username",
    "sasl.password",
    "ssl.truststore.type",
    "ssl.keystore.type",
    "ssl.truststore.location",
    "ssl.ca.location",
    "ssl.truststore.certificates",
    "ssl.keystore.location",
    "ssl.keystore.certificate.chain",
    "ssl.keystore.key",
    "ssl.certificate.location",
    "ssl.key.location",
    "ssl.endpoint.identification.algorithm",
];

/// Names it refuses or does not know.
const OTHER_NAMES: &[&str] = &[
    "key.serializer",
    "transactional.id",
    "partitioner.class",
    "ssl.key.password",
    "ssl.keystore.password",
    "send.buffer.bytes",
    "",
    "linger",
    "LINGER.MS",
    "acks ",
    "bootstrap.servers=",
];

/// A certificate and its key (P-256, self-signed, made for this target only).
const CERT: &str = include_str!("cert.pem");
const KEY: &str = include_str!("key.pem");

/// What secrets carry, so that a leak can be found.
const MARK: &str = "S3cr3t-Mark";

/// Values the properties take, and near misses.
const VALUES: &[&str] = &[
    "",
    " ",
    "0",
    "1",
    "-1",
    "5",
    "6",
    "9",
    "17",
    "22",
    "23",
    "-131072",
    "-131073",
    "4999",
    "5000",
    "16384",
    "1000000",
    "1048576",
    "33554432",
    "2147483647",
    "2147483648",
    "4294967295",
    "9223372036854775807",
    "18446744073709551615",
    "18446744073709551616",
    "+5",
    "1e3",
    "true",
    "false",
    "TRUE",
    "all",
    "none",
    "gzip",
    "snappy",
    "lz4",
    "zstd",
    "ZSTD",
    "PLAINTEXT",
    "SSL",
    "SASL_PLAINTEXT",
    "sasl_ssl",
    "PLAIN",
    "SCRAM-SHA-256",
    "SCRAM-SHA-512",
    "GSSAPI",
    "OAUTHBEARER",
    "PEM",
    "JKS",
    "https",
    "HTTPS",
    "localhost:9092",
    "127.0.0.1:9092,127.0.0.2:9093",
    "[::1]:9092",
    "[]:9092",
    ":9092",
    "host:",
    "host:65536",
    "a:1,,b:2",
    "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    "-----BEGIN ",
    "alice",
];

/// Secret values (`{}` is where a suffix from the input goes).
const SECRETS: &[&str] = &[
    "S3cr3t-Mark{}",
    "org.apache.kafka.common.security.plain.PlainLoginModule required username=\"alice\" password=\"S3cr3t-Mark{}\";",
    "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"al\\\"ice\" password=\"S3cr3t-Mark{}\";",
    "ScramLoginModule required password=\"S3cr3t-Mark{}\" username=\"bob\"",
    "PlainLoginModule required username=\"alice\" password=S3cr3t-Mark{}",
    "PlainLoginModule required username=\"alice\" password=\"S3cr3t-Mark{}",
    "PlainLoginModule optional username=\"alice\" password=\"S3cr3t-Mark{}\";",
    "-----BEGIN PRIVATE KEY-----\nS3cr3t-Mark{}\n-----END PRIVATE KEY-----\n",
];

/// Most pairs in one input.
const MAX_PAIRS: usize = 24;

/// One value, as the input chooses it.
fn value(input: &mut Input<'_>) -> String {
    let choice = input.byte();
    match choice {
        0..=127 => VALUES[usize::from(choice) % VALUES.len()].to_string(),
        128..=143 => {
            let len = usize::from(input.byte() % 16);
            let suffix = String::from_utf8_lossy(input.bytes(len)).into_owned();
            format!("{}{suffix}", input.pick(VALUES))
        }
        144..=175 => {
            let len = usize::from(input.byte() % 64);
            String::from_utf8_lossy(input.bytes(len)).into_owned()
        }
        176..=191 => input.i64().to_string(),
        192..=199 => CERT.to_string(),
        200..=203 => KEY.to_string(),
        204..=207 => format!("{CERT}{KEY}"),
        _ => {
            let len = usize::from(input.byte() % 8);
            let suffix = String::from_utf8_lossy(input.bytes(len)).into_owned();
            input.pick(SECRETS).replace("{}", &suffix)
        }
    }
}

/// One name, as the input chooses it.
fn name(input: &mut Input<'_>) -> String {
    let choice = input.byte();
    match choice {
        0..=223 => PROPERTIES[usize::from(choice) % PROPERTIES.len()].to_string(),
        224..=239 => OTHER_NAMES[usize::from(choice) % OTHER_NAMES.len()].to_string(),
        _ => {
            let len = usize::from(input.byte() % 32);
            String::from_utf8_lossy(input.bytes(len)).into_owned()
        }
    }
}

/// Runs a `config` input (see the module's documentation for its layout).
pub fn config(data: &[u8]) -> Result<Outcome, Violation> {
    let mut input = Input::new(data);
    let mode = input.byte();
    let mut pairs = Vec::new();
    while !input.is_empty() && pairs.len() < MAX_PAIRS {
        let name = name(&mut input);
        let mut value = value(&mut input);
        if name.ends_with(".location") && !value.trim().is_empty() {
            value = format!("/nonexistent/wafka-fuzz/{}", value.trim());
        }
        pairs.push((name, value));
    }
    let result = if mode & 1 == 0 {
        ProducerConfig::from_properties(pairs.iter().map(|(k, v)| (k, v)))
    } else {
        // As `-X name=value` lines.
        let mut config = ProducerConfig::new();
        pairs
            .iter()
            .try_for_each(|(k, v)| config.set_pair(&format!("{k}={v}")))
            .and_then(|()| {
                if mode & 2 != 0 {
                    // A tenant's overlay starts so.
                    config.clear_sasl_credentials();
                    config.clear_client_certificate();
                }
                config.validate()
            })
            .map(|()| config)
    };
    let leaked = |text: &str| {
        // A secret's mark may show only where the input put it outside a secret.
        let elsewhere = pairs
            .iter()
            .any(|(k, v)| k.contains(MARK) || (!is_secret(k) && v.contains(MARK)));
        !elsewhere && text.contains(MARK)
    };
    match result {
        Err(e) => {
            let e = e.to_string();
            if leaked(&e) {
                return Err(Violation::Config(format!("an error shows a secret: {e}")));
            }
            Ok(Outcome::Refused(e))
        }
        Ok(config) => {
            let shown = format!("{config:?}");
            if leaked(&shown) {
                return Err(Violation::Config(format!("Debug shows a secret: {shown}")));
            }
            check_accepted(config).map_err(Violation::Config)?;
            Ok(Outcome::Accepted)
        }
    }
}

/// An accepted config validates again to itself and keeps the rules.
fn check_accepted(config: ProducerConfig) -> Result<(), String> {
    let mut again = config.clone();
    again
        .validate()
        .map_err(|e| format!("an accepted config does not validate again: {e}"))?;
    let (before, after) = (format!("{config:?}"), format!("{again:?}"));
    if before != after {
        return Err(format!("validate changed {before} into {after}"));
    }
    let c = &config;
    let rules: [(&str, bool); 9] = [
        (
            "bootstrap.servers are host:port",
            !c.bootstrap_servers.is_empty()
                && c.bootstrap_servers
                    .iter()
                    .all(|s| parse_host_port(s).is_some()),
        ),
        (
            "delivery.timeout.ms >= linger.ms + request.timeout.ms",
            c.delivery_timeout >= c.linger + c.request_timeout,
        ),
        (
            "1 <= batch.size <= max.request.size, buffer.memory",
            c.batch_size >= 1 && c.batch_size <= c.max_request_size.min(c.buffer_memory),
        ),
        (
            "retry.backoff.max.ms >= retry.backoff.ms",
            c.retry_backoff_max >= c.retry_backoff,
        ),
        (
            "idempotence has acks=all, retries, at most 5 in flight",
            !c.enable_idempotence || (c.acks == Acks::All && c.retries > 0 && c.max_in_flight <= 5),
        ),
        ("retries <= i32::MAX", c.retries <= i32::MAX as u32),
        (
            "SASL has a mechanism and credentials",
            !c.security.protocol.sasl()
                || (c.security.mechanism.is_some() && c.security.credentials.is_some()),
        ),
        (
            "a client certificate comes with its key",
            c.security.tls.client_chain.is_some() == c.security.tls.client_key.is_some(),
        ),
        (
            "metadata.max.idle.ms >= 5000",
            c.metadata_max_idle >= Duration::from_millis(5000),
        ),
    ];
    match rules.iter().find(|(_, holds)| !holds) {
        Some((rule, _)) => Err(format!("accepted, but not {rule}: {config:?}")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_config_is_accepted_and_nonsense_refused() {
        // bootstrap.servers = "localhost:9092"
        let bootstrap = PROPERTIES.iter().position(|p| *p == "bootstrap.servers");
        let local = VALUES.iter().position(|v| *v == "localhost:9092");
        let (b, l) = (bootstrap.unwrap() as u8, local.unwrap() as u8);
        assert_eq!(config(&[0, b, l]), Ok(Outcome::Accepted));
        assert_eq!(config(&[1, b, l]), Ok(Outcome::Accepted));
        assert!(matches!(
            config(&[0, 250, 3, b'x', b'y', b'z', 0]),
            Ok(Outcome::Refused(_))
        ));
    }
}
