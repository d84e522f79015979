//! The idempotent producer: the only owner of producer id, epoch and sequence numbers (the
//! Java client's TransactionManager, its idempotent half).
//!
//! Rules, as Java's, with one simplification the accumulator guarantees: a partition's batches
//! leave in the order they were made, and after any of them comes back unsettled the partition
//! drains (nothing more leaves until none is in flight), so numbers are handed out in queue
//! order from a settled state:
//!
//! - A batch gets its numbers when it is first sent: the partition's identity (producer id and
//!   epoch) and its next sequence. A retry goes with the same numbers, so the broker can tell a
//!   batch it already stored (DUPLICATE_SEQUENCE_NUMBER) from a new one.
//! - Numbers are only ever given again to a batch the broker **provably** did not store: it
//!   answered OUT_OF_ORDER_SEQUENCE_NUMBER or UNKNOWN_PRODUCER_ID for the partition's first
//!   unacknowledged sequence (the broker lost our state: KIP-360), or refused the epoch. The
//!   same answers for a later batch only mean an earlier one is not stored yet (several in
//!   flight): it goes again with its numbers, after the earlier one. A batch the broker found
//!   too large goes again as two halves numbered within its range. A batch whose request timed
//!   out or whose connection dropped keeps its numbers until an answer settles it.
//! - When a partition moves to a new identity, every batch of it not stored yet is numbered
//!   again, in order, under the new one (Java's `startSequencesAtBeginning`): the broker cannot
//!   have stored a batch after the gap or loss that made it move.
//! - When a numbered batch is dropped (it expired, or failed for good), the partition's
//!   sequence has a gap, so the partition moves to a new identity before numbering again
//!   (KIP-360): **only that partition** restarts at sequence 0; the others keep theirs.
//! - A new identity is the current epoch plus one, bumped by the client as the Java client
//!   does for idempotent producers; a cluster that refuses client-side bumps (PRODUCER_FENCED or
//!   INVALID_PRODUCER_EPOCH for a bumped epoch) gets a new producer id from InitProducerId
//!   instead, from then on. So does an epoch at its maximum.
//! - InitProducerId is asked for only while some batch waits for an identity, once per backoff;
//!   a refusal (authorization, unsupported) is fatal when `enable.idempotence=true` was set,
//!   and turns idempotence off otherwise, once, with a warning.
//!
//! It must not send Produce requests nor touch batches beyond their numbers.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::InitProducerIdRequest;
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::control::{ConnectOptions, ControlLink};
use crate::error::{kafka_error_name, ProduceError};

/// A producer id and epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) pid: i64,
    pub(crate) epoch: i16,
}

/// The numbers a batch goes out with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub(crate) identity: Identity,
    pub(crate) base_sequence: i32,
}

/// One partition's sequence state (kept under the partition's lock).
#[derive(Debug, Default)]
pub(crate) struct Sequence {
    identity: Option<Identity>,
    next: i32,
    /// The sequence after the last batch stored under `identity`: the first the broker waits
    /// for.
    acked: i32,
    /// Must move to a newer identity before numbering again (a gap, or the broker lost us).
    renumber: bool,
}

/// Why a batch cannot be numbered now.
#[derive(Debug, Clone)]
pub(crate) enum NoStamp {
    /// No identity yet: look again at this time (or when the identity changes).
    Wait(Option<Instant>, String),
    /// The producer cannot go on.
    Fatal(ProduceError),
}

#[derive(Debug)]
struct State {
    /// The newest identity.
    current: Option<Identity>,
    /// Whether `current` may number batches (false while a replacement is fetched).
    usable: bool,
    /// The cluster takes client-side epoch bumps (until it refuses one).
    local_bumps: bool,
    /// Identities this client bumped itself, newest last (to recognise a refusal).
    bumped: Vec<Identity>,
    /// Partitions that numbered batches with `current` were forgotten (an idle topic): a new
    /// partition must not start at sequence 0 under it (the broker may still hold its state).
    current_forgotten: bool,
    fetching: bool,
    retry_at: Option<Instant>,
    failures: u32,
    last_error: Option<String>,
    fatal: Option<ProduceError>,
}

