//! Cost and freshness end to end.
//!
//! - A small local pipeline (real agent and fake-loki processes, two clusters) whose cost report
//!   counts exactly the lines and bytes the generator wrote. **Bytes, precisely:** the sum over all
//!   entries of the UTF-8 length of the log line Loki stores, which is the CRI message the
//!   generator wrote, partial chunks joined, without the runtime's timestamp/stream/tag framing
//!   and without the trailing newline (the manifest's `message_bytes`; fake-loki's `bytes`).
//!   `loki_bytes` adds structured-metadata bytes, so it can only be larger.
//! - `e2e cost` against an in-process fake-loki: a budget just under the cost fails naming it, one
//!   equal to the cost passes; CSV sections.
//! - `e2e check --max-lag` against an in-process fake-loki: late and silent sources named.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use e2e::cost::{self, Period, Prices};
use e2e::gen::now_ns;
use e2e::loki::HttpLoki;
use e2e::manifest::{ClusterInfo, Manifest, SourceRecord, Totals};
use e2e::pipeline::{self, RunConfig};
use fake_loki::{Config, FakeLoki};

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
        .display()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_pipeline_cost_report_counts_what_the_generator_wrote() {
    let mut c = RunConfig::small(vec![
        ClusterInfo {
            name: "ops".into(),
            tenant: "tenant-ops".into(),
        },
        ClusterInfo {
            name: "prod".into(),
            tenant: "tenant-prod".into(),
        },
    ]);
    c.rate_per_sec = Some(300.0);
    c.duration = Some(std::time::Duration::from_secs(2));
    c.mix.long_line_ratio = 0.01;
    let o = pipeline::run(c).await.expect("run");
    assert!(o.report.pass, "{}", e2e::report::render(&o.report, false));
    let m = &o.manifest;
    let usage = o.usage.as_ref().expect("usage ledger");
    let prices =
        Prices::from_yaml(&std::fs::read_to_string(example("prices.yaml")).expect("prices"))
            .expect("parse prices");
    let r = cost::report(usage, &o.agent_usage, &prices, Period::All, None, &[]).expect("report");

    assert_eq!(r.total.volume.lines, m.totals.entries);
    assert_eq!(r.total.volume.bytes, m.totals.message_bytes);
    assert!(r.total.volume.loki_bytes >= r.total.volume.bytes);
    // Per cluster: the manifest's per-source counts, summed by cluster.
    let mut want: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for s in &m.sources {
        let w = want.entry(s.cluster.clone()).or_default();
        w.0 += s.count;
        w.1 += s.bytes;
    }
    let got: BTreeMap<String, (u64, u64)> = r
        .by_cluster
        .iter()
        .map(|c| (c.key.clone(), (c.volume.lines, c.volume.bytes)))
        .collect();
    assert_eq!(got, want);
    let tenants: BTreeSet<&str> = r.by_tenant.iter().map(|t| t.key.as_str()).collect();
    assert_eq!(tenants, BTreeSet::from(["tenant-ops", "tenant-prod"]));
    // Both sides are priced; the agent side from /proc.
    assert!(r.total.amounts.loki_micros > 0);
    assert_eq!(o.agent_usage.len(), 2);
    assert!(o.agent_usage.iter().all(|a| a.peak_rss_bytes > 0));
    assert_eq!(
        r.total.amounts.total_micros,
        r.total.amounts.loki_micros + r.total.amounts.agent_micros
    );
}

