//! The producer core that every handle shares: the send path, flush and close with their
//! bounds, the counters, and the background tasks (metadata refresher, router, housekeeping).
//!
//! The send path checks a record (size, topic name, the owner's quota), finds its topic's
//! queues (waiting for metadata), picks a partition, and appends it; metadata and memory share
//! one `max.block.ms` deadline. Flushes hurry only the batches they wait for. Housekeeping
//! fails queued batches at `delivery.timeout.ms` wherever they are (also when no sink can take
//! them: no leader, no producer id) and forgets idle topics. Closing refuses new records, waits
//! (bounded) for the rest, then ends everything still pending with `Closed`. It must not
//! encode bytes or speak the protocol itself.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::accumulator::{Accumulator, AccumulatorConfig, NotAppended, TopicQueues};
use crate::batch::{record_size_upper_bound, single_record_batch_upper_bound};
use crate::config::ProducerConfig;
use crate::connection::{ConnSecurity, NetError};
use crate::control::{ConnectOptions, ControlLink};
use crate::delivery::{BatchOutcome, Callback, Delivery};
use crate::error::{kafka_error_name, ProduceError};
use crate::idempotence::Idempotence;
use crate::ledger::{Ledger, OwnerAccount, SharedQuota};
use crate::metadata::{Metadata, TopicMetadata};
use crate::partitioner::partition_for_key;
use crate::record::Record;
use crate::routing::Routing;
use crate::sink::{SinkContext, SinkStats};

/// A snapshot of the producer's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProducerStats {
    /// Produce requests written to brokers.
    pub produce_requests: u64,
    /// Batches acknowledged.
    pub batches_acked: u64,
    /// Records acknowledged.
    pub records_acked: u64,
    /// Records that failed after being queued.
    pub records_failed: u64,
    /// Batch retries.
    pub retries: u64,
    /// Metadata requests sent (refreshes on an interval, for new topics and after errors).
    pub metadata_requests: u64,
    /// Topics the metadata requests ask about now.
    pub metadata_topics: u64,
    /// Connections to brokers opened by the sinks.
    pub connections: u64,
    /// Producer ids received from InitProducerId.
    pub producer_ids: u64,
    /// Epochs bumped by the client (KIP-360) after a gap in a partition's sequence.
    pub epoch_bumps: u64,
    /// Batches split in two after the broker found them too large.
    pub splits: u64,
    /// Delivery callbacks that panicked (caught).
    pub callback_panics: u64,
}

/// State shared by the producer handle, owners and background tasks.
pub(crate) struct Core {
    pub(crate) config: Arc<ProducerConfig>,
    pub(crate) accumulator: Arc<Accumulator>,
    pub(crate) ledger: Arc<Ledger>,
    pub(crate) metadata: Arc<Metadata>,
    routing: Arc<Routing>,
    idempotence: Arc<Idempotence>,
    stats: Arc<SinkStats>,
    owners: Mutex<Vec<Weak<OwnerAccount>>>,
    closed: AtomicBool,
    shutdown: watch::Sender<bool>,
}

/// Stops the background tasks when the last handle goes away.
pub(crate) struct Guard(pub(crate) Arc<Core>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.shutdown();
    }
}

/// `max.block.ms` from the moment a send first waits, for everything it waits for.
struct Deadline {
    max_block: Duration,
    at: Option<Instant>,
}

impl Deadline {
    fn new(max_block: Duration) -> Self {
        Deadline {
            max_block,
            at: None,
        }
    }

    fn get(&mut self) -> Instant {
        *self
            .at
            .get_or_insert_with(|| Instant::now() + self.max_block)
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `buffer.memory` taken by a send and not used by a batch: given back on drop.
struct Reservation<'a> {
    memory: &'a tokio::sync::Semaphore,
    bytes: usize,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.memory.add_permits(self.bytes);
        }
    }
}

/// Whether `topic` is a valid Kafka topic name (at most 249 ASCII letters, digits, `.`, `_`
/// and `-`; not `.` or `..`). The error shows at most 64 characters of a long name.
pub fn check_topic_name(topic: &str) -> Result<(), ProduceError> {
    let reason = if topic.is_empty() {
        Some("empty")
    } else if topic.len() > 249 {
        Some("longer than 249 characters")
    } else if topic == "." || topic == ".." {
        Some("`.` and `..` are not allowed")
    } else if !topic
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        Some("only ASCII letters, digits, `.`, `_` and `-` are allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(ProduceError::InvalidTopic {
            topic: match topic.char_indices().nth(64) {
                Some((end, _)) => format!("{}… ({} bytes)", &topic[..end], topic.len()),
                None => topic.to_string(),
            },
            reason,
        }),
        None => Ok(()),
    }
}

