//! Decompression bombs (issue 14 item 5): the decompressed size is capped, decoding stops
//! at the cap, and parallel bombs wait for a push slot instead of multiplying memory.
//! Its own test binary, so the process's peak RSS belongs to this test alone.

mod common;

use std::io::Write;

use common::send;
use fake_loki::{Config, FakeLoki};

/// Peak resident set of this process in KiB (VmHWM).
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// gzip of `n` MiB of zeros, built a MiB at a time.
fn gzip_zeros(mib: usize) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..mib {
        enc.write_all(&chunk).unwrap();
    }
    enc.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decompression_bombs_are_bounded() {
    let mut config = Config::for_tests();
    config.max_concurrent_pushes = 2;
    let loki = FakeLoki::start(config).await.unwrap();
    let url = format!("{}/loki/api/v1/push", loki.url());
    let gzip_bomb = gzip_zeros(1024);
    assert!(gzip_bomb.len() < 8 << 20, "{}", gzip_bomb.len());
    // Snappy inside gzip: the snappy block declares 1 GiB.
    let snappy_bomb = {
        let zeros = vec![0u8; 1 << 30];
        let s = loki_wire::snappy::compress(&zeros);
        loki_wire::encoding::gzip(&s)
    };
    // Forget the construction buffers' peak: measure only the server's work.
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before = peak_rss_kib();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let body = if i % 2 == 0 {
            gzip_bomb.clone()
        } else {
            snappy_bomb.clone()
        };
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            send(
                "POST",
                &url,
                &[
                    ("X-Scope-OrgID", "t"),
                    ("Content-Type", "application/x-protobuf"),
                    ("Content-Encoding", "gzip"),
                ],
                body,
            )
            .await
        }));
    }
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, 413, "{}", r.body);
        assert!(r.body.contains("104857600"), "{}", r.body);
    }
    let grown_mib = (peak_rss_kib() - before) / 1024;
    println!("peak RSS growth for 8 parallel bombs: {grown_mib} MiB");
    // Two slots of at most ~128 MiB (the capped Vec) each, plus slack.
    assert!(grown_mib < 600, "peak RSS grew {grown_mib} MiB");
    assert!(loki.entries("t").is_empty());
    loki.shutdown().await;
}
