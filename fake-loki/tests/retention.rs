//! Retention as Loki's compactor applies it (per tenant, per stream rule, the query
//! lookback), and label time ranges as Loki answers them, over real HTTP with a manual
//! clock: time is moved, never waited for.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;
use fake_loki::limits::LimitsConfig;
use fake_loki::{Clock, Config, FakeLoki};
use proptest::prelude::*;
use serde_json::Value;

const HOUR: i64 = 3_600_000_000_000;
const DAY: i64 = 24 * HOUR;
/// "Now" for the manual clock: 2026-11-18T22:13:20Z.
const T0: i64 = 1_795_500_000_000_000_000;

/// Limits YAML that does not get in a test's way, plus `extra` (more `limits_config`
/// keys, then `overrides:`).
fn limits(limits_config: &str, overrides: &str) -> LimitsConfig {
    let yaml = format!(
        "limits_config:\n  reject_old_samples: false\n  discover_service_name: []\n  \
         discover_log_levels: false\n  ingestion_rate_mb: 1024\n  ingestion_burst_size_mb: 1024\n  \
         max_query_length: 0\n{limits_config}overrides:\n{overrides}"
    );
    LimitsConfig::from_yaml(&yaml).unwrap()
}

fn config(limits: LimitsConfig, clock: &Clock) -> Config {
    Config {
        limits,
        clock: clock.clone(),
        retention_sweep_interval: None,
        ..Config::for_tests()
    }
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Timestamps returned by a forward log query over `[start, end)`.
async fn query_ts(url: &str, tenant: &str, q: &str, start: i64, end: i64) -> Vec<i64> {
    let r = get(
        &format!(
            "{url}/loki/api/v1/query_range?query={}&start={start}&end={end}&limit=5000&direction=forward",
            enc(q)
        ),
        &[("X-Scope-OrgID", tenant)],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    let mut out: Vec<i64> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["values"].as_array().unwrap().clone())
        .map(|e| e[0].as_str().unwrap().parse().unwrap())
        .collect();
    out.sort();
    out
}

async fn get_json(url: &str, tenant: &str) -> Value {
    let r = get(url, &[("X-Scope-OrgID", tenant)]).await;
    assert_eq!(r.status, 200, "{url}: {}", r.body);
    serde_json::from_str(&r.body).unwrap()
}

async fn stats(url: &str, tenant: &str) -> Value {
    let r = get(&format!("{url}/fake-loki/api/v1/stats"), &[]).await;
    let v: Value = serde_json::from_str(&r.body).unwrap();
    v["tenants"][tenant].clone()
}

/// Pushes one entry per age (oldest first, so none is out of order) to `labels`.
async fn push_ages(url: &str, tenant: &str, labels: &str, now: i64, ages: &[i64]) {
    let mut ts: Vec<i64> = ages.iter().map(|a| now - a).collect();
    ts.sort();
    let lines: Vec<String> = ts.iter().map(|t| format!("entry at {t}")).collect();
    let entries: Vec<TestEntry<'_>> = ts
        .iter()
        .zip(&lines)
        .map(|(t, l)| (*t, l.as_str(), vec![]))
        .collect();
    let r = push(url, tenant, &request(&[(labels, entries)])).await;
    assert_eq!(r.status, 204, "{}", r.body);
}

#[tokio::test]
async fn each_tenant_keeps_its_retention_and_the_sweep_frees_what_expired() {
    let clock = Clock::manual(T0);
    let cfg = config(
        limits(
            "  retention_period: 30d\n",
            "  dev:\n    retention_period: 7d\n  prod:\n    retention_period: 90d\n",
        ),
        &clock,
    );
    let loki = FakeLoki::start(cfg).await.unwrap();
    let url = loki.url();
    let ages = [
        DAY,
        6 * DAY,
        8 * DAY,
        29 * DAY,
        31 * DAY,
        89 * DAY,
        91 * DAY,
    ];
    for t in ["ops", "dev", "prod"] {
        push_ages(&url, t, r#"{app="a"}"#, T0, &ages).await;
    }
    let kept = |days: i64| -> Vec<i64> {
        let mut v: Vec<i64> = ages
            .iter()
            .filter(|a| **a <= days * DAY)
            .map(|a| T0 - a)
            .collect();
        v.sort();
        v
    };
    let expect = [("ops", kept(30)), ("dev", kept(7)), ("prod", kept(90))];
    // Hidden before any sweep ran: nothing was deleted yet.
    for (t, want) in &expect {
        let got = query_ts(&url, t, r#"{app="a"}"#, T0 - 100 * DAY, T0 + 1).await;
        assert_eq!(&got, want, "{t} before the sweep");
        assert_eq!(stats(&url, t).await["entries"], 7, "{t}");
    }
    let heap_before = loki
        .state()
        .store
        .read()
        .tenant("dev")
        .unwrap()
        .heap_bytes();

    let swept = fake_loki::retention::sweep(loki.state());
    let by_tenant: Vec<(&str, u64)> = swept
        .iter()
        .map(|(t, e)| (t.as_str(), e.entries))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(by_tenant, [("dev", 5), ("ops", 3), ("prod", 1)]);
    for (t, want) in &expect {
        let s = stats(&url, t).await;
        assert_eq!(s["entries"], want.len() as u64, "{t}: {s}");
        assert_eq!(s["expired_entries"], 7 - want.len() as u64, "{t}: {s}");
        assert_eq!(s["first_entry_ns"], want[0].to_string(), "{t}: {s}");
        let stored: Vec<i64> = loki.entries(t).iter().map(|e| e.ts).collect();
        assert_eq!(&stored, want, "{t} stored");
        let got = query_ts(&url, t, r#"{app="a"}"#, T0 - 100 * DAY, T0 + 1).await;
        assert_eq!(&got, want, "{t} after the sweep");
    }
    let usage = get(&format!("{url}/fake-loki/api/v1/usage?by=tenant"), &[]).await;
    let usage: Value = serde_json::from_str(&usage.body).unwrap();
    let dev = usage["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["tenant"] == "dev")
        .unwrap();
    assert_eq!(
        (&dev["lines"], &dev["expired_lines"]),
        (&Value::from(7), &Value::from(5)),
        "{dev}"
    );
    let heap_after = loki
        .state()
        .store
        .read()
        .tenant("dev")
        .unwrap()
        .heap_bytes();
    assert!(heap_after < heap_before, "{heap_after} >= {heap_before}");
    let metrics = get(&format!("{url}/metrics"), &[]).await.body;
    assert!(
        metrics.contains("fake_loki_retention_expired_entries_total{tenant=\"dev\"} 5"),
        "{metrics}"
    );

    // Two days later dev's 6-day-old entry is 8 days old: gone, before and after a sweep.
    clock.advance(2 * DAY);
    let got = query_ts(&url, "dev", r#"{app="a"}"#, T0 - 100 * DAY, T0 + 3 * DAY).await;
    assert_eq!(got, [T0 - DAY]);
    fake_loki::retention::sweep(loki.state());
    assert_eq!(stats(&url, "dev").await["entries"], 1);
    // A stream with nothing left is not listed, and not counted.
    clock.advance(10 * DAY);
    fake_loki::retention::sweep(loki.state());
    let s = stats(&url, "dev").await;
    assert_eq!(
        (s["streams"].as_u64(), s["entries"].as_u64()),
        (Some(0), Some(0))
    );
    let v = get_json(
        &format!(
            "{url}/loki/api/v1/labels?start={}&end={}",
            T0 - 30 * DAY,
            T0 + 12 * DAY
        ),
        "dev",
    )
    .await;
    assert_eq!(v, serde_json::json!({"status": "success"}));
    loki.shutdown().await;
}

#[tokio::test]
async fn stream_rules_pick_the_highest_priority_then_the_shortest_period() {
    let clock = Clock::manual(T0);
    let cfg = config(
        limits(
            "  retention_period: 30d\n  retention_stream:\n\
             \x20   - selector: '{ns=\"debug\"}'\n      priority: 1\n      period: 1d\n\
             \x20   - selector: '{ns=\"debug\", tier=\"gold\"}'\n      priority: 2\n      period: 60d\n\
             \x20   - selector: '{ns=~\"au.*\"}'\n      priority: 3\n      period: 10d\n\
             \x20   - selector: '{ns=\"audit\"}'\n      priority: 3\n      period: 5d\n",
            "",
        ),
        &clock,
    );
    let loki = FakeLoki::start(cfg).await.unwrap();
    let url = loki.url();
    let ages = [12 * HOUR, 2 * DAY, 6 * DAY, 20 * DAY, 40 * DAY];
    for labels in [
        r#"{ns="debug"}"#,
        r#"{ns="debug", tier="gold"}"#,
        r#"{ns="audit"}"#,
        r#"{ns="app"}"#,
    ] {
        push_ages(&url, "t", labels, T0, &ages).await;
    }
    for (q, keep) in [
        (r#"{ns="debug", tier=""}"#, DAY),
        (r#"{ns="debug", tier="gold"}"#, 60 * DAY),
        (r#"{ns="audit"}"#, 5 * DAY),
        (r#"{ns="app"}"#, 30 * DAY),
    ] {
        let want: Vec<i64> = {
            let mut v: Vec<i64> = ages
                .iter()
                .filter(|a| **a <= keep)
                .map(|a| T0 - a)
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            query_ts(&url, "t", q, T0 - 50 * DAY, T0 + 1).await,
            want,
            "{q}"
        );
        fake_loki::retention::sweep(loki.state());
        assert_eq!(
            query_ts(&url, "t", q, T0 - 50 * DAY, T0 + 1).await,
            want,
            "{q} swept"
        );
    }
    assert_eq!(stats(&url, "t").await["entries"], 1 + 5 + 2 + 4);
    loki.shutdown().await;
}

#[tokio::test]
async fn max_query_lookback_clamps_the_start_of_every_read() {
    let clock = Clock::manual(T0);
    let mut lim = limits("  max_query_lookback: 2d\n", "");
    // Loki checks the query length after the clamp: 60 days asked, 2 days run.
    lim.defaults.max_query_length = 721 * HOUR;
    let loki = FakeLoki::start(config(lim, &clock)).await.unwrap();
    let url = loki.url();
    push_ages(&url, "t", r#"{app="a"}"#, T0, &[3 * DAY, DAY]).await;
    let all = query_ts(&url, "t", r#"{app="a"}"#, T0 - 60 * DAY, T0 + 1).await;
    assert_eq!(all, [T0 - DAY]);
    // A window wholly before now - 2d is answered empty, without the length check.
    let old = query_ts(
        &url,
        "t",
        r#"{app="a"}"#,
        T0 - 60 * DAY,
        T0 - 2 * DAY - HOUR,
    )
    .await;
    assert!(old.is_empty());
    let v = get_json(
        &format!(
            "{url}/loki/api/v1/query_range?query={}&start={}&end={}&step=3600",
            enc(r#"count_over_time({app="a"}[1d])"#),
            T0 - 4 * DAY,
            T0
        ),
        "t",
    )
    .await;
    let points = v["data"]["result"][0]["values"].as_array().unwrap();
    // Only the 1-day-old entry is counted: one point an hour from T0 - 1d to T0 - 1h
    // (windows are left-open). The 3-day-old one would add a day of points before it.
    assert_eq!(points.len(), 24, "{points:?}");
    assert_eq!(
        points[0][0].as_f64().unwrap() as i64,
        (T0 - DAY) / 1_000_000_000
    );
    assert!(points.iter().all(|p| p[1] == "1"), "{points:?}");
    let labels = |s: i64, e: i64| format!("{url}/loki/api/v1/labels?start={s}&end={e}");
    let v = get_json(&labels(T0 - 60 * DAY, T0 - 2 * DAY - HOUR), "t").await;
    assert_eq!(v, serde_json::json!({"status": "success"}));
    let series = format!(
        "{url}/loki/api/v1/series?match[]={}&start={}&end={}",
        enc(r#"{app="a"}"#),
        T0 - 60 * DAY,
        T0 - 2 * DAY - HOUR
    );
    assert_eq!(get_json(&series, "t").await["data"], serde_json::json!([]));
    let stats = format!(
        "{url}/loki/api/v1/index/stats?query={}&start={}&end={}",
        enc(r#"{app="a"}"#),
        T0 - 60 * DAY,
        T0 + 1
    );
    assert_eq!(get_json(&stats, "t").await["entries"], 1);
    loki.shutdown().await;
}

#[tokio::test]
async fn the_periodic_sweep_deletes_without_being_called() {
    let clock = Clock::manual(T0);
    let cfg = Config {
        retention_sweep_interval: Some(Duration::from_millis(20)),
        ..config(limits("  retention_period: 1d\n", ""), &clock)
    };
    let loki = FakeLoki::start(cfg).await.unwrap();
    let url = loki.url();
    push_ages(&url, "t", r#"{app="a"}"#, T0, &[HOUR, 2 * HOUR]).await;
    assert_eq!(stats(&url, "t").await["entries"], 2);
    clock.advance(DAY - 3 * HOUR / 2); // the entries are now 23.5h and 24.5h old
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = stats(&url, "t").await;
        if s["entries"] == 1 {
            assert_eq!(s["expired_entries"], 1);
            break;
        }
        assert!(Instant::now() < deadline, "no sweep ran: {s}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    loki.shutdown().await;
}

#[tokio::test]
async fn data_dir_replay_drops_records_past_retention() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let lim = limits("  retention_period: 7d\n", "");
    let cfg = Config {
        data_dir: Some(dir.path().to_path_buf()),
        ..config(lim.clone(), &clock)
    };
    let loki = FakeLoki::start(cfg.clone()).await.unwrap();
    push_ages(
        &loki.url(),
        "t",
        r#"{app="a"}"#,
        T0,
        &[6 * DAY, 5 * DAY, HOUR],
    )
    .await;
    loki.shutdown().await;

    // Restarted two days later: the 6-day-old record is 8 days old.
    clock.advance(2 * DAY);
    let loki = FakeLoki::start(cfg).await.unwrap();
    let stored: Vec<i64> = loki.entries("t").iter().map(|e| e.ts).collect();
    assert_eq!(stored, [T0 - 5 * DAY, T0 - HOUR]);
    assert_eq!(stats(&loki.url(), "t").await["entries"], 2);
    loki.shutdown().await;
}

/// Loki 3.7: `labels` and label values list a stream the ingester holds whatever the
/// window (when it ends within `query_ingesters_within`), `series` needs an entry in
/// the window, and windows answered by the store filter by block bounds.
#[tokio::test]
async fn label_time_ranges_follow_the_ingester_and_the_store() {
    let clock = Clock::manual(T0);
    let loki = FakeLoki::start(config(limits("", ""), &clock))
        .await
        .unwrap();
    let url = loki.url();
    push_ages(&url, "t", r#"{job="a"}"#, T0, &[2 * HOUR]).await;
    let labels = |s: i64, e: i64| format!("{url}/loki/api/v1/labels?start={s}&end={e}");
    let values = |s: i64, e: i64| format!("{url}/loki/api/v1/label/job/values?start={s}&end={e}");
    let series = |s: i64, e: i64| {
        format!(
            "{url}/loki/api/v1/series?match[]={}&start={s}&end={e}",
            enc(r#"{job=~".+"}"#)
        )
    };
    let data = |v: Value| v["data"].clone();
    let half_hour = HOUR / 2;
    assert_eq!(
        data(get_json(&labels(T0 - half_hour, T0), "t").await),
        serde_json::json!(["job"])
    );
    assert_eq!(
        data(get_json(&values(T0 - half_hour, T0), "t").await),
        serde_json::json!(["a"])
    );
    assert_eq!(
        data(get_json(&series(T0 - HOUR, T0), "t").await),
        serde_json::json!([])
    );
    assert_eq!(
        data(get_json(&series(T0 - 3 * HOUR, T0), "t").await),
        serde_json::json!([{"job": "a"}])
    );

    // A window ending 4h ago goes to the store: block bounds, not entries, decide.
    push_ages(&url, "t", r#"{job="b"}"#, T0, &[6 * HOUR, HOUR]).await;
    let old = (T0 - 5 * HOUR, T0 - 4 * HOUR);
    assert_eq!(
        data(get_json(&values(old.0, old.1), "t").await),
        serde_json::json!(["b"])
    );
    assert_eq!(
        data(get_json(&series(old.0, old.1), "t").await),
        serde_json::json!([{"job": "b"}])
    );
    assert_eq!(
        query_ts(&url, "t", r#"{job="b"}"#, old.0, old.1).await,
        Vec::<i64>::new()
    );

    // 31 minutes after the last push the ingester has flushed both streams: the store
    // answers the last half hour, and neither stream has a block in it.
    clock.advance(31 * 60_000_000_000);
    let now = T0 + 31 * 60_000_000_000;
    assert_eq!(
        get_json(&labels(now - half_hour, now), "t").await,
        serde_json::json!({"status": "success"})
    );
    assert_eq!(
        data(get_json(&values(now - 3 * HOUR, now), "t").await),
        serde_json::json!(["a", "b"])
    );
    loki.shutdown().await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// For any entries and retention (hours; 0 = forever), swept or not, a query never
    /// returns an entry older than now - retention and returns every younger one.
    #[test]
    fn a_query_returns_exactly_the_entries_within_retention(
        ages in proptest::collection::btree_set(0i64..100, 1..30),
        retention_hours in 0i64..100,
        later_hours in 0i64..50,
        sweep in any::<bool>(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let clock = Clock::manual(T0);
            let mut lim = limits("", "");
            lim.defaults.retention_period = retention_hours * HOUR;
            let loki = FakeLoki::start(config(lim, &clock)).await.unwrap();
            let url = loki.url();
            let hours: Vec<i64> = ages.iter().map(|a| a * HOUR).collect();
            push_ages(&url, "t", r#"{app="a"}"#, T0, &hours).await;
            clock.advance(later_hours * HOUR);
            if sweep {
                fake_loki::retention::sweep(loki.state());
            }
            let now = T0 + later_hours * HOUR;
            let mut want: Vec<i64> = hours
                .iter()
                .map(|a| T0 - a)
                .filter(|ts| retention_hours == 0 || *ts >= now - retention_hours * HOUR)
                .collect();
            want.sort();
            let got = query_ts(&url, "t", r#"{app="a"}"#, T0 - 200 * HOUR, now + 1).await;
            assert_eq!(got, want);
            loki.shutdown().await;
        });
    }
}
