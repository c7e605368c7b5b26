//! `stage.truncate`: caps the line, labels, structured metadata or extracted values at a byte
//! limit, like Alloy's `stages/truncate.go`, and records what was cut in the extracted value
//! `truncated` (a sorted, comma-separated list of `line`, `label`, `structured_metadata`,
//! `extracted`).

use std::collections::BTreeSet;

use crate::alloy::pipeline::Entry;

/// What a rule truncates (`source_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TruncateSource {
    Line,
    Label,
    StructuredMetadata,
    Extracted,
}

impl TruncateSource {
    pub fn parse(s: &str) -> Option<TruncateSource> {
        Some(match s {
            "" | "line" => TruncateSource::Line,
            "label" => TruncateSource::Label,
            "structured_metadata" => TruncateSource::StructuredMetadata,
            "extracted" => TruncateSource::Extracted,
            _ => return None,
        })
    }

    fn field(self) -> &'static str {
        match self {
            TruncateSource::Line => "line",
            TruncateSource::Label => "label",
            TruncateSource::StructuredMetadata => "structured_metadata",
            TruncateSource::Extracted => "extracted",
        }
    }
}

/// One `rule` block, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TruncateRule {
    pub source_type: TruncateSource,
    /// Names to truncate; empty means all of that kind.
    pub sources: Vec<String>,
    /// Bytes kept before the suffix: `limit - len(suffix)`.
    pub keep: usize,
    pub suffix: String,
}

impl TruncateRule {
    /// Alloy's `validateTruncateConfig` for one rule.
    pub fn new(
        limit: usize,
        suffix: String,
        sources: Vec<String>,
        source_type: TruncateSource,
    ) -> Result<TruncateRule, String> {
        if limit == 0 {
            return Err("limit must be greater than zero".into());
        }
        if source_type == TruncateSource::Line && !sources.is_empty() {
            return Err("sources cannot be set when source_type is 'line'".into());
        }
        if !suffix.is_empty() && suffix.len() >= limit {
            return Err("suffix length cannot be greater than or equal to limit".into());
        }
        Ok(TruncateRule {
            source_type,
            sources,
            keep: limit - suffix.len(),
            suffix,
        })
    }

    /// `v` cut to `keep` bytes plus the suffix, if it is longer than `keep`. Alloy cuts at the
    /// byte; a Rust string is cut at the char boundary at or before it, so the text stays UTF-8.
    fn cut(&self, v: &str) -> Option<String> {
        if v.len() <= self.keep {
            return None;
        }
        let mut end = self.keep;
        while !v.is_char_boundary(end) {
            end -= 1;
        }
        Some(format!("{}{}", &v[..end], self.suffix))
    }

    fn wants(&self, name: &str) -> bool {
        self.sources.is_empty() || self.sources.iter().any(|s| s == name)
    }
}

