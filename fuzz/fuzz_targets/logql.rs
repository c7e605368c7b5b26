//! Fuzzes fake-loki's LogQL parser and stream-selector parser: any query text gives a tree or
//! a 400-style error, never a panic or a stack overflow (nesting is depth-limited). A query
//! that parses is also evaluated, as a range and an instant query, over a few fixed streams
//! (logfmt, JSON, garbage, structured metadata), so the engine's range functions, `unwrap`
//! conversions, vector matching and `label_replace` run on whatever the fuzzer builds.
#![no_main]

use std::borrow::Cow;

use fake_loki::logql::{self, Direction, Matcher, RangeQuery, Source, SourceStream};
use fake_loki::store::Stream;
use libfuzzer_sys::fuzz_target;
use loki_wire::LabelSet;

const S: i64 = 1_000_000_000;

struct Fixed(Vec<Stream>);

impl Source for Fixed {
    fn select(&self, matchers: &[Matcher]) -> Vec<SourceStream<'_>> {
        self.0
            .iter()
            .filter(|s| matchers.iter().all(|m| m.matches_labels(&s.labels)))
            .map(|s| SourceStream {
                labels: Cow::Borrowed(&s.labels),
                stream: s.view(),
            })
            .collect()
    }
}

fn fixed() -> Fixed {
    let lines: [(&[(&str, &str)], &[(i64, &str)]); 3] = [
        (
            &[("app", "api"), ("pod", "p1")],
            &[
                (S, "level=info took=12ms size=1KiB n=3"),
                (2 * S, "level=error took=bad size=x n=-1e9"),
                (3 * S, r#"{"a":{"b":1},"n":2,"s":"x\"y","arr":[1,2]}"#),
            ],
        ),
        (
            &[("app", "api"), ("pod", "p2")],
            &[(2 * S, "n=NaN took=1h size=1,024"), (4 * S, "not json {")],
        ),
        (&[("app", "web")], &[(3 * S, "n=inf took=-5s")]),
    ];
    Fixed(
        lines
            .iter()
            .map(|(labels, entries)| {
                let mut s = Stream::new(LabelSet::from_pairs(labels.iter().copied()));
                for (ts, line) in entries.iter() {
                    s.insert(*ts, line, &[("trace".to_string(), "t1".to_string())]);
                }
                s
            })
            .collect(),
    )
}

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(expr) = logql::parse(query) {
        let _ = expr.is_log();
        let _ = expr.matchers();
        let src = fixed();
        let q = RangeQuery {
            start: 0,
            end: 5 * S,
            step: S,
            interval: 0,
            limit: 100,
            direction: Direction::Backward,
        };
        let _ = logql::exec_range(&expr, &src, &q);
        let _ = logql::exec_instant(&expr, &src, 5 * S, 100, Direction::Forward);
    }
    let _ = logql::parse_selector(query);
});