impl Core {
    /// Builds the core and starts its background tasks. Must run inside a tokio runtime.
    pub(crate) fn start(config: ProducerConfig) -> Arc<Core> {
        let config = Arc::new(config);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let ledger = Ledger::new(config.buffer_memory);
        let accumulator = Arc::new(Accumulator::new(
            AccumulatorConfig {
                batch_size: config.batch_size,
                max_in_flight: config.max_in_flight.max(1),
                linger: config.linger,
                delivery_timeout: config.delivery_timeout,
            },
            ledger.clone(),
        ));
        let connect = ConnectOptions {
            client_id: config.client_id.clone(),
            setup_timeout: config.connection_setup_timeout,
            request_timeout: config.request_timeout,
            backoff: config.reconnect_backoff,
            backoff_max: config.reconnect_backoff_max,
            security: ConnSecurity::from_settings(&config.security),
        };
        let metadata = Arc::new(Metadata::new(config.retry_backoff));
        let idempotence = Idempotence::new(
            config.enable_idempotence,
            config.is_explicit("enable.idempotence"),
            connect.clone(),
            config.bootstrap_servers.clone(),
            config.retry_backoff,
            config.retry_backoff_max,
            shutdown_rx.clone(),
        );
        let stats = Arc::new(SinkStats::default());
        let routing = Routing::new(Arc::new(SinkContext {
            runtime: tokio::runtime::Handle::current(),
            config: config.clone(),
            accumulator: accumulator.clone(),
            ledger: ledger.clone(),
            idempotence: idempotence.clone(),
            metadata: metadata.clone(),
            stats: stats.clone(),
            connect: connect.clone(),
            shutdown: shutdown_rx.clone(),
            codecs: Arc::new(crate::batch::CodecPool::new(
                config.compression,
                config.compression_level(),
            )),
        }));
        tokio::spawn(metadata.clone().run(
            ControlLink::new(connect, config.bootstrap_servers.clone()),
            config.metadata_max_age,
            config.retry_backoff,
            config.retry_backoff_max,
            shutdown_rx.clone(),
        ));
        tokio::spawn(
            routing
                .clone()
                .run(metadata.subscribe(), shutdown_rx.clone()),
        );
        let core = Arc::new(Core {
            config,
            accumulator,
            ledger,
            metadata,
            routing,
            idempotence,
            stats,
            owners: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
            shutdown,
        });
        tokio::spawn(housekeeping(core.clone(), shutdown_rx));
        core
    }

    pub(crate) fn register(
        &self,
        name: String,
        memory_limit: Option<usize>,
        share: Option<Arc<SharedQuota>>,
        reports: Option<usize>,
        outcomes: Option<Arc<dyn crate::owner::Outcomes>>,
    ) -> Arc<OwnerAccount> {
        let account = OwnerAccount::with_outcomes(name, memory_limit, share, reports, outcomes);
        let mut owners = self.owners.lock();
        owners.retain(|w| w.strong_count() > 0);
        owners.push(Arc::downgrade(&account));
        account
    }

    /// Batches of every owner that are not done.
    pub(crate) fn all_pending(&self) -> Vec<Arc<BatchOutcome>> {
        let owners: Vec<Arc<OwnerAccount>> = self
            .owners
            .lock()
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        owners.iter().flat_map(|o| o.pending()).collect()
    }

    /// Sends `pending` without lingering and waits for them, up to `timeout`.
    pub(crate) async fn flush(
        &self,
        pending: Vec<Arc<BatchOutcome>>,
        timeout: Option<Duration>,
    ) -> Result<(), ProduceError> {
        for o in &pending {
            self.accumulator.hurry(o);
        }
        let all = async {
            for o in &pending {
                o.wait().await;
            }
        };
        match timeout {
            None => {
                all.await;
                Ok(())
            }
            Some(t) => tokio::time::timeout(t, all)
                .await
                .map_err(|_| ProduceError::FlushTimeout {
                    waited: t,
                    pending: pending.iter().filter(|o| !o.is_done()).count(),
                }),
        }
    }