/// Applies the rules in order; `truncated` lists every kind cut so far, this stage or earlier.
pub fn truncate(rules: &[TruncateRule], e: &mut Entry) {
    let mut cut: BTreeSet<String> = BTreeSet::new();
    for r in rules {
        let mut hit = false;
        match r.source_type {
            TruncateSource::Line => {
                if let Some(v) = r.cut(&e.line) {
                    e.line = v;
                    hit = true;
                }
            }
            TruncateSource::Label => {
                for (k, v) in e.labels.iter_mut() {
                    if let Some(c) = r.wants(k).then(|| r.cut(v)).flatten() {
                        *v = c;
                        hit = true;
                    }
                }
            }
            TruncateSource::StructuredMetadata => {
                for (k, v) in e.structured_metadata.iter_mut() {
                    if let Some(c) = r.wants(k).then(|| r.cut(v)).flatten() {
                        *v = c;
                        hit = true;
                    }
                }
            }
            TruncateSource::Extracted => {
                for (k, v) in e.extracted.iter_mut() {
                    if let Some(c) = r.wants(k).then(|| r.cut(v)).flatten() {
                        *v = c;
                        hit = true;
                    }
                }
            }
        }
        if hit {
            cut.insert(r.source_type.field().to_string());
        }
        if !cut.is_empty() {
            if let Some(prev) = e.extracted.get("truncated") {
                cut.extend(prev.split(',').map(String::from));
            }
            let joined = cut.iter().cloned().collect::<Vec<_>>().join(",");
            e.extracted.insert("truncated".into(), joined);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alloy::relabel::Labels;

    fn rule(limit: usize, suffix: &str, sources: &[&str], t: TruncateSource) -> TruncateRule {
        TruncateRule::new(
            limit,
            suffix.into(),
            sources.iter().map(|s| s.to_string()).collect(),
            t,
        )
        .unwrap()
    }

    fn entry() -> Entry {
        let mut l = Labels::new();
        l.insert("app".into(), "checkout-service".into());
        l.insert("env".into(), "production".into());
        let mut e = Entry::new(l, 0, "I'm a log message!");
        e.structured_metadata
            .insert("trace".into(), "0123456789abcdef".into());
        e.extracted.insert("msg".into(), "hello world".into());
        e
    }

    #[test]
    fn rules_table() {
        use TruncateSource::*;
        // (rules, line, labels app/env, metadata trace, extracted msg, truncated)
        type Want<'a> = (&'a str, &'a str, &'a str, &'a str, &'a str, Option<&'a str>);
        let cases: Vec<(Vec<TruncateRule>, Want)> = vec![
            // Alloy docs: limit 12 with suffix "..." keeps 9 bytes.
            (
                vec![rule(12, "...", &[], Line)],
                (
                    "I'm a log...",
                    "checkout-service",
                    "production",
                    "0123456789abcdef",
                    "hello world",
                    Some("line"),
                ),
            ),
            (
                vec![rule(100, "", &[], Line)],
                (
                    "I'm a log message!",
                    "checkout-service",
                    "production",
                    "0123456789abcdef",
                    "hello world",
                    None,
                ),
            ),
            (
                vec![rule(8, "", &["app"], Label)],
                (
                    "I'm a log message!",
                    "checkout",
                    "production",
                    "0123456789abcdef",
                    "hello world",
                    Some("label"),
                ),
            ),
            (
                vec![rule(4, "", &[], Label)],
                (
                    "I'm a log message!",
                    "chec",
                    "prod",
                    "0123456789abcdef",
                    "hello world",
                    Some("label"),
                ),
            ),
            (
                vec![
                    rule(8, "~", &[], StructuredMetadata),
                    rule(5, "", &["msg"], Extracted),
                ],
                (
                    "I'm a log message!",
                    "checkout-service",
                    "production",
                    "0123456~",
                    "hello",
                    Some("extracted,structured_metadata"),
                ),
            ),
            (
                vec![rule(5, "", &["nope"], Extracted)],
                (
                    "I'm a log message!",
                    "checkout-service",
                    "production",
                    "0123456789abcdef",
                    "hello world",
                    None,
                ),
            ),
        ];
        for (rules, want) in cases {
            let mut e = entry();
            truncate(&rules, &mut e);
            let got = (
                e.line.as_str(),
                e.labels["app"].as_str(),
                e.labels["env"].as_str(),
                e.structured_metadata["trace"].as_str(),
                e.extracted["msg"].as_str(),
                e.extracted.get("truncated").map(String::as_str),
            );
            assert_eq!(got, want, "{rules:?}");
        }
    }

    #[test]
    fn earlier_truncations_are_kept_and_utf8_stays_whole() {
        let mut e = entry();
        e.extracted.insert("truncated".into(), "label".into());
        truncate(&[rule(3, "", &[], TruncateSource::Line)], &mut e);
        assert_eq!(e.extracted["truncated"], "label,line");
        let mut e = Entry::new(Labels::new(), 0, "añb");
        truncate(&[rule(2, "", &[], TruncateSource::Line)], &mut e);
        assert_eq!(e.line, "a");
    }

    #[test]
    fn invalid_rules() {
        use TruncateSource::*;
        let cases = [
            (0, "", vec![], Line, "limit must be greater than zero"),
            (
                5,
                "",
                vec!["a".to_string()],
                Line,
                "sources cannot be set when source_type is 'line'",
            ),
            (
                3,
                "...",
                vec![],
                Line,
                "suffix length cannot be greater than or equal to limit",
            ),
        ];
        for (limit, suffix, sources, t, want) in cases {
            assert_eq!(
                TruncateRule::new(limit, suffix.into(), sources, t),
                Err(want.to_string())
            );
        }
    }
}