/// What the sinks share about idempotence.
pub(crate) struct Idempotence {
    enabled: AtomicBool,
    has_fatal: AtomicBool,
    explicit: bool,
    state: Mutex<State>,
    /// Bumped whenever waiting sinks should look again (an identity came, a fetch failed,
    /// idempotence was switched off, a fatal error).
    changed: watch::Sender<u64>,
    link: tokio::sync::Mutex<ControlLink>,
    known_brokers: Mutex<Vec<String>>,
    backoff: Duration,
    backoff_max: Duration,
    shutdown: watch::Receiver<bool>,
    /// The producer's runtime: fetches start there, whichever task asked (unit tests build
    /// this outside one).
    runtime: Option<tokio::runtime::Handle>,
    /// InitProducerId answers that gave an identity.
    pub(crate) producer_ids: AtomicU64,
    /// Client-side epoch bumps.
    pub(crate) epoch_bumps: AtomicU64,
}

impl Idempotence {
    pub(crate) fn new(
        enabled: bool,
        explicit: bool,
        options: ConnectOptions,
        bootstrap: Vec<String>,
        backoff: Duration,
        backoff_max: Duration,
        shutdown: watch::Receiver<bool>,
    ) -> Arc<Self> {
        Arc::new(Idempotence {
            enabled: AtomicBool::new(enabled),
            has_fatal: AtomicBool::new(false),
            explicit,
            state: Mutex::new(State {
                current: None,
                usable: false,
                local_bumps: true,
                bumped: Vec::new(),
                current_forgotten: false,
                fetching: false,
                retry_at: None,
                failures: 0,
                last_error: None,
                fatal: None,
            }),
            changed: watch::channel(0).0,
            link: tokio::sync::Mutex::new(ControlLink::new(options, bootstrap)),
            known_brokers: Mutex::new(Vec::new()),
            backoff,
            backoff_max,
            runtime: tokio::runtime::Handle::try_current().ok(),
            shutdown,
            producer_ids: AtomicU64::new(0),
            epoch_bumps: AtomicU64::new(0),
        })
    }

    /// Whether batches get numbers.
    pub(crate) fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    /// The fatal error, once there is one.
    pub(crate) fn fatal(&self) -> Option<ProduceError> {
        if !self.has_fatal.load(Ordering::Acquire) {
            return None;
        }
        self.state.lock().fatal.clone()
    }

    /// Changes when waiting sinks should look again.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Brokers the fetch may ask (from metadata).
    pub(crate) fn set_known_brokers(&self, brokers: Vec<String>) {
        *self.known_brokers.lock() = brokers;
    }

    fn notify(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The numbers for a batch of `count` records about to be sent: the ones it already has
    /// (a retry), or the partition's next ones. `None` without idempotence.
    pub(crate) fn stamp(
        self: &Arc<Self>,
        seq: &mut Sequence,
        stamp: &mut Option<Stamp>,
        count: i32,
    ) -> Result<Option<Stamp>, NoStamp> {
        if !self.enabled() {
            *stamp = None;
            return Ok(None);
        }
        if let Some(s) = *stamp {
            if Some(s.identity) == seq.identity && !seq.renumber {
                return Ok(Some(s));
            }
        }
        if seq.identity.is_none() || seq.renumber {
            let identity = self.fresh(seq.identity)?;
            seq.identity = Some(identity);
            seq.next = 0;
            seq.acked = 0;
            seq.renumber = false;
        }
        let s = Stamp {
            identity: seq.identity.expect("set above"),
            base_sequence: seq.next,
        };
        seq.next = seq.next.wrapping_add(count) & i32::MAX;
        *stamp = Some(s);
        Ok(Some(s))
    }

    /// An identity newer than `old` (the current one if `old` is older; a bumped or fetched
    /// one if `old` is the current one).
    fn fresh(self: &Arc<Self>, old: Option<Identity>) -> Result<Identity, NoStamp> {
        let mut st = self.state.lock();
        if let Some(e) = &st.fatal {
            return Err(NoStamp::Fatal(e.clone()));
        }
        // A partition with no identity yet starts under the current one, unless forgotten
        // partitions used it; one with an older identity moves to the current one.
        let stale = match old {
            None => st.current_forgotten,
            Some(id) => Some(id) == st.current,
        };
        match (st.current, st.usable) {
            (Some(cur), true) if !stale => return Ok(cur),
            (Some(cur), true) if st.local_bumps && cur.epoch < i16::MAX => {
                let bumped = Identity {
                    pid: cur.pid,
                    epoch: cur.epoch + 1,
                };
                st.current = Some(bumped);
                st.current_forgotten = false;
                st.bumped.push(bumped);
                if st.bumped.len() > 16 {
                    st.bumped.remove(0);
                }
                self.epoch_bumps.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    pid = bumped.pid,
                    epoch = bumped.epoch,
                    "producer epoch bumped"
                );
                return Ok(bumped);
            }
            (Some(_), true) => st.usable = false,
            _ => {}
        }
        let now = Instant::now();
        if !st.fetching && st.retry_at.is_none_or(|at| at <= now) {
            st.fetching = true;
            let me = self.clone();
            let fetch = async move { me.fetch().await };
            match &self.runtime {
                Some(runtime) => drop(runtime.spawn(fetch)),
                None => drop(tokio::spawn(fetch)),
            }
        }
        let why = match &st.last_error {
            Some(e) => format!("waiting for a producer id (InitProducerId failed: {e})"),
            None => "waiting for a producer id".to_string(),
        };
        Err(NoStamp::Wait(st.retry_at.filter(|at| *at > now), why))
    }