    /// Refuses new records, waits up to `timeout` for the pending ones, then ends everything.
    pub(crate) async fn close(&self, timeout: Duration) -> Result<(), ProduceError> {
        self.closed.store(true, Ordering::Release);
        let r = self.flush(self.all_pending(), Some(timeout)).await;
        self.shutdown();
        r
    }

    /// How long a close without a bound may take: every record ends by then anyway.
    pub(crate) fn default_close_timeout(&self) -> Duration {
        self.config.delivery_timeout + self.config.request_timeout
    }

    /// Stops the tasks; whatever is still pending ends with `Closed`.
    pub(crate) fn shutdown(&self) {
        self.closed.store(true, Ordering::Release);
        self.shutdown.send_replace(true);
        self.ledger.memory.close();
        self.accumulator.abort_all(&ProduceError::Closed);
    }

    pub(crate) fn stats(&self) -> ProducerStats {
        let s = &self.stats;
        let l = &self.ledger;
        ProducerStats {
            produce_requests: s.produce_requests.load(Ordering::Relaxed),
            batches_acked: l.batches_acked.load(Ordering::Relaxed),
            records_acked: l.records_acked.load(Ordering::Relaxed),
            records_failed: l.records_failed.load(Ordering::Relaxed),
            retries: s.retries.load(Ordering::Relaxed),
            metadata_requests: self.metadata.requests(),
            metadata_topics: self.metadata.wanted_topics() as u64,
            connections: s.connections.load(Ordering::Relaxed),
            producer_ids: self.idempotence.producer_ids.load(Ordering::Relaxed),
            epoch_bumps: self.idempotence.epoch_bumps.load(Ordering::Relaxed),
            splits: s.splits.load(Ordering::Relaxed),
            callback_panics: l.callback_panics.load(Ordering::Relaxed),
        }
    }

    /// The queues of `topic`, asking the cluster about it if needed.
    async fn queues_for(
        &self,
        topic: &str,
        deadline: &mut Deadline,
    ) -> Result<Arc<TopicQueues>, ProduceError> {
        match self.accumulator.topic(topic) {
            Some(t) => Ok(t),
            None => {
                check_topic_name(topic)?;
                self.topic_queues(topic, deadline.get()).await
            }
        }
    }

    async fn topic_queues(
        &self,
        topic: &str,
        deadline: Instant,
    ) -> Result<Arc<TopicQueues>, ProduceError> {
        let mut shutdown = self.shutdown.subscribe();
        let meta = tokio::select! {
            m = self.metadata.topic(topic, deadline) => m,
            _ = shutdown.wait_for(|s| *s) => return Err(ProduceError::Closed),
        };
        let meta = meta.map_err(|refused| ProduceError::Refused {
            topic: topic.to_string(),
            code: match refused {
                NetError::Auth { code, .. } => Some(code),
                _ => None,
            },
            reason: refused.to_string(),
        })?;
        match meta {
            None => Err(ProduceError::MetadataTimeout {
                topic: topic.to_string(),
                waited: self.config.max_block,
                cause: match self.metadata.snapshot().topics.get(topic) {
                    Some(TopicMetadata::Err(code)) => {
                        format!("the cluster still answers {}", kafka_error_name(*code))
                    }
                    _ => self
                        .metadata
                        .last_error()
                        .unwrap_or_else(|| "the cluster did not answer in time".into()),
                },
            }),
            Some(TopicMetadata::Err(3)) => Err(ProduceError::UnknownTopic(topic.to_string())),
            Some(TopicMetadata::Err(17)) => Err(ProduceError::InvalidTopic {
                topic: topic.to_string(),
                reason: "the cluster refuses the name",
            }),
            Some(TopicMetadata::Err(code)) => Err(ProduceError::Broker {
                name: kafka_error_name(code),
                code,
                topic: topic.to_string(),
                partition: -1,
                message: None,
            }),
            Some(TopicMetadata::Bad(reason)) => Err(ProduceError::BadMetadata {
                topic: topic.to_string(),
                reason,
            }),
            Some(TopicMetadata::Ok { leaders }) if leaders.is_empty() => {
                Err(ProduceError::UnknownTopic(topic.to_string()))
            }
            Some(TopicMetadata::Ok { leaders }) => {
                let t = self.accumulator.topic_with(topic, leaders.len() as i32);
                self.routing.route_topic(&t, &self.metadata.snapshot());
                Ok(t)
            }
        }
    }

