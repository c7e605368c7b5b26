//! `stage.json`: JMESPath expressions over a JSON log line, like Alloy's `stages/json.go`.
//!
//! Alloy keeps typed values in its extracted map and turns them into strings only when a later
//! stage reads them (`getString`). This agent's extracted map holds strings, so values are
//! rendered here the way that later conversion would: numbers as Go's
//! `strconv.FormatFloat(f, 'f', -1, 64)` (`1.0` is `1`), bools as `true`/`false`, objects and
//! arrays as the compact JSON Alloy marshals them to, and `null` (also what a path that matches
//! nothing yields) removes the key, since no later stage can read a nil value.

use std::fmt::Write as _;

use jmespath::{Expression, Rcvar, Variable};

use super::json_keys;
use crate::alloy::pipeline::Entry;

/// A compiled `stage.json`.
#[derive(Debug, Clone)]
pub struct JsonStage {
    /// (extracted name, expression) in config order.
    pub expressions: Vec<(String, Expression<'static>)>,
    pub source: Option<String>,
    pub drop_malformed: bool,
}

/// The line (or `source` value) was not a JSON object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// Compiles one `expressions` entry; an empty expression means the name itself, as in Alloy.
pub fn compile(name: &str, expr: &str) -> Result<Expression<'static>, String> {
    let src = if expr.is_empty() { name } else { expr };
    jmespath::compile(src).map_err(|e| {
        format!(
            "could not compile JMES expression {src:?} (for {name:?}) at column {}: {}",
            e.column + 1,
            e.reason
        )
    })
}

impl JsonStage {
    /// Extracts into `e.extracted`. A `source` that was never extracted leaves the entry
    /// alone (Alloy does not count that as malformed).
    pub fn process(&self, e: &mut Entry) -> Result<(), Malformed> {
        if json_keys::all_plain(&self.expressions) {
            return self.process_plain_keys(e);
        }
        let data = match &self.source {
            Some(s) => match e.extracted.get(s) {
                Some(v) => parse_object(v)?,
                None => return Ok(()),
            },
            None => parse_object(&e.line)?,
        };
        for (name, expr) in &self.expressions {
            // A runtime error (e.g. a function given the wrong type) leaves the key untouched.
            let Ok(found) = expr.search(&data) else {
                continue;
            };
            match render(&found) {
                Some(v) => {
                    e.extracted.insert(name.clone(), v);
                }
                None => {
                    e.extracted.remove(name);
                }
            }
        }
        Ok(())
    }
}

impl JsonStage {
    /// [`JsonStage::process`] when every expression is a bare key: only those values are
    /// built (see [`json_keys`]); the results are the same.
    fn process_plain_keys(&self, e: &mut Entry) -> Result<(), Malformed> {
        let text = match &self.source {
            Some(s) => match e.extracted.get(s) {
                Some(v) => v.as_str(),
                None => return Ok(()),
            },
            None => e.line.as_str(),
        };
        let found = json_keys::extract(text, &self.expressions).ok_or(Malformed)?;
        for ((name, _), v) in self.expressions.iter().zip(found) {
            match v.as_ref().and_then(render) {
                Some(v) => {
                    e.extracted.insert(name.clone(), v);
                }
                None => {
                    e.extracted.remove(name);
                }
            }
        }
        Ok(())
    }
}

/// Alloy unmarshals into a Go map: an object parses, and so does `null` (an empty map);
/// arrays, strings and numbers are malformed.
fn parse_object(s: &str) -> Result<Rcvar, Malformed> {
    match Variable::from_json(s) {
        Ok(v @ (Variable::Object(_) | Variable::Null)) => Ok(Rcvar::new(v)),
        _ => Err(Malformed),
    }
}

/// The string a later stage would see, or `None` for nil.
pub fn render(v: &Variable) -> Option<String> {
    match v {
        Variable::Null | Variable::Expref(_) => None,
        Variable::String(s) => Some(s.clone()),
        Variable::Bool(b) => Some(b.to_string()),
        Variable::Number(n) => Some(go_format_float(n.as_f64().unwrap_or(0.0))),
        Variable::Array(_) | Variable::Object(_) => {
            let mut out = String::new();
            go_json(v, &mut out);
            Some(out)
        }
    }
}

