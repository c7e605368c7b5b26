//! Label matchers (`=`, `!=`, `=~`, `!~`), shared by stream selectors, label filters,
//! `series` `match[]` and the store's stream lookup.

use regex::Regex;

/// The comparison a matcher makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Eq,
    Neq,
    Re,
    Nre,
}

/// One `name op "value"` matcher. Regexes are anchored like Prometheus: `^(?s:re)$`.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    re: Option<Regex>,
}

impl Matcher {
    /// Builds a matcher; regex compile errors come back as Loki-style text.
    pub fn new(
        name: impl Into<String>,
        op: MatchOp,
        value: impl Into<String>,
    ) -> Result<Self, String> {
        let value = value.into();
        let re = match op {
            MatchOp::Re | MatchOp::Nre => Some(
                Regex::new(&format!("^(?s:{value})$"))
                    .map_err(|e| format!("error parsing regexp: {e}"))?,
            ),
            _ => None,
        };
        Ok(Matcher {
            name: name.into(),
            op,
            value,
            re,
        })
    }

    /// Whether a label value satisfies the matcher (a missing label is `""`).
    pub fn matches(&self, v: &str) -> bool {
        match self.op {
            MatchOp::Eq => v == self.value,
            MatchOp::Neq => v != self.value,
            MatchOp::Re => self.re.as_ref().is_some_and(|r| r.is_match(v)),
            MatchOp::Nre => !self.re.as_ref().is_some_and(|r| r.is_match(v)),
        }
    }

    /// Whether the matcher also matches the empty string (Loki's "empty-compatible").
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }

    /// Applies the matcher to a label set.
    pub fn matches_labels(&self, labels: &loki_wire::LabelSet) -> bool {
        self.matches(labels.get(&self.name).unwrap_or(""))
    }
}

impl std::fmt::Display for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let op = match self.op {
            MatchOp::Eq => "=",
            MatchOp::Neq => "!=",
            MatchOp::Re => "=~",
            MatchOp::Nre => "!~",
        };
        write!(
            f,
            "{}{}{}",
            self.name,
            op,
            loki_wire::labels::go_quote(&self.value)
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn regexes_are_fully_anchored_and_dot_matches_newline() {
        let m = Matcher::new("a", MatchOp::Re, "b.").unwrap();
        assert!(m.matches("bx"));
        assert!(m.matches("b\n"));
        assert!(!m.matches("abx"));
        assert!(!m.matches("bxx"));
    }

    #[test]
    fn empty_compatibility() {
        assert!(Matcher::new("a", MatchOp::Re, ".*")
            .unwrap()
            .matches_empty());
        assert!(!Matcher::new("a", MatchOp::Re, ".+")
            .unwrap()
            .matches_empty());
        assert!(Matcher::new("a", MatchOp::Neq, "x")
            .unwrap()
            .matches_empty());
        assert!(!Matcher::new("a", MatchOp::Eq, "x").unwrap().matches_empty());
    }
}
