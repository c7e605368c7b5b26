//! One whole completeness run on loopback: fake-loki and one agent per simulated cluster as real
//! processes, the generator writing each cluster's pods root, the checker watching Loki from the
//! start, and timed actions (faults, `kill -9` of an agent, a Loki outage) in between.
//!
//! Cleanup is by ownership: the work dir is a `TempDir` declared first, so it is removed last; the
//! generator thread is stopped and joined by its guard; child processes are killed and reaped by
//! their guards. Dropping the future of [`run`] (Ctrl-C in `e2e local`) therefore leaves nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::check::{self, Observer, Report, Thresholds, WatchSettings};
use crate::content::ContentMix;
use crate::cost::{AgentUsage, UsageRow};
use crate::gen::{self, ClusterSpec, GenConfig, Rotation};
use crate::loki::HttpLoki;
use crate::manifest::{ClusterInfo, Manifest};
use crate::procs::{self, Binaries, ManagedChild};
use crate::report::{ProcStats, Throughput};
use crate::Error;

/// Something done to the pipeline at a point in time (relative to the generator's start).
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// `kill -9` the cluster's agent.
    KillAgent(String),
    /// Start the cluster's agent again (same positions file).
    StartAgent(String),
    /// Add a fake-loki fault rule (JSON as in fake-loki's `faults.rs`).
    Fault(serde_json::Value),
    /// Remove every fault rule.
    ClearFaults,
    /// Kill fake-loki (an outage; its data dir keeps what it had accepted).
    StopLoki,
    /// Start fake-loki again on the same port and data dir, and wait until it is ready.
    StartLoki,
}

/// One reading of a process's resident memory.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RssSample {
    /// Seconds since the generator started.
    pub at_secs: f64,
    /// `agent-<cluster>` or `fake-loki`.
    pub process: String,
    pub rss_kib: u64,
}

/// An action and when to do it.
#[derive(Debug, Clone, PartialEq)]
pub struct TimedAction {
    pub at: Duration,
    pub action: Action,
}

/// Settings of one run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// (cluster name, tenant) pairs; one agent each.
    pub clusters: Vec<ClusterInfo>,
    pub seed: u64,
    pub namespaces: usize,
    pub pods_per_namespace: usize,
    pub containers_per_pod: usize,
    pub rate_per_sec: Option<f64>,
    pub duration: Option<Duration>,
    pub max_entries: Option<u64>,
    pub rotation: Rotation,
    pub churn_every: Option<Duration>,
    pub churn_grace: Duration,
    pub mix: ContentMix,
    pub batch_wait: String,
    pub batch_size: Option<String>,
    pub actions: Vec<TimedAction>,
    pub watch: WatchSettings,
    pub thresholds: Thresholds,
    /// Tenants to scan in addition to the clusters' (they must stay empty of this run's data).
    pub extra_tenants: Vec<String>,
    /// Keep the work dir (logs, pods roots, manifest) instead of removing it.
    pub keep_work_dir: bool,
    /// Sample every process's resident memory this often (the soak's memory series).
    pub rss_every: Option<Duration>,
}

impl RunConfig {
    /// The three clusters of the README run: ops, dev, prod, each its own tenant.
    pub fn three_clusters() -> Vec<ClusterInfo> {
        ["ops", "dev", "prod"]
            .into_iter()
            .map(|n| ClusterInfo {
                name: n.to_owned(),
                tenant: format!("tenant-{n}"),
            })
            .collect()
    }

