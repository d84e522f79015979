//! Checks over what a producer reported and what the broker holds, shared by the fault suites.
//!
//! Records carry `key:seq` values ([`keyed_value`]); [`Outcomes`] collects every record's one
//! result (through a callback, so a second result for a record is caught); [`check_log`] reads
//! the topic back with librdkafka and proves, per partition: each delivered record is there
//! exactly once, at the offset its report gave, in send order per key; a record that failed is
//! either absent or (when its error says the broker may still have stored it) present once.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wafka_producer::{Callback, ProduceError, Producer, RecordMetadata};

use crate::{consume_all, Consumed};

/// The value of record `seq` of `key`.
pub fn keyed_value(key: &str, seq: usize) -> String {
    format!("{key}:{seq}")
}

/// How one record ended, as its callback reported it.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Acknowledged at this partition and offset (`-1`: stored earlier, offset unknown).
    Delivered(i32, i64),
    /// Failed with this error.
    Failed(ProduceError),
}

#[derive(Default)]
struct Results {
    outcomes: HashMap<String, Outcome>,
    doubles: Vec<String>,
}

/// Every record's one result, keyed by its value.
#[derive(Clone, Default)]
pub struct Outcomes {
    inner: Arc<Mutex<Results>>,
}

impl Outcomes {
    /// A callback that records the result of the record with `value`.
    pub fn callback(&self, value: String) -> Callback {
        let inner = self.inner.clone();
        Box::new(move |r: Result<RecordMetadata, ProduceError>| {
            let outcome = match r {
                Ok(m) => Outcome::Delivered(m.partition, m.offset),
                Err(e) => Outcome::Failed(e),
            };
            let mut g = inner.lock().unwrap();
            if g.outcomes.insert(value.clone(), outcome).is_some() {
                g.doubles.push(value);
            }
        })
    }

    /// Results so far.
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap().outcomes.len()
    }

    /// Whether no result came yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records delivered so far.
    pub fn delivered(&self) -> usize {
        self.inner
            .lock()
            .unwrap()
            .outcomes
            .values()
            .filter(|o| matches!(o, Outcome::Delivered(..)))
            .count()
    }

    /// Errors so far, by their text, with how many records got each.
    pub fn errors(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for o in self.inner.lock().unwrap().outcomes.values() {
            if let Outcome::Failed(e) = o {
                *out.entry(e.to_string()).or_default() += 1;
            }
        }
        out
    }

    /// The result of the record with `value`.
    pub fn outcome(&self, value: &str) -> Option<Outcome> {
        self.inner.lock().unwrap().outcomes.get(value).cloned()
    }

    /// Panics if a record got two results.
    pub fn assert_no_doubles(&self) {
        let g = self.inner.lock().unwrap();
        assert!(
            g.doubles.is_empty(),
            "records with two results: {:?}",
            &g.doubles[..g.doubles.len().min(10)]
        );
    }

    /// Waits until `n` results came, up to `timeout`; returns whether they did.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.len() < n {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }
}

/// Whether the broker may have stored the records that got `e` (the error says so).
fn maybe_stored(e: &ProduceError) -> bool {
    matches!(e, ProduceError::DeliveryTimeout { cause, .. } if cause.contains("may"))
        || matches!(e, ProduceError::Closed)
}

