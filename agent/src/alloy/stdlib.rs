//! The standard-library functions log configurations use (spec §1.5), with their deprecated
//! bare aliases (`env`, `format`, `concat`, `join`, …).

use std::collections::BTreeMap;

use super::eval::Scope;
use super::targets::TargetSource;
use super::value::{format_number, Capsule, Value};

/// (namespace, name) of every function; bare aliases use namespace "".
const FUNCTIONS: &[(&str, &str, &str)] = &[
    // (namespace, name, canonical full name)
    ("sys", "env", "sys.env"),
    ("", "env", "sys.env"),
    ("", "coalesce", "coalesce"),
    ("string", "format", "string.format"),
    ("", "format", "string.format"),
    ("string", "join", "string.join"),
    ("", "join", "string.join"),
    ("string", "split", "string.split"),
    ("", "split", "string.split"),
    ("string", "replace", "string.replace"),
    ("", "replace", "string.replace"),
    ("string", "to_lower", "string.to_lower"),
    ("", "to_lower", "string.to_lower"),
    ("string", "to_upper", "string.to_upper"),
    ("", "to_upper", "string.to_upper"),
    ("string", "trim", "string.trim"),
    ("", "trim", "string.trim"),
    ("string", "trim_prefix", "string.trim_prefix"),
    ("", "trim_prefix", "string.trim_prefix"),
    ("string", "trim_suffix", "string.trim_suffix"),
    ("", "trim_suffix", "string.trim_suffix"),
    ("string", "trim_space", "string.trim_space"),
    ("", "trim_space", "string.trim_space"),
    ("array", "concat", "array.concat"),
    ("", "concat", "array.concat"),
    ("encoding", "from_json", "encoding.from_json"),
    ("", "json_decode", "encoding.from_json"),
    ("encoding", "to_json", "encoding.to_json"),
    ("convert", "nonsensitive", "convert.nonsensitive"),
    ("", "nonsensitive", "convert.nonsensitive"),
    ("file", "path_join", "file.path_join"),
];

/// The root scope: function namespaces and `constants`.
pub fn namespaces() -> BTreeMap<String, Value> {
    let mut root: BTreeMap<String, Value> = BTreeMap::new();
    for (ns, name, full) in FUNCTIONS {
        if ns.is_empty() {
            root.insert(name.to_string(), Value::Function(full));
        } else {
            let e = root
                .entry(ns.to_string())
                .or_insert_with(|| Value::Object(BTreeMap::new()));
            if let Value::Object(o) = e {
                o.insert(name.to_string(), Value::Function(full));
            }
        }
    }
    let mut c = BTreeMap::new();
    c.insert("hostname".into(), Value::String(hostname()));
    c.insert("os".into(), Value::String(std::env::consts::OS.into()));
    // Go's GOARCH names, which configs compare against.
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    };
    c.insert("arch".into(), Value::String(arch.into()));
    c.insert(
        "version".into(),
        Value::String(env!("CARGO_PKG_VERSION").into()),
    );
    root.insert("constants".into(), Value::Object(c));
    root
}

/// The node's hostname, read once at startup like Alloy's `os.Hostname()`.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

fn arity(args: &[Value], n: usize) -> Result<(), String> {
    if args.len() != n {
        return Err(format!("expected {n} arguments, got {}", args.len()));
    }
    Ok(())
}