    /// Small, quick defaults (a CI-sized run).
    pub fn small(clusters: Vec<ClusterInfo>) -> RunConfig {
        RunConfig {
            clusters,
            seed: 1,
            namespaces: 2,
            pods_per_namespace: 2,
            containers_per_pod: 2,
            rate_per_sec: Some(400.0),
            duration: Some(Duration::from_secs(3)),
            max_entries: None,
            rotation: Rotation::None,
            churn_every: None,
            churn_grace: Duration::from_secs(2),
            mix: ContentMix::default(),
            batch_wait: "200ms".into(),
            batch_size: None,
            actions: Vec::new(),
            watch: WatchSettings {
                poll_every: Duration::from_millis(300),
                drain_timeout: Duration::from_secs(60),
                settle: Duration::from_millis(500),
            },
            thresholds: Thresholds::default(),
            extra_tenants: Vec::new(),
            // E2E_KEEP=1 keeps a test's work dir (agent and fake-loki logs) for a post-mortem.
            keep_work_dir: std::env::var_os("E2E_KEEP").is_some(),
            rss_every: None,
        }
    }
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub report: Report,
    pub throughput: Throughput,
    /// Per agent, summed over its incarnations (a `kill -9` loses the killed one's numbers after
    /// its last reading, so they are read just before every kill).
    pub agents: Vec<ProcStats>,
    pub manifest: Arc<Manifest>,
    /// The work dir, when kept.
    pub work_dir: Option<PathBuf>,
    /// fake-loki's usage ledger by tenant and cluster, read after the agents stopped (`None`
    /// when the endpoint failed; the reason is logged).
    pub usage: Option<Vec<UsageRow>>,
    /// Each agent's CPU and memory (from `/proc`), booked on today (UTC), for the cost report.
    pub agent_usage: Vec<AgentUsage>,
    /// Resident memory over time (empty unless `rss_every` was set).
    pub rss: Vec<RssSample>,
}

struct AgentSlot {
    cluster: String,
    args: Vec<String>,
    log: PathBuf,
    listen: String,
    child: Option<ManagedChild>,
    cpu_seconds: f64,
    peak_rss_kib: u64,
    /// When the running incarnation started, and the lifetime of the stopped ones.
    started: Option<Instant>,
    alive_seconds: f64,
}

impl AgentSlot {
    fn start(&mut self, bins: &Binaries) -> Result<(), Error> {
        let mut cmd = Command::new(&bins.agent);
        cmd.args(&self.args);
        self.child = Some(ManagedChild::spawn(
            &format!("agent-{}", self.cluster),
            cmd,
            &self.log,
        )?);
        self.started = Some(Instant::now());
        Ok(())
    }

    fn record_stats(&mut self) {
        if let Some(s) = self.child.as_ref().and_then(ManagedChild::stats) {
            self.cpu_seconds += s.cpu_seconds;
            self.peak_rss_kib = self.peak_rss_kib.max(s.peak_rss_kib);
        }
    }

    fn kill(&mut self) {
        self.record_stats();
        if let Some(t) = self.started.take() {
            self.alive_seconds += t.elapsed().as_secs_f64();
        }
        if let Some(mut c) = self.child.take() {
            c.kill();
        }
    }
}

struct LokiSlot {
    args: Vec<String>,
    log: PathBuf,
    child: Option<ManagedChild>,
}

impl LokiSlot {
    fn start(&mut self, bins: &Binaries) -> Result<(), Error> {
        let mut cmd = Command::new(&bins.fake_loki);
        cmd.args(&self.args);
        self.child = Some(ManagedChild::spawn("fake-loki", cmd, &self.log)?);
        Ok(())
    }
}

/// Stops and joins the generator thread when dropped (it notices `stop` within ~20 ms).
struct GenGuard {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Drop for GenGuard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(15).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join("\n")
}

