//! Which sink sends each partition's batches.
//!
//! Owns the sinks (one per broker that leads a partition we send to) and the routes from
//! partitions to them. On every new metadata snapshot it grows topics that gained partitions,
//! points each partition at its leader's sink (a partition that moved is signaled to its new
//! sink, which takes its queued batches), gives a partition without a leader a reason for
//! its expiry error, and retires the sinks of brokers that left. It must not send anything;
//! the sinks do.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::accumulator::{ReadyList, TopicQueues};
use crate::metadata::{Cluster, TopicMetadata};
use crate::sink::{self, SinkContext, SinkHandle};

pub(crate) struct Routing {
    ctx: Arc<SinkContext>,
    sinks: Mutex<HashMap<i32, SinkHandle>>,
    /// When a refresh was last asked for because a partition with records had no leader.
    asked: Mutex<Option<Instant>>,
}

impl Routing {
    pub(crate) fn new(ctx: Arc<SinkContext>) -> Arc<Self> {
        Arc::new(Routing {
            ctx,
            sinks: Mutex::new(HashMap::new()),
            asked: Mutex::new(None),
        })
    }

    /// The sink of `node` at `addr`, started if needed.
    fn sink(&self, node: i32, addr: &str) -> Arc<ReadyList> {
        let mut sinks = self.sinks.lock();
        if let Some(s) = sinks.get(&node) {
            if !s.is_finished() {
                s.set_addr(addr);
                return s.ready.clone();
            }
        }
        let s = sink::spawn(self.ctx.clone(), node, addr);
        let ready = s.ready.clone();
        sinks.insert(node, s);
        ready
    }

    /// Wakes every sink (a send waits for memory: lingering batches should leave).
    pub(crate) fn wake_all(&self) {
        for s in self.sinks.lock().values() {
            s.ready.wake.notify_one();
        }
    }

    /// Points every partition of `topic` at its leader's sink, as `cluster` says.
    pub(crate) fn route_topic(&self, topic: &TopicQueues, cluster: &Cluster) {
        let mut leaderless_with_records = false;
        for q in &topic.partitions {
            let to = cluster
                .leader(&topic.name, q.partition)
                .and_then(|node| cluster.brokers.get(&node).map(|addr| self.sink(node, addr)));
            let missing = to.is_none();
            if q.set_route(to) && !missing {
                q.signal();
            }
            if missing {
                self.ctx.accumulator.set_stuck(
                    q,
                    Some(format!(
                        "partition {}-{} has no leader",
                        topic.name, q.partition
                    )),
                );
            }
            leaderless_with_records |= missing && q.busy();
        }
        if leaderless_with_records {
            let backoff = self.ctx.config.retry_backoff.max(Duration::from_millis(10));
            let mut asked = self.asked.lock();
            if asked.is_none_or(|at| at.elapsed() >= backoff) {
                *asked = Some(Instant::now());
                self.ctx.metadata.request_refresh();
            }
        }
    }

    /// Applies a new view of the cluster to every topic and sink.
    pub(crate) fn apply(&self, cluster: &Cluster) {
        self.ctx
            .idempotence
            .set_known_brokers(cluster.broker_addrs());
        for t in self.ctx.accumulator.topics() {
            let t = match cluster.topics.get(&t.name) {
                // Not in this answer (e.g. it was forgotten as idle while a send brought it
                // back): keep its routes, and ask about it again.
                None => {
                    self.ctx.metadata.want(&t.name);
                    continue;
                }
                Some(TopicMetadata::Ok { leaders }) if leaders.len() > t.partitions.len() => {
                    tracing::info!(
                        topic = %t.name,
                        from = t.partitions.len(),
                        to = leaders.len(),
                        "topic has new partitions"
                    );
                    self.ctx
                        .accumulator
                        .topic_with(&t.name, leaders.len() as i32)
                }
                _ => t,
            };
            self.route_topic(&t, cluster);
        }
        if cluster.fetched.is_some() {
            let mut sinks = self.sinks.lock();
            sinks.retain(|node, s| {
                let stays = cluster.brokers.contains_key(node) && !s.is_finished();
                if !stays {
                    tracing::debug!(node, addr = %s.addr(), "retiring the sink of a departed broker");
                    s.ready.retire();
                }
                stays
            });
        }
    }

    /// Applies every new snapshot until shutdown.
    pub(crate) async fn run(
        self: Arc<Self>,
        mut snapshots: watch::Receiver<Arc<Cluster>>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                changed = snapshots.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let cluster = snapshots.borrow_and_update().clone();
                    self.apply(&cluster);
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}
