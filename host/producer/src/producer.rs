//! The producer: the public entry point that ties config, metadata, accumulator and sender.
//!
//! Owns the send path (validate, find the partition, take memory, append) and the lifecycle
//! (start the background tasks, flush, close). `send` returns once a record is in a batch; the
//! three ways of sending are: drop the [`Delivery`] (fire and forget), `.await` it (wait for
//! the ack), or pass a callback / read the owner's delivery reports. It must not encode bytes or
//! speak the protocol itself.

use std::sync::atomic::{AtomicBool, AtomicI16, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use crate::accumulator::{Accumulator, AccumulatorConfig, TopicQueues};
use crate::batch::{record_size_upper_bound, single_record_batch_upper_bound};
use crate::brokers::{Brokers, ConnectOptions};
use crate::config::ProducerConfig;
use crate::delivery::{BatchOutcome, Callback, Delivery};
use crate::error::{kafka_error_name, ConfigError, ProduceError};
use crate::metadata::{Metadata, TopicMetadata};
use crate::owner::{Owner, OwnerOptions, OwnerState};
use crate::partitioner::partition_for_key;
use crate::record::Record;

/// Counters of what the producer did, for benchmarks and hosts.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) produce_requests: AtomicU64,
    pub(crate) retries: AtomicU64,
}

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
}

/// The idempotent producer's identity.
#[derive(Debug)]
pub(crate) struct Idempotence {
    pub(crate) enabled: AtomicBool,
    pid: AtomicI64,
    epoch: AtomicI16,
    /// Set when sequence numbers can no longer be trusted: get a new id, renumber.
    pub(crate) needs_reset: AtomicBool,
}

impl Idempotence {
    /// `(producer id, epoch)`, `(-1, -1)` while unknown or disabled.
    pub(crate) fn current(&self) -> (i64, i16) {
        if !self.enabled.load(Ordering::Acquire) {
            return (-1, -1);
        }
        (
            self.pid.load(Ordering::Acquire),
            self.epoch.load(Ordering::Acquire),
        )
    }

    pub(crate) fn set(&self, pid: i64, epoch: i16) {
        self.epoch.store(epoch, Ordering::Release);
        self.pid.store(pid, Ordering::Release);
    }
}

/// State shared by the producer handle, owners and background tasks.
pub(crate) struct Shared {
    pub(crate) config: ProducerConfig,
    pub(crate) accumulator: Accumulator,
    pub(crate) metadata: Arc<Metadata>,
    pub(crate) brokers: Arc<Brokers>,
    pub(crate) idempotence: Idempotence,
    pub(crate) shutdown: watch::Sender<bool>,
    pub(crate) stats: Stats,
    closed: AtomicBool,
    owners: Mutex<Vec<Weak<OwnerState>>>,
    fatal: Mutex<Option<ProduceError>>,
    has_fatal: AtomicBool,
}

/// Stops the background tasks when the last handle goes away.
struct Guard(Arc<Shared>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::Release);
        self.0.shutdown.send_replace(true);
        self.0.brokers.close_all();
    }
}

/// A Kafka producer. Cheap to clone; all clones share one set of connections and batches.
/// Must be created inside a tokio runtime.
#[derive(Clone)]
pub struct Producer {
    shared: Arc<Shared>,
    guard: Arc<Guard>,
    default_owner: Arc<OwnerState>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("bootstrap", &self.shared.config.bootstrap_servers)
            .finish()
    }
}

