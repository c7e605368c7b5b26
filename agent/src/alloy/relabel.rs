//! Relabel rules (`rule` blocks of `discovery.relabel` and `loki.relabel`): every Prometheus
//! action as a pure function over a label map (spec §2.5).

use std::collections::BTreeMap;

use regex::Regex;

/// A label set. Sorted so relabel output and hashing are deterministic.
pub type Labels = BTreeMap<String, String>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Replace,
    Keep,
    Drop,
    KeepEqual,
    DropEqual,
    HashMod,
    LabelMap,
    LabelDrop,
    LabelKeep,
    Lowercase,
    Uppercase,
}

impl Action {
    pub const NAMES: &'static [&'static str] = &[
        "replace",
        "keep",
        "drop",
        "keepequal",
        "dropequal",
        "hashmod",
        "labelmap",
        "labeldrop",
        "labelkeep",
        "lowercase",
        "uppercase",
    ];

    pub fn parse(s: &str) -> Option<Action> {
        Some(match s.to_ascii_lowercase().as_str() {
            "replace" => Action::Replace,
            "keep" => Action::Keep,
            "drop" => Action::Drop,
            "keepequal" => Action::KeepEqual,
            "dropequal" => Action::DropEqual,
            "hashmod" => Action::HashMod,
            "labelmap" => Action::LabelMap,
            "labeldrop" => Action::LabelDrop,
            "labelkeep" => Action::LabelKeep,
            "lowercase" => Action::Lowercase,
            "uppercase" => Action::Uppercase,
            _ => return None,
        })
    }
}

/// One validated rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub source_labels: Vec<String>,
    pub separator: String,
    /// Anchored as `^(?s:…)$`.
    pub regex: Regex,
    pub target_label: String,
    pub replacement: String,
    pub modulus: u64,
    pub action: Action,
}

impl PartialEq for Rule {
    fn eq(&self, o: &Self) -> bool {
        self.source_labels == o.source_labels
            && self.separator == o.separator
            && self.regex.as_str() == o.regex.as_str()
            && self.target_label == o.target_label
            && self.replacement == o.replacement
            && self.modulus == o.modulus
            && self.action == o.action
    }
}

/// Problems in a rule's arguments.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// The action is not one of Prometheus' actions.
    #[error("unknown relabel action {0:?}, expected one of {list}", list = Action::NAMES.join(", "))]
    UnknownAction(String),
    /// The regex does not compile under RE2 rules.
    #[error("invalid regex {0:?}: {1}")]
    Regex(String, String),
    /// A field this action needs is missing.
    #[error("relabel configuration for {0} action requires '{1}' value")]
    Missing(&'static str, &'static str),
    /// A field this action does not take was set.
    #[error("{1} can not be set for {0} action")]
    NotAllowed(&'static str, &'static str),
}

/// Raw rule arguments with Alloy's defaults.
#[derive(Debug, Clone)]
pub struct RuleArgs {
    pub source_labels: Vec<String>,
    pub separator: String,
    pub regex: String,
    pub target_label: String,
    pub replacement: String,
    pub modulus: u64,
    pub action: String,
}

impl Default for RuleArgs {
    fn default() -> Self {
        RuleArgs {
            source_labels: Vec::new(),
            separator: ";".into(),
            regex: "(.*)".into(),
            target_label: String::new(),
            replacement: "$1".into(),
            modulus: 0,
            action: "replace".into(),
        }
    }
}

