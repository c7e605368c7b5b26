//! Black-box tests of the push API over real HTTP: every status code and message.

mod common;

use common::*;
use fake_loki::{Config, FakeLoki, FaultAction, FaultRule};

async fn start(config: Config) -> FakeLoki {
    FakeLoki::start(config).await.unwrap()
}

#[tokio::test]
async fn captured_agent_bodies_are_accepted_and_stored_exactly() {
    let loki = start(Config::for_tests()).await;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../wire/testdata/push");
    for agent in ["promtail-3.6.15", "vector-0.57.0", "fluent-bit-5.1.1"] {
        let req: serde_json::Value = serde_json::from_slice(
            &std::fs::read(format!("{dir}/{agent}/push.request.json")).unwrap(),
        )
        .unwrap();
        let body = std::fs::read(format!("{dir}/{agent}/push.body")).unwrap();
        let mut headers: Vec<(String, String)> = req["headers"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| {
                !k.eq_ignore_ascii_case("content-length") && !k.eq_ignore_ascii_case("connection")
            })
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        // One tenant per agent, so each check sees only its own entries.
        for (k, v) in headers.iter_mut() {
            if k.eq_ignore_ascii_case("x-scope-orgid") {
                *v = agent.replace('.', "_");
            }
        }
        let h: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let r = send(
            "POST",
            &format!("{}/loki/api/v1/push", loki.url()),
            &h,
            body,
        )
        .await;
        assert_eq!(r.status, 204, "{agent}: {}", r.body);
        assert!(r.body.is_empty());

        let decoded: serde_json::Value = serde_json::from_slice(
            &std::fs::read(format!("{dir}/{agent}/push.decoded.json")).unwrap(),
        )
        .unwrap();
        let mut want: Vec<(String, i64, String)> = Vec::new();
        for s in decoded["streams"].as_array().unwrap() {
            let (labels, values) = if let Some(l) = s.get("labels") {
                (l.as_str().unwrap().to_string(), &s["entries"])
            } else {
                let m = s["stream"].as_object().unwrap();
                let l = loki_wire::LabelSet::from_pairs(
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())),
                );
                (l.to_string(), &s["values"])
            };
            for v in values.as_array().unwrap() {
                want.push((
                    labels.clone(),
                    v[0].as_str().unwrap().parse().unwrap(),
                    v[1].as_str().unwrap().to_string(),
                ));
            }
        }
        let got: Vec<(String, i64, String)> = loki
            .entries(&agent.replace('.', "_"))
            .into_iter()
            .map(|e| (e.labels.to_string(), e.ts, e.line))
            .collect();
        assert_eq!(got, want, "{agent}");
    }
    loki.shutdown().await;
}

#[tokio::test]
async fn tenant_header_rules() {
    let loki = start(Config::for_tests()).await;
    let req = request(&[("{a=\"b\"}", vec![(now_ns(), "x", vec![])])]);
    let url = format!("{}/loki/api/v1/push", loki.url());
    let r = send(
        "POST",
        &url,
        &[("Content-Type", "application/x-protobuf")],
        proto_body(&req),
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (401, "no org id\n"));
    let r = push(&loki.url(), "a b", &req).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (400, "tenant ID 'a b' contains unsupported character ' '\n")
    );
    let r = push(&loki.url(), "a|b", &req).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (400, "multiple org IDs present\n")
    );
    let r = push(&loki.url(), &"x".repeat(151), &req).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (400, "tenant ID is too long: max 150 characters\n")
    );
    assert!(loki.entries("a").is_empty());
    loki.shutdown().await;
}

#[tokio::test]
async fn auth_disabled_uses_tenant_fake_and_ignores_the_header() {
    let loki = start(Config {
        auth_enabled: false,
        ..Config::for_tests()
    })
    .await;
    let req = request(&[("{a=\"b\"}", vec![(now_ns(), "x", vec![])])]);
    assert_eq!(push(&loki.url(), "someone", &req).await.status, 204);
    assert_eq!(loki.entries("fake").len(), 1);
    assert!(loki.entries("someone").is_empty());
    loki.shutdown().await;
}

