//! The open-file budget: many more files than descriptors, every line exactly once, idle
//! files closed and reopened by identity (rotated and truncated ones included).

use std::time::Instant;

use fake_loki::StoredEntry;

use crate::helpers::*;

/// Descriptors of this process open on files under `root`.
fn open_under(root: &std::path::Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter(|p| p.starts_with(root))
                .count()
        })
        .unwrap_or(0)
}

/// Polls until `n` entries are stored; on timeout prints the agent's log and returns what
/// arrived.
async fn wait_entries_or_log(w: &World, n: usize, log: &std::path::Path) -> Vec<StoredEntry> {
    let deadline = Instant::now() + WAIT;
    loop {
        let e = w.entries();
        if e.len() >= n {
            return e;
        }
        if Instant::now() >= deadline {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            // The caller's exact check says which lines are missing.
            eprintln!(
                "timed out: {} of {n} entries arrived; agent log, last lines first:\n{}",
                e.len(),
                tail.join("\n")
            );
            return e;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn lines(tag: &str, from: u64, count: u64) -> (String, Vec<String>) {
    let mut text = String::new();
    let mut want = Vec::new();
    for i in from..from + count {
        let msg = format!("{tag}-{i}");
        text.push_str(&cri(i, "stdout", "F", &msg));
        want.push(msg);
    }
    (text, want)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_more_files_than_the_budget_arrive_once_and_closed_files_reopen_by_identity() {
    const FILES: usize = 30;
    const BUDGET: usize = 4;
    let w = World::new().await;
    let containers: Vec<Container> = (0..FILES)
        .map(|i| w.container("ns", &format!("p{i}"), "c"))
        .collect();
    let mut want: Vec<Vec<String>> = vec![Vec::new(); FILES];
    for (i, c) in containers.iter().enumerate() {
        let (text, exp) = lines(&format!("a{i}"), 0, 5);
        c.append(0, text.as_bytes());
        want[i].extend(exp);
    }
    let mut settings = w.settings();
    settings.max_open_files = BUDGET;
    let agent = Running::start(settings).await;
    w.wait_entries(FILES * 5).await;
    // Once every file went idle, at most the budget stays open.
    let deadline = Instant::now() + WAIT;
    while open_under(&w.pods_root()) > BUDGET {
        assert!(
            Instant::now() < deadline,
            "more than {BUDGET} log files open"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // Closed files grow: they are reopened and read on.
    for (i, c) in containers.iter().enumerate() {
        let (text, exp) = lines(&format!("a{i}"), 5, 3);
        c.append(0, text.as_bytes());
        want[i].extend(exp);
    }
    w.wait_entries(FILES * 8).await;

    // Rotation of idle (closed) files: the rest of the old file, then the new one.
    for (i, c) in containers.iter().enumerate().take(5) {
        let (text, exp) = lines(&format!("a{i}"), 8, 2);
        c.append(0, text.as_bytes());
        want[i].extend(exp);
        std::fs::rename(c.log(0), c.dir.join("0.log.20240101-000000")).expect("rotate");
        let (text, exp) = lines(&format!("b{i}"), 10, 2);
        c.append(0, text.as_bytes());
        want[i].extend(exp);
    }
    // Copytruncate of idle files: same inode, new content, read from its start (the
    // fingerprint tells it apart); what was shipped is not sent again.
    for (i, c) in containers.iter().enumerate().skip(5).take(5) {
        std::fs::OpenOptions::new()
            .write(true)
            .open(c.log(0))
            .and_then(|f| f.set_len(0))
            .expect("truncate");
        let (text, exp) = lines(&format!("t{i}"), 20, 3);
        c.append(0, text.as_bytes());
        want[i].extend(exp);
    }
    let total: usize = want.iter().map(Vec::len).sum();
    let got = w.wait_entries(total).await;
    let expected: Vec<(&str, Vec<String>)> = containers
        .iter()
        .zip(&want)
        .map(|(c, w)| (c.labels.as_str(), w.clone()))
        .collect();
    assert_exactly(&got, &expected);
    let m = agent.metrics().await;
    assert_eq!(metric(&m, "agent_positions_saves_failed_total"), 0.0, "{m}");
    agent.stop().await;
}

/// With the fd limit far below the number of files (2,000 files, a soft limit of 64 and a
/// hard one of 256), the agent raises its soft limit to the hard one, derives its budget from
/// it, warns, and still ships every line exactly once and saves its positions. Before the
/// budget, the opens took every descriptor and the pushes and positions saves failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_low_fd_limit_starves_neither_the_push_nor_the_positions_save() {
    const FILES: usize = 2000;
    let w = World::new().await;
    let containers: Vec<Container> = (0..FILES)
        .map(|i| w.container("ns", &format!("q{i}"), "c"))
        .collect();
    let mut want: Vec<Vec<String>> = vec![Vec::new(); FILES];
    for (i, c) in containers.iter().enumerate() {
        let (text, exp) = lines(&format!("q{i}"), 0, 5);
        c.append(0, text.as_bytes());
        want[i].extend(exp);
    }
    let log = w.dir.path().join("agent.log");
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -Sn 64 && ulimit -Hn 256 && exec "$@""#)
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_agent"))
        .args([
            "run",
            "--loki-url",
            &w.loki.url(),
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--tenant", TENANT, "--external-label", "cluster=test"])
        .args(["--batch-wait", "50ms", "--rescan-interval", "200ms"])
        .args([
            "--poll-interval",
            "50ms",
            "--positions-sync-interval",
            "50ms",
        ])
        .arg("--pods-root")
        .arg(w.pods_root())
        .arg("--positions")
        .arg(w.positions())
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("spawn agent");
    wait_entries_or_log(&w, FILES * 5, &log).await;
    // More lines, and a rotation of some (now closed) files.
    for (i, c) in containers.iter().enumerate() {
        let (text, exp) = lines(&format!("q{i}"), 5, 2);
        c.append(0, text.as_bytes());
        want[i].extend(exp);
        if i % 20 == 0 {
            std::fs::rename(c.log(0), c.dir.join("0.log.20240101-000000")).expect("rotate");
            let (text, exp) = lines(&format!("r{i}"), 7, 2);
            c.append(0, text.as_bytes());
            want[i].extend(exp);
        }
    }
    let total: usize = want.iter().map(Vec::len).sum();
    let got = wait_entries_or_log(&w, total, &log).await;
    let expected: Vec<(&str, Vec<String>)> = containers
        .iter()
        .zip(&want)
        .map(|(c, w)| (c.labels.as_str(), w.clone()))
        .collect();
    assert_exactly(&got, &expected);
    // Every acknowledged file reaches the positions file (the save found its descriptors).
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(w.positions()).unwrap_or_default();
        let saved = containers
            .iter()
            .filter(|c| text.contains(&*c.log(0).to_string_lossy()))
            .count();
        if saved == FILES {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{saved} of {FILES} files in the positions file; agent log: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !text.contains("Too many open files"),
        "descriptors ran out: {text}"
    );
    assert!(
        text.contains("raised the soft open-file limit to the hard limit"),
        "{text}"
    );
    assert!(
        text.contains("more log files than the open-file budget"),
        "{text}"
    );
}
