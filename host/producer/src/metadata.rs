//! What the producer knows about the cluster: brokers, topics, partitions and their leaders.
//!
//! Owns the current [`Cluster`] snapshot and the refresher that replaces it: on an interval
//! (`metadata.max.age.ms`), and at once when someone asks (a send to a topic not seen yet, or an
//! error that says leadership moved). Readers take a cheap `Arc` snapshot. It must not hold
//! records; the accumulator and the sender read snapshots.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::{watch, Notify};

use crate::brokers::Brokers;
use crate::connection::NetError;

/// Leaders of one topic's partitions, or the error the cluster gave for the topic.
#[derive(Debug, Clone)]
pub enum TopicMetadata {
    /// The topic exists; `leaders[p]` is partition `p`'s leader node, `-1` when it has none.
    Ok {
        /// Leader node id per partition.
        leaders: Arc<[i32]>,
    },
    /// The cluster answered for this topic with an error code.
    Err(i16),
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
            TopicMetadata::Err(_) => None,
        }
    }

    /// Known brokers as `(node, host:port)`.
    pub fn broker_list(&self) -> Vec<(i32, String)> {
        let mut v: Vec<_> = self.brokers.iter().map(|(k, v)| (*k, v.clone())).collect();
        v.sort();
        v
    }
}

/// The producer's metadata: a snapshot plus the machinery to refresh it.
pub struct Metadata {
    snapshot: RwLock<Arc<Cluster>>,
    /// How long a definitive "no such topic" answer is believed without asking again.
    negative_ttl: Duration,
    wanted: Mutex<HashSet<Arc<str>>>,
    refresh: Notify,
    attempts: watch::Sender<u64>,
    last_error: Mutex<Option<String>>,
    /// Metadata requests sent.
    requests: AtomicU64,
}

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
        Metadata {
            negative_ttl,
            snapshot: RwLock::new(Arc::new(Cluster::default())),
            wanted: Mutex::new(HashSet::new()),
            refresh: Notify::new(),
            attempts: watch::channel(0).0,
            last_error: Mutex::new(None),
            requests: AtomicU64::new(0),
        }
    }

    /// Metadata requests sent so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// The current view of the cluster.
    pub fn snapshot(&self) -> Arc<Cluster> {
        self.snapshot.read().expect("metadata lock").clone()
    }

    /// Asks the refresher to fetch metadata now.
    pub fn request_refresh(&self) {
        self.refresh.notify_one();
    }

    /// Why the last refresh failed, if it did.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().expect("metadata lock").clone()
    }

    /// Metadata for `topic`, fetching it if needed and waiting until `deadline`, also while
    /// the cluster answers with an error that passes (see `passing`). `None` means the
    /// deadline passed first.
    pub async fn topic(&self, topic: &str, deadline: Instant) -> Option<TopicMetadata> {
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
                };
                if answer {
                    return Some(t.clone());
                }
            }
            if !asked {
                self.wanted
                    .lock()
                    .expect("metadata lock")
                    .insert(Arc::from(topic));
                asked = true;
            }
            attempts.mark_unchanged();
            self.request_refresh();
            if tokio::time::timeout_at(deadline.into(), attempts.changed())
                .await
                .is_err()
            {
                return None;
            }
        }
    }

    /// Refreshes until `shutdown` fires. Runs as one task per producer.
    pub async fn run(
        self: Arc<Self>,
        brokers: Arc<Brokers>,
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
            match self.fetch(&brokers).await {
                Ok(cluster) => {
                    failures = 0;
                    *self.snapshot.write().expect("metadata lock") = Arc::new(cluster);
                    *self.last_error.lock().expect("metadata lock") = None;
                    self.attempts.send_modify(|n| *n += 1);
                    // Refreshes asked for while fetching are served by the next loop,
                    // but never sooner than the retry backoff.
                    tokio::time::sleep(backoff.min(Duration::from_millis(20))).await;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "metadata refresh failed");
                    *self.last_error.lock().expect("metadata lock") = Some(e.to_string());
                    self.attempts.send_modify(|n| *n += 1);
                    let wait = backoff
                        .saturating_mul(1 << failures.min(10))
                        .min(backoff_max);
                    failures += 1;
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.changed() => return,
                    }
                }
            }
        }
    }

    async fn fetch(&self, brokers: &Brokers) -> Result<Cluster, NetError> {
        let old = self.snapshot();
        let conn = brokers.any(&old.broker_list()).await?;
        let version = conn.version::<MetadataRequest>(12)?;
        self.requests.fetch_add(1, Ordering::Relaxed);
        let wanted: Vec<Arc<str>> = self
            .wanted
            .lock()
            .expect("metadata lock")
            .iter()
            .cloned()
            .collect();
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
        let resp = conn.request(&req, version).await?;
        let mut cluster = Cluster {
            fetched: Some(Instant::now()),
            ..Cluster::default()
        };
        for b in &resp.brokers {
            cluster
                .brokers
                .insert(b.node_id.0, format!("{}:{}", b.host.as_str(), b.port));
        }
        for t in resp.topics {
            let Some(name) = t.name else { continue };
            let name: Arc<str> = Arc::from(name.0.as_str());
            let meta = if t.error_code != 0 {
                TopicMetadata::Err(t.error_code)
            } else {
                let count = t
                    .partitions
                    .iter()
                    .map(|p| p.partition_index + 1)
                    .max()
                    .unwrap_or(0)
                    .max(0) as usize;
                let mut leaders = vec![-1; count];
                for p in &t.partitions {
                    let leader = if p.error_code == 0 || p.leader_id.0 >= 0 {
                        p.leader_id.0
                    } else {
                        -1
                    };
                    leaders[p.partition_index as usize] = leader;
                }
                TopicMetadata::Ok {
                    leaders: leaders.into(),
                }
            };
            cluster.topics.insert(name, meta);
        }
        Ok(cluster)
    }
}