    /// The broker provably did not store the batch and the partition must renumber under a
    /// newer identity.
    pub(crate) fn renumber(&self, seq: &mut Sequence, stamp: &mut Option<Stamp>) {
        if stamp.take().is_some() {
            seq.renumber = true;
        }
    }

    /// OUT_OF_ORDER_SEQUENCE_NUMBER or UNKNOWN_PRODUCER_ID: for the first sequence the broker
    /// waits for, it lost the producer's state (renumber under a newer identity, KIP-360); for
    /// a later one, an earlier batch is not stored yet (it goes again first): keep the numbers.
    pub(crate) fn out_of_order(&self, seq: &mut Sequence, stamp: &mut Option<Stamp>) {
        if let Some(s) = *stamp {
            if Some(s.identity) == seq.identity && s.base_sequence == seq.acked {
                self.renumber(seq, stamp);
            }
        }
    }

    /// A batch was stored with `stamp` (`count` records): the broker now waits for what
    /// follows it.
    pub(crate) fn stored(&self, seq: &mut Sequence, stamp: Option<Stamp>, count: i32) {
        if let Some(s) = stamp {
            if Some(s.identity) == seq.identity {
                seq.acked = s.base_sequence.wrapping_add(count) & i32::MAX;
            }
        }
    }

    /// The broker refused the batch's epoch (PRODUCER_FENCED, INVALID_PRODUCER_EPOCH): if it was
    /// one this client bumped, the cluster does not take client-side bumps; fetch ids instead.
    pub(crate) fn refused(&self, seq: &mut Sequence, stamp: &mut Option<Stamp>) {
        if let Some(s) = *stamp {
            let mut st = self.state.lock();
            if st.bumped.contains(&s.identity) {
                if st.local_bumps {
                    tracing::info!(
                        "the cluster refuses client-side epoch bumps; new producer ids are fetched instead"
                    );
                }
                st.local_bumps = false;
            }
            if st.current == Some(s.identity) {
                st.usable = false;
            }
        }
        self.renumber(seq, stamp);
    }

    /// A partition's queue is forgotten (its topic was idle): if it numbered batches under the
    /// current identity, new partitions move on from it before numbering.
    pub(crate) fn forget(&self, seq: &Sequence) {
        if let Some(id) = seq.identity {
            let mut st = self.state.lock();
            if st.current == Some(id) {
                st.current_forgotten = true;
            }
        }
    }

    /// A numbered batch ended without being stored for sure (it expired or failed): its numbers
    /// leave a gap, so the partition renumbers under a newer identity.
    pub(crate) fn dropped(&self, seq: &mut Sequence, stamp: Option<Stamp>) {
        if let Some(s) = stamp {
            if seq.identity == Some(s.identity) {
                seq.renumber = true;
            }
        }
    }

