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
    },
    /// Ingest N entries into an in-process fake-loki and report heap bytes per entry.
    Mem {
        #[arg(long, default_value_t = 1_000_000)]
        entries: u64,
        #[arg(long, default_value_t = 200)]
        line_bytes: usize,
    },
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::E2e {
            lines,
            line_bytes,
            pods,
            json,
            agent_cmd,
            scratch,
            stall_secs,
            selector,
            no_check,
        } => {
            let cfg = bench::harness::E2eConfig {
                lines,
                line_bytes,
                pods,
                agent_cmd,
                scratch,
                stall_timeout: Duration::from_secs(stall_secs),
                selector,
                check: !no_check,
            };
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let report = rt.block_on(bench::harness::run(&cfg))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report.to_json())?);
            } else {
                print!("{}", report.to_text());
            }
            if !report.complete() {
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
