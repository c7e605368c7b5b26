//! Fault injection for pushes: answer with a chosen status (429 with `Retry-After`, 5xx),
//! add latency, reset the connection, or accept and silently discard (so completeness
//! checks can be shown to fail). Rules apply in order; the first that matches the
//! tenant, still has a count left and wins its probability draw is applied.
//!
//! Over HTTP: `POST /fake-loki/api/v1/faults` with a [`FaultRule`] as JSON, `GET` to list,
//! `DELETE` to clear. The same JSON is accepted by the `--fault` flag.

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// What a matching rule does to a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultAction {
    /// Answer `status` (with `Retry-After` when `retry_after_seconds` is set), store nothing.
    Status,
    /// Close the connection without answering.
    Reset,
    /// Wait `latency_ms`, then handle the push normally.
    Latency,
    /// Answer 204 and store nothing.
    Discard,
}

/// One fault rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    pub action: FaultAction,
    /// HTTP status for `status` (default 503).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// Apply to this many pushes, then expire (unlimited when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Apply with this probability (1 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
    /// Only for pushes of this tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

impl FaultRule {
    /// Answer `status` to every push.
    pub fn status(status: u16) -> Self {
        FaultRule {
            action: FaultAction::Status,
            status: Some(status),
            retry_after_seconds: None,
            latency_ms: None,
            count: None,
            probability: None,
            tenant: None,
        }
    }

    /// A rule with `action` and no other settings.
    pub fn new(action: FaultAction) -> Self {
        FaultRule {
            action,
            ..Self::status(503)
        }
        .without_status()
    }

    fn without_status(mut self) -> Self {
        if self.action != FaultAction::Status {
            self.status = None;
        }
        self
    }

    pub fn count(mut self, n: u64) -> Self {
        self.count = Some(n);
        self
    }

    pub fn tenant(mut self, t: &str) -> Self {
        self.tenant = Some(t.to_string());
        self
    }

    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_seconds = Some(secs);
        self
    }

    pub fn probability(mut self, p: f64) -> Self {
        self.probability = Some(p);
        self
    }

    pub fn latency_ms(mut self, ms: u64) -> Self {
        self.latency_ms = Some(ms);
        self
    }

    /// Checks the rule's fields fit its action.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(p) = self.probability {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("probability {p} is not within [0, 1]"));
            }
        }
        if let Some(s) = self.status {
            if !(100..=599).contains(&s) {
                return Err(format!("status {s} is not an HTTP status"));
            }
        }
        if self.action == FaultAction::Latency && self.latency_ms.is_none() {
            return Err("action latency needs latency_ms".into());
        }
        Ok(())
    }
}

/// The decision for one push.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub action: FaultAction,
    pub status: u16,
    pub retry_after_seconds: Option<u64>,
    pub latency_ms: u64,
}

struct State {
    rules: Vec<FaultRule>,
    rng: StdRng,
}

/// The active rules.
pub struct Faults {
    state: Mutex<State>,
}

impl Faults {
    /// Rules drawn with probabilities use an RNG seeded with `seed`, for repeatable runs.
    pub fn new(seed: u64) -> Self {
        Faults {
            state: Mutex::new(State {
                rules: Vec::new(),
                rng: StdRng::seed_from_u64(seed),
            }),
        }
    }

    pub fn add(&self, rule: FaultRule) -> Result<(), String> {
        rule.validate()?;
        self.state.lock().rules.push(rule);
        Ok(())
    }

    pub fn clear(&self) {
        self.state.lock().rules.clear();
    }

    /// Re-seeds the probability draws.
    pub fn reseed(&self, seed: u64) {
        self.state.lock().rng = StdRng::seed_from_u64(seed);
    }

    pub fn list(&self) -> Vec<FaultRule> {
        self.state.lock().rules.clone()
    }

    /// Decides what happens to a push of `tenant`, consuming one use of the rule applied.
    pub fn decide(&self, tenant: &str) -> Option<Fault> {
        let mut st = self.state.lock();
        let State { rules, rng } = &mut *st;
        let mut hit = None;
        for (i, r) in rules.iter_mut().enumerate() {
            if r.tenant.as_deref().is_some_and(|t| t != tenant) {
                continue;
            }
            if let Some(p) = r.probability {
                if rng.random::<f64>() >= p {
                    continue;
                }
            }
            if let Some(c) = r.count.as_mut() {
                *c = c.saturating_sub(1);
            }
            hit = Some((
                i,
                Fault {
                    action: r.action,
                    status: r.status.unwrap_or(503),
                    retry_after_seconds: r.retry_after_seconds,
                    latency_ms: r.latency_ms.unwrap_or(0),
                },
            ));
            break;
        }
        let (i, fault) = hit?;
        if rules[i].count == Some(0) {
            rules.remove(i);
        }
        Some(fault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_rules_expire_and_tenants_are_respected() {
        let f = Faults::new(1);
        f.add(FaultRule::status(429).retry_after(2).count(2).tenant("a"))
            .unwrap();
        assert_eq!(f.decide("b"), None);
        let hit = f.decide("a").unwrap();
        assert_eq!((hit.status, hit.retry_after_seconds), (429, Some(2)));
        assert!(f.decide("a").is_some());
        assert_eq!(f.decide("a"), None);
        assert!(f.list().is_empty());
    }

    #[test]
    fn probability_is_seeded() {
        let draw = |seed| {
            let f = Faults::new(seed);
            f.add(FaultRule::new(FaultAction::Discard).probability(0.5))
                .unwrap();
            (0..64).map(|_| f.decide("t").is_some()).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        let hits = draw(7).iter().filter(|h| **h).count();
        assert!((10..54).contains(&hits), "{hits}");
    }

    #[test]
    fn json_shape() {
        let r: FaultRule =
            serde_json::from_str(r#"{"action":"status","status":500,"count":3}"#).unwrap();
        assert_eq!(r, FaultRule::status(500).count(3));
        assert!(serde_json::from_str::<FaultRule>(r#"{"action":"explode"}"#).is_err());
        assert!(FaultRule::new(FaultAction::Latency).validate().is_err());
    }
}
