//! `loki.process`: `stage.*` blocks (in source order, `stage.match` nesting) turned into a
//! [`Pipeline`].

use std::collections::BTreeMap;
use std::time::Duration;

use regex::Regex;

use crate::alloy::args::{Args, Ctx, Schema, A, B, EMPTY};
use crate::alloy::pipeline::Pipeline;
use crate::alloy::stages::*;
use crate::alloy::value::Value;

const LATER: &str = "this stage is not implemented yet";

macro_rules! schema {
    ($name:ident, [$($a:expr),* $(,)?]) => {
        static $name: Schema = Schema { attrs: &[$($a),*], blocks: &[] };
    };
}

schema!(
    CRI,
    [
        ("max_partial_lines", A::Optional),
        ("max_partial_line_size", A::Optional),
        ("max_partial_line_size_truncate", A::Optional)
    ]
);
schema!(
    JSON,
    [
        ("expressions", A::Required),
        ("source", A::Optional),
        ("drop_malformed", A::Optional)
    ]
);
schema!(LOGFMT, [("mapping", A::Required), ("source", A::Optional)]);
schema!(
    REGEX,
    [
        ("expression", A::Required),
        ("source", A::Optional),
        ("labels_from_groups", A::Optional)
    ]
);
schema!(
    LABELS,
    [("values", A::Required), ("source_type", A::Optional)]
);
schema!(VALUES, [("values", A::Required)]);
schema!(SM, [("values", A::Optional), ("regex", A::Optional)]);
schema!(
    TIMESTAMP,
    [
        ("source", A::Required),
        ("format", A::Required),
        ("fallback_formats", A::Optional),
        ("location", A::Optional),
        ("action_on_failure", A::Optional),
        ("action_on_duplicate_timestamp", A::Optional),
    ]
);
schema!(OUTPUT, [("source", A::Required)]);
schema!(
    DROP,
    [
        ("source", A::Optional),
        ("separator", A::Optional),
        ("expression", A::Optional),
        ("value", A::Optional),
        ("older_than", A::Optional),
        ("longer_than", A::Optional),
        ("drop_counter_reason", A::Optional),
    ]
);
schema!(
    MULTILINE,
    [
        ("firstline", A::Required),
        ("max_lines", A::Optional),
        ("max_wait_time", A::Optional),
        ("trim_newlines", A::Optional)
    ]
);
schema!(
    TENANT,
    [
        ("label", A::Optional),
        ("source", A::Optional),
        ("value", A::Optional)
    ]
);
schema!(
    LIMIT,
    [
        ("rate", A::Required),
        ("burst", A::Required),
        ("drop", A::Optional),
        ("by_label_name", A::Optional),
        ("max_distinct_labels", A::Optional)
    ]
);

static MATCH: Schema = Schema {
    attrs: &[
        ("selector", A::Required),
        ("action", A::Optional),
        ("drop_counter_reason", A::Optional),
        ("pipeline_name", A::Optional),
    ],
    blocks: STAGES,
};

/// Every stage block; the ones Alloy has but this agent does not are rejected by name.
pub static STAGES: &[(&str, B, &Schema)] = &[
    ("stage.cri", B::Many, &CRI),
    ("stage.docker", B::Many, &EMPTY),
    ("stage.json", B::Many, &JSON),
    ("stage.logfmt", B::Many, &LOGFMT),
    ("stage.regex", B::Many, &REGEX),
    ("stage.labels", B::Many, &LABELS),
    ("stage.static_labels", B::Many, &VALUES),
    ("stage.label_drop", B::Many, &VALUES),
    ("stage.label_keep", B::Many, &VALUES),
    ("stage.structured_metadata", B::Many, &SM),
    ("stage.timestamp", B::Many, &TIMESTAMP),
    ("stage.output", B::Many, &OUTPUT),
    ("stage.drop", B::Many, &DROP),
    ("stage.match", B::Many, &MATCH),
    ("stage.multiline", B::Many, &MULTILINE),
    ("stage.tenant", B::Many, &TENANT),
    ("stage.limit", B::Many, &LIMIT),
    ("stage.decolorize", B::Unsupported(LATER), &EMPTY),
    ("stage.replace", B::Unsupported(LATER), &EMPTY),
    ("stage.template", B::Unsupported(LATER), &EMPTY),
    ("stage.pack", B::Unsupported(LATER), &EMPTY),
    ("stage.pattern", B::Unsupported(LATER), &EMPTY),
    (
        "stage.truncate",
        B::Unsupported("lines are capped at max_line_bytes (256 KiB, Loki's limit) by the agent"),
        &EMPTY,
    ),
    ("stage.sampling", B::Unsupported(LATER), &EMPTY),
    ("stage.split_json", B::Unsupported(LATER), &EMPTY),
    ("stage.metrics", B::Unsupported(LATER), &EMPTY),
    ("stage.geoip", B::Unsupported(LATER), &EMPTY),
    ("stage.luhn", B::Unsupported(LATER), &EMPTY),
    (
        "stage.windowsevent",
        B::Unsupported("Linux nodes only"),
        &EMPTY,
    ),
    (
        "stage.eventlogmessage",
        B::Unsupported("Linux nodes only"),
        &EMPTY,
    ),
    (
        "stage.structured_metadata_drop",
        B::Unsupported(LATER),
        &EMPTY,
    ),
    (
        "stage.static_structured_metadata",
        B::Unsupported(LATER),
        &EMPTY,
    ),
];

