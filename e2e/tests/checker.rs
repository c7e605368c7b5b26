//! The checker against an in-process fake-loki, with this test acting as the agent: it reads the
//! generator's files back (joining CRI partials), pushes them as JSON, and knows exactly which
//! pushes fake-loki silently discarded. The checker must report exactly those entries missing,
//! name their sources and exit non-zero; then pass once they are re-pushed; then fail on a leak.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::AtomicBool;

use e2e::check::{Observer, Thresholds};
use e2e::gen::{self, ClusterSpec, GenConfig};
use e2e::loki::HttpLoki;
use e2e::manifest::Manifest;
use e2e::marker;
use fake_loki::{Config, FakeLoki, FaultAction, FaultRule};

/// One entry as an agent would ship it.
#[derive(Debug, Clone)]
struct Shipped {
    tenant: String,
    labels: BTreeMap<String, String>,
    ts: i64,
    line: String,
    src: String,
    seq: u64,
}

/// Reads every `0.log` under `root` the way an agent would: CRI lines, `P` chunks joined.
fn read_cluster(root: &Path, cluster: &str, tenant: &str) -> Vec<Shipped> {
    let mut out = Vec::new();
    let mut pods: Vec<_> = std::fs::read_dir(root)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .collect();
    pods.sort();
    for pod in pods {
        let name = pod
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let parts: Vec<&str> = name.split('_').collect();
        let mut containers: Vec<_> = std::fs::read_dir(&pod)
            .expect("read_dir")
            .map(|e| e.expect("entry").path())
            .collect();
        containers.sort();
        for cdir in containers {
            let container = cdir
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(cdir.join("0.log")).expect("read");
            let mut partial = String::new();
            for l in text.lines() {
                let mut f = l.splitn(4, ' ');
                let (ts, stream, tag, msg) = (
                    f.next().expect("ts"),
                    f.next().expect("stream"),
                    f.next().expect("tag"),
                    f.next().unwrap_or(""),
                );
                partial.push_str(msg);
                if tag == "P" {
                    continue;
                }
                let line = std::mem::take(&mut partial);
                let ts = chrono::DateTime::parse_from_rfc3339(ts)
                    .expect("rfc3339")
                    .timestamp_nanos_opt()
                    .expect("ns");
                let m = marker::parse(&line).expect("marker");
                let labels = BTreeMap::from([
                    ("namespace".to_owned(), parts[0].to_owned()),
                    ("pod".to_owned(), parts[1].to_owned()),
                    ("container".to_owned(), container.clone()),
                    ("stream".to_owned(), stream.to_owned()),
                    ("cluster".to_owned(), cluster.to_owned()),
                ]);
                out.push(Shipped {
                    tenant: tenant.to_owned(),
                    labels,
                    ts,
                    src: m.src.to_owned(),
                    seq: m.seq,
                    line,
                });
            }
        }
    }
    out
}

async fn push(api: &HttpLoki, tenant: &str, batch: &[Shipped]) {
    let mut streams: BTreeMap<&BTreeMap<String, String>, Vec<[String; 2]>> = BTreeMap::new();
    for e in batch {
        streams
            .entry(&e.labels)
            .or_default()
            .push([e.ts.to_string(), e.line.clone()]);
    }
    let body = serde_json::json!({
        "streams": streams.into_iter().map(|(l, v)| serde_json::json!({"stream": l, "values": v})).collect::<Vec<_>>()
    });
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

async fn cli_check(manifest: &Path, url: &str) -> (i32, serde_json::Value) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_e2e"))
        .args(["check", "--manifest"])
        .arg(manifest)
        .args([
            "--loki-url",
            url,
            "--json",
            "--page-limit",
            "97",
            "--max-lag-p99",
            "off",
        ])
        .output()
        .await
        .expect("run e2e check");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().expect("exit code"), v)
}

