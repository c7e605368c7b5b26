//! The `agent` binary: parse flags into [`agent::Settings`], set up logging and signals, run.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use agent::config::{parse_bytes, parse_duration, Auth, LineFormat, Secret, Settings, Tls};

#[derive(Parser, Debug)]
#[command(
    name = "agent",
    version,
    about = "Tails Kubernetes pod logs and ships them to Loki without losing a line"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
// Parsed once at startup; boxing the run flags would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Cmd {
    /// Tail the pods root and push to Loki until SIGTERM/SIGINT.
    Run(RunArgs),
    /// Validate a Grafana Alloy config file without running it (exit 1 on problems).
    Check { config: PathBuf },
    /// Print an Alloy config file in canonical format (`-w` rewrites it in place).
    Fmt {
        config: PathBuf,
        #[arg(short = 'w', long)]
        write: bool,
    },
}

/// `agent check` / `agent fmt`: print diagnostics like `alloy` does and fail on any.
fn alloy_cmd(cmd: Cmd) -> anyhow::Result<()> {
    match cmd {
        Cmd::Check { config } => match agent::alloy::check(&config) {
            Ok(plan) => {
                for n in &plan.notes {
                    eprintln!("note: {n}");
                }
                eprintln!("{}: ok", config.display());
                Ok(())
            }
            Err(d) => {
                let src = std::fs::read_to_string(&config).unwrap_or_default();
                eprint!("{}", d.render(&src));
                bail!("{} problem(s) in {}", d.len(), config.display())
            }
        },
        Cmd::Fmt { config, write } => {
            let src = std::fs::read_to_string(&config)
                .with_context(|| format!("reading {}", config.display()))?;
            match agent::alloy::fmt(&src) {
                Ok(out) if write => std::fs::write(&config, out)
                    .with_context(|| format!("writing {}", config.display())),
                Ok(out) => {
                    print!("{out}");
                    Ok(())
                }
                Err(d) => {
                    eprint!("{}", d.render(&src));
                    bail!("{} problem(s) in {}", d.len(), config.display())
                }
            }
        }
        Cmd::Run(_) => Ok(()),
    }
}

fn duration(s: &str) -> Result<Duration, String> {
    parse_duration(s).ok_or_else(|| format!("invalid duration {s:?} (e.g. 250ms, 1s, 5m)"))
}

