//! Loki's label strings: `{a="b", c="d\"e"}`.
//!
//! Parsing follows Prometheus' `ParseMetric` as Loki calls it (`ParseLabels`): names are
//! `[a-zA-Z_][a-zA-Z0-9_]*`, values are Go string literals (double- or single-quoted
//! with escapes, or back-quoted raw), a trailing comma is allowed, an optional metric
//! name before `{` becomes `__name__`. The result is sorted by name and labels with an
//! empty value are removed, as Loki does. Duplicate names are kept so that validation
//! can report them the way Loki does.
//!
//! Printing is Loki's canonical form: sorted, `, `-separated, values quoted like Go's
//! `strconv.Quote`.

use std::fmt;

use crate::WireError;

/// A sorted set of label pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LabelSet(Vec<(String, String)>);

impl LabelSet {
    /// Builds a set from pairs: sorts by name (stable) and drops empty values.
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let mut v: Vec<(String, String)> = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .filter(|(_, v)| !v.is_empty())
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        LabelSet(v)
    }

    /// Parses a label string such as `{a="b", c="d"}`.
    pub fn parse(input: &str) -> Result<Self, WireError> {
        Parser {
            src: input.as_bytes(),
            text: input,
            pos: 0,
        }
        .parse()
    }

    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Sets `name` to `value` (removing it when `value` is empty), keeping the order.
    pub fn set(&mut self, name: &str, value: &str) {
        self.0.retain(|(k, _)| k != name);
        if !value.is_empty() {
            let at = self.0.partition_point(|(k, _)| k.as_str() < name);
            self.0.insert(at, (name.to_string(), value.to_string()));
        }
    }

    /// Removes `name`.
    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(k, _)| k != name);
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    /// The first name that occurs twice, if any.
    pub fn duplicate_name(&self) -> Option<&str> {
        self.0
            .windows(2)
            .find(|w| w[0].0 == w[1].0)
            .map(|w| w[0].0.as_str())
    }
}

impl fmt::Display for LabelSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(k)?;
            f.write_str("=")?;
            f.write_str(&go_quote(v))?;
        }
        f.write_str("}")
    }
}

/// Whether `name` is a valid (legacy) Prometheus label name.
pub fn is_valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'_' => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Quotes `s` like Go's `strconv.Quote`: printable characters stay, the rest is escaped.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if !is_go_printable(c) => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// An approximation of Go's `unicode.IsPrint` for non-ASCII characters: controls,
/// non-ASCII spaces and the common invisible format characters are not printable.
fn is_go_printable(c: char) -> bool {
    if c.is_ascii() {
        return !c.is_ascii_control();
    }
    !(c.is_control()
        || c.is_whitespace()
        || matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{feff}'))
}

/// Reads one Go string literal (`"..."`, `'...'` or `` `...` ``) at the start of `s`.
/// Returns the decoded value and the number of bytes consumed.
pub fn unquote_prefix(s: &str) -> Result<(String, usize), String> {
    let bytes = s.as_bytes();
    let quote = match bytes.first() {
        Some(q @ (b'"' | b'\'' | b'`')) => *q,
        _ => return Err("expected a quoted string".into()),
    };
    if quote == b'`' {
        return match s[1..].find('`') {
            Some(end) => Ok((s[1..1 + end].to_string(), end + 2)),
            None => Err("unterminated raw string".into()),
        };
    }
    let mut out = String::new();
    let mut chars = s[1..].char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            c if c as u32 == u32::from(quote) => return Ok((out, i + 2)),
            '\n' => return Err("unterminated quoted string".into()),
            '\\' => {
                let (_, e) = chars.next().ok_or("unterminated quoted string")?;
                match e {
                    'a' => out.push('\u{7}'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'v' => out.push('\u{b}'),
                    '\\' => out.push('\\'),
                    '"' if quote == b'"' => out.push('"'),
                    '\'' if quote == b'\'' => out.push('\''),
                    'x' | 'u' | 'U' => {
                        let n = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let mut v = 0u32;
                        for _ in 0..n {
                            let (_, h) = chars.next().ok_or("unterminated quoted string")?;
                            v = v * 16 + h.to_digit(16).ok_or("invalid escape sequence")?;
                        }
                        if e == 'x' {
                            // \xNN is a byte; only ASCII bytes make sense in a Rust string.
                            if v > 0x7f {
                                return Err("invalid escape sequence: non-UTF-8 byte".into());
                            }
                        }
                        out.push(
                            char::from_u32(v)
                                .ok_or("invalid Unicode code point in escape sequence")?,
                        );
                    }
                    '0'..='7' => {
                        let mut v = e.to_digit(8).unwrap_or(0);
                        for _ in 0..2 {
                            let (_, o) = chars.next().ok_or("unterminated quoted string")?;
                            v = v * 8 + o.to_digit(8).ok_or("invalid escape sequence")?;
                        }
                        if v > 0x7f {
                            return Err("invalid escape sequence: non-UTF-8 byte".into());
                        }
                        out.push(char::from_u32(v).ok_or("invalid escape sequence")?);
                    }
                    _ => return Err("unknown escape sequence".into()),
                }
            }
            c => out.push(c),
        }
    }
    Err("unterminated quoted string".into())
}

