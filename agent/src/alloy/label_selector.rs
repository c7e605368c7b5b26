//! Kubernetes label selectors (`app=web,tier!=db,env in (a,b),!canary`), the `label` of a
//! `discovery.kubernetes` `selectors` block, parsed at config load and evaluated against the
//! pod labels the Kubernetes API reported (as `__meta_kubernetes_pod_label_*` targets labels).
//!
//! The grammar and matching rules are apimachinery's `labels.Parse`: `=`/`==` need the label
//! with that value; `!=` and `notin` also match when the label is absent; `key` and `!key` test
//! presence; `gt`/`lt` compare integers.

use std::collections::BTreeMap;
use std::fmt;

const LABEL_PREFIX: &str = "__meta_kubernetes_pod_label_";
const PRESENT_PREFIX: &str = "__meta_kubernetes_pod_labelpresent_";

pub use crate::discovery::sanitize_label_name as sanitize;

#[derive(Debug, Clone, PartialEq)]
enum Op {
    Equals(String),
    NotEquals(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
    GreaterThan(i64),
    LessThan(i64),
}

#[derive(Debug, Clone, PartialEq)]
struct Requirement {
    key: String,
    op: Op,
}

/// A parsed label selector; all requirements must hold.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

/// Why a selector string was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid label selector {selector:?}: {reason}")]
pub struct SelectorError {
    selector: String,
    reason: String,
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let k = &r.key;
            match &r.op {
                Op::Equals(v) => write!(f, "{k}={v}")?,
                Op::NotEquals(v) => write!(f, "{k}!={v}")?,
                Op::In(vs) => write!(f, "{k} in ({})", vs.join(","))?,
                Op::NotIn(vs) => write!(f, "{k} notin ({})", vs.join(","))?,
                Op::Exists => write!(f, "{k}")?,
                Op::DoesNotExist => write!(f, "!{k}")?,
                Op::GreaterThan(n) => write!(f, "{k}>{n}")?,
                Op::LessThan(n) => write!(f, "{k}<{n}")?,
            }
        }
        Ok(())
    }
}

/// A qualified name (`[prefix/]name`, name ≤ 63 chars of `[A-Za-z0-9._-]`, alphanumeric at
/// both ends; the prefix a DNS subdomain).
fn valid_key(k: &str) -> bool {
    let (prefix, name) = match k.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    let dns = |p: &str| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !part.starts_with('-')
                    && !part.ends_with('-')
            })
    };
    prefix.is_none_or(dns) && valid_value(name) && !name.is_empty()
}

/// A label value: empty, or ≤ 63 chars of `[A-Za-z0-9._-]` with alphanumeric ends.
fn valid_value(v: &str) -> bool {
    v.is_empty()
        || (v.len() <= 63
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && v.starts_with(|c: char| c.is_ascii_alphanumeric())
            && v.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

impl std::str::FromStr for LabelSelector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, SelectorError> {
        let err = |reason: String| SelectorError {
            selector: s.to_string(),
            reason,
        };
        let mut requirements = Vec::new();
        for part in split_top_level(s) {
            let part = part.trim();
            if part.is_empty() {
                if s.trim().is_empty() {
                    break;
                }
                return Err(err("empty requirement".into()));
            }
            let req = parse_requirement(part).map_err(err)?;
            requirements.push(req);
        }
        Ok(LabelSelector { requirements })
    }
}

/// Splits on commas outside `( … )`.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn parse_requirement(part: &str) -> Result<Requirement, String> {
    let key_ok = |k: &str| {
        if valid_key(k) {
            Ok(k.to_string())
        } else {
            Err(format!("invalid label key {k:?}"))
        }
    };
    let value_ok = |v: &str| {
        let v = v.trim();
        if valid_value(v) {
            Ok(v.to_string())
        } else {
            Err(format!("invalid label value {v:?}"))
        }
    };
    if let Some(k) = part.strip_prefix('!') {
        return Ok(Requirement {
            key: key_ok(k.trim())?,
            op: Op::DoesNotExist,
        });
    }
    // Set-based: `key in (a,b)` / `key notin (a,b)`.
    let words: Vec<&str> = part.splitn(2, char::is_whitespace).collect();
    if let [key, rest] = words[..] {
        let rest = rest.trim_start();
        for (word, negate) in [("notin", true), ("in", false)] {
            if let Some(list) = rest.strip_prefix(word) {
                let list = list.trim();
                let inner = list
                    .strip_prefix('(')
                    .and_then(|l| l.strip_suffix(')'))
                    .ok_or_else(|| format!("expected ( … ) after {word} in {part:?}"))?;
                let values = inner
                    .split(',')
                    .map(value_ok)
                    .collect::<Result<Vec<_>, _>>()?;
                let key = key_ok(key)?;
                let op = if negate {
                    Op::NotIn(values)
                } else {
                    Op::In(values)
                };
                return Ok(Requirement { key, op });
            }
        }
    }
    for (sym, build) in [
        ("!=", Op::NotEquals as fn(String) -> Op),
        ("==", Op::Equals),
        ("=", Op::Equals),
    ] {
        if let Some((k, v)) = part.split_once(sym) {
            return Ok(Requirement {
                key: key_ok(k.trim())?,
                op: build(value_ok(v)?),
            });
        }
    }
    for (sym, gt) in [(">", true), ("<", false)] {
        if let Some((k, v)) = part.split_once(sym) {
            let n: i64 = v
                .trim()
                .parse()
                .map_err(|_| format!("{sym} needs an integer, got {:?}", v.trim()))?;
            let op = if gt {
                Op::GreaterThan(n)
            } else {
                Op::LessThan(n)
            };
            return Ok(Requirement {
                key: key_ok(k.trim())?,
                op,
            });
        }
    }
    Ok(Requirement {
        key: key_ok(part)?,
        op: Op::Exists,
    })
}

