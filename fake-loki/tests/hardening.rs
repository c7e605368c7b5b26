//! Hostile-client regressions of issue 14 (fake-loki items), each over real HTTP on
//! 127.0.0.1:0 so handlers run on the server's ordinary worker threads and stacks.

mod common;

use common::{get, now_ns, push, request, send};
use fake_loki::{Config, FakeLoki};

const T: [(&str, &str); 1] = [("X-Scope-OrgID", "t")];

/// A form POST of `query` (and extra pairs) to `path`.
async fn query_form(
    loki: &FakeLoki,
    path: &str,
    query: &str,
    extra: &[(&str, &str)],
) -> common::Resp {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("query", query);
    for (k, v) in extra {
        form.append_pair(k, v);
    }
    send(
        "POST",
        &format!("{}{path}", loki.url()),
        &[
            ("X-Scope-OrgID", "t"),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        form.finish().into_bytes(),
    )
    .await
}

fn nest(open: &str, inner: &str, close: &str, n: usize) -> String {
    format!("{}{inner}{}", open.repeat(n), close.repeat(n))
}

#[tokio::test]
async fn deeply_nested_queries_are_refused_not_a_crash() {
    let loki = FakeLoki::start(Config::for_tests()).await.unwrap();
    let ts = now_ns();
    assert_eq!(
        push(
            &loki.url(),
            "t",
            &request(&[("{a=\"b\"}", vec![(ts, "x=1", vec![])])])
        )
        .await
        .status,
        204
    );
    let end = (ts + 1_000_000_000).to_string();
    let start = (ts - 60_000_000_000).to_string();
    let range = [
        ("start", start.as_str()),
        ("end", end.as_str()),
        ("step", "60"),
    ];
    let instant = [("time", end.as_str())];
    let chain = vec!["1"; 2030].join("+");
    let cases: Vec<(&str, String, &[(&str, &str)], &str)> = vec![
        (
            "/loki/api/v1/query",
            nest("(", "1", ")", 2500),
            &instant,
            "nested too deeply",
        ),
        (
            "/loki/api/v1/query_range",
            format!("{{a=\"b\"}} | logfmt | {}", nest("(", "x=\"1\"", ")", 1750)),
            &range,
            "nested too deeply",
        ),
        (
            "/loki/api/v1/query",
            nest("sum(", "count_over_time({a=\"b\"}[1m])", ")", 1940),
            &instant,
            "nested too deeply",
        ),
        (
            "/loki/api/v1/query",
            chain,
            &instant,
            "too many binary operations",
        ),
        (
            "/loki/api/v1/query",
            format!("{}1", "-".repeat(7600)),
            &instant,
            "nested too deeply",
        ),
        (
            "/loki/api/v1/query",
            // `^` is right-associative: the chain nests.
            vec!["2"; 5000].join("^"),
            &instant,
            "nested too deeply",
        ),
        (
            "/loki/api/v1/query_range",
            format!(
                "{{a=\"b\"}} | logfmt | {}",
                vec!["x=\"1\""; 3000].join(" or ")
            ),
            &range,
            "too many binary operations",
        ),
    ];
    for (path, q, extra, want) in cases {
        let r = query_form(&loki, path, &q, extra).await;
        assert_eq!(r.status, 400, "{}: {}", &q[..40], r.body);
        assert!(
            r.body.starts_with("parse error at line 1, col "),
            "{}",
            r.body
        );
        assert!(r.body.contains(want), "{}", r.body);
    }
    // The deepest tree the limits allow still evaluates on a worker thread's stack:
    // 127 aggregations around a 255-operator chain.
    let deepest = nest(
        "sum(",
        &format!("count_over_time({{a=\"b\"}}[1m]){}", " + 1".repeat(255)),
        ")",
        127,
    );
    let r = query_form(&loki, "/loki/api/v1/query", &deepest, &instant).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("\"256\"]"), "{}", r.body);
    let filters = format!(
        "{{a=\"b\"}} | logfmt | {}",
        nest("(", &vec!["x=\"1\""; 256].join(" or "), ")", 127)
    );
    let r = query_form(&loki, "/loki/api/v1/query_range", &filters, &range).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("\"x=1\""), "{}", r.body);
    loki.shutdown().await;
}
