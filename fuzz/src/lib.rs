//! What every cargo-fuzz target of wafka shares: the allocation bounds and running one
//! `wafka_producer::fuzzing` target on an input, a broken property being a panic (which
//! libFuzzer reports as a crash, with the input). `WAFKA_FUZZ_STRICT=1` makes the targets fail
//! on the known, open findings too (`fuzz/known/README.md`).

use std::sync::Once;

use wafka_producer::fuzzing::{set_strict, Target};

/// The largest single allocation a target may make.
pub const SINGLE: usize = 256 << 20;
/// The most bytes a target may have allocated at once.
pub const LIVE: usize = 1 << 30;

/// Runs `target` (looked up by name, so `None` is a typo in a target's file) on `data`.
pub fn run(target: Option<Target>, data: &[u8]) {
    static STRICT: Once = Once::new();
    STRICT
        .call_once(|| set_strict(std::env::var_os("WAFKA_FUZZ_STRICT").is_some_and(|v| v == "1")));
    let target = target.expect("a target of wafka_producer::fuzzing");
    if let Err(violation) = target.run(data) {
        panic!("{}: {violation}", target.name());
    }
}