    async fn fetch(self: Arc<Self>) {
        let known = self.known_brokers.lock().clone();
        let mut shutdown = self.shutdown.clone();
        let result = tokio::select! {
            r = async {
                let mut link = self.link.lock().await;
                link.request::<InitProducerIdRequest, _>(&known, |conn| {
                    let version = conn.version::<InitProducerIdRequest>(4).map_err(|e| {
                        conn.protocol(format!("no InitProducerId: {e}"))
                    })?;
                    let mut req = InitProducerIdRequest::default();
                    req.transactional_id = None;
                    req.transaction_timeout_ms = 60_000;
                    req.producer_id = (-1).into();
                    req.producer_epoch = -1;
                    Ok((req, version))
                })
                .await
            } => Some(r),
            _ = shutdown.wait_for(|s| *s) => None,
        };
        let Some(result) = result else { return };
        let mut st = self.state.lock();
        st.fetching = false;
        match result {
            Ok(resp) if resp.error_code == 0 => {
                let id = Identity {
                    pid: resp.producer_id.0,
                    epoch: resp.producer_epoch,
                };
                if st.failures > 0 {
                    tracing::info!(pid = id.pid, epoch = id.epoch, "got a producer id");
                } else {
                    tracing::debug!(pid = id.pid, epoch = id.epoch, "got a producer id");
                }
                st.current = Some(id);
                st.usable = true;
                st.current_forgotten = false;
                st.failures = 0;
                st.retry_at = None;
                st.last_error = None;
                self.producer_ids.fetch_add(1, Ordering::Relaxed);
            }
            Ok(resp) if matches!(resp.error_code, 31 | 35 | 53) => {
                // CLUSTER_AUTHORIZATION_FAILED, UNSUPPORTED_VERSION,
                // TRANSACTIONAL_ID_AUTHORIZATION_FAILED: asking again will not help.
                let why = format!(
                    "the cluster refused InitProducerId with {}",
                    kafka_error_name(resp.error_code)
                );
                self.refuse(&mut st, why);
            }
            Err(crate::connection::NetError::Protocol { reason, .. })
                if reason.starts_with("no InitProducerId") =>
            {
                self.refuse(&mut st, reason);
            }
            Ok(resp) => self.failed(&mut st, kafka_error_name(resp.error_code)),
            Err(e) => self.failed(&mut st, e.to_string()),
        }
        drop(st);
        self.notify();
    }

    fn failed(&self, st: &mut State, why: String) {
        if st.failures == 0 {
            tracing::warn!("InitProducerId failed, retrying while records wait: {why}");
        } else {
            tracing::debug!("InitProducerId failed again: {why}");
        }
        let wait = self
            .backoff
            .saturating_mul(1 << st.failures.min(16))
            .min(self.backoff_max);
        st.failures += 1;
        st.retry_at = Some(Instant::now() + wait);
        st.last_error = Some(why);
    }

    fn refuse(&self, st: &mut State, why: String) {
        if self.explicit {
            let e = ProduceError::Fatal(format!("enable.idempotence=true but {why}"));
            tracing::error!("{e}");
            st.fatal = Some(e);
            self.has_fatal.store(true, Ordering::Release);
        } else {
            tracing::warn!("idempotence switched off: {why}");
            self.enabled.store(false, Ordering::Release);
        }
    }
}

/// An idempotence module for unit tests: no broker behind it.
#[cfg(test)]
pub(crate) fn for_tests(enabled: bool) -> Arc<Idempotence> {
    let options = ConnectOptions {
        client_id: "t".into(),
        setup_timeout: Duration::from_millis(10),
        request_timeout: Duration::from_millis(10),
        backoff: Duration::from_millis(10),
        backoff_max: Duration::from_millis(10),
        security: Default::default(),
    };
    Idempotence::new(
        enabled,
        false,
        options,
        vec![],
        Duration::from_millis(10),
        Duration::from_millis(10),
        watch::channel(false).1,
    )
}

