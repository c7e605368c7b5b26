//! End-to-end throughput: pre-generated kubelet-layout CRI files, the `fake-loki`
//! binary and an agent as separate processes, timed from agent start until fake-loki
//! holds every line, then checked for completeness (every `seq` exactly once).

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use e2e::loki::HttpLoki;

use crate::data::TsFormatter;
use crate::pipelines::{self, Pipeline};
use crate::procfs::{self, ProcSample};

pub const TENANT: &str = "bench";

/// Settings of one run.
#[derive(Debug, Clone)]
pub struct E2eConfig {
    pub lines: u64,
    pub line_bytes: usize,
    pub pods: usize,
    /// What the agent runs (`cli` or an Alloy file) and the bodies it is fed.
    pub pipeline: &'static Pipeline,
    /// Template with `{url}`, `{pods_root}`, `{scratch}`, `{config}` (the pipeline's Alloy
    /// file); `None` runs this workspace's agent.
    pub agent_cmd: Option<String>,
    /// Where files go; a temporary directory (removed afterwards) when `None`.
    pub scratch: Option<PathBuf>,
    /// Give up when fake-loki's entry count has not grown for this long.
    pub stall_timeout: Duration,
    /// LogQL selector for the completeness query.
    pub selector: String,
    pub check: bool,
}

/// Everything measured.
#[derive(Debug, Clone, Default)]
pub struct E2eReport {
    pub lines: u64,
    pub file_bytes: u64,
    pub pods: usize,
    pub pipeline: String,
    pub agent_cmd: String,
    pub generate_s: f64,
    pub floor_s: f64,
    pub elapsed_s: f64,
    pub stored: u64,
    pub pushes: u64,
    pub agent: ProcSample,
    pub fake_loki: ProcSample,
    pub checked: bool,
    pub check_s: f64,
    pub seen: u64,
    pub missing: u64,
    pub duplicates: u64,
    pub unparsable: u64,
    pub timed_out: bool,
}

impl E2eReport {
    pub fn lines_per_s(&self) -> f64 {
        self.stored as f64 / self.elapsed_s
    }
    pub fn mb_per_s(&self) -> f64 {
        self.file_bytes as f64 / 1e6 / self.elapsed_s
    }
    pub fn agent_cpu_per_million(&self) -> f64 {
        self.agent.cpu_s / (self.lines as f64 / 1e6)
    }
    pub fn ratio_to_floor(&self) -> f64 {
        self.elapsed_s / self.floor_s
    }
    pub fn complete(&self) -> bool {
        !self.timed_out
            && self.stored == self.lines
            && (!self.checked
                || (self.missing == 0 && self.duplicates == 0 && self.seen == self.lines))
    }

    pub fn to_json(&self) -> serde_json::Value {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        serde_json::json!({
            "lines": self.lines,
            "file_bytes": self.file_bytes,
            "pods": self.pods,
            "pipeline": self.pipeline,
            "agent_cmd": self.agent_cmd,
            "generate_s": self.generate_s,
            "elapsed_s": self.elapsed_s,
            "lines_per_s": self.lines_per_s(),
            "mb_per_s": self.mb_per_s(),
            "stored": self.stored,
            "pushes": self.pushes,
            "agent": {
                "cpu_s": self.agent.cpu_s,
                "cpu_s_per_million_lines": self.agent_cpu_per_million(),
                "peak_rss_mib": mib(self.agent.peak_rss),
                "rss_mib": mib(self.agent.rss),
            },
            "fake_loki": {
                "cpu_s": self.fake_loki.cpu_s,
                "cpu_s_per_million_lines": self.fake_loki.cpu_s / (self.lines as f64 / 1e6),
                "peak_rss_mib": mib(self.fake_loki.peak_rss),
                "rss_mib": mib(self.fake_loki.rss),
            },
            "floor_s": self.floor_s,
            "ratio_to_floor": self.ratio_to_floor(),
            "check": {
                "ran": self.checked,
                "seconds": self.check_s,
                "seen": self.seen,
                "missing": self.missing,
                "duplicates": self.duplicates,
                "unparsable": self.unparsable,
            },
            "timed_out": self.timed_out,
            "complete": self.complete(),
        })
    }

