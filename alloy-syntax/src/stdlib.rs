//! The standard-library functions log configurations use, with their deprecated bare
//! aliases (`env`, `format`, `concat`, `json_decode`, …): the same set as grafana/alloy
//! `syntax/internal/stdlib/stdlib.go`, with its semantics and error texts.

mod array;
mod encoding;
mod format;

pub use array::type_error;

use std::collections::BTreeMap;

use super::eval::Scope;
use super::value::Value;

/// (namespace, name, canonical full name) of every function; bare aliases use namespace "".
const FUNCTIONS: &[(&str, &str, &str)] = &[
    ("sys", "env", "sys.env"),
    ("", "env", "sys.env"),
    ("", "coalesce", "coalesce"),
    ("", "json_path", "json_path"),
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
    ("array", "combine_maps", "array.combine_maps"),
    ("array", "group_by", "array.group_by"),
    ("encoding", "from_json", "encoding.from_json"),
    ("", "json_decode", "encoding.from_json"),
    ("encoding", "from_yaml", "encoding.from_yaml"),
    ("", "yaml_decode", "encoding.from_yaml"),
    ("encoding", "from_base64", "encoding.from_base64"),
    ("", "base64_decode", "encoding.from_base64"),
    ("encoding", "from_URLbase64", "encoding.from_URLbase64"),
    ("encoding", "to_base64", "encoding.to_base64"),
    ("encoding", "to_URLbase64", "encoding.to_URLbase64"),
    ("encoding", "to_json", "encoding.to_json"),
    ("encoding", "url_encode", "encoding.url_encode"),
    ("encoding", "url_decode", "encoding.url_decode"),
    ("convert", "nonsensitive", "convert.nonsensitive"),
    ("", "nonsensitive", "convert.nonsensitive"),
    ("file", "path_join", "file.path_join"),
];

/// The root scope: function namespaces and `constants` (`hostname` comes from the caller: this
/// crate does no IO).
pub fn namespaces(hostname: &str) -> BTreeMap<String, Value> {
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
    c.insert("hostname".into(), Value::String(hostname.into()));
    c.insert("os".into(), Value::String(std::env::consts::OS.into()));
    // Go's GOARCH names, which configs compare against.
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    };
    c.insert("arch".into(), Value::String(arch.into()));
    // Alloy normalises its version to semver with a `v` prefix (constants.go).
    c.insert(
        "version".into(),
        Value::String(concat!("v", env!("CARGO_PKG_VERSION")).into()),
    );
    root.insert("constants".into(), Value::Object(c));
    root
}

fn arity(args: &[Value], n: usize) -> Result<(), String> {
    if args.len() != n {
        return Err(format!("expected {n} arguments, got {}", args.len()));
    }
    Ok(())
}

/// Calls a function by its canonical name. `shown` is the name as the config wrote it: Alloy
/// prefixes the errors of its plain Go functions with it (`encoding.to_json jsonEncode only
/// supports map`), while its raw functions (`concat`, `coalesce`, `array.*`) report bare
/// messages (`combine_maps: merge conditions must not be empty`).
pub fn call(name: &str, shown: &str, args: &[Value], scope: &Scope) -> Result<Value, String> {
    match name {
        "coalesce" => Ok(coalesce(args)),
        "array.concat" => array::concat(args, scope),
        "array.combine_maps" => array::combine_maps(args),
        "array.group_by" => array::group_by(args),
        _ => go_function(name, args, scope).map_err(|e| format!("{shown} {e}")),
    }
}

/// `coalesce`: the first argument that is not null, a zero value or an empty array/object;
/// otherwise the last argument (null with none).
fn coalesce(args: &[Value]) -> Value {
    args.iter()
        .find(|v| !v.is_zero())
        .or(args.last())
        .cloned()
        .unwrap_or(Value::Null)
}

