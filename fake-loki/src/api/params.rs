//! Query-string and form parameters, parsed and defaulted as Loki does (spec §2.1).

use std::collections::HashMap;

use crate::limits::parse_duration;
use crate::logql::Direction;

/// Decoded parameters; repeated keys keep every value in order.
#[derive(Debug, Default, Clone)]
pub struct Params {
    values: HashMap<String, Vec<String>>,
}

impl Params {
    /// Adds the pairs of an `application/x-www-form-urlencoded` string (query or body).
    pub fn add_urlencoded(&mut self, s: &[u8]) {
        for (k, v) in form_urlencoded::parse(s) {
            self.values
                .entry(k.into_owned())
                .or_default()
                .push(v.into_owned());
        }
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values
            .get(key)
            .and_then(|v| v.first())
            .map(String::as_str)
    }

    /// Every value of `key`.
    pub fn all(&self, key: &str) -> &[String] {
        self.values.get(key).map(Vec::as_slice).unwrap_or_default()
    }
}

/// Parses a Loki timestamp parameter: float seconds (ms precision), integer seconds
/// (≤ 10 digits) or nanoseconds, or RFC3339(Nano).
pub fn parse_timestamp(name: &str, v: &str) -> Result<i64, String> {
    if v.contains('.') {
        if let Ok(f) = v.parse::<f64>() {
            let secs = f.trunc();
            let ms = ((f - secs) * 1000.0).round();
            // `as` saturates out-of-range floats; the arithmetic saturates too.
            return Ok((secs as i64)
                .saturating_mul(1_000_000_000)
                .saturating_add(ms as i64 * 1_000_000));
        }
    }
    if let Ok(n) = v.parse::<i64>() {
        let digits = v.trim_start_matches('-').len();
        return Ok(if digits <= 10 {
            n.saturating_mul(1_000_000_000)
        } else {
            n
        });
    }
    chrono::DateTime::parse_from_rfc3339(v)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .ok_or_else(|| {
            format!("could not parse '{name}' parameter: cannot parse \"{v}\" to a valid timestamp")
        })
}

/// Parses a step/interval: float seconds or a duration.
pub fn parse_step(name: &str, v: &str) -> Result<i64, String> {
    if let Ok(f) = v.parse::<f64>() {
        let ns = f * 1e9;
        // Loki's parseSecondsOrDuration refuses what does not fit a Duration.
        if !(i64::MIN as f64..=i64::MAX as f64).contains(&ns) {
            return Err(format!(
                "could not parse '{name}' parameter: cannot parse \"{v}\" to a valid duration. It overflows int64"
            ));
        }
        return Ok(ns as i64);
    }
    parse_duration(v).map_err(|_| {
        format!("could not parse '{name}' parameter: cannot parse \"{v}\" to a valid duration")
    })
}

/// The time range of a request: `end` defaults to now, `start` to `min(end, now) - since`
/// with `since` defaulting to 1h.
pub fn time_range(p: &Params, now: i64) -> Result<(i64, i64), String> {
    let end = match p.get("end") {
        Some(v) => parse_timestamp("end", v)?,
        None => now,
    };
    let since = match p.get("since") {
        Some(v) => {
            parse_duration(v).map_err(|e| format!("could not parse 'since' parameter: {e}"))?
        }
        None => 3_600_000_000_000,
    };
    let start = match p.get("start") {
        Some(v) => parse_timestamp("start", v)?,
        None => end.min(now).saturating_sub(since),
    };
    if end < start {
        return Err("end timestamp must not be before or equal to start time".into());
    }
    Ok((start, end))
}

/// `direction`, default backward.
pub fn direction(p: &Params) -> Result<Direction, String> {
    match p.get("direction") {
        None | Some("") => Ok(Direction::Backward),
        Some(d) if d.eq_ignore_ascii_case("backward") => Ok(Direction::Backward),
        Some(d) if d.eq_ignore_ascii_case("forward") => Ok(Direction::Forward),
        Some(d) => Err(format!("invalid direction '{d}'")),
    }
}

/// `limit`, default 100, positive.
pub fn limit(p: &Params) -> Result<usize, String> {
    match p.get("limit") {
        None | Some("") => Ok(100),
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n > 0 => Ok(n as usize),
            Ok(_) => Err("limit must be a positive value".into()),
            Err(_) => Err(format!("could not parse 'limit' parameter: strconv.ParseInt: parsing \"{v}\": invalid syntax")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_like_loki() {
        assert_eq!(
            parse_timestamp("t", "1795317900").unwrap(),
            1_795_317_900_000_000_000
        );
        assert_eq!(
            parse_timestamp("t", "1795317900000000000").unwrap(),
            1_795_317_900_000_000_000
        );
        assert_eq!(parse_timestamp("t", "1.5").unwrap(), 1_500_000_000);
        assert_eq!(parse_timestamp("t", "1.0004").unwrap(), 1_000_000_000);
        assert_eq!(
            parse_timestamp("t", "1970-01-01T00:00:02.25Z").unwrap(),
            2_250_000_000
        );
        assert!(parse_timestamp("start", "yesterday").is_err());
    }

    #[test]
    fn defaults_and_errors() {
        let mut p = Params::default();
        assert_eq!(limit(&p).unwrap(), 100);
        assert_eq!(direction(&p).unwrap(), Direction::Backward);
        assert_eq!(
            time_range(&p, 10_000_000_000_000).unwrap(),
            (10_000_000_000_000 - 3_600_000_000_000, 10_000_000_000_000)
        );
        p.add_urlencoded(b"limit=0&direction=FORWARD&start=20&end=10");
        assert_eq!(limit(&p).unwrap_err(), "limit must be a positive value");
        assert_eq!(direction(&p).unwrap(), Direction::Forward);
        assert_eq!(
            time_range(&p, 0).unwrap_err(),
            "end timestamp must not be before or equal to start time"
        );
        assert_eq!(parse_step("step", "10s").unwrap(), 10_000_000_000);
        assert_eq!(parse_step("step", "0.5").unwrap(), 500_000_000);
    }
}
