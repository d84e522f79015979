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
    own: Mutex<BTreeMap<KafkaIdentity, Producer>>,
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
            own: Mutex::new(BTreeMap::new()),
        }
    }

    /// The host's own core.
    pub fn host(&self) -> &Producer {
        &self.host
    }

    /// The core for `identity`, started on first use. The config file was checked already, so
    /// an error here is rare (a key file that went away since).
    pub fn for_identity(&self, identity: &KafkaIdentity) -> Result<Producer, String> {
        if identity.is_empty() {
            return Ok(self.host.clone());
        }
        let mut own = self.own.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = own.get(identity) {
            return Ok(p.clone());
        }
        let mut config = self.host.config().clone();
        for (k, v) in &identity.0 {
            config.set(k, v).map_err(|e| e.to_string())?;
        }
        config.validate().map_err(|e| e.to_string())?;
        identity.fits(config.security.protocol)?;
        let producer = (self.start)(config);
        own.insert(identity.clone(), producer.clone());
        Ok(producer)
    }

    /// Every core, the host's first.
    pub fn all(&self) -> Vec<Producer> {
        let own = self.own.lock().unwrap_or_else(|e| e.into_inner());
        std::iter::once(self.host.clone())
            .chain(own.values().cloned())
            .collect()
    }

    /// Closes, after `grace`, the cores of identities no tenant in `in_use` has (a reload
    /// replaced or removed their tenants, whose last events may still be publishing).
    pub fn retire_unused<'a>(
        &self,
        in_use: impl IntoIterator<Item = &'a KafkaIdentity>,
        grace: Duration,
    ) {
        let in_use: Vec<&KafkaIdentity> = in_use.into_iter().collect();
        let mut own = self.own.lock().unwrap_or_else(|e| e.into_inner());
        let unused: Vec<KafkaIdentity> = own
            .keys()
            .filter(|k| !in_use.contains(k))
            .cloned()
            .collect();
        for identity in unused {
            if let Some(p) = own.remove(&identity) {
                tokio::spawn(async move {
                    tokio::time::sleep(grace).await;
                    let _ = p.close_timeout(grace).await;
                });
            }
        }
    }

    /// Every core's counters, added up.
    pub fn stats(&self) -> ProducerStats {
        let mut sum = ProducerStats::default();
        for p in self.all() {
            let s = p.stats();
            sum.produce_requests += s.produce_requests;
            sum.batches_acked += s.batches_acked;
            sum.records_acked += s.records_acked;
            sum.records_failed += s.records_failed;
            sum.retries += s.retries;
            sum.metadata_requests += s.metadata_requests;
            sum.metadata_topics += s.metadata_topics;
            sum.connections += s.connections;
            sum.producer_ids += s.producer_ids;
            sum.epoch_bumps += s.epoch_bumps;
            sum.splits += s.splits;
            sum.callback_panics += s.callback_panics;
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
