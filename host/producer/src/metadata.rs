//! What the producer knows about the cluster: brokers, topics, partitions and their leaders.
//!
//! Owns the current [`Cluster`] snapshot, the set of topics to ask about, and the refresher
//! that replaces the snapshot: on an interval (`metadata.max.age.ms`), and soon after someone
//! asks (a send to a topic not seen yet, an error that says leadership moved). Readers take a
//! cheap `Arc` snapshot; the router watches for new ones. An answer is checked before it is
//! believed: a topic whose partition indexes are not exactly `0..n` is kept as
//! [`TopicMetadata::Bad`] with the reason, never allocated for. A topic leaves the requests
//! when nobody sent to it for `metadata.max.idle.ms`, or when the cluster said it does not
//! exist and nobody asked again within `retry.backoff.ms`. The refresher talks through its own
//! control link, trying another broker when one fails. It must not hold records.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{watch, Notify};

use crate::connection::NetError;
use crate::control::ControlLink;

/// Leaders of one topic's partitions, or why the topic cannot be used.
#[derive(Debug, Clone)]
pub enum TopicMetadata {
    /// The topic exists; `leaders[p]` is partition `p`'s leader node, `-1` when it has none.
    Ok {
        /// Leader node id per partition.
        leaders: Arc<[i32]>,
    },
    /// The cluster answered for this topic with an error code.
    Err(i16),
    /// The answer makes no sense (e.g. a partition index outside `0..n`).
    Bad(String),
}

/// One immutable view of the cluster.
#[derive(Debug, Default)]
pub struct Cluster {
    /// Node id to `host:port`.
    pub brokers: HashMap<i32, String>,
    /// Topic name to its partitions' leaders.
    pub topics: HashMap<Arc<str>, TopicMetadata>,
    /// When the cluster gave this view (`None`: not fetched yet).
    pub fetched: Option<Instant>,
}

/// Kafka's answers that a topic cannot be produced to as named: UNKNOWN_TOPIC_OR_PARTITION (3)
/// and INVALID_TOPIC_EXCEPTION (17). Unlike a missing leader, waiting does not change them.
fn definitive(code: i16) -> bool {
    matches!(code, 3 | 17)
}

/// A topic error that passes with time (LEADER_NOT_AVAILABLE while a new topic gets its
/// leaders, and Kafka's other retriable errors): a send waits it out, up to its deadline.
fn passing(code: i16) -> bool {
    !definitive(code)
        && kafka_protocol::error::ParseResponseErrorCode::err(code)
            .is_some_and(|e| e.is_retriable())
}

impl Cluster {
    /// The leader node of a partition, if known.
    pub fn leader(&self, topic: &str, partition: i32) -> Option<i32> {
        match self.topics.get(topic)? {
            TopicMetadata::Ok { leaders } => {
                leaders.get(partition as usize).copied().filter(|&l| l >= 0)
            }
            _ => None,
        }
    }

    /// Known brokers' addresses, by node id.
    pub fn broker_addrs(&self) -> Vec<String> {
        let mut v: Vec<_> = self.brokers.iter().collect();
        v.sort();
        v.into_iter().map(|(_, a)| a.clone()).collect()
    }
}

/// The producer's metadata: a snapshot plus the machinery to refresh it.
pub struct Metadata {
    snapshot: RwLock<Arc<Cluster>>,
    published: watch::Sender<Arc<Cluster>>,
    /// How long a definitive "no such topic" answer is believed without asking again.
    negative_ttl: Duration,
    /// Topics to ask about, with when someone last asked for each.
    wanted: Mutex<HashMap<Arc<str>, Instant>>,
    refresh: Notify,
    attempts: watch::Sender<u64>,
    last_error: Mutex<Option<String>>,
    /// Set when the last refresh failed because the cluster refused our security settings
    /// (see [`NetError::is_refusal`]): sends waiting for metadata fail with it at once.
    refused: Mutex<Option<NetError>>,
    /// Metadata requests sent.
    requests: AtomicU64,
}

/// How recent a successful metadata answer must be for [`Metadata::probe`] to take it.
pub const PROBE_FRESH: Duration = Duration::from_secs(1);

impl Default for Metadata {
    fn default() -> Self {
        Metadata::new(Duration::from_millis(100))
    }
}

impl Metadata {
    /// Metadata that believes a definitive "no such topic" answer for `negative_ttl` (the
    /// producer uses `retry.backoff.ms`): sends to a missing topic then fail at once instead of
    /// each waiting for a refresh, and a topic created meanwhile is seen at most that late.
    pub fn new(negative_ttl: Duration) -> Self {
        let empty = Arc::new(Cluster::default());
        Metadata {
            negative_ttl,
            snapshot: RwLock::new(empty.clone()),
            published: watch::channel(empty).0,
            wanted: Mutex::new(HashMap::new()),
            refresh: Notify::new(),
            attempts: watch::channel(0).0,
            last_error: Mutex::new(None),
            refused: Mutex::new(None),
            requests: AtomicU64::new(0),
        }
    }

    /// Metadata requests sent so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Topics the next request asks about.
    pub fn wanted_topics(&self) -> usize {
        self.wanted.lock().len()
    }

