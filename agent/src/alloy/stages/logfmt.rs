//! `stage.logfmt`: a borrowing `key=value key="quoted value"` scanner, so a stage that maps a
//! few keys allocates only the values it keeps (the rest of the line is scanned, not copied),
//! and stops once every mapped key is found and none can occur again.

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::alloy::pipeline::Entry;

/// Calls `f` with every `(key, value)` pair of `s`, in line order (a key may repeat). A value is
/// borrowed unless it is quoted and holds a backslash escape (`\n` is a newline, `\x` is `x`);
/// a key without `=` has the empty value; an unterminated quote runs to the end of the line.
pub fn scan<'a>(s: &'a str, mut f: impl FnMut(&'a str, Cow<'a, str>)) {
    scan_while(s, |k, v, _| {
        f(k, v);
        true
    });
}

/// Whitespace as `char::is_whitespace` says, at byte `i`: its length, 0 when none.
#[inline]
fn space_at(s: &str, i: usize) -> usize {
    match s.as_bytes().get(i) {
        None => 0,
        Some(&x) if x < 0x80 => usize::from(x == b' ' || (b'\t'..=b'\r').contains(&x)),
        Some(_) => s[i..]
            .chars()
            .next()
            .filter(|c| c.is_whitespace())
            .map_or(0, char::len_utf8),
    }
}

/// The byte after the run starting at `i` of chars that are not whitespace (nor `=` when
/// `stop_at_eq`).
#[inline]
fn run_end(s: &str, mut i: usize, stop_at_eq: bool) -> usize {
    let b = s.as_bytes();
    while let Some(&x) = b.get(i) {
        if x < 0x80 {
            if (stop_at_eq && x == b'=') || x == b' ' || (b'\t'..=b'\r').contains(&x) {
                break;
            }
            i += 1;
        } else {
            if space_at(s, i) > 0 {
                break;
            }
            // A multi-byte char: step over its continuation bytes.
            i += 1;
            while b.get(i).is_some_and(|&c| c & 0xC0 == 0x80) {
                i += 1;
            }
        }
    }
    i
}

/// [`scan`], stopping when `f` returns false; `f` also gets the byte offset where the rest of
/// the line starts.
pub fn scan_while<'a>(s: &'a str, mut f: impl FnMut(&'a str, Cow<'a, str>, usize) -> bool) {
    let b = s.as_bytes();
    let mut i = 0;
    loop {
        loop {
            let n = space_at(s, i);
            if n == 0 {
                break;
            }
            i += n;
        }
        let key_start = i;
        i = run_end(s, i, true);
        let key = &s[key_start..i];
        if key.is_empty() {
            // Only a lone `=` gets here (whitespace was skipped): step over it.
            if i >= b.len() {
                return;
            }
            i += 1;
            continue;
        }
        let mut value = Cow::Borrowed("");
        if b.get(i) == Some(&b'=') {
            i += 1;
            if b.get(i) == Some(&b'"') {
                i += 1;
                value = quoted(s, &mut i);
            } else {
                let start = i;
                i = run_end(s, i, false);
                value = Cow::Borrowed(&s[start..i]);
            }
        }
        if !f(key, value, i) {
            return;
        }
    }
}

/// A quoted value starting at `*i` (after the opening quote); leaves `*i` after the closing
/// one (or at the end). Borrowed when it holds no backslash.
fn quoted<'a>(s: &'a str, i: &mut usize) -> Cow<'a, str> {
    let start = *i;
    match memchr::memchr2(b'"', b'\\', &s.as_bytes()[start..]) {
        None => {
            *i = s.len();
            return Cow::Borrowed(&s[start..]);
        }
        Some(n) if s.as_bytes()[start + n] == b'"' => {
            *i = start + n + 1;
            return Cow::Borrowed(&s[start..start + n]);
        }
        Some(_) => {}
    }
    let mut owned = String::new();
    let mut it = s[start..].char_indices();
    while let Some((_, c)) = it.next() {
        match c {
            '\\' => {
                if let Some((_, e)) = it.next() {
                    owned.push(if e == 'n' { '\n' } else { e });
                }
            }
            '"' => break,
            c => owned.push(c),
        }
    }
    // The char after the closing quote (or the end) is where the scan goes on.
    *i = it.next().map_or(s.len(), |(at, _)| start + at);
    Cow::Owned(owned)
}

/// Every pair of `s`; a repeated key keeps its last value.
pub fn logfmt(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    scan(s, |k, v| {
        out.insert(k.to_string(), v.into_owned());
    });
    out
}

/// The logfmt key a mapping entry reads: its own, or the extracted name when empty.
fn key_of((name, key): &(String, String)) -> &str {
    if key.is_empty() {
        name
    } else {
        key
    }
}

/// Sets `name` in `out`, reusing the old value's buffer.
fn set(out: &mut BTreeMap<String, String>, name: &str, v: &str) {
    match out.get_mut(name) {
        Some(slot) => {
            slot.clear();
            slot.push_str(v);
        }
        None => {
            out.insert(name.to_string(), v.to_string());
        }
    }
}

/// `stage.logfmt` on one entry: `mapping` is (extracted name, logfmt key; empty = the name). A
/// key's last value wins, as when Alloy's decoder overwrites it; only mapped values are copied.
pub fn extract(mapping: &[(String, String)], source: Option<&str>, e: &mut Entry) {
    match source {
        None | Some("") => extract_into(mapping, &e.line, &mut e.extracted),
        Some(s) => {
            // The source is itself an extracted value: read it before writing any.
            let Some(src) = e.extracted.get(s) else {
                return;
            };
            let mut found = BTreeMap::new();
            extract_into(mapping, src, &mut found);
            e.extracted.extend(found);
        }
    }
}