#[tokio::test]
async fn malformed_bodies_get_400_and_store_nothing() {
    let loki = start(Config::for_tests()).await;
    let url = format!("{}/loki/api/v1/push", loki.url());
    let h = [
        ("Content-Type", "application/x-protobuf"),
        ("X-Scope-OrgID", "t"),
    ];
    let r = send("POST", &url, &h, b"definitely not snappy".to_vec()).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (400, "snappy: corrupt input\n")
    );
    let r = send(
        "POST",
        &url,
        &h,
        loki_wire::snappy::compress(b"\xff\xff\xff"),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.body.starts_with("proto:"), "{}", r.body);
    let hj = [("Content-Type", "application/json"), ("X-Scope-OrgID", "t")];
    let r = send("POST", &url, &hj, b"{\"streams\":[".to_vec()).await;
    assert_eq!(r.status, 400);
    let r = send(
        "POST",
        &url,
        &hj,
        br#"{"streams":[{"stream":{"a":"b"},"values":[[1,"x"]]}]}"#.to_vec(),
    )
    .await;
    assert_eq!(r.status, 400, "a numeric timestamp is refused");
    let he = [
        ("Content-Type", "application/json"),
        ("Content-Encoding", "br"),
        ("X-Scope-OrgID", "t"),
    ];
    let r = send("POST", &url, &he, b"{}".to_vec()).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (400, "Content-Encoding \"br\" not supported\n")
    );
    // One stream with bad labels refuses the whole request, valid streams included.
    let now = now_ns();
    let req = request(&[
        ("{a=\"b\"}", vec![(now, "ok", vec![])]),
        ("{a.b=\"c\"}", vec![(now, "bad", vec![])]),
    ]);
    let r = push(&loki.url(), "t", &req).await;
    assert_eq!(r.status, 400);
    assert!(r.body.starts_with("couldn't parse labels: "), "{}", r.body);
    let hj2 = [("Content-Type", "application/json"), ("X-Scope-OrgID", "t")];
    let r = send(
        "POST",
        &url,
        &hj2,
        format!(r#"{{"streams":[{{"stream":{{"a-b":"c"}},"values":[["{now}","x"]]}}]}}"#)
            .into_bytes(),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.body.starts_with("couldn't parse labels: "), "{}", r.body);
    assert!(loki.entries("t").is_empty());
    let r = send("GET", &url, &h, vec![]).await;
    assert_eq!(r.status, 405);
    loki.shutdown().await;
}

#[tokio::test]
async fn empty_stream_list_is_422() {
    let loki = start(Config::for_tests()).await;
    let r = push(&loki.url(), "t", &request(&[])).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (
            422,
            "error at least one valid stream is required for ingestion\n"
        )
    );
    loki.shutdown().await;
}

#[tokio::test]
async fn json_gzip_and_deflate_bodies() {
    let loki = start(Config::for_tests()).await;
    let url = format!("{}/loki/api/v1/push", loki.url());
    let now = now_ns();
    let body = format!(
        r#"{{"streams":[{{"stream":{{"job":"j"}},"values":[["{now}","gz",{{"trace_id":"abc"}}]]}}]}}"#
    );
    let h = [
        ("Content-Type", "application/json; charset=utf-8"),
        ("Content-Encoding", "gzip"),
        ("X-Scope-OrgID", "t"),
    ];
    assert_eq!(
        send("POST", &url, &h, loki_wire::encoding::gzip(body.as_bytes()))
            .await
            .status,
        204
    );
    let body = format!(
        r#"{{"streams":[{{"stream":{{"job":"j"}},"values":[["{}","deflate"]]}}]}}"#,
        now + 1
    );
    let h = [
        ("Content-Type", "application/json"),
        ("Content-Encoding", "deflate"),
        ("X-Scope-OrgID", "t"),
    ];
    assert_eq!(
        send(
            "POST",
            &url,
            &h,
            loki_wire::encoding::deflate(body.as_bytes())
        )
        .await
        .status,
        204
    );
    let got = loki.entries("t");
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0].metadata,
        vec![("trace_id".to_string(), "abc".to_string())]
    );
    assert_eq!(got[1].line, "deflate");
    // Legacy endpoint and format.
    let legacy = r#"{"streams":[{"labels":"{job=\"old\"}","entries":[{"ts":"2026-01-01T00:00:00Z","line":"legacy"}]}]}"#;
    let h = [
        ("Content-Type", "application/json"),
        ("X-Scope-OrgID", "t2"),
    ];
    let r = send(
        "POST",
        &format!("{}/api/prom/push", loki.url()),
        &h,
        legacy.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(loki.entries("t2")[0].line, "legacy");
    loki.shutdown().await;
}

