//! Records, publishing and delivery.

use std::fmt;

// The host's imports in a component; the fake host (crate::testing) everywhere else.
#[cfg(target_arch = "wasm32")]
use crate::bindings::wafka::producer::producer as host;
use crate::bindings::wafka::producer::types as wit;
#[cfg(not(target_arch = "wasm32"))]
use crate::testing::host;
use crate::Error;

/// A record to publish, built with chained calls:
///
/// ```no_run
/// # fn main() -> Result<(), wafka_guest::Error> {
/// use wafka_guest::Record;
///
/// let receipt = Record::new("orders", r#"{"id":7}"#)
///     .key("7")
///     .header("source", "shop")
///     .publish()?;
/// # Ok(()) }
/// ```
///
/// Without [`key`](Record::key) the record has Kafka's null key; without
/// [`partition`](Record::partition) the host's partitioner chooses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    msg: wit::Message,
}

impl Record {
    /// A record for `topic` with `value`, a null key, no headers and no explicit partition.
    pub fn new(topic: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Record {
            msg: wit::Message {
                topic: topic.into(),
                key: None,
                value: value.into(),
                headers: Vec::new(),
                partition: None,
            },
        }
    }

    /// Sets the key.
    pub fn key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.msg.key = Some(key.into());
        self
    }

    /// Sets the key, or Kafka's null key for `None`.
    pub fn maybe_key<K: Into<Vec<u8>>>(mut self, key: Option<K>) -> Self {
        self.msg.key = key.map(Into::into);
        self
    }

    /// Adds a header; headers keep their order and a key may repeat.
    pub fn header(mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.msg.headers.push(wit::Header {
            key: key.into(),
            value: Some(value.into()),
        });
        self
    }

    /// Adds a header whose value is Kafka's null.
    pub fn null_header(mut self, key: impl Into<String>) -> Self {
        self.msg.headers.push(wit::Header {
            key: key.into(),
            value: None,
        });
        self
    }

    /// Sends the record to `partition` instead of letting the partitioner choose.
    pub fn partition(mut self, partition: i32) -> Self {
        self.msg.partition = Some(partition);
        self
    }

    /// The destination topic.
    pub fn topic(&self) -> &str {
        &self.msg.topic
    }

    /// The key; `None` is Kafka's null key.
    pub fn key_bytes(&self) -> Option<&[u8]> {
        self.msg.key.as_deref()
    }

    /// The value.
    pub fn value(&self) -> &[u8] {
        &self.msg.value
    }

    /// The headers in order, as `(key, value)`; a `None` value is Kafka's null.
    pub fn headers(&self) -> impl Iterator<Item = (&str, Option<&[u8]>)> {
        self.msg
            .headers
            .iter()
            .map(|h| (h.key.as_str(), h.value.as_deref()))
    }

    /// The explicit partition, if one was set.
    pub fn target_partition(&self) -> Option<i32> {
        self.msg.partition
    }

    /// Publishes the record (see [`publish`]).
    pub fn publish(&self) -> Result<Receipt, Error> {
        publish(self)
    }
}

/// Where a published record went, as `publish` returns it.
///
/// With autoflush on, `publish` returns after the broker acknowledged the record and `offset`
/// is its offset. With autoflush off, `publish` returns once the record is queued: `offset` is
/// then -1 and [`id`](Receipt::id) finds the record's [`DeliveryReport`] later.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Receipt {
    /// The record's id within this plugin instance, counting from 0.
    pub id: u64,
    /// The partition the record was sent to.
    pub partition: i32,
    /// The record's offset, or -1 while it is not acknowledged.
    pub offset: i64,
}

impl Receipt {
    /// Whether the broker had acknowledged the record when `publish` returned (`offset >= 0`).
    pub fn is_acknowledged(&self) -> bool {
        self.offset >= 0
    }
}

impl fmt::Display for Receipt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "id={} partition={} offset={}",
            self.id, self.partition, self.offset
        )
    }
}

