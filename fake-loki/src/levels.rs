//! `detected_level`: the structured metadata Loki 3.x adds to every entry at ingestion
//! (`discover_log_levels`, on by default). The level comes from a level-like label or
//! metadata, else a JSON or logfmt field of the line, else a keyword scan; `unknown`
//! when nothing is found.

use memchr::memmem;

/// The metadata name Loki uses.
pub const DETECTED_LEVEL: &str = "detected_level";

const LEVEL_FIELDS: &[&str] = &[
    "level", "LEVEL", "Level", "severity", "SEVERITY", "Severity", "lvl", "LVL", "Lvl",
];

/// Normalises a level value the way Loki buckets them; `None` when it is not a level.
pub fn normalize(v: &str) -> Option<&'static str> {
    let l = v.trim().to_ascii_lowercase();
    Some(match l.as_str() {
        "trace" | "trc" => "trace",
        "debug" | "dbg" => "debug",
        "info" | "inf" | "information" | "informational" | "notice" => "info",
        "warn" | "warning" | "wrn" => "warn",
        "error" | "err" | "eror" => "error",
        "critical" | "crit" => "critical",
        "fatal" | "panic" | "emergency" | "alert" => "fatal",
        _ => return None,
    })
}

/// The detected level of an entry.
pub fn detect(
    labels: &loki_wire::LabelSet,
    metadata: &[(String, String)],
    line: &str,
) -> &'static str {
    for f in LEVEL_FIELDS {
        if let Some(v) = labels.get(f) {
            return normalize(v).unwrap_or("unknown");
        }
        if let Some((_, v)) = metadata.iter().find(|(k, _)| k == f) {
            return normalize(v).unwrap_or("unknown");
        }
    }
    let trimmed = line.trim_start();
    if trimmed.starts_with('{') {
        if let Some(level) = from_json(trimmed) {
            return level;
        }
    } else if let Some(level) = from_logfmt(line) {
        return level;
    }
    from_keywords(line)
}

fn from_json(line: &str) -> Option<&'static str> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let obj = v.as_object()?;
    LEVEL_FIELDS.iter().find_map(|f| {
        obj.get(*f)
            .and_then(|v| v.as_str())
            .map(|s| normalize(s).unwrap_or("unknown"))
    })
}

fn from_logfmt(line: &str) -> Option<&'static str> {
    for f in LEVEL_FIELDS {
        let key = format!("{f}=");
        let mut search = 0;
        while let Some(pos) = line[search..].find(&key) {
            let at = search + pos;
            // The key must start a field: at the line start or after a space.
            if at == 0 || line.as_bytes()[at - 1] == b' ' {
                let rest = &line[at + key.len()..];
                let value = rest
                    .strip_prefix('"')
                    .and_then(|r| r.split('"').next())
                    .unwrap_or_else(|| rest.split(' ').next().unwrap_or_default());
                return Some(normalize(value).unwrap_or("unknown"));
            }
            search = at + key.len();
        }
    }
    None
}

fn from_keywords(line: &str) -> &'static str {
    let lower = line.to_ascii_lowercase();
    let has = |w: &str| memmem::find(lower.as_bytes(), w.as_bytes()).is_some();
    if has("trace") {
        "trace"
    } else if has("debug") {
        "debug"
    } else if has("info") {
        "info"
    } else if has("warn") {
        "warn"
    } else if has("error") || has(" err ") {
        "error"
    } else if has("critical") {
        "critical"
    } else if has("fatal") {
        "fatal"
    } else {
        "unknown"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use loki_wire::LabelSet;

    #[test]
    fn fixture_lines() {
        let l = LabelSet::default();
        assert_eq!(
            detect(&l, &[], "level=info msg=\"GET /items/0\" status=500"),
            "info"
        );
        assert_eq!(
            detect(&l, &[], r#"{"level": "error", "msg": "render 0"}"#),
            "error"
        );
        assert_eq!(
            detect(&l, &[("trace_id".into(), "abc".into())], "with metadata"),
            "unknown"
        );
        assert_eq!(detect(&l, &[], "ts=1 lvl=WARN x"), "warn");
        assert_eq!(detect(&l, &[], "Exception: ERROR in thread"), "error");
        assert_eq!(
            detect(&LabelSet::from_pairs([("level", "debug")]), &[], "x"),
            "debug"
        );
    }
}