fn go_function(name: &str, args: &[Value], scope: &Scope) -> Result<Value, String> {
    let s = |i: usize| -> Result<String, String> { args[i].to_str() };
    let string = |v: String| Ok(Value::String(v));
    match name {
        "sys.env" => {
            arity(args, 1)?;
            string((scope.env)(&s(0)?).unwrap_or_default())
        }
        "string.format" => {
            let fmt = args
                .first()
                .ok_or("expected at least 1 argument, got 0")?
                .to_str()?;
            string(format::sprintf(&fmt, &args[1..]))
        }
        "string.join" => {
            arity(args, 2)?;
            string(args[0].to_string_list()?.join(&s(1)?))
        }
        "string.split" => {
            arity(args, 2)?;
            let (v, sep) = (s(0)?, s(1)?);
            // Go's strings.Split: an empty separator splits into UTF-8 characters.
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
            string(s(0)?.replace(&s(1)?, &s(2)?))
        }
        "string.to_lower" => {
            arity(args, 1)?;
            string(s(0)?.to_lowercase())
        }
        "string.to_upper" => {
            arity(args, 1)?;
            string(s(0)?.to_uppercase())
        }
        "string.trim" => {
            arity(args, 2)?;
            let cut: Vec<char> = s(1)?.chars().collect();
            string(s(0)?.trim_matches(|c| cut.contains(&c)).into())
        }
        "string.trim_prefix" => {
            arity(args, 2)?;
            let (v, p) = (s(0)?, s(1)?);
            string(v.strip_prefix(p.as_str()).unwrap_or(&v).into())
        }
        "string.trim_suffix" => {
            arity(args, 2)?;
            let (v, p) = (s(0)?, s(1)?);
            string(v.strip_suffix(p.as_str()).unwrap_or(&v).into())
        }
        "string.trim_space" => {
            arity(args, 1)?;
            string(s(0)?.trim().into())
        }
        "encoding.from_json" => {
            arity(args, 1)?;
            let j: serde_json::Value = serde_json::from_str(&s(0)?).map_err(|e| e.to_string())?;
            Ok(encoding::from_json(j))
        }
        "encoding.from_yaml" => {
            arity(args, 1)?;
            encoding::from_yaml(&s(0)?)
        }
        "encoding.from_base64" | "encoding.from_URLbase64" => {
            arity(args, 1)?;
            let url = name == "encoding.from_URLbase64";
            string(encoding::bytes_to_string(encoding::base64_decode(
                &s(0)?,
                url,
            )?))
        }
        "encoding.to_base64" | "encoding.to_URLbase64" => {
            arity(args, 1)?;
            string(encoding::base64_encode(
                &s(0)?,
                name == "encoding.to_URLbase64",
            ))
        }
        "encoding.url_encode" => {
            arity(args, 1)?;
            string(encoding::query_escape(&s(0)?))
        }
        "encoding.url_decode" => {
            arity(args, 1)?;
            string(encoding::query_unescape(&s(0)?)?)
        }
        "encoding.to_json" => {
            arity(args, 1)?;
            string(encoding::to_json(&args[0])?)
        }
        "json_path" => {
            arity(args, 2)?;
            encoding::json_path(&s(0)?, &s(1)?)
        }
        "convert.nonsensitive" => {
            arity(args, 1)?;
            match &args[0] {
                Value::Secret(v) | Value::String(v) => string(v.clone()),
                other => Err(format!("expected secret, got {}", other.type_name())),
            }
        }
        "file.path_join" => {
            let parts = args
                .iter()
                .map(Value::to_str)
                .collect::<Result<Vec<_>, _>>()?;
            string(path_join(&parts))
        }
        other => Err(format!("unknown function {other}")),
    }
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

#[cfg(test)]
mod tests {
    use super::super::eval::{eval, Scope};
    use super::super::parser::parse_expr;
    use super::*;

    fn scope() -> Scope {
        let mut sc = Scope::with_env(|k| match k {
            "CLUSTER" => Some("prod".to_string()),
            "TEST_VAR" | "TEST_VAR2" => Some("Hello!".to_string()),
            _ => None,
        });
        sc.root.insert("secret".into(), Value::Secret("foo".into()));
        sc
    }

    fn ev(src: &str) -> Result<Value, String> {
        let e = parse_expr(src).map_err(|d| format!("parse {src}: {d:?}"))?;
        eval(&e, &scope()).map_err(|e| e.msg)
    }

    /// Alloy's `vm_stdlib_test.go` tables (TestVM_Stdlib, TestStdlibCoalesce,
    /// TestStdlibJsonPath, TestStdlib_Nonsensitive, TestStdlib_StringFunc, TestStdlibFileFunc):
    /// each input with the expected result, written as an Alloy expression.
    #[test]
    fn alloy_vm_stdlib_tables() {
        let cases: &[(&str, &str)] = &[
            // deprecated aliases
            (r#"env("TEST_VAR")"#, r#""Hello!""#),
            (
                r#"concat([true, "foo"], [], [false, 1])"#,
                r#"[true, "foo", false, 1]"#,
            ),
            (r#"json_decode("{\"foo\": \"bar\"}")"#, r#"{"foo" = "bar"}"#),
            ("yaml_decode(`foo: bar`)", r#"{"foo" = "bar"}"#),
            (
                r#"base64_decode("Zm9vYmFyMTIzIT8kKiYoKSctPUB+")"#,
                r#""foobar123!?$*&()'-=@~""#,
            ),
            (r#"sys.env("TEST_VAR")"#, r#""Hello!""#),
            (
                r#"array.concat([true, "foo"], [], [false, 1])"#,
                r#"[true, "foo", false, 1]"#,
            ),
            (
                r#"encoding.from_json("{\"foo\": \"bar\"}")"#,
                r#"{"foo" = "bar"}"#,
            ),
            (r#"encoding.from_json("[0, 1, 2]")"#, "[0, 1, 2]"),
            (
                r#"encoding.from_json("{\"foo\": null}")"#,
                r#"{"foo" = null}"#,
            ),
            (r#"encoding.from_json("[0, null]")"#, "[0, null]"),
            ("encoding.from_yaml(`foo: bar`)", r#"{"foo" = "bar"}"#),
            ("encoding.from_yaml(`[0, 1, 2]`)", "[0, 1, 2]"),
            ("encoding.from_yaml(`[0.0, 1.0, 2.0]`)", "[0, 1, 2]"),
            ("encoding.from_yaml(`foo: null`)", r#"{"foo" = null}"#),
            (r#"encoding.from_yaml("[0, null]")"#, "[0, null]"),
            (
                r#"encoding.from_base64("Zm9vYmFyMTIzIT8kKiYoKSctPUB+")"#,
                r#""foobar123!?$*&()'-=@~""#,
            ),
            (
                r#"encoding.from_URLbase64("c3RyaW5nMTIzIT8kKiYoKSctPUB-")"#,
                r#""string123!?$*&()'-=@~""#,
            ),
            (
                r#"encoding.to_base64("string123!?$*&()'-=@~")"#,
                r#""c3RyaW5nMTIzIT8kKiYoKSctPUB+""#,
            ),
            (
                r#"encoding.to_URLbase64("string123!?$*&()'-=@~")"#,
                r#""c3RyaW5nMTIzIT8kKiYoKSctPUB-""#,
            ),
            (
                r#"encoding.to_json({"modules"={"http_2xx"={"prober"="http","timeout"="5s","http"={"headers"={"Authorization"=sys.env("TEST_VAR")}}}}})"#,
                r#"`{"modules":{"http_2xx":{"http":{"headers":{"Authorization":"Hello!"}},"prober":"http","timeout":"5s"}}}`"#,
            ),
            // Alloy's documentation examples for url_encode / url_decode.
            (
                r#"encoding.url_encode("string123!?$*&()'-=@~")"#,
                r#""string123%21%3F%24%2A%26%28%29%27-%3D%40~""#,
            ),
            (
                r#"encoding.url_decode("string123%21%3F%24%2A%26%28%29%27-%3D%40~")"#,
                r#""string123!?$*&()'-=@~""#,
            ),
            (r#"encoding.url_encode("a b")"#, r#""a+b""#),
            // array.combine_maps
            (
                r#"array.combine_maps([{"a" = "a1", "b" = "b1"}], [{"a" = "a1", "c" = "c1"}], ["a"])"#,
                r#"[{"a" = "a1", "b" = "b1", "c" = "c1"}]"#,
            ),
            (
                r#"array.combine_maps([{"a" = "a1", "b" = "b1"}, {"a" = "a1", "b" = "b1"}], [{"a" = "a1", "c" = "c1"}], ["a"])"#,
                r#"[{"a" = "a1", "b" = "b1", "c" = "c1"}, {"a" = "a1", "b" = "b1", "c" = "c1"}]"#,
            ),
            (
                r#"array.combine_maps([{"pod" = "a", "lbl" = "q"}, {"pod" = "b", "lbl" = "q"}], [{"pod" = "c", "lbl" = "q"}, {"pod" = "d", "lbl" = "q"}], ["lbl"])"#,
                r#"[{"lbl" = "q", "pod" = "c"}, {"lbl" = "q", "pod" = "d"}, {"lbl" = "q", "pod" = "c"}, {"lbl" = "q", "pod" = "d"}]"#,
            ),
            (
                r#"array.combine_maps([{"a" = 1, "b" = 2.2}], [{"a" = 1, "c" = "c1"}], ["a"])"#,
                r#"[{"a" = 1, "b" = 2.2, "c" = "c1"}]"#,
            ),
            (
                r#"array.combine_maps([{"a" = 1, "b" = 2.2}], [{"a" = 1, "b" = "3.3"}], ["a"])"#,
                r#"[{"a" = 1, "b" = "3.3"}]"#,
            ),
            (
                r#"array.combine_maps([{"a" = 1, "b" = 2.2}], [{"a" = 2, "b" = "3.3"}], ["a"])"#,
                "[]",
            ),
            (
                r#"array.combine_maps([{"a" = 1, "b" = 2.2}], [{"a" = "1", "b" = "3.3"}], ["a"])"#,
                "[]",
            ),
            (
                r#"array.combine_maps([{"a" = 1, "b" = [1,2,3]}], [{"a" = 1, "c" = {"d" = {"e" = 10}}}], ["a"])"#,
                r#"[{"a" = 1, "b" = [1, 2, 3], "c" = {"d" = {"e" = 10}}}]"#,
            ),
            (
                r#"array.combine_maps([{"a" = 1, "n" = 1.1}], [{"a" = 1, "n" = 2.1}, {"n" = 2.2}], ["a"])"#,
                r#"[{"a" = 1, "n" = 2.1}]"#,
            ),
            (
                r#"array.combine_maps([{"a" = 1, "n" = 1.1}, {"n" = 1.2}], [{"a" = 1, "n" = 2.1}], ["a"])"#,
                r#"[{"a" = 1, "n" = 2.1}]"#,
            ),
            (
                r#"array.combine_maps([{"a" = 1, "b" = 3, "n" = 1.1}], [{"a" = 1, "b" = 3, "n" = 2.1}], ["a", "b"])"#,
                r#"[{"a" = 1, "b" = 3, "n" = 2.1}]"#,
            ),
            (
                r#"array.combine_maps([{"a" = 1, "n" = 1.1}, {"a" = 1, "b" = 3, "n" = 1.1}, {"b" = 3, "n" = 1.1}], [{"a" = 1, "n" = 2.3}, {"b" = 1, "n" = 2.3}, {"a" = 1, "b" = 3, "n" = 2.1}], ["a", "b"])"#,
                r#"[{"a" = 1, "b" = 3, "n" = 2.1}]"#,
            ),
            (
                r#"array.combine_maps([{"a" = 1, "n" = 1.1}, {"a" = 1, "b" = 3, "n" = 1.1}, {"b" = 3, "n" = 1.1}], [{"a" = 1, "n" = 2.3}, {"b" = 1, "n" = 2.3}, {"a" = 1, "b" = 3, "n" = 2.1}], ["a", "b", "c"])"#,
                "[]",
            ),
            (
                r#"array.combine_maps([{"a" = 1, "n" = 1.1}, {"a" = 1, "n" = 1.2}, {"a" = 1, "n" = 1.3}], [{"a" = 1, "n" = 2.1}, {"a" = 1, "n" = 2.2}, {"a" = 1, "n" = 2.3}], ["a"])"#,
                r#"[{"a" = 1, "n" = 2.1}, {"a" = 1, "n" = 2.2}, {"a" = 1, "n" = 2.3}, {"a" = 1, "n" = 2.1}, {"a" = 1, "n" = 2.2}, {"a" = 1, "n" = 2.3}, {"a" = 1, "n" = 2.1}, {"a" = 1, "n" = 2.2}, {"a" = 1, "n" = 2.3}]"#,
            ),
            // The optional fourth argument keeps each unmatched lhs map once per rhs map it
            // did not match (Alloy's loop appends it inside the inner loop).
            (
                r#"array.combine_maps([{"a" = 1}, {"a" = 2}], [{"a" = 1, "x" = 1}, {"a" = 3}], ["a"], true)"#,
                r#"[{"a" = 1, "x" = 1}, {"a" = 1}, {"a" = 2}, {"a" = 2}]"#,
            ),
            // array.group_by (groups sorted by value here; Go map order in Alloy)
            (
                r#"array.group_by([{"app" = "a", "n" = 1}, {"app" = "b", "n" = 2}, {"n" = 3}, {"app" = "a", "n" = 4}], "app", false)"#,
                r#"[{"app" = "", "items" = [{"n" = 3}]}, {"app" = "a", "items" = [{"app" = "a", "n" = 1}, {"app" = "a", "n" = 4}]}, {"app" = "b", "items" = [{"app" = "b", "n" = 2}]}]"#,
            ),
            (
                r#"array.group_by([{"app" = "a"}, {"n" = 3}], "app", true)"#,
                r#"[{"app" = "a", "items" = [{"app" = "a"}]}]"#,
            ),
            // coalesce
            ("coalesce()", "null"),
            (r#"coalesce("Hello!")"#, r#""Hello!""#),
            (r#"coalesce(sys.env("TEST_VAR2"), "World!")"#, r#""Hello!""#),
            (
                r#"coalesce(sys.env("NON_DEFINED"), "World!")"#,
                r#""World!""#,
            ),
            (r#"coalesce([], ["fallback"])"#, r#"["fallback"]"#),
            (
                r#"coalesce(array.concat(["item"]), ["fallback"])"#,
                r#"["item"]"#,
            ),
            ("coalesce(0, 1, 2)", "1"),
            ("coalesce(false, 1, 2)", "1"),
            ("coalesce(false, true)", "true"),
            (r#"coalesce(encoding.from_json("[]"), true)"#, "true"),
            (r#"coalesce(encoding.from_json("{}"), true)"#, "true"),
            (r#"coalesce(encoding.from_json("{}"), false)"#, "false"),
            ("coalesce([],null)", "null"),
            // json_path
            (r#"json_path("{\"a\": \"b\"}", ".a")"#, r#"["b"]"#),
            (r#"json_path("{\"a\": \"b\"}", ".nonexists")"#, "[]"),
            (
                r#"json_path("[{\"name\": \"Department\",\"value\": \"IT\"},{\"name\":\"ReferenceNumber\",\"value\":\"123456\"},{\"name\":\"TestStatus\",\"value\":\"Pending\"}]", "[?(@.name == \"Department\")].value")"#,
                r#"["IT"]"#,
            ),
            (r#"json_path("{\"a\": \"b\"}", ".a")[0]"#, r#""b""#),
            (
                r#"json_path("{\"a\": {\"b\": [1, 2]}}", "$.a.b[*]")"#,
                "[1, 2]",
            ),
            // nonsensitive
            ("nonsensitive(secret)", r#""foo""#),
            ("convert.nonsensitive(secret)", r#""foo""#),
            // strings (deprecated and namespaced)
            (r#"to_lower("String")"#, r#""string""#),
            (r#"to_upper("string")"#, r#""STRING""#),
            (r#"trim_space("   string \n\n")"#, r#""string""#),
            (
                r#"to_lower(to_upper(trim_space("   String   ")))"#,
                r#""string""#,
            ),
            (
                r#"split("/aaa/bbb/ccc/ddd", "/")"#,
                r#"["", "aaa", "bbb", "ccc", "ddd"]"#,
            ),
            (r#"split("/aaa/bbb/ccc/ddd", "/")[0]"#, r#""""#),
            (
                r#"join(split("/aaa/bbb/ccc/ddd", "/"), "/")"#,
                r#""/aaa/bbb/ccc/ddd""#,
            ),
            (r#"join(["foo", "bar", "baz"], ", ")"#, r#""foo, bar, baz""#),
            (r#"join([0, 0, 1], ", ")"#, r#""0, 0, 1""#),
            (r#"format("Hello %s", "World")"#, r#""Hello World""#),
            (r#"format("%#v", 1)"#, r#""1""#),
            (r#"format("%#v", true)"#, r#""true""#),
            (r#"format("%q", "hello")"#, r#""\"hello\"""#),
            (r#"replace("Hello World", " World", "!")"#, r#""Hello!""#),
            (r#"trim("?!hello?!", "!?")"#, r#""hello""#),
            (r#"trim("   hello! world.!  ", "! ")"#, r#""hello! world.""#),
            (r#"trim_prefix("helloworld", "hello")"#, r#""world""#),
            (r#"trim_suffix("helloworld", "world")"#, r#""hello""#),
            (r#"string.to_lower("String")"#, r#""string""#),
            (r#"string.to_upper("string")"#, r#""STRING""#),
            (r#"string.trim_space("   string \n\n")"#, r#""string""#),
            (
                r#"string.split("/aaa/bbb/ccc/ddd", "/")"#,
                r#"["", "aaa", "bbb", "ccc", "ddd"]"#,
            ),
            (r#"string.join([0, 0, 1], ", ")"#, r#""0, 0, 1""#),
            (r#"string.format("%#v", true)"#, r#""true""#),
            (
                r#"string.replace("Hello World", " World", "!")"#,
                r#""Hello!""#,
            ),
            (
                r#"string.trim("   hello! world.!  ", "! ")"#,
                r#""hello! world.""#,
            ),
            (r#"string.trim("foobar", "far")"#, r#""oob""#),
            (r#"string.trim_prefix("helloworld", "hello")"#, r#""world""#),
            (r#"string.trim_suffix("helloworld", "world")"#, r#""hello""#),
            (r#"string.split("", ",")"#, r#"[""]"#),
            // file
            (
                r#"file.path_join("this/is", "a/path")"#,
                r#""this/is/a/path""#,
            ),
            ("file.path_join()", r#""""#),
            (
                r#"file.path_join("/var/log", "pods", "../x")"#,
                r#""/var/log/x""#,
            ),
            // ours
            (r#"sys.env("CLUSTER")"#, r#""prod""#),
            ("constants.os", &format!("{:?}", std::env::consts::OS)),
            (
                "constants.version",
                concat!("\"v", env!("CARGO_PKG_VERSION"), "\""),
            ),
        ];
        for (src, want) in cases {
            let want = ev(want).unwrap_or_else(|e| panic!("expectation {want}: {e}"));
            assert_eq!(ev(src), Ok(want), "{src}");
        }
    }

    /// Alloy's TestVM_Stdlib_Errors, plus error texts of the Go functions Alloy calls.
    #[test]
    fn alloy_stdlib_errors() {
        let cases: &[(&str, &str)] = &[
            (
                r#"array.combine_maps([{"a" = "a1", "b" = "b1"}], "a", ["a"])"#,
                r#""a" should be array, got string"#,
            ),
            (
                r#"array.combine_maps([{"a" = "a1", "b" = "b1"}], ["a"], ["a"])"#,
                r#""a" should be object, got string"#,
            ),
            (
                r#"array.combine_maps([{"a" = "a1", "b" = "b1"}], [{"a" = "a1", "c" = "b1"}], [])"#,
                "combine_maps: merge conditions must not be empty",
            ),
            (
                r#"array.combine_maps([], [])"#,
                "combine_maps: expected 3 or 4 arguments, got 2",
            ),
            (
                r#"array.combine_maps([], [], ["a"], "yes")"#,
                r#""yes" should be bool, got string"#,
            ),
            (
                "encoding.to_json(12)",
                "encoding.to_json jsonEncode only supports map",
            ),
            (
                r#"array.group_by([], "k")"#,
                "group_by: expected 3 arguments, got 2",
            ),
            (
                r#"array.group_by([{"k" = 1}], "k", false)"#,
                "1 should be string, got number",
            ),
            (
                r#"array.group_by(["x"], "k", false)"#,
                r#""x" should be object, got string"#,
            ),
            (r#"array.concat([1], 2)"#, "2 should be array, got number"),
            (
                r#"encoding.from_base64("Zm9vY")"#,
                "encoding.from_base64 illegal base64 data at input byte 4",
            ),
            (
                r#"base64_decode("Zm9v!")"#,
                "base64_decode illegal base64 data at input byte 4",
            ),
            (
                r#"encoding.url_decode("%zz")"#,
                r#"encoding.url_decode invalid URL escape "%zz""#,
            ),
            (
                r#"encoding.from_json("{")"#,
                "encoding.from_json EOF while parsing an object at line 1 column 1",
            ),
        ];
        for (src, want) in cases {
            let got = ev(src).expect_err(src);
            assert_eq!(&got, want, "{src}");
        }
    }
}
