//! The fake-loki binary: parse flags, init tracing, serve until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use fake_loki::limits::LimitsConfig;
use fake_loki::{Config, FakeLoki, FaultRule};

/// A multi-tenant Loki test double: Loki's push, query and metadata API with Loki's
/// limits and errors, plus fault injection and completeness stats.
#[derive(Parser, Debug)]
#[command(name = "fake-loki", version)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3100")]
    listen: SocketAddr,
    /// Require X-Scope-OrgID (Loki's auth_enabled). When false every request uses tenant `fake`.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    auth_enabled: bool,
    /// YAML with Loki's `limits_config:` keys and per-tenant `overrides:`.
    #[arg(long)]
    limits: Option<PathBuf>,
    /// Keep an append-only log per tenant here and replay it at start.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Allow `X-Scope-OrgID: a|b` on queries (Loki's multi_tenant_queries_enabled).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    multi_tenant_queries_enabled: bool,
    /// A fault rule as JSON, e.g. '{"action":"status","status":503,"count":5}'. Repeatable.
    #[arg(long = "fault")]
    faults: Vec<String>,
    /// Seed for probabilistic faults.
    #[arg(long, default_value_t = 0)]
    fault_seed: u64,
    /// Stream label the usage ledger groups by (with tenant and day).
    #[arg(long, default_value = "cluster")]
    usage_label: String,
    /// Largest accepted push body in bytes (compressed).
    #[arg(long, default_value_t = 100 << 20)]
    max_recv_msg_size: usize,
    /// Longest wait for a request's headers, also between requests on a keep-alive
    /// connection (Go duration; 0 disables).
    #[arg(long, default_value = "10s", value_parser = duration)]
    http_header_read_timeout: Duration,
    /// Close a connection idle (no request in flight, no bytes) this long (0 disables).
    #[arg(long, default_value = "120s", value_parser = duration)]
    http_idle_timeout: Duration,
    /// Largest decompressed push body in bytes (Loki's default is 5000 MiB).
    #[arg(long, default_value_t = 100 << 20)]
    max_decompressed_size: usize,
    /// Push bodies read and decoded at once; more wait for a slot.
    #[arg(long, default_value_t = 8)]
    max_concurrent_pushes: usize,
    /// Most streams one push may carry (a JSON body is refused while decoding).
    #[arg(long, default_value_t = 100_000)]
    max_push_streams: usize,
    /// Most entries one push may carry.
    #[arg(long, default_value_t = 1_000_000)]
    max_push_entries: usize,
    /// Export per-stream series (`loki_fake_stream_last_push_age_seconds{tenant,stream}`,
    /// whose `stream` is a stream's full label set) on `/metrics`.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    metrics_stream_labels: bool,
    /// Require `Authorization: Bearer <token>` on `/fake-loki/api/v1/*` (faults, stats,
    /// usage). Also read from FAKE_LOKI_ADMIN_TOKEN.
    #[arg(long, env = "FAKE_LOKI_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Most open connections; at the cap new ones wait to be accepted.
    #[arg(long, default_value_t = 4096)]
    max_connections: usize,
    /// How often entries past their retention (`retention_period`, `retention_stream`
    /// in --limits) are deleted, as Loki's compaction_interval (0 disables the sweep;
    /// expired entries are hidden from reads either way).
    #[arg(long, default_value = "10m", value_parser = duration)]
    retention_sweep_interval: Duration,
    /// Loki's query_ingesters_within: metadata queries ending this close to now also
    /// list the streams the ingester model holds, whatever their window.
    #[arg(long, default_value = "3h", value_parser = duration)]
    query_ingesters_within: Duration,
    /// Loki's chunk_idle_period: the ingester model holds a stream this long after its
    /// last push.
    #[arg(long, default_value = "30m", value_parser = duration)]
    chunk_idle_period: Duration,
}

fn duration(s: &str) -> Result<Duration, String> {
    let ns = fake_loki::limits::parse_duration(s)?;
    u64::try_from(ns)
        .map(Duration::from_nanos)
        .map_err(|_| format!("negative duration {s:?}"))
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// Zero means "no limit".
fn non_zero(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

/// Errors are printed as one line with their causes, without a backtrace.
#[tokio::main]
async fn main() -> std::process::ExitCode {
    match serve().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let mut config = Config {
        listen: cli.listen,
        auth_enabled: cli.auth_enabled,
        data_dir: cli.data_dir,
        multi_tenant_queries_enabled: cli.multi_tenant_queries_enabled,
        fault_seed: cli.fault_seed,
        max_recv_msg_size: cli.max_recv_msg_size,
        usage_label: cli.usage_label,
        header_read_timeout: non_zero(cli.http_header_read_timeout),
        idle_timeout: non_zero(cli.http_idle_timeout),
        max_connections: cli.max_connections,
        metrics_stream_labels: cli.metrics_stream_labels,
        admin_token: cli.admin_token.filter(|t| !t.is_empty()),
        max_decompressed_size: cli.max_decompressed_size,
        max_concurrent_pushes: cli.max_concurrent_pushes,
        max_push_streams: cli.max_push_streams,
        max_push_entries: cli.max_push_entries,
        retention_sweep_interval: non_zero(cli.retention_sweep_interval),
        query_ingesters_within_ns: nanos(cli.query_ingesters_within),
        chunk_idle_period_ns: nanos(cli.chunk_idle_period),
        ..Config::default()
    };
    if let Some(path) = &cli.limits {
        config.limits = LimitsConfig::from_file(path)?;
    }
    for f in &cli.faults {
        let rule: FaultRule = serde_json::from_str(f)
            .with_context(|| format!("--fault {f:?} is not a fault rule"))?;
        config.faults.push(rule);
    }
    let loki = FakeLoki::start(config)
        .await
        .context("starting fake-loki")?;
    tracing::info!("listening on {}", loki.addr());
    shutdown_signal().await;
    tracing::info!("shutting down");
    loki.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
