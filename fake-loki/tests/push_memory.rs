//! Memory after a rejected push (issue 14 item 6): a JSON push of 1,000,000 streams that
//! the stream limit refuses must neither leave its decoded form resident nor grow the
//! process with every repeat. Its own test binary, so the process's RSS belongs to it.

mod common;

use std::fmt::Write;

use common::{now_ns, send};
use fake_loki::{Config, FakeLoki};

/// Resident set of this process in MiB (`/proc/self/statm`, second field, in pages).
fn rss_mib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096 / (1 << 20)
}

/// A v1 JSON body of `n` one-entry streams, each with its own label value.
fn many_streams(n: usize, ts: i64) -> Vec<u8> {
    let mut s = String::with_capacity(n * 48);
    s.push_str(r#"{"streams":["#);
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        write!(s, r#"{{"stream":{{"s":"{i}"}},"values":[["{ts}","x"]]}}"#).unwrap();
    }
    s.push_str("]}");
    s.into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_million_stream_push_does_not_stay_resident() {
    // Decoded whole, then refused by the stream limit (429) after 1000 streams.
    let mut decoded = Config::for_tests();
    decoded.limits.defaults.max_global_streams_per_user = 1000;
    decoded.max_push_streams = 2_000_000;
    let decoded = FakeLoki::start(decoded).await.unwrap();
    // Refused while decoding (400) at the default bound of 100,000 streams.
    let bounded = FakeLoki::start(Config::for_tests()).await.unwrap();
    let body = many_streams(1_000_000, now_ns());
    assert!(body.len() < 100 << 20, "{}", body.len());
    let before = rss_mib();
    for round in 0..3 {
        for (loki, status, why) in [
            (&decoded, 429, "maximum active stream limit exceeded"),
            (&bounded, 400, "the push body has more than 100000 streams"),
        ] {
            let r = send(
                "POST",
                &format!("{}/loki/api/v1/push", loki.url()),
                &[("X-Scope-OrgID", "t"), ("Content-Type", "application/json")],
                body.clone(),
            )
            .await;
            assert_eq!(r.status, status, "{}", r.body);
            assert!(r.body.contains(why), "{}", r.body);
            let grown = rss_mib().saturating_sub(before);
            println!("round {round}, {status}: RSS {grown} MiB over the start");
            // The stored 1000 streams and the allocator's slack; the body is ~45 MB.
            assert!(grown < 150, "round {round}, {status}: RSS grew {grown} MiB");
        }
    }
    let stored = decoded.entries("t");
    assert_eq!(stored.len(), 1000);
    assert!(bounded.entries("t").is_empty());
}
