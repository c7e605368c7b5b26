//! Everyday-rate cost: the agent tailing files that grow slowly (a rate-limited writer, with
//! kubelet-style rotation) while fake-loki is scanned for lag; what counts is the agent's CPU
//! per line and per second of wall time, its wake-ups, and that every line arrives once.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use e2e::check::{Observer, Thresholds};
use e2e::gen::{ClusterSpec, GenConfig, Rotation};
use e2e::manifest::ClusterInfo;

use crate::harness::{self, TENANT};
use crate::procfs;

/// Settings of one low-rate run.
#[derive(Debug, Clone)]
pub struct LowRateConfig {
    /// Lines per second over all files.
    pub rate: f64,
    /// Files written (one container per pod).
    pub files: usize,
    pub duration: Duration,
    /// `0.log` is rotated (rename + create, gzip of older files) at this size.
    pub rotate_bytes: u64,
    /// Agent command template with `{url}`, `{pods_root}`, `{scratch}` (run via `sh -c exec`).
    pub agent_cmd: Option<String>,
    pub scratch: Option<PathBuf>,
    /// Give up when nothing new arrived for this long after the writer stopped.
    pub stall_timeout: Duration,
}

/// What one low-rate run measured.
#[derive(Debug, Clone, Default)]
pub struct LowRateReport {
    pub agent_cmd: String,
    pub rate: f64,
    pub files: usize,
    pub written: u64,
    pub rotations: u64,
    /// From the writer's start until the last line was seen in fake-loki.
    pub wall_s: f64,
    /// Agent CPU over the same window (utime + stime of every thread).
    pub agent_cpu_s: f64,
    /// Context switches of every agent thread over the window (each one a sleep or wake-up).
    pub agent_switches: u64,
    pub pushes: u64,
    pub received: u64,
    pub missing: u64,
    pub duplicates: u64,
    pub lag_p50_ms: f64,
    pub lag_p99_ms: f64,
    pub lag_max_ms: f64,
    pub timed_out: bool,
}

impl LowRateReport {
    pub fn complete(&self) -> bool {
        !self.timed_out
            && self.missing == 0
            && self.duplicates == 0
            && self.received == self.written
    }

    pub fn to_text(&self) -> String {
        let per_line = |x: f64| x / self.written.max(1) as f64;
        let mut s = String::new();
        s += &format!("agent cmd: {}\n", self.agent_cmd);
        s += &format!(
            "wrote {} lines at {} lines/s over {} files ({} rotations); all seen after {:.1}s\n",
            self.written, self.rate, self.files, self.rotations, self.wall_s
        );
        s += &format!(
            "agent: {:.3} CPU-s ({:.2}% of a core, {:.1} µs per line), {} context switches ({:.0}/s, {:.2} per line)\n",
            self.agent_cpu_s,
            100.0 * self.agent_cpu_s / self.wall_s,
            1e6 * per_line(self.agent_cpu_s),
            self.agent_switches,
            self.agent_switches as f64 / self.wall_s,
            per_line(self.agent_switches as f64),
        );
        s += &format!(
            "pushes {} ({:.1}/s); lag p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (scan resolution ~250 ms)\n",
            self.pushes,
            self.pushes as f64 / self.wall_s,
            self.lag_p50_ms,
            self.lag_p99_ms,
            self.lag_max_ms
        );
        s += &format!(
            "check: received {} missing {} duplicates {}{}\n",
            self.received,
            self.missing,
            self.duplicates,
            if self.timed_out { " (STALLED)" } else { "" }
        );
        s += if self.complete() {
            "result: COMPLETE\n"
        } else {
            "result: INCOMPLETE\n"
        };
        s
    }
}

