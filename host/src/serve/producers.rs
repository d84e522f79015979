//! The producer cores of a serving host: the host's own (from `[kafka]`), and one per distinct
//! tenant identity (`[tenants.NAME.kafka]`: SASL user, client certificate, `client.id`), so the
//! broker's ACLs and quotas see each tenant as itself.
//!
//! Owns which core carries which identity and their lifecycle: a core is started when the
//! first tenant with its identity is built, kept while a tenant uses it, and closed (after the
//! drain timeout, so the events of replaced tenants finish first) once a reload leaves it
//! unused. Tenants with the same identity share one core. It must not know tenants beyond
//! their identity, nor read the config file.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wafka_producer::{Producer, ProducerConfig, ProducerStats};

use crate::serve::config::KafkaIdentity;

/// Starts a producer core from its config (on the runtime the host keeps for producers).
pub type StartProducer = Arc<dyn Fn(ProducerConfig) -> Producer + Send + Sync>;

/// The host's producer cores, by identity.
pub struct Producers {
    host: Producer,
    start: StartProducer,
    cores: Arc<Mutex<Cores>>,
}

#[derive(Default)]
struct Cores {
    /// In use by the tenants in effect.
    own: BTreeMap<KafkaIdentity, Producer>,
    /// Left unused by a reload, closing after the grace time; still flushed and closed with
    /// the others, and counted.
    retiring: Vec<Retiring>,
    next: u64,
    /// The counters of cores closed, so that the sums never go down.
    retired: ProducerStats,
}

/// A core a reload left unused.
struct Retiring {
    id: u64,
    identity: KafkaIdentity,
    producer: Producer,
    /// Its close began: it cannot come back.
    closing: bool,
}

impl std::fmt::Debug for Producers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producers")
            .field("cores", &self.all().len())
            .finish()
    }
}

impl Producers {
    /// `host` carries the tenants without an identity of their own; `start` starts the others
    /// (from `host`'s config with the identity's properties over it).
    pub fn new(host: Producer, start: StartProducer) -> Producers {
        Producers {
            host,
            start,
            cores: Arc::default(),
        }
    }

    fn cores(&self) -> std::sync::MutexGuard<'_, Cores> {
        self.cores.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The host's own core.
    pub fn host(&self) -> &Producer {
        &self.host
    }

    /// The core for `identity`, started on first use (or taken back from retirement). The
    /// config file was checked already, so an error here is rare (a key file that went away
    /// since, a protocol set by `-X`).
    pub fn for_identity(&self, identity: &KafkaIdentity) -> Result<Producer, String> {
        if identity.is_empty() {
            return Ok(self.host.clone());
        }
        if let Some(p) = self.cores().find_or_revive(identity) {
            return Ok(p);
        }
        // Started without the lock: reading key files and trust stores must not hold up
        // scrapes and drains.
        let config = identity.apply(self.host.config(), true).map_err(|(k, m)| {
            if k.is_empty() {
                m
            } else {
                format!("{k}: {m}")
            }
        })?;
        let producer = (self.start)(config);
        let mut cores = self.cores();
        // Another build may have started one meanwhile: the first one stays (the unused new
        // core, with nothing sent, stops when dropped).
        if let Some(p) = cores.find_or_revive(identity) {
            return Ok(p);
        }
        cores.own.insert(identity.clone(), producer.clone());
        Ok(producer)
    }

    /// Every live core, the host's first (retiring ones included).
    pub fn all(&self) -> Vec<Producer> {
        let cores = self.cores();
        std::iter::once(self.host.clone())
            .chain(cores.own.values().cloned())
            .chain(cores.retiring.iter().map(|r| r.producer.clone()))
            .collect()
    }

