//! The `agent` and `fake-loki` processes: finding (or building) the binaries, spawning them on
//! loopback, measuring them from `/proc`, and killing them when their guard drops.
//!
//! **Finding binaries.** `E2E_BIN_DIR` wins when set (prebuilt binaries, no cargo). Otherwise we run
//! `cargo build [--release] -p agent -p fake-loki --bins` in the workspace once per process (a
//! no-op when up to date, so the binaries are never stale), matching the profile of the current
//! executable, and then look next to it: `current_exe()`'s directory and its parent, which is
//! `target/<profile>/` both for `cargo run` (`target/<profile>/e2e`) and for tests
//! (`target/<profile>/deps/…`). If cargo is not available the existing binaries are used.
//!
//! **Ports.** A spawned process cannot tell us an ephemeral port cheaply, so [`free_port`] binds
//! `127.0.0.1:0`, reads the port and releases it for the child. Another process could take it in
//! between (a small race); readiness polling then fails with a clear timeout instead of hanging.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::report::ProcStats;
use crate::Error;

/// Paths of the binaries a run needs.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub agent: PathBuf,
    pub fake_loki: PathBuf,
}

fn exe_name(name: &str) -> String {
    format!("{name}{}", std::env::consts::EXE_SUFFIX)
}

fn find_in(dirs: &[PathBuf]) -> Option<Binaries> {
    for d in dirs {
        let agent = d.join(exe_name("agent"));
        let fake_loki = d.join(exe_name("fake-loki"));
        if agent.is_file() && fake_loki.is_file() {
            return Some(Binaries { agent, fake_loki });
        }
    }
    None
}

fn exe_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        if let Some(d) = exe.parent() {
            dirs.push(d.to_owned());
            if let Some(p) = d.parent() {
                dirs.push(p.to_owned());
            }
        }
    }
    dirs
}

fn build(release: bool) -> Result<(), String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // This crate sits one level below the workspace root.
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&workspace)
        .args(["build", "-p", "agent", "-p", "fake-loki", "--bins"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if release {
        cmd.arg("--release");
    }
    let out = cmd.output().map_err(|e| format!("running cargo: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(30).collect();
        return Err(format!(
            "cargo build -p agent -p fake-loki failed:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ));
    }
    Ok(())
}

/// Locates (building first when possible) the agent and fake-loki binaries. See the module docs.
pub fn binaries() -> Result<Binaries, Error> {
    static CACHE: OnceLock<Result<Binaries, String>> = OnceLock::new();
    CACHE
        .get_or_init(|| {
            if let Some(dir) = std::env::var_os("E2E_BIN_DIR") {
                return find_in(&[PathBuf::from(&dir)]).ok_or_else(|| {
                    format!(
                        "E2E_BIN_DIR={} has no agent and fake-loki",
                        PathBuf::from(dir).display()
                    )
                });
            }
            let dirs = exe_dirs();
            let release = dirs
                .first()
                .is_some_and(|d| d.components().any(|c| c.as_os_str() == "release"));
            let built = build(release);
            match (find_in(&dirs), built) {
                (Some(b), _) => Ok(b),
                (None, Err(e)) => Err(e),
                (None, Ok(())) => Err(format!(
                    "built, but no agent/fake-loki next to the executable in {dirs:?}"
                )),
            }
        })
        .clone()
        .map_err(|message| Error::Process {
            name: "agent/fake-loki binaries".into(),
            message,
        })
}

/// Picks a currently free loopback port (see the module docs for the race).
pub fn free_port() -> Result<u16, Error> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| Error::io("bind", "127.0.0.1:0", e))?;
    let port = l
        .local_addr()
        .map_err(|e| Error::io("local_addr", "127.0.0.1:0", e))?
        .port();
    Ok(port)
}

/// A child process that is killed (SIGKILL) and reaped when dropped, so neither a panic nor
/// Ctrl-C leaves it behind.
pub struct ManagedChild {
    name: String,
    child: Child,
}

impl ManagedChild {
    /// Spawns `cmd` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<ManagedChild, Error> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| Error::io("open", log, e))?;
        let err = out.try_clone().map_err(|e| Error::io("dup", log, e))?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd.spawn().map_err(|e| Error::Process {
            name: name.to_owned(),
            message: format!("spawn: {e}"),
        })?;
        Ok(ManagedChild {
            name: name.to_owned(),
            child,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the process is still running (reaps it if it exited).
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// `kill -9` and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// CPU time and peak RSS from `/proc` (Linux only; `None` elsewhere or after exit).
    pub fn stats(&self) -> Option<ProcStats> {
        proc_stats(&self.name, self.pid())
    }
}

impl Drop for ManagedChild {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads utime+stime (`/proc/<pid>/stat`, in USER_HZ ticks, which Linux fixes at 100 for this
/// interface) and VmHWM (`/proc/<pid>/status`, peak resident set).
pub fn proc_stats(name: &str, pid: u32) -> Option<ProcStats> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields after it are positional.
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // after ')' the first field is #3 (state); utime is #14 and stime #15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Some(ProcStats {
        name: name.to_owned(),
        cpu_seconds: (utime + stime) as f64 / 100.0,
        peak_rss_kib: hwm,
    })
}

/// The current resident set of `pid` in KiB (VmRSS), if the process exists.
pub fn current_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Polls `url` with GET until it answers 200 or `timeout` passes.
pub async fn wait_http_ok(url: &str, timeout: Duration) -> Result<(), Error> {
    let client = crate::loki::HttpLoki::new(url);
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok((200, _)) = client.get("", None).await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout(format!(
                "{url} did not answer 200 within {timeout:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_proc_stats() {
        let s = proc_stats("self", std::process::id()).expect("linux /proc");
        assert!(s.peak_rss_kib > 0);
        assert!(s.cpu_seconds >= 0.0);
    }

    #[test]
    fn managed_child_is_killed_on_drop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let mut c = ManagedChild::spawn("sleep", cmd, &dir.path().join("log")).expect("spawn");
        let pid = c.pid();
        assert!(c.running());
        drop(c);
        // Reaped by the guard, so the pid's /proc entry is gone.
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }

    #[test]
    fn reads_own_current_rss() {
        let rss = current_rss_kib(std::process::id()).expect("own VmRSS");
        assert!(rss > 0);
        assert_eq!(current_rss_kib(u32::MAX), None);
    }

    #[test]
    fn free_port_is_nonzero() {
        assert_ne!(free_port().expect("port"), 0);
    }
}