impl Producer {
    /// Starts a producer from properties (`bootstrap.servers` is required).
    pub fn from_properties<I, K, V>(props: I) -> Result<Producer, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        Ok(Producer::new(ProducerConfig::from_properties(props)?))
    }

    /// Starts a producer. Connections are opened lazily, on the first send.
    pub fn new(config: ProducerConfig) -> Producer {
        let acc = AccumulatorConfig {
            batch_size: config.batch_size,
            linger: config.linger,
            compression: config.compression,
            compression_level: config.compression_level,
            delivery_timeout: config.delivery_timeout,
            buffer_memory: config.buffer_memory,
        };
        let brokers = Arc::new(Brokers::new(
            config.bootstrap_servers.clone(),
            ConnectOptions {
                client_id: config.client_id.clone(),
                setup_timeout: config.connection_setup_timeout,
                request_timeout: config.request_timeout,
                backoff: config.reconnect_backoff,
                backoff_max: config.reconnect_backoff_max,
            },
        ));
        let shared = Arc::new(Shared {
            idempotence: Idempotence {
                enabled: AtomicBool::new(config.enable_idempotence),
                pid: AtomicI64::new(-1),
                epoch: AtomicI16::new(-1),
                needs_reset: AtomicBool::new(false),
            },
            accumulator: Accumulator::new(acc),
            metadata: Arc::new(Metadata::new(config.retry_backoff)),
            brokers,
            shutdown: watch::channel(false).0,
            stats: Stats::default(),
            closed: AtomicBool::new(false),
            owners: Mutex::new(Vec::new()),
            fatal: Mutex::new(None),
            has_fatal: AtomicBool::new(false),
            config,
        });
        tokio::spawn(shared.metadata.clone().run(
            shared.brokers.clone(),
            shared.config.metadata_max_age,
            shared.config.retry_backoff,
            shared.config.retry_backoff_max,
            shared.shutdown.subscribe(),
        ));
        tokio::spawn(crate::sender::run(shared.clone()));
        let default_owner = shared.register(OwnerOptions {
            name: "default".into(),
            ..Default::default()
        });
        Producer {
            guard: Arc::new(Guard(shared.clone())),
            shared,
            default_owner,
        }
    }

    /// The settings in effect.
    pub fn config(&self) -> &ProducerConfig {
        &self.shared.config
    }

    /// A new owner: records sent through it can be flushed, reported and counted apart from
    /// other owners' records, while sharing batches with them.
    pub fn owner(&self, options: OwnerOptions) -> Owner {
        Owner {
            state: self.shared.register(options),
            shared: self.shared.clone(),
            _guard: self.guard.clone() as Arc<dyn std::any::Any + Send + Sync>,
        }
    }

    /// Queues `record` for the producer's default owner. See [`Owner::send`].
    pub async fn send(&self, record: &Record<'_>) -> Result<Delivery, ProduceError> {
        self.shared.send(&self.default_owner, record, None).await
    }

    /// Queues `record` and calls `callback` once with its result.
    pub async fn send_with_callback(
        &self,
        record: &Record<'_>,
        callback: Callback,
    ) -> Result<Delivery, ProduceError> {
        self.shared
            .send(&self.default_owner, record, Some(callback))
            .await
    }

    /// Sends at once whatever lingers and waits until every record queued before the call,
    /// by any owner, is acknowledged or failed.
    pub async fn flush(&self) {
        let pending = self.shared.all_pending();
        self.shared.flush_batches(pending).await;
    }

    /// Refuses new records, flushes, and stops the background tasks and connections.
    pub async fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        self.flush().await;
        self.shared.shutdown.send_replace(true);
        self.shared.brokers.close_all();
    }

    /// What the producer did so far.
    pub fn stats(&self) -> ProducerStats {
        let s = &self.shared.stats;
        let l = &self.shared.accumulator.ledger;
        ProducerStats {
            produce_requests: s.produce_requests.load(Ordering::Relaxed),
            batches_acked: l.batches_acked.load(Ordering::Relaxed),
            records_acked: l.records_acked.load(Ordering::Relaxed),
            records_failed: l.records_failed.load(Ordering::Relaxed),
            retries: s.retries.load(Ordering::Relaxed),
            metadata_requests: self.shared.metadata.requests(),
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn check_topic(topic: &str) -> Result<(), ProduceError> {
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
            topic: topic.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

impl Shared {
    fn register(&self, options: OwnerOptions) -> Arc<OwnerState> {
        let state = OwnerState::new(options);
        let mut owners = self.owners.lock().expect("owners lock");
        owners.retain(|w| w.strong_count() > 0);
        owners.push(Arc::downgrade(&state));
        state
    }

    fn all_pending(&self) -> Vec<Arc<BatchOutcome>> {
        let owners: Vec<Arc<OwnerState>> = self
            .owners
            .lock()
            .expect("owners lock")
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        owners.iter().flat_map(|o| o.pending()).collect()
    }

    /// Makes lingering batches sendable and waits for `pending`.
    pub(crate) async fn flush_batches(&self, pending: Vec<Arc<BatchOutcome>>) {
        self.accumulator.begin_flush();
        for b in pending {
            b.wait().await;
        }
        self.accumulator.end_flush();
    }

    /// Fails every queued record and every later send (the producer cannot go on).
    pub(crate) fn fail_everything(&self, e: ProduceError) {
        *self.fatal.lock().expect("fatal lock") = Some(e.clone());
        self.has_fatal.store(true, Ordering::Release);
        self.accumulator.abort_all(&e);
    }

    async fn topic_queues(
        &self,
        topic: &str,
        deadline: Instant,
    ) -> Result<Arc<TopicQueues>, ProduceError> {
        match self.metadata.topic(topic, deadline).await {
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
            Some(TopicMetadata::Ok { leaders }) if leaders.is_empty() => {
                Err(ProduceError::UnknownTopic(topic.to_string()))
            }
            Some(TopicMetadata::Ok { leaders }) => {
                Ok(self.accumulator.topic_with(topic, leaders.len() as i32))
            }
        }
    }

    /// The send path shared by [`Producer::send`] and [`Owner::send`].
    pub(crate) async fn send(
        &self,
        owner: &Arc<OwnerState>,
        record: &Record<'_>,
        callback: Option<Callback>,
    ) -> Result<Delivery, ProduceError> {
        if self.closed.load(Ordering::Acquire) || owner.closed.load(Ordering::Relaxed) {
            return Err(ProduceError::Closed);
        }
        if self.has_fatal.load(Ordering::Acquire) {
            if let Some(e) = self.fatal.lock().expect("fatal lock").clone() {
                return Err(e);
            }
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
        let topic = match self.accumulator.topic(record.topic) {
            Some(t) => t,
            None => {
                check_topic(record.topic)?;
                self.topic_queues(record.topic, Instant::now() + c.max_block)
                    .await?
            }
        };
        let count = topic.partitions.len() as i32;
        let partition = match (record.partition, record.key) {
            (Some(p), _) if p < 0 || p >= count => {
                return Err(ProduceError::InvalidPartition {
                    topic: record.topic.to_string(),
                    partition: p,
                    count,
                })
            }
            (Some(p), _) => p,
            (None, Some(key)) if !c.partitioner_ignore_keys => partition_for_key(key, count),
            (None, _) => topic.sticky.next(bytes, c.batch_size, count),
        };
        self.reserve(bytes).await?;
        let id = owner.next_id.fetch_add(1, Ordering::Relaxed);
        let timestamp = record.timestamp.unwrap_or_else(now_ms);
        let (outcome, offset_delta) = self.accumulator.append(
            &topic.partitions[partition as usize],
            record,
            timestamp,
            bytes,
            owner,
            id,
            callback,
        );
        Ok(Delivery {
            outcome,
            offset_delta,
            id,
        })
    }

    /// Takes `bytes` of `buffer.memory`, waiting up to `max.block.ms` if it is used up.
    async fn reserve(&self, bytes: usize) -> Result<(), ProduceError> {
        let memory = &self.accumulator.ledger.memory;
        let n = bytes as u32;
        match memory.try_acquire_many(n) {
            Ok(p) => {
                p.forget();
                return Ok(());
            }
            Err(tokio::sync::TryAcquireError::Closed) => return Err(ProduceError::Closed),
            Err(tokio::sync::TryAcquireError::NoPermits) => {}
        }
        let deadline = Instant::now() + self.config.max_block;
        let acc = &self.accumulator;
        acc.blocked.fetch_add(1, Ordering::AcqRel);
        acc.wake.notify_one();
        let r = tokio::time::timeout_at(deadline.into(), memory.acquire_many(n)).await;
        acc.blocked.fetch_sub(1, Ordering::AcqRel);
        match r {
            Ok(Ok(p)) => {
                p.forget();
                Ok(())
            }
            Ok(Err(_)) => Err(ProduceError::Closed),
            Err(_) => Err(ProduceError::BufferExhausted {
                size: bytes,
                waited: self.config.max_block,
            }),
        }
    }
}