/// Reads `topic` back from `brokers` and checks it against `outcomes` for `keys` × `per_key`
/// records sent with [`keyed_value`] values: every record has exactly one result; every
/// delivered record is in the log exactly once, at its reported offset (unless `-1`), in
/// send order per key; a failed record is absent, or present once when its error says the
/// broker may have stored it. Records in the topic that the producer never sent fail the
/// check, except values starting with `ignore`. Returns the records read.
///
/// # Panics
///
/// On the first violation, with what it found.
pub fn check_log(
    brokers: &str,
    topic: &str,
    outcomes: &Outcomes,
    keys: &[String],
    per_key: usize,
    ignore: &str,
) -> Vec<Consumed> {
    let results = outcomes.inner.lock().unwrap();
    assert!(
        results.doubles.is_empty(),
        "records with two results: {:?}",
        &results.doubles[..results.doubles.len().min(10)]
    );
    let sent = keys.len() * per_key;
    assert_eq!(
        results.outcomes.len(),
        sent,
        "every record sent has a result"
    );
    let log = consume_all(brokers, topic, Duration::from_secs(120));
    let mut seen: HashMap<String, Vec<&Consumed>> = HashMap::new();
    for r in &log {
        let value = String::from_utf8(r.value.clone().unwrap_or_default()).unwrap();
        if !ignore.is_empty() && value.starts_with(ignore) {
            continue;
        }
        seen.entry(value).or_default().push(r);
    }
    for (value, copies) in &seen {
        match results.outcomes.get(value) {
            None => panic!("{value} is in the log but was never sent"),
            Some(Outcome::Delivered(p, off)) => {
                assert_eq!(
                    copies.len(),
                    1,
                    "{value} delivered once but stored {} times: {copies:?}",
                    copies.len()
                );
                assert_eq!(copies[0].partition, *p, "{value}: reported partition");
                if *off >= 0 {
                    assert_eq!(copies[0].offset, *off, "{value}: reported offset");
                }
            }
            Some(Outcome::Failed(e)) => {
                assert!(
                    maybe_stored(e) && copies.len() == 1,
                    "{value} failed ({e}) but is stored {} times",
                    copies.len()
                );
            }
        }
    }
    for (value, o) in results.outcomes.iter() {
        if matches!(o, Outcome::Delivered(..)) {
            assert!(
                seen.contains_key(value),
                "{value} was reported delivered ({o:?}) but is not in the log"
            );
        }
    }
    // Send order per key: within a partition, a key's sequence numbers rise with the offset.
    let mut last: HashMap<&str, (i32, i64, usize)> = HashMap::new();
    let mut ordered: Vec<&Consumed> = log.iter().collect();
    ordered.sort_by_key(|r| (r.partition, r.offset));
    for r in ordered {
        let value = std::str::from_utf8(r.value.as_deref().unwrap_or_default()).unwrap();
        if !ignore.is_empty() && value.starts_with(ignore) {
            continue;
        }
        let (key, seq) = value.rsplit_once(':').expect("key:seq value");
        let seq: usize = seq.parse().expect("seq");
        if let Some((p, off, prev)) = last.insert(key, (r.partition, r.offset, seq)) {
            if p == r.partition {
                assert!(
                    seq > prev,
                    "key {key} out of order in partition {p}: seq {prev} at offset {off}, then seq {seq} at offset {}",
                    r.offset
                );
            }
        }
    }
    log
}

/// Flushes `p`, bounded: a flush that does not return within `bound` fails the test. Returns
/// how long it took.
///
/// # Panics
///
/// When the flush takes longer than `bound`.
pub async fn flush_within(p: &Producer, bound: Duration) -> Duration {
    let t = std::time::Instant::now();
    tokio::time::timeout(bound, p.flush())
        .await
        .unwrap_or_else(|_| panic!("flush did not return within {bound:?}"));
    t.elapsed()
}

/// [`check_log`] from async code (on a blocking thread).
///
/// # Panics
///
/// As [`check_log`].
pub async fn check_log_async(
    brokers: &str,
    topic: &str,
    outcomes: &Outcomes,
    keys: &[String],
    per_key: usize,
    ignore: &'static str,
) -> Vec<Consumed> {
    let (b, t, o, k) = (
        brokers.to_string(),
        topic.to_string(),
        outcomes.clone(),
        keys.to_vec(),
    );
    tokio::task::spawn_blocking(move || check_log(&b, &t, &o, &k, per_key, ignore))
        .await
        .expect("the check panicked")
}
