//! `stage.timestamp`: sets an entry's time from an extracted value, like Alloy's
//! `stages/timestamp.go`: `format` then each of `fallback_formats` (the first that parses wins),
//! `location` for custom layouts, and on failure either keep the time (`skip`) or `fudge` it to
//! 1 ns after the last time set for the same label set.

use std::num::NonZeroUsize;

use chrono::DateTime;
use lru::LruCache;

use super::gotime::{self, Layout, Location};
use crate::alloy::pipeline::Entry;
use crate::alloy::shared_labels::SharedLabels;

/// Alloy's `maxLastKnownTimestampsCacheSize`: label sets whose last time `fudge` remembers.
pub const FUDGE_CACHE_SIZE: usize = 10_000;

/// `action_on_failure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    Fudge,
    Skip,
}

impl OnFailure {
    pub fn parse(s: &str) -> Option<OnFailure> {
        match s {
            "" | "fudge" => Some(OnFailure::Fudge),
            "skip" => Some(OnFailure::Skip),
            _ => None,
        }
    }
}

/// One `format` / `fallback_formats` entry, compiled.
#[derive(Debug, Clone, PartialEq)]
pub enum TimeFormat {
    /// Seconds, optionally with a `.fraction`.
    Unix,
    UnixMs,
    UnixUs,
    UnixNs,
    /// ANSIC, RFC3339, …: Alloy calls `time.Parse`, so `location` does not apply to these.
    Named(Layout),
    /// Any other string is a Go layout, read in `location` (UTC without one). A layout with
    /// neither `06` nor `2006` in it has no year: the year nearest to now is used.
    Custom {
        layout: Layout,
        location: Location,
        yearless: bool,
    },
}

/// The Go constant a named format stands for.
pub fn named_layout(name: &str) -> Option<&'static str> {
    Some(match name {
        "ANSIC" => "Mon Jan _2 15:04:05 2006",
        "UnixDate" => "Mon Jan _2 15:04:05 MST 2006",
        "RubyDate" => "Mon Jan 02 15:04:05 -0700 2006",
        "RFC822" => "02 Jan 06 15:04 MST",
        "RFC822Z" => "02 Jan 06 15:04 -0700",
        "RFC850" => "Monday, 02-Jan-06 15:04:05 MST",
        "RFC1123" => "Mon, 02 Jan 2006 15:04:05 MST",
        "RFC1123Z" => "Mon, 02 Jan 2006 15:04:05 -0700",
        "RFC3339" => "2006-01-02T15:04:05Z07:00",
        "RFC3339Nano" => "2006-01-02T15:04:05.999999999Z07:00",
        _ => return None,
    })
}

impl TimeFormat {
    /// Every string is a format to Alloy (a layout without reference-time elements only
    /// matches itself), so this cannot fail.
    pub fn new(format: &str, location: Option<Location>) -> TimeFormat {
        match format {
            "Unix" => TimeFormat::Unix,
            "UnixMs" => TimeFormat::UnixMs,
            "UnixUs" => TimeFormat::UnixUs,
            "UnixNs" => TimeFormat::UnixNs,
            _ => match named_layout(format) {
                Some(l) => TimeFormat::Named(Layout::new(l)),
                None => TimeFormat::Custom {
                    layout: Layout::new(format),
                    location: location.unwrap_or(Location::Utc),
                    yearless: !format.contains("06"),
                },
            },
        }
    }

    /// Unix nanoseconds; `now` (Unix ns) supplies the year of a year-less layout.
    pub fn parse(&self, v: &str, now: i64) -> Option<i64> {
        match self {
            TimeFormat::Unix => parse_unix(v),
            TimeFormat::UnixMs => v.parse::<i64>().ok()?.checked_mul(1_000_000),
            TimeFormat::UnixUs => v.parse::<i64>().ok()?.checked_mul(1_000),
            TimeFormat::UnixNs => v.parse::<i64>().ok(),
            TimeFormat::Named(layout) => gotime::parse(layout, v, Location::Utc).ok()?.unix_nanos(),
            TimeFormat::Custom {
                layout,
                location,
                yearless,
            } => {
                let p = gotime::parse(layout, v, *location).ok()?;
                if !*yearless {
                    return p.unix_nanos();
                }
                // Alloy refuses a year that was parsed after all (e.g. `01` read as a year).
                if chrono::Datelike::year(&p.wall) != 0 {
                    return None;
                }
                let now = DateTime::from_timestamp_nanos(now).naive_utc();
                p.with_year_near(now).unix_nanos()
            }
        }
    }
}

