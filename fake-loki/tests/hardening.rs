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

/// Path, query, extra form pairs, expected part of the 400 body.
type Case<'a> = (&'a str, String, &'a [(&'a str, &'a str)], &'a str);

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
    let cases: Vec<Case<'_>> = vec![
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

#[tokio::test]
async fn extreme_time_ranges_are_refused_without_overflow() {
    let loki = FakeLoki::start(Config::for_tests()).await.unwrap();
    let ts = now_ns();
    let pushed = push(
        &loki.url(),
        "t",
        &request(&[("{a=\"b\"}", vec![(ts, "x", vec![])])]),
    )
    .await;
    assert_eq!(pushed.status, 204);
    let base = format!("{}/loki/api/v1/query_range", loki.url());
    let count = "query=count_over_time(%7Ba%3D%22b%22%7D%5B1m%5D)";
    let log = "query=%7Ba%3D%22b%22%7D";
    let points = "exceeded maximum resolution of 11,000 points per time series. Try increasing the value of the step parameter";
    let cases = [
        // Go's Time.Sub saturates at 292 years, so the point count is far over 11,000.
        (format!("{count}&start=-9000000000000000000&end=9000000000000000000&step=60"), points.to_string()),
        (format!("{count}&start=-9223372036854775808&end=9223372036854775807&step=1"), points.to_string()),
        // The default step (range/250) passes the point rule; the 721h length limit does not.
        (
            format!("{count}&start=-9000000000000000000&end=9000000000000000000"),
            "the query time range exceeds the limit (query length: 2562047h47m16.854775807s, limit: 721h0m0s)".into(),
        ),
        (
            format!("{log}&start=-9000000000000000000&end=9000000000000000000&interval=9223372036"),
            "the query time range exceeds the limit (query length: 2562047h47m16.854775807s, limit: 721h0m0s)".into(),
        ),
        (
            format!("{count}&start=-1.0e300&end=1.0e300&step=1000000000"),
            "the query time range exceeds the limit (query length: 2562047h47m16.854775807s, limit: 721h0m0s)".into(),
        ),
        (
            format!("{count}&start=-1.0e300&end=1.0e300&step=1e300"),
            "could not parse 'step' parameter: cannot parse \"1e300\" to a valid duration. It overflows int64".into(),
        ),
        (
            format!("{log}&start=1&end=2&interval=-1e300"),
            "could not parse 'interval' parameter: cannot parse \"-1e300\" to a valid duration. It overflows int64".into(),
        ),
    ];
    for (q, want) in &cases {
        let r = get(&format!("{base}?{q}"), &T).await;
        assert_eq!((r.status, r.body.as_str()), (400, want.as_str()), "{q}");
    }
    // Extremes that are not refused are answered, not a crash.
    for q in [
        format!("{count}&start=9223372036854775000&end=9223372036854775807&step=1"),
        format!("{count}&start=-9223372036854775808&end=-9223372036854775000&step=1"),
        format!("{log}&start=-9223372036854775808&end=-9223372036854775000&interval=9e9"),
        format!("{log}&end=-9223372036854775808&since=9999999h"),
    ] {
        let r = get(&format!("{base}?{q}"), &T).await;
        assert_eq!(r.status, 200, "{q}: {}", r.body);
    }
    for time in [
        "-9223372036854775808",
        "9223372036854775807",
        "-1.0e300",
        "1.0e300",
    ] {
        let url = format!(
            "{}/loki/api/v1/query?query=rate(%7Ba%3D%22b%22%7D%5B1h%5D%20offset%201h)&time={time}",
            loki.url()
        );
        let r = get(&url, &T).await;
        assert_eq!(r.status, 200, "{time}: {}", r.body);
    }
    // The server still answers pushes and reads afterwards.
    let r = get(&format!("{base}?{log}&start={}&end={}", ts - 1, ts + 1), &T).await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("\"x\""), "{}", r.body);
    loki.shutdown().await;
}

#[tokio::test]
async fn empty_label_name_is_routed_like_loki() {
    let loki = FakeLoki::start(Config::for_tests()).await.unwrap();
    let url = loki.url();
    // Loki's gorilla/mux router cleans the path first: 301 to the cleaned path.
    for (path, location) in [
        ("/loki/api/v1/label//values", "/loki/api/v1/label/values"),
        (
            "/loki/api/v1/label//values?start=1",
            "/loki/api/v1/label/values?start=1",
        ),
        ("//loki/api/v1/labels", "/loki/api/v1/labels"),
        (
            "/loki/api/v1/label/a/../values",
            "/loki/api/v1/label/values",
        ),
        ("/loki/api/v1/./push", "/loki/api/v1/push"),
    ] {
        let r = get(&format!("{url}{path}"), &T).await;
        assert_eq!(r.status, 301, "{path}");
        assert_eq!(r.headers["location"], location, "{path}");
        assert_eq!(r.body, "", "{path}");
    }
    // The cleaned path has no `{name}` segment: not a route.
    for path in ["/loki/api/v1/label/values", "/loki/api/v1/label/a/b/values"] {
        let r = get(&format!("{url}{path}"), &T).await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (404, "404 page not found\n"),
            "{path}"
        );
    }
    let r = get(&format!("{url}/loki/api/v1/label/a/values"), &T).await;
    assert_eq!(r.status, 200, "{}", r.body);
    loki.shutdown().await;
}

