//! What the benchmarks share: reading their `WAFKA_BENCH_*` settings and measuring CPU time.

use std::time::{Duration, Instant};

/// User + system CPU time of this process (all threads).
pub fn process_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct we pass.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, &mut usage), 0);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Runs `f`, returning its result with the (wall, process CPU) time it took.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, (Duration, Duration)) {
    let cpu_before = process_cpu();
    let start = Instant::now();
    let out = f();
    let wall = start.elapsed();
    (out, (wall, process_cpu().saturating_sub(cpu_before)))
}

/// The number in the environment variable `name` (`_` separators allowed), or `default`.
///
/// # Panics
///
/// If the variable is set to something that is not a number.
pub fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .replace('_', "")
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        _ => default,
    }
}

/// The comma-separated list in the environment variable `name`, if set and not empty.
pub fn env_list(name: &str) -> Option<Vec<String>> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect())
}
