//! Wall-clock time for everything that depends on "now" (old-sample checks, default
//! query windows, retention, the ingester model), injectable so tests move time
//! instead of sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// The system clock, or a manual one that only moves when told to.
#[derive(Clone, Default)]
pub struct Clock(Option<Arc<AtomicI64>>);

impl Clock {
    /// Real time.
    pub fn system() -> Self {
        Clock(None)
    }

    /// A clock standing at `start_ns` (ns since the epoch) until set or advanced.
    pub fn manual(start_ns: i64) -> Self {
        Clock(Some(Arc::new(AtomicI64::new(start_ns))))
    }

    /// Now, in ns since the epoch.
    pub fn now_ns(&self) -> i64 {
        match &self.0 {
            Some(t) => t.load(Ordering::SeqCst),
            None => chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX),
        }
    }

    /// Moves a manual clock to `ns`; returns false (and does nothing) on the system clock.
    pub fn set(&self, ns: i64) -> bool {
        match &self.0 {
            Some(t) => {
                t.store(ns, Ordering::SeqCst);
                true
            }
            None => false,
        }
    }

    /// Moves a manual clock forward by `ns`; returns false on the system clock.
    pub fn advance(&self, ns: i64) -> bool {
        match &self.0 {
            Some(t) => {
                t.fetch_add(ns, Ordering::SeqCst);
                true
            }
            None => false,
        }
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            None => f.write_str("Clock::system"),
            Some(t) => write!(f, "Clock::manual({})", t.load(Ordering::SeqCst)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let c = Clock::manual(10);
        let shared = c.clone();
        assert_eq!(c.now_ns(), 10);
        assert!(c.advance(5));
        assert_eq!(shared.now_ns(), 15);
        assert!(shared.set(3));
        assert_eq!(c.now_ns(), 3);
        assert!(!Clock::system().set(1));
    }
}
