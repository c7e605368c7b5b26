//! The marker every generated entry carries, `run=<id> src=<source-id> seq=<n>`, and its parser.
//!
//! A source id is `<cluster>/<namespace>/<pod>/<container>/<stream>`; all parts are generated from
//! `[a-z0-9-]`, so the marker never needs quoting and survives JSON and HTML escaping. The parser
//! finds the marker anywhere in a line (plain and logfmt lines start with it, JSON lines carry it
//! in a `"marker"` field), so it does not depend on how the agent or Loki frames the line.

use std::fmt;

/// One parsed marker, borrowing from the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker<'a> {
    pub run: &'a str,
    pub src: &'a str,
    pub seq: u64,
}

impl fmt::Display for Marker<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "run={} src={} seq={}", self.run, self.src, self.seq)
    }
}

/// A source: one stream of one container of one pod in one cluster.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceId {
    pub cluster: String,
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub stream: String,
}

impl SourceId {
    /// The compact id used in markers and reports.
    pub fn id(&self) -> String {
        format!(
            "{}/{}/{}/{}/{}",
            self.cluster, self.namespace, self.pod, self.container, self.stream
        )
    }

    /// Parses `cluster/namespace/pod/container/stream`.
    pub fn parse(id: &str) -> Option<SourceId> {
        let mut parts = id.split('/');
        let s = SourceId {
            cluster: parts.next()?.to_owned(),
            namespace: parts.next()?.to_owned(),
            pod: parts.next()?.to_owned(),
            container: parts.next()?.to_owned(),
            stream: parts.next()?.to_owned(),
        };
        if parts.next().is_some() {
            return None;
        }
        Some(s)
    }
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'/' || b == b'_' || b == b'.'
}

/// Finds and parses the first well-formed marker in `line`.
pub fn parse(line: &str) -> Option<Marker<'_>> {
    let bytes = line.as_bytes();
    let mut from = 0;
    while let Some(pos) = line[from..].find("run=") {
        let start = from + pos;
        from = start + 4;
        // Must start a token: beginning of line or after a separator.
        if start > 0 && is_token_byte(bytes[start - 1]) {
            continue;
        }
        if let Some(m) = parse_at(&line[start..]) {
            return Some(m);
        }
    }
    None
}

fn take_token(s: &str) -> (&str, &str) {
    let end = s
        .as_bytes()
        .iter()
        .position(|b| !is_token_byte(*b))
        .unwrap_or(s.len());
    s.split_at(end)
}

fn parse_at(s: &str) -> Option<Marker<'_>> {
    let s = s.strip_prefix("run=")?;
    let (run, rest) = take_token(s);
    let rest = rest.strip_prefix(" src=")?;
    let (src, rest) = take_token(rest);
    let rest = rest.strip_prefix(" seq=")?;
    let digits = rest
        .as_bytes()
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(rest.len());
    if run.is_empty() || src.is_empty() || digits == 0 {
        return None;
    }
    let seq = rest[..digits].parse().ok()?;
    Some(Marker { run, src, seq })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_marker_at_start_in_json_and_after_truncation() {
        let cases = [
            (
                "run=r1 src=ops/ns/p/c/stdout seq=42 level=info msg=x",
                Some(("r1", "ops/ns/p/c/stdout", 42)),
            ),
            (
                r#"{"marker":"run=r1 src=a/b/c/d/stderr seq=7","level":"warn"}"#,
                Some(("r1", "a/b/c/d/stderr", 7)),
            ),
            (
                "run=r1 src=a/b/c/d/stdout seq=9",
                Some(("r1", "a/b/c/d/stdout", 9)),
            ),
            ("xrun=r1 src=a/b/c/d/e seq=1", None),
            ("run=r1 src=a/b/c/d/e seq=", None),
            ("run=r1 seq=3", None),
            ("no marker", None),
            (
                "run= src=a seq=1 then run=r2 src=s seq=5",
                Some(("r2", "s", 5)),
            ),
        ];
        for (line, want) in cases {
            let got = parse(line).map(|m| (m.run, m.src, m.seq));
            assert_eq!(got, want, "line {line:?}");
        }
    }

    #[test]
    fn display_round_trips() {
        let m = Marker {
            run: "abc",
            src: "ops/n/p/c/stdout",
            seq: 18_446_744_073_709_551_615,
        };
        let s = m.to_string();
        assert_eq!(parse(&s), Some(m));
    }

    #[test]
    fn source_id_round_trips_and_rejects_extra_parts() {
        let s = SourceId {
            cluster: "ops".into(),
            namespace: "ns-1".into(),
            pod: "web-0".into(),
            container: "app".into(),
            stream: "stderr".into(),
        };
        assert_eq!(SourceId::parse(&s.id()), Some(s));
        assert_eq!(SourceId::parse("a/b/c/d"), None);
        assert_eq!(SourceId::parse("a/b/c/d/e/f"), None);
    }
}