/// Reads until EOF or `deadline`; true when the server closed the connection.
async fn closed_by_server(s: &mut tokio::net::TcpStream, deadline: std::time::Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 4096];
    let end = tokio::time::Instant::now() + deadline;
    loop {
        match tokio::time::timeout_at(end, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn slow_headers_and_idle_connections_are_closed() {
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;
    let mut config = Config::for_tests();
    config.header_read_timeout = Some(Duration::from_millis(500));
    config.idle_timeout = Some(Duration::from_millis(800));
    let loki = FakeLoki::start(config).await.unwrap();
    // Slowloris: one header byte every 100 ms never completes a request head.
    let mut slow = tokio::net::TcpStream::connect(loki.addr()).await.unwrap();
    let started = std::time::Instant::now();
    let sender = async {
        for b in b"GET /ready HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        {
            if slow.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    sender.await;
    assert!(closed_by_server(&mut slow, Duration::from_secs(5)).await);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // A connection that never sends anything, and one idle after a request.
    let mut silent = tokio::net::TcpStream::connect(loki.addr()).await.unwrap();
    let mut used = tokio::net::TcpStream::connect(loki.addr()).await.unwrap();
    used.write_all(b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(closed_by_server(&mut silent, Duration::from_secs(5)).await);
    assert!(closed_by_server(&mut used, Duration::from_secs(5)).await);
    // The server still serves new connections.
    assert_eq!(get(&format!("{}/ready", loki.url()), &T).await.status, 200);
    loki.shutdown().await;
}

#[tokio::test]
async fn open_connections_are_capped() {
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;
    let mut config = Config::for_tests();
    config.max_connections = 2;
    config.header_read_timeout = None;
    config.idle_timeout = None;
    let loki = FakeLoki::start(config).await.unwrap();
    let a = tokio::net::TcpStream::connect(loki.addr()).await.unwrap();
    let b = tokio::net::TcpStream::connect(loki.addr()).await.unwrap();
    // The third is queued by the kernel but not served while two are open.
    let mut c = tokio::net::TcpStream::connect(loki.addr()).await.unwrap();
    c.write_all(b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    use tokio::io::AsyncReadExt;
    let early = tokio::time::timeout(Duration::from_millis(300), c.read(&mut buf)).await;
    assert!(early.is_err(), "served past the cap: {early:?}");
    drop(a);
    let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
        .await
        .expect("served once a slot is free")
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
    drop(b);
    loki.shutdown().await;
}

#[tokio::test]
async fn a_flipped_byte_in_the_data_dir_loses_one_push_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_tests();
    config.data_dir = Some(dir.path().to_path_buf());
    let ts = now_ns();
    let loki = FakeLoki::start(config.clone()).await.unwrap();
    let lines: Vec<String> = (0..20).map(|i| format!("line {i:02}")).collect();
    for (i, l) in lines.iter().enumerate() {
        let req = request(&[("{a=\"b\"}", vec![(ts + i as i64, l.as_str(), vec![])])]);
        assert_eq!(push(&loki.url(), "t", &req).await.status, 204);
    }
    loki.shutdown().await;
    let path = dir.path().join("tenants/t.wal");
    let mut bytes = std::fs::read(&path).unwrap();
    let len = bytes.len();
    let rec = len / 20;
    bytes[10 * rec + rec / 2] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();

    let loki = FakeLoki::start(config).await.unwrap();
    let got: Vec<String> = loki.entries("t").into_iter().map(|e| e.line).collect();
    let want: Vec<String> = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 10)
        .map(|(_, l)| l.clone())
        .collect();
    assert_eq!(got, want);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), len as u64);
    let m = get(&format!("{}/metrics", loki.url()), &[]).await.body;
    assert!(
        m.contains(&format!(
            "fake_loki_data_dir_corrupt_bytes_total{{tenant=\"t\"}} {rec}"
        )),
        "{m}"
    );
    loki.shutdown().await;
}

#[tokio::test]
async fn metrics_hide_stream_labels_and_operator_endpoints_take_a_token() {
    let mut config = Config::for_tests();
    config.admin_token = Some("s3cret".into());
    let loki = FakeLoki::start(config).await.unwrap();
    let url = loki.url();
    let req = request(&[("{app=\"secret-app\"}", vec![(now_ns(), "x", vec![])])]);
    assert_eq!(push(&url, "t", &req).await.status, 204);
    let m = get(&format!("{url}/metrics"), &[]).await;
    assert_eq!(m.status, 200);
    assert!(!m.body.contains("secret-app"), "{}", m.body);
    assert!(
        m.body
            .contains("loki_fake_tenant_last_push_age_seconds{tenant=\"t\"}"),
        "{}",
        m.body
    );
    for path in [
        "/fake-loki/api/v1/usage",
        "/fake-loki/api/v1/usage?tenant=t",
        "/fake-loki/api/v1/stats",
        "/fake-loki/api/v1/faults",
    ] {
        for auth in [
            None,
            Some("Bearer wrong"),
            Some("s3cret"),
            Some("Basic s3cret"),
        ] {
            let h: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", *a)).collect();
            let r = get(&format!("{url}{path}"), &h).await;
            assert_eq!(
                (r.status, r.body.as_str()),
                (401, "fake-loki: missing or wrong admin token\n"),
                "{path} {auth:?}"
            );
        }
        let r = get(
            &format!("{url}{path}"),
            &[("Authorization", "Bearer s3cret")],
        )
        .await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
    }
    let r = get(
        &format!("{url}/fake-loki/api/v1/stats"),
        &[("Authorization", "Bearer s3cret")],
    )
    .await;
    assert!(r.body.contains("\"t\""), "{}", r.body);
    // Adding a fault needs the token too.
    let rule = br#"{"action":"status","status":503}"#.to_vec();
    let r = send(
        "POST",
        &format!("{url}/fake-loki/api/v1/faults"),
        &[],
        rule.clone(),
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(push(&url, "t", &req).await.status, 204);
    loki.shutdown().await;
}
