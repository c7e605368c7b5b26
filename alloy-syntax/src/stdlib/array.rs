//! The `array` namespace: `concat`, `combine_maps` and `group_by` with Alloy's semantics and
//! error texts (grafana/alloy `syntax/internal/stdlib/stdlib.go`).

use std::collections::BTreeMap;

use crate::eval::Scope;
use crate::value::Value;

/// Alloy's message for an argument of the wrong type: the offending value as written, then
/// `should be <type>, got <type>`.
pub fn type_error(v: &Value, expected: &str) -> String {
    format!("{v} should be {expected}, got {}", v.type_name())
}

/// Concatenates arrays. When a capsule is among them (targets only known at run time), the
/// embedding program's hook combines them symbolically.
pub fn concat(args: &[Value], scope: &Scope) -> Result<Value, String> {
    if args.iter().any(|a| matches!(a, Value::Capsule(_))) {
        if let Some(hook) = scope.capsule_concat {
            return hook(args);
        }
    }
    let mut out = Vec::new();
    for a in args {
        match a {
            Value::Array(v) => out.extend(v.iter().cloned()),
            other => return Err(type_error(other, "array")),
        }
    }
    Ok(Value::Array(out))
}

fn objects(v: &Value) -> Result<Vec<&BTreeMap<String, Value>>, String> {
    let Value::Array(items) = v else {
        return Err(type_error(v, "array"));
    };
    items
        .iter()
        .map(|it| match it {
            Value::Object(o) => Ok(o),
            other => Err(type_error(other, "object")),
        })
        .collect()
}

/// `array.combine_maps(lhs, rhs, keys[, passthrough])`: every (lhs, rhs) pair whose `keys`
/// all exist in both with equal values is merged (rhs wins); with `passthrough`, each lhs map
/// is also kept once for every rhs map it did not match (Alloy's behaviour, duplicates and
/// all).
pub fn combine_maps(args: &[Value]) -> Result<Value, String> {
    if args.len() != 3 && args.len() != 4 {
        return Err(format!(
            "combine_maps: expected 3 or 4 arguments, got {}",
            args.len()
        ));
    }
    let lhs = objects(&args[0])?;
    let rhs = objects(&args[1])?;
    let Value::Array(conds) = &args[2] else {
        return Err(type_error(&args[2], "array"));
    };
    if conds.is_empty() {
        return Err("combine_maps: merge conditions must not be empty".into());
    }
    let conds = conds
        .iter()
        .map(|c| match c {
            Value::String(s) => Ok(s.as_str()),
            other => Err(type_error(other, "string")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let passthrough = match args.get(3) {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(type_error(other, "bool")),
    };
    let mut out = Vec::new();
    for l in &lhs {
        for r in &rhs {
            let join = conds
                .iter()
                .all(|k| matches!((l.get(*k), r.get(*k)), (Some(a), Some(b)) if a == b));
            if join {
                let mut m = (*l).clone();
                m.extend(r.iter().map(|(k, v)| (k.clone(), v.clone())));
                out.push(Value::Object(m));
            } else if passthrough {
                out.push(Value::Object((*l).clone()));
            }
        }
    }
    Ok(Value::Array(out))
}

/// `array.group_by(items, key, drop_missing)`: one `{<key> = value, items = [...]}` object per
/// distinct string value of `key`; objects without the key go to the `""` group unless
/// `drop_missing`. Alloy returns the groups in Go map order (random); ours are sorted by value
/// so a config always produces the same result.
pub fn group_by(args: &[Value]) -> Result<Value, String> {
    if args.len() != 3 {
        return Err(format!(
            "group_by: expected 3 arguments, got {}",
            args.len()
        ));
    }
    let Value::Array(items) = &args[0] else {
        return Err(type_error(&args[0], "array"));
    };
    let Value::String(key) = &args[1] else {
        return Err(type_error(&args[1], "string"));
    };
    let Value::Bool(drop_missing) = &args[2] else {
        return Err(type_error(&args[2], "bool"));
    };
    let mut groups: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for it in items {
        let Value::Object(o) = it else {
            return Err(type_error(it, "object"));
        };
        match o.get(key) {
            None if *drop_missing => {}
            None => groups.entry(String::new()).or_default().push(it.clone()),
            Some(Value::String(v)) => groups.entry(v.clone()).or_default().push(it.clone()),
            Some(other) => return Err(type_error(other, "string")),
        }
    }
    Ok(Value::Array(
        groups
            .into_iter()
            .map(|(v, items)| {
                let mut g = BTreeMap::new();
                g.insert(key.clone(), Value::String(v));
                // A key named "items" is overwritten by the list, as in Alloy's map literal.
                g.insert("items".to_string(), Value::Array(items));
                Value::Object(g)
            })
            .collect(),
    ))
}