    pub fn to_text(&self) -> String {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        let mut s = String::new();
        s += &format!(
            "lines {} ({} pods, {:.1} MB of files, generated in {:.1}s)\n",
            self.lines,
            self.pods,
            self.file_bytes as f64 / 1e6,
            self.generate_s
        );
        s += &format!("pipeline: {}\n", self.pipeline);
        s += &format!("agent cmd: {}\n", self.agent_cmd);
        s += &format!(
            "delivered {} of {} in {:.3}s: {:.0} lines/s, {:.1} MB/s{}\n",
            self.stored,
            self.lines,
            self.elapsed_s,
            self.lines_per_s(),
            self.mb_per_s(),
            if self.timed_out { " (STALLED)" } else { "" }
        );
        s += &format!(
            "agent: {:.2} CPU-s ({:.3} CPU-s per million lines), peak RSS {:.1} MiB, RSS {:.1} MiB\n",
            self.agent.cpu_s,
            self.agent_cpu_per_million(),
            mib(self.agent.peak_rss),
            mib(self.agent.rss)
        );
        s += &format!(
            "fake-loki: {:.2} CPU-s, peak RSS {:.1} MiB, {} pushes\n",
            self.fake_loki.cpu_s,
            mib(self.fake_loki.peak_rss),
            self.pushes
        );
        s += &format!(
            "physical floor (read + split lines, one process): {:.3}s; agent pipeline is {:.1}x the floor\n",
            self.floor_s,
            self.ratio_to_floor()
        );
        if self.checked {
            s += &format!(
                "check ({:.1}s): seen {} missing {} duplicates {} unparsable {}\n",
                self.check_s, self.seen, self.missing, self.duplicates, self.unparsable
            );
        } else {
            s += "check: skipped (stats count only)\n";
        }
        s += if self.complete() {
            "result: COMPLETE\n"
        } else {
            "result: INCOMPLETE\n"
        };
        s
    }
}

/// One row per run: throughput, agent CPU per million lines and peak RSS, and the CPU ratio
/// to the first run (run `cli` first to compare every pipeline with the built-in path).
pub fn comparison_table(reports: &[E2eReport]) -> String {
    let base = reports
        .first()
        .map(|r| r.agent_cpu_per_million())
        .unwrap_or(f64::NAN);
    let mut s = String::from(
        "| pipeline | lines/s | agent CPU-s per M lines | x first | agent peak RSS MiB | complete |\n|---|---|---|---|---|---|\n",
    );
    for r in reports {
        s += &format!(
            "| {} | {:.0} | {:.3} | {:.2} | {:.1} | {} |\n",
            r.pipeline,
            r.lines_per_s(),
            r.agent_cpu_per_million(),
            r.agent_cpu_per_million() / base,
            r.agent.peak_rss as f64 / (1024.0 * 1024.0),
            if r.complete() { "yes" } else { "NO" },
        );
    }
    s
}

/// A child process killed (and reaped) when dropped.
pub(crate) struct Guard {
    name: &'static str,
    pub(crate) child: Child,
}

