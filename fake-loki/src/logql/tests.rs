//! Engine tests: parser tables, evaluation over in-memory streams, the Loki 3.7.6 golden answers.

use std::borrow::Cow;

use loki_wire::LabelSet;
use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::store::Stream;

/// An in-memory source over plain streams.
struct Mem(Vec<Stream>);

impl Source for Mem {
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

fn meta(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

type Entry<'a> = (i64, &'a str, &'a [(&'a str, &'a str)]);

fn stream(labels: &[(&str, &str)], entries: &[Entry<'_>]) -> Stream {
    let mut s = Stream::new(LabelSet::from_pairs(labels.iter().copied()));
    for (ts, line, m) in entries {
        s.insert(*ts, line, &meta(m));
    }
    s
}

fn range(
    q: &str,
    src: &Mem,
    start: i64,
    end: i64,
    limit: usize,
    dir: Direction,
) -> Result<QueryResult, Error> {
    let e = parse(q)?;
    exec_range(
        &e,
        src,
        &RangeQuery {
            start,
            end,
            step: 1_000_000_000,
            interval: 0,
            limit,
            direction: dir,
        },
    )
}

// ---- parser ----

#[test]
fn parser_accepts_valid_queries() {
    let ok = [
        r#"{app="api"}"#,
        r#"{app="api", env=~"prod|dev", x!="y", z!~"a.*"}"#,
        r#"{app=`raw\d`,}"#,
        r#"{app="api"} |= "x" != "y" |~ "a.+" !~ "b" |= "c" or "d""#,
        r#"{app="api"} | json | level="error" | line_format "{{.user}}: {{.msg}}""#,
        r#"{app="api"} | json a="b.c", d | logfmt --strict --keep-empty | regexp "(?P<x>\\d+)""#,
        r#"{app="api"} | logfmt | status >= 500 and dur > 10ms or size < 1KB, (a="b" or c!="d")"#,
        r#"{app="api"} | pattern "<ip> <_>" | unpack | decolorize | drop a, b="c" | keep x"#,
        r#"{app="api"} | label_format a=b, c="{{.d}}" # comment"#,
        r#"count_over_time({app="api"}[5m])"#,
        r#"SUM BY (app) (Rate({app="api"} |= "x" [1m] offset 5m))"#,
        r#"sum(count_over_time({app="api"} | json [10s])) without (x)"#,
        r#"topk(3, bytes_rate({app="api"}[1h]))"#,
        r#"bottomk by (a) (2, bytes_over_time(({app="api"} |= "x")[1m]))"#,
        r#"absent_over_time({app="api"}[1m])"#,
        r#"avg(min(max(count(count_over_time({app="api"}[1m])))))"#,
        "{app=\"a\"}\n|= \"x\"",
    ];
    for q in ok {
        assert!(parse(q).is_ok(), "{q}: {:?}", parse(q).err());
    }
    assert!(parse(r#"{app="api"}"#).unwrap().is_log());
    assert!(!parse(r#"rate({app="api"}[1m])"#).unwrap().is_log());
}

#[test]
fn parser_errors_match_loki() {
    let empty = "parse error : queries require at least one regexp or equality matcher that does not have an empty-compatible value. For instance, app=~\".*\" does not meet this requirement, but app=~\".+\" will";
    let cases: &[(&str, &str)] = &[
        (r#"{app="api" |= "x""#, "parse error at line 0, col 12: syntax error: unexpected |=, expecting } or ,"),
        (r#"{app=~".*"}"#, empty),
        ("{}", empty),
        (r#"{a!="x"}"#, empty),
        (r#"{a=""}"#, empty),
        (r#"count_over_time({a=~".*"}[1m])"#, empty),
        (r#"{app="api""#, "parse error at line 1, col 11: syntax error: unexpected $end, expecting } or ,"),
        (r#"{app}"#, "parse error at line 1, col 5: syntax error: unexpected }, expecting = or =~ or !~ or !="),
        (r#"{app=}"#, "parse error at line 1, col 6: syntax error: unexpected }, expecting STRING"),
        (
            r#"count_over_time({app="api"}[1m]) by (x)"#,
            "parse error : grouping not allowed for count_over_time aggregation",
        ),
        (r#"rate({app="api"}[1m]) without (x)"#, "parse error : grouping not allowed for rate aggregation"),
        (r#"bytes_rate({app="api"}[1m]) by (x)"#, "parse error : grouping not allowed for bytes_rate aggregation"),
        (
            r#"sum_over_time({app="api"}[1m])"#,
            "parse error : invalid aggregation sum_over_time without unwrap",
        ),
    ];
    for (q, want) in cases {
        let got = parse(q).err().map(|e| e.message);
        assert_eq!(got.as_deref(), Some(*want), "query {q}");
    }
    assert!(parse(r#"{a="b"} |~ "(""#)
        .unwrap_err()
        .message
        .contains("error parsing regexp"));
}

#[test]
fn selector_parsing_for_series() {
    assert_eq!(parse_selector("{}").unwrap().len(), 0);
    assert_eq!(parse_selector(r#"{a=~".*"}"#).unwrap().len(), 1);
    assert!(parse_selector(r#"{a="b"} |= "x""#).is_err());
    assert!(parse_selector(r#"rate({a="b"}[1m])"#).is_err());
}

// ---- engine ----

fn sample() -> Mem {
    Mem(vec![
        stream(
            &[("app", "a")],
            &[
                (1, "level=info msg=one", &[]),
                (3, "level=error msg=three", &[("trace", "t1")]),
                (5, "level=info msg=five", &[]),
            ],
        ),
        stream(
            &[("app", "b")],
            &[(2, r#"{"x":"2"}"#, &[]), (4, "not json", &[])],
        ),
    ])
}

fn lines(r: &QueryResult) -> Vec<(i64, String)> {
    match r {
        QueryResult::Streams(e, _) => e.iter().map(|e| (e.ts, e.line.clone())).collect(),
        _ => vec![],
    }
}

#[test]
fn log_queries_merge_limit_and_direction() {
    let src = sample();
    let r = range(r#"{app=~"a|b"}"#, &src, 0, 10, 3, Direction::Forward).unwrap();
    assert_eq!(
        lines(&r).iter().map(|l| l.0).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    let r = range(r#"{app=~"a|b"}"#, &src, 0, 10, 3, Direction::Backward).unwrap();
    assert_eq!(
        lines(&r).iter().map(|l| l.0).collect::<Vec<_>>(),
        vec![5, 4, 3]
    );
    let r = range(r#"{app=~"a|b"}"#, &src, 2, 5, 100, Direction::Forward).unwrap();
    assert_eq!(
        lines(&r).iter().map(|l| l.0).collect::<Vec<_>>(),
        vec![2, 3, 4]
    );
    assert_eq!(r.stats().lines_processed, 3);
    let r = range(
        r#"{app="a"} |= "info" != "five""#,
        &src,
        0,
        10,
        100,
        Direction::Forward,
    )
    .unwrap();
    assert_eq!(lines(&r), vec![(1, "level=info msg=one".to_string())]);
    let r = range(
        r#"{app="a"} |= "one" or "five""#,
        &src,
        0,
        10,
        100,
        Direction::Forward,
    )
    .unwrap();
    assert_eq!(lines(&r).len(), 2);
    let r = range(r#"{app="a"} |~ "e$""#, &src, 0, 10, 100, Direction::Forward).unwrap();
    assert_eq!(lines(&r).len(), 3);
}

#[test]
fn interval_skips_entries() {
    let src = Mem(vec![stream(
        &[("a", "b")],
        &[(0, "x", &[]), (1, "x", &[]), (2, "x", &[]), (5, "x", &[])],
    )]);
    let e = parse(r#"{a="b"}"#).unwrap();
    let q = RangeQuery {
        start: 0,
        end: 10,
        step: 1,
        interval: 2,
        limit: 100,
        direction: Direction::Forward,
    };
    let r = exec_range(&e, &src, &q).unwrap();
    assert_eq!(
        lines(&r).iter().map(|l| l.0).collect::<Vec<_>>(),
        vec![0, 2, 5]
    );
}

#[test]
fn labels_fold_and_categorize() {
    let src = sample();
    let r = range(
        r#"{app="a"} | logfmt"#,
        &src,
        0,
        10,
        100,
        Direction::Forward,
    )
    .unwrap();
    let j = r.to_json(false);
    assert_eq!(
        j[0]["stream"],
        json!({"app": "a", "level": "error", "msg": "three", "trace": "t1"})
    );
    let j = r.to_json(true);
    assert_eq!(j.as_array().map(Vec::len), Some(1));
    assert_eq!(j[0]["stream"], json!({"app": "a"}));
    assert_eq!(
        j[0]["values"][1],
        json!(["3", "level=error msg=three", {"structuredMetadata": {"trace": "t1"}, "parsed": {"level": "error", "msg": "three"}}])
    );
    let bytes = String::from_utf8(to_json_bytes(&j[0]["values"][1])).unwrap();
    assert!(
        bytes.find("structuredMetadata") < bytes.find("parsed"),
        "{bytes}"
    );
}

#[test]
fn parser_errors_and_label_filters() {
    let src = sample();
    let r = range(r#"{app="b"} | json"#, &src, 0, 10, 100, Direction::Forward).unwrap();
    let j = r.to_json(false);
    assert_eq!(j[0]["stream"]["__error__"], json!("JSONParserErr"));
    let r = range(
        r#"{app="b"} | json | __error__="""#,
        &src,
        0,
        10,
        100,
        Direction::Forward,
    )
    .unwrap();
    assert_eq!(lines(&r), vec![(2, r#"{"x":"2"}"#.to_string())]);
    let r = range(
        r#"{app="b"} | json | x > 1"#,
        &src,
        0,
        10,
        100,
        Direction::Forward,
    )
    .unwrap();
    assert_eq!(lines(&r).len(), 2, "errored lines pass numeric filters");
    let r = range(
        r#"{app="a"} | logfmt | level="info" | line_format "{{.msg}}""#,
        &src,
        0,
        10,
        100,
        Direction::Forward,
    )
    .unwrap();
    assert_eq!(
        lines(&r),
        vec![(1, "one".to_string()), (5, "five".to_string())]
    );
    let err = range(
        r#"count_over_time({app="b"} | json [1m])"#,
        &src,
        0,
        10,
        100,
        Direction::Forward,
    )
    .unwrap_err();
    assert!(
        err.message.starts_with(
            "pipeline error: 'JSONParserErr' for series: '{__error__=\"JSONParserErr\""
        ),
        "{}",
        err.message
    );
}

#[test]
fn metric_queries() {
    let s = 1_000_000_000;
    let src = Mem(vec![stream(
        &[("app", "a")],
        &[(s, "xx", &[]), (2 * s, "yyyy", &[]), (3 * s, "z", &[])],
    )]);
    let e = parse(r#"count_over_time({app="a"}[2s])"#).unwrap();
    let q = RangeQuery {
        start: s,
        end: 4 * s,
        step: s,
        interval: 0,
        limit: 100,
        direction: Direction::Backward,
    };
    let r = exec_range(&e, &src, &q).unwrap();
    assert_eq!(r.result_type(), "matrix");
    assert_eq!(
        r.to_json(false),
        json!([{"metric": {"app": "a"}, "values": [[1, "1"], [2, "2"], [3, "2"], [4, "1"]]}])
    );
    let e = parse(r#"sum(bytes_rate({app="a"}[4s]))"#).unwrap();
    let r = exec_instant(&e, &src, 3 * s, 100, Direction::Backward).unwrap();
    assert_eq!(
        r.to_json(false),
        json!([{"metric": {}, "value": [3, "1.75"]}])
    );
    let e = parse(r#"topk(1, sum by (app) (count_over_time({app=~"a|b"}[10s])))"#).unwrap();
    let r = exec_instant(&e, &sample(), 10, 100, Direction::Backward).unwrap();
    assert_eq!(
        r.to_json(false),
        json!([{"metric": {"app": "a"}, "value": [0, "3"]}])
    );
    let e = parse(r#"absent_over_time({app="nope"}[1s])"#).unwrap();
    let r = exec_instant(&e, &src, 3 * s, 100, Direction::Backward).unwrap();
    assert_eq!(
        r.to_json(false),
        json!([{"metric": {"app": "nope"}, "value": [3, "1"]}])
    );
    let e = parse(r#"{app="a"}"#).unwrap();
    assert_eq!(
        exec_instant(&e, &src, 0, 100, Direction::Backward).unwrap_err().message,
        "log queries are not supported as an instant query type, please change your query to a range query type"
    );
}

#[test]
fn values_and_times_format_like_go() {
    assert_eq!(format_value(0.2), "0.2");
    assert_eq!(format_value(11.0), "11");
    assert_eq!(format_value(1e-5), "0.00001");
    assert_eq!(format_value(f64::INFINITY), "+Inf");
    assert_eq!(time_json(1_500_000_000), json!(1.5));
    assert_eq!(time_json(2_000_000_000), json!(2));
    let b = to_json_bytes(&json!({"a": "<x> & \u{1}\n"}));
    assert_eq!(
        String::from_utf8(b).unwrap(),
        r#"{"a":"\u003cx\u003e \u0026 \u0001\n"}"#
    );
}

#[test]
fn series_limit() {
    let streams: Vec<Stream> = (0..501)
        .map(|i| stream(&[("a", "b"), ("i", &i.to_string())], &[(5, "x", &[])]))
        .collect();
    let src = Mem(streams);
    let e = parse(r#"count_over_time({a="b"}[1m])"#).unwrap();
    let err = exec_instant(&e, &src, 10, 100, Direction::Backward).unwrap_err();
    assert!(err
        .message
        .starts_with("maximum number of series (500) reached for a single query"));
}

// ---- golden: real Loki 3.7.6 answers ----

fn testdata(name: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/loki-3.7.6")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The level Loki's ingester detects from a logfmt or JSON line.
fn detected_level(line: &str) -> &'static str {
    for l in ["info", "error", "warn", "debug"] {
        if line.contains(&format!("level={l}")) || line.contains(&format!("\"level\": \"{l}\"")) {
            return l;
        }
    }
    "unknown"
}

fn golden_source() -> Mem {
    let d: Value = serde_json::from_str(&testdata("dataset.json")).unwrap();
    let mut out = Vec::new();
    for s in d["streams"].as_array().unwrap() {
        let mut labels = LabelSet::parse(s["labels"].as_str().unwrap()).unwrap();
        let app = labels.get("app").unwrap().to_string();
        labels.set("service_name", &app);
        let mut st = Stream::new(labels);
        for e in s["entries"].as_array().unwrap() {
            let ts: i64 = e[0].as_str().unwrap().parse().unwrap();
            let line = e[1].as_str().unwrap();
            let mut m: Vec<(String, String)> = e
                .get(2)
                .and_then(Value::as_object)
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                        .collect()
                })
                .unwrap_or_default();
            m.push(("detected_level".into(), detected_level(line).into()));
            st.insert(ts, line, &m);
        }
        out.push(st);
    }
    Mem(out)
}

fn num_param(v: &Value) -> i64 {
    match v {
        Value::Number(n) => n.as_i64().unwrap(),
        Value::String(s) => s.parse().unwrap(),
        _ => panic!("bad param {v}"),
    }
}

#[test]
fn golden_loki_answers() {
    let src = golden_source();
    let reqs: Value = serde_json::from_str(&testdata("requests.json")).unwrap();
    let mut checked = 0;
    for r in reqs.as_array().unwrap() {
        let path = r["path"].as_str().unwrap();
        let instant = path.ends_with("/query");
        if !(instant || path.ends_with("/query_range")) || r["status"] == 401 {
            continue;
        }
        let p = &r["params"];
        let name = r["name"].as_str().unwrap();
        let categorize = r["headers"].get("X-Loki-Response-Encoding-Flags").is_some();
        let limit = p.get("limit").map_or(100, num_param) as usize;
        let direction = match p.get("direction").and_then(Value::as_str) {
            Some("forward") => Direction::Forward,
            _ => Direction::Backward,
        };
        let result = parse(p["query"].as_str().unwrap()).and_then(|e| {
            if instant {
                exec_instant(&e, &src, num_param(&p["time"]), limit, direction)
            } else {
                let (start, end) = (num_param(&p["start"]), num_param(&p["end"]));
                let step = match p.get("step").and_then(Value::as_str) {
                    Some(s) => lexer::parse_duration(s).unwrap(),
                    None => ((end - start) / 1_000_000_000 / 250).max(1) * 1_000_000_000,
                };
                exec_range(
                    &e,
                    &src,
                    &RangeQuery {
                        start,
                        end,
                        step,
                        interval: 0,
                        limit,
                        direction,
                    },
                )
            }
        });
        let body = testdata(r["body_file"].as_str().unwrap());
        if r["status"] == 200 {
            let want: Value = serde_json::from_str(&body).unwrap();
            let got = result.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(got.result_type(), want["data"]["resultType"], "{name}");
            assert_eq!(got.to_json(categorize), want["data"]["result"], "{name}");
        } else {
            assert_eq!(result.err().map(|e| e.message), Some(body), "{name}");
        }
        checked += 1;
    }
    assert_eq!(checked, 11);
}

// ---- properties ----

proptest! {
    #[test]
    fn log_range_limit_direction(
        entries in proptest::collection::vec((0i64..200, 0usize..2), 0..60),
        start in 0i64..200,
        len in 0i64..200,
        limit in 1usize..30,
        forward in any::<bool>(),
    ) {
        let end = start + len;
        let mut streams = vec![Stream::new(LabelSet::from_pairs([("s", "0")])), Stream::new(LabelSet::from_pairs([("s", "1")]))];
        for (i, (ts, s)) in entries.iter().enumerate() {
            streams[*s].insert(*ts, &format!("l{i}"), &[]);
        }
        let mut all: Vec<i64> = streams.iter().flat_map(|s| s.iter().map(|e| e.ts).collect::<Vec<_>>()).filter(|t| *t >= start && *t < end).collect();
        all.sort();
        let src = Mem(streams);
        let dir = if forward { Direction::Forward } else { Direction::Backward };
        let r = range(r#"{s=~"0|1"}"#, &src, start, end, limit, dir).unwrap();
        let got: Vec<i64> = lines(&r).iter().map(|l| l.0).collect();
        prop_assert!(got.iter().all(|t| *t >= start && *t < end));
        prop_assert_eq!(got.len(), all.len().min(limit));
        let mut want = all.clone();
        if !forward {
            want.reverse();
        }
        want.truncate(limit);
        prop_assert_eq!(got, want);
    }
}

/// Timing check for the benchmarked path: `cargo test --release -p fake-loki --lib perf -- --ignored --nocapture`.
#[test]
#[ignore]
fn perf_line_filter_over_a_million_entries() {
    let mut streams = Vec::new();
    for s in 0..10 {
        let mut st = Stream::new(LabelSet::from_pairs([
            ("app", "bench".to_string()),
            ("pod", s.to_string()),
        ]));
        for i in 0..100_000i64 {
            let line = format!(
                "level=info msg=\"request {i}\" status={} dur={}ms",
                if i % 1000 == 0 { 500 } else { 200 },
                i % 97
            );
            st.insert(i * 1_000_000 + s, &line, &[]);
        }
        streams.push(st);
    }
    let src = Mem(streams);
    for (q, dir) in [
        (r#"{app="bench"} |= "status=500""#, Direction::Backward),
        (r#"{app="bench"} |= "status=500""#, Direction::Forward),
        (r#"{app="bench"} |~ "status=5\\d\\d""#, Direction::Backward),
        (r#"{app="bench"} |= "nothing-matches""#, Direction::Backward),
        (
            r#"sum(count_over_time({app="bench"} |= "status=500" [1m]))"#,
            Direction::Backward,
        ),
        (
            r#"{app="bench"} | logfmt | status="500""#,
            Direction::Backward,
        ),
    ] {
        let t = std::time::Instant::now();
        let r = range(q, &src, 0, 100_000 * 1_000_000, 100, dir).unwrap();
        eprintln!(
            "{q} {dir:?}: {:?}, {} processed",
            t.elapsed(),
            r.stats().lines_processed
        );
    }
}

#[test]
fn binary_operations() {
    let src = sample();
    let at = |q: &str| {
        exec_instant(&parse(q).unwrap(), &src, 10, 100, Direction::Backward)
            .unwrap()
            .to_json(false)
    };
    assert_eq!(at("1 + 2 * 3"), json!([0, "7"]));
    assert_eq!(at("2 ^ 3 ^ 2"), json!([0, "512"]));
    assert_eq!(at("-2 + 1"), json!([0, "-1"]));
    let q = r#"sum by (app) (count_over_time({app=~"a|b"}[1s]))"#;
    assert_eq!(
        at(&format!("{q} * 2")),
        json!([{"metric": {"app": "a"}, "value": [0, "6"]}, {"metric": {"app": "b"}, "value": [0, "4"]}])
    );
    assert_eq!(
        at(&format!("{q} > 2")),
        json!([{"metric": {"app": "a"}, "value": [0, "3"]}])
    );
    assert_eq!(
        at(&format!("{q} > bool 2")),
        json!([{"metric": {"app": "a"}, "value": [0, "1"]}, {"metric": {"app": "b"}, "value": [0, "0"]}])
    );
    assert_eq!(
        at(&format!("{q} / {q}")),
        json!([{"metric": {"app": "a"}, "value": [0, "1"]}, {"metric": {"app": "b"}, "value": [0, "1"]}])
    );
    assert_eq!(at("vector(3)"), json!([{"metric": {}, "value": [0, "3"]}]));
    assert_eq!(
        parse("1 > 2").unwrap_err().message,
        "parse error : comparisons between scalars must use BOOL modifier"
    );
}

// ---- unwrap, range functions over values, label_replace, vector matching ----

fn latency_source() -> Mem {
    let s = 1_000_000_000;
    Mem(vec![
        stream(
            &[("app", "api"), ("pod", "p1")],
            &[
                (s, "path=/a latency=100ms size=1KiB n=4", &[]),
                (2 * s, "path=/b latency=300ms size=2KiB n=1", &[]),
                (3 * s, "path=/a latency=bad size=3KiB n=3", &[]),
                (4 * s, "path=/a size=4KiB n=2", &[]),
            ],
        ),
        stream(
            &[("app", "api"), ("pod", "p2")],
            &[(2 * s, "path=/a latency=1s size=10B n=10", &[])],
        ),
        stream(
            &[("app", "web"), ("pod", "p3")],
            &[(2 * s, "path=/a latency=2s n=7", &[])],
        ),
    ])
}

fn instant(q: &str, src: &Mem, t: i64) -> Result<Value, Error> {
    Ok(exec_instant(&parse(q)?, src, t, 100, Direction::Backward)?.to_json(false))
}

#[test]
fn unwrap_functions_over_values() {
    let s = 1_000_000_000;
    let src = latency_source();
    let at = |q: &str| instant(q, &src, 10 * s).map(|v| series_values(&v));
    // The unwrapped label leaves the series; every other label stays.
    assert_eq!(
        at(r#"sum_over_time({app="api"} | logfmt | unwrap n [10s])"#).unwrap(),
        vec![
            (
                r#"app=api,latency=100ms,path=/a,pod=p1,size=1KiB"#.into(),
                "4".into()
            ),
            (
                r#"app=api,latency=1s,path=/a,pod=p2,size=10B"#.into(),
                "10".into()
            ),
            (
                r#"app=api,latency=300ms,path=/b,pod=p1,size=2KiB"#.into(),
                "1".into()
            ),
            (
                r#"app=api,latency=bad,path=/a,pod=p1,size=3KiB"#.into(),
                "3".into()
            ),
            (r#"app=api,path=/a,pod=p1,size=4KiB"#.into(), "2".into()),
        ]
    );
    // Grouping: by keeps only the listed labels; without drops them and the unwrapped one.
    let q = |f: &str, g: &str| format!(r#"{f}({{app="api"}} | logfmt | unwrap n [10s]) {g}"#);
    assert_eq!(
        at(&q("max_over_time", "by (pod)")).unwrap(),
        vec![
            ("pod=p1".into(), "4".into()),
            ("pod=p2".into(), "10".into())
        ]
    );
    assert_eq!(
        at(&q("avg_over_time", "by (pod)")).unwrap(),
        vec![
            ("pod=p1".into(), "2.5".into()),
            ("pod=p2".into(), "10".into())
        ]
    );
    assert_eq!(
        at(&q("min_over_time", "without (latency, size, path)")).unwrap(),
        vec![
            ("app=api,pod=p1".into(), "1".into()),
            ("app=api,pod=p2".into(), "10".into())
        ]
    );
    assert_eq!(
        at(&q("first_over_time", "by (pod)")).unwrap(),
        vec![
            ("pod=p1".into(), "4".into()),
            ("pod=p2".into(), "10".into())
        ]
    );
    assert_eq!(
        at(&q("last_over_time", "by (pod)")).unwrap(),
        vec![
            ("pod=p1".into(), "2".into()),
            ("pod=p2".into(), "10".into())
        ]
    );
    assert_eq!(
        at(&q("stdvar_over_time", "by (pod)")).unwrap(),
        vec![
            ("pod=p1".into(), "1.25".into()),
            ("pod=p2".into(), "0".into())
        ]
    );
    assert_eq!(
        at(r#"quantile_over_time(0.5, {app="api"} | logfmt | unwrap n [10s]) by (app)"#).unwrap(),
        vec![("app=api".into(), "3".into())]
    );
    // rate over unwrapped values is their sum per second of the range.
    assert_eq!(
        at(r#"sum(rate({app="api"} | logfmt | unwrap n [10s]))"#).unwrap(),
        vec![("".into(), "2".into())]
    );
    // Conversions: duration in seconds, bytes in bytes; a line without the label is skipped.
    assert_eq!(
        at(r#"sum by (app) (sum_over_time({app=~"api|web"} | logfmt | unwrap duration(latency) | __error__="" [10s]))"#)
            .unwrap(),
        vec![("app=api".into(), "1.4".into()), ("app=web".into(), "2".into())]
    );
    assert_eq!(
        at(r#"sum(sum_over_time({app="api"} | logfmt | unwrap bytes(size) [10s]))"#).unwrap(),
        vec![("".into(), "10250".into())]
    );
    // A value that does not convert fails the query, naming the series, unless filtered.
    let e =
        at(r#"sum(sum_over_time({app="api"} | logfmt | unwrap duration_seconds(latency) [10s]))"#)
            .unwrap_err();
    assert!(
        e.message.starts_with("pipeline error: 'SampleExtractionErr' for series: '{__error__=\"SampleExtractionErr\", __error_details__=\"time: invalid duration \\\"bad\\\"\""),
        "{}",
        e.message
    );
}

#[test]
fn unwrap_parse_rules_match_loki() {
    let ok = [
        r#"sum_over_time({a="b"} | unwrap x [1m])"#,
        r#"sum_over_time({a="b"} [1m] | unwrap x)"#,
        r#"sum_over_time({a="b"} [1m] offset 5m | json | unwrap x | __error__="")"#,
        r#"avg_over_time(({a="b"} | logfmt | unwrap bytes(x))[1m]) by (a)"#,
        r#"quantile_over_time(0.99, {a="b"} | unwrap duration(x) | x > 1 [5m]) without (b)"#,
        r#"rate_counter({a="b"} | unwrap x [1m])"#,
        r#"absent_over_time({a="b"} | unwrap x [1m])"#,
        r#"label_replace(rate({a="b"}[1m]), "dst", "$1", "a", "(.*)")"#,
        r#"sum by (a) (rate({a="b"}[1m])) / on (a) group_left (c) sum by (a, c) (rate({a="b"}[1m]))"#,
        r#"rate({a="b"}[1m]) > bool ignoring (x) group_right rate({a="c"}[1m])"#,
    ];
    for q in ok {
        assert!(parse(q).is_ok(), "{q}: {:?}", parse(q).err());
    }
    let cases: &[(&str, &str)] = &[
        (
            r#"count_over_time({a="b"} | unwrap x [1m])"#,
            "parse error : invalid aggregation count_over_time with unwrap",
        ),
        (
            r#"sum_over_time({a="b"} | unwrap x [1m]) by (a)"#,
            "parse error : grouping not allowed for sum_over_time aggregation",
        ),
        (
            r#"max_over_time({a="b"}[1m]) by (a)"#,
            "parse error : invalid aggregation max_over_time without unwrap",
        ),
        (
            r#"absent_over_time({a="b"}[1m]) by (a)"#,
            "parse error : grouping not allowed for absent_over_time aggregation",
        ),
        (
            r#"quantile_over_time({a="b"} | unwrap x [1m])"#,
            "parse error : parameter required for operation quantile_over_time",
        ),
        (
            r#"sum_over_time(2, {a="b"} | unwrap x [1m])"#,
            "parse error : parameter 2 not supported for operation sum_over_time",
        ),
        (
            r#"label_replace(rate({a="b"}[1m]), "1dst", "$1", "a", "(.*)")"#,
            "parse error : invalid destination label name in label_replace(): 1dst",
        ),
    ];
    for (q, want) in cases {
        let got = parse(q).err().map(|e| e.message);
        assert_eq!(got.as_deref(), Some(*want), "query {q}");
    }
    assert!(
        parse(r#"label_replace(rate({a="b"}[1m]), "d", "$1", "a", "(")"#)
            .unwrap_err()
            .message
            .starts_with("parse error : invalid regex in label_replace(): error parsing regexp")
    );
}

#[test]
fn rate_counter_extrapolates_like_loki() {
    let s = 1_000_000_000;
    let src = Mem(vec![stream(
        &[("app", "c")],
        &[(s, "v=10", &[]), (2 * s, "v=20", &[]), (3 * s, "v=5", &[])],
    )]);
    let got = instant(
        r#"rate_counter({app="c"} | logfmt | unwrap v [60s])"#,
        &src,
        10 * s,
    )
    .unwrap();
    // Increase 15 (a reset after 20); Loki's nanosecond-based extrapolation adds the
    // range's 60 "seconds" to a 2e6 sampled interval.
    let want = 15.0 * ((2e6 + 60.0) / 2e6) / 60.0;
    assert_eq!(series_values(&got), vec![("app=c".into(), go_float(want))]);
}

#[test]
fn label_replace_and_vector_matching() {
    let s = 1_000_000_000;
    let src = latency_source();
    let at = |q: &str| instant(q, &src, 10 * s).map(|v| series_values(&v));
    assert_eq!(
        at(r#"label_replace(sum by (pod) (count_over_time({app="api"}[10s])), "node", "n-$1", "pod", "p(.)")"#)
            .unwrap(),
        vec![("node=n-1,pod=p1".into(), "4".into()), ("node=n-2,pod=p2".into(), "1".into())]
    );
    // A non-matching regex leaves the series as it was; an empty result removes dst.
    assert_eq!(
        at(r#"label_replace(sum by (pod) (count_over_time({app="api"}[10s])), "pod", "", "pod", "p1")"#)
            .unwrap(),
        vec![("".into(), "4".into()), ("pod=p2".into(), "1".into())]
    );
    let per_pod = r#"sum by (app, pod) (count_over_time({app=~"api|web"}[10s]))"#;
    let per_app = r#"sum by (app) (count_over_time({app=~"api|web"}[10s]))"#;
    // Each pod's share of its app: many-to-one needs group_left.
    assert_eq!(
        at(&format!("{per_pod} / on (app) group_left {per_app}")).unwrap(),
        vec![
            ("app=api,pod=p1".into(), "0.8".into()),
            ("app=api,pod=p2".into(), "0.2".into()),
            ("app=web,pod=p3".into(), "1".into()),
        ]
    );
    assert_eq!(
        at(&format!("{per_pod} / on (app) {per_app}")).unwrap_err().message,
        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
    );
    assert_eq!(
        at(&format!("{per_app} / ignoring (pod) group_right {per_pod}")).unwrap(),
        vec![
            ("app=api,pod=p1".into(), "1.25".into()),
            ("app=api,pod=p2".into(), "5".into()),
            ("app=web,pod=p3".into(), "1".into()),
        ]
    );
    assert_eq!(
        at(&format!("{per_pod} > on (app) group_left {per_app} * 0.5")).unwrap(),
        vec![
            ("app=api,pod=p1".into(), "4".into()),
            ("app=web,pod=p3".into(), "1".into())
        ]
    );
    assert_eq!(
        at(&format!(
            "{per_pod} and on (pod) sum by (pod) (count_over_time({{pod=\"p2\"}}[10s]))"
        ))
        .unwrap(),
        vec![("app=api,pod=p2".into(), "1".into())]
    );
    // Division by zero is NaN in Loki, not infinity.
    assert_eq!(at(&format!("{per_app} / 0")).unwrap()[0].1, "NaN");
    // offset shifts the window back.
    assert_eq!(
        at(r#"sum(count_over_time({app="api"}[2s] offset 7s))"#).unwrap(),
        vec![("".into(), "3".into())]
    );
}

/// `(labels as k=v joined by commas, value)` for each series of an instant vector, sorted.
fn series_values(v: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = v
        .as_array()
        .map(|a| {
            a.iter()
                .map(|item| {
                    let mut labels: Vec<String> = item["metric"]
                        .as_object()
                        .map(|m| {
                            m.iter()
                                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                                .collect()
                        })
                        .unwrap_or_default();
                    labels.sort();
                    (
                        labels.join(","),
                        item["value"][1].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn go_float(x: f64) -> String {
    super::format_value(x)
}