impl From<wit::Receipt> for Receipt {
    fn from(r: wit::Receipt) -> Self {
        Receipt {
            id: r.id,
            partition: r.partition,
            offset: r.offset,
        }
    }
}

/// How one record ended, as [`take_reports`] returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryReport {
    /// The record's id, as in its [`Receipt`].
    pub id: u64,
    /// The record's topic.
    pub topic: String,
    /// The record's partition.
    pub partition: i32,
    /// The record's offset, or why it was not delivered.
    pub outcome: Result<i64, Error>,
}

impl DeliveryReport {
    /// Whether the record was delivered.
    pub fn is_ok(&self) -> bool {
        self.outcome.is_ok()
    }

    /// The record's offset, if it was delivered.
    pub fn offset(&self) -> Option<i64> {
        self.outcome.as_ref().ok().copied()
    }
}

impl fmt::Display for DeliveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "id={} topic={} partition={} ",
            self.id, self.topic, self.partition
        )?;
        match &self.outcome {
            Ok(offset) => write!(f, "offset={offset}"),
            Err(e) => write!(f, "error: {e}"),
        }
    }
}

impl From<wit::DeliveryReport> for DeliveryReport {
    fn from(r: wit::DeliveryReport) -> Self {
        DeliveryReport {
            id: r.id,
            topic: r.topic,
            partition: r.partition,
            outcome: r.outcome.map_err(Error::from),
        }
    }
}

/// Publishes `record`.
///
/// With autoflush on, returns after the broker acknowledged the record; with autoflush off,
/// returns once the record is queued (the [`Receipt`]'s offset is then -1). Which mode applies
/// is the host's choice, unless it lets the plugin switch with [`set_autoflush`].
pub fn publish(record: &Record) -> Result<Receipt, Error> {
    host::publish(&record.msg)
        .map(Receipt::from)
        .map_err(Error::from)
}

/// Waits until every record this instance published before the call is acknowledged or has
/// failed; returns the first failure since the previous flush.
pub fn flush() -> Result<(), Error> {
    host::flush().map_err(Error::from)
}

/// Switches autoflush for this instance: [`Error::NotAllowed`] where the host fixed the mode.
pub fn set_autoflush(enabled: bool) -> Result<(), Error> {
    host::set_autoflush(enabled).map_err(Error::from)
}

/// Takes up to `max` delivery reports of this instance's records, oldest first.
///
/// Each report is returned once; an empty list means none is pending right now.
pub fn take_reports(max: u32) -> Vec<DeliveryReport> {
    host::take_reports(max)
        .into_iter()
        .map(DeliveryReport::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{DeliveryReport, Receipt, Record};
    use crate::Error;

    #[test]
    fn builder() {
        let r = Record::new("t", "v")
            .key("k")
            .header("a", "1")
            .null_header("b")
            .partition(3);
        assert_eq!(r.topic(), "t");
        assert_eq!(r.value(), b"v");
        assert_eq!(r.key_bytes(), Some(&b"k"[..]));
        assert_eq!(
            r.headers().collect::<Vec<_>>(),
            [("a", Some(&b"1"[..])), ("b", None)]
        );
        assert_eq!(r.target_partition(), Some(3));
        let r = r.maybe_key(None::<Vec<u8>>);
        assert_eq!(r.key_bytes(), None);
    }

    #[test]
    fn display() {
        let receipt = Receipt {
            id: 1,
            partition: 2,
            offset: -1,
        };
        assert!(!receipt.is_acknowledged());
        assert_eq!(receipt.to_string(), "id=1 partition=2 offset=-1");
        let report = DeliveryReport {
            id: 1,
            topic: "t".into(),
            partition: 0,
            outcome: Err(Error::Closed),
        };
        assert_eq!(
            report.to_string(),
            "id=1 topic=t partition=0 error: producer closed"
        );
        assert_eq!(report.offset(), None);
    }
}
