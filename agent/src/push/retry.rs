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

/// 2xx succeeds. Only an answer about the data itself drops it: 400 (Loki refused the
/// entries; it may have stored the others, so it is never retried) and 413 (the request can
/// never fit). Everything a retry can fix is retried: connection errors, 5xx, 429 (unless
/// disabled) and the other 4xx — 401/403 mean credentials that an operator will fix, 404 a
/// proxy or URL being repaired. Alloy drops every 4xx but 429; see the README.
pub fn decide(outcome: Outcome, retry_on_429: bool) -> Decision {
    match outcome {
        Outcome::Connection => Decision::Retry,
        Outcome::Status { code, .. } => match code {
            200..=299 => Decision::Success,
            429 if retry_on_429 => Decision::Retry,
            429 => Decision::Drop("rate_limited"),
            400 | 413 => Decision::Drop("ingester_error"),
            _ => Decision::Retry,
        },
    }
}

/// How many entries of a batch of `entries` a 400 answer says were refused. Loki reports
/// ingester refusals as `total ignored: N out of M` (one per failing stream) and
/// distributor refusals as `; `-joined messages about an entry, repeated ones grouped as
/// `N errors like: …`. An answer in neither shape refused the whole batch.
pub fn rejected_entries(body: &str, entries: usize) -> usize {
    const TOTAL: &str = "total ignored: ";
    const GROUPED: &str = " errors like: ";
    let totals: Vec<usize> = body
        .match_indices(TOTAL)
        .filter_map(|(i, _)| {
            let rest = &body[i + TOTAL.len()..];
            let end = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            rest[..end].parse().ok()
        })
        .collect();
    let n: usize = if totals.is_empty() {
        body.trim()
            .split("; ")
            .filter(|part| part.contains("entry"))
            .map(|part| {
                part.split_once(GROUPED)
                    .and_then(|(n, _)| n.trim().parse().ok())
                    .unwrap_or(1)
            })
            .sum()
    } else {
        totals.iter().sum()
    };
    if n == 0 {
        entries
    } else {
        n.min(entries)
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
        // Credentials and proxies get fixed: hold the data and keep trying.
        assert_eq!(decide(st(401), true), Decision::Retry);
        assert_eq!(decide(st(403), true), Decision::Retry);
        assert_eq!(decide(st(404), true), Decision::Retry);
        assert_eq!(decide(Outcome::Connection, true), Decision::Retry);
        assert_eq!(exhausted_reason(st(429)), "rate_limited");
        assert_eq!(exhausted_reason(Outcome::Connection), "ingester_error");
    }

    #[test]
    fn rejected_entries_are_counted_as_loki_reports_them() {
        // Ingester: the per-stream total (the listed entries are at most 10 of them).
        let ingester = "entry with timestamp 2024-05-01 10:00:00 +0000 UTC ignored, reason: 'entry too far behind, ...',\n\
            entry with timestamp 2024-05-01 10:00:01 +0000 UTC ignored, reason: 'entry too far behind, ...',\n\
            user 't', total ignored: 2 out of 2057 for stream: {a=\"1\"}\n";
        assert_eq!(rejected_entries(ingester, 2057), 2);
        // Two failing streams in one answer.
        let two = "user 't', total ignored: 3 out of 5 for stream: {a=\"1\"}\nuser 't', total ignored: 4 out of 9 for stream: {a=\"2\"}";
        assert_eq!(rejected_entries(two, 14), 7);
        // Distributor: one message per entry, identical ones grouped.
        let distributor = "entry for stream '{a=\"1\"}' has timestamp too old: 2020-01-01T00:00:00Z, oldest acceptable timestamp is: 2024-04-24T00:00:00Z; \
            3 errors like: max entry size '10' bytes exceeded for stream '{a=\"1\"}' while adding an entry with length '20' bytes\n";
        assert_eq!(rejected_entries(distributor, 100), 4);
        // Anything else refused the whole batch; a count never exceeds the batch.
        assert_eq!(rejected_entries("error parsing labels {a=: bad", 50), 50);
        assert_eq!(rejected_entries("", 50), 50);
        assert_eq!(rejected_entries("total ignored: 999 out of 999", 5), 5);
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