#[tokio::test]
async fn missing_content_type_is_snappy_protobuf_as_in_loki_3_7() {
    let loki = start(Config::for_tests()).await;
    let req = request(&[("{a=\"b\"}", vec![(now_ns(), "x", vec![])])]);
    let r = send(
        "POST",
        &format!("{}/loki/api/v1/push", loki.url()),
        &[("X-Scope-OrgID", "t")],
        proto_body(&req),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    loki.shutdown().await;
}

#[tokio::test]
async fn partial_failure_keeps_valid_entries_and_answers_400() {
    let mut cfg = Config::for_tests();
    cfg.limits.defaults.max_line_size = 10;
    cfg.limits.defaults.reject_old_samples = true;
    let loki = start(cfg).await;
    let now = now_ns();
    let week = 7 * 24 * 3600 * 1_000_000_000i64;
    let req = request(&[(
        "{app=\"a\"}",
        vec![
            (now, "short", vec![]),
            (now + 1, "this line is too long", vec![]),
            (now + 2, "another line too long", vec![]),
            (now - week - 60_000_000_000, "old", vec![]),
            (now + 3_600_000_000_000, "future", vec![]),
        ],
    )]);
    let r = push(&loki.url(), "t", &req).await;
    assert_eq!(r.status, 400);
    assert!(r.body.ends_with('\n'));
    assert!(r.body.contains("2 errors like: max entry size '10' bytes exceeded for stream '{app=\"a\"}' while adding an entry with length '21' bytes"), "{}", r.body);
    assert!(
        r.body
            .contains("entry for stream '{app=\"a\"}' has timestamp too old: "),
        "{}",
        r.body
    );
    assert!(
        r.body.contains(", oldest acceptable timestamp is: "),
        "{}",
        r.body
    );
    assert!(
        r.body
            .contains("entry for stream '{app=\"a\"}' has timestamp too new: "),
        "{}",
        r.body
    );
    let lines: Vec<String> = loki.entries("t").into_iter().map(|e| e.line).collect();
    assert_eq!(lines, ["short"]);
    let metrics = get(&format!("{}/metrics", loki.url()), &[]).await.body;
    assert!(
        metrics.contains("loki_discarded_samples_total{reason=\"line_too_long\",tenant=\"t\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("loki_distributor_lines_received_total{tenant=\"t\"} 5"),
        "{metrics}"
    );
    loki.shutdown().await;
}

#[tokio::test]
async fn label_limits() {
    let loki = start(Config::for_tests()).await;
    let now = now_ns();
    let many: String = format!(
        "{{{}}}",
        (0..16)
            .map(|i| format!("l{i}=\"v\""))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let r = push(
        &loki.url(),
        "t",
        &request(&[(&many, vec![(now, "x", vec![])])]),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body,
        format!("entry for stream '{many}' has 16 label names; limit 15\n")
    );
    let long_value = format!("{{a=\"{}\"}}", "v".repeat(2049));
    let r = push(
        &loki.url(),
        "t",
        &request(&[(&long_value, vec![(now, "x", vec![])])]),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("has label value too long"), "{}", r.body);
    let dup = "{a=\"1\", a=\"2\"}";
    let r = push(
        &loki.url(),
        "t",
        &request(&[(dup, vec![(now, "x", vec![])])]),
    )
    .await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (
            400,
            "stream '{a=\"1\", a=\"2\"}' has duplicate label name: 'a'\n"
        )
    );
    let r = push(
        &loki.url(),
        "t",
        &request(&[("{}", vec![(now, "x", vec![])])]),
    )
    .await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (
            400,
            "error at least one label pair is required per stream\n"
        )
    );
    assert!(loki.entries("t").is_empty());
    loki.shutdown().await;
}

#[tokio::test]
async fn rate_limit_is_429_and_all_or_nothing() {
    let mut cfg = Config::for_tests();
    cfg.limits.defaults.ingestion_rate_mb = 0.001; // ~1 KiB/s
    cfg.limits.defaults.ingestion_burst_size_mb = 0.001;
    let loki = start(cfg).await;
    let line = "x".repeat(600);
    let now = now_ns();
    let r = push(
        &loki.url(),
        "t",
        &request(&[("{a=\"b\"}", vec![(now, &line, vec![])])]),
    )
    .await;
    assert_eq!(r.status, 204);
    let r = push(
        &loki.url(),
        "t",
        &request(&[(
            "{a=\"b\"}",
            vec![(now + 1, &line, vec![]), (now + 2, "y", vec![])],
        )]),
    )
    .await;
    assert_eq!(r.status, 429);
    assert_eq!(
        r.body,
        "ingestion rate limit exceeded for user t (limit: 1048 bytes/sec) while attempting to ingest '2' lines totaling '601' bytes, reduce log volume or contact your Loki administrator to see if the limit can be increased\n"
    );
    assert!(
        r.headers.get("retry-after").is_none(),
        "Loki never sends Retry-After"
    );
    assert_eq!(loki.entries("t").len(), 1);
    loki.shutdown().await;
}

#[tokio::test]
async fn stream_limit_is_429_for_new_streams_only() {
    let mut cfg = Config::for_tests();
    cfg.limits.defaults.max_global_streams_per_user = 1;
    let loki = start(cfg).await;
    let now = now_ns();
    assert_eq!(
        push(
            &loki.url(),
            "t",
            &request(&[("{s=\"1\"}", vec![(now, "a", vec![])])])
        )
        .await
        .status,
        204
    );
    let r = push(
        &loki.url(),
        "t",
        &request(&[
            ("{s=\"1\"}", vec![(now + 1, "b", vec![])]),
            ("{s=\"2\"}", vec![(now, "c", vec![])]),
        ]),
    )
    .await;
    assert_eq!(r.status, 429);
    assert!(
        r.body.starts_with(
            "maximum active stream limit exceeded when trying to create stream {s=\"2\"}"
        ),
        "{}",
        r.body
    );
    let lines: Vec<String> = loki.entries("t").into_iter().map(|e| e.line).collect();
    assert_eq!(
        lines,
        ["a", "b"],
        "the existing stream still took its entry"
    );
    loki.shutdown().await;
}

#[tokio::test]
async fn too_far_behind_is_400_from_the_ingester() {
    let loki = start(Config::for_tests()).await;
    let now = now_ns();
    let hour = 3_600_000_000_000i64;
    assert_eq!(
        push(
            &loki.url(),
            "t",
            &request(&[("{a=\"b\"}", vec![(now, "new", vec![])])])
        )
        .await
        .status,
        204
    );
    let r = push(
        &loki.url(),
        "t",
        &request(&[(
            "{a=\"b\"}",
            vec![
                (now - 2 * hour, "old", vec![]),
                (now - hour / 2, "ok", vec![]),
            ],
        )]),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(
        r.body
            .contains("reason: 'entry too far behind, entry timestamp is: "),
        "{}",
        r.body
    );
    assert!(
        r.body
            .contains("user 't', total ignored: 1 out of 2 for stream: {a=\"b\"}"),
        "{}",
        r.body
    );
    assert_eq!(loki.entries("t").len(), 2);
    loki.shutdown().await;
}

#[tokio::test]
async fn exact_duplicates_are_dropped() {
    let loki = start(Config::for_tests()).await;
    let now = now_ns();
    let req = request(&[(
        "{a=\"b\"}",
        vec![
            (now, "x", vec![]),
            (now, "y", vec![]),
            (now, "x", vec![("k", "v")]),
        ],
    )]);
    assert_eq!(push(&loki.url(), "t", &req).await.status, 204);
    assert_eq!(push(&loki.url(), "t", &req).await.status, 204);
    assert_eq!(loki.entries("t").len(), 3);
    loki.shutdown().await;
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let loki = start(Config {
        max_recv_msg_size: 1024,
        ..Config::for_tests()
    })
    .await;
    let big = "x".repeat(4096);
    let req = request(&[("{a=\"b\"}", vec![(now_ns(), &big, vec![])])]);
    let body = loki_wire::snappy::compress(&prost::Message::encode_to_vec(&req));
    assert!(body.len() < 1024, "snappy squeezes the repeated line");
    let r = send(
        "POST",
        &format!("{}/loki/api/v1/push", loki.url()),
        &[
            ("X-Scope-OrgID", "t"),
            ("Content-Type", "application/x-protobuf"),
        ],
        vec![0u8; 2048],
    )
    .await;
    assert_eq!(r.status, 413);
    assert!(loki.entries("t").is_empty());
    loki.shutdown().await;
}

#[tokio::test]
async fn loki_defaults_add_service_name_and_detected_level() {
    let loki = start(Config::for_tests_with_loki_defaults()).await;
    let now = now_ns();
    let req = request(&[
        (
            "{app=\"api\", namespace=\"shop\"}",
            vec![(now, "level=error msg=boom", vec![])],
        ),
        ("{}", vec![(now, "no labels at all", vec![])]),
    ]);
    assert_eq!(push(&loki.url(), "t", &req).await.status, 204);
    let got = loki.entries("t");
    assert_eq!(
        got[0].labels.to_string(),
        "{app=\"api\", namespace=\"shop\", service_name=\"api\"}"
    );
    assert_eq!(
        got[0].metadata,
        vec![("detected_level".to_string(), "error".to_string())]
    );
    assert_eq!(
        got[1].labels.to_string(),
        "{service_name=\"unknown_service\"}"
    );
    loki.shutdown().await;
}

#[tokio::test]
async fn limits_file_with_overrides_applies_per_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("limits.yaml");
    std::fs::write(&path, "limits_config:\n  max_line_size: 8\n  reject_old_samples: false\n  discover_service_name: []\n  discover_log_levels: false\noverrides:\n  roomy:\n    max_line_size: 1KB\n").unwrap();
    let loki = start(Config {
        limits: fake_loki::limits::LimitsConfig::from_file(&path).unwrap(),
        ..Config::for_tests()
    })
    .await;
    let req = request(&[("{a=\"b\"}", vec![(now_ns(), "longer than eight", vec![])])]);
    assert_eq!(push(&loki.url(), "tight", &req).await.status, 400);
    assert_eq!(push(&loki.url(), "roomy", &req).await.status, 204);
    loki.shutdown().await;
}

#[tokio::test]
async fn injected_faults() {
    let loki = start(Config::for_tests()).await;
    let req = request(&[("{a=\"b\"}", vec![(now_ns(), "x", vec![])])]);
    loki.faults()
        .add(FaultRule::status(429).retry_after(3).count(1))
        .unwrap();
    let r = push(&loki.url(), "t", &req).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.headers.get("retry-after").unwrap(), "3");
    assert!(loki.entries("t").is_empty());
    // Over HTTP: discard for one tenant only.
    let faults = format!("{}/fake-loki/api/v1/faults", loki.url());
    let r = send(
        "POST",
        &faults,
        &[],
        br#"{"action":"discard","tenant":"t","count":1}"#.to_vec(),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(push(&loki.url(), "t", &req).await.status, 204);
    assert!(loki.entries("t").is_empty(), "discarded silently");
    assert_eq!(push(&loki.url(), "t", &req).await.status, 204);
    assert_eq!(loki.entries("t").len(), 1);
    // A reset answers nothing at all.
    loki.faults()
        .add(FaultRule::new(FaultAction::Reset).count(1))
        .unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let r = client
        .request(
            http::Request::post(format!("{}/loki/api/v1/push", loki.url()))
                .header("X-Scope-OrgID", "t")
                .body(http_body_util::Full::new(bytes::Bytes::from(proto_body(
                    &req,
                ))))
                .unwrap(),
        )
        .await;
    assert!(r.is_err(), "the connection was reset");
    let r = send("POST", &faults, &[], br#"{"action":"explode"}"#.to_vec()).await;
    assert_eq!(r.status, 400);
    let r = send("DELETE", &faults, &[], vec![]).await;
    assert_eq!(r.status, 204);
    loki.shutdown().await;
}

#[tokio::test]
async fn data_dir_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        data_dir: Some(dir.path().to_path_buf()),
        ..Config::for_tests()
    };
    let loki = start(cfg.clone()).await;
    let now = now_ns();
    let req = request(&[(
        "{a=\"b\"}",
        vec![(now, "x", vec![("k", "v")]), (now + 1, "y", vec![])],
    )]);
    assert_eq!(push(&loki.url(), "t", &req).await.status, 204);
    let before = loki.entries("t");
    loki.shutdown().await;
    let loki = start(cfg).await;
    assert_eq!(loki.entries("t"), before);
    // Re-pushing after the restart is de-duplicated against the replayed entries.
    assert_eq!(push(&loki.url(), "t", &req).await.status, 204);
    assert_eq!(loki.entries("t"), before);
    loki.shutdown().await;
}