/// Go's `strconv.FormatFloat(f, 'f', -1, 64)`: shortest round-trip digits, never an exponent;
/// Rust's `Display` for `f64` is exactly that.
pub fn go_format_float(f: f64) -> String {
    format!("{f}")
}

/// Compact JSON as Alloy's json-iterator `Marshal` writes it: keys sorted, `<`, `>` and `&`
/// escaped (EscapeHTML), numbers as Go float64s.
fn go_json(v: &Variable, out: &mut String) {
    match v {
        Variable::Null | Variable::Expref(_) => out.push_str("null"),
        Variable::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Variable::Number(n) => out.push_str(&go_json_float(n.as_f64().unwrap_or(0.0))),
        Variable::String(s) => go_json_string(s, out),
        Variable::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_json(item, out);
            }
            out.push(']');
        }
        Variable::Object(map) => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_json_string(k, out);
                out.push(':');
                go_json(item, out);
            }
            out.push('}');
        }
    }
}

/// json-iterator's `WriteFloat64`: `'f'` format, or `'e'` below 1e-6 and from 1e21 on, with
/// Go's exponent spelling (`1e+21`, `1e-7`).
fn go_json_float(f: f64) -> String {
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let s = format!("{f:e}");
        match s.split_once('e') {
            Some((mant, exp)) if exp.starts_with('-') => format!("{mant}e{exp}"),
            Some((mant, exp)) => format!("{mant}e+{exp}"),
            None => s,
        }
    } else {
        go_format_float(f)
    }
}

