//! The `encoding` namespace and `json_path`: Go-compatible base64 and query escaping, JSON and
//! YAML decoding into Alloy values, JSON encoding as Go's `encoding/json` writes it.

use std::collections::BTreeMap;

use base64::Engine;

use crate::value::Value;

/// Go's `base64.StdEncoding` / `URLEncoding` `DecodeString`: padded, `\r` and `\n` skipped,
/// errors name the byte offset exactly as Go's `CorruptInputError` does.
pub fn base64_decode(src: &str, url: bool) -> Result<Vec<u8>, String> {
    let corrupt = |at: usize| format!("illegal base64 data at input byte {at}");
    let sym = |c: u8| -> Option<u8> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' if !url => 62,
            b'/' if !url => 63,
            b'-' if url => 62,
            b'_' if url => 63,
            _ => return None,
        })
    };
    let b = src.as_bytes();
    let mut out = Vec::with_capacity(b.len() / 4 * 3);
    let mut si = 0;
    while si < b.len() {
        let mut quantum = [0u8; 4];
        let mut dlen = 4;
        let mut j = 0;
        while j < 4 {
            if si == b.len() {
                if j == 0 {
                    return Ok(out);
                }
                // A padded encoding needs whole quanta.
                return Err(corrupt(si - j));
            }
            let c = b[si];
            si += 1;
            if let Some(v) = sym(c) {
                quantum[j] = v;
                j += 1;
                continue;
            }
            if c == b'\n' || c == b'\r' {
                continue;
            }
            if c != b'=' {
                return Err(corrupt(si - 1));
            }
            // Padding: only after two or three symbols.
            match j {
                0 | 1 => return Err(corrupt(si - 1)),
                2 => {
                    while si < b.len() && (b[si] == b'\n' || b[si] == b'\r') {
                        si += 1;
                    }
                    if si == b.len() {
                        return Err(corrupt(b.len()));
                    }
                    if b[si] != b'=' {
                        return Err(corrupt(si - 1));
                    }
                    si += 1;
                }
                _ => {}
            }
            while si < b.len() && (b[si] == b'\n' || b[si] == b'\r') {
                si += 1;
            }
            if si < b.len() {
                return Err(corrupt(si));
            }
            dlen = j;
            break;
        }
        let v = (u32::from(quantum[0]) << 18)
            | (u32::from(quantum[1]) << 12)
            | (u32::from(quantum[2]) << 6)
            | u32::from(quantum[3]);
        let bytes = [(v >> 16) as u8, (v >> 8) as u8, v as u8];
        out.extend_from_slice(&bytes[..dlen - 1]);
        if dlen < 4 {
            return Ok(out);
        }
    }
    Ok(out)
}

pub fn base64_encode(s: &str, url: bool) -> String {
    if url {
        base64::engine::general_purpose::URL_SAFE.encode(s)
    } else {
        base64::engine::general_purpose::STANDARD.encode(s)
    }
}

/// Bytes to a string; Go strings may hold invalid UTF-8, ours cannot, so it is replaced.
pub fn bytes_to_string(b: Vec<u8>) -> String {
    String::from_utf8(b).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Go's `url.QueryEscape`: unreserved bytes stay, space becomes `+`, the rest `%XX`.
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &c in s.as_bytes() {
        match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(c as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{c:02X}")),
        }
    }
    out
}

/// Go's `url.QueryUnescape`: `+` is a space; a bad escape is an error quoting it.
pub fn query_unescape(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (
                    b.get(i + 1).and_then(|&c| hex(c)),
                    b.get(i + 2).and_then(|&c| hex(c)),
                ) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                    }
                    _ => {
                        let bad: String = s[i..].chars().take(3).collect();
                        return Err(format!("invalid URL escape {}", go_quote(&bad)));
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(bytes_to_string(out))
}

