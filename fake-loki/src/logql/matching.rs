//! Vector-vector operations with Loki's (Prometheus') matching rules: `on`/`ignoring`
//! decide which labels must agree, `group_left`/`group_right` allow many series on one side.

use std::collections::{HashMap, HashSet};

use loki_wire::LabelSet;

use super::ast::{BinOp, Card, VectorMatching};
use super::eval::StepVec;
use super::Error;

/// The labels two series are matched on.
fn signature(labels: &LabelSet, m: &VectorMatching) -> LabelSet {
    let listed = |k: &str| m.labels.iter().any(|n| n == k);
    LabelSet::from_pairs(labels.iter().filter(|(k, _)| {
        if m.on {
            listed(k)
        } else {
            !listed(k) && *k != "__name__"
        }
    }))
}

/// Labels of a result: the "many" side's, reduced for one-to-one, plus the included
/// labels taken from the "one" side.
fn result_labels(many: &LabelSet, one: &LabelSet, m: &VectorMatching) -> LabelSet {
    let listed = |k: &str| m.labels.iter().any(|n| n == k);
    let mut out = match (m.card, m.on) {
        (Card::OneToOne, true) => LabelSet::from_pairs(many.iter().filter(|(k, _)| listed(k))),
        (Card::OneToOne, false) => LabelSet::from_pairs(many.iter().filter(|(k, _)| !listed(k))),
        _ => many.clone(),
    };
    for name in &m.include {
        match one.get(name) {
            Some(v) if !v.is_empty() => out.set(name, v),
            _ => out.remove(name),
        }
    }
    out
}

/// `and`, `or`, `unless` by signature.
pub fn set_op(op: BinOp, m: &VectorMatching, lv: StepVec, rv: StepVec) -> StepVec {
    let rsigs: HashSet<LabelSet> = rv.iter().map(|(l, _)| signature(l, m)).collect();
    match op {
        BinOp::And => lv
            .into_iter()
            .filter(|(l, _)| rsigs.contains(&signature(l, m)))
            .collect(),
        BinOp::Unless => lv
            .into_iter()
            .filter(|(l, _)| !rsigs.contains(&signature(l, m)))
            .collect(),
        _ => {
            let lsigs: HashSet<LabelSet> = lv.iter().map(|(l, _)| signature(l, m)).collect();
            let mut out = lv;
            out.extend(
                rv.into_iter()
                    .filter(|(l, _)| !lsigs.contains(&signature(l, m))),
            );
            out
        }
    }
}