fn bytes_size(s: &str) -> Result<usize, String> {
    parse_bytes(s).ok_or_else(|| format!("invalid size {s:?} (e.g. 1048576, 512KiB, 1MiB)"))
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected key=value, got {s:?}"))
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Grafana Alloy config file; without it the agent is configured by these flags.
    config: Option<PathBuf>,
    /// Loki push URL (a bare base URL gets /loki/api/v1/push); default $LOKI_URL. Not with a
    /// config file.
    #[arg(long)]
    loki_url: Option<String>,
    /// Alloy's flag: HTTP listen address (same as --listen).
    #[arg(long = "server.http.listen-addr", value_name = "ADDR")]
    server_http_listen_addr: Option<SocketAddr>,
    /// Alloy's flag: data directory; positions go to DIR/positions.yaml.
    #[arg(long = "storage.path", value_name = "DIR")]
    storage_path: Option<PathBuf>,
    /// Alloy's flag, accepted and ignored.
    #[arg(long = "stability.level", value_name = "LEVEL", hide = true)]
    stability_level: Option<String>,
    /// Tenant (X-Scope-OrgID); empty sends none.
    #[arg(long, default_value = "")]
    tenant: String,
    /// Per-namespace tenant override, namespace=tenant (repeatable).
    #[arg(long = "namespace-tenant", value_parser = key_value)]
    namespace_tenants: Vec<(String, String)>,
    /// Root of the kubelet pod logs [default: /var/log/pods]. With a config file,
    /// `/var/log/pods` paths in it are rebased onto this directory.
    #[arg(long)]
    pods_root: Option<PathBuf>,
    /// Docker's containers directory, where kubelet's log links point on docker-runtime
    /// nodes (only its `*-json.log` files are read); "" allows only the pods root.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/docker/containers")]
    docker_containers_dir: PathBuf,
    /// Positions file [default: /var/lib/agent/positions.yaml].
    #[arg(long)]
    positions: Option<PathBuf>,
    /// Label added to every stream, k=v (repeatable).
    #[arg(long = "external-label", value_parser = key_value)]
    external_labels: Vec<(String, String)>,
    /// Batch size in line bytes.
    #[arg(long, value_parser = bytes_size, default_value = "1MiB")]
    batch_size: usize,
    /// Maximum batch age.
    #[arg(long, value_parser = duration, default_value = "1s")]
    batch_wait: Duration,
    /// Address of /metrics, /-/ready, /-/healthy [default: 127.0.0.1:12345].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Read files without a stored position (found at startup) from their end.
    #[arg(long)]
    tail_from_end: bool,
    /// With a config using discovery.kubernetes and a Kubernetes API: how long the lines of a
    /// file whose pod the API does not know yet wait for the pod's labels (0s: never).
    #[arg(long, value_parser = duration, default_value = "3s")]
    pod_metadata_wait: Duration,
    /// Longer lines are truncated and counted.
    #[arg(long, value_parser = bytes_size, default_value = "256KiB")]
    max_line_bytes: usize,
    /// Line format: auto, cri, docker or plain.
    #[arg(long, default_value = "auto")]
    format: String,
    /// Add the pod uid as label `pod_uid`.
    #[arg(long)]
    pod_uid_label: bool,
    /// First retry delay.
    #[arg(long, value_parser = duration, default_value = "500ms")]
    min_backoff: Duration,
    /// Retry delay cap.
    #[arg(long, value_parser = duration, default_value = "5m")]
    max_backoff: Duration,
    /// Attempts per batch before it is dropped and counted (0 = retry until Loki takes it,
    /// holding positions: no loss).
    #[arg(long, default_value_t = 0)]
    max_retries: u32,
    /// Drop 429 answers instead of retrying them.
    #[arg(long)]
    no_retry_on_429: bool,
    /// Per-request timeout.
    #[arg(long, value_parser = duration, default_value = "10s")]
    request_timeout: Duration,
    /// Basic auth user (password from --password or LOKI_PASSWORD).
    #[arg(long)]
    username: Option<String>,
    #[arg(long, env = "LOKI_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Bearer token (or LOKI_BEARER_TOKEN).
    #[arg(long, env = "LOKI_BEARER_TOKEN", hide_env_values = true)]
    bearer_token: Option<String>,
    /// File holding the bearer token, read again for every push (rotated tokens work).
    #[arg(long, value_name = "FILE")]
    bearer_token_file: Option<PathBuf>,
    /// PEM CA certificates to trust for an https Loki URL instead of the system's.
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// Accept any certificate from an https Loki (the connection is still encrypted).
    #[arg(long)]
    insecure_skip_verify: bool,
    /// Extra request header, Name=value (repeatable).
    #[arg(long = "header", value_parser = key_value)]
    headers: Vec<(String, String)>,
    /// Group commit of acknowledged positions: changes are written at most this often (a
    /// crash re-sends at most about this much acknowledged data).
    #[arg(long, value_parser = duration, default_value = "100ms")]
    positions_sync_interval: Duration,
    /// When the positions file does not parse (empty, foreign, cut short), keep it as
    /// FILE.corrupt and start as on a first start instead of refusing to start.
    #[arg(long)]
    positions_reset_on_corrupt: bool,
    /// Tailer poll interval when no inotify event arrives.
    #[arg(long, value_parser = duration, default_value = "250ms")]
    poll_interval: Duration,
    /// After a file event the tailer reads no sooner than this after its previous pass, so
    /// slowly growing files cost one pass per interval, not a wake-up per write (adds at most
    /// this much latency; a backlog is read without waiting).
    #[arg(long, value_parser = duration, default_value = "100ms")]
    min_read_interval: Duration,
    /// Log files kept open at once; idle files beyond it are closed and reopened when they
    /// change. 0: the open-file limit (raised to the hard limit at start) minus a reserve
    /// for connections and the positions file.
    #[arg(long, default_value_t = 0)]
    max_open_files: usize,
    /// Full directory rescan interval.
    #[arg(long, value_parser = duration, default_value = "5s")]
    rescan_interval: Duration,
    /// Time to keep pushing after SIGTERM.
    #[arg(long, value_parser = duration, default_value = "15s")]
    drain_timeout: Duration,
}

