//! A fake host for plugins' native unit tests (`cargo test` on the build machine).
//!
//! On targets other than `wasm32` the SDK's [`publish`](crate::publish), [`flush`](crate::flush),
//! [`set_autoflush`](crate::set_autoflush) and [`take_reports`](crate::take_reports) talk to
//! this fake instead of the host: it keeps what was published, answers receipts and delivery
//! reports as the host does (offsets per partition, `-1` until acknowledged unless autoflush is
//! on), and refuses or fails what a test asks it to, so a plugin's error paths can be tested
//! without building a component. Each test thread has its own fake; [`reset`] starts afresh.
//!
//! ```
//! use wafka_guest::{testing, Error, Record};
//!
//! testing::reset();
//! Record::new("orders", "one").key("k").publish().unwrap();
//! testing::refuse_topic("audit", Error::NotAuthorized("audit".into()));
//! assert!(matches!(Record::new("audit", "x").publish(), Err(Error::NotAuthorized(_))));
//! let published = testing::published();
//! assert_eq!(published.len(), 1);
//! assert_eq!(published[0].value, b"one");
//! ```
//!
//! It must not be compiled into a component (it is not, on `wasm32`).

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};

use crate::bindings::wafka::producer::types as wit;
use crate::{BrokerError, Error};

/// A record the plugin published, as the fake host kept it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    /// Its topic.
    pub topic: String,
    /// Its key; `None` is Kafka's null key.
    pub key: Option<Vec<u8>>,
    /// Its value.
    pub value: Vec<u8>,
    /// Its headers, in order.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// The partition asked for, else 0.
    pub partition: i32,
    /// Its offset in that partition (counting from 0 per topic and partition).
    pub offset: i64,
}

#[derive(Default)]
struct Fake {
    published: Vec<Published>,
    next_id: u64,
    offsets: HashMap<(String, i32), i64>,
    autoflush: bool,
    fixed: Option<bool>,
    refused_topics: Vec<(String, Error)>,
    refuse_next: VecDeque<Error>,
    failing_reports: Option<Error>,
    failing_flush: Option<Error>,
    reports: VecDeque<wit::DeliveryReport>,
    first_failure: Option<Error>,
}

thread_local! {
    static FAKE: RefCell<Fake> = RefCell::new(Fake::default());
}

fn with<T>(f: impl FnOnce(&mut Fake) -> T) -> T {
    FAKE.with(|fake| f(&mut fake.borrow_mut()))
}

/// Starts afresh: nothing published, no refusals, autoflush off and the plugin's to choose.
pub fn reset() {
    with(|f| *f = Fake::default());
}

/// What was published (and not refused) since [`reset`], in order.
pub fn published() -> Vec<Published> {
    with(|f| f.published.clone())
}

/// Every record to `topic` is refused at `publish` with `error` (as the host's ACL refuses:
/// `Error::NotAuthorized(topic)`, say).
pub fn refuse_topic(topic: &str, error: Error) {
    with(|f| f.refused_topics.push((topic.to_string(), error)));
}

/// The next `publish` is refused with `error` (then they go through again).
pub fn refuse_next(error: Error) {
    with(|f| f.refuse_next.push_back(error));
}

/// Every record published from now on is queued, then not delivered: its delivery report (and
/// the next `flush`) carries `error`, as when the broker refuses it.
pub fn fail_reports(error: Error) {
    with(|f| f.failing_reports = Some(error));
}

/// Every `flush` fails with `error`.
pub fn fail_flush(error: Error) {
    with(|f| f.failing_flush = Some(error));
}

/// The host fixes autoflush to `on` (`Some(true)`), `off` (`Some(false)`), or lets the plugin
/// choose (`None`, the default); a fixed mode refuses `set_autoflush` with `not-allowed`.
pub fn fix_autoflush(mode: Option<bool>) {
    with(|f| {
        f.fixed = mode;
        if let Some(on) = mode {
            f.autoflush = on;
        }
    });
}

/// Whether autoflush is on for the plugin now.
pub fn autoflush() -> bool {
    with(|f| f.autoflush)
}

/// The producer interface, answered by the fake: the SDK calls these instead of the bindings'
/// imports on targets other than `wasm32`.
pub(crate) mod host {
    use super::*;

