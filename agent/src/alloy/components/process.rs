//! `loki.process`: `stage.*` blocks (in source order, `stage.match` nesting) turned into a
//! [`Pipeline`].

use std::collections::BTreeMap;
use std::time::Duration;

use regex::Regex;

use crate::alloy::args::{Args, Ctx, Schema, A, B, EMPTY};
use crate::alloy::pipeline::Pipeline;
use crate::alloy::stages::gotime::Location;
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
    ]
);
schema!(OUTPUT, [("source", A::Required)]);
schema!(
    REPLACE,
    [
        ("expression", A::Required),
        ("source", A::Optional),
        ("replace", A::Optional)
    ]
);
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

schema!(
    TRUNCATE_RULE,
    [
        ("limit", A::Required),
        ("suffix", A::Optional),
        ("sources", A::Optional),
        ("source_type", A::Optional)
    ]
);
static TEMPLATE: Schema = Schema {
    attrs: &[("source", A::Required), ("template", A::Required)],
    blocks: &[],
};

static TRUNCATE: Schema = Schema {
    attrs: &[],
    blocks: &[("rule", B::Many, &TRUNCATE_RULE)],
};

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
    ("stage.decolorize", B::Many, &EMPTY),
    ("stage.replace", B::Many, &REPLACE),
    ("stage.template", B::Many, &TEMPLATE),
    ("stage.pack", B::Many, &PACK),
    ("stage.pattern", B::Unsupported(LATER), &EMPTY),
    ("stage.truncate", B::Many, &TRUNCATE),
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
static PACK: Schema = Schema {
    attrs: &[("labels", A::Required), ("ingest_timestamp", A::Optional)],
    blocks: &[],
};

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

/// Like [`usize_attr`], refusing 0 (Alloy validates `max_partial_lines > 0`).
fn positive_attr(a: &Args, name: &str, default: usize, ctx: &mut Ctx<'_>) -> usize {
    a.get(name, ctx, |v| match v.to_u64()? {
        0 => Err("must be greater than 0".to_string()),
        n => Ok(n as usize),
    })
    .unwrap_or(default)
}

