//! LogQL metric features over real HTTP: `unwrap` and its range functions, vector
//! matching, `label_replace`, per tenant, with Loki's error answers.

mod common;

use common::*;
use fake_loki::{Config, FakeLoki};
use serde_json::{json, Value};

const S: i64 = 1_000_000_000;

fn enc(q: &str) -> String {
    form_urlencoded::byte_serialize(q.as_bytes()).collect()
}

async fn instant(url: &str, tenant: &str, q: &str, t: i64) -> (u16, Value, String) {
    let r = get(
        &format!("{url}/loki/api/v1/query?query={}&time={t}", enc(q)),
        &[("X-Scope-OrgID", tenant)],
    )
    .await;
    let v = serde_json::from_str(&r.body).unwrap_or(Value::Null);
    (r.status, v, r.body)
}

/// `[(metric, value)]` of an instant vector, sorted by metric.
fn vector(v: &Value) -> Vec<(Value, String)> {
    let mut out: Vec<(Value, String)> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["metric"].clone(),
                s["value"][1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort_by_key(|(m, _)| m.to_string());
    out
}

#[tokio::test]
async fn unwrap_matching_and_label_replace_over_http() {
    let mut cfg = Config::for_tests();
    cfg.limits.defaults.reject_old_samples = false;
    let loki = FakeLoki::start(cfg).await.unwrap();
    let url = loki.url();
    let base = now_ns() / S * S - 60 * S;
    let api = request(&[
        (
            r#"{app="api", pod="p1"}"#,
            vec![
                (base + S, "level=info took=120ms bytes=1KiB", vec![]),
                (base + 2 * S, "level=info took=80ms bytes=3KiB", vec![]),
                (base + 3 * S, "level=error took=oops bytes=1KiB", vec![]),
            ],
        ),
        (
            r#"{app="api", pod="p2"}"#,
            vec![(base + 2 * S, "level=info took=1.5s bytes=10B", vec![])],
        ),
        (
            r#"{app="web", pod="p3"}"#,
            vec![(base + 2 * S, "level=info took=2s bytes=2B", vec![])],
        ),
    ]);
    assert_eq!(push(&url, "dev", &api).await.status, 204);
    // Another tenant's data with the same labels never counts.
    let other = request(&[(
        r#"{app="api", pod="p1"}"#,
        vec![(base + 2 * S, "level=info took=999s bytes=1GiB", vec![])],
    )]);
    assert_eq!(push(&url, "ops", &other).await.status, 204);
    let at = base + 10 * S;

    let (status, v, body) = instant(
        &url,
        "dev",
        r#"max_over_time({app=~"api|web"} | logfmt | unwrap duration(took) | __error__="" [1m]) by (app)"#,
        at,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        vector(&v),
        vec![
            (json!({"app": "api"}), "1.5".to_string()),
            (json!({"app": "web"}), "2".to_string())
        ]
    );

    let (_, v, _) = instant(
        &url,
        "dev",
        r#"sum by (pod) (sum_over_time({app="api"} | logfmt | unwrap bytes(bytes) [1m]))"#,
        at,
    )
    .await;
    assert_eq!(
        vector(&v),
        vec![
            (json!({"pod": "p1"}), "5120".to_string()),
            (json!({"pod": "p2"}), "10".to_string())
        ]
    );

    // Each pod's share of its app's lines: many-to-one matching, named labels copied.
    let per_pod = r#"sum by (app, pod) (count_over_time({app=~".+"}[1m]))"#;
    let per_app = r#"label_replace(sum by (app) (count_over_time({app=~".+"}[1m])), "team", "team-$1", "app", "(.*)")"#;
    let (status, v, body) = instant(
        &url,
        "dev",
        &format!("{per_pod} / on (app) group_left (team) {per_app}"),
        at,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        vector(&v),
        vec![
            (
                json!({"app": "api", "pod": "p1", "team": "team-api"}),
                "0.75".to_string()
            ),
            (
                json!({"app": "api", "pod": "p2", "team": "team-api"}),
                "0.25".to_string()
            ),
            (
                json!({"app": "web", "pod": "p3", "team": "team-web"}),
                "1".to_string()
            )
        ]
    );

    // Loki's errors: a value unwrap cannot convert, one-to-one ambiguity, parse rules.
    let (status, _, body) = instant(
        &url,
        "dev",
        r#"sum(sum_over_time({app="api"} | logfmt | unwrap duration(took) [1m]))"#,
        at,
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body.starts_with("pipeline error: 'SampleExtractionErr'")
            && body.contains(r#"__error_details__="time: invalid duration \"oops\"""#),
        "{body}"
    );
    let (status, _, body) =
        instant(&url, "dev", &format!("{per_pod} / on (app) {per_app}"), at).await;
    assert_eq!(
        (status, body.as_str()),
        (
            400,
            "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
        )
    );
    let (status, _, body) = instant(
        &url,
        "dev",
        r#"sum_over_time({app="api"} | logfmt | unwrap took [1m]) by (pod)"#,
        at,
    )
    .await;
    assert_eq!(
        (status, body.as_str()),
        (
            400,
            "parse error : grouping not allowed for sum_over_time aggregation"
        )
    );

    // A range query: first/last per step over the unwrapped values.
    let r = get(
        &format!(
            "{url}/loki/api/v1/query_range?query={}&start={}&end={}&step=1s",
            enc(r#"last_over_time({app="api", pod="p1"} | logfmt | unwrap bytes(bytes) | __error__="" [2s]) by (pod)"#),
            base + S,
            base + 4 * S
        ),
        &[("X-Scope-OrgID", "dev")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    let secs = |k: i64| (base + k * S) / S;
    assert_eq!(
        v["data"]["result"],
        json!([{"metric": {"pod": "p1"}, "values": [
            [secs(1), "1024"], [secs(2), "3072"], [secs(3), "1024"], [secs(4), "1024"]
        ]}])
    );
    loki.shutdown().await;
}
