//! The agent's values that travel through the Alloy language as opaque capsules: logs
//! receivers, target sets only known at run time, and relabel rules.

use super::relabel::Rule;
use super::targets::{targets_from_value, TargetSource};
use super::value::{Capsule, Value};

/// The capsule type names as Alloy prints them in type errors.
pub const RECEIVER: &str = "capsule(\"loki.LogsReceiver\")";
pub const TARGETS: &str = "capsule(\"discovery.Targets\")";
pub const RULES: &str = "capsule(\"relabel.Rules\")";

/// A `LogsReceiver`: entries sent here go to the named component (`loki.write.default`).
pub fn receiver(id: &str) -> Value {
    Value::Capsule(Capsule::new(RECEIVER, id.to_string()))
}

/// The component id a receiver capsule points at.
pub fn as_receiver(v: &Value) -> Option<&str> {
    match v {
        Value::Capsule(c) if c.type_name() == RECEIVER => c.get::<String>().map(String::as_str),
        _ => None,
    }
}

pub fn targets(t: TargetSource) -> Value {
    Value::Capsule(Capsule::new(TARGETS, t))
}

pub fn as_targets(v: &Value) -> Option<&TargetSource> {
    match v {
        Value::Capsule(c) if c.type_name() == TARGETS => c.get::<TargetSource>(),
        _ => None,
    }
}

pub fn rules(r: Vec<Rule>) -> Value {
    Value::Capsule(Capsule::new(RULES, r))
}

/// `array.concat` over run-time target sets: concatenated symbolically.
pub fn concat(args: &[Value]) -> Result<Value, String> {
    let mut parts = Vec::new();
    for a in args {
        parts.push(match a {
            Value::Array(_) => TargetSource::Static(targets_from_value(a)?),
            other => match as_targets(other) {
                Some(t) => t.clone(),
                None => return Err(super::stdlib::type_error(other, "array")),
            },
        });
    }
    Ok(targets(TargetSource::Concat(parts)))
}
