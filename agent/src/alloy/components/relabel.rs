//! `discovery.relabel` and `loki.relabel`: `rule` blocks turned into validated rules.

use crate::alloy::args::{Args, Ctx, Schema, A, B};
use crate::alloy::relabel::{Rule, RuleArgs};
use crate::alloy::value::Value;

pub static RULE: Schema = Schema {
    attrs: &[
        ("source_labels", A::Optional),
        ("separator", A::Optional),
        ("regex", A::Optional),
        ("modulus", A::Optional),
        ("target_label", A::Optional),
        ("replacement", A::Optional),
        ("action", A::Optional),
    ],
    blocks: &[],
};

pub static DISCOVERY_RELABEL: Schema = Schema {
    attrs: &[("targets", A::Required)],
    blocks: &[("rule", B::Many, &RULE)],
};

pub static LOKI_RELABEL: Schema = Schema {
    attrs: &[("forward_to", A::Required), ("max_cache_size", A::Optional)],
    blocks: &[("rule", B::Many, &RULE)],
};

/// Builds the rules of a component, reporting each invalid rule at its block.
pub fn rules(args: &Args, ctx: &mut Ctx<'_>) -> Vec<Rule> {
    let mut out = Vec::new();
    for r in args.blocks_named("rule") {
        let d = RuleArgs::default();
        let ra = RuleArgs {
            source_labels: r
                .get("source_labels", ctx, Value::to_string_list)
                .unwrap_or(d.source_labels),
            separator: r.string("separator", &d.separator, ctx),
            regex: r.string("regex", &d.regex, ctx),
            target_label: r.string("target_label", &d.target_label, ctx),
            replacement: r.string("replacement", &d.replacement, ctx),
            modulus: r.get("modulus", ctx, Value::to_u64).unwrap_or(0),
            action: r.string("action", &d.action, ctx),
        };
        match ra.build() {
            Ok(rule) => out.push(rule),
            Err(e) => ctx.error(r.pos, e.to_string()),
        }
    }
    out
}
