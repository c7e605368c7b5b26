//! Rotation: rename + create under load, copytruncate, delete while open, gzip while the
//! agent is stopped, and `kill -9` of the agent binary.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::*;

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