async fn push(
    api: &HttpLoki,
    tenant: &str,
    labels: &BTreeMap<&str, &str>,
    lines: &[(i64, String)],
) {
    let values: Vec<[String; 2]> = lines
        .iter()
        .map(|(ts, l)| [ts.to_string(), l.clone()])
        .collect();
    let body = serde_json::json!({"streams": [{"stream": labels, "values": values}]});
    let (status, resp) = api
        .request(
            http::Method::POST,
            "/loki/api/v1/push",
            Some(tenant),
            Some(serde_json::to_vec(&body).expect("json")),
        )
        .await
        .expect("push");
    assert_eq!(status, 204, "{}", String::from_utf8_lossy(&resp));
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_e2e"))
        .args(args)
        .output()
        .expect("run e2e");
    (
        out.status.code().expect("exit code"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cost_cli_reads_fake_loki_usage_and_alerts_only_over_budget() {
    let loki = FakeLoki::start(Config::for_tests())
        .await
        .expect("fake-loki");
    let api = HttpLoki::new(&loki.url());
    let now = now_ns();
    // 1000 lines of 1000 bytes = 1 MB into prod (90 days), 10 lines into dev.
    let big = "x".repeat(1000);
    let lines: Vec<(i64, String)> = (0..1000).map(|i| (now + i, big.clone())).collect();
    push(
        &api,
        "prod",
        &BTreeMap::from([("cluster", "c1"), ("app", "a")]),
        &lines,
    )
    .await;
    push(
        &api,
        "dev",
        &BTreeMap::from([("cluster", "c2"), ("app", "b")]),
        &lines[..10],
    )
    .await;

    let dir = tempfile::tempdir().expect("tempdir");
    let usage_json = run(&[
        "cost",
        "--usage-url",
        &loki.url(),
        "--prices",
        &example("prices.yaml"),
        "--format",
        "json",
    ]);
    assert_eq!(usage_json.0, 0, "{}", usage_json.2);
    let v: serde_json::Value = serde_json::from_str(&usage_json.1).expect("json");
    assert_eq!(v["total"]["lines"], 1010);
    assert_eq!(v["total"]["bytes"], 1_010_000);
    // ingest 0.50/GB of 1 MB = 500 micros; storage 0.023 x 90/30 per GB = 69 micros; 1 request =
    // 0.40 micros -> 0 (rounded per atom).
    let prod = v["by_tenant"]
        .as_array()
        .expect("tenants")
        .iter()
        .find(|t| t["key"] == "prod")
        .expect("prod");
    assert_eq!(prod["total_micros"], 500 + 69);

    // Budgets: equal to prod's cost passes; a micro-unit less fails and is named.
    let budget = |limit: &str| {
        let p = dir.path().join(format!("b{limit}.yaml"));
        std::fs::write(
            &p,
            format!("budgets:\n  - name: prod cap\n    tenant: prod\n    period: day\n    limit: \"{limit}\"\n"),
        )
        .expect("write");
        p.display().to_string()
    };
    let ok = run(&[
        "cost",
        "--usage-url",
        &loki.url(),
        "--prices",
        &example("prices.yaml"),
        "--budget",
        &budget("0.000569"),
    ]);
    assert_eq!(ok.0, 0, "{}{}", ok.1, ok.2);
    assert!(ok.1.contains("BUDGETS: ok"), "{}", ok.1);
    let over = run(&[
        "cost",
        "--usage-url",
        &loki.url(),
        "--prices",
        &example("prices.yaml"),
        "--budget",
        &budget("0.000568"),
        "--format",
        "csv",
    ]);
    assert_eq!(over.0, 1, "{}{}", over.1, over.2);
    assert!(over.2.contains("OVER BUDGET: prod cap"), "{}", over.2);
    let sections: BTreeSet<&str> = over
        .1
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').next())
        .collect();
    assert_eq!(
        sections,
        BTreeSet::from(["day", "week", "month", "tenant", "cluster", "total", "alert"])
    );
    // The saved-file path gives the same report.
    let saved = dir.path().join("usage.json");
    let (status, body) = api
        .get("/fake-loki/api/v1/usage?by=tenant,cluster", None)
        .await
        .expect("usage");
    assert_eq!(status, 200);
    std::fs::write(&saved, &body).expect("save");
    let from_file = run(&[
        "cost",
        "--usage-file",
        &saved.display().to_string(),
        "--prices",
        &example("prices.yaml"),
        "--format",
        "json",
    ]);
    assert_eq!(from_file.1, usage_json.1);
    loki.shutdown().await;
}

fn rec(cluster: &str, tenant: &str, pod: &str) -> SourceRecord {
    SourceRecord {
        id: format!("{cluster}/ns/{pod}/app/stdout"),
        cluster: cluster.into(),
        tenant: tenant.into(),
        namespace: "ns".into(),
        pod: pod.into(),
        pod_uid: "u".into(),
        container: "app".into(),
        stream: "stdout".into(),
        count: 1,
        first_seq: 1,
        last_seq: 1,
        first_ts_ns: 0,
        last_ts_ns: 0,
        bytes: 0,
        pod_deleted: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_max_lag_names_late_and_silent_sources() {
    let loki = FakeLoki::start(Config {
        // The freshness report reads per-stream push times (off by default).
        metrics_stream_labels: true,
        ..Config::for_tests()
    })
    .await
    .expect("fake-loki");
    let api = HttpLoki::new(&loki.url());
    let now = now_ns();
    let fresh = rec("ops", "t-ops", "fresh");
    let late = rec("ops", "t-ops", "late");
    let silent = rec("ops", "t-ops", "silent");
    let labels = |pod: &'static str| {
        BTreeMap::from([
            ("namespace", "ns"),
            ("pod", pod),
            ("container", "app"),
            ("cluster", "ops"),
        ])
    };
    push(
        &api,
        "t-ops",
        &labels("fresh"),
        &[(now, format!("run=fr1 src={} seq=1", fresh.id))],
    )
    .await;
    // Written ten minutes ago, delivered now: late.
    let old = now - 600_000_000_000;
    push(
        &api,
        "t-ops",
        &labels("late"),
        &[(old, format!("run=fr1 src={} seq=1", late.id))],
    )
    .await;
    let mut m = Manifest {
        version: Manifest::VERSION,
        run_id: "fr1".into(),
        seed: 0,
        started_ns: old,
        finished_ns: now,
        clusters: vec![ClusterInfo {
            name: "ops".into(),
            tenant: "t-ops".into(),
        }],
        totals: Totals {
            entries: 3,
            ..Totals::default()
        },
        sources: vec![fresh.clone(), late.clone(), silent.clone()],
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("manifest.json");
    m.write(&path).expect("write");
    let p = path.display().to_string();
    let (code, out, err) = run(&[
        "check",
        "--manifest",
        &p,
        "--loki-url",
        &loki.url(),
        "--json",
        "--max-lag",
        "5m",
        "--max-lag-p99",
        "off",
        "--min-rate",
        "0",
    ]);
    assert_eq!(code, 1, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let f = &v["freshness"];
    assert_eq!(f["late"], serde_json::json!([late.id]));
    assert_eq!(f["silent"], serde_json::json!([silent.id]));
    let fresh_row = f["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .find(|s| s["id"] == fresh.id.as_str())
        .expect("fresh row");
    assert_eq!(fresh_row["state"], "fresh");
    // fake-loki's push gauge, not the stand-in: the late source was pushed just now.
    let late_row = f["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .find(|s| s["id"] == late.id.as_str())
        .expect("late row");
    assert_eq!(late_row["last_push_from"], "fake-loki");
    assert!(late_row["last_push_ns"].as_i64().expect("ns") >= now - 60_000_000_000);
    assert_eq!(f["streams"].as_array().expect("streams").len(), 2);
    let check = v["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == "freshness")
        .expect("freshness check");
    let detail = check["detail"].as_str().expect("detail");
    assert!(
        detail.contains(&late.id) && detail.contains(&silent.id),
        "{detail}"
    );

    // Without the silent source and with a lax threshold: pass.
    m.sources.pop();
    m.totals.entries = 2;
    m.write(&path).expect("write");
    let (code, out, err) = run(&[
        "check",
        "--manifest",
        &p,
        "--loki-url",
        &loki.url(),
        "--max-lag",
        "20m",
        "--max-lag-p99",
        "off",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    loki.shutdown().await;
}
