//! Typed errors of the producer core.
//!
//! Owns the error vocabulary a caller sees: [`ConfigError`] when a property is wrong, and
//! [`ProduceError`] for everything that can happen to a record, before it is queued (`send`
//! returns it) or after (its delivery report carries it). It must not know how errors are
//! detected; the modules that detect them build these values.

use std::time::Duration;

/// A producer property that is unknown, unsupported or malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The property is not a Kafka producer property wafka knows.
    #[error("unknown producer property `{0}`")]
    Unknown(String),
    /// The property exists in Kafka but wafka does not implement it.
    #[error("producer property `{name}` is not supported by wafka: {reason}")]
    Unsupported {
        /// Property name.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The value cannot be used for this property.
    #[error("invalid value `{value}` for producer property `{name}`: {reason}")]
    Invalid {
        /// Property name.
        name: String,
        /// The value as given.
        value: String,
        /// What a valid value looks like.
        reason: String,
    },
    /// `key=value` was expected.
    #[error("malformed property `{0}`: expected key=value")]
    Malformed(String),
}

/// Why a record was not delivered (or not accepted).
///
/// Cloneable because one broker answer fails every record of a batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProduceError {
    /// The encoded record is larger than `max.request.size` (or `buffer.memory`).
    #[error("record of {size} bytes is larger than {limit_name}={limit}")]
    RecordTooLarge {
        /// Encoded size of the record with its batch overhead.
        size: usize,
        /// The limit it exceeds.
        limit: usize,
        /// Which property sets that limit.
        limit_name: &'static str,
    },
    /// No buffer memory became free within `max.block.ms`.
    #[error("buffer.memory exhausted: no room for {size} bytes after waiting max.block.ms={} ms", waited.as_millis())]
    BufferExhausted {
        /// Bytes asked for.
        size: usize,
        /// How long `send` waited.
        waited: Duration,
    },
    /// The owner's own memory quota is used up.
    #[error("memory quota of {limit} bytes for `{owner}` exhausted")]
    QuotaExceeded {
        /// The owner's name.
        owner: String,
        /// Its quota in bytes.
        limit: usize,
    },
    /// The cluster says the topic does not exist.
    #[error("topic `{0}` does not exist on the cluster")]
    UnknownTopic(String),
    /// The topic name is not a valid Kafka topic name.
    #[error("invalid topic name `{topic}`: {reason}")]
    InvalidTopic {
        /// The name as given (its first 64 characters if longer).
        topic: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An explicit partition outside the topic's partitions.
    #[error("partition {partition} does not exist: topic `{topic}` has {count} partitions")]
    InvalidPartition {
        /// Topic name.
        topic: String,
        /// The partition asked for.
        partition: i32,
        /// Partitions the topic has.
        count: i32,
    },
    /// Metadata for the topic could not be fetched within `max.block.ms`.
    #[error("no metadata for topic `{topic}` after max.block.ms={} ms: {cause}", waited.as_millis())]
    MetadataTimeout {
        /// Topic name.
        topic: String,
        /// How long `send` waited.
        waited: Duration,
        /// The last thing that went wrong (e.g. the broker is unreachable).
        cause: String,
    },
    /// The cluster refuses our security settings: SASL refused the credentials or the
    /// mechanism, or TLS failed (an untrusted or misnamed certificate, or a listener that
    /// speaks the other protocol). Sends fail with it at once, as Java's
    /// `AuthenticationException`, while the producer keeps trying in the background.
    #[error("cannot send to `{topic}`: {reason}")]
    Refused {
        /// Topic name.
        topic: String,
        /// Kafka's error code when SASL refused (SASL_AUTHENTICATION_FAILED,
        /// UNSUPPORTED_SASL_MECHANISM, ILLEGAL_SASL_STATE); `None` when TLS failed.
        code: Option<i16>,
        /// What the broker or the handshake said (never a secret).
        reason: String,
    },
    /// The cluster's metadata for the topic makes no sense (e.g. a negative partition index).
    #[error("the cluster's metadata for topic `{topic}` cannot be used: {reason}")]
    BadMetadata {
        /// Topic name.
        topic: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The record was not acknowledged within `delivery.timeout.ms`.
    #[error("record expired after delivery.timeout.ms={} ms: {cause}", timeout.as_millis())]
    DeliveryTimeout {
        /// The configured delivery timeout.
        timeout: Duration,
        /// The last error seen while trying, if any.
        cause: String,
    },
    /// The broker answered with a non-retriable error (or retries ran out).
    #[error("broker error {name} ({code}) for {topic}-{partition}{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Broker {
        /// Kafka's error name, e.g. `TOPIC_AUTHORIZATION_FAILED`.
        name: String,
        /// Kafka's error code.
        code: i16,
        /// Topic of the failed batch.
        topic: String,
        /// Partition of the failed batch.
        partition: i32,
        /// The broker's error message, when it sent one.
        message: Option<String>,
    },
    /// `flush` or `close` gave up waiting; the records it waited for are still on their way
    /// (after `close`: they end with [`ProduceError::Closed`]).
    #[error("gave up waiting after {} ms: {pending} batches still pending", waited.as_millis())]
    FlushTimeout {
        /// How long it waited.
        waited: Duration,
        /// Batches not done when it gave up.
        pending: usize,
    },
    /// The producer cannot go on (e.g. the idempotent producer could not be initialized).
    #[error("producer failed: {0}")]
    Fatal(String),
    /// The producer (or the owner) is closed.
    #[error("producer is closed")]
    Closed,
}

/// Turns a Kafka error code into its conventional `UPPER_SNAKE` name.
pub fn kafka_error_name(code: i16) -> String {
    use kafka_protocol::error::ParseResponseErrorCode;
    match code.err() {
        None => "NONE".to_string(),
        Some(kafka_protocol::ResponseError::Unknown(c)) => format!("UNKNOWN_ERROR_{c}"),
        Some(e) => {
            let camel = e.to_string();
            let mut out = String::with_capacity(camel.len() + 8);
            for (i, ch) in camel.chars().enumerate() {
                if ch.is_ascii_uppercase() && i > 0 {
                    out.push('_');
                }
                out.push(ch.to_ascii_uppercase());
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_follow_kafka() {
        assert_eq!(kafka_error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(kafka_error_name(6), "NOT_LEADER_OR_FOLLOWER");
        assert_eq!(kafka_error_name(29), "TOPIC_AUTHORIZATION_FAILED");
        assert_eq!(kafka_error_name(0), "NONE");
    }
}