const DEFAULT_PODS_ROOT: &str = "/var/log/pods";
const DEFAULT_POSITIONS: &str = "/var/lib/agent/positions.yaml";

impl RunArgs {
    fn listen_addr(&self) -> anyhow::Result<Option<SocketAddr>> {
        match (self.listen, self.server_http_listen_addr) {
            (Some(a), Some(b)) if a != b => {
                bail!("--listen and --server.http.listen-addr disagree ({a} vs {b})")
            }
            (a, b) => Ok(a.or(b)),
        }
    }

    fn positions_path(&self) -> anyhow::Result<Option<PathBuf>> {
        match (&self.positions, &self.storage_path) {
            (Some(_), Some(_)) => bail!("use either --positions or --storage.path, not both"),
            (Some(p), None) => Ok(Some(p.clone())),
            (None, Some(dir)) => Ok(Some(dir.join("positions.yaml"))),
            (None, None) => Ok(None),
        }
    }

    /// `agent run CONFIG_FILE`: load the Alloy config and apply the command-line overrides.
    fn into_plan(
        self,
        config: &std::path::Path,
        rt: &tokio::runtime::Runtime,
    ) -> anyhow::Result<(agent::alloy::Plan, Loaded)> {
        if self.loki_url.is_some() {
            bail!(
                "--loki-url cannot be combined with a config file (set loki.write's endpoint url)"
            );
        }
        #[allow(unused_mut)]
        let mut loaded = Loaded {
            name: config.display().to_string(),
            src: std::fs::read_to_string(config)
                .with_context(|| format!("reading {}", config.display()))?,
            fetched: Default::default(),
        };
        let load = |loaded: &Loaded| {
            loaded.load().map_err(|d| {
                eprint!("{}", d.render(&loaded.src));
                anyhow::anyhow!("{} problem(s) in {}", d.len(), config.display())
            })
        };
        let mut plan = load(&loaded)?;
        if !plan.remotes.is_empty() {
            // remote.kubernetes.* data come from the API before anything starts; a failure
            // is a startup error naming the component.
            #[cfg(feature = "kube")]
            {
                loaded.fetched = rt
                    .block_on(agent::k8s::remote::fetch(&plan.remotes))
                    .context("remote.kubernetes")?;
                plan = load(&loaded)?;
            }
            #[cfg(not(feature = "kube"))]
            bail!("remote.kubernetes.* components need the `kube` cargo feature");
        }
        if let Some(root) = &self.pods_root {
            plan.settings.pods_root = root.clone();
        }
        if let Some(p) = self.positions_path()? {
            plan.settings.positions_path = p;
        }
        if let Some(a) = self.listen_addr()? {
            plan.settings.listen = Some(a);
        }
        plan.settings.positions_reset_on_corrupt = self.positions_reset_on_corrupt;
        plan.settings.min_read_interval = self.min_read_interval;
        plan.settings.max_open_files = self.max_open_files;
        plan.settings.docker_containers_dir = (!self.docker_containers_dir.as_os_str().is_empty())
            .then(|| self.docker_containers_dir.clone());
        Ok((plan, loaded))
    }

