//! A JSON walker that accepts, refuses and reports exactly what Loki's `json` and `unpack`
//! parsers do. Loki reads lines with the lenient `buger/jsonparser` (values are found by
//! scanning for their end, numbers are not checked, trailing data after the object is
//! ignored) and reports that library's error text in `__error_details__`.

/// jsonparser's errors, worded as it words them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalkError {
    UnknownValueType,
    MalformedJson,
    MalformedString,
    MalformedArray,
    MalformedObject,
    MalformedStringEscape,
}

impl WalkError {
    pub fn message(self) -> &'static str {
        match self {
            WalkError::UnknownValueType => "Unknown value type",
            WalkError::MalformedJson => "Malformed JSON error",
            WalkError::MalformedString => "Value is string, but can't find closing '\"' symbol",
            WalkError::MalformedArray => "Value is array, but can't find closing ']' symbol",
            WalkError::MalformedObject => {
                "Value looks like object, but can't find closing '}' symbol"
            }
            WalkError::MalformedStringEscape => {
                "Encountered an invalid escape sequence in a string"
            }
        }
    }
}

/// The kind of a value found by [`object_each`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    Number,
    Object,
    Array,
    Boolean,
    Null,
}

/// Offset of the next non-blank byte.
fn next_token(d: &[u8]) -> Option<usize> {
    d.iter()
        .position(|c| !matches!(c, b' ' | b'\n' | b'\r' | b'\t'))
}

/// End of a string body (after its closing quote) and whether it holds a backslash.
fn string_end(d: &[u8]) -> Option<(usize, bool)> {
    let mut escaped = false;
    for (i, &c) in d.iter().enumerate() {
        if c == b'"' {
            if !escaped {
                return Some((i + 1, false));
            }
            // An even run of backslashes before the quote leaves it unescaped.
            let run = d[..i].iter().rev().take_while(|&&b| b == b'\\').count();
            if run % 2 == 0 {
                return Some((i + 1, true));
            }
        } else if c == b'\\' {
            escaped = true;
        }
    }
    None
}

