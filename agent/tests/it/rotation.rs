//! Rotation: rename + create under load, copytruncate, delete while open, gzip while the
//! agent is stopped, and `kill -9` of the agent binary.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::*;
use crate::script::{lines_received, start_scanned};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_rotation_during_heavy_writing_loses_nothing() {
    let w = World::new().await;
    let c = w.container("ns", "p", "c");
    let agent = Running::start(w.settings()).await;
    let dir = c.dir.clone();
    const TOTAL: u64 = 60_000;
    let writer = std::thread::spawn(move || {
        let mut rotation = 0;
        let live = dir.join("0.log");
        for k in 0..(TOTAL / 1000) {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&live)
                .expect("open");
            for i in k * 1000..(k + 1) * 1000 {
                std::io::Write::write_all(
                    &mut f,
                    cri(i, "stdout", "F", &format!("line-{i}")).as_bytes(),
                )
                .expect("write");
            }
            if k % 10 == 9 {
                rotation += 1;
                std::fs::rename(&live, dir.join(format!("0.log.2026010{rotation}-000000")))
                    .expect("rotate");
            }
        }
    });
    tokio::task::spawn_blocking(move || writer.join())
        .await
        .expect("join")
        .expect("writer");
    let got = w.wait_entries(TOTAL as usize).await;
    assert_exactly(&got, &[(&c.labels, expected_lines(0, TOTAL))]);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copytruncate_restarts_reading_at_zero() {
    let w = World::new().await;
    let c = w.container("ns", "p", "c");
    c.append(0, cri_lines(0, 100).as_bytes());
    let agent = Running::start(w.settings()).await;
    w.wait_entries(100).await;
    // logrotate copytruncate: copy aside (ignored: a new inode nobody started), truncate in place.
    std::fs::copy(c.log(0), c.dir.join("0.log.1")).expect("copy");
    std::fs::OpenOptions::new()
        .write(true)
        .open(c.log(0))
        .expect("open")
        .set_len(0)
        .expect("truncate");
    c.append(0, cri_lines(100, 20).as_bytes());
    let got = w.wait_entries(120).await;
    assert_exactly(&got, &[(&c.labels, expected_lines(0, 120))]);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_deleted_while_being_read_is_read_to_its_end() {
    let w = World::new().await;
    let c = w.container("ns", "p", "c");
    c.append(0, cri_lines(0, 20_000).as_bytes());
    // Slow Loki: the agent is still far behind when the file disappears.
    w.loki
        .faults()
        .add(
            fake_loki::FaultRule::new(fake_loki::FaultAction::Latency)
                .latency_ms(100)
                .count(5),
        )
        .expect("fault");
    let mut settings = w.settings();
    settings.batch_bytes = 16 * 1024;
    settings.read_bytes = 16 * 1024;
    settings.queue_chunks = 1;
    let agent = Running::start(settings).await;
    w.wait_entries(1).await;
    std::fs::remove_file(c.log(0)).expect("delete");
    assert!(
        w.entries().len() < 20_000,
        "test needs the agent to be behind"
    );
    let got = w.wait_entries(20_000).await;
    assert_exactly(&got, &[(&c.labels, expected_lines(0, 20_000))]);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_and_gzip_while_stopped_then_restart_every_line_once() {
    let w = World::new().await;
    let c = w.container("ns", "p", "c");
    c.append(0, cri_lines(0, 100).as_bytes());
    let agent = Running::start(w.settings()).await;
    w.wait_entries(100).await;
    agent.stop().await;
    // While stopped: more lines, rotate, a new file, another rotation, and gzip the first one.
    c.append(0, cri_lines(100, 50).as_bytes());
    let r1 = c.dir.join("0.log.20261122-101500");
    std::fs::rename(c.log(0), &r1).expect("rotate 1");
    c.append(0, cri_lines(150, 50).as_bytes());
    let r2 = c.dir.join("0.log.20261122-102500");
    std::fs::rename(c.log(0), &r2).expect("rotate 2");
    gzip_and_remove(&r1, &c.dir.join("0.log.20261122-101500.gz"));
    c.append(0, cri_lines(200, 50).as_bytes());
    let agent = Running::start(w.settings()).await;
    let got = w.wait_entries(250).await;
    assert_exactly(&got, &[(&c.labels, expected_lines(0, 250))]);
    // Nothing is read twice later either (rotated files are finished, .gz not re-read).
    c.append(0, cri_lines(250, 1).as_bytes());
    let got = w.wait_entries(251).await;
    agent.stop().await;
    assert_exactly(&got, &[(&c.labels, expected_lines(0, 251))]);
    let agent = Running::start(w.settings()).await;
    c.append(0, cri_lines(251, 1).as_bytes());
    let got = w.wait_entries(252).await;
    assert_exactly(&got, &[(&c.labels, expected_lines(0, 252))]);
    agent.stop().await;
}

fn spawn_agent(w: &World) -> Child {
    Command::new(env!("CARGO_BIN_EXE_agent"))
        .args(["run", "--loki-url", &w.loki.url(), "--tenant", TENANT])
        .arg("--pods-root")
        .arg(w.pods_root())
        .arg("--positions")
        .arg(w.positions())
        .args([
            "--external-label",
            "cluster=test",
            "--batch-size",
            "64KiB",
            "--batch-wait",
            "50ms",
        ])
        .args([
            "--listen",
            "127.0.0.1:0",
            "--positions-sync-interval",
            "100ms",
        ])
        .args([
            "--poll-interval",
            "20ms",
            "--rescan-interval",
            "100ms",
            "--min-backoff",
            "20ms",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn agent binary")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_killed_with_sigkill_and_restarted_mid_stream_loses_nothing() {
    let w = World::new().await;
    let c = w.container("ns", "p", "c");
    let mut child = spawn_agent(&w);
    for k in 0..20 {
        c.append(0, cri_lines(k * 500, 500).as_bytes());
    }
    let deadline = Instant::now() + WAIT;
    while w.entries().len() < 2000 {
        assert!(Instant::now() < deadline, "agent did not start shipping");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().expect("kill -9");
    let _ = child.wait();
    // Lines written while it is dead, and a rotation, are picked up by the next process.
    c.append(0, cri_lines(10_000, 2000).as_bytes());
    std::fs::rename(c.log(0), c.dir.join("0.log.20260101-000000")).expect("rotate");
    c.append(0, cri_lines(12_000, 1000).as_bytes());
    let mut child = spawn_agent(&w);
    let got = w.wait_entries(13_000).await;
    // SAFETY of the signal: only our own child's pid.
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().expect("wait");
    assert!(status.success(), "SIGTERM exits 0: {status:?}");
    assert_exactly(&got, &[(&c.labels, expected_lines(0, 13_000))]);
}

/// A Loki that refuses any entry older than its stream's newest (bar 1 ns): a file read out
/// of rotation order loses lines there, so ordering shows in the exactly-once assertion.
async fn strict_order_world() -> World {
    World::with_config(fake_loki::Config {
        max_chunk_age_ns: 2,
        ..fake_loki::Config::for_tests()
    })
    .await
}

fn gz_path(p: &std::path::Path) -> std::path::PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".gz");
    s.into()
}

/// Every line once in Loki's store and once on the wire (the store drops exact duplicates).
async fn assert_once(w: &World, c: &Container, n: u64) {
    let got = w.wait_entries(n as usize).await;
    assert_exactly(&got, &[(&c.labels, expected_lines(0, n))]);
    assert_eq!(lines_received(w).await, n, "lines pushed to Loki");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_rotations_while_stopped_then_restart_every_line_once() {
    // (gzip the older rotated file, gzip the newer one too)
    for (gz_older, gz_newer) in [(false, false), (true, false), (true, true)] {
        let w = strict_order_world().await;
        let c = w.container("ns", "p", "c");
        c.append(0, cri_lines(0, 100).as_bytes());
        let agent = start_scanned(&w).await;
        w.wait_entries(100).await;
        agent.stop().await;
        // While stopped: A (read up to line 100) gets 50 more lines and is rotated; B is
        // created with 50 lines and rotated; C is the new live file.
        c.append(0, cri_lines(100, 50).as_bytes());
        let r1 = c.dir.join("0.log.20261122-101500");
        std::fs::rename(c.log(0), &r1).expect("rotate A");
        c.append(0, cri_lines(150, 50).as_bytes());
        let r2 = c.dir.join("0.log.20261122-102500");
        std::fs::rename(c.log(0), &r2).expect("rotate B");
        if gz_older {
            gzip_and_remove(&r1, &gz_path(&r1));
        }
        if gz_newer {
            gzip_and_remove(&r2, &gz_path(&r2));
        }
        c.append(0, cri_lines(200, 50).as_bytes());
        let agent = start_scanned(&w).await;
        assert_once(&w, &c, 250).await;
        agent.stop().await;
        // Finished files are remembered as done: a further restart reads only the new line.
        let agent = start_scanned(&w).await;
        c.append(0, cri_lines(250, 1).as_bytes());
        assert_once(&w, &c, 251).await;
        agent.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_file_rotated_and_gzipped_while_stopped_is_read() {
    let w = strict_order_world().await;
    let c = w.container("ns", "p", "c");
    c.append(0, b"");
    // The agent records the empty 0.log (no content fingerprint) and stops.
    let agent = start_scanned(&w).await;
    agent.stop().await;
    c.append(0, cri_lines(0, 100).as_bytes());
    let r1 = c.dir.join("0.log.20261122-101500");
    std::fs::rename(c.log(0), &r1).expect("rotate");
    gzip_and_remove(&r1, &gz_path(&r1));
    c.append(0, cri_lines(100, 50).as_bytes());
    let agent = start_scanned(&w).await;
    assert_once(&w, &c, 150).await;
    agent.stop().await;
    let agent = start_scanned(&w).await;
    c.append(0, cri_lines(150, 1).as_bytes());
    assert_once(&w, &c, 151).await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_created_and_rotated_between_scans_is_read() {
    for gz in [false, true] {
        let w = strict_order_world().await;
        let c = w.container("ns", "p", "c");
        c.append(0, cri_lines(0, 100).as_bytes());
        let mut settings = w.settings();
        // Only the watcher triggers scans: B arrives in one rename, so no scan can see it live.
        settings.rescan_interval = Duration::from_secs(3600);
        let agent = Running::start(settings).await;
        w.wait_entries(100).await;
        std::fs::rename(c.log(0), c.dir.join("0.log.20261122-101500")).expect("rotate A");
        // B is written and rotated (and maybe gzipped) out of the agent's sight.
        let staged = w.dir.path().join("staged");
        std::fs::write(&staged, cri_lines(100, 100)).expect("write B");
        let b = c.dir.join("0.log.20261122-102500");
        if gz {
            gzip_and_remove(&staged, &gz_path(&staged));
            std::fs::rename(gz_path(&staged), gz_path(&b)).expect("move B.gz in");
        } else {
            std::fs::rename(&staged, &b).expect("move B in");
        }
        c.append(0, cri_lines(200, 50).as_bytes());
        assert_once(&w, &c, 250).await;
        agent.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_created_and_rotated_while_stopped_is_read_from_its_first_file() {
    let w = strict_order_world().await;
    // A first run on an empty node leaves a positions file behind.
    let agent = start_scanned(&w).await;
    agent.stop().await;
    // While the agent is down a new pod starts, logs, and kubelet rotates (and gzips) it.
    let c = w.container("ns", "new", "c");
    c.append(0, cri_lines(0, 100).as_bytes());
    let r1 = c.dir.join("0.log.20261122-101500");
    std::fs::rename(c.log(0), &r1).expect("rotate 1");
    c.append(0, cri_lines(100, 100).as_bytes());
    let r2 = c.dir.join("0.log.20261122-102500");
    std::fs::rename(c.log(0), &r2).expect("rotate 2");
    gzip_and_remove(&r1, &gz_path(&r1));
    c.append(0, cri_lines(200, 50).as_bytes());
    let agent = start_scanned(&w).await;
    assert_once(&w, &c, 250).await;
    agent.stop().await;
    // And a further restart reads nothing twice.
    let agent = start_scanned(&w).await;
    c.append(0, cri_lines(250, 1).as_bytes());
    assert_once(&w, &c, 251).await;
    agent.stop().await;
}

/// The agent binary with its default positions commit interval, 16 KiB batches.
fn spawn_agent_default_commit(w: &World) -> Child {
    Command::new(env!("CARGO_BIN_EXE_agent"))
        .args(["run", "--loki-url", &w.loki.url(), "--tenant", TENANT])
        .arg("--pods-root")
        .arg(w.pods_root())
        .arg("--positions")
        .arg(w.positions())
        .args(["--external-label", "cluster=test"])
        .args(["--batch-size", "16KiB", "--batch-wait", "50ms"])
        .args(["--listen", "127.0.0.1:0", "--poll-interval", "20ms"])
        .args(["--rescan-interval", "100ms", "--min-backoff", "20ms"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn agent binary")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_soon_after_start_with_a_rotation_resends_at_most_one_commit_interval() {
    let w = World::new().await;
    let c = w.container("ns", "p", "c");
    c.append(0, cri_lines(0, 50).as_bytes());
    let mut child = spawn_agent_default_commit(&w);
    // A steady writer: 50 lines every 10 ms at most (5,000 lines/s, never catching up after
    // a late tick), so one 100 ms commit interval is worth at most 500 lines.
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for k in 1..300u64 {
        tick.tick().await;
        if k == 150 {
            std::fs::rename(c.log(0), c.dir.join("0.log.20260101-000000")).expect("rotate");
        }
        c.append(0, cri_lines(k * 50, 50).as_bytes());
    }
    let before_kill = lines_received(&w).await;
    assert!(
        before_kill >= 5_000,
        "the agent shipped only {before_kill} lines"
    );
    child.kill().expect("kill -9");
    let _ = child.wait();
    let saved = std::fs::read_to_string(w.positions()).unwrap_or_default();
    let mut child = spawn_agent_default_commit(&w);
    let got = w.wait_entries(15_000).await;
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().expect("wait");
    assert!(status.success(), "SIGTERM exits 0: {status:?}");
    assert_exactly(&got, &[(&c.labels, expected_lines(0, 15_000))]);
    // Loki de-duplicates identical CRI lines; the wire does not. 1,500 lines = 300 ms of
    // writing: the commit interval plus the batch in flight and batch_wait.
    let resent = lines_received(&w).await - 15_000;
    assert!(
        resent <= 1_500,
        "{resent} lines sent twice ({before_kill} received before the kill); positions:\n{saved}"
    );
}
