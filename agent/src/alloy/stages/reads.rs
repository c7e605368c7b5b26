//! What a `loki.process` component's stages read from the extracted map, worked out once when
//! it first runs: an entry entering the component then gets only the label values and lifted
//! parser values (`content`, `flags`, `output`) some stage can read, instead of a copy of all.

use std::collections::BTreeSet;

use super::{Stage, TenantFrom, TruncateSource};

/// Extracted names the stages may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reads {
    /// A stage reads names it does not list (templates, `regex` matching, truncation of
    /// extracted values): everything must be there.
    All,
    Names(BTreeSet<String>),
}

impl Reads {
    /// Whether a stage may read `name`.
    pub fn has(&self, name: &str) -> bool {
        match self {
            Reads::All => true,
            Reads::Names(n) => n.contains(name),
        }
    }
}

/// The extracted names `stages` (nested `stage.match` pipelines included) may read.
pub fn of(stages: &[Stage]) -> Reads {
    let mut names = BTreeSet::new();
    if add(stages, &mut names) {
        Reads::Names(names)
    } else {
        Reads::All
    }
}

/// Adds what `stages` read to `names`; false if they may read anything.
fn add(stages: &[Stage], names: &mut BTreeSet<String>) -> bool {
    let mut named = |s: Option<&String>| {
        if let Some(s) = s.filter(|s| !s.is_empty()) {
            names.insert(s.clone());
        }
    };
    let mut deferred: Vec<&[Stage]> = Vec::new();
    for st in stages {
        match st {
            // Templates see every value; replace runs one over the extracted map.
            Stage::Replace(_) | Stage::Template(_) => return false,
            Stage::Truncate(rules) => {
                if rules
                    .iter()
                    .any(|r| r.source_type == TruncateSource::Extracted)
                {
                    return false;
                }
            }
            Stage::StructuredMetadata { values, regex } => {
                if regex.is_some() {
                    return false;
                }
                for (name, src) in values {
                    named(Some(if src.is_empty() { name } else { src }));
                }
            }
            Stage::Labels {
                values,
                from_structured_metadata,
            } => {
                if !from_structured_metadata {
                    for (label, src) in values {
                        named(Some(if src.is_empty() { label } else { src }));
                    }
                }
            }
            Stage::Json(j) => named(j.source.as_ref()),
            Stage::Logfmt { source, .. } | Stage::Regex { source, .. } => named(source.as_ref()),
            Stage::Timestamp(t) => named(Some(&t.source)),
            Stage::Output { source } => named(Some(source)),
            Stage::Drop(d) => d.source.iter().for_each(|s| named(Some(s))),
            Stage::Tenant(TenantFrom::Source(s)) => named(Some(s)),
            Stage::Match(m) => deferred.push(&m.pipeline.stages),
            // Line, labels, timestamp or structured metadata only (or nothing).
            Stage::Cri(_)
            | Stage::Docker
            | Stage::Decolorize
            | Stage::StaticLabels(_)
            | Stage::LabelDrop(_)
            | Stage::LabelKeep(_)
            | Stage::Multiline(_)
            | Stage::Tenant(_)
            | Stage::Limit(_)
            | Stage::Pack { .. }
            | Stage::SecretFilter(_)
            | Stage::Echo(_) => {}
        }
    }
    deferred.into_iter().all(|nested| add(nested, names))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alloy::pipeline::Pipeline;
    use crate::alloy::stages::{MatchStage, Selector};

    fn labels(src: &str) -> Stage {
        Stage::Labels {
            values: vec![("l".into(), src.into())],
            from_structured_metadata: false,
        }
    }

    #[test]
    fn names_come_from_sources_and_nested_matches_and_templates_read_all() {
        let nested = Stage::Match(Box::new(MatchStage {
            selector: Selector::parse(r#"{a="b"}"#).expect("selector"),
            drop: false,
            reason: String::new(),
            pipeline: Pipeline::new(vec![Stage::Output {
                source: "msg".into(),
            }]),
        }));
        let stages = vec![
            Stage::Logfmt {
                mapping: vec![("level".into(), String::new())],
                source: None,
            },
            labels(""),
            labels("lvl"),
            nested,
        ];
        let want: BTreeSet<String> = ["l", "lvl", "msg"].iter().map(|s| s.to_string()).collect();
        assert_eq!(of(&stages), Reads::Names(want));
        assert!(!of(&stages).has("content"));
        let regex_sm = Stage::StructuredMetadata {
            values: vec![],
            regex: Some(regex::Regex::new("x").expect("regex")),
        };
        assert_eq!(of(&[labels(""), regex_sm]), Reads::All);
        assert!(Reads::All.has("anything"));
    }
}