    /// The current view of the cluster.
    pub fn snapshot(&self) -> Arc<Cluster> {
        self.snapshot.read().clone()
    }

    /// New snapshots, as they come.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Arc<Cluster>> {
        self.published.subscribe()
    }

    /// Asks the refresher to fetch metadata soon.
    pub fn request_refresh(&self) {
        self.refresh.notify_one();
    }

    /// Whether the cluster answers: `Ok` at once when a refresh succeeded within the last
    /// [`PROBE_FRESH`] and none failed since; else asks for metadata now and waits, until
    /// `deadline`, for the attempt's end (one in progress counts): `Ok` when a broker
    /// answered, else why not. Probes thus cost at most one request per [`PROBE_FRESH`] while
    /// the cluster answers, and none beyond the refresher's own retries while it does not.
    pub async fn probe(&self, deadline: Instant) -> Result<(), String> {
        let fresh = self
            .snapshot()
            .fetched
            .is_some_and(|at| at.elapsed() < PROBE_FRESH);
        if fresh && self.last_error().is_none() {
            return Ok(());
        }
        let mut attempts = self.attempts.subscribe();
        attempts.mark_unchanged();
        self.request_refresh();
        match tokio::time::timeout_at(deadline.into(), attempts.changed()).await {
            Ok(Ok(())) => match self.last_error() {
                None => Ok(()),
                Some(e) => Err(e),
            },
            Ok(Err(_)) => Err("the producer is closed".into()),
            Err(_) => Err(self
                .last_error()
                .unwrap_or_else(|| "no broker answered in time".into())),
        }
    }

    /// Why the last refresh failed, if it did.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().clone()
    }

    /// Asks about `topic` in the next requests (if it is not asked about already).
    pub(crate) fn want(&self, topic: &Arc<str>) {
        let mut wanted = self.wanted.lock();
        if !wanted.contains_key(topic) {
            wanted.insert(topic.clone(), Instant::now());
            drop(wanted);
            self.request_refresh();
        }
    }

    /// Stops asking about `topics` (nobody sends to them any more).
    pub(crate) fn forget(&self, topics: &[Arc<str>]) {
        let mut wanted = self.wanted.lock();
        for t in topics {
            wanted.remove(t);
        }
    }

    /// Metadata for `topic`, fetching it if needed and waiting until `deadline`, also while
    /// the cluster answers with an error that passes (see `passing`). `Ok(None)` means the
    /// deadline passed first; `Err` that the cluster refuses our security settings (the
    /// last refresh failed so, before or while waiting), as Java's producer fails a send on
    /// an `AuthenticationException` instead of waiting `max.block.ms`.
    pub async fn topic(
        &self,
        topic: &str,
        deadline: Instant,
    ) -> Result<Option<TopicMetadata>, NetError> {
        let mut attempts = self.attempts.subscribe();
        let mut asked = false;
        loop {
            let snapshot = self.snapshot();
            if let Some(t) = snapshot.topics.get(topic) {
                let answer = match t {
                    TopicMetadata::Ok { .. } => true,
                    TopicMetadata::Err(code) if definitive(*code) => {
                        asked
                            || snapshot
                                .fetched
                                .is_some_and(|at| at.elapsed() < self.negative_ttl)
                    }
                    TopicMetadata::Err(code) => asked && !passing(*code),
                    TopicMetadata::Bad(_) => asked,
                };
                if answer {
                    self.wanted.lock().insert(Arc::from(topic), Instant::now());
                    return Ok(Some(t.clone()));
                }
            }
            if let Some(refused) = self.refused.lock().clone() {
                self.wanted.lock().insert(Arc::from(topic), Instant::now());
                return Err(refused);
            }
            if !asked {
                self.wanted.lock().insert(Arc::from(topic), Instant::now());
                asked = true;
            }
            attempts.mark_unchanged();
            self.request_refresh();
            if tokio::time::timeout_at(deadline.into(), attempts.changed())
                .await
                .is_err()
            {
                return Ok(None);
            }
        }
    }

    /// Drops from the requests the topics the cluster said do not exist (or described
    /// nonsensically) and nobody asked about within the negative cache window.
    fn prune(&self) {
        let snapshot = self.snapshot();
        let ttl = self.negative_ttl;
        self.wanted.lock().retain(|name, asked| {
            let failed = match snapshot.topics.get(name) {
                Some(TopicMetadata::Err(code)) => definitive(*code),
                Some(TopicMetadata::Bad(_)) => true,
                _ => false,
            };
            !(failed && asked.elapsed() >= ttl)
        });
    }

    /// Refreshes until `shutdown` fires. Runs as one task per producer.
    pub(crate) async fn run(
        self: Arc<Self>,
        mut link: ControlLink,
        max_age: Duration,
        backoff: Duration,
        backoff_max: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut failures = 0u32;
        loop {
            tokio::select! {
                _ = self.refresh.notified() => {}
                _ = tokio::time::sleep(max_age) => {}
                _ = shutdown.changed() => return,
            }
            self.prune();
            let fetched = tokio::select! {
                r = self.fetch(&mut link) => r,
                _ = shutdown.changed() => return,
            };
            match fetched {
                Ok(cluster) => {
                    failures = 0;
                    let cluster = Arc::new(cluster);
                    *self.snapshot.write() = cluster.clone();
                    *self.last_error.lock() = None;
                    *self.refused.lock() = None;
                    self.published.send_replace(cluster);
                    self.attempts.send_modify(|n| *n += 1);
                    // Refreshes asked for while fetching are served by the next loop, at most
                    // one per min(retry.backoff.ms, 20 ms): a burst of requests (every sink
                    // after a leader moved) costs one fetch, and a send waiting for a new topic
                    // is not held up for long.
                    tokio::time::sleep(backoff.min(Duration::from_millis(20))).await;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "metadata refresh failed");
                    *self.last_error.lock() = Some(e.to_string());
                    *self.refused.lock() = e.is_refusal().then(|| e.clone());
                    self.attempts.send_modify(|n| *n += 1);
                    let wait = backoff
                        .saturating_mul(1 << failures.min(10))
                        .min(backoff_max);
                    failures += 1;
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.changed() => return,
                    }
                    // Try again even if nobody asks: sends may be waiting.
                    self.refresh.notify_one();
                }
            }
        }
    }

    async fn fetch(&self, link: &mut ControlLink) -> Result<Cluster, NetError> {
        let known = self.snapshot().broker_addrs();
        let wanted: Vec<Arc<str>> = self.wanted.lock().keys().cloned().collect();
        self.requests.fetch_add(1, Ordering::Relaxed);
        let resp = link
            .request::<MetadataRequest, _>(&known, |conn| {
                let version = conn.version::<MetadataRequest>(12)?;
                let mut req = MetadataRequest::default();
                req.allow_auto_topic_creation = false;
                req.topics = Some(
                    wanted
                        .iter()
                        .map(|t| {
                            let mut rt = MetadataRequestTopic::default();
                            rt.name = Some(TopicName(StrBytes::from_string(t.to_string())));
                            rt
                        })
                        .collect(),
                );
                Ok((req, version))
            })
            .await?;
        Ok(parse(resp))
    }
}

