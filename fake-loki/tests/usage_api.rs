//! The usage ledger and freshness gauges over real HTTP.

mod common;

use common::*;
use fake_loki::{Config, FakeLoki};
use serde_json::Value;

#[tokio::test]
async fn usage_counts_lines_bytes_streams_pushes_and_rejections_per_tenant_and_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::for_tests();
    cfg.metrics_stream_labels = true;
    cfg.limits.defaults.max_line_size = 8;
    cfg.data_dir = Some(dir.path().to_path_buf());
    let loki = FakeLoki::start(cfg.clone()).await.unwrap();
    let now = now_ns();
    let req = request(&[
        (
            "{cluster=\"ops\", app=\"a\"}",
            vec![
                (now, "1234", vec![("k", "vv")]),
                (now + 1, "too long line", vec![]),
            ],
        ),
        ("{cluster=\"ops\", app=\"b\"}", vec![(now, "xy", vec![])]),
        ("{cluster=\"dev\", app=\"a\"}", vec![(now, "z", vec![])]),
    ]);
    assert_eq!(push(&loki.url(), "t1", &req).await.status, 400);
    let ok = request(&[(
        "{cluster=\"ops\", app=\"a\"}",
        vec![(now + 2, "more", vec![])],
    )]);
    assert_eq!(push(&loki.url(), "t1", &ok).await.status, 204);

    let usage_url = format!("{}/fake-loki/api/v1/usage?by=tenant,cluster", loki.url());
    let r = get(&usage_url, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{v}");
    let dev = &rows[0];
    assert_eq!(
        (
            dev["cluster"].as_str(),
            dev["lines"].as_u64(),
            dev["bytes"].as_u64()
        ),
        (Some("dev"), Some(1), Some(1))
    );
    let ops = &rows[1];
    assert_eq!(ops["tenant"], "t1");
    assert_eq!(ops["lines"], 3);
    assert_eq!(ops["bytes"], 4 + 2 + 4);
    assert_eq!(
        ops["loki_bytes"],
        4 + 3 + 2 + 4,
        "structured metadata counts as Loki counts it"
    );
    assert_eq!(ops["streams"], 2);
    assert_eq!(ops["pushes"], 2);
    assert_eq!(ops["rejected"]["line_too_long"], 1);

    let r = get(
        &format!("{}/fake-loki/api/v1/usage?by=nope", loki.url()),
        &[],
    )
    .await;
    assert_eq!(r.status, 400);

    let metrics = get(&format!("{}/metrics", loki.url()), &[]).await.body;
    assert!(
        metrics.contains("loki_fake_tenant_last_push_age_seconds{tenant=\"t1\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("loki_fake_stream_last_push_age_seconds{tenant=\"t1\",stream=\"{app=\\\"a\\\", cluster=\\\"ops\\\"}\"}"), "{metrics}");

    // Kept across a restart with --data-dir.
    loki.shutdown().await;
    let loki = FakeLoki::start(cfg).await.unwrap();
    let usage_url = format!("{}/fake-loki/api/v1/usage?by=tenant,cluster", loki.url());
    let again: Value = serde_json::from_str(&get(&usage_url, &[]).await.body).unwrap();
    assert_eq!(again, v);
    loki.shutdown().await;
}
