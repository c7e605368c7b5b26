//! Delivery under Loki failures: 429 with Retry-After, 5xx, Loki down, non-retryable 4xx,
//! and tenant isolation.

use std::time::{Duration, Instant};

use fake_loki::{FaultAction, FaultRule};

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loki_429_with_retry_after_is_retried_after_the_delay() {
    let w = World::new().await;
    let c = w.container("ns", "p", "c");
    w.loki
        .faults()
        .add(FaultRule::status(429).retry_after(1).count(2))
        .expect("fault");
    c.append(0, cri_lines(0, 50).as_bytes());
    let started = Instant::now();
    let mut settings = w.settings();
    // Retry-After is capped at max_backoff; keep the cap above the server's hint.
    settings.max_backoff = Duration::from_secs(5);
    let agent = Running::start(settings).await;
    let got = w.wait_entries(50).await;
    // Two 429s with Retry-After: 1 → at least ~2 s, far more than the 200 ms max backoff.
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        started.elapsed()
    );
    assert_exactly(&got, &[(&c.labels, expected_lines(0, 50))]);
    let m = agent.metrics().await;
    assert!(metric(&m, "loki_write_batch_retries_total{") >= 2.0, "{m}");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loki_500s_and_resets_are_retried_until_accepted() {
    let w = World::new().await;
    let c = w.container("ns", "p", "c");
    w.loki
        .faults()
        .add(FaultRule::status(500).count(3))
        .expect("fault");
    w.loki
        .faults()
        .add(FaultRule::new(FaultAction::Reset).count(2))
        .expect("fault");
    w.loki
        .faults()
        .add(FaultRule::status(503).count(2))
        .expect("fault");
    let agent = Running::start(w.settings()).await;
    for k in 0..5 {
        c.append(0, cri_lines(k * 100, 100).as_bytes());
    }
    let got = w.wait_entries(500).await;
    assert_exactly(&got, &[(&c.labels, expected_lines(0, 500))]);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loki_down_for_a_while_then_back_loses_nothing() {
    let w = World::new().await;
    // Reserve a port, then free it: the agent starts against a Loki that is not there.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let mut settings = w.settings();
    settings.loki_url = format!("http://{addr}");
    let c = w.container("ns", "p", "c");
    c.append(0, cri_lines(0, 1000).as_bytes());
    let agent = Running::start(settings).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let m = agent.metrics().await;
        if metric(&m, "loki_write_batch_retries_total{") >= 3.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no retries while Loki is down: {m}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.append(0, cri_lines(1000, 1000).as_bytes());
    // Loki comes back on the same address.
    let listener = tokio::net::TcpListener::bind(addr).await.expect("rebind");
    let state =
        std::sync::Arc::new(fake_loki::State::new(fake_loki::Config::for_tests()).expect("state"));
    let loki = fake_loki::FakeLoki::serve(listener, state).expect("serve");
    let deadline = Instant::now() + WAIT;
    while loki.entries(TENANT).len() < 2000 {
        assert!(
            Instant::now() < deadline,
            "{} of 2000",
            loki.entries(TENANT).len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_exactly(
        &loki.entries(TENANT),
        &[(&c.labels, expected_lines(0, 2000))],
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_retryable_400_is_dropped_counted_and_does_not_block_the_stream() {
    let w = World::new().await;
    let c = w.container("ns", "p", "c");
    w.loki
        .faults()
        .add(FaultRule::status(400).count(1))
        .expect("fault");
    let agent = Running::start(w.settings()).await;
    c.append(0, cri_lines(0, 10).as_bytes());
    let deadline = Instant::now() + WAIT;
    loop {
        let m = agent.metrics().await;
        if metric(&m, "loki_write_dropped_entries_total{") >= 10.0 {
            assert!(m.contains("reason=\"ingester_error\""), "{m}");
            break;
        }
        assert!(Instant::now() < deadline, "drop not counted: {m}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.append(0, cri_lines(10, 10).as_bytes());
    let got = w.wait_entries(10).await;
    assert_exactly(&got, &[(&c.labels, expected_lines(10, 10))]);
    let m = agent.metrics().await;
    assert_eq!(
        metric(&m, "loki_write_batch_retries_total{"),
        0.0,
        "a 400 must never be retried: {m}"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_in_one_tenant_does_not_stall_another() {
    let w = World::new().await;
    let mut settings = w.settings();
    settings
        .namespace_tenants
        .insert("noisy".into(), "noisy".into());
    settings.queue_chunks = 1;
    w.loki
        .faults()
        .add(FaultRule::status(429).tenant("noisy"))
        .expect("fault");
    let noisy = w.container("noisy", "p", "c");
    let quiet = w.container("quiet", "p", "c");
    let agent = Running::start(settings).await;
    for k in 0..20 {
        noisy.append(0, cri_lines(k * 100, 100).as_bytes());
    }
    quiet.append(0, cri_lines(0, 300).as_bytes());
    let got = w.wait_entries(300).await;
    assert_exactly(&got, &[(&quiet.labels, expected_lines(0, 300))]);
    assert!(w.loki.entries("noisy").is_empty());
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_window_holds_positions_and_every_line_arrives_once_credentials_work() {
    let w = World::new().await;
    let c = w.container("ns", "p", "c");
    // Wrong credentials until the operator fixes them: every push is refused.
    w.loki.faults().add(FaultRule::status(401)).expect("fault");
    c.append(0, cri_lines(0, 500).as_bytes());
    let agent = Running::start(w.settings()).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let m = agent.metrics().await;
        if metric(&m, "loki_write_batch_retries_total{") >= 5.0 {
            assert_eq!(metric(&m, "loki_write_dropped_entries_total{"), 0.0, "{m}");
            break;
        }
        assert!(Instant::now() < deadline, "401s not retried: {m}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.append(0, cri_lines(500, 500).as_bytes());
    // Nothing acknowledged: the saved offset of the file stays at 0.
    let saved = std::fs::read_to_string(w.positions()).unwrap_or_default();
    assert!(
        saved
            .lines()
            .filter(|l| l.trim_start().starts_with("offset:"))
            .all(|l| l.trim() == "offset: 0"),
        "{saved}"
    );
    w.loki.faults().clear();
    let got = w.wait_entries(1000).await;
    assert_exactly(&got, &[(&c.labels, expected_lines(0, 1000))]);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_refusing_two_entries_counts_two_dropped_and_the_rest_sent() {
    let w = World::new().await;
    let c = w.container("ns", "p", "c");
    // Five lines at 10:00, then two more than an hour older: Loki's ingester refuses those
    // two as "too far behind" and stores the others (one 400 for the batch).
    let mut s = cri_lines(0, 5);
    s.push_str("2024-05-01T08:00:00.000000001Z stdout F old-1\n");
    s.push_str("2024-05-01T08:00:00.000000002Z stdout F old-2\n");
    c.append(0, s.as_bytes());
    let agent = Running::start(w.settings()).await;
    let got = w.wait_entries(5).await;
    assert_exactly(&got, &[(&c.labels, expected_lines(0, 5))]);
    let deadline = Instant::now() + WAIT;
    loop {
        let m = agent.metrics().await;
        let dropped = metric(&m, "loki_write_dropped_entries_total{");
        if dropped > 0.0 {
            assert_eq!(dropped, 2.0, "{m}");
            assert_eq!(metric(&m, "loki_write_sent_entries_total{"), 5.0, "{m}");
            assert_eq!(metric(&m, "loki_write_batch_retries_total{"), 0.0, "{m}");
            break;
        }
        assert!(Instant::now() < deadline, "drop not counted: {m}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_gauge_counts_every_unacknowledged_byte_while_loki_refuses() {
    let w = World::new().await;
    let c = w.container("ns", "p", "c");
    w.loki.faults().add(FaultRule::status(503)).expect("fault");
    c.append(0, cri_lines(0, 100).as_bytes());
    let agent = Running::start(w.settings()).await;
    // Written while nothing is acknowledged (and reading is paused once queues fill).
    for k in 1..20 {
        c.append(0, cri_lines(k * 1000, 1000).as_bytes());
    }
    let size = std::fs::metadata(c.log(0)).expect("size").len() as f64;
    let deadline = Instant::now() + WAIT;
    loop {
        let m = agent.metrics().await;
        let lag = metric(&m, "agent_positions_lag_bytes{");
        if lag == size {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "lag {lag}, unacknowledged {size}: {m}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    w.loki.faults().clear();
    w.wait_entries(19_100).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let m = agent.metrics().await;
        if metric(&m, "agent_positions_lag_bytes{") == 0.0 {
            break;
        }
        assert!(Instant::now() < deadline, "lag stays after delivery: {m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    agent.stop().await;
}
