//! What a host serving many parties through one producer adds around every `publish`: a
//! check before the record is read (a rate quota, say) and a count after it (metrics).
//!
//! Owns the [`PublishGate`] trait and what it is told ([`Published`]). The runtime calls a
//! plugin's gate, when its options carry one, from the linker's `publish` (one place for
//! every sink and autoflush path); a plugin without a gate pays nothing. A leaf: it must not
//! know about stores, the producer or HTTP — the tenancy layer (`serve`) implements it.

use std::time::Duration;

/// Checks and counts a plugin's publishes. Implementations must be cheap: they run on every
/// record.
pub trait PublishGate: Send + Sync + std::fmt::Debug {
    /// Before anything of the record is read: `Err(why)` refuses it with `quota-exceeded`
    /// and the plugin sees `why`.
    fn admit(&self) -> Result<(), String>;
    /// After the publish call, whatever its outcome.
    fn published(&self, outcome: &Published);
}

/// What one `publish` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// Key, value and header bytes of the record if it was queued (under autoflush: also when
    /// waiting for its acknowledgement then failed); `None` if it was refused before.
    pub bytes: Option<u64>,
    /// Why it was refused: the contract's `produce-error` case (`"not-authorized"`,
    /// `"record-too-large"`, …); `None` if it was queued.
    pub refused: Option<&'static str>,
    /// How long the call took, waiting for the broker included under autoflush.
    pub elapsed: Duration,
}