/// Writes the mapped keys of `src` into `out`. Once every key has a value the scan stops,
/// unless one of the keys occurs again in the rest of the line (a later pair with that key
/// would win): a pair's key is a substring of the line, so where none occurs, none follows.
fn extract_into(mapping: &[(String, String)], src: &str, out: &mut BTreeMap<String, String>) {
    let all: u64 = match mapping.len() {
        0 => return,
        n @ 1..=63 => (1u64 << n) - 1,
        // Too many keys for the mask: never stop early.
        _ => u64::MAX,
    };
    let mut seen = 0u64;
    scan_while(src, |k, v, rest| {
        let mut hit = false;
        for (j, m) in mapping.iter().enumerate() {
            if key_of(m) == k {
                set(out, &m.0, &v);
                if j < 63 {
                    seen |= 1 << j;
                }
                hit = true;
            }
        }
        if hit && seen == all {
            let rest = &src.as_bytes()[rest..];
            return mapping
                .iter()
                .any(|m| memchr::memmem::find(rest, key_of(m).as_bytes()).is_some());
        }
        true
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The char-by-char parser this module replaced: the reference the scanner must agree with.
    fn reference(s: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let mut it = s.chars().peekable();
        loop {
            while it.peek().is_some_and(|c| c.is_whitespace()) {
                it.next();
            }
            let mut key = String::new();
            while let Some(&c) = it.peek() {
                if c == '=' || c.is_whitespace() {
                    break;
                }
                key.push(c);
                it.next();
            }
            if key.is_empty() {
                if it.next().is_none() {
                    return out;
                }
                continue;
            }
            let mut val = String::new();
            if it.peek() == Some(&'=') {
                it.next();
                if it.peek() == Some(&'"') {
                    it.next();
                    while let Some(c) = it.next() {
                        match c {
                            '\\' => {
                                if let Some(n) = it.next() {
                                    val.push(if n == 'n' { '\n' } else { n });
                                }
                            }
                            '"' => break,
                            c => val.push(c),
                        }
                    }
                } else {
                    while let Some(&c) = it.peek() {
                        if c.is_whitespace() {
                            break;
                        }
                        val.push(c);
                        it.next();
                    }
                }
            }
            out.insert(key, val);
        }
    }

    #[test]
    fn scans_plain_quoted_escaped_and_bare_keys() {
        let mut got = Vec::new();
        scan(r#"a=1 b="x y" c="q\"\n" flag d= =e f="open"#, |k, v| {
            got.push((k.to_string(), v.into_owned()))
        });
        let want: Vec<(String, String)> = [
            ("a", "1"),
            ("b", "x y"),
            ("c", "q\"\n"),
            ("flag", ""),
            ("d", ""),
            ("e", ""),
            ("f", "open"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn extract_keeps_the_last_value_of_a_repeated_key_and_only_mapped_keys() {
        let mut e = Entry::new(Default::default(), 0, "level=info x=1 level=warn");
        let mapping = vec![
            ("lvl".to_string(), "level".to_string()),
            ("level".to_string(), String::new()),
            ("none".to_string(), String::new()),
        ];
        extract(&mapping, None, &mut e);
        let want: BTreeMap<String, String> = [("level", "warn"), ("lvl", "warn")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(e.extracted, want);
    }

    #[test]
    fn a_key_quoted_later_in_the_line_does_not_override_but_a_later_pair_does() {
        let mapping = vec![("level".to_string(), String::new())];
        for (line, want) in [
            (r#"level=info msg="then level=warn" n=1"#, "info"),
            (r#"level=info msg="x" level=warn"#, "warn"),
            (r#"level="a\"b" xlevel=c"#, "a\"b"),
        ] {
            let mut e = Entry::new(Default::default(), 0, line);
            extract(&mapping, None, &mut e);
            assert_eq!(
                e.extracted.get("level").map(String::as_str),
                Some(want),
                "{line}"
            );
        }
    }

    proptest! {
        /// For any text (logfmt-ish alphabet, unicode whitespace and multi-byte chars included),
        /// the borrowing scanner finds what the old char parser found.
        #[test]
        fn scanner_agrees_with_the_reference(s in r#"[a-z=" \\\t\u{a0}é\n]{0,40}"#) {
            prop_assert_eq!(logfmt(&s), reference(&s));
        }

        /// For any text and mapping, extraction (which may stop early) gives the mapped
        /// values of the full reference parse.
        #[test]
        fn extract_agrees_with_the_full_parse(
            s in r#"[ab=" \\\u{a0}é]{0,40}"#,
            keys in prop::collection::vec("a|b|ab|ba", 1..4),
        ) {
            let mapping: Vec<(String, String)> = keys
                .iter()
                .enumerate()
                .map(|(i, k)| (format!("n{i}"), k.clone()))
                .collect();
            let full = reference(&s);
            let want: BTreeMap<String, String> = mapping
                .iter()
                .filter_map(|(n, k)| full.get(k).map(|v| (n.clone(), v.clone())))
                .collect();
            let mut e = Entry::new(Default::default(), 0, s.as_str());
            extract(&mapping, None, &mut e);
            prop_assert_eq!(e.extracted, want);
        }
    }
}
