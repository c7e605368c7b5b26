//! The kind e2e's subcommands end to end, without a cluster: `e2e emit` writes into a pipe (as a
//! container's stdout), its record lands in a "termination log" file, `e2e manifest` assembles the
//! records as `run.sh` does, this test plays the agent by pushing the emitted lines to an in-process
//! fake-loki with the labels the agent would add, and `e2e check` must pass; with one line held
//! back it must fail and name exactly that line.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use e2e::loki::HttpLoki;
use e2e::manifest::Manifest;
use fake_loki::{Config, FakeLoki};

const RUN: &str = "kindt1";
const CLUSTER: &str = "lagent-e2e";
const TENANT: &str = "e2e";

/// Runs `e2e emit` as pod `pod` in namespace `ns`; returns its stdout lines.
fn emit(dir: &Path, ns: &str, pod: &str, count: u64) -> Vec<String> {
    let term = dir.join(format!("{ns}-{pod}.termination-log"));
    let out = Command::new(env!("CARGO_BIN_EXE_e2e"))
        .args(["emit", "--run-id", RUN, "--cluster", CLUSTER, "--count"])
        .arg(count.to_string())
        .args(["--rate", "2000", "--termination-log"])
        .arg(&term)
        .env("POD_NAMESPACE", ns)
        .env("POD_NAME", pod)
        .env("POD_UID", format!("uid-{pod}"))
        .env("CONTAINER_NAME", "gen")
        .output()
        .expect("run e2e emit");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf8");
    text.lines().map(str::to_owned).collect()
}

async fn push(api: &HttpLoki, labels: &BTreeMap<&str, &str>, lines: &[(i64, String)]) {
    let values: Vec<[String; 2]> = lines
        .iter()
        .map(|(ts, l)| [ts.to_string(), l.clone()])
        .collect();
    let body = serde_json::json!({"streams": [{"stream": labels, "values": values}]});
    let (status, resp) = api
        .request(
            http::Method::POST,
            "/loki/api/v1/push",
            Some(TENANT),
            Some(serde_json::to_vec(&body).expect("json")),
        )
        .await
        .expect("push");
    assert_eq!(status, 204, "{}", String::from_utf8_lossy(&resp));
}

fn check(manifest: &Path, url: &str) -> (i32, serde_json::Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_e2e"))
        .args(["check", "--manifest"])
        .arg(manifest)
        .args([
            "--loki-url",
            url,
            "--json",
            "--max-lag-p99",
            "off",
            "--min-rate",
            "100",
        ])
        .output()
        .expect("run e2e check");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().expect("exit code"), v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emit_records_assemble_into_a_manifest_the_checker_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pods = [
        ("e2e-gen-a", "gen-node-1-abcde"),
        ("e2e-gen-b", "gen-node-1-fghij"),
    ];
    let mut emitted = Vec::new();
    for (ns, pod) in pods {
        let lines = emit(dir.path(), ns, pod, 40);
        assert_eq!(lines.len(), 40);
        emitted.push((ns, pod, lines));
    }

    // run.sh: one termination message per pod, newline-separated, into records.jsonl.
    let mut records = String::new();
    for (ns, pod) in pods {
        let msg = std::fs::read_to_string(dir.path().join(format!("{ns}-{pod}.termination-log")))
            .expect("termination log");
        assert!(msg.len() < 4096 && !msg.contains('\n'), "{msg:?}");
        records.push_str(&msg);
        records.push('\n');
    }
    let records_path = dir.path().join("records.jsonl");
    std::fs::write(&records_path, records).expect("records");
    let manifest_path = dir.path().join("manifest.json");
    let st = Command::new(env!("CARGO_BIN_EXE_e2e"))
        .args(["manifest", "--run-id", RUN, "--cluster"])
        .arg(format!("{CLUSTER}={TENANT}"))
        .arg("--records")
        .arg(&records_path)
        .arg("--out")
        .arg(&manifest_path)
        .status()
        .expect("run e2e manifest");
    assert!(st.success());
    let manifest = Manifest::read(&manifest_path).expect("manifest");
    assert_eq!(manifest.totals.entries, 80);
    let line_bytes: u64 = emitted
        .iter()
        .flat_map(|(_, _, l)| l.iter().map(|l| l.len() as u64))
        .sum();
    assert_eq!(manifest.totals.message_bytes, line_bytes);
    assert!(manifest.sources.iter().all(|s| s.tenant == TENANT));

    // Play the agent: the kubelet timestamps lines as they are written; inside the record's
    // time range is what a real run would see.
    let loki = FakeLoki::start(Config::for_tests())
        .await
        .expect("fake-loki");
    let api = HttpLoki::new(&loki.url());
    let mut held_back = None;
    for (ns, pod, lines) in &emitted {
        let rec = manifest
            .sources
            .iter()
            .find(|s| s.pod == *pod)
            .expect("record of pod");
        let labels = BTreeMap::from([
            ("namespace", *ns),
            ("pod", *pod),
            ("container", "gen"),
            ("stream", "stdout"),
            ("cluster", CLUSTER),
        ]);
        let mut values: Vec<(i64, String)> = lines
            .iter()
            .enumerate()
            .map(|(i, l)| (rec.first_ts_ns + i as i64, l.clone()))
            .collect();
        if held_back.is_none() {
            held_back = Some((rec.id.clone(), values.remove(17)));
        }
        push(&api, &labels, &values).await;
    }
    let (code, json) = check(&manifest_path, &loki.url());
    assert_eq!(code, 1, "{json}");
    let (src, (ts, line)) = held_back.expect("held back");
    assert_eq!(json["summary"]["missing"], 1);
    let failing = json["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .find(|s| s["missing"] == 1)
        .expect("the source with the gap");
    assert_eq!(failing["id"], src.as_str());
    assert_eq!(failing["missing_ranges"][0], serde_json::json!([18, 18]));

    // Deliver it late: complete.
    let pod = src.split('/').nth(2).expect("pod");
    let ns = src.split('/').nth(1).expect("ns");
    let labels = BTreeMap::from([
        ("namespace", ns),
        ("pod", pod),
        ("container", "gen"),
        ("stream", "stdout"),
        ("cluster", CLUSTER),
    ]);
    push(&api, &labels, &[(ts, line)]).await;
    let (code, json) = check(&manifest_path, &loki.url());
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["summary"]["received"], 80);
    loki.shutdown().await;
}

#[test]
fn emit_without_the_downward_api_fails_before_writing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_e2e"))
        .args([
            "emit",
            "--run-id",
            RUN,
            "--cluster",
            CLUSTER,
            "--count",
            "5",
        ])
        .arg("--termination-log")
        .arg(dir.path().join("t"))
        .env_remove("POD_NAMESPACE")
        .env_remove("POD_NAME")
        .env_remove("POD_UID")
        .env_remove("CONTAINER_NAME")
        .output()
        .expect("run e2e emit");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("POD_NAMESPACE"));
}
