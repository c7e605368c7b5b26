//! A token bucket with the semantics of Go's `x/time/rate` `AllowN`, as Loki uses it:
//! the bucket starts full, refills at `rate` per second up to `burst`, and a request
//! for more than `burst` tokens is never allowed.

use std::time::Instant;

#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: f64, now: Instant) -> Self {
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Updates the limits in place (limits can be reloaded), keeping the tokens.
    pub fn set_limits(&mut self, rate: f64, burst: f64) {
        self.rate = rate;
        self.burst = burst;
        self.tokens = self.tokens.min(burst);
    }

    /// Takes `n` tokens if available.
    pub fn allow_n(&mut self, now: Instant, n: f64) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now.max(self.last);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if n > self.burst || n > self.tokens {
            return false;
        }
        self.tokens -= n;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_refill() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 20.0, t0);
        assert!(!b.allow_n(t0, 21.0), "more than the burst is never allowed");
        assert!(b.allow_n(t0, 20.0));
        assert!(!b.allow_n(t0, 1.0));
        assert!(b.allow_n(t0 + Duration::from_millis(500), 5.0));
        assert!(!b.allow_n(t0 + Duration::from_millis(500), 1.0));
    }
}
