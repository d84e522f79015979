//! Entry points for fuzzing the producer's parsers and encoders (issue 18). Not a stable API:
//! hidden from the docs, used by the stable harness (`host/producer/tests/fuzz.rs`) and the
//! cargo-fuzz targets (`fuzz/fuzz_targets/`), which run the same functions.
//!
//! Owns the list of targets and what each one checks; every target takes arbitrary bytes and
//! returns what the producer made of them ([`Outcome`]) or a broken property ([`Violation`]).
//! A panic, an abort or an allocation past [`BoundedAlloc`]'s bounds is a failure as well;
//! catching those is the harness's job. The targets:
//!
//! - `answer_*` ([`answers`]): an answer frame for each API the producer negotiates, at each
//!   version it may negotiate, through `connection.rs`'s decoding, then through what the
//!   producer does with the decoded answer where that needs no socket;
//! - `record_batch` ([`batches`]): records built from the input, through `BatchBuilder`, every
//!   codec, `seal` and `split`, read back by `kafka-protocol`'s decoder;
//! - `config` ([`config`]): `(name, value)` pairs through `ProducerConfig::from_properties`.
//!
//! It must not touch sockets or files, and a target must give the same result for the same
//! input.
//!
//! Known, open findings (listed in `fuzz/known/README.md`) are tolerated unless [`set_strict`]
//! turns strictness on: otherwise every run would stop at them. Each tolerance says which
//! finding it stands for; when one is fixed, its tolerance goes and its inputs move from
//! `fuzz/known/` to `fuzz/regressions/`.

pub mod alloc;
pub mod answers;
pub mod batches;
pub mod config;
mod input;

use std::sync::atomic::{AtomicBool, Ordering};

pub use alloc::BoundedAlloc;
pub use answers::Api;

static STRICT: AtomicBool = AtomicBool::new(false);

/// Whether the targets fail on the known, open findings too (for the whole process).
pub fn set_strict(strict: bool) {
    STRICT.store(strict, Ordering::Relaxed);
}

/// See [`set_strict`]. A target's tolerance for a known, open finding asks this; none is open
/// now (`fuzz/known/README.md`), so nothing does.
#[allow(dead_code)]
fn strict() -> bool {
    STRICT.load(Ordering::Relaxed)
}

/// What the producer made of an input, when no property broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Taken: decoded and used, encoded and read back, or accepted as a config.
    Accepted,
    /// Refused with an error, as the producer would refuse it (the reason, in words).
    Refused(String),
}

/// A property that does not hold: a bug in the producer (or in the target).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// What the producer made of a decoded answer is wrong.
    #[error("answer to API key {api_key} v{version}: {what}")]
    Answer {
        /// The API.
        api_key: i16,
        /// The version decoded.
        version: i16,
        /// What is wrong.
        what: String,
    },
    /// A batch does not read back as written.
    #[error("record batch ({codec}): {what}")]
    Batch {
        /// The codec's name.
        codec: &'static str,
        /// What is wrong.
        what: String,
    },
    /// An accepted config breaks a rule `validate` stands for.
    #[error("config: {0}")]
    Config(String),
}

/// One fuzz target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// An answer to one API.
    Answer(Api),
    /// Record batches, encoded and read back.
    RecordBatch,
    /// The config parser.
    Config,
}

impl Target {
    /// Every target, in the order the harness runs them.
    pub const ALL: [Target; 8] = [
        Target::Answer(Api::ApiVersions),
        Target::Answer(Api::Metadata),
        Target::Answer(Api::InitProducerId),
        Target::Answer(Api::Produce),
        Target::Answer(Api::SaslHandshake),
        Target::Answer(Api::SaslAuthenticate),
        Target::RecordBatch,
        Target::Config,
    ];

    /// The target's name: its cargo-fuzz target and its folders under `fuzz/`.
    pub fn name(self) -> &'static str {
        match self {
            Target::Answer(api) => api.target_name(),
            Target::RecordBatch => "record_batch",
            Target::Config => "config",
        }
    }

    /// The target named `name`.
    pub fn from_name(name: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Runs the target on `data`.
    pub fn run(self, data: &[u8]) -> Result<Outcome, Violation> {
        let _noted = alloc::note_input(data);
        match self {
            Target::Answer(api) => answers::answer(api, data),
            Target::RecordBatch => batches::record_batch(data),
            Target::Config => config::config(data),
        }
    }
}
