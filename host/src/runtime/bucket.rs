//! A token bucket: a rate with a burst.
//!
//! Owns [`TokenBucket`]: at most `burst` tokens, refilled at `per_second`; a take of more than
//! are left takes nothing and says when there would be enough. Used for what a tenant's plugins
//! write to the log (bytes) and for its instance starts. A leaf: it must not know what it
//! counts.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A rate with a burst; starts full. Cheap to share by reference (one lock, held for a few
/// arithmetic operations).
#[derive(Debug)]
pub struct TokenBucket {
    per_second: u64,
    burst: u64,
    /// Tokens left, as of the instant beside them.
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    /// `per_second` tokens a second, at most `burst` at once.
    pub fn new(per_second: u64, burst: u64) -> Self {
        TokenBucket {
            per_second,
            burst,
            state: Mutex::new((burst as f64, Instant::now())),
        }
    }

    /// The rate, per second.
    pub fn per_second(&self) -> u64 {
        self.per_second
    }

    /// The burst.
    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// Takes `n` tokens at `now` if there are that many. If not, takes nothing and answers how
    /// long until there would be (`None`: never, `n` is over the burst or the rate is 0).
    pub fn take(&self, n: u64, now: Instant) -> Result<(), Option<Duration>> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, at) = *s;
        let elapsed = now.saturating_duration_since(at).as_secs_f64();
        let tokens = (tokens + elapsed * self.per_second as f64).min(self.burst as f64);
        *s = (tokens, now.max(at));
        let n = n as f64;
        if tokens >= n {
            s.0 = tokens - n;
            return Ok(());
        }
        if n > self.burst as f64 || self.per_second == 0 {
            return Err(None);
        }
        Err(Some(Duration::from_secs_f64(
            (n - tokens) / self.per_second as f64,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let b = TokenBucket::new(10, 20);
        let t0 = Instant::now();
        for _ in 0..20 {
            b.take(1, t0).unwrap();
        }
        let wait = b.take(1, t0).unwrap_err().unwrap();
        assert!(wait > Duration::from_millis(99) && wait <= Duration::from_millis(100));
        // A second later: ten more, not twenty.
        let t1 = t0 + Duration::from_secs(1);
        for _ in 0..10 {
            b.take(1, t1).unwrap();
        }
        assert!(b.take(1, t1).is_err());
        // Never more than the burst, however long the pause.
        let t2 = t1 + Duration::from_secs(3600);
        b.take(20, t2).unwrap();
        assert!(b.take(1, t2).is_err());
        assert_eq!(b.take(21, t2 + Duration::from_secs(9)), Err(None));
    }

    #[test]
    fn a_zero_rate_gives_the_burst_once() {
        let b = TokenBucket::new(0, 5);
        let t0 = Instant::now();
        b.take(5, t0).unwrap();
        assert_eq!(b.take(1, t0 + Duration::from_secs(60)), Err(None));
    }
}