    /// The send path shared by [`crate::Producer::send`] and [`crate::Owner::send`].
    pub(crate) async fn send(
        &self,
        owner: &Arc<OwnerAccount>,
        record: &Record<'_>,
        callback: Option<Callback>,
    ) -> Result<Delivery, ProduceError> {
        if self.closed.load(Ordering::Acquire) || owner.closed.load(Ordering::Relaxed) {
            return Err(ProduceError::Closed);
        }
        if let Some(e) = self.idempotence.fatal() {
            return Err(e);
        }
        let c = &self.config;
        let whole = single_record_batch_upper_bound(record);
        if whole > c.max_request_size {
            return Err(ProduceError::RecordTooLarge {
                size: whole,
                limit: c.max_request_size,
                limit_name: "max.request.size",
            });
        }
        if whole > c.buffer_memory {
            return Err(ProduceError::RecordTooLarge {
                size: whole,
                limit: c.buffer_memory,
                limit_name: "buffer.memory",
            });
        }
        let bytes = record_size_upper_bound(record);
        if let Some(limit) = owner.memory_limit {
            if owner.buffered.load(Ordering::Relaxed) + bytes > limit {
                return Err(ProduceError::QuotaExceeded {
                    owner: owner.name.clone(),
                    limit,
                });
            }
        }
        // A shared quota is taken now, given back if the send ends without a batch.
        let share_hold = match &owner.share {
            Some(share) => Some(
                share
                    .take(bytes)
                    .ok_or_else(|| ProduceError::QuotaExceeded {
                        owner: share.name.clone(),
                        limit: share.limit.load(Ordering::Relaxed),
                    })?,
            ),
            None => None,
        };
        // One deadline for everything a send may wait for (metadata, then memory), set when it
        // first waits.
        let mut deadline = Deadline::new(c.max_block);
        let mut topic = self.queues_for(record.topic, &mut deadline).await?;
        self.accumulator.touch(&topic);
        let mut partition = self.partition_for(&topic, record, bytes)?;
        let mut queue = &topic.partitions[partition as usize];
        let timestamp = record.timestamp.unwrap_or_else(now_ms);
        let id = owner.next_id.fetch_add(1, Ordering::Relaxed);
        let mut callback = callback;
        // Memory taken for a new batch and not (yet) used by it goes back when this send ends,
        // however it ends: with a result, or dropped while waiting (a caller's timeout).
        let mut reserved = Reservation {
            memory: &self.ledger.memory,
            bytes: 0,
        };
        // What a shared quota was charged for buffer memory in hand beyond the record (a batch
        // this send opens or grows): handed to the batch, or given back when the send ends.
        let mut batch_hold: Option<crate::ledger::ShareHold<'_>> = None;
        // Whether the open batch may grow for this record: not when the share cannot pay for
        // the growth (the batch leaves as it is; the record opens a small one).
        let mut may_grow = true;
        loop {
            let reserved_before_append = reserved.bytes;
            match self.accumulator.append(
                queue,
                record,
                timestamp,
                bytes,
                owner,
                id,
                &mut callback,
                &mut reserved.bytes,
                may_grow,
            ) {
                Ok((outcome, offset_delta)) => {
                    if let Some(h) = share_hold {
                        h.keep();
                    }
                    // The batch recorded what it took beyond the record as this owner's
                    // charge (`Completion::hold`); the rest of the hold goes back.
                    if let Some(h) = batch_hold {
                        let used = reserved_before_append - reserved.bytes;
                        h.keep_only(used.saturating_sub(bytes));
                    }
                    return Ok(Delivery {
                        outcome,
                        offset_delta,
                        id,
                    });
                }
                Err(NotAppended::Closed) => return Err(ProduceError::Closed),
                Err(NotAppended::Evicted) => {
                    // The topic idled out between the lookup and the append: its new queues.
                    topic = self.queues_for(record.topic, &mut deadline).await?;
                    self.accumulator.touch(&topic);
                    partition = self.partition_for(&topic, record, bytes)?;
                    queue = &topic.partitions[partition as usize];
                }
                Err(NotAppended::NeedMemory { bytes: n, grow }) => {
                    // A shared quota pays for the buffer this record would open or grow.
                    if let Some(share) = &owner.share {
                        let extra = n.saturating_sub(bytes);
                        let held = batch_hold.as_ref().map_or(0, |h| h.bytes());
                        if extra > held {
                            match share.take(extra - held) {
                                Some(more) => match &mut batch_hold {
                                    Some(h) => h.absorb(more),
                                    None => batch_hold = Some(more),
                                },
                                None if grow => {
                                    may_grow = false;
                                    continue;
                                }
                                None => {
                                    return Err(ProduceError::QuotaExceeded {
                                        owner: share.name.clone(),
                                        limit: share.limit.load(Ordering::Relaxed),
                                    })
                                }
                            }
                        }
                    }
                    if n > reserved.bytes {
                        self.reserve(n - reserved.bytes, bytes, &mut deadline)
                            .await?;
                        reserved.bytes = n;
                    }
                }
            }
        }
    }

