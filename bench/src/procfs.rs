//! Process measurements from /proc: CPU seconds (utime + stime) and peak/current RSS.

use std::path::Path;

use anyhow::{Context, Result};

/// CPU time and memory of one process at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcSample {
    /// User + system CPU seconds over all threads.
    pub cpu_s: f64,
    /// Peak resident set (VmHWM), bytes.
    pub peak_rss: u64,
    /// Current resident set (VmRSS), bytes.
    pub rss: u64,
}

/// Clock ticks per second for /proc/<pid>/stat (`getconf CLK_TCK`, else Linux's 100).
pub fn clk_tck() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|&t| t > 0.0)
        .unwrap_or(100.0)
}

/// Reads `/proc/<pid>/stat` and `/proc/<pid>/status`.
pub fn sample(pid: u32, tck: f64) -> Result<ProcSample> {
    sample_dir(&Path::new("/proc").join(pid.to_string()), tck)
}

/// The current process.
pub fn sample_self(tck: f64) -> Result<ProcSample> {
    sample_dir(Path::new("/proc/self"), tck)
}

fn sample_dir(dir: &Path, tck: f64) -> Result<ProcSample> {
    let stat = std::fs::read_to_string(dir.join("stat"))
        .with_context(|| format!("reading {}/stat", dir.display()))?;
    // The command name may contain spaces; fields resume after the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3 (index 0), utime field 14 (index 11), stime 15 (index 12).
    let ticks = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .context("short /proc stat")?
            .parse::<u64>()
            .context("bad /proc stat number")
    };
    let cpu_s = (ticks(11)? + ticks(12)?) as f64 / tck;
    let status = std::fs::read_to_string(dir.join("status"))
        .with_context(|| format!("reading {}/status", dir.display()))?;
    let kb = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    Ok(ProcSample {
        cpu_s,
        peak_rss: kb("VmHWM:"),
        rss: kb("VmRSS:"),
    })
}
