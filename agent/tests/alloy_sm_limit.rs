//! `agent run CONFIG` with `stage.json`/`stage.regex` + `stage.structured_metadata` (values and
//! regex forms) against an in-process fake-loki: the structured metadata arrives on the wire
//! exactly, values moved to it leave the stream labels, and a `categorize-labels` query returns
//! it as Loki would. A `stage.limit` without `drop` paces the lines instead of dropping them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{AgentProcess, WAIT};
use fake_loki::{Config, FakeLoki, StoredEntry};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

mod common;

const TENANT: &str = "t1";

/// `agent run CONFIG` with its storage and log under `dir`.
fn start_agent(config: &Path, loki_url: &str, dir: &Path) -> AgentProcess {
    AgentProcess::spawn(dir.join("agent.log"), |cmd| {
        cmd.arg("run")
            .arg(config)
            .arg(format!("--storage.path={}", dir.join("storage").display()))
            .arg("--server.http.listen-addr=127.0.0.1:0")
            .env("LOKI_URL", loki_url);
    })
}

/// Writes `config` (with `DIR` replaced by the log directory) and one log file of `lines`.
fn setup(dir: &Path, config: &str, lines: &[&str]) -> (PathBuf, PathBuf) {
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).expect("logs dir");
    let file = logs.join("app.log");
    let mut body = lines.join("\n");
    body.push('\n');
    std::fs::write(&file, body).expect("log file");
    let cfg = dir.join("config.alloy");
    std::fs::write(&cfg, config.replace("DIR", &logs.display().to_string())).expect("config");
    (cfg, file)
}

/// Polls fake-loki until `n` entries are stored (deadline `WAIT`).
async fn wait_for(loki: &FakeLoki, agent: &AgentProcess, n: usize) -> Vec<StoredEntry> {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = loki.entries(TENANT);
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} entries arrived; agent log:\n{}",
            got.len(),
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Stream labels, line, structured metadata.
type Stored = (String, String, Vec<(String, String)>);

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const SM_CONFIG: &str = r#"
local.file_match "app" {
  path_targets = [{"__path__" = "DIR/*.log", job = "app", pod_uid = "u-1"}]
}

loki.source.file "app" {
  targets    = local.file_match.app.targets
  forward_to = [loki.process.sm.receiver]
}

loki.process "sm" {
  forward_to = [loki.write.lk.receiver]

  stage.json {
    expressions = { level = "", trace = "trace_id", msg = "" }
  }
  stage.regex {
    expression = "^(?P<user>\\w+) did"
    source     = "msg"
  }
  stage.labels {
    values = { level = "" }
  }
  stage.structured_metadata {
    values = { level = "", trace_id = "trace", user = "", __raw = "msg" }
  }
  stage.structured_metadata {
    regex = "^pod_"
  }
}