async fn wait_agent_ready(
    slot: &Mutex<BTreeMap<String, AgentSlot>>,
    cluster: &str,
) -> Result<(), Error> {
    let url = {
        let slots = lock(slot);
        match slots.get(cluster) {
            Some(s) => format!("http://{}/-/ready", s.listen),
            None => return Err(Error::Settings(format!("no agent for cluster {cluster}"))),
        }
    };
    let res = procs::wait_http_ok(&url, Duration::from_secs(20)).await;
    if let Err(e) = res {
        let mut slots = lock(slot);
        if let Some(s) = slots.get_mut(cluster) {
            let alive = s.child.as_mut().is_some_and(ManagedChild::running);
            return Err(Error::Process {
                name: format!("agent-{cluster}"),
                message: format!("{e} (running: {alive}); log tail:\n{}", log_tail(&s.log)),
            });
        }
        return Err(e);
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the slots half-updated in a way that matters
    // for cleanup, so a poisoned lock is used as is.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs the whole pipeline once. See the module docs for cleanup.
pub async fn run(cfg: RunConfig) -> Result<RunOutcome, Error> {
    let work = tempfile::Builder::new()
        .prefix("e2e-run-")
        .tempdir()
        .map_err(|e| Error::io("create", std::env::temp_dir(), e))?;
    let root = work.path().to_owned();
    let bins = tokio::task::spawn_blocking(procs::binaries)
        .await
        .map_err(|e| Error::Process {
            name: "build".into(),
            message: e.to_string(),
        })??;

    // fake-loki, with a data dir so a restart (outage scenario) keeps what it had accepted.
    let port = procs::free_port()?;
    let loki_url = format!("http://127.0.0.1:{port}");
    let loki = Arc::new(Mutex::new(LokiSlot {
        args: vec![
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--auth-enabled".into(),
            "true".into(),
            "--data-dir".into(),
            root.join("loki-data").display().to_string(),
            // The freshness report reads per-stream series, off by default in fake-loki.
            "--metrics-stream-labels".into(),
            "true".into(),
        ],
        log: root.join("fake-loki.log"),
        child: None,
    }));
    lock(&loki).start(&bins)?;
    if let Err(e) = procs::wait_http_ok(&format!("{loki_url}/ready"), Duration::from_secs(30)).await
    {
        return Err(Error::Process {
            name: "fake-loki".into(),
            message: format!("{e}; log tail:\n{}", log_tail(&root.join("fake-loki.log"))),
        });
    }

    // One agent per cluster.
    let mut specs = Vec::new();
    let agents: Arc<Mutex<BTreeMap<String, AgentSlot>>> = Arc::new(Mutex::new(BTreeMap::new()));
    for c in &cfg.clusters {
        let dir = root.join(&c.name);
        let pods_root = dir.join("pods");
        std::fs::create_dir_all(&pods_root).map_err(|e| Error::io("create", &pods_root, e))?;
        let listen = format!("127.0.0.1:{}", procs::free_port()?);
        let mut args = vec![
            "run".to_owned(),
            "--loki-url".into(),
            loki_url.clone(),
            "--tenant".into(),
            c.tenant.clone(),
            "--pods-root".into(),
            pods_root.display().to_string(),
            "--positions".into(),
            dir.join("positions.yaml").display().to_string(),
            "--external-label".into(),
            format!("cluster={}", c.name),
            "--batch-wait".into(),
            cfg.batch_wait.clone(),
            "--listen".into(),
            listen.clone(),
        ];
        if let Some(b) = &cfg.batch_size {
            args.push("--batch-size".into());
            args.push(b.clone());
        }
        let mut slot = AgentSlot {
            cluster: c.name.clone(),
            args,
            log: dir.join("agent.log"),
            listen,
            child: None,
            cpu_seconds: 0.0,
            peak_rss_kib: 0,
            started: None,
            alive_seconds: 0.0,
        };
        slot.start(&bins)?;
        lock(&agents).insert(c.name.clone(), slot);
        specs.push(ClusterSpec {
            name: c.name.clone(),
            tenant: c.tenant.clone(),
            pods_root,
        });
    }
    for c in &cfg.clusters {
        wait_agent_ready(&agents, &c.name).await?;
    }

    // The generator, on its own thread; the manifest arrives on a watch channel.
    let started_ns = gen::now_ns();
    let run_id = format!("r{:x}", (started_ns / 1_000_000) & 0xff_ffff_ffff);
    let mut gcfg = GenConfig::new(run_id.clone(), cfg.seed, specs);
    gcfg.namespaces = cfg.namespaces;
    gcfg.pods_per_namespace = cfg.pods_per_namespace;
    gcfg.containers_per_pod = cfg.containers_per_pod;
    gcfg.rate_per_sec = cfg.rate_per_sec;
    gcfg.duration = cfg.duration;
    gcfg.max_entries = cfg.max_entries;
    gcfg.rotation = cfg.rotation;
    gcfg.churn_every = cfg.churn_every;
    gcfg.churn_grace = cfg.churn_grace;
    gcfg.mix = cfg.mix;
    let (tx, rx) = tokio::sync::watch::channel::<Option<Arc<Manifest>>>(None);
    let gen_error: Arc<Mutex<Option<Error>>> = Arc::new(Mutex::new(None));
    let stop = Arc::new(AtomicBool::new(false));
    let gen_started = Instant::now();
    let gen_finished: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let _gen_guard = {
        let gen_stop = stop.clone();
        let err = gen_error.clone();
        let finished = gen_finished.clone();
        let manifest_path = root.join("manifest.json");
        let handle = std::thread::Builder::new()
            .name("loadgen".into())
            .spawn(move || match gen::run(gcfg, &gen_stop) {
                Ok(m) => {
                    *lock(&finished) = Some(Instant::now());
                    if let Err(e) = m.write(&manifest_path) {
                        tracing::warn!(error = %e, "writing the manifest");
                    }
                    let _ = tx.send(Some(Arc::new(m)));
                }
                // Dropping `tx` without a manifest ends the watch with an error.
                Err(e) => *lock(&err) = Some(e),
            })
            .map_err(|e| Error::io("spawn", "loadgen thread", e))?;
        GenGuard {
            stop,
            handle: Some(handle),
        }
    };

    // Timed actions.
    let actions_task = {
        let actions = cfg.actions.clone();
        let agents = agents.clone();
        let loki = loki.clone();
        let bins = bins.clone();
        let loki_url = loki_url.clone();
        tokio::spawn(async move {
            let api = HttpLoki::new(&loki_url);
            for a in actions {
                tokio::time::sleep_until((gen_started + a.at).into()).await;
                if let Err(e) = do_action(&a.action, &api, &agents, &loki, &bins).await {
                    tracing::warn!(error = %e, action = ?a.action, "action failed");
                }
            }
        })
    };
    let _abort_actions = AbortOnDrop(actions_task);

    // Memory series: every process that is running at each tick (a killed agent has a gap).
    let rss_samples: Arc<Mutex<Vec<RssSample>>> = Arc::new(Mutex::new(Vec::new()));
    let _abort_sampler = cfg.rss_every.map(|every| {
        let agents = agents.clone();
        let loki = loki.clone();
        let samples = rss_samples.clone();
        AbortOnDrop(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let at_secs = gen_started.elapsed().as_secs_f64();
                let mut pids: Vec<(String, u32)> = lock(&agents)
                    .values()
                    .filter_map(|s| Some((format!("agent-{}", s.cluster), s.child.as_ref()?.pid())))
                    .collect();
                if let Some(c) = lock(&loki).child.as_ref() {
                    pids.push(("fake-loki".into(), c.pid()));
                }
                let mut out = lock(&samples);
                for (process, pid) in pids {
                    if let Some(rss_kib) = procs::current_rss_kib(pid) {
                        out.push(RssSample {
                            at_secs,
                            process,
                            rss_kib,
                        });
                    }
                }
            }
        }))
    });

    // The checker watches from the start, so "first seen" is close to the arrival time.
    let window_start = started_ns - 1_000_000_000;
    let mut obs =
        Observer::new(&run_id, &cfg.clusters, window_start).with_extra_tenants(&cfg.extra_tenants);
    let api = HttpLoki::new(&loki_url);
    let outcome = check::watch(&api, &mut obs, rx, cfg.watch).await;
    if let Some(e) = lock(&gen_error).take() {
        return Err(e);
    }
    let outcome = outcome?;

    // Measure the agents just before stopping them.
    let today = chrono::Utc::now().date_naive();
    let mut agent_usage = Vec::new();
    let agent_stats: Vec<ProcStats> = {
        let mut slots = lock(&agents);
        slots
            .values_mut()
            .map(|s| {
                s.kill();
                let rss_bytes = s.peak_rss_kib * 1024;
                agent_usage.push(AgentUsage {
                    day: today,
                    cluster: s.cluster.clone(),
                    cpu_ms: (s.cpu_seconds * 1000.0).round() as u64,
                    // Peak RSS over the whole lifetime: an upper bound of the integral.
                    mem_byte_seconds: (rss_bytes as f64 * s.alive_seconds).round() as u64,
                    peak_rss_bytes: rss_bytes,
                    read_bytes: 0,
                    sent_bytes: 0,
                });
                ProcStats {
                    name: s.cluster.clone(),
                    cpu_seconds: s.cpu_seconds,
                    peak_rss_kib: s.peak_rss_kib,
                }
            })
            .collect()
    };
    // The agents are stopped, so the ledger is final; read it before fake-loki goes.
    let usage = match crate::usage::fetch_usage(&api).await {
        Ok(u) => Some(u),
        Err(e) => {
            tracing::warn!(error = %e, "reading fake-loki's usage ledger");
            None
        }
    };
    if let Some(mut c) = lock(&loki).child.take() {
        c.kill();
    }

    let report = obs.report(&outcome.manifest, &cfg.thresholds);
    let m = &outcome.manifest;
    let gen_secs = lock(&gen_finished)
        .map(|t| (t - gen_started).as_secs_f64())
        .unwrap_or(0.0);
    let e2e_secs = outcome
        .complete_at
        .unwrap_or_else(Instant::now)
        .duration_since(gen_started)
        .as_secs_f64()
        .max(1e-3);
    let delivered_frac = if m.totals.entries == 0 {
        0.0
    } else {
        report.summary.received as f64 / m.totals.entries as f64
    };
    let throughput = Throughput {
        generated_entries: m.totals.entries,
        generated_bytes: m.totals.message_bytes,
        generate_seconds: gen_secs,
        end_to_end_seconds: e2e_secs,
        lines_per_sec: report.summary.received as f64 / e2e_secs,
        mb_per_sec: m.totals.message_bytes as f64 * delivered_frac / e2e_secs / 1e6,
    };
    let work_dir = if cfg.keep_work_dir {
        Some(work.keep())
    } else {
        None
    };
    let rss = std::mem::take(&mut *lock(&rss_samples));
    Ok(RunOutcome {
        report,
        throughput,
        agents: agent_stats,
        manifest: outcome.manifest,
        work_dir,
        usage,
        agent_usage,
        rss,
    })
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn do_action(
    action: &Action,
    api: &HttpLoki,
    agents: &Mutex<BTreeMap<String, AgentSlot>>,
    loki: &Mutex<LokiSlot>,
    bins: &Binaries,
) -> Result<(), Error> {
    tracing::info!(?action, "action");
    match action {
        Action::KillAgent(c) => {
            if let Some(s) = lock(agents).get_mut(c) {
                s.kill();
            }
        }
        Action::StartAgent(c) => {
            if let Some(s) = lock(agents).get_mut(c) {
                s.start(bins)?;
            }
            wait_agent_ready(agents, c).await?;
        }
        Action::Fault(rule) => {
            let body = serde_json::to_vec(rule).map_err(|e| Error::Settings(e.to_string()))?;
            let (status, resp) = api
                .request(
                    http::Method::POST,
                    "/fake-loki/api/v1/faults",
                    None,
                    Some(body),
                )
                .await?;
            if !(200..300).contains(&status) {
                return Err(Error::QueryStatus {
                    url: "/fake-loki/api/v1/faults".into(),
                    status,
                    body: String::from_utf8_lossy(&resp).into_owned(),
                });
            }
        }
        Action::ClearFaults => {
            api.request(http::Method::DELETE, "/fake-loki/api/v1/faults", None, None)
                .await?;
        }
        Action::StopLoki => {
            if let Some(mut c) = lock(loki).child.take() {
                c.kill();
            }
        }
        Action::StartLoki => {
            lock(loki).start(bins)?;
            procs::wait_http_ok(&format!("{}/ready", api.base()), Duration::from_secs(30)).await?;
        }
    }
    Ok(())
}
