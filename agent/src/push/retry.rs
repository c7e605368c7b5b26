//! Retry policy: one pure function decides retry vs drop, and a pure exponential backoff.

use std::time::Duration;

/// What one push attempt produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Loki answered with this status (and maybe a `Retry-After` in seconds).
    Status {
        code: u16,
        retry_after: Option<Duration>,
    },
    /// No answer: connect error, reset, timeout.
    Connection,
}

/// What to do with the batch after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Accepted: acknowledge its positions.
    Success,
    /// Try again after a backoff.
    Retry,
    /// Give up now with this drop reason (positions still advance: the drop is counted).
    Drop(&'static str),
}

/// Alloy's rules: 2xx succeeds; 429 (when enabled), 5xx and connection errors are retried;
/// every other status is dropped at once (a 400 may be a partial success: never retry it).
pub fn decide(outcome: Outcome, retry_on_429: bool) -> Decision {
    match outcome {
        Outcome::Connection => Decision::Retry,
        Outcome::Status { code, .. } => match code {
            200..=299 => Decision::Success,
            429 if retry_on_429 => Decision::Retry,
            429 => Decision::Drop("rate_limited"),
            500..=599 => Decision::Retry,
            _ => Decision::Drop("ingester_error"),
        },
    }
}

/// The drop reason when retries are exhausted after `last`.
pub fn exhausted_reason(last: Outcome) -> &'static str {
    match last {
        Outcome::Status { code: 429, .. } => "rate_limited",
        _ => "ingester_error",
    }
}

/// Exponential backoff with jitter: `min`, doubling, capped at `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max: max.max(min),
            current: min,
        }
    }

    /// The next delay; `jitter` in `[0, 1)` picks a point in `[d/2, d)` so that many agents
    /// failing together do not retry in lockstep.
    pub fn next_delay(&mut self, jitter: f64) -> Duration {
        let d = self.current;
        self.current = (self.current * 2).min(self.max);
        let j = jitter.clamp(0.0, 1.0);
        (d / 2 + d.mul_f64(j / 2.0)).max(self.min.min(Duration::from_millis(1)))
    }

    /// The delay to wait: `Retry-After` when Loki sent one (capped at `max`), else the backoff.
    pub fn delay_for(&mut self, outcome: Outcome, jitter: f64) -> Duration {
        match outcome {
            Outcome::Status {
                retry_after: Some(ra),
                ..
            } => {
                // Keep the backoff growing too, in case the next answer has no Retry-After.
                self.next_delay(jitter);
                ra.min(self.max)
            }
            _ => self.next_delay(jitter),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(code: u16) -> Outcome {
        Outcome::Status {
            code,
            retry_after: None,
        }
    }

    #[test]
    fn decides_retry_or_drop_like_alloy() {
        assert_eq!(decide(st(204), true), Decision::Success);
        assert_eq!(decide(st(200), true), Decision::Success);
        assert_eq!(decide(st(429), true), Decision::Retry);
        assert_eq!(decide(st(429), false), Decision::Drop("rate_limited"));
        assert_eq!(decide(st(500), true), Decision::Retry);
        assert_eq!(decide(st(503), true), Decision::Retry);
        assert_eq!(decide(st(400), true), Decision::Drop("ingester_error"));
        assert_eq!(decide(st(413), true), Decision::Drop("ingester_error"));
        assert_eq!(decide(Outcome::Connection, true), Decision::Retry);
        assert_eq!(exhausted_reason(st(429)), "rate_limited");
        assert_eq!(exhausted_reason(Outcome::Connection), "ingester_error");
    }

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter_in_upper_half() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(2));
        assert_eq!(b.next_delay(0.0), Duration::from_millis(250));
        assert_eq!(b.next_delay(0.999_999).as_millis(), 999);
        assert_eq!(b.next_delay(0.0), Duration::from_millis(1000));
        assert_eq!(b.next_delay(0.0), Duration::from_millis(1000));
    }

    #[test]
    fn retry_after_is_honoured_and_capped() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
        let o = Outcome::Status {
            code: 429,
            retry_after: Some(Duration::from_secs(3)),
        };
        assert_eq!(b.delay_for(o, 0.0), Duration::from_secs(3));
        let o = Outcome::Status {
            code: 429,
            retry_after: Some(Duration::from_secs(3600)),
        };
        assert_eq!(b.delay_for(o, 0.0), Duration::from_secs(10));
    }
}
