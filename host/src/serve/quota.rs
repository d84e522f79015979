//! Rate quotas after Kafka's model: a rate measured over a few sampled windows, recorded after
//! the work is done, and a throttle time that brings the rate back to the quota.
//!
//! Owns [`Rate`] (Kafka's `quota.window.num` = 11 samples of `quota.window.size.seconds` = 1 s)
//! and [`Throttle`], a tenant's byte and record quotas with the time until which its publishes
//! are refused. As in Kafka's `ClientQuotaManager` (KIP-219), a quota is not checked before a
//! record but after it: once the measured rate passes the quota, the tenant is throttled for
//! `(rate - quota) / quota × window` (uncapped) and its publishes answer `quota-exceeded` (HTTP: 429 with
//! `Retry-After`) until then. Beside them, [`StartRate`]: how many instances a tenant's plugins
//! may start per second (a token bucket, checked before each start). A leaf: no HTTP, no wasm.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Samples a rate is measured over (Kafka's `quota.window.num`).
pub const WINDOWS: usize = 11;
/// Length of one sample (Kafka's `quota.window.size.seconds`).
pub const WINDOW: Duration = Duration::from_secs(1);

/// A rate over the last [`WINDOWS`] windows of [`WINDOW`].
#[derive(Debug)]
pub struct Rate {
    /// Per window: (start, total); the current one is the newest.
    samples: Mutex<Samples>,
}

#[derive(Debug)]
struct Samples {
    windows: [(Option<Instant>, f64); WINDOWS],
    current: usize,
}

impl Default for Rate {
    fn default() -> Self {
        Rate {
            samples: Mutex::new(Samples {
                windows: [(None, 0.0); WINDOWS],
                current: 0,
            }),
        }
    }
}

impl Rate {
    /// Adds `value` at `now` and returns the rate per second measured with it.
    pub fn record(&self, value: f64, now: Instant) -> f64 {
        let mut s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let cur = s.current;
        match s.windows[cur].0 {
            Some(start) if now.saturating_duration_since(start) < WINDOW => {}
            Some(_) => {
                let next = (cur + 1) % WINDOWS;
                s.windows[next] = (Some(now), 0.0);
                s.current = next;
            }
            None => s.windows[cur] = (Some(now), 0.0),
        }
        let cur = s.current;
        s.windows[cur].1 += value;
        // Samples older than the whole window count for nothing.
        let oldest_allowed = now.checked_sub(WINDOW * WINDOWS as u32);
        let mut total = 0.0;
        let mut oldest = now;
        for (start, v) in s.windows.iter() {
            if let Some(start) = start {
                if oldest_allowed.is_none_or(|o| *start >= o) {
                    total += v;
                    oldest = oldest.min(*start);
                }
            }
        }
        // As Kafka: the elapsed time is at least (windows - 1) whole windows, so that a burst
        // right after a quiet spell (or the start) is not measured over a few microseconds.
        let elapsed = now
            .saturating_duration_since(oldest)
            .max(WINDOW * (WINDOWS as u32 - 1));
        total / elapsed.as_secs_f64()
    }
}

/// How long to throttle when `rate` is measured against `quota` (both per second): zero
/// when within, else `(rate - quota) / quota` of the measured window. Not capped, as Kafka's
/// byte-rate quotas: a burst far over the quota waits until the rate is back at it (a cap
/// would let one more large record through after every capped wait).
pub fn throttle_time(rate: f64, quota: f64) -> Duration {
    if rate <= quota || quota <= 0.0 {
        return Duration::ZERO;
    }
    let window = (WINDOW * (WINDOWS as u32 - 1)).as_secs_f64();
    Duration::from_secs_f64(((rate - quota) / quota * window).min(1e9))
}

/// A tenant's rate quotas and the throttle they impose.
#[derive(Debug)]
pub struct Throttle {
    bytes: Option<(u64, Rate)>,
    records: Option<(u64, Rate)>,
    /// Until when publishes are refused: nanoseconds after `epoch`.
    until: AtomicU64,
    epoch: Instant,
    /// Nanoseconds of throttle imposed so far (a metric).
    throttled: AtomicU64,
}

impl Throttle {
    /// Quotas of `byte_rate` bytes and `record_rate` records per second (none: unlimited).
    pub fn new(byte_rate: Option<u64>, record_rate: Option<u64>) -> Self {
        Throttle {
            bytes: byte_rate.map(|q| (q, Rate::default())),
            records: record_rate.map(|q| (q, Rate::default())),
            until: AtomicU64::new(0),
            epoch: Instant::now(),
            throttled: AtomicU64::new(0),
        }
    }

    /// Whether any quota is set.
    pub fn is_limited(&self) -> bool {
        self.bytes.is_some() || self.records.is_some()
    }

    /// How long the tenant stays throttled from `now` (zero: not throttled).
    pub fn remaining(&self, now: Instant) -> Duration {
        let until = self.until.load(Ordering::Relaxed);
        let at = now.saturating_duration_since(self.epoch).as_nanos() as u64;
        Duration::from_nanos(until.saturating_sub(at))
    }