#[tokio::test]
async fn ops_endpoints() {
    let loki = start(Config::for_tests()).await;
    let r = get(&format!("{}/ready", loki.url()), &[]).await;
    assert_eq!((r.status, r.body.as_str()), (200, "ready\n"));
    let r = get(&format!("{}/loki/api/v1/status/buildinfo", loki.url()), &[]).await;
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    for k in [
        "version",
        "revision",
        "branch",
        "buildUser",
        "buildDate",
        "goVersion",
    ] {
        assert!(v.get(k).is_some(), "{k}");
    }
    let r = get(&format!("{}/nope", loki.url()), &[]).await;
    assert_eq!(r.status, 404);
    let now = now_ns();
    push(
        &loki.url(),
        "t",
        &request(&[("{a=\"b\"}", vec![(now, "xy", vec![])])]),
    )
    .await;
    let r = get(&format!("{}/fake-loki/api/v1/stats", loki.url()), &[]).await;
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["tenants"]["t"]["entries"], 1);
    assert_eq!(v["tenants"]["t"]["bytes"], 2);
    assert_eq!(v["tenants"]["t"]["last_entry_ns"], now.to_string());
    loki.shutdown().await;
}

#[tokio::test]
async fn per_stream_rate_limit_is_429_and_keeps_what_fit() {
    let mut cfg = Config::for_tests();
    cfg.limits.defaults.per_stream_rate_limit = 100;
    cfg.limits.defaults.per_stream_rate_limit_burst = 100;
    let loki = start(cfg).await;
    let now = now_ns();
    let line = "y".repeat(60);
    let req = request(&[(
        "{a=\"b\"}",
        vec![(now, &line, vec![]), (now + 1, &line, vec![])],
    )]);
    let r = push(&loki.url(), "t", &req).await;
    assert_eq!(r.status, 429);
    assert!(r.body.starts_with("Per stream rate limit exceeded (limit: 100 B/sec) while attempting to ingest for stream '{a=\"b\"}' totaling 60B"), "{}", r.body);
    assert_eq!(
        loki.entries("t").len(),
        1,
        "the entry within the burst was stored"
    );
    loki.shutdown().await;
}

