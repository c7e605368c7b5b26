//! A Promtail migration: the config `alloy convert` makes of a Promtail config (with
//! `legacy_positions_file`) run in-process on a simulated node against fake-loki, after
//! Promtail stopped and the kubelet rotated a file. Every line Promtail had not shipped
//! arrives exactly once; none it had shipped is sent again, also after the agent restarts.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agent::alloy::{check_source, Plan, Scope};
use common::{until, Running};
use fake_loki::{Config, FakeLoki};

mod common;

/// `alloy convert` output for a Promtail `static_configs` job on the kubelet's pod logs with
/// a `cri` stage (its shape; our own paths).
fn config(promtail_positions: &Path) -> String {
    format!(
        r#"local.file_match "pods" {{
	path_targets = [{{
		__address__ = "localhost",
		__path__    = "/var/log/pods/*/*/*.log",
		job         = "pods",
	}}]
}}

loki.process "pods" {{
	forward_to = [loki.write.default.receiver]

	stage.cri {{ }}
}}

loki.source.file "pods" {{
	targets    = local.file_match.pods.targets
	forward_to = [loki.process.pods.receiver]

	file_match {{
		enabled = true
	}}
	legacy_positions_file = "{}"
}}

loki.write "default" {{
	endpoint {{
		url       = sys.env("LOKI_URL")
		tenant_id = "ops"
	}}
	external_labels = {{}}
}}
"#,
        promtail_positions.display()
    )
}

fn load(src: &str, url: &str) -> Plan {
    let url = url.to_string();
    check_source(
        "promtail.alloy",
        src,
        Scope::with_env(move |k| (k == "LOKI_URL").then(|| url.clone())),
    )
    .unwrap_or_else(|d| panic!("{}", d.render(src)))
}

/// A simulated node: kubelet pod directories, Promtail's positions file and ours.
struct Node {
    dir: tempfile::TempDir,
}

impl Node {
    fn new() -> Node {
        Node {
            // Not tempfile's default ".tmp…": the glob expansion skips hidden directories.
            dir: tempfile::Builder::new()
                .prefix("node")
                .tempdir()
                .expect("tempdir"),
        }
    }

    fn pods(&self) -> PathBuf {
        self.dir.path().join("pods")
    }

    fn container(&self, pod: &str) -> PathBuf {
        self.pods()
            .join(format!("default_{pod}_uid-{pod}"))
            .join("app")
    }

    fn live(&self, pod: &str) -> PathBuf {
        self.container(pod).join("0.log")
    }

    /// Appends CRI records `"<tag> <i>"` for `i` in `range` to `path`; returns the bytes
    /// written.
    fn append(path: &Path, tag: &str, range: std::ops::Range<usize>) -> u64 {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("open");
        let mut s = String::new();
        for i in range {
            s.push_str(&format!("2024-05-01T10:00:00.{i:09}Z stdout F {tag} {i}\n"));
        }
        f.write_all(s.as_bytes()).expect("write");
        s.len() as u64
    }

    fn run(&self, plan: Plan) -> Running {
        let pods = self.pods();
        Running::start(plan, self.dir.path().join("positions.yaml"), |s| {
            s.pods_root = pods
        })
    }
}

/// The inode change time of `path`.
fn ctime(path: &Path) -> SystemTime {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(path).expect("metadata");
    UNIX_EPOCH
        + Duration::new(
            u64::try_from(md.ctime()).expect("ctime"),
            u32::try_from(md.ctime_nsec()).expect("nsec"),
        )
}

/// Polls until file times (coarse, a few ms) have moved past `t`, so the next file event is
/// ordered after it on disk as it is in the test.
fn fs_clock_past(dir: &Path, t: SystemTime) {
    let probe = dir.join("clock-probe");
    let deadline = Instant::now() + common::WAIT;
    loop {
        std::fs::write(&probe, b"x").expect("probe");
        if ctime(&probe) > t {
            return;
        }
        assert!(Instant::now() < deadline, "file clock did not move");
    }
}

fn received(loki: &FakeLoki) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for e in loki.entries("ops") {
        *m.entry(e.line).or_default() += 1;
    }
    m
}

