//! An entry's label set, shared between entries until one of them changes it: the router gives
//! every entry of a file the same set, and stages that set labels reuse the set they made for
//! an earlier entry with the same input and values ([`LabelMemo`]), so an entry whose labels
//! did not change costs no map copy and finds its output stream by pointer.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use super::relabel::Labels;

/// A copy-on-write label set: reads go to the shared map; the first write through `DerefMut`
/// copies it when another entry shares it.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SharedLabels(Arc<Labels>);

impl SharedLabels {
    /// Whether both are the same set (not merely equal): a cheap "unchanged" check.
    pub fn ptr_eq(&self, other: &SharedLabels) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// The map, copied only when shared.
    pub fn into_labels(self) -> Labels {
        Arc::unwrap_or_clone(self.0)
    }
}

impl Deref for SharedLabels {
    type Target = Labels;
    fn deref(&self) -> &Labels {
        &self.0
    }
}

impl DerefMut for SharedLabels {
    fn deref_mut(&mut self) -> &mut Labels {
        Arc::make_mut(&mut self.0)
    }
}

impl<'a> IntoIterator for &'a SharedLabels {
    type Item = (&'a String, &'a String);
    type IntoIter = std::collections::btree_map::Iter<'a, String, String>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl From<Labels> for SharedLabels {
    fn from(l: Labels) -> Self {
        SharedLabels(Arc::new(l))
    }
}

impl fmt::Debug for SharedLabels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl PartialEq<Labels> for SharedLabels {
    fn eq(&self, other: &Labels) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<SharedLabels> for Labels {
    fn eq(&self, other: &SharedLabels) -> bool {
        *self == *other.0
    }
}

/// How many (input set, change) results a stage remembers: a file's entries share one input
/// set and take a few values (log levels), so a handful of slots covers the usual stream.
const MEMO_SLOTS: usize = 16;

/// Results of one deterministic label change (a stage's), by input set and the values it set:
/// the same input set (by pointer) and the same values give the same output set, shared.
#[derive(Debug, Clone, Default)]
pub struct LabelMemo {
    /// (input, values the change used, output); the input is held so its address stays unique.
    slots: Vec<(SharedLabels, Vec<String>, SharedLabels)>,
    /// The slot replaced next when full.
    next: usize,
    /// Label-only checks (a `stage.match` selector's matchers) by input set.
    checks: Vec<(SharedLabels, bool)>,
}

impl LabelMemo {
    /// The output for `input` and `values` (compared as a list), made by `change` on a copy
    /// of the input when not remembered.
    pub fn apply<'a>(
        &mut self,
        input: &SharedLabels,
        values: impl Iterator<Item = &'a str> + Clone,
        change: impl FnOnce(&mut Labels),
    ) -> SharedLabels {
        let hit = self
            .slots
            .iter()
            .find(|(i, v, _)| i.ptr_eq(input) && v.iter().map(String::as_str).eq(values.clone()));
        if let Some((_, _, out)) = hit {
            return out.clone();
        }
        let mut out: Labels = (**input).clone();
        change(&mut out);
        let out = SharedLabels::from(out);
        let slot = (
            input.clone(),
            values.map(str::to_string).collect(),
            out.clone(),
        );
        if self.slots.len() < MEMO_SLOTS {
            self.slots.push(slot);
        } else {
            self.slots[self.next] = slot;
            self.next = (self.next + 1) % MEMO_SLOTS;
        }
        out
    }
}

impl LabelMemo {
    /// `check(labels)`, remembered per set: for tests that read nothing but the labels.
    pub fn check(&mut self, labels: &SharedLabels, check: impl FnOnce(&Labels) -> bool) -> bool {
        if let Some((_, r)) = self.checks.iter().find(|(l, _)| l.ptr_eq(labels)) {
            return *r;
        }
        let r = check(labels);
        if self.checks.len() >= MEMO_SLOTS {
            self.checks.clear();
        }
        self.checks.push((labels.clone(), r));
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(pairs: &[(&str, &str)]) -> SharedLabels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Labels>()
            .into()
    }

    #[test]
    fn writes_copy_only_a_shared_set() {
        let a = set(&[("job", "x")]);
        let mut b = a.clone();
        assert!(a.ptr_eq(&b));
        b.insert("level".into(), "info".into());
        assert!(!a.ptr_eq(&b));
        assert_eq!(a, set(&[("job", "x")]));
        assert_eq!(b, set(&[("job", "x"), ("level", "info")]));
    }

    #[test]
    fn memo_shares_the_output_of_the_same_input_and_values() {
        let mut m = LabelMemo::default();
        let input = set(&[("job", "x")]);
        let add = |v: &'static str| {
            move |l: &mut Labels| {
                l.insert("level".into(), v.into());
            }
        };
        let info1 = m.apply(&input, ["info"].into_iter(), add("info"));
        let warn = m.apply(&input, ["warn"].into_iter(), add("warn"));
        let info2 = m.apply(&input, ["info"].into_iter(), add("info"));
        assert!(info1.ptr_eq(&info2));
        assert!(!info1.ptr_eq(&warn));
        assert_eq!(info2, set(&[("job", "x"), ("level", "info")]));
        // An equal but different input set is a miss, with the same result.
        let other = set(&[("job", "x")]);
        let info3 = m.apply(&other, ["info"].into_iter(), add("info"));
        assert!(!info3.ptr_eq(&info1));
        assert_eq!(info3, info1);
        let mut calls = 0;
        for _ in 0..3 {
            assert!(m.check(&input, |l| {
                calls += 1;
                l.contains_key("job")
            }));
        }
        assert_eq!(calls, 1);
        // Full: old slots are replaced, results stay right.
        for i in 0..40 {
            let v = format!("v{i}");
            let got = m.apply(&input, [v.as_str()].into_iter(), |l| {
                l.insert("level".into(), v.clone());
            });
            assert_eq!(got.get("level"), Some(&v));
        }
    }
}