/// Calls a function by its canonical name.
pub fn call(name: &str, args: &[Value], scope: &Scope) -> Result<Value, String> {
    let s = |i: usize| -> Result<String, String> { args[i].to_str() };
    match name {
        "sys.env" => {
            arity(args, 1)?;
            Ok(Value::String((scope.env)(&s(0)?).unwrap_or_default()))
        }
        "coalesce" => Ok(args
            .iter()
            .find(|v| !v.is_zero())
            .or(args.last())
            .cloned()
            .unwrap_or(Value::Null)),
        "string.format" => {
            let fmt = args
                .first()
                .ok_or("expected at least 1 argument")?
                .to_str()?;
            Ok(Value::String(sprintf(&fmt, &args[1..])?))
        }
        "string.join" => {
            arity(args, 2)?;
            Ok(Value::String(args[0].to_string_list()?.join(&s(1)?)))
        }
        "string.split" => {
            arity(args, 2)?;
            let (v, sep) = (s(0)?, s(1)?);
            let parts: Vec<Value> = if sep.is_empty() {
                v.chars().map(|c| Value::String(c.to_string())).collect()
            } else {
                v.split(sep.as_str())
                    .map(|p| Value::String(p.into()))
                    .collect()
            };
            Ok(Value::Array(parts))
        }
        "string.replace" => {
            arity(args, 3)?;
            Ok(Value::String(s(0)?.replace(&s(1)?, &s(2)?)))
        }
        "string.to_lower" => {
            arity(args, 1)?;
            Ok(Value::String(s(0)?.to_lowercase()))
        }
        "string.to_upper" => {
            arity(args, 1)?;
            Ok(Value::String(s(0)?.to_uppercase()))
        }
        "string.trim" => {
            arity(args, 2)?;
            let cut: Vec<char> = s(1)?.chars().collect();
            Ok(Value::String(
                s(0)?.trim_matches(|c| cut.contains(&c)).into(),
            ))
        }
        "string.trim_prefix" => {
            arity(args, 2)?;
            let (v, p) = (s(0)?, s(1)?);
            Ok(Value::String(
                v.strip_prefix(p.as_str()).unwrap_or(&v).into(),
            ))
        }
        "string.trim_suffix" => {
            arity(args, 2)?;
            let (v, p) = (s(0)?, s(1)?);
            Ok(Value::String(
                v.strip_suffix(p.as_str()).unwrap_or(&v).into(),
            ))
        }
        "string.trim_space" => {
            arity(args, 1)?;
            Ok(Value::String(s(0)?.trim().into()))
        }
        "array.concat" => concat(args),
        "encoding.from_json" => {
            arity(args, 1)?;
            let j: serde_json::Value =
                serde_json::from_str(&s(0)?).map_err(|e| format!("invalid JSON: {e}"))?;
            Ok(from_json(j))
        }
        "encoding.to_json" => {
            arity(args, 1)?;
            Ok(Value::String(to_json(&args[0])?.to_string()))
        }
        "convert.nonsensitive" => {
            arity(args, 1)?;
            match &args[0] {
                Value::Secret(v) | Value::String(v) => Ok(Value::String(v.clone())),
                other => Err(format!("expected secret, got {}", other.type_name())),
            }
        }
        "file.path_join" => {
            let parts = args
                .iter()
                .map(Value::to_str)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Value::String(path_join(&parts)))
        }
        other => Err(format!("unknown function {other}")),
    }
}

/// Concatenates arrays. Run-time target sets (from discovery) concatenate symbolically.
fn concat(args: &[Value]) -> Result<Value, String> {
    if args
        .iter()
        .any(|a| matches!(a, Value::Capsule(Capsule::Targets(_))))
    {
        let mut parts = Vec::new();
        for a in args {
            parts.push(match a {
                Value::Capsule(Capsule::Targets(t)) => t.clone(),
                Value::Array(_) => TargetSource::Static(super::targets::targets_from_value(a)?),
                other => return Err(format!("expected array, got {}", other.type_name())),
            });
        }
        return Ok(Value::Capsule(Capsule::Targets(TargetSource::Concat(
            parts,
        ))));
    }
    let mut out = Vec::new();
    for a in args {
        match a {
            Value::Array(v) => out.extend(v.iter().cloned()),
            other => return Err(format!("expected array, got {}", other.type_name())),
        }
    }
    Ok(Value::Array(out))
}

fn from_json(j: serde_json::Value) -> Value {
    match j {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::Number(n) => Value::Number(n.as_f64().unwrap_or(0.0)),
        serde_json::Value::String(s) => Value::String(s),
        serde_json::Value::Array(a) => Value::Array(a.into_iter().map(from_json).collect()),
        serde_json::Value::Object(o) => {
            Value::Object(o.into_iter().map(|(k, v)| (k, from_json(v))).collect())
        }
    }
}