    /// Retires the cores of identities no tenant in `in_use` has (a reload replaced or removed
    /// their tenants, or a failed reload started them): each closes after `grace`, so the
    /// events of replaced tenants finish first, and its counters are taken once the records it
    /// had in flight settled (another `grace` later); until then it is flushed, closed and
    /// counted with the others, and an identity that comes back takes it back.
    pub fn retire_unused<'a>(
        &self,
        in_use: impl IntoIterator<Item = &'a KafkaIdentity>,
        grace: Duration,
    ) {
        let in_use: Vec<&KafkaIdentity> = in_use.into_iter().collect();
        let mut cores = self.cores();
        let unused: Vec<KafkaIdentity> = cores
            .own
            .keys()
            .filter(|k| !in_use.contains(k))
            .cloned()
            .collect();
        for identity in unused {
            let Some(producer) = cores.own.remove(&identity) else {
                continue;
            };
            let id = cores.next;
            cores.next += 1;
            cores.retiring.push(Retiring {
                id,
                identity,
                producer: producer.clone(),
                closing: false,
            });
            let shared = self.cores.clone();
            tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                {
                    let mut cores = shared.lock().unwrap_or_else(|e| e.into_inner());
                    match cores.retiring.iter_mut().find(|r| r.id == id) {
                        Some(r) => r.closing = true,
                        // Taken back by an identity that came back.
                        None => return,
                    }
                }
                let _ = producer.close_timeout(grace).await;
                // Batches dropped at the close settle on the producer's runtime after it
                // returns: their counts come in shortly.
                tokio::time::sleep(grace).await;
                let mut cores = shared.lock().unwrap_or_else(|e| e.into_inner());
                cores.retiring.retain(|r| r.id != id);
                let closed = producer.stats();
                add(&mut cores.retired, &closed);
            });
        }
    }

    /// Every core's counters, added up (closed ones' included).
    pub fn stats(&self) -> ProducerStats {
        // One lock for both: a core moving from retiring to retired is counted once.
        let cores = self.cores();
        let mut sum = cores.retired;
        let live = std::iter::once(&self.host)
            .chain(cores.own.values())
            .chain(cores.retiring.iter().map(|r| &r.producer));
        for p in live {
            let s = p.stats();
            add(&mut sum, &s);
            sum.metadata_topics += s.metadata_topics;
        }
        sum
    }

    /// Flushes every core, all at once within `timeout`; whether all finished.
    pub async fn flush_timeout(&self, timeout: Duration) -> bool {
        let mut set = tokio::task::JoinSet::new();
        for p in self.all() {
            set.spawn(async move { p.flush_timeout(timeout).await.is_ok() });
        }
        set.join_all().await.into_iter().all(|ok| ok)
    }

    /// Closes every core, all at once within `timeout`; whether all closed cleanly.
    pub async fn close_timeout(&self, timeout: Duration) -> bool {
        let mut set = tokio::task::JoinSet::new();
        for p in self.all() {
            set.spawn(async move { p.close_timeout(timeout).await.is_ok() });
        }
        set.join_all().await.into_iter().all(|ok| ok)
    }
}

impl Cores {
    /// The core in use for `identity`, or one retiring that has not begun to close (taken
    /// back into use).
    fn find_or_revive(&mut self, identity: &KafkaIdentity) -> Option<Producer> {
        if let Some(p) = self.own.get(identity) {
            return Some(p.clone());
        }
        let i = self
            .retiring
            .iter()
            .position(|r| !r.closing && r.identity == *identity)?;
        let r = self.retiring.remove(i);
        self.own.insert(r.identity, r.producer.clone());
        Some(r.producer)
    }
}

/// Adds `b`'s counters to `a` (not `metadata_topics`, which is a current count).
fn add(a: &mut ProducerStats, b: &ProducerStats) {
    a.produce_requests += b.produce_requests;
    a.batches_acked += b.batches_acked;
    a.records_acked += b.records_acked;
    a.records_failed += b.records_failed;
    a.retries += b.retries;
    a.metadata_requests += b.metadata_requests;
    a.connections += b.connections;
    a.producer_ids += b.producer_ids;
    a.epoch_bumps += b.epoch_bumps;
    a.splits += b.splits;
    a.callback_panics += b.callback_panics;
}