/// Go's `strconv.Quote` for the short strings errors show.
fn go_quote(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

pub fn from_json(j: serde_json::Value) -> Value {
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

/// `encoding.from_yaml`: Go's `yaml.v3` into `any`, then to an Alloy value. Timestamps stay
/// strings (as yaml.v3 keeps them for `any`), tags are dropped, empty input is null.
pub fn from_yaml(s: &str) -> Result<Value, String> {
    let y: serde_norway::Value = serde_norway::from_str(s).map_err(|e| format!("yaml: {e}"))?;
    yaml_value(y)
}

fn yaml_value(y: serde_norway::Value) -> Result<Value, String> {
    use serde_norway::Value as Y;
    Ok(match y {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => Value::Number(n.as_f64().unwrap_or(0.0)),
        Y::String(s) => Value::String(s),
        Y::Sequence(v) => Value::Array(v.into_iter().map(yaml_value).collect::<Result<_, _>>()?),
        Y::Mapping(m) => {
            let mut o = BTreeMap::new();
            for (k, v) in m {
                // yaml.v3 gives a map Alloy cannot use when a key is not a string.
                let Y::String(k) = k else {
                    return Err(format!(
                        "mapping keys must be strings, got {}",
                        serde_norway::to_string(&k).unwrap_or_default().trim_end()
                    ));
                };
                o.insert(k, yaml_value(v)?);
            }
            Value::Object(o)
        }
        Y::Tagged(t) => yaml_value(t.value)?,
    })
}

/// `encoding.to_json`: objects only (Alloy's `jsonEncode only supports map`), keys sorted,
/// and `<`, `>`, `&`, U+2028, U+2029 escaped as Go's `json.Marshal` does.
pub fn to_json(v: &Value) -> Result<String, String> {
    if !matches!(v, Value::Object(_)) {
        return Err("jsonEncode only supports map".into());
    }
    let s = json_value(v)?.to_string();
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    Ok(out)
}

fn json_value(v: &Value) -> Result<serde_json::Value, String> {
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
            serde_json::Value::Array(a.iter().map(json_value).collect::<Result<_, _>>()?)
        }
        Value::Object(o) => serde_json::Value::Object(
            o.iter()
                .map(|(k, v)| Ok((k.clone(), json_value(v)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => return Err(format!("cannot encode {} as JSON", other.type_name())),
    })
}

/// `json_path(json, path)`: every match, as an array (empty when nothing matches). Alloy uses
/// ohler55/ojg, which also takes paths without the leading `$` (`.a`, `a.b`, `[0]`); those are
/// rooted here before the RFC 9535 evaluator runs.
pub fn json_path(json: &str, path: &str) -> Result<Value, String> {
    use jsonpath_rust::JsonPath;
    let doc: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let rooted = if path.starts_with('$') {
        path.to_string()
    } else if let Some(rest) = path.strip_prefix('@') {
        format!("${rest}")
    } else if path.starts_with('.') || path.starts_with('[') {
        format!("${path}")
    } else {
        format!("$.{path}")
    };
    let found = doc.query(&rooted).map_err(|e| e.to_string())?;
    Ok(Value::Array(
        found.into_iter().map(|v| from_json(v.clone())).collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Go's own `encoding/base64` behaviour for the edge cases (offsets as Go reports them).
    #[test]
    fn base64_decode_like_go() {
        let ok = |s: &str| bytes_to_string(base64_decode(s, false).unwrap());
        assert_eq!(ok(""), "");
        assert_eq!(ok("Zm9vYmFy"), "foobar");
        assert_eq!(ok("Zm9vYg=="), "foob");
        assert_eq!(ok("Zm9vYmE="), "fooba");
        assert_eq!(ok("Zm9v\r\nYmFy"), "foobar");
        let err = |s: &str| base64_decode(s, false).unwrap_err();
        assert_eq!(err("Zm9vY"), "illegal base64 data at input byte 4");
        assert_eq!(err("Zm9vYg"), "illegal base64 data at input byte 4");
        assert_eq!(err("Zm9vYg="), "illegal base64 data at input byte 7");
        assert_eq!(err("Zm9v!mFy"), "illegal base64 data at input byte 4");
        assert_eq!(err("Zm9vYg==Zm9v"), "illegal base64 data at input byte 8");
        assert_eq!(err("=Zm9"), "illegal base64 data at input byte 0");
        assert_eq!(
            err("c3RyaW5nMTIzIT8kKiYoKSctPUB-"),
            "illegal base64 data at input byte 27"
        );
        assert_eq!(
            bytes_to_string(base64_decode("c3RyaW5nMTIzIT8kKiYoKSctPUB-", true).unwrap()),
            "string123!?$*&()'-=@~"
        );
    }

    #[test]
    fn query_escape_like_go() {
        assert_eq!(
            query_escape("string123!?$*&()'-=@~"),
            "string123%21%3F%24%2A%26%28%29%27-%3D%40~"
        );
        assert_eq!(query_escape("a b/ü"), "a+b%2F%C3%BC");
        assert_eq!(query_unescape("a+b%2F%C3%BC"), Ok("a b/ü".to_string()));
        assert_eq!(
            query_unescape("%zz"),
            Err("invalid URL escape \"%zz\"".into())
        );
        assert_eq!(
            query_unescape("ab%4"),
            Err("invalid URL escape \"%4\"".into())
        );
    }

    #[test]
    fn to_json_escapes_like_go() {
        let mut o = BTreeMap::new();
        o.insert("b".to_string(), Value::String("<a&b>".into()));
        o.insert("a".to_string(), Value::Number(1.5));
        assert_eq!(
            to_json(&Value::Object(o)).unwrap(),
            r#"{"a":1.5,"b":"\u003ca\u0026b\u003e"}"#
        );
        assert_eq!(
            to_json(&Value::Number(12.0)).unwrap_err(),
            "jsonEncode only supports map"
        );
    }

    proptest::proptest! {
        /// For any string, decoding what Alloy's encoders produce gives it back.
        #[test]
        fn encodings_round_trip(s in "\\PC*") {
            for url in [false, true] {
                let back = base64_decode(&base64_encode(&s, url), url).unwrap();
                proptest::prop_assert_eq!(bytes_to_string(back), s.clone());
            }
            proptest::prop_assert_eq!(query_unescape(&query_escape(&s)).unwrap(), s.clone());
        }
    }
}