fn to_json(v: &Value) -> Result<serde_json::Value, String> {
    Ok(match v {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Number(n) => {
            if n.fract() == 0.0 && n.abs() < 9e15 {
                serde_json::Value::from(*n as i64)
            } else {
                serde_json::Value::from(*n)
            }
        }
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Array(a) => {
            serde_json::Value::Array(a.iter().map(to_json).collect::<Result<_, _>>()?)
        }
        Value::Object(o) => serde_json::Value::Object(
            o.iter()
                .map(|(k, v)| Ok((k.clone(), to_json(v)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => return Err(format!("cannot encode {} as JSON", other.type_name())),
    })
}

/// Go's `filepath.Join`: joins non-empty parts with `/` and cleans the result.
fn path_join(parts: &[String]) -> String {
    let joined = parts
        .iter()
        .filter(|p| !p.is_empty())
        .cloned()
        .collect::<Vec<_>>()
        .join("/");
    if joined.is_empty() {
        return String::new();
    }
    let abs = joined.starts_with('/');
    let mut stack: Vec<&str> = Vec::new();
    for seg in joined.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if stack.last().is_some_and(|s| *s != "..") {
                    stack.pop();
                } else if !abs {
                    stack.push("..");
                }
            }
            s => stack.push(s),
        }
    }
    let body = stack.join("/");
    match (abs, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".into(),
        (false, false) => body,
    }
}

/// A subset of Go's `fmt.Sprintf`: `%s %v %d %f %q %t %%` with optional width/precision.
fn sprintf(fmt: &str, args: &[Value]) -> Result<String, String> {
    let mut out = String::new();
    let mut it = fmt.chars().peekable();
    let mut next = 0;
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = String::new();
        while let Some(&d) = it.peek() {
            if d.is_ascii_digit() || d == '.' || d == '-' {
                spec.push(d);
                it.next();
            } else {
                break;
            }
        }
        let Some(verb) = it.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(next) else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        next += 1;
        let (width, prec) = match spec.trim_start_matches('-').split_once('.') {
            Some((w, p)) => (w.parse::<usize>().ok(), p.parse::<usize>().ok()),
            None => (spec.trim_start_matches('-').parse::<usize>().ok(), None),
        };
        let body = match (verb, arg) {
            ('d', Value::Number(n)) => format!("{}", *n as i64),
            ('f', Value::Number(n)) => format!("{:.*}", prec.unwrap_or(6), n),
            ('q', v) => super::scanner::quote(&v.to_str()?),
            ('t', Value::Bool(b)) => b.to_string(),
            ('s' | 'v', Value::String(s)) => s.clone(),
            ('s' | 'v', Value::Number(n)) => format_number(*n),
            ('s' | 'v', v @ Value::Secret(_)) => v.to_string(),
            ('s' | 'v', v) => v.to_string(),
            (verb, v) => format!("%!{verb}({})", v.type_name()),
        };
        let w = width.unwrap_or(0);
        if spec.starts_with('-') {
            out.push_str(&format!("{body:<w$}"));
        } else {
            out.push_str(&format!("{body:>w$}"));
        }
    }
    if next < args.len() {
        out.push_str("%!(EXTRA)");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::eval::{eval, Scope};
    use super::super::parser::parse_expr;
    use super::*;

    fn ev(src: &str) -> Value {
        let scope = Scope::with_env(|k| (k == "CLUSTER").then(|| "prod".to_string()));
        eval(&parse_expr(src).expect("parse"), &scope).expect("eval")
    }

    fn s(v: &str) -> Value {
        Value::String(v.into())
    }

    #[test]
    fn stdlib_table() {
        let cases = [
            ("sys.env(\"CLUSTER\")", s("prod")),
            ("env(\"UNSET_VAR\")", s("")),
            ("coalesce(sys.env(\"UNSET\"), \"x\")", s("x")),
            ("coalesce(\"\", 0)", Value::Number(0.0)),
            (
                "string.format(\"%s-%d-%q\", \"a\", 3, \"b\")",
                s("a-3-\"b\""),
            ),
            ("format(\"%5.1f|%-3s|\", 2.5, \"x\")", s("  2.5|x  |")),
            ("string.join([\"a\", \"b\"], \",\")", s("a,b")),
            (
                "string.split(\"a/b\", \"/\")",
                Value::Array(vec![s("a"), s("b")]),
            ),
            ("string.replace(\"aXa\", \"a\", \"b\")", s("bXb")),
            ("to_upper(\"ab\")", s("AB")),
            ("string.to_lower(\"AB\")", s("ab")),
            ("string.trim(\"--a--\", \"-\")", s("a")),
            ("string.trim_prefix(\"pre-x\", \"pre-\")", s("x")),
            ("string.trim_suffix(\"x.log\", \".log\")", s("x")),
            ("string.trim_space(\"  a \")", s("a")),
            (
                "array.concat([1], [2, 3])",
                Value::Array(vec![
                    Value::Number(1.0),
                    Value::Number(2.0),
                    Value::Number(3.0),
                ]),
            ),
            ("concat([], [1])", Value::Array(vec![Value::Number(1.0)])),
            (
                "encoding.from_json(\"{\\\"a\\\": [1, true]}\").a[1]",
                Value::Bool(true),
            ),
            (
                "encoding.to_json({a = 1, b = \"x\"})",
                s("{\"a\":1,\"b\":\"x\"}"),
            ),
            ("convert.nonsensitive(\"x\")", s("x")),
            (
                "file.path_join(\"/var/log\", \"pods\", \"../x\")",
                s("/var/log/x"),
            ),
            ("constants.os", s(std::env::consts::OS)),
        ];
        for (src, want) in cases {
            assert_eq!(ev(src), want, "{src}");
        }
    }
}
