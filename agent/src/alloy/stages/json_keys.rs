//! `stage.json` when every expression is a bare top-level key (`level`, `ts`, ...): one pass
//! over the line that builds values only for the asked keys and checks the rest without
//! building anything. The whole line is still parsed (a line that is not valid JSON stays
//! malformed, and a repeated key keeps its last value), exactly as with the JMESPath path.

use std::fmt;

use jmespath::{Expression, Variable};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Whether a JMESPath expression is a bare identifier, which on an object reads one key.
pub fn is_plain_key(expr: &str) -> bool {
    let mut chars = expr.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether every expression is a bare key (the fast path applies).
pub fn all_plain(expressions: &[(String, Expression<'static>)]) -> bool {
    expressions.iter().all(|(_, e)| is_plain_key(e.as_str()))
}

/// The value of each expression's key in `line` (`None` for a missing key or `null`, and for
/// every key when the line is `null`), or `None` when the line is not a JSON object or `null`.
pub fn extract(
    line: &str,
    expressions: &[(String, Expression<'static>)],
) -> Option<Vec<Option<Variable>>> {
    let mut found: Vec<Option<Variable>> = vec![None; expressions.len()];
    let mut de = serde_json::Deserializer::from_str(line);
    de.deserialize_any(Top {
        keys: expressions,
        found: &mut found,
    })
    .ok()?;
    de.end().ok()?;
    Some(found)
}

/// The top-level value: an object (whose asked keys are kept) or `null`.
struct Top<'a> {
    keys: &'a [(String, Expression<'static>)],
    found: &'a mut Vec<Option<Variable>>,
}

impl<'de> Visitor<'de> for Top<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object or null")
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(hit) = map.next_key_seed(KeyHit(self.keys))? {
            let Some(i) = hit else {
                map.next_value_seed(Check)?;
                continue;
            };
            let value = map.next_value::<Variable>()?;
            let key = self.keys[i].1.as_str();
            for ((_, expr), slot) in self.keys.iter().zip(self.found.iter_mut()) {
                if expr.as_str() == key {
                    *slot = match &value {
                        Variable::Null => None,
                        v => Some(v.clone()),
                    };
                }
            }
        }
        Ok(())
    }
}

/// A map key: the first expression that asks for it, if any.
struct KeyHit<'a>(&'a [(String, Expression<'static>)]);

impl<'de> DeserializeSeed<'de> for KeyHit<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyHit<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E>(self, k: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().position(|(_, e)| e.as_str() == k))
    }
}

/// Any other value: parsed and checked (numbers included, as building them would) but not
/// kept.
struct Check;

impl<'de> DeserializeSeed<'de> for Check {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Check {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Check)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // Keys are read as strings (escapes checked) like the keys of a kept object.
        while map.next_key_seed(KeyHit(&[]))?.is_some() {
            map.next_value_seed(Check)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::alloy::stages::json::{compile, render};

    /// The general path: the whole line as a JMESPath value, each expression searched.
    fn slow(line: &str, exprs: &[(String, Expression<'static>)]) -> Option<Vec<Option<String>>> {
        let v = match Variable::from_json(line) {
            Ok(v @ (Variable::Object(_) | Variable::Null)) => jmespath::Rcvar::new(v),
            _ => return None,
        };
        Some(
            exprs
                .iter()
                .map(|(_, e)| e.search(&v).ok().and_then(|f| render(&f)))
                .collect(),
        )
    }

    fn fast(line: &str, exprs: &[(String, Expression<'static>)]) -> Option<Vec<Option<String>>> {
        extract(line, exprs).map(|f| f.iter().map(|v| v.as_ref().and_then(render)).collect())
    }

    fn exprs(keys: &[&str]) -> Vec<(String, Expression<'static>)> {
        keys.iter()
            .map(|k| (k.to_string(), compile(k, "").expect("compiles")))
            .collect()
    }

    #[test]
    fn plain_keys_are_bare_identifiers_only() {
        for (e, want) in [
            ("level", true),
            ("_x9", true),
            ("9x", false),
            ("a.b", false),
            ("\"a\"", false),
            ("", false),
            ("a[0]", false),
        ] {
            assert_eq!(is_plain_key(e), want, "{e}");
        }
    }

    #[test]
    fn lines_the_stage_sees() {
        let ex = exprs(&["level", "ts", "n", "obj", "level"]);
        for line in [
            r#"{"level":"info","ts":"2024-01-01T00:00:00Z","n":1.0,"obj":{"b":[1,"<x>"],"a":null}}"#,
            r#"{"level":"a","level":"b","other":[{"x":1e400}]}"#,
            r#"{"level":"a","other":"\ud800"}"#,
            r#"{"level":null,"n":12345678901234567890}"#,
            "null",
            "[1]",
            r#"{"level":"x"} tail"#,
            r#"{"level":"x""#,
            "",
        ] {
            assert_eq!(fast(line, &ex), slow(line, &ex), "{line}");
        }
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(|n| serde_json::json!(n)),
            (-1e30f64..1e30).prop_map(|n| serde_json::json!(n)),
            "[a-z<&\"\\\\ ]{0,6}".prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
                prop::collection::btree_map("[a-c]", inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// For any JSON object (and any cut of it, which is mostly malformed), the key path
        /// gives what the general JMESPath path gives.
        #[test]
        fn key_path_agrees_with_jmespath(
            fields in prop::collection::vec(("[a-d]", json_value()), 0..6),
            cut in any::<prop::sample::Index>(),
        ) {
            let body: Vec<String> = fields
                .iter()
                .map(|(k, v)| format!("{}:{v}", serde_json::Value::String(k.clone())))
                .collect();
            let line = format!("{{{}}}", body.join(","));
            let ex = exprs(&["a", "b", "d"]);
            prop_assert_eq!(fast(&line, &ex), slow(&line, &ex));
            let mut at = cut.index(line.len() + 1);
            while !line.is_char_boundary(at) {
                at -= 1;
            }
            prop_assert_eq!(fast(&line[..at], &ex), slow(&line[..at], &ex));
        }
    }
}
