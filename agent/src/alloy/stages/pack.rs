//! `stage.pack`: moves the named labels into the line as a JSON object (labels sorted by
//! name, then `_entry` with the original line), as Alloy's `Packed` value is written, so
//! LogQL's `| unpack` restores them.

use super::super::pipeline::Entry;

/// Packs `labels` (those the entry has) into its line. With `ingest_timestamp` the entry
/// takes the time it was packed (`now`, Unix ns), as Alloy does by default.
pub fn pack(labels: &[String], ingest_timestamp: bool, e: &mut Entry, now: i64) {
    let mut found: Vec<(String, String)> = labels
        .iter()
        .filter_map(|l| e.labels.remove(l).map(|v| (l.clone(), v)))
        .collect();
    found.sort();
    found.dedup_by(|a, b| a.0 == b.0);
    let mut out = String::with_capacity(e.line.len() + 32);
    out.push('{');
    for (k, v) in &found {
        push_json_str(&mut out, k);
        out.push(':');
        push_json_str(&mut out, v);
        out.push(',');
    }
    push_json_str(&mut out, "_entry");
    out.push(':');
    push_json_str(&mut out, &e.line);
    out.push('}');
    e.line = out;
    if ingest_timestamp {
        e.ts = now;
    }
}

/// A JSON string as Go's encoder writes it: HTML-safe (`<`, `>`, `&` and the line/paragraph
/// separators escaped), so packed lines match Alloy's byte for byte.
fn push_json_str(out: &mut String, s: &str) {
    let quoted = serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    for c in quoted.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_sorted_labels_and_the_line() {
        let mut e = Entry {
            line: r#"{"msg":"a <b> & \"c\""}"#.into(),
            ts: 5,
            ..Default::default()
        };
        e.labels.insert("pod".into(), "web-1".into());
        e.labels.insert("container".into(), "app".into());
        e.labels.insert("namespace".into(), "prod".into());
        pack(
            &["pod".into(), "container".into(), "missing".into()],
            false,
            &mut e,
            9,
        );
        assert_eq!(
            e.line,
            r#"{"container":"app","pod":"web-1","_entry":"{\"msg\":\"a \u003cb\u003e \u0026 \\\"c\\\"\"}"}"#
        );
        assert_eq!(e.labels.len(), 1);
        assert_eq!(e.ts, 5);
        let mut e = Entry {
            line: "plain".into(),
            ..Default::default()
        };
        pack(&[], true, &mut e, 9);
        assert_eq!(e.line, r#"{"_entry":"plain"}"#);
        assert_eq!(e.ts, 9);
    }
}