    fn into_settings(self) -> anyhow::Result<Settings> {
        let listen = self
            .listen_addr()?
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 12345)));
        let positions_path = self
            .positions_path()?
            .unwrap_or_else(|| PathBuf::from(DEFAULT_POSITIONS));
        let Some(loki_url) = self
            .loki_url
            .or_else(|| std::env::var("LOKI_URL").ok().filter(|u| !u.is_empty()))
        else {
            bail!("--loki-url (or LOKI_URL) is required without a config file");
        };
        let format = match self.format.as_str() {
            "auto" => LineFormat::Auto,
            "cri" => LineFormat::Cri,
            "docker" => LineFormat::Docker,
            "plain" => LineFormat::Plain,
            f => bail!("unknown --format {f:?} (auto, cri, docker, plain)"),
        };
        let bearer = match (self.bearer_token, self.bearer_token_file) {
            (Some(_), Some(_)) => bail!("use either --bearer-token or --bearer-token-file"),
            (Some(t), None) => Some(Secret::Inline(t)),
            (None, Some(f)) => Some(Secret::File(f)),
            (None, None) => None,
        };
        let auth = match (self.username, self.password, bearer) {
            (Some(_), _, Some(_)) => bail!("use either basic auth or a bearer token, not both"),
            (Some(username), password, None) => Auth::Basic {
                username,
                password: Secret::Inline(password.unwrap_or_default()),
            },
            (None, _, Some(credentials)) => Auth::Credentials {
                scheme: "Bearer".into(),
                credentials,
            },
            (None, _, None) => Auth::None,
        };
        let tls = Tls {
            ca: self.ca_file.map(Secret::File),
            insecure_skip_verify: self.insecure_skip_verify,
            ..Tls::default()
        };
        Ok(Settings {
            loki_url,
            tenant: self.tenant,
            namespace_tenants: self.namespace_tenants.into_iter().collect(),
            pods_root: self
                .pods_root
                .unwrap_or_else(|| PathBuf::from(DEFAULT_PODS_ROOT)),
            positions_path,
            external_labels: self.external_labels.into_iter().collect::<BTreeMap<_, _>>(),
            pod_uid_label: self.pod_uid_label,
            format,
            tail_from_end: self.tail_from_end,
            max_line_bytes: self.max_line_bytes,
            batch_bytes: self.batch_size,
            batch_wait: self.batch_wait,
            min_backoff: self.min_backoff,
            max_backoff: self.max_backoff,
            max_retries: self.max_retries,
            retry_on_429: !self.no_retry_on_429,
            request_timeout: self.request_timeout,
            auth,
            tls,
            headers: self.headers.into_iter().collect(),
            positions_sync_interval: self.positions_sync_interval,
            positions_reset_on_corrupt: self.positions_reset_on_corrupt,
            docker_containers_dir: (!self.docker_containers_dir.as_os_str().is_empty())
                .then(|| self.docker_containers_dir.clone()),
            poll_interval: self.poll_interval,
            min_read_interval: self.min_read_interval,
            max_open_files: self.max_open_files,
            rescan_interval: self.rescan_interval,
            drain_timeout: self.drain_timeout,
            listen: Some(listen),
            ..Settings::default()
        })
    }
}

/// Aborts a task when dropped (the run ended).
#[cfg(feature = "kube")]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

#[cfg(feature = "kube")]
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The config as read at startup, with the `remote.kubernetes.*` data it was evaluated with.
struct Loaded {
    name: String,
    src: String,
    fetched: agent::alloy::components::remote::Fetched,
}

impl Loaded {
    fn load(&self) -> Result<agent::alloy::Plan, agent::alloy::Diagnostics> {
        agent::alloy::load::load_with(
            &self.name,
            &self.src,
            agent::alloy::system_scope(),
            &self.fetched,
        )
    }
}

/// Every writer's endpoints, indexed like `plan.writers`.
#[cfg(feature = "kube")]
fn writer_endpoints(plan: &agent::alloy::Plan) -> Vec<Vec<agent::config::Endpoint>> {
    plan.writers.iter().map(|w| w.endpoints.clone()).collect()
}