    /// The partition `record` goes to among `topic`'s partitions.
    fn partition_for(
        &self,
        topic: &TopicQueues,
        record: &Record<'_>,
        bytes: usize,
    ) -> Result<i32, ProduceError> {
        let c = &self.config;
        let count = topic.partitions.len() as i32;
        Ok(match (record.partition, record.key) {
            (Some(p), _) if p < 0 || p >= count => {
                return Err(ProduceError::InvalidPartition {
                    topic: record.topic.to_string(),
                    partition: p,
                    count,
                })
            }
            (Some(p), _) => p,
            (None, Some(key)) if !c.partitioner_ignore_keys => partition_for_key(key, count),
            (None, _) => topic.sticky.next(bytes, c.batch_size, count, |p| {
                topic.partitions[p as usize].rank()
            }),
        })
    }

    /// Takes `n` bytes of `buffer.memory` for a batch's buffer, waiting until `deadline` if it is
    /// used up (lingering batches then leave at once to free it).
    async fn reserve(
        &self,
        n: usize,
        record: usize,
        deadline: &mut Deadline,
    ) -> Result<(), ProduceError> {
        let memory = &self.ledger.memory;
        let n32 = u32::try_from(n).unwrap_or(u32::MAX);
        match memory.try_acquire_many(n32) {
            Ok(p) => {
                p.forget();
                return Ok(());
            }
            Err(tokio::sync::TryAcquireError::Closed) => return Err(ProduceError::Closed),
            Err(tokio::sync::TryAcquireError::NoPermits) => {}
        }
        let deadline = deadline.get();
        let _pressure = self.ledger.pressure_guard();
        self.routing.wake_all();
        match tokio::time::timeout_at(deadline.into(), memory.acquire_many(n32)).await {
            Ok(Ok(p)) => {
                p.forget();
                Ok(())
            }
            Ok(Err(_)) => Err(ProduceError::Closed),
            Err(_) => Err(ProduceError::BufferExhausted {
                size: record,
                waited: self.config.max_block,
            }),
        }
    }
}

/// Fails queued batches at their delivery deadline wherever they are, and forgets topics
/// nobody sent to for `metadata.max.idle.ms`.
async fn housekeeping(core: Arc<Core>, mut shutdown: watch::Receiver<bool>) {
    let c = core.config.clone();
    let idle_every =
        (c.metadata_max_idle / 10).clamp(Duration::from_millis(100), Duration::from_secs(30));
    let cap = (c.delivery_timeout / 2).max(Duration::from_millis(10));
    let mut next_idle = Instant::now() + idle_every;
    loop {
        let now = Instant::now();
        core.accumulator.tick(now);
        let next = core.accumulator.expire_all(now, &core.idempotence);
        if now >= next_idle {
            let mut gone = core
                .accumulator
                .evict_idle(c.metadata_max_idle, &core.idempotence);
            // A send may have brought one back meanwhile: it stays asked for (the router also
            // asks again for any topic with queues).
            gone.retain(|t| core.accumulator.topic(t).is_none());
            if !gone.is_empty() {
                tracing::debug!(topics = gone.len(), "forgot idle topics");
                core.metadata.forget(&gone);
            }
            next_idle = now + idle_every;
        }
        let wake = next
            .unwrap_or(now + cap)
            .min(now + cap)
            .min(next_idle)
            .max(now + Duration::from_millis(10));
        tokio::select! {
            _ = tokio::time::sleep_until(wake.into()) => {}
            _ = shutdown.changed() => return,
        }
    }
}