/// Alloy's `Unix`: whole seconds, or `seconds.fraction` with the fraction scaled to 9 digits.
fn parse_unix(v: &str) -> Option<i64> {
    let nanos = match v.split_once('.') {
        Some((sec, frac)) if !frac.contains('.') => {
            let s: i64 = sec.parse().ok()?;
            let f: i64 = frac.parse().ok()?;
            // Alloy scales with a float: more than 9 digits are cut, not rounded.
            let exp = 9 - i32::try_from(frac.len()).ok()?;
            let nsec = (f as f64 * 10f64.powi(exp)) as i64;
            s.checked_mul(1_000_000_000)?.checked_add(nsec)?
        }
        _ => v.parse::<i64>().ok()?.checked_mul(1_000_000_000)?,
    };
    Some(nanos)
}

/// The configured stage with its per-label-set memory for `fudge`.
#[derive(Debug, Clone)]
pub struct Timestamp {
    pub source: String,
    /// `format` first, then `fallback_formats` in order.
    pub formats: Vec<TimeFormat>,
    pub action_on_failure: OnFailure,
    /// Last time set per label set (only kept for `fudge`, like Alloy).
    last_known: Option<LruCache<String, i64>>,
    /// The label set of the previous entry and its cache key: consecutive entries mostly
    /// share labels, and comparing them is cheaper than writing the key again.
    last_key: Option<(SharedLabels, String)>,
}

impl Timestamp {
    pub fn new(source: String, formats: Vec<TimeFormat>, action_on_failure: OnFailure) -> Self {
        let last_known = (action_on_failure == OnFailure::Fudge).then(|| {
            LruCache::new(NonZeroUsize::new(FUDGE_CACHE_SIZE).unwrap_or(NonZeroUsize::MIN))
        });
        Timestamp {
            source,
            formats,
            action_on_failure,
            last_known,
            last_key: None,
        }
    }

    fn parse(&self, e: &Entry, now: i64) -> Option<i64> {
        let v = e.extracted.get(&self.source)?;
        self.formats.iter().find_map(|f| f.parse(v, now))
    }