impl RuleArgs {
    /// Validates like Prometheus' `relabel.Config.Validate`.
    pub fn build(self) -> Result<Rule, RuleError> {
        let action = Action::parse(&self.action)
            .ok_or_else(|| RuleError::UnknownAction(self.action.clone()))?;
        let name = Action::NAMES[action as usize];
        let regex = Regex::new(&format!("^(?s:{})$", self.regex))
            .map_err(|e| RuleError::Regex(self.regex.clone(), e.to_string()))?;
        let needs_target = matches!(
            action,
            Action::Replace
                | Action::HashMod
                | Action::Lowercase
                | Action::Uppercase
                | Action::KeepEqual
                | Action::DropEqual
        );
        if needs_target && self.target_label.is_empty() {
            return Err(RuleError::Missing(name, "target_label"));
        }
        if action == Action::HashMod && self.modulus == 0 {
            return Err(RuleError::Missing(name, "modulus"));
        }
        if matches!(
            action,
            Action::Lowercase | Action::Uppercase | Action::KeepEqual | Action::DropEqual
        ) && self.replacement != "$1"
        {
            return Err(RuleError::NotAllowed(name, "replacement"));
        }
        if matches!(action, Action::LabelDrop | Action::LabelKeep)
            && (!self.source_labels.is_empty() || !self.target_label.is_empty())
        {
            return Err(RuleError::NotAllowed(name, "source_labels or target_label"));
        }
        Ok(Rule {
            source_labels: self.source_labels,
            separator: self.separator,
            regex,
            target_label: self.target_label,
            replacement: self.replacement,
            modulus: self.modulus,
            action,
        })
    }
}

