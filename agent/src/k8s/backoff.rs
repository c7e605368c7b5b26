//! The retry delay of the pod watch: exponential like client-go's reflector (0.8 s doubling
//! up to 30 s), with downward jitter so a fleet of agents does not retry in step, and reset
//! only by real progress — never by the watcher restarting its list.

use std::time::Duration;

/// Growing delays between failed list/watch attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    /// The delay before jitter of the next failure.
    next: Duration,
}

/// The share of a delay that jitter may take off (the delay is never longer than the plan).
pub const JITTER: f64 = 0.2;

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(Duration::from_millis(800), Duration::from_secs(30))
    }
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            next: initial,
        }
    }

    /// The delay after one more failure: the planned delay minus up to [`JITTER`] of it.
    pub fn failed(&mut self) -> Duration {
        let planned = self.next;
        self.next = planned.saturating_mul(2).min(self.max);
        planned.mul_f64(1.0 - JITTER * rand::random::<f64>())
    }

    /// Real progress (a complete list, an applied event): the next failure waits the least.
    pub fn reset(&mut self) {
        self.next = self.initial;
    }

    /// The planned delay (before jitter) of the `n`-th consecutive failure, from 0.
    pub fn planned(&self, n: u32) -> Duration {
        self.initial
            .saturating_mul(2u32.saturating_pow(n.min(31)))
            .min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_max_within_jitter_and_resets() {
        let mut b = Backoff::default();
        for n in 0..12 {
            let d = b.failed();
            let plan = b.planned(n);
            assert!(
                d <= plan && d >= plan.mul_f64(1.0 - JITTER),
                "{n}: {d:?} vs {plan:?}"
            );
        }
        assert_eq!(b.planned(11), Duration::from_secs(30));
        b.reset();
        assert!(b.failed() <= Duration::from_millis(800));
    }
}
