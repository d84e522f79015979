//! Failures `wafka test` injects into the capture sink, so that plugin authors can exercise
//! their error paths without a broker: fail a topic, fail every Nth record, make `flush` fail,
//! make delivery reports carry errors.
//!
//! Owns what can be injected, how it is written on the command line (`KIND`, `TOPIC=KIND`,
//! `N=KIND`) and when an injected error shows: the ones the host or the producer give before
//! a record is queued (`not-authorized`, `invalid-topic`, `record-too-large`, `buffer-full`,
//! `quota-exceeded`, `closed`, `not-allowed`) at `publish`; the ones that come from the
//! cluster after it (`timed-out`, `broker`) in the record's delivery report and the next
//! `flush`, or at `publish` under autoflush — as under `wafka run`. It must not touch the
//! capture's records (see `capture`).

use crate::runtime::bindings::{BrokerError, ProduceError as GuestError};

/// A `produce-error` case to inject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// `not-authorized`
    NotAuthorized,
    /// `invalid-topic`
    InvalidTopic,
    /// `record-too-large`
    RecordTooLarge,
    /// `buffer-full`
    BufferFull,
    /// `quota-exceeded`
    QuotaExceeded,
    /// `timed-out`
    TimedOut,
    /// `closed`
    Closed,
    /// `not-allowed`
    NotAllowed,
    /// `broker` with this Kafka error code (`broker` alone: NOT_ENOUGH_REPLICAS, 19).
    Broker(i16),
}

/// Every case's name on the command line, for errors and `--help`.
pub const FAULT_KINDS: &str = "not-authorized, invalid-topic, record-too-large, buffer-full, quota-exceeded, timed-out, closed, not-allowed, broker[:CODE]";

impl std::str::FromStr for FaultKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "not-authorized" => FaultKind::NotAuthorized,
            "invalid-topic" => FaultKind::InvalidTopic,
            "record-too-large" => FaultKind::RecordTooLarge,
            "buffer-full" => FaultKind::BufferFull,
            "quota-exceeded" => FaultKind::QuotaExceeded,
            "timed-out" => FaultKind::TimedOut,
            "closed" => FaultKind::Closed,
            "not-allowed" => FaultKind::NotAllowed,
            "broker" => FaultKind::Broker(19),
            other => match other.strip_prefix("broker:").map(str::parse::<i16>) {
                Some(Ok(code)) if code > 0 => FaultKind::Broker(code),
                _ => return Err(format!("`{s}` is not an error to inject ({FAULT_KINDS})")),
            },
        })
    }
}

impl FaultKind {
    /// Whether a real producer gives this error only after the record was queued (the
    /// cluster's answer), rather than at `publish`.
    pub fn after_queueing(&self) -> bool {
        matches!(self, FaultKind::TimedOut | FaultKind::Broker(_))
    }

    /// The error a plugin sees, for a record to `topic` of `size` bytes (encoded).
    pub(crate) fn error(&self, topic: &str, size: usize) -> GuestError {
        let injected = |what: &str| format!("{what} (injected by wafka test)");
        match self {
            FaultKind::NotAuthorized => GuestError::NotAuthorized(topic.to_string()),
            FaultKind::InvalidTopic => {
                GuestError::InvalidTopic(injected(&format!("topic `{topic}` does not exist")))
            }
            FaultKind::RecordTooLarge => GuestError::RecordTooLarge(size as u64),
            FaultKind::BufferFull => GuestError::BufferFull,
            FaultKind::QuotaExceeded => GuestError::QuotaExceeded(injected("quota used up")),
            FaultKind::TimedOut => GuestError::TimedOut(injected(
                "record expired after delivery.timeout.ms=120000 ms",
            )),
            FaultKind::Closed => GuestError::Closed,
            FaultKind::NotAllowed => {
                GuestError::NotAllowed(injected("the host's policy does not allow this"))
            }
            FaultKind::Broker(code) => GuestError::Broker(BrokerError {
                name: wafka_producer::kafka_error_name(*code),
                code: *code,
                message: Some(injected("the broker refused the record")),
            }),
        }
    }
}

/// What `wafka test` injects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    /// Records to these topics fail (`--fail-topic TOPIC=KIND`).
    pub topics: Vec<(String, FaultKind)>,
    /// Every Nth record fails, counting every record the host's own checks let through
    /// (`--fail-every N=KIND`).
    pub every: Option<(u64, FaultKind)>,
    /// `flush` fails (`--fail-flush KIND`); the records stay captured.
    pub flush: Option<FaultKind>,
    /// Every record is queued, then its delivery report carries this error
    /// (`--fail-reports KIND`).
    pub reports: Option<FaultKind>,
}