impl Guard {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL.
    pub(crate) fn stop(&mut self, grace: Duration) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let until = Instant::now() + grace;
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("{} did not exit within {grace:?}; killing", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A free port on 127.0.0.1 (bound, then released).
pub(crate) fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// The `agent` and `fake-loki` binaries next to the current executable, built with
/// `cargo build --release -p agent -p fake-loki` when missing.
pub fn find_binaries() -> Result<(PathBuf, PathBuf)> {
    let exe = std::env::current_exe().context("locating the current executable")?;
    let dir = exe
        .parent()
        .context("current executable has no directory")?
        .to_path_buf();
    let agent = dir.join("agent");
    let loki = dir.join("fake-loki");
    if !agent.exists() || !loki.exists() {
        eprintln!("building agent and fake-loki (cargo build --release -p agent -p fake-loki)");
        let ok = Command::new("cargo")
            .args(["build", "--release", "-p", "agent", "-p", "fake-loki"])
            .status()
            .context("running cargo")?
            .success();
        if !ok {
            bail!("cargo build --release -p agent -p fake-loki failed");
        }
        if !agent.exists() || !loki.exists() {
            bail!(
                "built, but {} / {} are still missing (is this a release build?)",
                agent.display(),
                loki.display()
            );
        }
    }
    Ok((agent, loki))
}

/// The pod directory name of pod `p`: `<ns>_<pod>_<uid>`.
fn pod_dir(p: usize) -> String {
    format!("bench_pod-{p:04}_00000000-0000-4000-8000-{p:012}")
}

/// Writes `lines` CRI lines of `line_bytes` (newline included) round-robin over `pods`
/// files `<root>/<ns>_<pod>_<uid>/<container>/0.log`; line `seq` goes to pod `seq % pods`.
/// Bodies are the pipeline's format, each starting with the e2e marker.
/// Returns the file bytes written.
pub fn generate(
    root: &Path,
    pipeline: &Pipeline,
    lines: u64,
    line_bytes: usize,
    pods: usize,
    base_ns: i64,
) -> Result<u64> {
    let mut total = 0u64;
    let mut buf = Vec::with_capacity(1 << 20);
    let mut fmt = TsFormatter::default();
    let mut body_ts = TsFormatter::default();
    for p in 0..pods {
        let container = pipeline.container(p);
        let dir = root.join(pod_dir(p)).join(container);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join("0.log");
        let mut w = BufWriter::with_capacity(
            1 << 20,
            File::create(&path).with_context(|| format!("creating {}", path.display()))?,
        );
        let json = pipeline.json_body(p);
        let mut seq = p as u64;
        while seq < lines {
            buf.clear();
            let ts_ns = base_ns + seq as i64 * 100;
            fmt.write(&mut buf, ts_ns);
            buf.extend_from_slice(b" stdout F ");
            let marker =
                format!("run=bench src=bench/bench/pod-{p:04}/{container}/stdout seq={seq}");
            let room = line_bytes.saturating_sub(buf.len() + 1);
            pipelines::write_body(&mut buf, json, &marker, seq, ts_ns, &mut body_ts, room);
            buf.push(b'\n');
            w.write_all(&buf)
                .with_context(|| format!("writing {}", path.display()))?;
            total += buf.len() as u64;
            seq += pods as u64;
        }
        w.flush()
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(total)
}

/// The physical floor: read every file and split it into lines in one thread.
/// Returns (lines, seconds).
pub fn floor(root: &Path, pipeline: &Pipeline, pods: usize) -> Result<(u64, f64)> {
    let mut buf = vec![0u8; 1 << 20];
    let t = Instant::now();
    let mut lines = 0u64;
    for p in 0..pods {
        let path = root
            .join(pod_dir(p))
            .join(pipeline.container(p))
            .join("0.log");
        let mut f = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        loop {
            let n = f
                .read(&mut buf)
                .with_context(|| format!("reading {}", path.display()))?;
            if n == 0 {
                break;
            }
            lines += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
        }
    }
    Ok((lines, t.elapsed().as_secs_f64()))
}

fn stats_entries(v: &serde_json::Value) -> (u64, u64) {
    let t = &v["tenants"][TENANT];
    (
        t["entries"].as_u64().unwrap_or(0),
        t["pushes"].as_u64().unwrap_or(0),
    )
}

pub(crate) async fn fetch_stats(loki: &HttpLoki) -> Result<(u64, u64)> {
    let (status, body) = loki.get("/fake-loki/api/v1/stats", None).await?;
    if status != 200 {
        bail!("stats answered {status}");
    }
    let v: serde_json::Value = serde_json::from_slice(&body).context("stats JSON")?;
    Ok(stats_entries(&v))
}

pub(crate) fn spawn_logged(name: &'static str, mut cmd: Command, log: &Path) -> Result<Guard> {
    let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let err = out.try_clone()?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    Ok(Guard { name, child })
}

/// Starts the fake-loki binary with limits that never throttle a run and waits until it is
/// ready; returns its guard, a client and its base URL.
pub(crate) async fn start_fake_loki(
    scratch: &Path,
    loki_bin: &Path,
) -> Result<(Guard, HttpLoki, String)> {
    let limits = scratch.join("limits.yaml");
    std::fs::write(
        &limits,
        "limits_config:\n  ingestion_rate_mb: 1000000\n  ingestion_burst_size_mb: 1000000\n  per_stream_rate_limit: 100GB\n  per_stream_rate_limit_burst: 100GB\n  max_global_streams_per_user: 0\n  reject_old_samples: false\n  discover_log_levels: false\n  discover_service_name: []\n",
    )?;
    let loki_port = free_port()?;
    let url = format!("http://127.0.0.1:{loki_port}");
    let mut cmd = Command::new(loki_bin);
    cmd.arg("--listen")
        .arg(format!("127.0.0.1:{loki_port}"))
        .arg("--limits")
        .arg(&limits)
        .env("RUST_LOG", "warn");
    let mut loki_proc = spawn_logged("fake-loki", cmd, &scratch.join("fake-loki.log"))?;
    let loki = HttpLoki::new(&url);
    let ready_by = Instant::now() + Duration::from_secs(20);
    while !loki.ready().await {
        if let Ok(Some(st)) = loki_proc.child.try_wait() {
            bail!(
                "fake-loki exited ({st}); see {}",
                scratch.join("fake-loki.log").display()
            );
        }
        if Instant::now() > ready_by {
            bail!("fake-loki not ready within 20s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok((loki_proc, loki, url))
}

/// Runs the whole measurement.
pub async fn run(cfg: &E2eConfig) -> Result<E2eReport> {
    if cfg.pods == 0 || cfg.lines == 0 {
        bail!("--lines and --pods must be > 0");
    }
    let tmp;
    let scratch = match &cfg.scratch {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            tmp = tempfile::Builder::new().prefix("bench-e2e-").tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let pods_root = scratch.join("pods");
    if pods_root.exists() {
        bail!("{} exists; use a fresh --scratch", pods_root.display());
    }
    let (agent_bin, loki_bin) = find_binaries()?;
    let tck = procfs::clk_tck();
    let mut report = E2eReport {
        lines: cfg.lines,
        pods: cfg.pods,
        pipeline: cfg.pipeline.name.to_string(),
        ..E2eReport::default()
    };

    // 1. Files, then the floor (twice; the second, warm read counts).
    let base_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) - 300_000_000_000;
    let t = Instant::now();
    report.file_bytes = generate(
        &pods_root,
        cfg.pipeline,
        cfg.lines,
        cfg.line_bytes,
        cfg.pods,
        base_ns,
    )?;
    report.generate_s = t.elapsed().as_secs_f64();
    floor(&pods_root, cfg.pipeline, cfg.pods)?;
    let (floor_lines, floor_s) = floor(&pods_root, cfg.pipeline, cfg.pods)?;
    if floor_lines != cfg.lines {
        bail!("floor read {floor_lines} lines, expected {}", cfg.lines);
    }
    report.floor_s = floor_s;

    // 2. fake-loki with limits that never throttle the run.
    let (mut loki_proc, loki, url) = start_fake_loki(&scratch, &loki_bin).await?;

    // 3. The agent: CLI mode, or `agent run CONFIG` with the pipeline's Alloy file (which
    // reads the push URL from $LOKI_URL).
    let config = scratch.join("pipeline.alloy");
    if let Some(src) = cfg.pipeline.config {
        std::fs::write(&config, src).with_context(|| format!("writing {}", config.display()))?;
    }
    let template = match (&cfg.agent_cmd, cfg.pipeline.config) {
        (Some(t), _) => t.clone(),
        (None, None) => format!(
            "{} run --loki-url {{url}} --tenant {TENANT} --pods-root {{pods_root}} --positions {{scratch}}/positions.yaml --batch-wait 100ms --listen 127.0.0.1:{}",
            agent_bin.display(),
            free_port()?
        ),
        (None, Some(_)) => format!(
            "{} run {{config}} --pods-root {{pods_root}} --storage.path={{scratch}}/storage --server.http.listen-addr=127.0.0.1:{}",
            agent_bin.display(),
            free_port()?
        ),
    };
    let command = template
        .replace("{url}", &url)
        .replace("{pods_root}", &pods_root.display().to_string())
        .replace("{scratch}", &scratch.display().to_string())
        .replace("{config}", &config.display().to_string());
    report.agent_cmd = command.clone();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("exec {command}"))
        .env("RUST_LOG", "warn")
        .env("LOKI_URL", format!("{url}/loki/api/v1/push"));
    let start = Instant::now();
    let mut agent = spawn_logged("agent", cmd, &scratch.join("agent.log"))?;

    // 4. Poll until every line is stored (or nothing moves for stall_timeout).
    let mut last = 0u64;
    let mut last_change = Instant::now();
    loop {
        let (entries, pushes) = fetch_stats(&loki).await?;
        report.stored = entries;
        report.pushes = pushes;
        if entries >= cfg.lines {
            report.elapsed_s = start.elapsed().as_secs_f64();
            break;
        }
        if entries != last {
            last = entries;
            last_change = Instant::now();
        } else if last_change.elapsed() > cfg.stall_timeout {
            report.elapsed_s = start.elapsed().as_secs_f64();
            report.timed_out = true;
            break;
        }
        if let Ok(Some(st)) = agent.child.try_wait() {
            bail!(
                "agent exited early ({st}) after storing {entries} lines; see {}",
                scratch.join("agent.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    report.agent = procfs::sample(agent.pid(), tck)?;
    report.fake_loki = procfs::sample(loki_proc.pid(), tck)?;
    agent.stop(Duration::from_secs(20));
    let (entries, pushes) = fetch_stats(&loki).await?;
    report.stored = entries;
    report.pushes = pushes;

    // 5. Completeness: every seq exactly once, read back page by page.
    if cfg.check {
        let t = Instant::now();
        let mut seen = vec![0u8; cfg.lines as usize];
        let mut unparsable = 0u64;
        let mut total = 0u64;
        let end_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX) + 60_000_000_000;
        e2e::loki::fetch_all(
            &loki,
            Some(TENANT),
            &cfg.selector,
            base_ns - 1,
            end_ns,
            e2e::loki::MAX_LIMIT,
            |_, _, line| {
                total += 1;
                match e2e::marker::parse(line) {
                    Some(m) if m.seq < cfg.lines => {
                        let c = &mut seen[m.seq as usize];
                        *c = c.saturating_add(1);
                    }
                    _ => unparsable += 1,
                }
            },
        )
        .await
        .context("reading back every entry")?;
        report.checked = true;
        report.check_s = t.elapsed().as_secs_f64();
        report.seen = total;
        report.unparsable = unparsable;
        report.missing = seen.iter().filter(|&&c| c == 0).count() as u64;
        report.duplicates = seen.iter().map(|&c| u64::from(c.saturating_sub(1))).sum();
    }
    loki_proc.stop(Duration::from_secs(10));
    Ok(report)
}