#[tokio::test]
async fn latency_fault_delays_then_accepts() {
    let loki = start(Config::for_tests()).await;
    loki.faults()
        .add(
            FaultRule::new(FaultAction::Latency)
                .latency_ms(300)
                .count(1),
        )
        .unwrap();
    let started = std::time::Instant::now();
    let r = push(
        &loki.url(),
        "t",
        &request(&[("{a=\"b\"}", vec![(now_ns(), "x", vec![])])]),
    )
    .await;
    assert_eq!(r.status, 204);
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    assert_eq!(loki.entries("t").len(), 1);
    loki.shutdown().await;
}

#[test]
fn the_binary_serves_and_stops_on_sigterm() {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fake-loki"))
        .args(["--listen", "127.0.0.1:0"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut addr = None;
    let mut lines = BufReader::new(stderr).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.split("listening on ").nth(1) {
            addr = rest.split_whitespace().next().map(str::to_string);
            break;
        }
    }
    let addr = addr.expect("fake-loki printed its address");
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.by_ref() {});
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let r = rt.block_on(get(&format!("http://{addr}/ready"), &[]));
    assert_eq!(r.status, 200);
    // The workspace forbids unsafe, so SIGTERM goes through kill(1).
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_fake-loki"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in ["--listen", "--auth-enabled", "--limits", "--data-dir"] {
        assert!(help.contains(flag), "{flag} in --help");
    }
}

