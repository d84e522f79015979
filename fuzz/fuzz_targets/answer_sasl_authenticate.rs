//! cargo-fuzz target `answer_sasl_authenticate`: `wafka_producer::fuzzing`'s target of that name.
#![no_main]

use wafka_producer::fuzzing::{BoundedAlloc, Target};

#[global_allocator]
static ALLOC: BoundedAlloc = BoundedAlloc::new(wafka_fuzz::SINGLE, wafka_fuzz::LIVE);

libfuzzer_sys::fuzz_target!(|data: &[u8]| wafka_fuzz::run(
    Target::from_name("answer_sasl_authenticate"),
    data
));