fn missing_set(report: &e2e::check::Report) -> BTreeSet<(String, u64)> {
    let mut s = BTreeSet::new();
    for src in &report.sources {
        for (a, b) in &src.missing_ranges {
            for seq in *a..=*b {
                s.insert((src.id.clone(), seq));
            }
        }
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_discard_is_reported_exactly_then_repush_passes_then_a_leak_fails() {
    let loki = FakeLoki::start(Config::for_tests())
        .await
        .expect("fake-loki");
    let api = HttpLoki::new(&loki.url());
    let dir = tempfile::tempdir().expect("tempdir");
    let clusters = vec![
        ClusterSpec {
            name: "ops".into(),
            tenant: "tenant-ops".into(),
            pods_root: dir.path().join("ops"),
        },
        ClusterSpec {
            name: "dev".into(),
            tenant: "tenant-dev".into(),
            pods_root: dir.path().join("dev"),
        },
    ];
    let mut cfg = GenConfig::new("chk1", 5, clusters);
    cfg.rate_per_sec = None;
    cfg.duration = None;
    cfg.max_entries = Some(600);
    cfg.mix.long_line_ratio = 0.02;
    let manifest = gen::run(cfg, &AtomicBool::new(false)).expect("generate");
    let manifest_path = dir.path().join("manifest.json");
    manifest.write(&manifest_path).expect("manifest");

    let mut all = read_cluster(&dir.path().join("ops"), "ops", "tenant-ops");
    all.extend(read_cluster(&dir.path().join("dev"), "dev", "tenant-dev"));
    assert_eq!(all.len() as u64, manifest.totals.entries);
    assert!(
        all.iter().any(|e| e.line.len() > 16 * 1024),
        "some partial-joined long lines"
    );

    // The first two pushes of tenant-ops are accepted with 204 and dropped.
    loki.faults()
        .add(
            FaultRule::new(FaultAction::Discard)
                .count(2)
                .tenant("tenant-ops"),
        )
        .expect("fault");
    let mut discarded = BTreeSet::new();
    for tenant in ["tenant-ops", "tenant-dev"] {
        let entries: Vec<Shipped> = all.iter().filter(|e| e.tenant == tenant).cloned().collect();
        for (i, batch) in entries.chunks(25).enumerate() {
            push(&api, tenant, batch).await;
            if tenant == "tenant-ops" && i < 2 {
                discarded.extend(batch.iter().map(|e| (e.src.clone(), e.seq)));
            }
        }
    }
    assert_eq!(discarded.len(), 50);

    // Library: exactly the discarded entries are missing; small pages exercise pagination.
    let mut obs = Observer::new(&manifest.run_id, &manifest.clusters, manifest.started_ns)
        .with_page_limit(41);
    obs.scan(&api).await.expect("scan");
    let report = obs.report(
        &manifest,
        &Thresholds {
            max_lag_p99_ms: None,
            ..Thresholds::default()
        },
    );
    assert_eq!(missing_set(&report), discarded);
    assert_eq!(report.summary.missing, 50);
    assert_eq!(report.summary.received, manifest.totals.entries - 50);
    assert_eq!(
        (
            report.summary.duplicates,
            report.summary.leaked,
            report.summary.label_mismatches
        ),
        (0, 0, 0)
    );
    let failing: BTreeSet<&str> = report.failing_sources.iter().map(String::as_str).collect();
    assert!(failing.iter().all(|s| s.starts_with("ops/")));
    assert!(!report.pass);

    // CLI: same verdict, non-zero exit.
    let (code, json) = cli_check(&manifest_path, &loki.url()).await;
    assert_eq!(code, 1, "{json}");
    assert_eq!(json["summary"]["missing"], 50);
    assert_eq!(json["pass"], false);

    // Re-push what was dropped (the fault has expired): now everything is there, exit 0.
    let lost: Vec<Shipped> = all
        .iter()
        .filter(|e| discarded.contains(&(e.src.clone(), e.seq)))
        .cloned()
        .collect();
    push(&api, "tenant-ops", &lost).await;
    let (code, json) = cli_check(&manifest_path, &loki.url()).await;
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["summary"]["received"], manifest.totals.entries);

    // One ops entry pushed into tenant-dev is a cross-tenant leak.
    let leak = all
        .iter()
        .find(|e| e.tenant == "tenant-ops")
        .cloned()
        .expect("ops entry");
    push(&api, "tenant-dev", std::slice::from_ref(&leak)).await;
    let (code, json) = cli_check(&manifest_path, &loki.url()).await;
    assert_eq!(code, 1, "{json}");
    assert_eq!(json["leaks"][0]["src"], leak.src.as_str());
    assert_eq!(json["leaks"][0]["found_in"], "tenant-dev");
    loki.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_sources_with_no_data_by_name() {
    let loki = FakeLoki::start(Config::for_tests())
        .await
        .expect("fake-loki");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = GenConfig::new(
        "chk2",
        3,
        vec![ClusterSpec {
            name: "prod".into(),
            tenant: "tenant-prod".into(),
            pods_root: dir.path().join("prod"),
        }],
    );
    cfg.rate_per_sec = None;
    cfg.duration = None;
    cfg.max_entries = Some(50);
    let manifest: Manifest = gen::run(cfg, &AtomicBool::new(false)).expect("generate");
    let path = dir.path().join("m.json");
    manifest.write(&path).expect("write");
    let (code, json) = cli_check(&path, &loki.url()).await;
    assert_eq!(code, 1);
    assert_eq!(json["summary"]["received"], 0);
    assert_eq!(
        json["no_data_sources"].as_array().expect("array").len(),
        manifest.sources.len()
    );
    loki.shutdown().await;
}