#[tokio::test]
async fn max_line_size_truncate_keeps_a_truncated_line() {
    let mut cfg = Config::for_tests();
    cfg.limits.defaults.max_line_size = 5;
    cfg.limits.defaults.max_line_size_truncate = true;
    let loki = start(cfg).await;
    let r = push(
        &loki.url(),
        "t",
        &request(&[("{a=\"b\"}", vec![(now_ns(), "abcdéfgh", vec![])])]),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    // 5 bytes would split 'é'; the cut falls back to the character boundary.
    assert_eq!(loki.entries("t")[0].line, "abcd");
    let metrics = get(&format!("{}/metrics", loki.url()), &[]).await.body;
    assert!(
        metrics.contains("loki_mutated_samples_total{reason=\"line_too_long\",tenant=\"t\"} 1"),
        "{metrics}"
    );
    loki.shutdown().await;
}

#[tokio::test]
async fn invalid_utf8_lines_are_kept_with_replacement_characters() {
    let loki = start(Config::for_tests()).await;
    let mut req = request(&[("{a=\"b\"}", vec![(now_ns(), "x", vec![])])]);
    req.streams[0].entries[0].line = bytes::Bytes::from_static(b"ok \xff\xfe end");
    assert_eq!(push(&loki.url(), "t", &req).await.status, 204);
    assert_eq!(loki.entries("t")[0].line, "ok \u{fffd}\u{fffd} end");
    loki.shutdown().await;
}
