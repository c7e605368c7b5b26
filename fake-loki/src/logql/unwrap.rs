//! `unwrap`: turning a label value into a sample value, and the labels an unwrapped
//! sample is reported under.

use loki_wire::labels::go_quote;
use loki_wire::LabelSet;

use super::ast::{Conv, Grouping, Unwrap};
use super::lexer::parse_go_duration;
use super::pipeline::{label_filter, Lbs};

/// Loki's error for a value the conversion refused.
pub const SAMPLE_EXTRACTION_ERR: &str = "SampleExtractionErr";

/// Go's `strconv.ParseFloat` for the decimal forms Loki users write.
fn parse_float(v: &str) -> Result<f64, String> {
    let syntax = || {
        format!(
            "strconv.ParseFloat: parsing {}: invalid syntax",
            go_quote(v)
        )
    };
    // Rust accepts forms Go refuses (and the other way round only for hex floats).
    if v.is_empty() || v.contains(char::is_whitespace) {
        return Err(syntax());
    }
    let x: f64 = v.parse().map_err(|_| syntax())?;
    let literal_inf = v
        .trim_start_matches(['+', '-'])
        .to_ascii_lowercase()
        .starts_with("inf");
    if x.is_infinite() && !literal_inf {
        return Err(format!(
            "strconv.ParseFloat: parsing {}: value out of range",
            go_quote(v)
        ));
    }
    Ok(x)
}

/// Go's `time.ParseDuration(v).Seconds()`.
fn parse_duration_seconds(v: &str) -> Result<f64, String> {
    let ns = parse_go_duration(v).ok_or_else(|| duration_error(v))?;
    let (sec, rest) = (ns / 1_000_000_000, ns % 1_000_000_000);
    Ok(sec as f64 + rest as f64 / 1e9)
}

/// The error Go's `time.ParseDuration` gives for a value it refuses.
fn duration_error(v: &str) -> String {
    let invalid = || format!("time: invalid duration {}", go_quote(v));
    let mut rest = v.strip_prefix(['-', '+']).unwrap_or(v);
    while !rest.is_empty() {
        let nl = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if nl == 0 {
            return invalid();
        }
        rest = &rest[nl..];
        let ul = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..ul];
        if unit.is_empty() {
            return format!("time: missing unit in duration {}", go_quote(v));
        }
        if !matches!(unit, "ns" | "us" | "µs" | "μs" | "ms" | "s" | "m" | "h") {
            return format!(
                "time: unknown unit {} in duration {}",
                go_quote(unit),
                go_quote(v)
            );
        }
        rest = &rest[ul..];
    }
    invalid()
}

/// go-humanize's `ParseBytes`: a number (commas allowed) and an optional SI or IEC unit.
fn parse_humanized_bytes(v: &str) -> Result<f64, String> {
    let end = v
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_digit() || *c == '.' || *c == ','))
        .map_or(v.len(), |(i, _)| i);
    let num: String = v[..end].chars().filter(|c| *c != ',').collect();
    let n: f64 = num.parse().map_err(|_| {
        format!(
            "strconv.ParseFloat: parsing {}: invalid syntax",
            go_quote(&num)
        )
    })?;
    let unit = v[end..].trim().to_lowercase();
    let mult: f64 = match unit.as_str() {
        "" | "b" | "byte" => 1.0,
        "k" | "kb" => 1e3,
        "ki" | "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mi" | "mib" => 1024f64.powi(2),
        "g" | "gb" => 1e9,
        "gi" | "gib" => 1024f64.powi(3),
        "t" | "tb" => 1e12,
        "ti" | "tib" => 1024f64.powi(4),
        "p" | "pb" => 1e15,
        "pi" | "pib" => 1024f64.powi(5),
        "e" | "eb" => 1e18,
        "ei" | "eib" => 1024f64.powi(6),
        _ => return Err(format!("unhandled size name: {unit}")),
    };
    let x = n * mult;
    if x >= u64::MAX as f64 {
        return Err(format!("too large: {v}"));
    }
    // ParseBytes answers a whole number of bytes.
    Ok(x.trunc())
}

/// Converts a label value as `unwrap` does.
pub fn convert(conv: Conv, v: &str) -> Result<f64, String> {
    match conv {
        Conv::Float => parse_float(v),
        Conv::Duration => parse_duration_seconds(v),
        Conv::Bytes => parse_humanized_bytes(v),
    }
}

/// Extracts the sample of one entry whose pipeline already ran: `None` when the label is
/// missing or empty (Loki skips such lines) or a post filter drops it. A value that does
/// not convert keeps the line with `__error__`, as Loki does.
pub fn extract(u: &Unwrap, lbs: &mut Lbs) -> Option<f64> {
    let raw = lbs.get(&u.label).unwrap_or("");
    if raw.is_empty() {
        return None;
    }
    let v = match convert(u.conv, raw) {
        Ok(v) => v,
        Err(details) => {
            lbs.set_err(SAMPLE_EXTRACTION_ERR, Some(details));
            0.0
        }
    };
    for f in &u.post {
        if !label_filter(f, lbs) {
            return None;
        }
    }
    Some(v)
}

/// The series an unwrapped sample belongs to. With no grouping, or `without`, the
/// unwrapped label itself is left out; an entry with an error keeps every label so the
/// error can be reported.
pub fn series_labels(u: &Unwrap, grouping: Option<&Grouping>, lbs: &Lbs) -> LabelSet {
    let all = lbs.visible();
    if lbs.has_err() {
        return LabelSet::from_pairs(all);
    }
    match grouping {
        Some(g) if !g.without => LabelSet::from_pairs(
            all.into_iter()
                .filter(|(k, _)| g.labels.iter().any(|n| n == k)),
        ),
        g => {
            LabelSet::from_pairs(all.into_iter().filter(|(k, _)| {
                *k != u.label && !g.is_some_and(|g| g.labels.iter().any(|n| n == k))
            }))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn conversions_match_go() {
        assert_eq!(convert(Conv::Float, "1.5e3"), Ok(1500.0));
        assert_eq!(convert(Conv::Float, "-Inf"), Ok(f64::NEG_INFINITY));
        assert_eq!(
            convert(Conv::Float, "12ms"),
            Err(r#"strconv.ParseFloat: parsing "12ms": invalid syntax"#.into())
        );
        assert_eq!(
            convert(Conv::Float, "1e999"),
            Err(r#"strconv.ParseFloat: parsing "1e999": value out of range"#.into())
        );
        assert_eq!(convert(Conv::Duration, "1m30s"), Ok(90.0));
        assert_eq!(convert(Conv::Duration, "250ms"), Ok(0.25));
        assert_eq!(
            convert(Conv::Duration, "12"),
            Err(r#"time: missing unit in duration "12""#.into())
        );
        assert_eq!(
            convert(Conv::Duration, "12parsecs"),
            Err(r#"time: unknown unit "parsecs" in duration "12parsecs""#.into())
        );
        assert_eq!(
            convert(Conv::Duration, "fast"),
            Err(r#"time: invalid duration "fast""#.into())
        );
        assert_eq!(convert(Conv::Bytes, "1.5 KiB"), Ok(1536.0));
        assert_eq!(convert(Conv::Bytes, "2MB"), Ok(2e6));
        assert_eq!(convert(Conv::Bytes, "1,024"), Ok(1024.0));
        assert_eq!(
            convert(Conv::Bytes, "3 parsecs"),
            Err("unhandled size name: parsecs".into())
        );
    }
}