    /// A missing source value counts as a failure too (Alloy fudges those lines as well).
    pub fn process(&mut self, e: &mut Entry, now: i64) {
        let parsed = self.parse(e, now);
        let Some(cache) = self.last_known.as_mut() else {
            if let Some(ts) = parsed {
                e.ts = ts;
            }
            return;
        };
        if self.last_key.as_ref().is_none_or(|(l, _)| *l != e.labels) {
            self.last_key = Some((e.labels.clone(), e.stream_key()));
        }
        let Some((_, key)) = self.last_key.as_ref() else {
            return;
        };
        match parsed {
            Some(ts) => e.ts = ts,
            None => match cache.get(key.as_str()) {
                Some(last) => e.ts = last.saturating_add(1),
                // Nothing parsed yet for these labels: the entry keeps its time.
                None => return,
            },
        }
        match cache.get_mut(key.as_str()) {
            Some(slot) => *slot = e.ts,
            None => {
                cache.put(key.clone(), e.ts);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alloy::relabel::Labels;

    fn utc(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_nanos_opt()
            .unwrap()
    }

    /// Alloy's documented formats and the examples from its docs and tests.
    #[test]
    fn formats_table() {
        let ny = Location::load("America/New_York").ok();
        let now = utc("2024-06-15T00:00:00Z");
        // (format, location, value, expected)
        let cases: &[(&str, Option<Location>, &str, Option<&str>)] = &[
            (
                "ANSIC",
                None,
                "Wed May  1 10:00:00 2024",
                Some("2024-05-01T10:00:00Z"),
            ),
            (
                "UnixDate",
                None,
                "Wed May  1 10:00:00 UTC 2024",
                Some("2024-05-01T10:00:00Z"),
            ),
            (
                "RubyDate",
                None,
                "Wed May 01 10:00:00 -0400 2024",
                Some("2024-05-01T14:00:00Z"),
            ),
            (
                "RFC822",
                None,
                "01 May 24 10:00 UTC",
                Some("2024-05-01T10:00:00Z"),
            ),
            (
                "RFC822Z",
                None,
                "01 May 24 10:00 +0200",
                Some("2024-05-01T08:00:00Z"),
            ),
            (
                "RFC850",
                None,
                "Wednesday, 01-May-24 10:00:00 UTC",
                Some("2024-05-01T10:00:00Z"),
            ),
            (
                "RFC1123",
                None,
                "Wed, 01 May 2024 10:00:00 UTC",
                Some("2024-05-01T10:00:00Z"),
            ),
            (
                "RFC1123Z",
                None,
                "Wed, 01 May 2024 10:00:00 -0700",
                Some("2024-05-01T17:00:00Z"),
            ),
            (
                "RFC3339",
                None,
                "2024-05-01T10:00:00+02:00",
                Some("2024-05-01T08:00:00Z"),
            ),
            (
                "RFC3339",
                None,
                "2024-05-01T10:00:00.5Z",
                Some("2024-05-01T10:00:00.5Z"),
            ),
            (
                "RFC3339Nano",
                None,
                "2024-05-01T10:00:00.123456789Z",
                Some("2024-05-01T10:00:00.123456789Z"),
            ),
            // Named layouts ignore `location` (Alloy uses time.Parse for them).
            (
                "ANSIC",
                ny,
                "Wed May  1 10:00:00 2024",
                Some("2024-05-01T10:00:00Z"),
            ),
            // Custom layouts use it.
            (
                "2006-01-02 15:04:05",
                ny,
                "2024-05-01 10:00:00",
                Some("2024-05-01T14:00:00Z"),
            ),
            (
                "2006-01-02 15:04:05",
                None,
                "2024-05-01 10:00:00",
                Some("2024-05-01T10:00:00Z"),
            ),
            ("Unix", None, "1714557600", Some("2024-05-01T10:00:00Z")),
            (
                "Unix",
                None,
                "1714557600.25",
                Some("2024-05-01T10:00:00.25Z"),
            ),
            (
                "Unix",
                None,
                "1714557600.123456789123",
                Some("2024-05-01T10:00:00.123456789Z"),
            ),
            ("Unix", None, "1714557600.1.2", None),
            ("Unix", None, " 1714557600", None),
            (
                "UnixMs",
                None,
                "1714557600123",
                Some("2024-05-01T10:00:00.123Z"),
            ),
            (
                "UnixUs",
                None,
                "1714557600123456",
                Some("2024-05-01T10:00:00.123456Z"),
            ),
            (
                "UnixNs",
                None,
                "1714557600123456789",
                Some("2024-05-01T10:00:00.123456789Z"),
            ),
            ("UnixMs", None, "1714557600.5", None),
            // Docs: a layout without a year gets the current one.
            (
                "Jan _2 15:04:05",
                None,
                "May  1 10:00:00",
                Some("2024-05-01T10:00:00Z"),
            ),
            (
                "Jan 02 15:04:05.000",
                ny,
                "Jul 04 12:00:00.100",
                Some("2024-07-04T16:00:00.1Z"),
            ),
            ("RFC3339", None, "garbage", None),
        ];
        for (format, loc, value, want) in cases {
            let f = TimeFormat::new(format, *loc);
            assert_eq!(
                f.parse(value, now),
                want.map(utc),
                "{format:?} {loc:?} {value:?}"
            );
        }
    }

    fn entry(stream: &str, ts_value: Option<&str>) -> Entry {
        let mut l = Labels::new();
        l.insert("stream".into(), stream.into());
        let mut e = Entry::new(l, 7, "line");
        if let Some(v) = ts_value {
            e.extracted.insert("time".into(), v.into());
        }
        e
    }

    #[test]
    fn failures_fudge_per_label_set_or_skip() {
        let t0 = utc("2024-05-01T10:00:00Z");
        // (action, [(stream, value)], expected times)
        type Case<'a> = (OnFailure, &'a [(&'a str, Option<&'a str>)], &'a [i64]);
        let cases: &[Case] = &[
            (
                OnFailure::Fudge,
                &[
                    ("a", Some("2024-05-01T10:00:00Z")),
                    ("a", Some("bad")),
                    ("a", None),
                    ("b", Some("bad")),
                    ("a", Some("2024-05-01T10:00:00Z")),
                ],
                // Fudged +1 ns from the last time (itself fudged); `b` has none so keeps its
                // read time.
                &[t0, t0 + 1, t0 + 2, 7, t0],
            ),
            (
                OnFailure::Skip,
                &[("a", Some("2024-05-01T10:00:00Z")), ("a", Some("bad"))],
                &[t0, 7],
            ),
        ];
        for (action, entries, want) in cases {
            let mut st = Timestamp::new(
                "time".into(),
                vec![TimeFormat::new("RFC3339", None)],
                *action,
            );
            let got: Vec<i64> = entries
                .iter()
                .map(|(s, v)| {
                    let mut e = entry(s, *v);
                    st.process(&mut e, 0);
                    e.ts
                })
                .collect();
            assert_eq!(&got, want, "{action:?}");
        }
    }

    #[test]
    fn fallback_formats_in_order() {
        let mut st = Timestamp::new(
            "time".into(),
            vec![
                TimeFormat::new("RFC3339", None),
                TimeFormat::new("UnixMs", None),
                TimeFormat::new("02/01/2006 15:04", None),
            ],
            OnFailure::Skip,
        );
        for (v, want) in [
            ("2024-05-01T10:00:00Z", utc("2024-05-01T10:00:00Z")),
            ("1714557600000", utc("2024-05-01T10:00:00Z")),
            ("01/05/2024 10:00", utc("2024-05-01T10:00:00Z")),
            ("nope", 7),
        ] {
            let mut e = entry("a", Some(v));
            st.process(&mut e, 0);
            assert_eq!(e.ts, want, "{v}");
        }
    }
}