pub static LOKI_PROCESS: Schema = Schema {
    attrs: &[("forward_to", A::Required)],
    blocks: STAGES,
};

/// Builds the pipeline from the stage blocks in order.
pub fn pipeline(args: &Args, ctx: &mut Ctx<'_>) -> Pipeline {
    Pipeline::new(
        args.blocks
            .iter()
            .filter_map(|(name, a)| stage(name, a, ctx))
            .collect(),
    )
}

fn regex_attr(a: &Args, name: &str, ctx: &mut Ctx<'_>) -> Option<Regex> {
    let src = a.opt_string(name, ctx)?;
    match Regex::new(&src) {
        Ok(r) => Some(r),
        Err(e) => {
            ctx.error(
                a.pos_of(name),
                format!("attribute {name:?}: invalid regex: {e}"),
            );
            None
        }
    }
}

/// `{name = "source"}` maps, keeping order stable.
fn pairs(a: &Args, name: &str, ctx: &mut Ctx<'_>) -> Vec<(String, String)> {
    a.get(name, ctx, |v| match v {
        Value::Object(o) => o
            .iter()
            .map(|(k, v)| match v {
                Value::Null => Ok((k.clone(), String::new())),
                v => Ok((k.clone(), v.to_str()?)),
            })
            .collect::<Result<Vec<_>, String>>(),
        other => Err(format!("expected object, got {}", other.type_name())),
    })
    .unwrap_or_default()
}

fn usize_attr(a: &Args, name: &str, default: usize, ctx: &mut Ctx<'_>) -> usize {
    a.get(name, ctx, Value::to_u64)
        .map(|n| n as usize)
        .unwrap_or(default)
}

