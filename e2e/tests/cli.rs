//! The `e2e` binary as a user runs it: `local` end to end, and Ctrl-C (SIGINT) mid-run leaving no
//! child process and no temp files behind.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Locates agent/fake-loki the way the library does and passes them on, so the child `e2e` does
/// not run cargo itself.
fn bin_dir() -> String {
    let b = e2e::procs::binaries().expect("agent and fake-loki binaries");
    b.agent.parent().expect("dir").display().to_string()
}

fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let ppid: u32 = after
            .split_whitespace()
            .nth(1)
            .and_then(|x| x.parse().ok())
            .unwrap_or(0);
        if ppid == pid {
            out.push(p);
        }
    }
    out
}

fn poll<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn local_passes_and_prints_the_verdict() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_e2e"))
        .args([
            "local",
            "--duration",
            "2s",
            "--rate",
            "300",
            "--namespaces",
            "1",
            "--pods",
            "2",
        ])
        .env("E2E_BIN_DIR", bin_dir())
        .env("TMPDIR", tmp.path())
        .output()
        .expect("run e2e local");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("VERDICT: PASS"), "{stdout}");
    assert!(
        stdout.contains("lines/s") && stdout.contains("peak rss"),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read_dir(tmp.path()).expect("read_dir").count(),
        0,
        "work dir removed"
    );
}

#[test]
fn ctrl_c_mid_run_kills_children_and_removes_temp_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_e2e"))
        .args(["local", "--duration", "60s", "--rate", "200"])
        .env("E2E_BIN_DIR", bin_dir())
        .env("TMPDIR", tmp.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn e2e local");
    let pid = child.id();
    // fake-loki + 3 agents running, and the generator writing (a manifest-less work dir exists).
    let kids = poll("fake-loki and 3 agents", Duration::from_secs(60), || {
        let k = children_of(pid);
        (k.len() >= 4).then_some(k)
    });
    poll("pods being written", Duration::from_secs(30), || {
        let work = std::fs::read_dir(tmp.path()).ok()?.flatten().next()?.path();
        work.join("ops/pods").read_dir().ok()?.next().map(|_| ())
    });
    let st = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    let code = poll("e2e to exit", Duration::from_secs(20), || {
        child.try_wait().expect("wait")
    });
    assert!(!code.success(), "interrupted run must not report success");
    for k in kids {
        assert!(
            !Path::new(&format!("/proc/{k}")).exists(),
            "child {k} still exists"
        );
    }
    assert_eq!(
        std::fs::read_dir(tmp.path()).expect("read_dir").count(),
        0,
        "temp files removed"
    );
}