    /// Records a published record of `bytes` at `now`; throttles if a rate passed its quota.
    pub fn record(&self, bytes: u64, now: Instant) {
        let mut wait = Duration::ZERO;
        if let Some((q, rate)) = &self.bytes {
            wait = wait.max(throttle_time(rate.record(bytes as f64, now), *q as f64));
        }
        if let Some((q, rate)) = &self.records {
            wait = wait.max(throttle_time(rate.record(1.0, now), *q as f64));
        }
        if wait.is_zero() {
            return;
        }
        let at = now.saturating_duration_since(self.epoch);
        let until = (at + wait).as_nanos() as u64;
        let before = self.until.fetch_max(until, Ordering::Relaxed);
        // Count only the throttle time this record added.
        let from = before.max(at.as_nanos() as u64);
        self.throttled
            .fetch_add(until.saturating_sub(from), Ordering::Relaxed);
    }

    /// Counts `from`'s throttle time so far as this one's too (a tenant whose quotas a reload
    /// changed keeps its total).
    pub fn carry_throttled(&self, from: &Throttle) {
        self.throttled
            .fetch_add(from.throttled.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// Throttle time imposed so far.
    pub fn throttled_total(&self) -> Duration {
        Duration::from_nanos(self.throttled.load(Ordering::Relaxed))
    }

    /// The quotas, for messages: `producer_byte_rate = N` and/or `producer_record_rate = N`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some((q, _)) = &self.bytes {
            parts.push(format!("producer_byte_rate = {q}"));
        }
        if let Some((q, _)) = &self.records {
            parts.push(format!("producer_record_rate = {q}"));
        }
        parts.join(", ")
    }
}

/// How many instances a tenant's plugins may start: a rate with a burst, over all its plugins.
/// A start is instantiation, `init`, and later the reset of the instance's memory when it is
/// dropped: work for the host that no call's CPU budget covers, so a plugin that traps on every
/// event (and so starts an instance for every event) is held to this rate.
#[derive(Debug)]
pub struct StartRate {
    bucket: crate::runtime::bucket::TokenBucket,
}

impl StartRate {
    /// `per_second` starts a second, `burst` at once.
    pub fn new(per_second: u64, burst: u64) -> Self {
        StartRate {
            bucket: crate::runtime::bucket::TokenBucket::new(per_second, burst),
        }
    }

    /// Takes one start at `now`, or answers how long until one is allowed.
    pub fn start(&self, now: Instant) -> Result<(), Duration> {
        self.bucket
            .take(1, now)
            // The burst is at least 1 and the rate at least 1 a second (config.rs).
            .map_err(|wait| wait.unwrap_or(WINDOW))
    }

    /// The rate, for messages: `instance_starts_per_second = N, instance_start_burst = B`.
    pub fn describe(&self) -> String {
        format!(
            "instance_starts_per_second = {}, instance_start_burst = {}",
            self.bucket.per_second(),
            self.bucket.burst()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_rate_is_measured_over_the_windows() {
        let r = Rate::default();
        let t0 = Instant::now();
        let mut rate = 0.0;
        // 100 per 10 ms for 20 s: 10,000 per second.
        for i in 0..2_000u32 {
            rate = r.record(100.0, t0 + Duration::from_millis(10) * i);
        }
        assert!((rate - 10_000.0).abs() < 1_100.0, "{rate}");
    }

    #[test]
    fn a_first_burst_is_measured_over_ten_windows_not_microseconds() {
        let r = Rate::default();
        let rate = r.record(1_000.0, Instant::now());
        assert!((rate - 100.0).abs() < 1e-6, "{rate}");
    }

    #[test]
    fn over_quota_throttles_in_proportion_and_within_the_window() {
        assert_eq!(throttle_time(100.0, 100.0), Duration::ZERO);
        assert_eq!(throttle_time(200.0, 100.0), Duration::from_secs(10));
        assert_eq!(throttle_time(150.0, 100.0), Duration::from_secs(5));
        // 1 MiB at 1,000 B/s: about 17 minutes, the time the quota needs to pay it back.
        let big = throttle_time(1_048_576.0 / 10.0, 1_000.0);
        assert!(
            big > Duration::from_secs(1_000) && big < Duration::from_secs(1_100),
            "{big:?}"
        );
    }

    #[test]
    fn a_throttled_tenant_waits_then_goes_on() {
        let t = Throttle::new(Some(1_000), None);
        let now = Instant::now();
        // 10 KB at once: the rate over 10 s is 1,000/s, at the quota.
        t.record(10_000, now);
        assert_eq!(t.remaining(now), Duration::ZERO);
        // 5 KB more: 1,500/s, half over: 5 s of throttle.
        t.record(5_000, now);
        let left = t.remaining(now);
        assert!(
            left > Duration::from_millis(4_900) && left <= Duration::from_secs(5),
            "{left:?}"
        );
        assert_eq!(t.remaining(now + Duration::from_secs(6)), Duration::ZERO);
        assert!(t.throttled_total() >= Duration::from_millis(4_900));
        assert_eq!(t.describe(), "producer_byte_rate = 1000");
    }
}
