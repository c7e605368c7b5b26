//! `stage.logfmt`: a borrowing `key=value key="quoted value"` scanner, so a stage that maps a
//! few keys allocates only the values it keeps (the rest of the line is scanned, not copied).

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::alloy::pipeline::Entry;

/// Calls `f` with every `(key, value)` pair of `s`, in line order (a key may repeat). A value is
/// borrowed unless it is quoted and holds a backslash escape (`\n` is a newline, `\x` is `x`);
/// a key without `=` has the empty value; an unterminated quote runs to the end of the line.
pub fn scan<'a>(s: &'a str, mut f: impl FnMut(&'a str, Cow<'a, str>)) {
    let b = s.as_bytes();
    // The char at byte `i` and its length; ASCII without decoding.
    let next = |i: usize| -> Option<(char, usize)> {
        let &x = b.get(i)?;
        if x < 0x80 {
            Some((char::from(x), 1))
        } else {
            s[i..].chars().next().map(|c| (c, c.len_utf8()))
        }
    };
    let mut i = 0;
    loop {
        while let Some((_, n)) = next(i).filter(|(c, _)| c.is_whitespace()) {
            i += n;
        }
        let key_start = i;
        while let Some((_, n)) = next(i).filter(|&(c, _)| c != '=' && !c.is_whitespace()) {
            i += n;
        }
        let key = &s[key_start..i];
        if key.is_empty() {
            // Only a lone `=` gets here (whitespace was skipped): step over it.
            match next(i) {
                None => return,
                Some((_, n)) => {
                    i += n;
                    continue;
                }
            }
        }
        let mut value = Cow::Borrowed("");
        if b.get(i) == Some(&b'=') {
            i += 1;
            if b.get(i) == Some(&b'"') {
                i += 1;
                let start = i;
                let mut end = s.len();
                let mut owned: Option<String> = None;
                while let Some((c, n)) = next(i) {
                    i += n;
                    match c {
                        '\\' => {
                            let o = owned.get_or_insert_with(|| s[start..i - 1].to_string());
                            if let Some((e, n)) = next(i) {
                                i += n;
                                o.push(if e == 'n' { '\n' } else { e });
                            }
                        }
                        '"' => {
                            end = i - 1;
                            break;
                        }
                        c => {
                            if let Some(o) = owned.as_mut() {
                                o.push(c);
                            }
                        }
                    }
                }
                value = match owned {
                    Some(o) => Cow::Owned(o),
                    None => Cow::Borrowed(&s[start..end]),
                };
            } else {
                let start = i;
                while let Some((_, n)) = next(i).filter(|(c, _)| !c.is_whitespace()) {
                    i += n;
                }
                value = Cow::Borrowed(&s[start..i]);
            }
        }
        f(key, value);
    }
}

/// Every pair of `s`; a repeated key keeps its last value.
pub fn logfmt(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    scan(s, |k, v| {
        out.insert(k.to_string(), v.into_owned());
    });
    out
}

/// `stage.logfmt` on one entry: `mapping` is (extracted name, logfmt key; empty = the name). A
/// key's last value wins, as when Alloy's decoder overwrites it, so the whole source is scanned,
/// but only mapped values are copied.
pub fn extract(mapping: &[(String, String)], source: Option<&str>, e: &mut Entry) {
    let src = match source {
        None | Some("") => Some(e.line.as_str()),
        Some(s) => e.extracted.get(s).map(String::as_str),
    };
    let Some(src) = src else { return };
    let mut found: Vec<Option<String>> = vec![None; mapping.len()];
    scan(src, |k, v| {
        for (slot, (name, key)) in found.iter_mut().zip(mapping) {
            let key = if key.is_empty() { name } else { key };
            if key == k {
                *slot = Some(v.to_string());
            }
        }
    });
    for (v, (name, _)) in found.into_iter().zip(mapping) {
        if let Some(v) = v {
            match e.extracted.get_mut(name) {
                Some(slot) => *slot = v,
                None => {
                    e.extracted.insert(name.clone(), v);
                }
            }
        }
    }
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

    proptest! {
        /// For any text (logfmt-ish alphabet, unicode whitespace and multi-byte chars included),
        /// the borrowing scanner finds what the old char parser found.
        #[test]
        fn scanner_agrees_with_the_reference(s in r#"[a-z=" \\\t\u{a0}é\n]{0,40}"#) {
            prop_assert_eq!(logfmt(&s), reference(&s));
        }
    }
}