/// An enabled idempotence module for unit tests, with producer id 7 at epoch 0 in hand.
#[cfg(test)]
pub(crate) fn for_tests_with_id() -> Arc<Idempotence> {
    let i = for_tests(true);
    {
        let mut st = i.state.lock();
        st.current = Some(Identity { pid: 7, epoch: 0 });
        st.usable = true;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idem() -> Arc<Idempotence> {
        for_tests_with_id()
    }

    #[test]
    fn retries_keep_their_numbers_and_a_gap_moves_only_its_partition() {
        let i = idem();
        let (mut a, mut b) = (Sequence::default(), Sequence::default());
        let mut s1 = None;
        let first = i.stamp(&mut a, &mut s1, 3).unwrap().unwrap();
        assert_eq!(first.base_sequence, 0);
        // A retry: the same numbers.
        assert_eq!(i.stamp(&mut a, &mut s1, 3).unwrap().unwrap(), first);
        let mut s2 = None;
        assert_eq!(
            i.stamp(&mut a, &mut s2, 2).unwrap().unwrap().base_sequence,
            3
        );
        let mut t1 = None;
        assert_eq!(
            i.stamp(&mut b, &mut t1, 4).unwrap().unwrap().base_sequence,
            0
        );
        // Partition a drops its batch s2: a gap. a moves to epoch 1 from sequence 0...
        i.dropped(&mut a, s2);
        let mut s3 = None;
        let moved = i.stamp(&mut a, &mut s3, 1).unwrap().unwrap();
        assert_eq!(moved.identity, Identity { pid: 7, epoch: 1 });
        assert_eq!(moved.base_sequence, 0);
        // ... while b keeps its identity and numbers.
        let mut t2 = None;
        let kept = i.stamp(&mut b, &mut t2, 1).unwrap().unwrap();
        assert_eq!(kept.identity, Identity { pid: 7, epoch: 0 });
        assert_eq!(kept.base_sequence, 4);
    }

    #[test]
    fn out_of_order_renumbers_only_the_first_unstored_sequence() {
        let i = idem();
        let mut a = Sequence::default();
        // Five batches of 10 in flight: 0, 10, 20, 30, 40.
        let mut stamps: Vec<Option<Stamp>> = vec![None; 5];
        for s in &mut stamps {
            i.stamp(&mut a, s, 10).unwrap();
        }
        let first = stamps[0].unwrap();
        i.stored(&mut a, stamps[0], 10);
        // Batch 10 failed (retriable): 20..40 come back out of order: an earlier batch is
        // missing, not the broker's state. They keep their numbers.
        for s in &mut stamps[2..] {
            let kept = *s;
            i.out_of_order(&mut a, s);
            assert_eq!(*s, kept, "keeps its numbers");
        }
        for (k, s) in stamps.iter_mut().enumerate().skip(1) {
            let again = i.stamp(&mut a, s, 10).unwrap().unwrap();
            assert_eq!(again.base_sequence, 10 * k as i32);
            assert_eq!(again.identity, first.identity);
        }
        i.stored(&mut a, stamps[1], 10);
        // The broker lost our state (KIP-360): out of order at the first sequence it waits
        // for. That batch and every later one not stored move to a new epoch, in order.
        i.out_of_order(&mut a, &mut stamps[2]);
        assert!(stamps[2].is_none());
        for (k, s) in stamps.iter_mut().enumerate().skip(2) {
            let again = i.stamp(&mut a, s, 10).unwrap().unwrap();
            assert_eq!(again.identity.epoch, 1);
            assert_eq!(again.base_sequence, 10 * (k as i32 - 2));
        }
        // A new batch follows them.
        let mut next = None;
        assert_eq!(
            i.stamp(&mut a, &mut next, 1)
                .unwrap()
                .unwrap()
                .base_sequence,
            30
        );
    }

    #[test]
    fn a_partition_forgotten_and_made_again_does_not_reuse_its_numbers() {
        let i = idem();
        let mut old = Sequence::default();
        let mut s = None;
        i.stamp(&mut old, &mut s, 1).unwrap();
        // Its topic idles out; a new queue for the same partition comes later.
        i.forget(&old);
        let mut new = Sequence::default();
        let mut t = None;
        let st = i.stamp(&mut new, &mut t, 1).unwrap().unwrap();
        assert_eq!(
            (st.identity.epoch, st.base_sequence),
            (1, 0),
            "a newer epoch from 0"
        );
        // Other new partitions then use it as it is.
        let mut other = Sequence::default();
        let mut u = None;
        assert_eq!(
            i.stamp(&mut other, &mut u, 1)
                .unwrap()
                .unwrap()
                .identity
                .epoch,
            1
        );
    }

    #[tokio::test]
    async fn a_refused_bump_switches_to_fetched_ids() {
        let i = idem();
        let mut a = Sequence::default();
        let mut s = None;
        i.stamp(&mut a, &mut s, 1).unwrap();
        i.dropped(&mut a, s);
        let mut b = None;
        i.stamp(&mut a, &mut b, 1).unwrap();
        assert_eq!(b.unwrap().identity.epoch, 1);
        i.refused(&mut a, &mut b);
        let mut c = None;
        match i.stamp(&mut a, &mut c, 1) {
            Err(NoStamp::Wait(..)) => {}
            other => panic!("{other:?}"),
        }
        assert!(!i.state.lock().local_bumps);
    }
}