/// How an injected failure shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Injected {
    /// `publish` answers it.
    AtPublish(FaultKind),
    /// The record is queued (not captured); its report and the next `flush` carry it.
    InReport(FaultKind),
}

impl Faults {
    /// Whether anything is injected.
    pub fn is_empty(&self) -> bool {
        *self == Faults::default()
    }

    /// What happens to the `n`-th record (from 1) that passed the host's checks, to `topic`.
    pub(crate) fn for_record(&self, topic: &str, n: u64) -> Option<Injected> {
        let kind = self
            .topics
            .iter()
            .find(|(t, _)| t == topic)
            .map(|(_, k)| k)
            .or_else(|| {
                self.every
                    .as_ref()
                    .filter(|(every, _)| n.is_multiple_of(*every))
                    .map(|(_, k)| k)
            });
        match kind {
            Some(k) if k.after_queueing() => Some(Injected::InReport(k.clone())),
            Some(k) => Some(Injected::AtPublish(k.clone())),
            None => self.reports.clone().map(Injected::InReport),
        }
    }

    /// Parses `TOPIC=KIND` (`--fail-topic`).
    pub fn parse_topic(s: &str) -> Result<(String, FaultKind), String> {
        let (topic, kind) = s
            .split_once('=')
            .filter(|(t, _)| !t.is_empty())
            .ok_or_else(|| format!("`{s}`: expected TOPIC=KIND"))?;
        Ok((topic.to_string(), kind.parse()?))
    }

    /// Checks a KIND given to `--fail-reports` or `--fail-flush`: only what a delivery can
    /// end with (a cluster never reports `buffer-full`, `quota-exceeded` or `not-allowed`:
    /// the host gives those at `publish`).
    pub fn delivery_kind(s: &str) -> Result<FaultKind, String> {
        let kind: FaultKind = s.parse()?;
        match kind {
            FaultKind::BufferFull | FaultKind::QuotaExceeded | FaultKind::NotAllowed => Err(format!(
                "`{s}` never ends a delivery (the host gives it at publish): use --fail-topic or --fail-every; here: not-authorized, invalid-topic, record-too-large, timed-out, closed, broker[:CODE]"
            )),
            k => Ok(k),
        }
    }

    /// Parses `N=KIND` (`--fail-every`).
    pub fn parse_every(s: &str) -> Result<(u64, FaultKind), String> {
        let (n, kind) = s
            .split_once('=')
            .ok_or_else(|| format!("`{s}`: expected N=KIND"))?;
        let n: u64 = n
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("`{s}`: N must be a whole number from 1"))?;
        Ok((n, kind.parse()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_read_as_written_and_bad_ones_say_what_is_allowed() {
        assert_eq!("timed-out".parse(), Ok(FaultKind::TimedOut));
        assert_eq!("broker".parse(), Ok(FaultKind::Broker(19)));
        assert_eq!("broker:7".parse(), Ok(FaultKind::Broker(7)));
        let e = "broker:x".parse::<FaultKind>().unwrap_err();
        assert!(
            e.contains("not-authorized") && e.contains("broker[:CODE]"),
            "{e}"
        );
        assert!("nope".parse::<FaultKind>().is_err());
        assert_eq!(
            Faults::parse_topic("orders=closed"),
            Ok(("orders".into(), FaultKind::Closed))
        );
        assert!(Faults::parse_topic("=closed").is_err());
        assert_eq!(
            Faults::parse_every("3=broker"),
            Ok((3, FaultKind::Broker(19)))
        );
        assert!(Faults::parse_every("0=closed").is_err());
    }

    #[test]
    fn a_fault_shows_where_production_shows_it() {
        let f = Faults {
            topics: vec![("bad".into(), FaultKind::NotAuthorized)],
            every: Some((3, FaultKind::TimedOut)),
            ..Default::default()
        };
        assert_eq!(
            f.for_record("bad", 1),
            Some(Injected::AtPublish(FaultKind::NotAuthorized))
        );
        assert_eq!(f.for_record("ok", 1), None);
        assert_eq!(
            f.for_record("ok", 3),
            Some(Injected::InReport(FaultKind::TimedOut))
        );
        let all = Faults {
            reports: Some(FaultKind::NotAuthorized),
            ..Default::default()
        };
        assert_eq!(
            all.for_record("any", 1),
            Some(Injected::InReport(FaultKind::NotAuthorized))
        );
    }
}
