//! What an operator fixes for a plugin, and the counters an instance keeps.
//!
//! Owns [`PluginOptions`] (name, autoflush policy, limits, ACL, quotas, the publish gate) and
//! [`PluginStats`].
//! A leaf: it must not know about stores, linkers or the producer's internals.

use std::sync::Arc;

use wafka_producer::MemoryShare;

use crate::runtime::acl::TopicAcl;
use crate::runtime::gate::PublishGate;
use crate::runtime::limits::{CpuGroup, Limits};
use crate::runtime::output::OutputRate;

/// Who decides whether `publish` waits for the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Autoflush {
    /// Always: `publish` returns after the broker acknowledged the record.
    On,
    /// Never: `publish` returns once the record is queued.
    Off,
    /// The plugin, with `set-autoflush`; it starts off.
    Guest,
}

impl std::str::FromStr for Autoflush {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "on" => Ok(Autoflush::On),
            "off" => Ok(Autoflush::Off),
            "guest" => Ok(Autoflush::Guest),
            _ => Err(format!("`{s}`: expected on, off or guest")),
        }
    }
}

/// Default of [`PluginOptions::max_topics`].
pub const DEFAULT_MAX_TOPICS: usize = 1_000;

/// What an operator fixes for a plugin.
#[derive(Debug, Clone)]
pub struct PluginOptions {
    /// Name used in logs and errors.
    pub name: String,
    /// Autoflush policy: which publish path an instance starts with, and whether the plugin
    /// may switch it.
    pub autoflush: Autoflush,
    /// Memory, CPU and wall-time limits of each instance.
    pub limits: Limits,
    /// Topics the plugin may publish to.
    pub acl: TopicAcl,
    /// Most bytes an instance may have buffered in the producer; over it `publish` fails with
    /// `quota-exceeded`.
    pub buffer_quota: Option<usize>,
    /// Most distinct topics one instance may publish to (each enters the producer's metadata);
    /// one more fails with `quota-exceeded`.
    pub max_topics: usize,
    /// Most key, value and header bytes one record may have, below the producer's own
    /// `max.request.size`; over it `publish` fails with `record-too-large`.
    pub max_record_bytes: Option<usize>,
    /// A memory quota every instance of this plugin (and any other plugin given the same
    /// share: a tenant's) counts against together; over it `publish` fails with
    /// `quota-exceeded`.
    pub memory_share: Option<MemoryShare>,
    /// Checks and counts every publish (quotas, metrics), if set.
    pub gate: Option<Arc<dyn PublishGate>>,
    /// The CPU group its calls count in (a tenant's), if any: see [`CpuGroup`].
    pub cpu_group: Option<Arc<CpuGroup>>,
    /// Told how each instance's records end once queued (delivered, failed), if set.
    pub outcomes: Option<Arc<dyn wafka_producer::Outcomes>>,
    /// The byte rate its stdout and stderr are held to, shared with every plugin given the
    /// same one (a tenant's); `None`: only the budget per call.
    pub output_rate: Option<Arc<OutputRate>>,
}

impl PluginOptions {
    /// Defaults for a plugin called `name`: autoflush off, default limits, every topic.
    pub fn new(name: impl Into<String>) -> Self {
        PluginOptions {
            name: name.into(),
            autoflush: Autoflush::Off,
            limits: Limits::default(),
            acl: TopicAcl::allow_all(),
            buffer_quota: None,
            max_topics: DEFAULT_MAX_TOPICS,
            max_record_bytes: None,
            memory_share: None,
            gate: None,
            cpu_group: None,
            outcomes: None,
            output_rate: None,
        }
    }
}

/// Counters of one instance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PluginStats {
    /// Events handled (successfully or not).
    pub events: u64,
    /// Events the plugin returned an error for.
    pub failed_events: u64,
    /// Records queued.
    pub records: u64,
    /// Key, value and header bytes of the records queued.
    pub bytes: u64,
    /// Records refused (the plugin got an error back from `publish`): by the ACL, a limit, or
    /// the producer.
    pub refused: u64,
}

/// A record the broker acknowledged while `publish` waited for it (autoflush on), as kept
/// for the host by [`crate::PluginInstance::collect_acks`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RecordAck {
    /// Its topic.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
}