fn want(tag: &str, range: std::ops::Range<usize>) -> BTreeMap<String, usize> {
    range.map(|i| (format!("{tag} {i}"), 1)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtail_offsets_resume_across_a_rotation_without_loss_or_resend() {
    let loki = FakeLoki::start(Config::for_tests())
        .await
        .expect("fake-loki");
    let node = Node::new();

    // While Promtail ran: pod web rotated once (Promtail read that file to its end), then
    // wrote 10 lines of which Promtail shipped 6; pod api wrote 8, Promtail shipped 3.
    let history = node.container("web").join("0.log.20240501-090000");
    Node::append(&history, "web-history", 0..3);
    fs_clock_past(node.dir.path(), ctime(&history));
    let shipped_web = Node::append(&node.live("web"), "web", 0..6);
    Node::append(&node.live("web"), "web", 6..10);
    let shipped_api = Node::append(&node.live("api"), "api", 0..3);
    Node::append(&node.live("api"), "api", 3..8);
    let promtail = node.dir.path().join("promtail-positions.yaml");
    std::fs::write(
        &promtail,
        format!(
            "positions:\n  /var/log/pods/default_web_uid-web/app/0.log: \"{shipped_web}\"\n  /var/log/pods/default_api_uid-api/app/0.log: \"{shipped_api}\"\n  journal-system: \"s=0a1b;i=42\"\n"
        ),
    )
    .expect("promtail positions");
    let saved = std::fs::metadata(&promtail)
        .and_then(|m| m.modified())
        .expect("mtime");
    fs_clock_past(node.dir.path(), saved);

    // Promtail stopped. The pods keep writing; the kubelet rotates web's file, and the new
    // file at the same path grows past Promtail's offset (so only identity tells them apart).
    Node::append(&node.live("web"), "web", 10..14);
    Node::append(&node.live("api"), "api", 8..10);
    std::fs::rename(
        node.live("web"),
        node.container("web").join("0.log.20240501-100000"),
    )
    .expect("rotate");
    Node::append(&node.live("web"), "web", 14..30);
    assert!(std::fs::metadata(node.live("web")).expect("md").len() > shipped_web);

    let plan = load(
        &config(&promtail),
        &format!("{}/loki/api/v1/push", loki.url()),
    );
    assert_eq!(plan.settings.legacy_positions_files, vec![promtail.clone()]);
    let expected: BTreeMap<String, usize> = want("web", 6..30)
        .into_iter()
        .chain(want("api", 3..10))
        .collect();
    let agent = node.run(plan.clone());
    until("every line Promtail had not shipped", || {
        expected.keys().all(|k| received(&loki).contains_key(k))
    })
    .await;
    agent.stop().await;
    assert_eq!(received(&loki), expected);

    // Restarted, the agent goes by its own positions (recorded with each file's identity),
    // not Promtail's again: only new lines are sent.
    Node::append(&node.live("web"), "web", 30..32);
    Node::append(&node.live("api"), "api", 10..12);
    let agent = node.run(plan);
    let expected: BTreeMap<String, usize> = expected
        .into_iter()
        .chain(want("web", 30..32))
        .chain(want("api", 10..12))
        .collect();
    until("the lines written after the first run", || {
        expected.keys().all(|k| received(&loki).contains_key(k))
    })
    .await;
    agent.stop().await;
    assert_eq!(received(&loki), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtail_positions_are_ignored_once_the_agent_has_its_own() {
    let loki = FakeLoki::start(Config::for_tests())
        .await
        .expect("fake-loki");
    let node = Node::new();
    Node::append(&node.live("web"), "web", 0..4);
    let promtail = node.dir.path().join("promtail-positions.yaml");
    // A positions file of our own: a previous run already started on this node.
    std::fs::write(
        node.dir.path().join("positions.yaml"),
        "version: 2\npositions: {}\nfiles: []\n",
    )
    .expect("ours");
    let shipped = std::fs::metadata(node.live("web")).expect("md").len();
    std::fs::write(
        &promtail,
        format!("positions:\n  /var/log/pods/default_web_uid-web/app/0.log: \"{shipped}\"\n"),
    )
    .expect("promtail positions");
    let plan = load(
        &config(&promtail),
        &format!("{}/loki/api/v1/push", loki.url()),
    );
    let agent = node.run(plan);
    until("the file read from 0", || received(&loki).len() == 4).await;
    agent.stop().await;
    assert_eq!(received(&loki), want("web", 0..4));
}