fn stage(name: &str, a: &Args, ctx: &mut Ctx<'_>) -> Option<Stage> {
    Some(match name {
        "stage.cri" => Stage::Cri(Cri::new(
            positive_attr(a, "max_partial_lines", 100, ctx),
            // A plain number of bytes in Alloy (uint64), not a "1MiB" size string; a string
            // of digits converts like any Alloy number.
            usize_attr(a, "max_partial_line_size", 0, ctx),
            a.bool("max_partial_line_size_truncate", false, ctx),
        )),
        "stage.docker" => Stage::Docker,
        "stage.pack" => Stage::Pack {
            labels: a
                .get("labels", ctx, Value::to_string_list)
                .unwrap_or_default(),
            ingest_timestamp: a.bool("ingest_timestamp", true, ctx),
        },
        "stage.json" => json_stage(a, ctx),
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
        "stage.timestamp" => timestamp_stage(a, ctx),
        "stage.decolorize" => Stage::Decolorize,
        "stage.replace" => replace_stage(a, ctx)?,
        "stage.template" => template_stage(a, ctx)?,
        "stage.truncate" => truncate_stage(a, ctx)?,
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

/// `stage.json`: every expression is compiled here, so a bad one stops the config at load.
fn json_stage(a: &Args, ctx: &mut Ctx<'_>) -> Stage {
    let raw = pairs(a, "expressions", ctx);
    if a.has("expressions") && raw.is_empty() {
        ctx.error(
            a.pos_of("expressions"),
            "attribute \"expressions\": JMES expression is required (the map is empty)",
        );
    }
    let mut expressions = Vec::with_capacity(raw.len());
    for (name, expr) in raw {
        match json::compile(&name, &expr) {
            Ok(c) => expressions.push((name, c)),
            Err(e) => ctx.error(
                a.pos_of("expressions"),
                format!("attribute \"expressions\": {e}"),
            ),
        }
    }
    let source = a.opt_string("source", ctx);
    if source.as_deref() == Some("") {
        ctx.error(
            a.pos_of("source"),
            "attribute \"source\": empty source (leave it out to parse the log line)",
        );
    }
    Stage::Json(JsonStage {
        expressions,
        source,
        drop_malformed: a.bool("drop_malformed", false, ctx),
    })
}

/// `stage.replace`: the regex and the template are both checked here.
fn replace_stage(a: &Args, ctx: &mut Ctx<'_>) -> Option<Stage> {
    let expression = regex_attr(a, "expression", ctx)?;
    if expression.as_str().is_empty() {
        ctx.error(
            a.pos_of("expression"),
            "attribute \"expression\": regex must not be empty",
        );
        return None;
    }
    let replace = template_attr(a, "replace", ctx)?;
    Some(Stage::Replace(Box::new(ReplaceStage {
        expression,
        // Alloy treats source = "" as the log line.
        source: a.opt_string("source", ctx).filter(|s| !s.is_empty()),
        replace,
    })))
}

/// A Go-template attribute, parsed at load; an unsupported construct is reported at it.
fn template_attr(a: &Args, name: &str, ctx: &mut Ctx<'_>) -> Option<gotemplate::Template> {
    let src = a.string(name, "", ctx);
    match gotemplate::Template::parse(&src) {
        Ok(t) => Some(t),
        Err(e) => {
            ctx.error(a.pos_of(name), format!("attribute {name:?}: {e}"));
            None
        }
    }
}

/// `stage.template`: `source` must be set (Alloy: "template source value is required") and the
/// template must parse within the supported subset.
fn template_stage(a: &Args, ctx: &mut Ctx<'_>) -> Option<Stage> {
    let source = a.string("source", "", ctx);
    if source.is_empty() {
        ctx.error(a.pos, "template source value is required");
        return None;
    }
    let template = template_attr(a, "template", ctx)?;
    Some(Stage::Template(Box::new(TemplateStage {
        source,
        template,
    })))
}

/// `stage.truncate`: `rule` blocks validated as Alloy's `validateTruncateConfig` does.
fn truncate_stage(a: &Args, ctx: &mut Ctx<'_>) -> Option<Stage> {
    let mut rules = Vec::new();
    for r in a.blocks_named("rule") {
        let limit = r.get("limit", ctx, Value::to_bytes).unwrap_or(0);
        let st = r.string("source_type", "line", ctx);
        let Some(source_type) = TruncateSource::parse(&st) else {
            ctx.error(
                r.pos_of("source_type"),
                format!("attribute \"source_type\": unknown source_type: {st} (line, label, structured_metadata or extracted)"),
            );
            continue;
        };
        let sources = r
            .get("sources", ctx, Value::to_string_list)
            .unwrap_or_default();
        match TruncateRule::new(limit, r.string("suffix", "", ctx), sources, source_type) {
            Ok(rule) => rules.push(rule),
            Err(e) => ctx.error(r.pos, format!("stage.truncate rule: {e}")),
        }
    }
    if a.blocks_named("rule").next().is_none() {
        ctx.error(
            a.pos,
            "stage.truncate: at least one truncate rule must be defined",
        );
        return None;
    }
    Some(Stage::Truncate(rules))
}

/// `stage.timestamp`, validated as Alloy's `validateTimestampConfig` does.
fn timestamp_stage(a: &Args, ctx: &mut Ctx<'_>) -> Stage {
    let source = a.string("source", "", ctx);
    if a.has("source") && source.is_empty() {
        ctx.error(
            a.pos_of("source"),
            "attribute \"source\": timestamp source value is required",
        );
    }
    let format = a.string("format", "", ctx);
    if a.has("format") && format.is_empty() {
        ctx.error(
            a.pos_of("format"),
            "attribute \"format\": timestamp format is required",
        );
    }
    let fallback: Vec<String> = a
        .get("fallback_formats", ctx, Value::to_string_list)
        .unwrap_or_default();
    let location = a
        .opt_string("location", ctx)
        .and_then(|l| match Location::load(&l) {
            Ok(loc) => Some(loc),
            Err(e) => {
                ctx.error(
                    a.pos_of("location"),
                    format!("attribute \"location\": invalid location specified: {e} (use an IANA name like \"Europe/Berlin\")"),
                );
                None
            }
        });
    let action = a.string("action_on_failure", "", ctx);
    let action = OnFailure::parse(&action).unwrap_or_else(|| {
        ctx.error(
            a.pos_of("action_on_failure"),
            format!("attribute \"action_on_failure\": {action:?} must be \"fudge\" or \"skip\""),
        );
        OnFailure::Fudge
    });
    let formats = std::iter::once(&format)
        .chain(fallback.iter())
        .map(|f| TimeFormat::new(f, location))
        .collect();
    Stage::Timestamp(Timestamp::new(source, formats, action))
}

#[cfg(test)]
mod tests {
    use crate::alloy::check_source;

    const REST: &str = r#"
loki.source.file "s" {
  targets    = [{"__path__" = "/tmp/x.log"}]
  forward_to = [loki.process.p.receiver]
}

loki.write "w" {
  endpoint {
    url = "http://127.0.0.1:1/loki/api/v1/push"
  }
}
"#;

    /// The `file:line:col: message` of every diagnostic a config with `stages` gets.
    fn diags(stages: &str) -> Vec<String> {
        let src = format!(
            "loki.process \"p\" {{\n  forward_to = [loki.write.w.receiver]\n{stages}}}\n{REST}"
        );
        match check_source("t.alloy", &src, crate::alloy::system_scope()) {
            Ok(_) => vec![],
            Err(d) => d
                .iter()
                .map(|d| format!("{}: {}", d.location(), d.message))
                .collect(),
        }
    }

    #[test]
    fn stage_json_and_timestamp_arguments_are_checked_at_load() {
        // (stage blocks, expected diagnostics; empty = accepted)
        let cases: &[(&str, &[&str])] = &[
            (
                "  stage.json {\n    expressions = { a = \"items[?v > `1`].k | [0]\", b = \"\", \"c-d\" = \"x.\\\"c-d\\\"\" }\n  }\n",
                &[],
            ),
            (
                "  stage.json {\n    expressions = { a = \"items[\" }\n  }\n",
                &["t.alloy:4:5: attribute \"expressions\": could not compile JMES expression \"items[\" (for \"a\") at column 7: Parse error: Expected number, ':', or '*' -- found Eof"],
            ),
            (
                "  stage.json {\n    expressions = {}\n  }\n",
                &["t.alloy:4:5: attribute \"expressions\": JMES expression is required (the map is empty)"],
            ),
            (
                "  stage.json {\n    expressions = { a = \"\" }\n    source = \"\"\n  }\n",
                &["t.alloy:5:5: attribute \"source\": empty source (leave it out to parse the log line)"],
            ),
            (
                "  stage.timestamp {\n    source = \"t\"\n    format = \"2006-01-02 15:04:05\"\n    location = \"America/New_York\"\n    fallback_formats = [\"RFC3339\", \"UnixMs\"]\n    action_on_failure = \"skip\"\n  }\n",
                &[],
            ),
            (
                "  stage.timestamp {\n    source = \"t\"\n    format = \"RFC3339\"\n    location = \"Mars/Olympus\"\n  }\n",
                &["t.alloy:6:5: attribute \"location\": invalid location specified: unknown time zone Mars/Olympus (use an IANA name like \"Europe/Berlin\")"],
            ),
            (
                "  stage.timestamp {\n    source = \"t\"\n    format = \"RFC3339\"\n    action_on_failure = \"drop\"\n  }\n",
                &["t.alloy:6:5: attribute \"action_on_failure\": \"drop\" must be \"fudge\" or \"skip\""],
            ),
            // Alloy's TimestampConfig has no such attribute.
            (
                "  stage.timestamp {\n    source = \"t\"\n    format = \"RFC3339\"\n    action_on_duplicate_timestamp = \"keep\"\n  }\n",
                &["t.alloy:6:5: unrecognized attribute name \"action_on_duplicate_timestamp\""],
            ),
            (
                "  stage.timestamp {\n    source = \"\"\n    format = \"\"\n  }\n",
                &[
                    "t.alloy:4:5: attribute \"source\": timestamp source value is required",
                    "t.alloy:5:5: attribute \"format\": timestamp format is required",
                ],
            ),
        ];
        for (stages, want) in cases {
            assert_eq!(diags(stages), *want, "{stages}");
        }
    }

    #[test]
    fn stage_decolorize_replace_and_truncate_arguments_are_checked_at_load() {
        let cases: &[(&str, &[&str])] = &[
            ("  stage.decolorize {}\n", &[]),
            (
                "  stage.replace {\n    expression = \"password (\\\\S+)\"\n    replace    = \"{{ .Value | ToUpper }}\"\n  }\n",
                &[],
            ),
            (
                "  stage.replace {\n    expression = \"(\\\\S+)\"\n    replace    = \"{{ .Value | sha256 }}\"\n  }\n",
                &["t.alloy:5:5: attribute \"replace\": template function \"sha256\" is not supported by this agent (supported: ToLower, ToUpper, TrimSpace, Trim, TrimLeft, TrimRight, TrimPrefix, TrimSuffix, Replace, regexReplaceAll, regexReplaceAllLiteral)"],
            ),
            (
                "  stage.replace {\n    expression = \"\"\n  }\n",
                &["t.alloy:4:5: attribute \"expression\": regex must not be empty"],
            ),
            (
                "  stage.truncate {\n    rule {\n      limit = \"12B\"\n      suffix = \"...\"\n    }\n    rule {\n      limit = \"1KiB\"\n      source_type = \"label\"\n      sources = [\"app\"]\n    }\n  }\n",
                &[],
            ),
            (
                "  stage.truncate {}\n",
                &["t.alloy:3:3: stage.truncate: at least one truncate rule must be defined"],
            ),
            (
                "  stage.truncate {\n    rule {\n      limit = \"5B\"\n      sources = [\"a\"]\n    }\n  }\n",
                &["t.alloy:4:5: stage.truncate rule: sources cannot be set when source_type is 'line'"],
            ),
            (
                "  stage.truncate {\n    rule {\n      limit = \"3B\"\n      suffix = \"...\"\n    }\n  }\n",
                &["t.alloy:4:5: stage.truncate rule: suffix length cannot be greater than or equal to limit"],
            ),
            (
                "  stage.truncate {\n    rule {\n      limit = \"3B\"\n      source_type = \"lines\"\n    }\n  }\n",
                &["t.alloy:6:7: attribute \"source_type\": unknown source_type: lines (line, label, structured_metadata or extracted)"],
            ),
        ];
        for (stages, want) in cases {
            assert_eq!(diags(stages), *want, "{stages}");
        }
    }

    /// A config as users write it, loaded and run: the stages see what Alloy's would.
    #[test]
    fn json_timestamp_replace_truncate_pipeline_runs_like_alloy() {
        let src = r#"loki.process "p" {
  forward_to = [loki.write.w.receiver]
  stage.json {
    expressions = { level = "", ts = "time", msg = "message", user = "ctx.\"user-id\"" }
  }
  stage.timestamp {
    source           = "ts"
    format           = "2006-01-02 15:04:05.000"
    fallback_formats = ["UnixMs"]
    location         = "Europe/Berlin"
  }
  stage.labels {
    values = { level = "" }
  }
  stage.output {
    source = "msg"
  }
  stage.decolorize {}
  stage.replace {
    expression = "token=(\\S+)"
    replace    = "***"
  }
  stage.truncate {
    rule {
      limit  = "24B"
      suffix = "..."
    }
  }
}
"#;
        let src = format!("{src}{REST}");
        let mut plan = check_source("t.alloy", &src, crate::alloy::system_scope())
            .unwrap_or_else(|d| panic!("{}", d.render(&src)));
        let route = &mut plan.sources[0].routes[0];
        // (line, expected line, expected ts, expected level label)
        let cases = [
            (
                r#"{"level":"info","time":"2024-07-01 12:00:00.250","message":"\u001b[32mok\u001b[0m token=abc","ctx":{"user-id":7}}"#,
                "ok token=***",
                1_719_828_000_250_000_000,
                Some("info"),
            ),
            (
                r#"{"level":"warn","time":1719828000000,"message":"a very long message that goes on"}"#,
                "a very long message t...",
                1_719_828_000_000_000_000,
                Some("warn"),
            ),
            // Not JSON: passes untouched, and its time is fudged 1 ns after the last time set
            // for the same label set (the labels at the timestamp stage: none yet).
            ("plain text", "plain text", 1_719_828_000_000_000_001, None),
        ];
        for (line, want_line, want_ts, want_level) in cases {
            let out = route.process(crate::alloy::Entry::new(Default::default(), 5, line), 5);
            assert_eq!(out.len(), 1, "{line}");
            assert_eq!(
                (
                    out[0].line.as_str(),
                    out[0].ts,
                    out[0].labels.get("level").map(String::as_str)
                ),
                (want_line, want_ts, want_level),
                "{line}"
            );
        }
    }
}