/// End of an array or object: brackets counted, strings skipped, nothing else checked.
fn block_end(d: &[u8], open: u8, close: u8) -> Option<usize> {
    let mut level = 0usize;
    let mut i = 0;
    while i < d.len() {
        match d[i] {
            b'"' => i += string_end(&d[i + 1..])?.0,
            c if c == open => level += 1,
            c if c == close => {
                level = level.checked_sub(1)?;
                if level == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The next value in `d`: its bytes (a string without quotes), kind, and end offset.
fn get(d: &[u8]) -> Result<(&[u8], Kind, usize), WalkError> {
    let start = next_token(d).ok_or(WalkError::MalformedJson)?;
    match d[start] {
        b'"' => {
            let (e, _) = string_end(&d[start + 1..]).ok_or(WalkError::MalformedString)?;
            let end = start + 1 + e;
            Ok((&d[start + 1..end - 1], Kind::String, end))
        }
        b'[' => {
            let e = block_end(&d[start..], b'[', b']').ok_or(WalkError::MalformedArray)?;
            Ok((&d[start..start + e], Kind::Array, start + e))
        }
        b'{' => {
            let e = block_end(&d[start..], b'{', b'}').ok_or(WalkError::MalformedObject)?;
            Ok((&d[start..start + e], Kind::Object, start + e))
        }
        c => {
            let len = d[start..]
                .iter()
                .position(|c| matches!(c, b' ' | b'\n' | b'\r' | b'\t' | b',' | b'}' | b']'))
                .unwrap_or(d.len() - start);
            let v = &d[start..start + len];
            let kind = match c {
                b't' | b'f' if v == b"true" || v == b"false" => Kind::Boolean,
                b'n' | b'u' if v == b"null" => Kind::Null,
                b'0'..=b'9' | b'-' => Kind::Number,
                _ => return Err(WalkError::UnknownValueType),
            };
            Ok((if kind == Kind::Null { &[] } else { v }, kind, start + len))
        }
    }
}

/// Calls `f(key, value, kind)` for each member of the object at the start of `d`, in
/// order, stopping at the first error (members before it have been seen).
pub fn object_each<F>(d: &[u8], f: &mut F) -> Result<(), WalkError>
where
    F: FnMut(&str, &[u8], Kind) -> Result<(), WalkError>,
{
    let mut i = next_token(d).ok_or(WalkError::MalformedObject)?;
    if d[i] != b'{' {
        return Err(WalkError::MalformedObject);
    }
    i += 1;
    i += next_token(&d[i..]).ok_or(WalkError::MalformedJson)?;
    loop {
        match d[i] {
            b'"' => i += 1,
            b'}' => return Ok(()),
            _ => return Err(WalkError::MalformedObject),
        }
        let (e, escaped) = string_end(&d[i..]).ok_or(WalkError::MalformedJson)?;
        let raw_key = &d[i..i + e - 1];
        i += e;
        let key = if escaped {
            unescape(raw_key).ok_or(WalkError::MalformedStringEscape)?
        } else {
            String::from_utf8_lossy(raw_key).into_owned()
        };
        i += next_token(&d[i..]).ok_or(WalkError::MalformedJson)?;
        if d[i] != b':' {
            return Err(WalkError::MalformedJson);
        }
        i += 1;
        let (value, kind, end) = get(&d[i..])?;
        f(&key, value, kind)?;
        i += end;
        i += next_token(&d[i..]).ok_or(WalkError::MalformedArray)?;
        match d[i] {
            b'}' => return Ok(()),
            b',' => i += 1,
            _ => return Err(WalkError::MalformedObject),
        }
        i += next_token(&d[i..]).ok_or(WalkError::MalformedArray)?;
    }
}

/// The `index`th element of the array at the start of `d`, jsonparser's `ArrayEach` way.
fn array_nth(d: &[u8], index: usize) -> Result<Option<(&[u8], Kind)>, WalkError> {
    let mut i = next_token(d).ok_or(WalkError::MalformedJson)?;
    if d[i] != b'[' {
        return Ok(None);
    }
    i += 1;
    i += next_token(&d[i..]).ok_or(WalkError::MalformedJson)?;
    if d[i] == b']' {
        return Ok(None);
    }
    let mut n = 0;
    loop {
        let (value, kind, end) = get(&d[i..])?;
        if n == index {
            return Ok(Some((value, kind)));
        }
        n += 1;
        i += end;
        i += next_token(&d[i..]).ok_or(WalkError::MalformedArray)?;
        match d[i] {
            b']' => return Ok(None),
            b',' => i += 1,
            _ => return Err(WalkError::MalformedArray),
        }
    }
}

/// One step of a `json` expression path.
pub enum Step<'p> {
    Key(&'p str),
    Index(usize),
}

/// The value at `path`, as Loki's expression parser finds it: the first member with a
/// key, `None` when the path is not there (including when the JSON breaks before it), an
/// error only when the value found cannot be read.
pub fn lookup<'d>(d: &'d [u8], path: &[Step<'_>]) -> Result<Option<(&'d [u8], Kind)>, WalkError> {
    let Some((step, rest)) = path.split_first() else {
        return Ok(None);
    };
    let found = match step {
        Step::Key(k) => member(d, k)?,
        Step::Index(n) => array_nth(d, *n).unwrap_or(None),
    };
    match (found, rest.is_empty()) {
        (None, _) => Ok(None),
        (Some(v), true) => Ok(Some(v)),
        (Some((v, Kind::Object | Kind::Array)), false) => lookup(v, rest),
        (Some(_), false) => Ok(None),
    }
}

/// The first member named `key` of the object at the start of `d`.
fn member<'d>(d: &'d [u8], key: &str) -> Result<Option<(&'d [u8], Kind)>, WalkError> {
    let Some(mut i) = next_token(d) else {
        return Ok(None);
    };
    if d[i] != b'{' {
        return Ok(None);
    }
    i += 1;
    loop {
        let Some(off) = next_token(&d[i..]) else {
            return Ok(None);
        };
        i += off;
        if d[i] != b'"' {
            return Ok(None);
        }
        i += 1;
        let Some((e, escaped)) = string_end(&d[i..]) else {
            return Ok(None);
        };
        let raw_key = &d[i..i + e - 1];
        i += e;
        let name = if escaped {
            unescape(raw_key)
        } else {
            Some(String::from_utf8_lossy(raw_key).into_owned())
        };
        let Some(off) = next_token(&d[i..]) else {
            return Ok(None);
        };
        i += off;
        if d[i] != b':' {
            return Ok(None);
        }
        i += 1;
        if name.as_deref() == Some(key) {
            let (value, kind, _) = get(&d[i..])?;
            return Ok(Some((value, kind)));
        }
        let Ok((_, _, end)) = get(&d[i..]) else {
            return Ok(None);
        };
        i += end;
        let Some(off) = next_token(&d[i..]) else {
            return Ok(None);
        };
        i += off;
        if d[i] != b',' {
            return Ok(None);
        }
        i += 1;
    }
}

fn hex4(d: &[u8]) -> Option<u32> {
    let h = std::str::from_utf8(d.get(..4)?).ok()?;
    if !h.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(h, 16).ok()
}

/// jsonparser's `Unescape`: `None` for an escape it refuses. A surrogate must be followed
/// by a second `\u` escape; a code point that is still invalid becomes U+FFFD.
pub fn unescape(s: &[u8]) -> Option<String> {
    if !s.contains(&b'\\') {
        return Some(String::from_utf8_lossy(s).into_owned());
    }
    let mut out: Vec<u8> = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] != b'\\' {
            out.push(s[i]);
            i += 1;
            continue;
        }
        let simple = match s.get(i + 1)? {
            b'"' => Some(b'"'),
            b'\\' => Some(b'\\'),
            b'/' => Some(b'/'),
            b'b' => Some(0x08),
            b'f' => Some(0x0c),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'u' => None,
            _ => return None,
        };
        if let Some(b) = simple {
            out.push(b);
            i += 2;
            continue;
        }
        let r = hex4(s.get(i + 2..)?)?;
        let (cp, used) = if !(0xD800..=0xDFFF).contains(&r) {
            (r, 6)
        } else {
            if s.get(i + 6) != Some(&b'\\') || s.get(i + 7) != Some(&b'u') {
                return None;
            }
            let r2 = hex4(s.get(i + 8..)?)?;
            if r2 < 0xDC00 {
                return None;
            }
            (
                0x10000 + ((r - 0xD800) << 10) + (r2.wrapping_sub(0xDC00)),
                12,
            )
        };
        let c = char::from_u32(cp).unwrap_or('\u{fffd}');
        let mut buf = [0u8; 4];
        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        i += used;
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// Loki's label value for a JSON string: empty when it does not unescape or holds U+FFFD.
pub fn string_value(raw: &[u8]) -> String {
    match unescape(raw) {
        Some(s) if !s.contains('\u{fffd}') => s,
        _ => String::new(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    fn walk(line: &str) -> (Vec<(String, String, Kind)>, Option<&'static str>) {
        let mut seen = Vec::new();
        let r = object_each(line.as_bytes(), &mut |k, v, kind| {
            seen.push((k.to_string(), String::from_utf8_lossy(v).into_owned(), kind));
            Ok(())
        });
        (seen, r.err().map(WalkError::message))
    }

    #[test]
    fn lenient_like_jsonparser() {
        // Numbers are not checked, a trailing comma and trailing data are fine.
        let (seen, err) = walk(r#"{"a": 01, "b": "x\"y", "c": {"d": [1, }, } trailing"#);
        assert_eq!(err, None);
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[0], ("a".into(), "01".into(), Kind::Number));
        assert_eq!(seen[1], ("b".into(), r#"x\"y"#.into(), Kind::String));
        assert_eq!(seen[2].2, Kind::Object);
    }

    #[test]
    fn errors_are_worded_as_jsonparser() {
        let cases = [
            (
                "not json",
                "Value looks like object, but can't find closing '}' symbol",
            ),
            (
                "",
                "Value looks like object, but can't find closing '}' symbol",
            ),
            ("{", "Malformed JSON error"),
            (r#"{"a" 1}"#, "Malformed JSON error"),
            (
                r#"{"a": "b"#,
                "Value is string, but can't find closing '\"' symbol",
            ),
            (
                r#"{"a": [1, 2"#,
                "Value is array, but can't find closing ']' symbol",
            ),
            (
                r#"{"a": {"b": 1"#,
                "Value looks like object, but can't find closing '}' symbol",
            ),
            (r#"{"a": nope}"#, "Unknown value type"),
            (
                r#"{"a": 1"#,
                "Value is array, but can't find closing ']' symbol",
            ),
            (
                r#"{"a": 1 "b": 2}"#,
                "Value looks like object, but can't find closing '}' symbol",
            ),
            (
                r#"{"a\q": 1}"#,
                "Encountered an invalid escape sequence in a string",
            ),
        ];
        for (line, want) in cases {
            assert_eq!(walk(line).1, Some(want), "{line}");
        }
        // Members before the error were seen.
        let (seen, err) = walk(r#"{"a": 1, "b": nope}"#);
        assert_eq!(seen.len(), 1);
        assert_eq!(err, Some("Unknown value type"));
    }

    #[test]
    fn lookup_like_each_key() {
        let d = br#"{"a": {"b": [10, {"c": "x\u00e9"}]}, "k": 1, "k": 2, "bad": "open"#;
        let got = |p: &[Step<'_>]| {
            lookup(d, p).map(|o| o.map(|(v, k)| (String::from_utf8_lossy(v).into_owned(), k)))
        };
        assert_eq!(
            got(&[
                Step::Key("a"),
                Step::Key("b"),
                Step::Index(1),
                Step::Key("c")
            ])
            .unwrap(),
            Some((r"x\u00e9".to_string(), Kind::String))
        );
        assert_eq!(
            got(&[Step::Key("a"), Step::Key("b"), Step::Index(0)]).unwrap(),
            Some(("10".to_string(), Kind::Number))
        );
        // The first member with the key wins.
        assert_eq!(
            got(&[Step::Key("k")]).unwrap(),
            Some(("1".to_string(), Kind::Number))
        );
        assert_eq!(got(&[Step::Key("missing")]).unwrap(), None);
        // Only reading the value found is an error.
        assert_eq!(
            got(&[Step::Key("bad")]).unwrap_err(),
            WalkError::MalformedString
        );
        assert_eq!(lookup(b"{broken", &[Step::Key("a")]).unwrap(), None);
    }

    #[test]
    fn unescapes_like_jsonparser() {
        assert_eq!(
            unescape(br"a\nb\u00e9\ud83d\ude00").unwrap(),
            "a\nb\u{e9}\u{1f600}"
        );
        assert_eq!(unescape(br"\ud83d"), None);
        assert_eq!(unescape(br"\x"), None);
        assert_eq!(string_value(br"\q"), "");
        assert_eq!(string_value(br"\ufffd"), "");
    }
}