/// Voluntary + involuntary context switches summed over every thread of `pid`.
fn context_switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .map(|status| {
            status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum()
}

/// Runs the low-rate measurement.
pub async fn run(cfg: &LowRateConfig) -> Result<LowRateReport> {
    if cfg.files == 0 || cfg.rate.is_nan() || cfg.rate <= 0.0 {
        bail!("--files and --rate must be > 0");
    }
    let tmp;
    let scratch = match &cfg.scratch {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            tmp = tempfile::Builder::new()
                .prefix("bench-lowrate-")
                .tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let pods_root = scratch.join("pods");
    if pods_root.exists() {
        bail!("{} exists; use a fresh --scratch", pods_root.display());
    }
    std::fs::create_dir_all(&pods_root)?;
    let (agent_bin, loki_bin) = harness::find_binaries()?;
    let tck = procfs::clk_tck();
    let (mut loki_proc, loki, url) = harness::start_fake_loki(&scratch, &loki_bin).await?;

    let agent_port = harness::free_port()?;
    let template = cfg.agent_cmd.clone().unwrap_or_else(|| {
        format!(
            "{} run --loki-url {{url}} --tenant {TENANT} --pods-root {{pods_root}} --positions {{scratch}}/positions.yaml --external-label cluster=bench --listen 127.0.0.1:{agent_port}",
            agent_bin.display()
        )
    });
    let command = template
        .replace("{url}", &url)
        .replace("{pods_root}", &pods_root.display().to_string())
        .replace("{scratch}", &scratch.display().to_string());
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("exec {command}"))
        .env("RUST_LOG", "warn")
        .env("LOKI_URL", format!("{url}/loki/api/v1/push"));
    let mut agent = harness::spawn_logged("agent", cmd, &scratch.join("agent.log"))?;
    // Ready (first scan done) before the clock starts; a foreign agent gets a second.
    let ready = e2e::loki::HttpLoki::new(&format!("http://127.0.0.1:{agent_port}"));
    let ready_by = Instant::now() + Duration::from_secs(20);
    if cfg.agent_cmd.is_none() {
        while !matches!(ready.get("/-/ready", None).await, Ok((200, _))) {
            if Instant::now() > ready_by {
                bail!("agent not ready within 20s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    } else {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    let mut gen = GenConfig::new(
        "lowrate",
        1,
        vec![ClusterSpec {
            name: "bench".into(),
            tenant: TENANT.into(),
            pods_root: pods_root.clone(),
        }],
    );
    gen.namespaces = 1;
    gen.pods_per_namespace = cfg.files;
    gen.containers_per_pod = 1;
    gen.rate_per_sec = Some(cfg.rate);
    gen.duration = Some(cfg.duration);
    gen.rotation = Rotation::Rename {
        max_bytes: cfg.rotate_bytes,
        keep_files: 5,
    };
    let clusters = [ClusterInfo {
        name: "bench".into(),
        tenant: TENANT.into(),
    }];
    let mut obs = Observer::new("lowrate", &clusters, e2e::gen::now_ns());

    let cpu0 = procfs::sample(agent.pid(), tck)?.cpu_s;
    let sw0 = context_switches(agent.pid());
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || e2e::gen::run(gen, &stop))
    };
    // Scan while the writer runs (lag is first seen - written), then until all arrived.
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if let Err(e) = obs.scan(&loki).await {
            eprintln!("scan failed: {e}");
        }
        if writer.is_finished() {
            break;
        }
        if let Ok(Some(st)) = agent.child.try_wait() {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            bail!(
                "agent exited early ({st}); see {}",
                scratch.join("agent.log").display()
            );
        }
    }
    let manifest = writer
        .join()
        .map_err(|_| anyhow::anyhow!("writer thread panicked"))?
        .context("writer")?;
    let mut last_seen = 0u64;
    let mut last_change = Instant::now();
    let mut timed_out = false;
    loop {
        let seen = obs.seen_expected(&manifest);
        if seen >= manifest.totals.entries {
            break;
        }
        if seen != last_seen {
            last_seen = seen;
            last_change = Instant::now();
        } else if last_change.elapsed() > cfg.stall_timeout {
            timed_out = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        if let Err(e) = obs.scan(&loki).await {
            eprintln!("scan failed: {e}");
        }
    }
    let wall_s = start.elapsed().as_secs_f64();
    let cpu1 = procfs::sample(agent.pid(), tck)?.cpu_s;
    let sw1 = context_switches(agent.pid());
    let (_, pushes) = harness::fetch_stats(&loki).await?;
    agent.stop(Duration::from_secs(20));
    // One last look after the agent stopped: anything sent twice shows up now.
    obs.scan(&loki).await.context("final scan")?;
    let th = Thresholds {
        max_lag_p99_ms: None,
        ..Thresholds::default()
    };
    let r = obs.report(&manifest, &th);
    loki_proc.stop(Duration::from_secs(10));
    Ok(LowRateReport {
        agent_cmd: command,
        rate: cfg.rate,
        files: cfg.files,
        written: manifest.totals.entries,
        rotations: manifest.totals.rotations,
        wall_s,
        agent_cpu_s: cpu1 - cpu0,
        agent_switches: sw1.saturating_sub(sw0),
        pushes,
        received: r.summary.received,
        missing: r.summary.missing,
        duplicates: r.summary.duplicates,
        lag_p50_ms: r.summary.lag.p50_ms,
        lag_p99_ms: r.summary.lag.p99_ms,
        lag_max_ms: r.summary.lag.max_ms,
        timed_out,
    })
}
