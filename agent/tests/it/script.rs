//! The randomised interpreter: any script of writes, rotations (rename, gzip), copytruncates
//! and restarts against a model, which is simply "every line written, once, in order" —
//! including files created, rotated and gzipped while the agent is down. Once means once on
//! the wire too: Loki's count of received lines must equal the lines written (fake-loki
//! drops exact duplicates, so the stored entries alone would hide a file read twice).

use proptest::prelude::*;

use crate::helpers::*;

#[derive(Debug, Clone)]
enum Op {
    /// Append this many lines to `0.log`.
    Write(u16),
    /// A line written in two pieces (the agent may see the first half alone).
    SplitWrite,
    /// kubelet rename: `0.log` → `0.log.<seq>` (the next write creates a new `0.log`).
    Rotate,
    /// kubelet gzip of the oldest plain rotated file.
    Gzip,
    /// logrotate copytruncate (only once everything so far is delivered, since data
    /// written between copy and truncate is lost by design).
    Truncate,
    /// Graceful stop, or start when stopped.
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u16..400).prop_map(Op::Write),
        1 => Just(Op::SplitWrite),
        2 => Just(Op::Rotate),
        1 => Just(Op::Gzip),
        1 => Just(Op::Truncate),
        2 => Just(Op::Restart),
    ]
}

async fn interpret(ops: Vec<Op>) {
    let w = World::new().await;
    let c = w.container("ns", "p", "c");
    let mut next: u64 = 0;
    let mut rotated: Vec<std::path::PathBuf> = Vec::new();
    let mut seq = 0;
    // A rotated file seen by a first scan in a directory the agent never recorded is history
    // from before it (ignored, like Alloy): each start waits for that scan before acting.
    let mut agent = Some(start_scanned(&w).await);
    // The agent has recorded a file of this directory, so rotated files it does not know
    // there are new content. Until then a rotation while it is down makes history, which
    // the first-sight rule ignores by design.
    let mut dir_known = false;
    // copytruncate (logrotate; the kubelet never does it) can make the agent re-send a
    // file whose truncation it noticed late: stored entries stay exactly-once (Loki drops
    // exact duplicates) but the wire count may exceed the lines written. README: limits.
    let mut truncated = false;
    for op in ops {
        match op {
            Op::Write(n) => {
                c.append(0, cri_lines(next, u64::from(n)).as_bytes());
                next += u64::from(n);
            }
            Op::SplitWrite => {
                let line = cri(next, "stdout", "F", &format!("line-{next}"));
                let (a, b) = line.as_bytes().split_at(line.len() / 2);
                c.append(0, a);
                tokio::time::sleep(std::time::Duration::from_millis(30)).await;
                c.append(0, b);
                next += 1;
            }
            Op::Rotate => {
                if agent.is_none() && !dir_known {
                    continue;
                }
                if c.log(0).exists() {
                    seq += 1;
                    let to = c.dir.join(format!("0.log.20260101-{seq:06}"));
                    std::fs::rename(c.log(0), &to).expect("rotate");
                    rotated.push(to);
                }
            }
            Op::Gzip => {
                if !rotated.is_empty() {
                    // No wait for the agent: a file gzipped before it was ever read (the
                    // kubelet does so one rotation period later) must be read from the .gz.
                    let src = rotated.remove(0);
                    let mut dst = src.clone().into_os_string();
                    dst.push(".gz");
                    gzip_and_remove(&src, std::path::Path::new(&dst));
                }
            }
            Op::Truncate => {
                if agent.is_some() && c.log(0).exists() {
                    truncated = true;
                    w.wait_entries(next as usize).await;
                    std::fs::OpenOptions::new()
                        .write(true)
                        .open(c.log(0))
                        .expect("open")
                        .set_len(0)
                        .expect("truncate");
                }
            }
            Op::Restart => match agent.take() {
                Some(a) => {
                    if !dir_known && next > 0 {
                        // One delivered line proves a file of the directory is recorded.
                        w.wait_entries(1).await;
                        dir_known = true;
                    }
                    a.stop().await;
                }
                None => agent = Some(start_scanned(&w).await),
            },
        }
    }
    let a = match agent {
        Some(a) => a,
        None => Running::start(w.settings()).await,
    };
    let got = w.wait_entries(next as usize).await;
    // Give stray duplicates a moment to show up before asserting exactly-once.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let got = if w.entries().len() != got.len() {
        w.entries()
    } else {
        got
    };
    let received = lines_received(&w).await;
    a.stop().await;
    if next == 0 {
        assert!(got.is_empty());
    } else {
        assert_exactly(&got, &[(&c.labels, expected_lines(0, next))]);
    }
    if truncated {
        assert!(received >= next, "fewer lines pushed than written");
    } else {
        assert_eq!(received, next, "lines pushed to Loki (a file read twice?)");
    }
}

/// Starts the agent and polls until it has finished its first scan: its first save, which
/// comes only after that scan, replaces the positions file (a new inode).
pub async fn start_scanned(w: &World) -> Running {
    use std::os::unix::fs::MetadataExt;
    let inode = |p: &std::path::Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    let before = inode(&w.positions());
    let agent = Running::start(w.settings()).await;
    let deadline = std::time::Instant::now() + WAIT;
    while inode(&w.positions()).is_none_or(|now| Some(now) == before) {
        assert!(
            std::time::Instant::now() < deadline,
            "no positions save after the first scan"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    agent
}

/// Lines Loki received for the tenant, duplicates included.
pub async fn lines_received(w: &World) -> u64 {
    let m = http_get(w.loki.addr(), "/metrics").await;
    metric(&m, "loki_distributor_lines_received_total{") as u64
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, max_shrink_iters: 20, ..ProptestConfig::default() })]

    #[test]
    fn any_script_of_writes_rotations_and_restarts_delivers_every_line_once(ops in proptest::collection::vec(op(), 1..14)) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(interpret(ops));
    }
}