loki.write "lk" {
  endpoint {
    url        = sys.env("LOKI_URL")
    tenant_id  = "t1"
    batch_wait = "100ms"
  }
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn structured_metadata_from_json_and_regex_arrives_and_leaves_the_labels() {
    let loki = FakeLoki::start(Config::for_tests())
        .await
        .expect("fake-loki");
    let dir = tempfile::tempdir().expect("tempdir");
    let lines = [
        r#"{"level":"info","trace_id":"abc","msg":"bob did x"}"#,
        r#"{"level":"warn","msg":"no trace"}"#,
        "not json",
    ];
    let (cfg, file) = setup(dir.path(), SM_CONFIG, &lines);
    let agent = start_agent(&cfg, &loki.url(), dir.path());
    let got = wait_for(&loki, &agent, 3).await;

    // `level` was a label (stage.labels) and moved to structured metadata; `pod_uid` moved by
    // regex. What is left is the stream the three lines share.
    let labels = format!(r#"{{filename="{}", job="app"}}"#, file.display());
    let got: Vec<Stored> = got
        .into_iter()
        .map(|e| (e.labels.to_string(), e.line, e.metadata))
        .collect();
    let want = vec![
        (
            labels.clone(),
            lines[0].to_string(),
            pairs(&[
                ("__raw", "bob did x"),
                ("level", "info"),
                ("pod_uid", "u-1"),
                ("trace_id", "abc"),
                ("user", "bob"),
            ]),
        ),
        (
            labels.clone(),
            lines[1].to_string(),
            pairs(&[("__raw", "no trace"), ("level", "warn"), ("pod_uid", "u-1")]),
        ),
        (
            labels.clone(),
            lines[2].to_string(),
            pairs(&[("pod_uid", "u-1")]),
        ),
    ];
    assert_eq!(got, want, "agent log:\n{}", agent.log());

    // The query API with categorize-labels returns the metadata per entry, as Loki does.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    let url = format!(
        "{}/loki/api/v1/query_range?query={}&start={}&end={}&direction=forward&limit=10",
        loki.url(),
        "%7Bjob%3D%22app%22%7D",
        now - 3_600_000_000_000,
        now + 60_000_000_000,
    );
    let (status, body) = get(
        &url,
        &[
            ("X-Scope-OrgID", TENANT),
            ("X-Loki-Response-Encoding-Flags", "categorize-labels"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        v["data"]["encodingFlags"],
        serde_json::json!(["categorize-labels"])
    );
    let result = &v["data"]["result"];
    assert_eq!(result.as_array().map(Vec::len), Some(1), "{body}");
    assert_eq!(
        result[0]["stream"],
        serde_json::json!({"filename": file.display().to_string(), "job": "app"})
    );
    let metadata: Vec<serde_json::Value> = result[0]["values"]
        .as_array()
        .expect("values")
        .iter()
        .map(|v| v[2]["structuredMetadata"].clone())
        .collect();
    assert_eq!(
        metadata,
        [
            serde_json::json!({"__raw": "bob did x", "level": "info", "pod_uid": "u-1", "trace_id": "abc", "user": "bob"}),
            serde_json::json!({"__raw": "no trace", "level": "warn", "pod_uid": "u-1"}),
            serde_json::json!({"pod_uid": "u-1"}),
        ],
        "{body}"
    );
    loki.shutdown().await;
}

const LIMIT_CONFIG: &str = r#"
local.file_match "app" {
  path_targets = [{"__path__" = "DIR/*.log", job = "app"}]
}

loki.source.file "app" {
  targets    = local.file_match.app.targets
  forward_to = [loki.process.slow.receiver]
}

loki.process "slow" {
  forward_to = [loki.write.lk.receiver]

  stage.limit {
    rate  = 10
    burst = 5
  }
}

loki.write "lk" {
  endpoint {
    url        = sys.env("LOKI_URL")
    tenant_id  = "t1"
    batch_wait = "50ms"
  }
}
"#;

/// Real time (this runs the binary): 25 lines at 10/s with a burst of 5 take about 2 s to
/// arrive, and none is lost. The exact schedule is tested with paused time in the router.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_without_drop_paces_lines_and_loses_none() {
    let loki = FakeLoki::start(Config::for_tests())
        .await
        .expect("fake-loki");
    let dir = tempfile::tempdir().expect("tempdir");
    let lines: Vec<String> = (0..25).map(|i| format!("line {i}")).collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let (cfg, _) = setup(dir.path(), LIMIT_CONFIG, &refs);
    let agent = start_agent(&cfg, &loki.url(), dir.path());
    wait_for(&loki, &agent, 1).await;
    let t_first = Instant::now();
    let got = wait_for(&loki, &agent, 25).await;
    let took = t_first.elapsed();
    // The 25th line leaves 2 s after the first five; without waiting all 25 arrive at once.
    // The margin absorbs batch_wait and polling on a loaded machine.
    assert!(took >= Duration::from_millis(1500), "took {took:?}");
    let mut got: Vec<String> = got.into_iter().map(|e| e.line).collect();
    got.sort_by_key(|l| l[5..].parse::<u32>().unwrap_or(u32::MAX));
    assert_eq!(got, lines);
    let counts: BTreeMap<String, usize> =
        loki.entries(TENANT)
            .iter()
            .fold(BTreeMap::new(), |mut m, e| {
                *m.entry(e.line.clone()).or_default() += 1;
                m
            });
    assert!(counts.values().all(|n| *n == 1), "duplicates: {counts:?}");
    loki.shutdown().await;
}

async fn get(url: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut b = http::Request::builder().method("GET").uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = client
        .request(b.body(Full::new(Bytes::new())).expect("request"))
        .await
        .expect("response");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}