/// The cluster as a Metadata answer describes it, checked.
pub(crate) fn parse(resp: MetadataResponse) -> Cluster {
    let mut cluster = Cluster {
        fetched: Some(Instant::now()),
        ..Cluster::default()
    };
    for b in &resp.brokers {
        if (0..=i32::from(u16::MAX)).contains(&b.port) && !b.host.is_empty() {
            cluster
                .brokers
                .insert(b.node_id.0, format!("{}:{}", b.host.as_str(), b.port));
        }
    }
    for t in resp.topics {
        let Some(name) = t.name else { continue };
        let name: Arc<str> = Arc::from(name.0.as_str());
        let meta = if t.error_code != 0 {
            TopicMetadata::Err(t.error_code)
        } else {
            leaders(&t.partitions).unwrap_or_else(TopicMetadata::Bad)
        };
        cluster.topics.insert(name, meta);
    }
    cluster
}

/// Leaders by partition index, when the indexes are exactly `0..n` for `n` partitions.
fn leaders(
    partitions: &[kafka_protocol::messages::metadata_response::MetadataResponsePartition],
) -> Result<TopicMetadata, String> {
    let n = partitions.len();
    let mut leaders = vec![i32::MIN; n];
    for p in partitions {
        let i = p.partition_index;
        let slot = usize::try_from(i)
            .ok()
            .and_then(|i| leaders.get_mut(i))
            .ok_or_else(|| {
                format!("the cluster lists partition index {i} for a topic of {n} partitions")
            })?;
        if *slot != i32::MIN {
            return Err(format!("the cluster lists partition index {i} twice"));
        }
        *slot = if p.error_code == 0 || p.leader_id.0 >= 0 {
            p.leader_id.0.max(-1)
        } else {
            -1
        };
    }
    Ok(TopicMetadata::Ok {
        leaders: leaders.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::metadata_response::{
        MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::BrokerId;

    fn topic(indexes: &[i32]) -> MetadataResponse {
        let mut t = MetadataResponseTopic::default();
        t.name = Some(TopicName(StrBytes::from_static_str("t")));
        t.partitions = indexes
            .iter()
            .map(|&i| {
                MetadataResponsePartition::default()
                    .with_partition_index(i)
                    .with_leader_id(BrokerId(1))
            })
            .collect();
        MetadataResponse::default().with_topics(vec![t])
    }

    #[test]
    fn partition_indexes_must_be_zero_to_n() {
        match parse(topic(&[1, 0, 2])).topics.get("t") {
            Some(TopicMetadata::Ok { leaders }) => assert_eq!(&leaders[..], &[1, 1, 1]),
            other => panic!("{other:?}"),
        }
        for bad in [&[0, -1][..], &[0, 1_000_000_000], &[0, 0]] {
            match parse(topic(bad)).topics.get("t") {
                Some(TopicMetadata::Bad(why)) => assert!(why.contains("partition index"), "{why}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
}
