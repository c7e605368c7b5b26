//! The `e2e` binary: parse flags, init tracing, call the library (`loadgen`, `check`, `local`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};

use e2e::check::{self, Observer, Thresholds, WatchSettings};
use e2e::content::ContentMix;
use e2e::cost;
use e2e::emit::{self, EmitConfig, PodIdentity};
use e2e::gen::{self, ClusterSpec, GenConfig, Rotation};
use e2e::loki::HttpLoki;
use e2e::manifest::{ClusterInfo, Manifest};
use e2e::pipeline::{self, RunConfig};
use e2e::report;
use e2e::usage;

#[derive(Parser, Debug)]
#[command(
    name = "e2e",
    version,
    about = "Did every log line arrive, exactly once, in the right tenant, and how late?"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Write kubelet-layout CRI log files (and a manifest) for simulated clusters.
    Loadgen(LoadgenArgs),
    /// Compare what Loki holds with a loadgen manifest; exit 0 only when every check passes.
    Check(CheckArgs),
    /// The whole pipeline on loopback: fake-loki + one agent per cluster + loadgen + check.
    Local(LocalArgs),
    /// A long local run with a repeating fault cycle (429 storm, Loki outage, agent kill -9,
    /// 5xx/resets, stalled Loki), rotation storms and pod churn; reports missing/duplicated
    /// lines and every process's memory over time.
    Soak(SoakArgs),
    /// In-cluster generator (kind e2e): marker lines to stdout, then its record to a file.
    Emit(EmitArgs),
    /// Assemble the generators' records (JSON lines) into a manifest for `check`.
    Manifest(ManifestArgs),
    /// Price usage (fake-loki's ledger, agents' resources): by day, week, month, tenant, cluster;
    /// exit 1 when a budget is exceeded.
    Cost(CostArgs),
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("usage_source").required(true).args(["usage_url", "usage_file"])))]
struct CostArgs {
    /// fake-loki base URL to read `/fake-loki/api/v1/usage` from.
    #[arg(long)]
    usage_url: Option<String>,
    /// A saved usage response (or a JSON array of its rows).
    #[arg(long)]
    usage_file: Option<PathBuf>,
    /// The price file (YAML; see e2e/examples/prices.yaml).
    #[arg(long)]
    prices: PathBuf,
    /// Scrape an agent's /metrics now, as URL=cluster (repeatable); booked on today (UTC).
    #[arg(long = "agents-metrics")]
    agents_metrics: Vec<String>,
    /// Agent usage records (JSON array, as `e2e local --usage-out` writes).
    #[arg(long)]
    agent_usage: Option<PathBuf>,
    /// The window: the day, ISO week or month containing --at, or everything.
    #[arg(long, value_parser = cost::Period::parse, default_value = "all")]
    period: cost::Period,
    /// A day (YYYY-MM-DD) inside the window (default: the latest day with usage).
    #[arg(long)]
    at: Option<String>,
    /// Budgets (YAML; see e2e/examples/budgets.yaml).
    #[arg(long)]
    budget: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_parser = ["table", "json", "csv"], default_value = "table")]
    format: String,
}

fn duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (e.g. 200ms, 15s, 2m)"))?;
    if !(v.is_finite() && v >= 0.0) {
        return Err(format!("invalid duration {s:?}"));
    }
    Ok(Duration::from_secs_f64(v * mult))
}

fn bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = [
        ("KiB", 1u64 << 10),
        ("MiB", 1 << 20),
        ("GiB", 1 << 30),
        ("B", 1),
    ]
    .iter()
    .find_map(|(suf, m)| s.strip_suffix(suf).map(|n| (n, *m)))
    .unwrap_or((s, 1));
    num.trim()
        .parse::<u64>()
        .map(|v| v * mult)
        .map_err(|_| format!("invalid size {s:?} (e.g. 1048576, 512KiB, 1MiB)"))
}

