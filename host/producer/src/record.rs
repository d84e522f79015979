//! What a caller hands to the producer: a record borrowed from the caller's memory.
//!
//! Owns the [`Record`] and [`Header`] shapes and their encoded size. The bytes stay where the
//! caller has them until the accumulator copies them, once, into a batch; nothing here copies.

/// One record header: a UTF-8 key and an optional value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// Header key.
    pub key: &'a str,
    /// Header value; `None` is Kafka's null.
    pub value: Option<&'a [u8]>,
}

impl<'a> Header<'a> {
    /// A header with a value.
    pub fn new(key: &'a str, value: &'a [u8]) -> Self {
        Header {
            key,
            value: Some(value),
        }
    }
}

/// A record to send, borrowing its key, value and headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Destination topic.
    pub topic: &'a str,
    /// Explicit partition; `None` lets the partitioner choose.
    pub partition: Option<i32>,
    /// Record key; `None` is Kafka's null key.
    pub key: Option<&'a [u8]>,
    /// Record value; `None` is Kafka's null value (a tombstone).
    pub value: Option<&'a [u8]>,
    /// Record headers, in order.
    pub headers: &'a [Header<'a>],
    /// Create time in milliseconds since the epoch; `None` means now.
    pub timestamp: Option<i64>,
}

impl<'a> Record<'a> {
    /// A record for `topic` with `value`, no key and no headers.
    pub fn new(topic: &'a str, value: &'a [u8]) -> Self {
        Record {
            topic,
            partition: None,
            key: None,
            value: Some(value),
            headers: &[],
            timestamp: None,
        }
    }

    /// Sets the key.
    pub fn key(mut self, key: &'a [u8]) -> Self {
        self.key = Some(key);
        self
    }

    /// Sets the partition.
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Sets the headers.
    pub fn headers(mut self, headers: &'a [Header<'a>]) -> Self {
        self.headers = headers;
        self
    }

    /// Sets the create time (milliseconds since the epoch).
    pub fn timestamp(mut self, ms: i64) -> Self {
        self.timestamp = Some(ms);
        self
    }

    /// Bytes of key, value and headers: what the caller hands over.
    pub fn payload_len(&self) -> usize {
        self.key.map_or(0, <[u8]>::len)
            + self.value.map_or(0, <[u8]>::len)
            + self
                .headers
                .iter()
                .map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len))
                .sum::<usize>()
    }
}
