//! Which sink sends each partition's batches.
//!
//! Owns the sinks (one per broker that leads a partition we send to) and the routes from
//! partitions to them. On every new metadata snapshot it grows topics that gained partitions,
//! points each partition at its leader's sink (a partition that moved is signaled to its new
//! sink, which takes its queued batches), gives a partition without a leader a reason for
//! its expiry error, and retires the sinks of brokers that left. At most [`MAX_SINKS`] brokers
//! get a sink: a Metadata answer naming more leaders than any real cluster has cannot make the
//! producer start thousands of tasks and connections (the partitions of the others wait as if
//! they had no leader, and say why). It must not send anything; the sinks do.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::accumulator::{ReadyList, TopicQueues};
use crate::metadata::{Cluster, TopicMetadata};
use crate::sink::{self, SinkContext, SinkHandle};

/// Most brokers with a sink at once.
pub(crate) const MAX_SINKS: usize = 2048;

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

    /// The sink of `node` at `addr`, started if needed; `None` when [`MAX_SINKS`] brokers have
    /// one already.
    fn sink(&self, node: i32, addr: &str) -> Option<Arc<ReadyList>> {
        let mut sinks = self.sinks.lock();
        if let Some(s) = sinks.get(&node) {
            if !s.is_finished() {
                s.set_addr(addr);
                return Some(s.ready.clone());
            }
        } else if sinks.len() >= MAX_SINKS {
            return None;
        }
        let s = sink::spawn(self.ctx.clone(), node, addr);
        let ready = s.ready.clone();
        sinks.insert(node, s);
        Some(ready)
    }

    /// Brokers with a sink now.
    #[cfg(test)]
    pub(crate) fn sinks(&self) -> usize {
        self.sinks.lock().len()
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
            let leader = cluster.leader(&topic.name, q.partition);
            let to = leader.and_then(|node| {
                cluster
                    .brokers
                    .get(&node)
                    .and_then(|addr| self.sink(node, addr))
            });
            let missing = to.is_none();
            if q.set_route(to) && !missing {
                q.signal();
            }
            if missing {
                let why = match leader {
                    Some(node) if cluster.brokers.contains_key(&node) => format!(
                        "partition {}-{}'s leader, broker {node}, is beyond the {MAX_SINKS} brokers wafka connects to",
                        topic.name, q.partition
                    ),
                    _ => format!("partition {}-{} has no leader", topic.name, q.partition),
                };
                self.ctx.accumulator.set_stuck(q, Some(why));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accumulator::{Accumulator, AccumulatorConfig};
    use crate::config::ProducerConfig;
    use crate::control::ConnectOptions;
    use crate::ledger::Ledger;
    use crate::metadata::Metadata;
    use crate::sink::SinkStats;

    /// A Metadata answer naming 5,000 leaders (one per partition) starts at most
    /// [`MAX_SINKS`] sinks; the partitions of the others say why they wait.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn thousands_of_leaders_get_a_bounded_number_of_sinks() {
        let ledger = Ledger::new(1 << 20);
        let accumulator = Arc::new(Accumulator::new(
            AccumulatorConfig {
                batch_size: 1000,
                max_in_flight: 5,
                linger: Duration::ZERO,
                delivery_timeout: Duration::from_secs(120),
            },
            ledger.clone(),
        ));
        let (shutdown_tx, shutdown) = watch::channel(false);
        let ctx = Arc::new(SinkContext {
            runtime: tokio::runtime::Handle::current(),
            config: Arc::new(ProducerConfig::new()),
            accumulator: accumulator.clone(),
            ledger,
            idempotence: crate::idempotence::for_tests(false),
            metadata: Arc::new(Metadata::default()),
            stats: Arc::new(SinkStats::default()),
            connect: ConnectOptions {
                client_id: "t".into(),
                setup_timeout: Duration::from_millis(100),
                request_timeout: Duration::from_millis(100),
                backoff: Duration::from_secs(1),
                backoff_max: Duration::from_secs(1),
                security: Default::default(),
            },
            shutdown,
            codecs: Arc::new(crate::batch::CodecPool::new(
                crate::config::Compression::None,
                None,
            )),
        });
        let routing = Routing::new(ctx);
        let n = 5000;
        let topic = accumulator.topic_with("t", n);
        let cluster = Cluster {
            brokers: (0..n).map(|b| (b, "127.0.0.1:1".to_string())).collect(),
            topics: [(
                Arc::from("t"),
                TopicMetadata::Ok {
                    leaders: (0..n).collect::<Vec<i32>>().into(),
                },
            )]
            .into_iter()
            .collect(),
            fetched: Some(Instant::now()),
        };
        routing.apply(&cluster);
        assert_eq!(routing.sinks(), MAX_SINKS);
        let last = &topic.partitions[n as usize - 1];
        assert!(last.route().is_none());
        let first = &topic.partitions[0];
        assert!(first.route().is_some());
        shutdown_tx.send(true).unwrap();
    }
}
