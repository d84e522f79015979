//! Errors from the host's producer.

use std::fmt;

use crate::bindings::wafka::producer::types as wit;

/// Why the host did not publish or deliver a record (the WIT `produce-error`).
///
/// Its [`Display`](fmt::Display) is one line (line breaks in host-provided text become spaces).
/// It converts into `String`, so `?` works in [`Plugin::init`](crate::Plugin::init) and
/// [`Plugin::handle`](crate::Plugin::handle).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The plugin may not publish to this topic (host ACL or broker authorization).
    NotAuthorized(String),
    /// The topic name is not valid, or the topic does not exist.
    InvalidTopic(String),
    /// The record is larger than the host allows: the size of the encoded record in bytes.
    RecordTooLarge(u64),
    /// The producer's buffer stayed full for the host's maximum wait.
    BufferFull,
    /// The plugin used up its quota (memory, records or bytes).
    QuotaExceeded(String),
    /// The record was not acknowledged in time.
    TimedOut(String),
    /// The producer or this instance is closed.
    Closed,
    /// The host's policy does not allow this (e.g. [`set_autoflush`](crate::set_autoflush)
    /// when the host fixed the mode).
    NotAllowed(String),
    /// The broker refused the record.
    Broker(BrokerError),
}

/// An error answer from the broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerError {
    /// Kafka's error name, e.g. `NOT_ENOUGH_REPLICAS`.
    pub name: String,
    /// Kafka's error code.
    pub code: i16,
    /// The broker's message, if it sent one.
    pub message: Option<String>,
}

impl Error {
    /// The variant's name as in the WIT, e.g. `"not-authorized"`: stable text for logs and
    /// metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NotAuthorized(_) => "not-authorized",
            Error::InvalidTopic(_) => "invalid-topic",
            Error::RecordTooLarge(_) => "record-too-large",
            Error::BufferFull => "buffer-full",
            Error::QuotaExceeded(_) => "quota-exceeded",
            Error::TimedOut(_) => "timed-out",
            Error::Closed => "closed",
            Error::NotAllowed(_) => "not-allowed",
            Error::Broker(_) => "broker",
        }
    }
}

/// Writes `text` with line breaks and other control characters replaced by spaces.
fn one_line(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    if !text.contains(char::is_control) {
        return f.write_str(text);
    }
    for c in text.chars() {
        let c = if c.is_control() { ' ' } else { c };
        fmt::Write::write_char(f, c)?;
    }
    Ok(())
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotAuthorized(detail) => {
                f.write_str("not authorized: ")?;
                one_line(f, detail)
            }
            Error::InvalidTopic(detail) => {
                f.write_str("invalid topic: ")?;
                one_line(f, detail)
            }
            Error::RecordTooLarge(size) => write!(f, "record too large: {size} bytes"),
            Error::BufferFull => f.write_str("producer buffer full"),
            Error::QuotaExceeded(detail) => {
                f.write_str("quota exceeded: ")?;
                one_line(f, detail)
            }
            Error::TimedOut(detail) => {
                f.write_str("timed out: ")?;
                one_line(f, detail)
            }
            Error::Closed => f.write_str("producer closed"),
            Error::NotAllowed(detail) => {
                f.write_str("not allowed: ")?;
                one_line(f, detail)
            }
            Error::Broker(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl fmt::Display for BrokerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("broker error ")?;
        one_line(f, &self.name)?;
        write!(f, " ({})", self.code)?;
        if let Some(message) = &self.message {
            f.write_str(": ")?;
            one_line(f, message)?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

impl std::error::Error for BrokerError {}

impl From<Error> for String {
    fn from(e: Error) -> String {
        e.to_string()
    }
}

impl From<wit::ProduceError> for Error {
    fn from(e: wit::ProduceError) -> Self {
        match e {
            wit::ProduceError::NotAuthorized(s) => Error::NotAuthorized(s),
            wit::ProduceError::InvalidTopic(s) => Error::InvalidTopic(s),
            wit::ProduceError::RecordTooLarge(n) => Error::RecordTooLarge(n),
            wit::ProduceError::BufferFull => Error::BufferFull,
            wit::ProduceError::QuotaExceeded(s) => Error::QuotaExceeded(s),
            wit::ProduceError::TimedOut(s) => Error::TimedOut(s),
            wit::ProduceError::Closed => Error::Closed,
            wit::ProduceError::NotAllowed(s) => Error::NotAllowed(s),
            wit::ProduceError::Broker(b) => Error::Broker(BrokerError {
                name: b.name,
                code: b.code,
                message: b.message,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{BrokerError, Error};

    #[test]
    fn display_is_one_line() {
        let cases = [
            (Error::NotAuthorized("t".into()), "not authorized: t"),
            (
                Error::InvalidTopic("bad\nname".into()),
                "invalid topic: bad name",
            ),
            (Error::RecordTooLarge(12), "record too large: 12 bytes"),
            (Error::BufferFull, "producer buffer full"),
            (
                Error::QuotaExceeded("records".into()),
                "quota exceeded: records",
            ),
            (Error::TimedOut("30s".into()), "timed out: 30s"),
            (Error::Closed, "producer closed"),
            (Error::NotAllowed("fixed".into()), "not allowed: fixed"),
            (
                Error::Broker(BrokerError {
                    name: "NOT_ENOUGH_REPLICAS".into(),
                    code: 19,
                    message: Some("2 < 3\r\n".into()),
                }),
                "broker error NOT_ENOUGH_REPLICAS (19): 2 < 3  ",
            ),
            (
                Error::Broker(BrokerError {
                    name: "UNKNOWN".into(),
                    code: -1,
                    message: None,
                }),
                "broker error UNKNOWN (-1)",
            ),
        ];
        for (error, text) in cases {
            assert_eq!(error.to_string(), text);
            assert_eq!(String::from(error), text);
        }
    }

    #[test]
    fn kind() {
        assert_eq!(Error::BufferFull.kind(), "buffer-full");
        assert_eq!(Error::TimedOut(String::new()).kind(), "timed-out");
    }
}