fn stage(name: &str, a: &Args, ctx: &mut Ctx<'_>) -> Option<Stage> {
    Some(match name {
        "stage.cri" => Stage::Cri(Cri::new(
            usize_attr(a, "max_partial_lines", 100, ctx),
            a.get("max_partial_line_size", ctx, Value::to_bytes)
                .unwrap_or(0),
            a.bool("max_partial_line_size_truncate", false, ctx),
        )),
        "stage.docker" => Stage::Docker,
        "stage.json" => Stage::Json {
            expressions: pairs(a, "expressions", ctx),
            source: a.opt_string("source", ctx),
            drop_malformed: a.bool("drop_malformed", false, ctx),
        },
        "stage.logfmt" => Stage::Logfmt {
            mapping: pairs(a, "mapping", ctx),
            source: a.opt_string("source", ctx),
        },
        "stage.regex" => Stage::Regex {
            expression: regex_attr(a, "expression", ctx)?,
            source: a.opt_string("source", ctx),
            labels_from_groups: a.bool("labels_from_groups", false, ctx),
        },
        "stage.labels" => {
            let st = a.string("source_type", "extracted", ctx);
            if st != "extracted" && st != "structured_metadata" {
                ctx.error(a.pos_of("source_type"), format!("attribute \"source_type\": {st:?} must be \"extracted\" or \"structured_metadata\""));
            }
            Stage::Labels {
                values: pairs(a, "values", ctx),
                from_structured_metadata: st == "structured_metadata",
            }
        }
        "stage.static_labels" => Stage::StaticLabels(
            a.get("values", ctx, Value::to_string_map)
                .unwrap_or_default(),
        ),
        "stage.label_drop" => Stage::LabelDrop(
            a.get("values", ctx, Value::to_string_list)
                .unwrap_or_default(),
        ),
        "stage.label_keep" => Stage::LabelKeep(
            a.get("values", ctx, Value::to_string_list)
                .unwrap_or_default(),
        ),
        "stage.structured_metadata" => Stage::StructuredMetadata {
            values: pairs(a, "values", ctx),
            regex: regex_attr(a, "regex", ctx),
        },
        "stage.timestamp" => {
            let format = a.string("format", "", ctx);
            let fallback: Vec<String> = a
                .get("fallback_formats", ctx, Value::to_string_list)
                .unwrap_or_default();
            for f in std::iter::once(&format).chain(fallback.iter()) {
                if !valid_time_format(f) {
                    ctx.error(
                        a.pos_of("format"),
                        format!("unsupported timestamp format {f:?}"),
                    );
                }
            }
            if let Some(loc) = a.opt_string("location", ctx) {
                if loc != "UTC" && !loc.is_empty() {
                    ctx.error(a.pos_of("location"), format!("attribute \"location\": {loc:?} is not supported by this agent (only \"UTC\"; write the offset in the format)"));
                }
            }
            let action = a.string("action_on_failure", "fudge", ctx);
            if action != "fudge" && action != "skip" {
                ctx.error(
                    a.pos_of("action_on_failure"),
                    format!(
                        "attribute \"action_on_failure\": {action:?} must be \"fudge\" or \"skip\""
                    ),
                );
            }
            Stage::Timestamp(Timestamp {
                source: a.string("source", "", ctx),
                format,
                fallback_formats: fallback,
                action_on_failure: action,
            })
        }
        "stage.output" => Stage::Output {
            source: a.string("source", "", ctx),
        },
        "stage.drop" => Stage::Drop(DropStage {
            source: a
                .opt_string("source", ctx)
                .map(|s| {
                    s.split(',')
                        .map(|x| x.trim().to_string())
                        .filter(|x| !x.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            separator: a.string("separator", ";", ctx),
            expression: regex_attr(a, "expression", ctx),
            value: a.opt_string("value", ctx),
            older_than: a.get("older_than", ctx, Value::to_duration),
            longer_than: a.get("longer_than", ctx, Value::to_bytes),
            reason: a.string("drop_counter_reason", "drop_stage", ctx),
        }),
        "stage.match" => {
            let sel_src = a.string("selector", "", ctx);
            let selector = match Selector::parse(&sel_src) {
                Ok(s) => s,
                Err(e) => {
                    ctx.error(a.pos_of("selector"), format!("attribute \"selector\": {e}"));
                    return None;
                }
            };
            let action = a.string("action", "keep", ctx);
            let drop = match action.as_str() {
                "keep" => false,
                "drop" => true,
                other => {
                    ctx.error(
                        a.pos_of("action"),
                        format!("attribute \"action\": {other:?} must be \"keep\" or \"drop\""),
                    );
                    false
                }
            };
            if drop && !a.blocks.is_empty() {
                ctx.error(
                    a.pos,
                    "stage.match with action = \"drop\" cannot have nested stages",
                );
            }
            Stage::Match(Box::new(MatchStage {
                selector,
                drop,
                reason: a.string("drop_counter_reason", "match_stage", ctx),
                pipeline: pipeline(a, ctx),
            }))
        }
        "stage.multiline" => Stage::Multiline(Multiline {
            firstline: regex_attr(a, "firstline", ctx)?,
            max_lines: usize_attr(a, "max_lines", 128, ctx),
            max_wait: a
                .get("max_wait_time", ctx, Value::to_duration)
                .unwrap_or(Duration::from_secs(3)),
            trim_newlines: a.bool("trim_newlines", true, ctx),
            buffers: BTreeMap::new(),
        }),
        "stage.tenant" => {
            let set: Vec<&str> = ["label", "source", "value"]
                .into_iter()
                .filter(|k| a.has(k))
                .collect();
            if set.len() != 1 {
                ctx.error(
                    a.pos,
                    "stage.tenant needs exactly one of label, source or value",
                );
                return None;
            }
            let v = a.string(set[0], "", ctx);
            Stage::Tenant(match set[0] {
                "label" => TenantFrom::Label(v),
                "source" => TenantFrom::Source(v),
                _ => TenantFrom::Value(v),
            })
        }
        "stage.limit" => {
            let by = a.opt_string("by_label_name", ctx).filter(|s| !s.is_empty());
            let drop = a.bool("drop", false, ctx);
            if by.is_some() && !drop {
                ctx.error(
                    a.pos_of("by_label_name"),
                    "by_label_name requires drop = true",
                );
            }
            let rate = a.get("rate", ctx, Value::to_number).unwrap_or(0.0);
            let burst = a.get("burst", ctx, Value::to_number).unwrap_or(0.0);
            if rate <= 0.0 || burst <= 0.0 {
                // Alloy's ErrLimitStageInvalidRateOrBurst; a zero rate would also wait forever.
                ctx.error(a.pos, "stage.limit: rate and burst must be greater than 0");
            }
            Stage::Limit(Limit::new(
                rate,
                burst,
                drop,
                by,
                usize_attr(a, "max_distinct_labels", 10000, ctx),
            ))
        }
        _ => return None,
    })
}