    pub(crate) fn publish(msg: &wit::Message) -> Result<wit::Receipt, wit::ProduceError> {
        with(|f| {
            let refused = f.refuse_next.pop_front().or_else(|| {
                f.refused_topics
                    .iter()
                    .find(|(t, _)| *t == msg.topic)
                    .map(|(_, e)| e.clone())
            });
            if let Some(e) = refused {
                return Err(to_wit(&e));
            }
            let id = f.next_id;
            f.next_id += 1;
            let partition = msg.partition.unwrap_or(0);
            if let Some(e) = f.failing_reports.clone() {
                if f.autoflush {
                    return Err(to_wit(&e));
                }
                f.first_failure.get_or_insert_with(|| e.clone());
                f.reports.push_back(wit::DeliveryReport {
                    id,
                    topic: msg.topic.clone(),
                    partition,
                    outcome: Err(to_wit(&e)),
                });
                return Ok(wit::Receipt {
                    id,
                    partition,
                    offset: -1,
                });
            }
            let next = f.offsets.entry((msg.topic.clone(), partition)).or_insert(0);
            let offset = *next;
            *next += 1;
            f.published.push(Published {
                topic: msg.topic.clone(),
                key: msg.key.clone(),
                value: msg.value.clone(),
                headers: msg
                    .headers
                    .iter()
                    .map(|h| (h.key.clone(), h.value.clone()))
                    .collect(),
                partition,
                offset,
            });
            f.reports.push_back(wit::DeliveryReport {
                id,
                topic: msg.topic.clone(),
                partition,
                outcome: Ok(offset),
            });
            Ok(wit::Receipt {
                id,
                partition,
                offset: if f.autoflush { offset } else { -1 },
            })
        })
    }

    pub(crate) fn flush() -> Result<(), wit::ProduceError> {
        with(|f| {
            if let Some(e) = &f.failing_flush {
                return Err(to_wit(e));
            }
            match f.first_failure.take() {
                Some(e) => Err(to_wit(&e)),
                None => Ok(()),
            }
        })
    }

    pub(crate) fn set_autoflush(enabled: bool) -> Result<(), wit::ProduceError> {
        with(|f| match f.fixed {
            Some(on) => Err(wit::ProduceError::NotAllowed(format!(
                "the host fixed autoflush to {}",
                if on { "on" } else { "off" }
            ))),
            None => {
                f.autoflush = enabled;
                Ok(())
            }
        })
    }

    pub(crate) fn take_reports(max: u32) -> Vec<wit::DeliveryReport> {
        with(|f| {
            let n = f.reports.len().min(max as usize);
            f.reports.drain(..n).collect()
        })
    }
}

/// The WIT error for an SDK error (the fake answers in the bindings' types).
fn to_wit(e: &Error) -> wit::ProduceError {
    match e {
        Error::NotAuthorized(t) => wit::ProduceError::NotAuthorized(t.clone()),
        Error::InvalidTopic(t) => wit::ProduceError::InvalidTopic(t.clone()),
        Error::RecordTooLarge(n) => wit::ProduceError::RecordTooLarge(*n),
        Error::BufferFull => wit::ProduceError::BufferFull,
        Error::QuotaExceeded(t) => wit::ProduceError::QuotaExceeded(t.clone()),
        Error::TimedOut(t) => wit::ProduceError::TimedOut(t.clone()),
        Error::Closed => wit::ProduceError::Closed,
        Error::NotAllowed(t) => wit::ProduceError::NotAllowed(t.clone()),
        Error::Broker(BrokerError {
            name,
            code,
            message,
        }) => wit::ProduceError::Broker(wit::BrokerError {
            name: name.clone(),
            code: *code,
            message: message.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{flush, set_autoflush, take_reports, Record};

    #[test]
    fn receipts_reports_and_refusals_as_the_host() {
        reset();
        let r = Record::new("t", "a").publish().unwrap();
        assert_eq!((r.id, r.offset), (0, -1));
        set_autoflush(true).unwrap();
        let r = Record::new("t", "b").partition(2).publish().unwrap();
        assert_eq!((r.id, r.partition, r.offset), (1, 2, 0));
        let reports = take_reports(10);
        assert_eq!(reports.len(), 2);
        assert_eq!(reports[0].outcome, Ok(0));

        refuse_next(Error::BufferFull);
        assert_eq!(Record::new("t", "c").publish(), Err(Error::BufferFull));
        Record::new("t", "d").publish().unwrap();

        set_autoflush(false).unwrap();
        fail_reports(Error::TimedOut("expired".into()));
        let r = Record::new("t", "e").publish().unwrap();
        assert_eq!(r.offset, -1);
        assert_eq!(
            take_reports(10)
                .into_iter()
                .map(|r| r.outcome)
                .collect::<Vec<_>>(),
            [Ok(1), Err(Error::TimedOut("expired".into()))]
        );
        assert_eq!(flush(), Err(Error::TimedOut("expired".into())));
        assert_eq!(flush(), Ok(()));
        let values: Vec<Vec<u8>> = published().into_iter().map(|p| p.value).collect();
        assert_eq!(values, [b"a".to_vec(), b"b".to_vec(), b"d".to_vec()]);

        fix_autoflush(Some(false));
        assert!(matches!(set_autoflush(true), Err(Error::NotAllowed(_))));
    }
}