fn is_valid_label_name(s: &str) -> bool {
    let mut it = s.chars();
    it.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && it.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn expand(re: &Regex, caps: &regex::Captures<'_>, template: &str) -> String {
    let _ = re;
    let mut out = String::new();
    caps.expand(template, &mut out);
    out
}

/// Applies rules in order. Returns `false` when a rule drops the target/entry; the first drop
/// ends the chain.
pub fn apply(rules: &[Rule], labels: &mut Labels) -> bool {
    for r in rules {
        if !apply_one(r, labels) {
            return false;
        }
    }
    true
}

/// One rule; `false` means drop.
pub fn apply_one(r: &Rule, labels: &mut Labels) -> bool {
    let val = r
        .source_labels
        .iter()
        .map(|l| labels.get(l).map(String::as_str).unwrap_or(""))
        .collect::<Vec<_>>()
        .join(&r.separator);
    match r.action {
        Action::Drop => return !r.regex.is_match(&val),
        Action::Keep => return r.regex.is_match(&val),
        Action::DropEqual => {
            return labels
                .get(&r.target_label)
                .map(String::as_str)
                .unwrap_or("")
                != val
        }
        Action::KeepEqual => {
            return labels
                .get(&r.target_label)
                .map(String::as_str)
                .unwrap_or("")
                == val
        }
        Action::Replace => {
            // No match leaves the labels alone.
            let Some(caps) = r.regex.captures(&val) else {
                return true;
            };
            let target = expand(&r.regex, &caps, &r.target_label);
            if !is_valid_label_name(&target) {
                return true;
            }
            let res = expand(&r.regex, &caps, &r.replacement);
            if res.is_empty() {
                labels.remove(&target);
            } else {
                labels.insert(target, res);
            }
        }
        Action::Lowercase => {
            labels.insert(r.target_label.clone(), val.to_lowercase());
        }
        Action::Uppercase => {
            labels.insert(r.target_label.clone(), val.to_uppercase());
        }
        Action::HashMod => {
            let d = md5(val.as_bytes());
            let mut tail = [0u8; 8];
            tail.copy_from_slice(&d[8..]);
            let m = u64::from_be_bytes(tail) % r.modulus.max(1);
            labels.insert(r.target_label.clone(), m.to_string());
        }
        Action::LabelMap => {
            let adds: Vec<(String, String)> = labels
                .iter()
                .filter_map(|(k, v)| {
                    r.regex
                        .captures(k)
                        .map(|c| (expand(&r.regex, &c, &r.replacement), v.clone()))
                })
                .collect();
            for (k, v) in adds {
                labels.insert(k, v);
            }
        }
        Action::LabelDrop => labels.retain(|k, _| !r.regex.is_match(k)),
        Action::LabelKeep => labels.retain(|k, _| r.regex.is_match(k)),
    }
    true
}

/// MD5 (RFC 1321), only for `hashmod`, which must match Prometheus' shard assignment bit for bit.
pub fn md5(input: &[u8]) -> [u8; 16] {
    const S: [u32; 64] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5,
        9, 14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10,
        15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
    ];
    // K[i] = floor(abs(sin(i + 1)) * 2^32), computed rather than tabulated.
    let k: Vec<u32> = (0..64)
        .map(|i| ((i as f64 + 1.0).sin().abs() * 4294967296.0) as u32)
        .collect();
    let (mut a0, mut b0, mut c0, mut d0) =
        (0x67452301u32, 0xefcdab89u32, 0x98badcfeu32, 0x10325476u32);
    let mut msg = input.to_vec();
    let bit_len = (input.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_le_bytes());
    for chunk in msg.chunks(64) {
        let m: Vec<u32> = chunk
            .chunks(4)
            .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
            .collect();
        let (mut a, mut b, mut c, mut d) = (a0, b0, c0, d0);
        for i in 0..64 {
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let f = f.wrapping_add(a).wrapping_add(k[i]).wrapping_add(m[g]);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(f.rotate_left(S[i]));
        }
        a0 = a0.wrapping_add(a);
        b0 = b0.wrapping_add(b);
        c0 = c0.wrapping_add(c);
        d0 = d0.wrapping_add(d);
    }
    let mut out = [0u8; 16];
    for (i, w) in [a0, b0, c0, d0].iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn rule(f: impl FnOnce(&mut RuleArgs)) -> Rule {
        let mut a = RuleArgs::default();
        f(&mut a);
        a.build().expect("valid rule")
    }

    #[test]
    fn md5_known_vectors() {
        let hex = |d: [u8; 16]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(hex(md5(b"")), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(hex(md5(b"abc")), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(hex(md5(&[b'a'; 100])), "36a92cc94a9e0fa21f625f8bfb007adf");
    }

    /// One row per action, following the Alloy/Prometheus relabel docs.
    #[test]
    fn actions_table() {
        let base = labels(&[
            ("__meta_ns", "Prod"),
            ("__meta_pod", "web-1"),
            ("app", "web"),
        ]);
        type Case = (&'static str, Rule, Option<Labels>);
        let cases: Vec<Case> = vec![
            (
                "replace joins sources with the separator and expands $1",
                rule(|a| {
                    a.source_labels = vec!["__meta_ns".into(), "__meta_pod".into()];
                    a.separator = "/".into();
                    a.regex = "(.*)/(.*)".into();
                    a.target_label = "where".into();
                    a.replacement = "$1:${2}".into();
                }),
                Some(labels(&[
                    ("__meta_ns", "Prod"),
                    ("__meta_pod", "web-1"),
                    ("app", "web"),
                    ("where", "Prod:web-1"),
                ])),
            ),
            (
                "replace with no match changes nothing",
                rule(|a| {
                    a.source_labels = vec!["app".into()];
                    a.regex = "db".into();
                    a.target_label = "x".into();
                }),
                Some(base.clone()),
            ),
            (
                "replace with an empty result deletes the target",
                rule(|a| {
                    a.source_labels = vec!["missing".into()];
                    a.target_label = "app".into();
                }),
                Some(labels(&[("__meta_ns", "Prod"), ("__meta_pod", "web-1")])),
            ),
            (
                "keep on match",
                rule(|a| {
                    a.action = "keep".into();
                    a.source_labels = vec!["app".into()];
                    a.regex = "web".into();
                }),
                Some(base.clone()),
            ),
            (
                "keep drops on no match",
                rule(|a| {
                    a.action = "keep".into();
                    a.source_labels = vec!["app".into()];
                    a.regex = "we".into();
                }),
                None,
            ),
            (
                "drop on match",
                rule(|a| {
                    a.action = "drop".into();
                    a.source_labels = vec!["app".into()];
                    a.regex = "w.*".into();
                }),
                None,
            ),
            (
                "keepequal keeps equal",
                rule(|a| {
                    a.action = "keepequal".into();
                    a.source_labels = vec!["app".into()];
                    a.target_label = "app".into();
                }),
                Some(base.clone()),
            ),
            (
                "keepequal drops different",
                rule(|a| {
                    a.action = "keepequal".into();
                    a.source_labels = vec!["__meta_pod".into()];
                    a.target_label = "app".into();
                }),
                None,
            ),
            (
                "dropequal drops equal",
                rule(|a| {
                    a.action = "dropequal".into();
                    a.source_labels = vec!["app".into()];
                    a.target_label = "app".into();
                }),
                None,
            ),
            (
                "hashmod: md5, last 8 bytes big-endian, modulo",
                rule(|a| {
                    a.action = "hashmod".into();
                    a.source_labels = vec!["app".into()];
                    a.target_label = "shard".into();
                    a.modulus = 10;
                }),
                Some({
                    let mut l = base.clone();
                    let d = md5(b"web");
                    let mut t = [0u8; 8];
                    t.copy_from_slice(&d[8..]);
                    l.insert("shard".into(), (u64::from_be_bytes(t) % 10).to_string());
                    l
                }),
            ),
            (
                "labelmap copies matching names through the replacement",
                rule(|a| {
                    a.action = "labelmap".into();
                    a.regex = "__meta_(.+)".into();
                }),
                Some(labels(&[
                    ("__meta_ns", "Prod"),
                    ("__meta_pod", "web-1"),
                    ("app", "web"),
                    ("ns", "Prod"),
                    ("pod", "web-1"),
                ])),
            ),
            (
                "labeldrop removes matching names",
                rule(|a| {
                    a.action = "labeldrop".into();
                    a.regex = "__meta_.*".into();
                }),
                Some(labels(&[("app", "web")])),
            ),
            (
                "labelkeep keeps matching names",
                rule(|a| {
                    a.action = "labelkeep".into();
                    a.regex = "__meta_.*".into();
                }),
                Some(labels(&[("__meta_ns", "Prod"), ("__meta_pod", "web-1")])),
            ),
            (
                "lowercase",
                rule(|a| {
                    a.action = "lowercase".into();
                    a.source_labels = vec!["__meta_ns".into()];
                    a.target_label = "ns".into();
                }),
                Some(labels(&[
                    ("__meta_ns", "Prod"),
                    ("__meta_pod", "web-1"),
                    ("app", "web"),
                    ("ns", "prod"),
                ])),
            ),
            (
                "uppercase",
                rule(|a| {
                    a.action = "uppercase".into();
                    a.source_labels = vec!["app".into()];
                    a.target_label = "app".into();
                }),
                Some(labels(&[
                    ("__meta_ns", "Prod"),
                    ("__meta_pod", "web-1"),
                    ("app", "WEB"),
                ])),
            ),
        ];
        for (name, r, want) in cases {
            let mut l = base.clone();
            let kept = apply(std::slice::from_ref(&r), &mut l);
            assert_eq!(kept.then_some(l), want, "{name}");
        }
    }

    #[test]
    fn validation_errors() {
        let mut a = RuleArgs::default();
        assert_eq!(
            a.clone().build().unwrap_err(),
            RuleError::Missing("replace", "target_label")
        );
        a.action = "hashmod".into();
        a.target_label = "x".into();
        assert_eq!(
            a.clone().build().unwrap_err(),
            RuleError::Missing("hashmod", "modulus")
        );
        a.action = "nope".into();
        assert!(matches!(
            a.clone().build(),
            Err(RuleError::UnknownAction(_))
        ));
        a.action = "keep".into();
        a.regex = "(".into();
        assert!(matches!(a.build(), Err(RuleError::Regex(..))));
    }
}