fn go_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::alloy::relabel::Labels;

    fn stage(exprs: &[(&str, &str)], source: Option<&str>) -> JsonStage {
        JsonStage {
            expressions: exprs
                .iter()
                .map(|(n, e)| (n.to_string(), compile(n, e).unwrap()))
                .collect(),
            source: source.map(String::from),
            drop_malformed: false,
        }
    }

    fn run(st: &JsonStage, line: &str) -> Result<BTreeMap<String, String>, Malformed> {
        let mut e = Entry::new(Labels::new(), 0, line);
        st.process(&mut e)?;
        Ok(e.extracted)
    }

    /// The examples of Alloy's `stage.json` documentation and JMESPath's features.
    #[test]
    fn expressions_table() {
        let line = r#"{"log":"log message\n","stream":"stderr","time":"2019-04-30T02:12:41.8443515Z",
            "extra":{"user":"marco","user-id":42},"level":"info","n":1.0,"big":1e21,"tiny":1e-7,
            "ok":true,"nothing":null,"items":[{"k":"a","v":1},{"k":"b","v":2},{"k":"c","v":30}],
            "html":"<a&b>","nested":{"z":1,"a":[1.5,"x",null,false]}}"#;
        // (name, expression, expected extracted value; None = absent)
        let cases: &[(&str, &str, Option<&str>)] = &[
            // Docs: an empty expression uses the name.
            ("output", "log", Some("log message\n")),
            ("stream", "", Some("stderr")),
            ("timestamp", "time", Some("2019-04-30T02:12:41.8443515Z")),
            ("user", "extra.user", Some("marco")),
            ("user_id", r#"extra."user-id""#, Some("42")),
            // Docs: an object is kept as its JSON text.
            ("extra", "", Some(r#"{"user":"marco","user-id":42}"#)),
            // Numbers the way Go's getString prints a float64.
            ("n", "", Some("1")),
            ("big", "", Some("1000000000000000000000")),
            ("tiny", "", Some("0.0000001")),
            ("ok", "", Some("true")),
            // null and paths that match nothing leave no value.
            ("nothing", "", None),
            ("missing", "no.such.path", None),
            ("first_key", "items[0].k", Some("a")),
            ("last_key", "items[-1].k", Some("c")),
            ("keys", "items[*].k", Some(r#"["a","b","c"]"#)),
            ("big_ones", "items[?v > `1`].k", Some(r#"["b","c"]"#)),
            ("slice", "items[:2].v", Some("[1,2]")),
            ("count", "length(items)", Some("3")),
            ("total", "sum(items[*].v)", Some("33")),
            ("joined", "join(',', items[*].k)", Some("a,b,c")),
            ("upper_user", "to_string(extra.\"user-id\")", Some("42")),
            (
                "multi",
                "{u: extra.user, l: level}",
                Some(r#"{"l":"info","u":"marco"}"#),
            ),
            ("pipe", "items | [0].v", Some("1")),
            ("or", "missing || level", Some("info")),
            ("html", "[html]", Some(r#"["\u003ca\u0026b\u003e"]"#)),
            ("nested", "", Some(r#"{"a":[1.5,"x",null,false],"z":1}"#)),
            ("escapes", "[log]", Some(r#"["log message\n"]"#)),
            ("exps", "[big, tiny]", Some("[1e+21,1e-7]")),
        ];
        for (name, expr, want) in cases {
            let got = run(&stage(&[(name, expr)], None), line).unwrap();
            assert_eq!(
                got.get(*name).map(String::as_str),
                *want,
                "{name} = {expr:?}"
            );
        }
    }

    #[test]
    fn invalid_expressions_do_not_compile() {
        for bad in ["items[", "a..b", "foo(", "`{bad json`", "[?a >]"] {
            let err = compile("x", bad).unwrap_err();
            assert!(
                err.contains("could not compile JMES expression"),
                "{bad}: {err}"
            );
        }
        // An empty expression falls back to the name, which must itself be valid.
        assert!(compile("user-id", "").is_err());
        assert!(compile("user_id", "").is_ok());
    }

    #[test]
    fn lines_and_sources() {
        let st = stage(&[("level", "")], None);
        // (line, Ok(level) or Err)
        let cases: &[(&str, Result<Option<&str>, Malformed>)] = &[
            (r#"{"level":"warn"}"#, Ok(Some("warn"))),
            ("null", Ok(None)),
            ("not json", Err(Malformed)),
            (r#"["level"]"#, Err(Malformed)),
            (r#""level""#, Err(Malformed)),
            ("42", Err(Malformed)),
            (r#"{"level":"warn"} trailing"#, Err(Malformed)),
        ];
        for (line, want) in cases {
            let got = run(&st, line).map(|m| m.get("level").cloned());
            assert_eq!(got, want.map(|o| o.map(String::from)), "{line}");
        }
        // With `source`, the extracted value is parsed; a missing source is a no-op.
        let st = stage(&[("user", "")], Some("payload"));
        let mut e = Entry::new(Labels::new(), 0, "not json");
        assert_eq!(st.process(&mut e), Ok(()));
        assert!(e.extracted.is_empty());
        e.extracted
            .insert("payload".into(), r#"{"user":"ann"}"#.into());
        assert_eq!(st.process(&mut e), Ok(()));
        assert_eq!(e.extracted["user"], "ann");
        // A nil result replaces a value extracted earlier.
        e.extracted
            .insert("payload".into(), r#"{"other":1}"#.into());
        assert_eq!(st.process(&mut e), Ok(()));
        assert!(!e.extracted.contains_key("user"));
    }

    #[test]
    fn go_float_formatting() {
        for (f, s) in [
            (1.0, "1"),
            (-0.5, "-0.5"),
            (1e20, "100000000000000000000"),
            (123456789.125, "123456789.125"),
            (12345678901234567890.0, "12345678901234567000"),
        ] {
            assert_eq!(go_format_float(f), s);
        }
        for (f, s) in [
            (1e21, "1e+21"),
            (1.5e-7, "1.5e-7"),
            (2e-10, "2e-10"),
            (0.0, "0"),
        ] {
            assert_eq!(go_json_float(f), s);
        }
    }

    proptest::proptest! {
        /// For any finite float, the rendering has no exponent and reads back as the same
        /// float (Go's FormatFloat 'f', -1 is the shortest such string).
        #[test]
        fn any_float_renders_exactly(f in proptest::num::f64::NORMAL | proptest::num::f64::ZERO) {
            let s = go_format_float(f);
            proptest::prop_assert!(!s.contains('e'));
            proptest::prop_assert_eq!(s.parse::<f64>().ok(), Some(f));
        }

        /// For any string value, extracting its key gives the string back unchanged, and
        /// any string inside an array comes back as valid JSON for the same text.
        #[test]
        fn any_string_value_is_extracted_verbatim(v in "\\PC*") {
            let line = serde_json::json!({ "k": v, "a": [v] }).to_string();
            let got = run(&stage(&[("k", ""), ("a", "")], None), &line).unwrap();
            proptest::prop_assert_eq!(got.get("k"), Some(&v));
            let arr: Vec<String> = serde_json::from_str(&got["a"]).unwrap();
            proptest::prop_assert_eq!(arr, vec![v]);
        }
    }
}
