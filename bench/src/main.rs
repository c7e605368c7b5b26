//! The `bench` binary: `bench e2e` (end-to-end throughput of agent + fake-loki as
//! processes) and `bench mem` (fake-loki memory per stored entry).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "bench", about = "Throughput and memory measurements")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Time an agent shipping pre-generated CRI files to the fake-loki binary.
    E2e {
        /// Lines to generate.
        #[arg(long, default_value_t = 5_000_000)]
        lines: u64,
        /// Bytes per file line, newline included.
        #[arg(long, default_value_t = 200)]
        line_bytes: usize,
        /// Pods (one container, one file each).
        #[arg(long, default_value_t = 100)]
        pods: usize,
        /// Pipelines to run, one after the other on fresh files: `cli` (no config), a name
        /// from bench/pipelines/ (`labels`, `json`, `k8s`, `heavy`), a comma-separated list,
        /// or `all`. With more than one, a table compares each with the first.
        #[arg(long, default_value = "cli")]
        pipeline: String,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Agent command template with {url}, {pods_root}, {scratch} (run via `sh -c exec`).
        #[arg(long)]
        agent_cmd: Option<String>,
        /// Scratch directory (default: a temporary directory, removed afterwards).
        #[arg(long)]
        scratch: Option<PathBuf>,
        /// Give up after this many seconds without progress.
        #[arg(long, default_value_t = 30)]
        stall_secs: u64,
        /// Selector of the completeness query.
        #[arg(long, default_value = r#"{namespace="bench"}"#)]
        selector: String,
        /// Skip reading every entry back (trust fake-loki's entry count).
        #[arg(long)]
        no_check: bool,
        /// Low-rate mode: a writer adds this many lines per second (over `--files` files,
        /// with rotation) for `--duration` while the agent tails them; reports the agent's
        /// CPU and wake-ups per line and the lag. `--lines`/`--pods`/`--pipeline` do not apply.
        #[arg(long)]
        rate: Option<f64>,
        /// Low-rate mode: files written.
        #[arg(long, default_value_t = 36)]
        files: usize,
        /// Low-rate mode: how long the writer runs.
        #[arg(long, value_parser = seconds, default_value = "20s")]
        duration: Duration,
        /// Low-rate mode: `0.log` is rotated at this many bytes.
        #[arg(long, default_value_t = 32 * 1024)]
        rotate_bytes: u64,
    },
    /// Ingest N entries into an in-process fake-loki and report heap bytes per entry.
    Mem {
        #[arg(long, default_value_t = 1_000_000)]
        entries: u64,
        #[arg(long, default_value_t = 200)]
        line_bytes: usize,
    },
}

/// `20s`, `500ms` or plain seconds.
fn seconds(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?} (e.g. 20s, 500ms)");
    let (num, unit) = match s.strip_suffix("ms") {
        Some(n) => (n, 1e-3),
        None => (s.strip_suffix('s').unwrap_or(s), 1.0),
    };
    let v: f64 = num.parse().map_err(|_| bad())?;
    if !(v.is_finite() && v > 0.0) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(v * unit))
}

/// The pipelines `spec` names (`all`, or names separated by commas), in that order.
fn pipelines_named(spec: &str) -> Result<Vec<&'static bench::pipelines::Pipeline>> {
    if spec == "all" {
        return Ok(bench::pipelines::PIPELINES.iter().collect());
    }
    spec.split(',')
        .map(|n| {
            bench::pipelines::by_name(n.trim()).ok_or_else(|| {
                anyhow::anyhow!(
                    "unknown pipeline {n:?}; known: {}",
                    bench::pipelines::names().join(", ")
                )
            })
        })
        .collect()
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::E2e {
            lines,
            line_bytes,
            pods,
            pipeline,
            json,
            agent_cmd,
            scratch,
            stall_secs,
            selector,
            no_check,
            rate,
            files,
            duration,
            rotate_bytes,
        } => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            if let Some(rate) = rate {
                let cfg = bench::lowrate::LowRateConfig {
                    rate,
                    files,
                    duration,
                    rotate_bytes,
                    agent_cmd,
                    scratch,
                    stall_timeout: Duration::from_secs(stall_secs),
                };
                let report = rt.block_on(bench::lowrate::run(&cfg))?;
                print!("{}", report.to_text());
                if !report.complete() {
                    std::process::exit(1);
                }
                return Ok(());
            }
            let chosen = pipelines_named(&pipeline)?;
            let mut reports = Vec::new();
            for p in chosen {
                let cfg = bench::harness::E2eConfig {
                    lines,
                    line_bytes,
                    pods,
                    pipeline: p,
                    agent_cmd: agent_cmd.clone(),
                    scratch: scratch.as_ref().map(|s| s.join(p.name)),
                    stall_timeout: Duration::from_secs(stall_secs),
                    selector: selector.clone(),
                    check: !no_check,
                };
                let report = rt.block_on(bench::harness::run(&cfg))?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&report.to_json())?);
                } else {
                    print!("{}", report.to_text());
                    println!();
                }
                reports.push(report);
            }
            if reports.len() > 1 && !json {
                print!("{}", bench::harness::comparison_table(&reports));
            }
            if reports.iter().any(|r| !r.complete()) {
                std::process::exit(1);
            }
        }
        Cmd::Mem {
            entries,
            line_bytes,
        } => {
            let r = bench::mem::measure(entries, line_bytes)?;
            println!(
                "entries {} of {line_bytes}-byte lines: line bytes {}, heap_bytes() {}",
                r.entries, r.line_bytes, r.heap_bytes
            );
            println!(
                "overhead per entry (heap - lines)/N: {:.1} B; heap per entry: {:.1} B; RSS growth per entry: {:.1} B",
                r.overhead_per_entry, r.heap_per_entry, r.rss_per_entry
            );
            println!(
                "decode+ingest while filling: {:.0} entries/s",
                r.ingest_entries_per_s
            );
        }
    }
    Ok(())
}