impl LabelSelector {
    /// Whether a target's pod labels (`__meta_kubernetes_pod_label_<sanitized name>`) satisfy
    /// every requirement. Keys are compared sanitized, as service discovery exposes them.
    pub fn matches_target(&self, target: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| {
            let name = sanitize(&r.key);
            let value = target.get(&format!("{LABEL_PREFIX}{name}")).or_else(|| {
                // A label with an empty value is still present.
                target
                    .get(&format!("{PRESENT_PREFIX}{name}"))
                    .map(|_| &EMPTY)
            });
            match (&r.op, value) {
                (Op::Equals(want), Some(v)) => v == want,
                (Op::Equals(_), None) => false,
                (Op::NotEquals(want), v) => v != Some(want),
                (Op::In(set), Some(v)) => set.contains(v),
                (Op::In(_), None) => false,
                (Op::NotIn(set), v) => v.is_none_or(|v| !set.contains(v)),
                (Op::Exists, v) => v.is_some(),
                (Op::DoesNotExist, v) => v.is_none(),
                (Op::GreaterThan(n), v) => v
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|x| x > *n),
                (Op::LessThan(n), v) => v
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|x| x < *n),
            }
        })
    }
}

static EMPTY: String = String::new();

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(labels: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut t = BTreeMap::new();
        for (k, v) in labels {
            t.insert(format!("{LABEL_PREFIX}{}", sanitize(k)), v.to_string());
            t.insert(format!("{PRESENT_PREFIX}{}", sanitize(k)), "true".into());
        }
        t
    }

    #[test]
    fn matching_follows_apimachinery() {
        let web = pod(&[
            ("app", "web"),
            ("app.kubernetes.io/tier", "front"),
            ("replicas", "3"),
            ("empty", ""),
        ]);
        let table: &[(&str, bool)] = &[
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app=db", false),
            ("app!=db", true),
            ("app!=web", false),
            ("missing!=x", true),
            ("missing=x", false),
            ("app in (web,db)", true),
            ("app in (db)", false),
            ("missing in (x)", false),
            ("app notin (db)", true),
            ("app notin (web, db)", false),
            ("missing notin (x)", true),
            ("app", true),
            ("missing", false),
            ("!missing", true),
            ("!app", false),
            ("empty", true),
            ("empty=", true),
            ("app.kubernetes.io/tier=front", true),
            ("replicas>2", true),
            ("replicas<3", false),
            (
                "app=web,app.kubernetes.io/tier in (front,back),!canary",
                true,
            ),
            ("app=web,canary", false),
        ];
        for (sel, want) in table {
            let s: LabelSelector = sel.parse().unwrap_or_else(|e| panic!("{sel}: {e}"));
            assert_eq!(s.matches_target(&web), *want, "{sel}");
        }
    }

    #[test]
    fn invalid_selectors_are_refused() {
        for sel in [
            "app=",
            "=web",
            "app in web",
            "app in (a b)",
            "-app=x",
            "app=we b",
            "a,,b",
            "replicas>x",
            "app=x!",
        ] {
            // `app=` is valid (empty value); everything else must fail.
            let r = sel.parse::<LabelSelector>();
            if sel == "app=" {
                assert!(r.is_ok(), "{sel}");
            } else {
                assert!(r.is_err(), "{sel} parsed as {r:?}");
            }
        }
    }

    #[test]
    fn display_round_trips() {
        for sel in [
            "app=web",
            "app!=web,!x",
            "a in (b,c)",
            "a notin (b)",
            "k",
            "n>1,m<2",
        ] {
            let s: LabelSelector = sel.parse().expect(sel);
            let again: LabelSelector = s.to_string().parse().expect("reparse");
            assert_eq!(s, again, "{sel}");
        }
    }
}