struct Parser<'a> {
    src: &'a [u8],
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn err(&self, msg: impl fmt::Display) -> WireError {
        // Prometheus reports `line:col: parse error: ...`, col 1-based.
        WireError::Labels(format!("1:{}: parse error: {msg}", self.pos + 1))
    }

    fn skip_ws(&mut self) {
        while self.pos < self.src.len()
            && matches!(self.src[self.pos], b' ' | b'\t' | b'\n' | b'\r')
        {
            self.pos += 1;
        }
    }

    fn ident(&mut self) -> Option<&str> {
        let start = self.pos;
        while self.pos < self.src.len() {
            let b = self.src[self.pos];
            let ok = b.is_ascii_alphabetic()
                || b == b'_'
                || (self.pos > start && (b.is_ascii_digit() || b == b':'));
            if !ok {
                break;
            }
            self.pos += 1;
        }
        (self.pos > start).then(|| &self.text[start..self.pos])
    }

    fn parse(mut self) -> Result<LabelSet, WireError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        self.skip_ws();
        if let Some(name) = self.ident() {
            pairs.push(("__name__".into(), name.to_string()));
            self.skip_ws();
            if self.pos == self.src.len() {
                return Ok(LabelSet::from_pairs(pairs));
            }
        }
        if self.src.get(self.pos) != Some(&b'{') {
            return Err(self.err(format!("unexpected {}, expected \"{{\"", self.describe())));
        }
        self.pos += 1;
        loop {
            self.skip_ws();
            if self.src.get(self.pos) == Some(&b'}') {
                self.pos += 1;
                break;
            }
            let name = match self.ident() {
                Some(n) if !n.contains(':') => n.to_string(),
                _ => {
                    return Err(self.err(format!(
                        "unexpected {} in label matching, expected label",
                        self.describe()
                    )))
                }
            };
            self.skip_ws();
            if self.src.get(self.pos) != Some(&b'=') || self.src.get(self.pos + 1) == Some(&b'~') {
                return Err(self.err(format!(
                    "unexpected {} in label matching, expected \"=\"",
                    self.describe()
                )));
            }
            self.pos += 1;
            self.skip_ws();
            let (value, used) = unquote_prefix(&self.text[self.pos..]).map_err(|e| self.err(e))?;
            self.pos += used;
            pairs.push((name, value));
            self.skip_ws();
            match self.src.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    break;
                }
                _ => {
                    return Err(self.err(format!(
                        "unexpected {} in label matching, expected \",\" or \"}}\"",
                        self.describe()
                    )))
                }
            }
        }
        self.skip_ws();
        if self.pos != self.src.len() {
            return Err(self.err(format!("unexpected {}", self.describe())));
        }
        Ok(LabelSet::from_pairs(pairs))
    }

    fn describe(&self) -> String {
        match self.text[self.pos..].chars().next() {
            None => "end of input".into(),
            Some(c) => format!("character {c:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_sorts() {
        let l = LabelSet::parse(r#"{job="x", app="a\"b", empty=""}"#).unwrap();
        assert_eq!(l.to_string(), r#"{app="a\"b", job="x"}"#);
        assert_eq!(l.get("app"), Some("a\"b"));
        assert_eq!(l.get("empty"), None);
    }

    #[test]
    fn accepts_promql_forms() {
        assert_eq!(LabelSet::parse("{}").unwrap().len(), 0);
        assert_eq!(
            LabelSet::parse(" { a = 'b' , } ").unwrap().to_string(),
            r#"{a="b"}"#
        );
        assert_eq!(
            LabelSet::parse("{a=`x\\y`}").unwrap().get("a"),
            Some("x\\y")
        );
        assert_eq!(
            LabelSet::parse(r#"up{a="b"}"#).unwrap().to_string(),
            r#"{__name__="up", a="b"}"#
        );
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "{",
            "{a}",
            r#"{a="b"#,
            r#"{a.b="c"}"#,
            r#"{a-b="c"}"#,
            r#"{1a="c"}"#,
            r#"{a="b" c="d"}"#,
            r#"{a=~"b"}"#,
            r#"{a="\q"}"#,
            r#"{a="b"} x"#,
        ] {
            assert!(LabelSet::parse(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn duplicates_are_kept_for_validation() {
        let l = LabelSet::parse(r#"{a="1", b="2", a="3"}"#).unwrap();
        assert_eq!(l.duplicate_name(), Some("a"));
    }

    #[test]
    fn go_quote_escapes() {
        assert_eq!(
            go_quote("a\"b\\c\n\u{1}\u{a0}é"),
            r#""a\"b\\c\n\x01\u00a0é""#
        );
    }

    #[test]
    fn set_and_remove_keep_order() {
        let mut l = LabelSet::from_pairs([("b", "1"), ("d", "2")]);
        l.set("c", "x");
        l.set("a", "y");
        assert_eq!(l.to_string(), r#"{a="y", b="1", c="x", d="2"}"#);
        l.set("c", "");
        l.remove("a");
        assert_eq!(l.to_string(), r#"{b="1", d="2"}"#);
    }

    proptest! {
        #[test]
        fn print_then_parse_round_trips(
            pairs in proptest::collection::btree_map("[a-zA-Z_][a-zA-Z0-9_]{0,8}", "\\PC{1,12}", 0..6)
        ) {
            let l = LabelSet::from_pairs(pairs.clone());
            let back = LabelSet::parse(&l.to_string()).unwrap();
            prop_assert_eq!(&back, &l);
            prop_assert_eq!(back.len(), pairs.len());
        }

        #[test]
        fn any_unicode_value_round_trips(v in "(?s).{1,16}") {
            let l = LabelSet::from_pairs([("k", v.clone())]);
            let back = LabelSet::parse(&l.to_string()).unwrap();
            prop_assert_eq!(back.get("k"), Some(v.as_str()));
        }

        #[test]
        fn garbage_never_panics(s in "(?s).{0,40}") {
            let _ = LabelSet::parse(&s);
        }
    }
}