fn cluster(s: &str) -> Result<ClusterInfo, String> {
    let (name, tenant) = s
        .split_once('=')
        .ok_or_else(|| format!("expected name=tenant, got {s:?}"))?;
    Ok(ClusterInfo {
        name: name.to_owned(),
        tenant: tenant.to_owned(),
    })
}

/// Shape and content of the generated load (shared by `loadgen` and `local`).
#[derive(Args, Debug, Clone)]
struct LoadArgs {
    /// Namespaces per cluster.
    #[arg(long, default_value_t = 3)]
    namespaces: usize,
    /// Pods per namespace.
    #[arg(long, default_value_t = 3)]
    pods: usize,
    /// Containers per pod.
    #[arg(long, default_value_t = 2)]
    containers: usize,
    /// Target entries per second over all clusters; 0 writes flat out.
    #[arg(long, default_value_t = 3000.0)]
    rate: f64,
    /// How long to generate.
    #[arg(long, value_parser = duration, default_value = "15s")]
    duration: Duration,
    /// Stop after this many entries (whichever of duration and lines comes first).
    #[arg(long)]
    lines: Option<u64>,
    /// Rotate 0.log at this size (kubelet's containerLogMaxSize); 0 disables rotation.
    #[arg(long, value_parser = bytes, default_value = "256KiB")]
    rotate_bytes: u64,
    /// Files kept per container including 0.log (kubelet's containerLogMaxFiles).
    #[arg(long, default_value_t = 5)]
    keep_files: usize,
    /// Rotate by copy + truncate instead of rename + create.
    #[arg(long)]
    copytruncate: bool,
    /// Delete one pod and create a replacement this often.
    #[arg(long, value_parser = duration)]
    churn_every: Option<Duration>,
    /// How long a deleted pod's directory stays before it is removed.
    #[arg(long, value_parser = duration, default_value = "2s")]
    churn_grace: Duration,
    /// Fraction of events that are multi-line stack traces.
    #[arg(long, default_value_t = 0.02)]
    trace_ratio: f64,
    /// Fraction of events that are very long (17-48 KiB, written as CRI partials).
    #[arg(long, default_value_t = 0.002)]
    long_line_ratio: f64,
    /// RNG seed: same seed, same content.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

impl LoadArgs {
    fn rotation(&self) -> Rotation {
        match (self.rotate_bytes, self.copytruncate) {
            (0, _) => Rotation::None,
            (max_bytes, false) => Rotation::Rename {
                max_bytes,
                keep_files: self.keep_files,
            },
            (max_bytes, true) => Rotation::CopyTruncate {
                max_bytes,
                keep_files: self.keep_files,
            },
        }
    }

    fn mix(&self) -> ContentMix {
        ContentMix {
            trace_ratio: self.trace_ratio,
            long_line_ratio: self.long_line_ratio,
            ..ContentMix::default()
        }
    }