/// An arithmetic or comparison operation between two vectors.
pub fn vector_op(
    op: BinOp,
    bool_mod: bool,
    m: &VectorMatching,
    lv: StepVec,
    rv: StepVec,
) -> Result<StepVec, Error> {
    // The "one" side is indexed; group_right swaps the sides and swaps the values back.
    let swapped = m.card == Card::OneToMany;
    let (many, one) = if swapped { (rv, lv) } else { (lv, rv) };
    let mut index: HashMap<LabelSet, (LabelSet, f64)> = HashMap::with_capacity(one.len());
    for (l, v) in one {
        let sig = signature(&l, m);
        if let Some((dup, _)) = index.get(&sig) {
            let side = if swapped { "left" } else { "right" };
            return Err(Error {
                message: format!(
                    "found duplicate series for the match group {sig} on the {side} hand-side of the operation: [{l}, {dup}];many-to-many matching not allowed: matching labels must be unique on one side"
                ),
            });
        }
        index.insert(sig, (l, v));
    }
    let cmp_filter = op.is_comparison() && !bool_mod;
    let mut matched: HashMap<LabelSet, HashSet<LabelSet>> = HashMap::new();
    let mut out = Vec::new();
    for (ml, mv) in many {
        let sig = signature(&ml, m);
        let Some((ol, ov)) = index.get(&sig) else {
            continue;
        };
        let (a, b) = if swapped { (*ov, mv) } else { (mv, *ov) };
        let v = op.apply(a, b);
        if cmp_filter && v == 0.0 {
            continue;
        }
        let value = if cmp_filter { a } else { v };
        let labels = result_labels(&ml, ol, m);
        let seen = matched.entry(sig).or_default();
        if m.card == Card::OneToOne {
            if !seen.is_empty() {
                return Err(Error {
                    message: "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into(),
                });
            }
        } else if seen.contains(&labels) {
            return Err(Error {
                message: "multiple matches for labels: grouping labels must ensure unique matches"
                    .into(),
            });
        }
        seen.insert(labels.clone());
        out.push((labels, value));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    fn v(items: &[(&[(&str, &str)], f64)]) -> StepVec {
        items
            .iter()
            .map(|(l, x)| (LabelSet::from_pairs(l.iter().copied()), *x))
            .collect()
    }

    fn on(labels: &[&str], card: Card, include: &[&str]) -> VectorMatching {
        VectorMatching {
            card,
            on: true,
            labels: labels.iter().map(|s| s.to_string()).collect(),
            include: include.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn one_to_one_on_keeps_only_the_matching_labels() {
        let l = v(&[(&[("app", "a"), ("pod", "p1")], 6.0)]);
        let r = v(&[(&[("app", "a"), ("node", "n")], 2.0)]);
        let got = vector_op(BinOp::Div, false, &on(&["app"], Card::OneToOne, &[]), l, r).unwrap();
        assert_eq!(got, v(&[(&[("app", "a")], 3.0)]));
    }

    #[test]
    fn group_left_keeps_the_many_side_and_copies_included_labels() {
        let l = v(&[
            (&[("app", "a"), ("pod", "p1")], 6.0),
            (&[("app", "a"), ("pod", "p2")], 4.0),
        ]);
        let r = v(&[(&[("app", "a"), ("team", "t")], 2.0)]);
        let m = on(&["app"], Card::ManyToOne, &["team"]);
        let got = vector_op(BinOp::Mul, false, &m, l.clone(), r.clone()).unwrap();
        assert_eq!(
            got,
            v(&[
                (&[("app", "a"), ("pod", "p1"), ("team", "t")], 12.0),
                (&[("app", "a"), ("pod", "p2"), ("team", "t")], 8.0),
            ])
        );
        // Without group_left the same data is an error.
        let e = vector_op(
            BinOp::Mul,
            false,
            &on(&["app"], Card::OneToOne, &[]),
            l.clone(),
            r.clone(),
        )
        .unwrap_err();
        assert!(e.message.contains("many-to-one matching must be explicit"));
        // group_right: the right side is the many; a comparison keeps the left value.
        let m = on(&["app"], Card::OneToMany, &[]);
        let got = vector_op(BinOp::Lt, false, &m, r, l).unwrap();
        assert_eq!(
            got,
            v(&[
                (&[("app", "a"), ("pod", "p1")], 2.0),
                (&[("app", "a"), ("pod", "p2")], 2.0),
            ])
        );
    }

    #[test]
    fn duplicates_on_the_one_side_are_many_to_many() {
        let l = v(&[(&[("app", "a")], 1.0)]);
        let r = v(&[
            (&[("app", "a"), ("x", "1")], 1.0),
            (&[("app", "a"), ("x", "2")], 1.0),
        ]);
        let e =
            vector_op(BinOp::Add, false, &on(&["app"], Card::ManyToOne, &[]), l, r).unwrap_err();
        assert_eq!(
            e.message,
            r#"found duplicate series for the match group {app="a"} on the right hand-side of the operation: [{app="a", x="2"}, {app="a", x="1"}];many-to-many matching not allowed: matching labels must be unique on one side"#
        );
    }

    #[test]
    fn ignoring_and_set_operators() {
        let l = v(&[
            (&[("app", "a"), ("pod", "p1")], 1.0),
            (&[("app", "b"), ("pod", "p1")], 2.0),
        ]);
        let r = v(&[(&[("app", "a"), ("pod", "p9")], 5.0)]);
        let m = VectorMatching {
            card: Card::OneToOne,
            on: false,
            labels: vec!["pod".into()],
            include: vec![],
        };
        assert_eq!(
            vector_op(BinOp::Add, false, &m, l.clone(), r.clone()).unwrap(),
            v(&[(&[("app", "a")], 6.0)])
        );
        assert_eq!(
            set_op(BinOp::And, &m, l.clone(), r.clone()),
            v(&[(&[("app", "a"), ("pod", "p1")], 1.0)])
        );
        assert_eq!(
            set_op(BinOp::Unless, &m, l.clone(), r.clone()),
            v(&[(&[("app", "b"), ("pod", "p1")], 2.0)])
        );
        assert_eq!(set_op(BinOp::Or, &m, l.clone(), r).len(), 2);
    }
}