/// Evaluates the config again with new `remote.kubernetes.*` data and sends the writers'
/// endpoints on; a change of anything else (which applies only after a restart) is warned.
#[cfg(feature = "kube")]
fn on_remote_change(
    loaded: Loaded,
    started: &agent::alloy::Plan,
    tx: tokio::sync::watch::Sender<Vec<Vec<agent::config::Endpoint>>>,
) -> impl Fn(&agent::alloy::components::remote::Fetched) + Send + Sync {
    // What must not change: the endpoints without headers, auth and tenant, and the
    // writers' external labels.
    let fixed = |p: &agent::alloy::Plan| {
        let mut eps = writer_endpoints(p);
        for e in eps.iter_mut().flatten() {
            e.headers.clear();
            e.auth = Default::default();
            e.tenant.clear();
        }
        let labels: Vec<_> = p
            .writers
            .iter()
            .map(|w| w.external_labels.clone())
            .collect();
        (eps, labels)
    };
    let at_start = fixed(started);
    move |fetched| {
        let now = Loaded {
            name: loaded.name.clone(),
            src: loaded.src.clone(),
            fetched: fetched.clone(),
        };
        match now.load() {
            Ok(plan) => {
                if fixed(&plan) != at_start {
                    tracing::warn!(config = %now.name, "remote.kubernetes data changed more than loki.write endpoint headers, credentials and tenant_id (those apply now); the rest applies after a restart");
                }
                let _ = tx.send(writer_endpoints(&plan));
            }
            Err(d) => {
                tracing::warn!(config = %now.name, problems = %d.render(&now.src), "the config does not load with the new remote.kubernetes data; keeping the previous values");
            }
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Errors are printed as one line (`{:#}`: the message and its causes), never with a
/// backtrace: a config or flag problem is the user's, not a crash.
fn main() -> std::process::ExitCode {
    match run_cli() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_cli() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            // kube-runtime's watcher warns on every 403 itself; the agent logs each outage once.
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube_runtime::watcher=error".into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never in files or log collectors.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = match cli.cmd {
        Cmd::Run(args) => args,
        other => return alloy_cmd(other),
    };
    // One descriptor per tailed file: take all the kernel allows before counting the budget.
    match agent::tail::fdlimit::raise_soft_limit() {
        Ok((before, after)) if before != after => {
            tracing::info!(
                ?before,
                ?after,
                "raised the soft open-file limit to the hard limit"
            );
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot raise the soft open-file limit"),
    }
    // Two worker threads: the tailer has its own thread; the runtime only batches and pushes.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    match args.config.clone() {
        None => {
            let settings = args.into_settings()?;
            rt.block_on(agent::run(settings, shutdown_signal()))?;
        }
        Some(config) => {
            #[cfg(feature = "kube")]
            let pod_metadata_wait = args.pod_metadata_wait;
            let (plan, loaded) = args.into_plan(&config, &rt)?;
            for n in &plan.notes {
                tracing::info!(config = %config.display(), "{n}");
            }
            tracing::info!(
                config = %config.display(),
                sources = plan.sources.len(),
                pods_root = %plan.settings.pods_root.display(),
                positions = %plan.settings.positions_path.display(),
                "running Alloy config"
            );
            rt.block_on(async {
                // remote.kubernetes.*: polled; new data re-evaluate the config and reach the
                // writers' endpoints.
                #[allow(unused_mut)]
                let mut live = agent::Live::default();
                #[cfg(feature = "kube")]
                let _poller = match plan.remotes.is_empty() {
                    true => None,
                    false => {
                        let (tx, rx) = tokio::sync::watch::channel(writer_endpoints(&plan));
                        live.endpoints = Some(rx);
                        let initial = loaded.fetched.clone();
                        let apply = on_remote_change(loaded, &plan, tx);
                        Some(AbortOnDrop(tokio::spawn(agent::k8s::remote::poll(
                            plan.remotes.clone(),
                            initial,
                            std::sync::Arc::new(apply),
                        ))))
                    }
                };
                #[cfg(not(feature = "kube"))]
                let _ = loaded;
                let discovery = plan.discovery();
                #[cfg(feature = "kube")]
                let discovery = match discovery.uses_kubelet() {
                    true => match agent::k8s::start_from_env(pod_metadata_wait).await {
                        Some(w) => discovery.with_pod_metadata(std::sync::Arc::new(w)),
                        None => discovery,
                    },
                    false => discovery,
                };
                // loki.source.kubernetes_events: a client each, the delivered record read
                // from the positions directory; a failure is a startup error.
                #[cfg(feature = "kube")]
                for (i, spec) in plan.event_sources() {
                    let id = spec.id.clone();
                    let s = agent::k8s::events::EventsSource::new(
                        spec,
                        i,
                        &plan.settings.tenant,
                        &plan.settings.positions_path,
                    )
                    .await
                    .with_context(|| id.clone())?;
                    live.sources.push(std::sync::Arc::new(s));
                }
                #[cfg(not(feature = "kube"))]
                if !plan.event_sources().is_empty() {
                    bail!("loki.source.kubernetes_events needs the `kube` cargo feature");
                }
                agent::run_plan_with(&plan, Box::new(discovery), live, None, shutdown_signal())
                    .await
                    .map_err(anyhow::Error::from)
            })?;
        }
    }
    Ok(())
}