    fn rate(&self) -> Option<f64> {
        (self.rate > 0.0).then_some(self.rate)
    }
}

#[derive(Args, Debug)]
struct LoadgenArgs {
    /// Output directory: each cluster's pods root is `<out>/<cluster>`.
    #[arg(long)]
    out: PathBuf,
    /// A simulated cluster as name=tenant (repeatable).
    #[arg(long = "cluster", value_parser = cluster, default_value = "ops=tenant-ops")]
    clusters: Vec<ClusterInfo>,
    /// Run id written into every marker (default: derived from the clock).
    #[arg(long)]
    run_id: Option<String>,
    /// Manifest path (default `<out>/manifest.json`).
    #[arg(long)]
    manifest: Option<PathBuf>,
    #[command(flatten)]
    load: LoadArgs,
}

/// Pass/fail thresholds (shared by `check` and `local`).
#[derive(Args, Debug, Clone)]
struct ThresholdArgs {
    /// Alert when a source's (or the run's) collection rate is below this percentage.
    #[arg(long, default_value_t = 95.0)]
    min_rate: f64,
    /// Alert when the p99 ingestion lag exceeds this; "off" disables the lag alert.
    #[arg(long, default_value = "60s")]
    max_lag_p99: String,
    /// Do not fail on duplicates.
    #[arg(long)]
    allow_duplicates: bool,
    /// Freshness: fail naming every source whose newest entry is older than this, or that has
    /// no entry at all (silent).
    #[arg(long, value_parser = duration)]
    max_lag: Option<Duration>,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// List every source, not only the failing ones.
    #[arg(long)]
    verbose: bool,
}

impl ThresholdArgs {
    fn thresholds(&self) -> anyhow::Result<Thresholds> {
        let max_lag_p99_ms = if self.max_lag_p99 == "off" {
            None
        } else {
            Some(
                duration(&self.max_lag_p99)
                    .map_err(anyhow::Error::msg)?
                    .as_millis() as u64,
            )
        };
        Ok(Thresholds {
            min_rate_pct: self.min_rate,
            max_lag_p99_ms,
            allow_duplicates: self.allow_duplicates,
            max_lag_ms: self.max_lag.map(|d| d.as_millis() as u64),
        })
    }
}

#[derive(Args, Debug)]
struct CheckArgs {
    /// The manifest written by `loadgen`.
    #[arg(long)]
    manifest: PathBuf,
    /// Loki (or fake-loki) base URL.
    #[arg(long, default_value = "http://127.0.0.1:3100")]
    loki_url: String,
    /// Keep polling until everything arrived or this much time passed (lag is then measured
    /// from the first poll that saw each entry); without it, one scan.
    #[arg(long, value_parser = duration)]
    watch: Option<Duration>,
    /// Poll interval with --watch.
    #[arg(long, value_parser = duration, default_value = "500ms")]
    poll: Duration,
    /// Also scan this tenant for leaks (repeatable).
    #[arg(long = "extra-tenant")]
    extra_tenants: Vec<String>,
    /// Entries per query page (Loki's max is 5000).
    #[arg(long, default_value_t = 5000)]
    page_limit: usize,
    #[command(flatten)]
    th: ThresholdArgs,
}

#[derive(Args, Debug)]
struct SoakArgs {
    /// How long the generator writes.
    #[arg(long, value_parser = duration, default_value = "30m")]
    duration: Duration,
    /// Length of one fault cycle (the schedule repeats; each cycle kills another agent).
    #[arg(long, value_parser = duration, default_value = "5m")]
    cycle: Duration,
    /// Lines per second over all clusters' containers together.
    #[arg(long, default_value_t = 500.0)]
    rate: f64,
    /// Rotate each container's log at this size (small: a rotation storm).
    #[arg(long, value_parser = bytes, default_value = "64KiB")]
    rotate_bytes: u64,
    /// Rotated files kubelet keeps, `0.log` included.
    #[arg(long, default_value_t = 3)]
    keep_files: usize,
    /// Delete a pod and start a new one this often (pod churn).
    #[arg(long, value_parser = duration, default_value = "20s")]
    churn_every: Duration,
    /// Sample every process's resident memory this often.
    #[arg(long, value_parser = duration, default_value = "10s")]
    rss_every: Duration,
    /// Allowed ratio of an agent's late to early memory peak.
    #[arg(long, default_value_t = 1.3)]
    agent_growth: f64,
    /// Allowed ratio of fake-loki's last-cycle memory growth to its median growth per cycle.
    #[arg(long, default_value_t = 2.0)]
    loki_growth: f64,
    /// Give up waiting for the pipeline to drain after this long.
    #[arg(long, value_parser = duration, default_value = "180s")]
    drain_timeout: Duration,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Keep the work dir (pods roots, logs, manifest) and print its path.
    #[arg(long)]
    keep: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct LocalArgs {
    /// Give up waiting for the pipeline to drain after this long.
    #[arg(long, value_parser = duration, default_value = "60s")]
    drain_timeout: Duration,
    /// Agents' batch wait.
    #[arg(long, default_value = "200ms")]
    batch_wait: String,
    /// Keep the work dir (pods roots, logs, manifest) and print its path.
    #[arg(long)]
    keep: bool,
    /// Write fake-loki's usage ledger (usage.json) and the agents' usage (agent-usage.json)
    /// here, for `e2e cost --usage-file DIR/usage.json --agent-usage DIR/agent-usage.json`.
    #[arg(long)]
    usage_out: Option<PathBuf>,
    #[command(flatten)]
    load: LoadArgs,
    #[command(flatten)]
    th: ThresholdArgs,
}

#[derive(Args, Debug)]
struct EmitArgs {
    /// Run id written into every marker.
    #[arg(long)]
    run_id: String,
    /// The cluster name (the `cluster` label the agent adds).
    #[arg(long)]
    cluster: String,
    /// Lines to write (sequence numbers 1..=count).
    #[arg(long)]
    count: u64,
    /// Lines per second; 0 writes flat out.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Where the source record goes (the pod's terminationMessagePath).
    #[arg(long, default_value = "/dev/termination-log")]
    termination_log: PathBuf,
}

#[derive(Args, Debug)]
struct ManifestArgs {
    /// Run id of the generators.
    #[arg(long)]
    run_id: String,
    /// A cluster as name=tenant (repeatable); every record's cluster must be one of these.
    #[arg(long = "cluster", value_parser = cluster, required = true)]
    clusters: Vec<ClusterInfo>,
    /// The records, one JSON object per line (blank lines are skipped).
    #[arg(long)]
    records: PathBuf,
    /// Where to write the manifest.
    #[arg(long)]
    out: PathBuf,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let res = rt.block_on(async {
        match cli.cmd {
            Cmd::Loadgen(a) => loadgen(a).await,
            Cmd::Check(a) => check_cmd(a).await,
            Cmd::Local(a) => local(a).await,
            Cmd::Soak(a) => soak_cmd(a).await,
            Cmd::Emit(a) => tokio::task::spawn_blocking(move || emit_cmd(a))
                .await
                .context("emit thread")?,
            Cmd::Manifest(a) => manifest_cmd(a),
            Cmd::Cost(a) => cost_cmd(a).await,
        }
    });
    match res {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn loadgen(a: LoadgenArgs) -> anyhow::Result<bool> {
    let run_id = a
        .run_id
        .unwrap_or_else(|| format!("r{:x}", (gen::now_ns() / 1_000_000) & 0xff_ffff_ffff));
    let specs = a
        .clusters
        .iter()
        .map(|c| ClusterSpec {
            name: c.name.clone(),
            tenant: c.tenant.clone(),
            pods_root: a.out.join(&c.name),
        })
        .collect();
    let mut cfg = GenConfig::new(run_id, a.load.seed, specs);
    cfg.namespaces = a.load.namespaces;
    cfg.pods_per_namespace = a.load.pods;
    cfg.containers_per_pod = a.load.containers;
    cfg.rate_per_sec = a.load.rate();
    cfg.duration = Some(a.load.duration);
    cfg.max_entries = a.load.lines;
    cfg.rotation = a.load.rotation();
    cfg.churn_every = a.load.churn_every;
    cfg.churn_grace = a.load.churn_grace;
    cfg.mix = a.load.mix();
    let stop = Arc::new(AtomicBool::new(false));
    let gen_stop = stop.clone();
    let mut task = tokio::task::spawn_blocking(move || gen::run(cfg, &gen_stop));
    // Ctrl-C stops writing; the manifest still describes exactly what was written.
    let res = tokio::select! {
        r = &mut task => r,
        _ = tokio::signal::ctrl_c() => {
            stop.store(true, Ordering::Relaxed);
            task.await
        }
    };
    let manifest = res.context("generator thread")??;
    let path = a.manifest.unwrap_or_else(|| a.out.join("manifest.json"));
    manifest.write(&path)?;
    println!(
        "run {}: {} entries ({} CRI lines, {:.1} MB) in {} sources; {} rotations, {} truncations, {} pods deleted; manifest {}",
        manifest.run_id,
        manifest.totals.entries,
        manifest.totals.cri_lines,
        manifest.totals.message_bytes as f64 / 1e6,
        manifest.sources.len(),
        manifest.totals.rotations,
        manifest.totals.truncations,
        manifest.totals.pods_deleted,
        path.display()
    );
    Ok(true)
}

fn emit_cmd(a: EmitArgs) -> anyhow::Result<bool> {
    let who = PodIdentity::from_env(|k| std::env::var(k).ok())?;
    let cfg = EmitConfig {
        run_id: a.run_id,
        cluster: a.cluster,
        count: a.count,
        rate_per_sec: (a.rate > 0.0).then_some(a.rate),
    };
    let stdout = std::io::stdout();
    let rec = emit::emit(&cfg, &who, &mut stdout.lock())?;
    let line = emit::record_line(&rec)?;
    std::fs::write(&a.termination_log, &line)
        .with_context(|| format!("writing {}", a.termination_log.display()))?;
    Ok(true)
}

fn manifest_cmd(a: ManifestArgs) -> anyhow::Result<bool> {
    let records = std::fs::read_to_string(&a.records)
        .with_context(|| format!("reading {}", a.records.display()))?;
    let m = emit::assemble(&a.run_id, &a.clusters, &records)
        .with_context(|| format!("assembling {}", a.records.display()))?;
    m.write(&a.out)?;
    eprintln!(
        "manifest {}: {} sources, {} entries",
        a.out.display(),
        m.sources.len(),
        m.totals.entries
    );
    Ok(true)
}

async fn cost_cmd(a: CostArgs) -> anyhow::Result<bool> {
    let read = |p: &PathBuf| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let prices = cost::Prices::from_yaml(&String::from_utf8_lossy(&read(&a.prices)?))?;
    let budgets = match &a.budget {
        Some(p) => {
            let b = cost::Budgets::from_yaml(&String::from_utf8_lossy(&read(p)?))?;
            if let Some(c) = b.currency.as_deref().filter(|c| *c != prices.currency) {
                bail!("budget file is in {c}, prices in {}", prices.currency);
            }
            b.budgets
        }
        None => Vec::new(),
    };
    let usage = match (&a.usage_url, &a.usage_file) {
        (Some(url), _) => usage::fetch_usage(&HttpLoki::new(url))
            .await
            .with_context(|| format!("reading usage from {url}"))?,
        (None, Some(p)) => usage::parse_usage(&read(p)?)?,
        (None, None) => bail!("--usage-url or --usage-file is required"),
    };
    let mut agents: Vec<cost::AgentUsage> = match &a.agent_usage {
        Some(p) => serde_json::from_slice(&read(p)?)
            .with_context(|| format!("agent usage {}", p.display()))?,
        None => Vec::new(),
    };
    let now = chrono::Utc::now();
    for spec in &a.agents_metrics {
        let (url, cluster) = spec
            .rsplit_once('=')
            .with_context(|| format!("expected URL=cluster, got {spec:?}"))?;
        let (status, body) = HttpLoki::new(url)
            .get("", None)
            .await
            .with_context(|| format!("scraping {url}"))?;
        if status != 200 {
            bail!("scraping {url}: status {status}");
        }
        let samples = usage::parse_prometheus(&String::from_utf8_lossy(&body));
        let now_secs = now.timestamp_millis() as f64 / 1000.0;
        agents.push(usage::agent_usage_from_metrics(
            &samples,
            cluster,
            now.date_naive(),
            now_secs,
        )?);
    }
    let at =
        a.at.as_deref()
            .map(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d"))
            .transpose()
            .context("--at must be YYYY-MM-DD")?;
    let r = cost::report(&usage, &agents, &prices, a.period, at, &budgets)?;
    match a.format.as_str() {
        "json" => println!("{}", serde_json::to_string_pretty(&r)?),
        "csv" => print!("{}", cost::render_csv(&r)),
        _ => print!("{}", cost::render_table(&r)),
    }
    if a.format != "table" {
        for al in &r.alerts {
            eprintln!("{}", cost::alert_line(al, &r.currency));
        }
    }
    Ok(r.alerts.is_empty())
}

async fn check_cmd(a: CheckArgs) -> anyhow::Result<bool> {
    let manifest = Manifest::read(&a.manifest)?;
    let th = a.th.thresholds()?;
    let api = HttpLoki::new(&a.loki_url);
    let mut obs = Observer::new(&manifest.run_id, &manifest.clusters, manifest.started_ns)
        .with_extra_tenants(&a.extra_tenants)
        .with_page_limit(a.page_limit);
    match a.watch {
        Some(drain_timeout) => {
            let (_tx, rx) = tokio::sync::watch::channel(Some(Arc::new(manifest.clone())));
            let settings = WatchSettings {
                poll_every: a.poll,
                drain_timeout,
                settle: a.poll,
            };
            check::watch(&api, &mut obs, rx, settings).await?;
        }
        None => {
            obs.scan(&api).await.context("querying Loki")?;
        }
    }
    if obs.scans() == 0 {
        bail!("no scan of Loki succeeded");
    }
    if th.max_lag_ms.is_some() {
        // fake-loki's per-stream push gauges; a real Loki has none and the newest entry stands in.
        let now = e2e::gen::now_ns();
        if let Ok((200, body)) = api.get("/metrics", None).await {
            let samples = usage::parse_prometheus(&String::from_utf8_lossy(&body));
            obs.set_push_times(e2e::fresh::push_times(&samples, now));
        }
    }
    let report = obs.report(&manifest, &th);
    if a.th.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report::render(&report, a.th.verbose));
    }
    Ok(report.pass)
}

async fn local(a: LocalArgs) -> anyhow::Result<bool> {
    let mut cfg = RunConfig::small(RunConfig::three_clusters());
    cfg.seed = a.load.seed;
    cfg.namespaces = a.load.namespaces;
    cfg.pods_per_namespace = a.load.pods;
    cfg.containers_per_pod = a.load.containers;
    cfg.rate_per_sec = a.load.rate();
    cfg.duration = Some(a.load.duration);
    cfg.max_entries = a.load.lines;
    cfg.rotation = a.load.rotation();
    cfg.churn_every = a.load.churn_every;
    cfg.churn_grace = a.load.churn_grace;
    cfg.mix = a.load.mix();
    cfg.batch_wait = a.batch_wait.clone();
    cfg.watch = WatchSettings {
        poll_every: Duration::from_millis(500),
        drain_timeout: a.drain_timeout,
        settle: Duration::from_secs(1),
    };
    cfg.thresholds = a.th.thresholds()?;
    cfg.keep_work_dir = a.keep;
    eprintln!(
        "local: building/locating agent and fake-loki, then {} clusters (ops, dev, prod) x {} namespaces x {} pods x {} containers for {:?}{}",
        cfg.clusters.len(),
        cfg.namespaces,
        cfg.pods_per_namespace,
        cfg.containers_per_pod,
        a.load.duration,
        cfg.rate_per_sec.map(|r| format!(" at {r} lines/s")).unwrap_or_else(|| " flat out".into())
    );
    // Dropping the run future on Ctrl-C kills the children and removes the work dir (guards).
    let outcome = tokio::select! {
        r = pipeline::run(cfg) => r?,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("interrupted: processes stopped, temp files removed");
            return Ok(false);
        }
    };
    if a.th.json {
        let v = serde_json::json!({
            "report": outcome.report,
            "throughput": outcome.throughput,
            "agents": outcome.agents,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", report::render(&outcome.report, a.th.verbose));
        print!(
            "{}",
            report::render_run(&outcome.throughput, &outcome.agents)
        );
    }
    if let Some(dir) = &a.usage_out {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let usage = outcome
            .usage
            .as_ref()
            .context("fake-loki's usage ledger could not be read")?;
        std::fs::write(
            dir.join("usage.json"),
            serde_json::to_vec_pretty(&serde_json::json!({ "rows": usage }))?,
        )?;
        std::fs::write(
            dir.join("agent-usage.json"),
            serde_json::to_vec_pretty(&outcome.agent_usage)?,
        )?;
        eprintln!("usage written to {}", dir.display());
    }
    if let Some(d) = &outcome.work_dir {
        eprintln!("work dir kept: {}", d.display());
    }
    Ok(outcome.report.pass)
}

async fn soak_cmd(a: SoakArgs) -> anyhow::Result<bool> {
    let mut cfg = RunConfig::small(RunConfig::three_clusters());
    cfg.seed = a.seed;
    cfg.namespaces = 3;
    cfg.pods_per_namespace = 3;
    cfg.containers_per_pod = 2;
    cfg.rate_per_sec = Some(a.rate);
    cfg.duration = Some(a.duration);
    cfg.rotation = if a.rotate_bytes == 0 {
        Rotation::None
    } else {
        Rotation::Rename {
            max_bytes: a.rotate_bytes,
            keep_files: a.keep_files,
        }
    };
    cfg.churn_every = Some(a.churn_every);
    cfg.watch = WatchSettings {
        poll_every: Duration::from_secs(2),
        drain_timeout: a.drain_timeout,
        settle: Duration::from_secs(2),
    };
    // Faults hold data back for tens of seconds by design; the verdict is completeness.
    cfg.thresholds = Thresholds {
        min_rate_pct: 100.0,
        max_lag_p99_ms: None,
        allow_duplicates: false,
        max_lag_ms: None,
    };
    cfg.keep_work_dir = a.keep;
    cfg.rss_every = Some(a.rss_every);
    let names: Vec<String> = cfg.clusters.iter().map(|c| c.name.clone()).collect();
    cfg.actions = e2e::soak::schedule(a.duration, a.cycle, &names);
    eprintln!(
        "soak: {:?} at {} lines/s over {} clusters, {} fault actions in {:?} cycles, rotation at {} bytes, churn every {:?}",
        a.duration,
        a.rate,
        names.len(),
        cfg.actions.len(),
        a.cycle,
        a.rotate_bytes,
        a.churn_every
    );
    let outcome = tokio::select! {
        r = pipeline::run(cfg) => r?,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("interrupted: processes stopped, temp files removed");
            return Ok(false);
        }
    };
    let limits = e2e::soak::Flatness {
        agent_growth: a.agent_growth,
        loki_growth: a.loki_growth,
    };
    let trends = e2e::soak::trends(
        &outcome.rss,
        a.duration.as_secs_f64(),
        a.cycle.as_secs_f64(),
        limits,
    );
    let flat = trends.iter().all(|t| t.flat);
    if a.json {
        let v = serde_json::json!({
            "report": outcome.report,
            "throughput": outcome.throughput,
            "agents": outcome.agents,
            "memory": trends,
            "rss_samples": outcome.rss,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", report::render(&outcome.report, false));
        print!(
            "{}",
            report::render_run(&outcome.throughput, &outcome.agents)
        );
        print!("{}", e2e::soak::render(&trends, &outcome.rss, 60.0));
    }
    if let Some(d) = &outcome.work_dir {
        eprintln!("work dir kept: {}", d.display());
    }
    Ok(outcome.report.pass && flat)
}
