//! Reading and parsing: labels, tenant, CRI partials, huge lines, invalid UTF-8.

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cri_lines_arrive_once_with_pod_labels_and_tenant() {
    let w = World::new().await;
    let c = w.container("shop", "web-0", "app");
    c.append(0, cri_lines(0, 100).as_bytes());
    // An stderr line goes to its own stream.
    c.append(0, cri(100, "stderr", "F", "oops").as_bytes());
    let agent = Running::start(w.settings()).await;
    let got = w.wait_entries(101).await;
    let stderr = c.labels.replace("stdout", "stderr");
    assert_exactly(
        &got,
        &[
            (&c.labels, expected_lines(0, 100)),
            (&stderr, vec!["oops".into()]),
        ],
    );
    assert!(w.loki.entries("other").is_empty());
    let m = agent.metrics().await;
    assert_eq!(metric(&m, "loki_write_sent_entries_total{"), 101.0, "{m}");
    assert!(m.contains("loki_source_file_read_lines_total{"), "{m}");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cri_partial_lines_are_joined_and_an_unfinished_one_waits() {
    let w = World::new().await;
    let c = w.container("ns", "p", "c");
    let mut s = String::new();
    s.push_str(&cri(1, "stdout", "P", "hello "));
    s.push_str(&cri(2, "stderr", "F", "interleaved"));
    s.push_str(&cri(3, "stdout", "P", "big "));
    s.push_str(&cri(4, "stdout", "F", "world"));
    s.push_str(&cri(5, "stdout", "P", "pending..."));
    c.append(0, s.as_bytes());
    let agent = Running::start(w.settings()).await;
    w.wait_entries(2).await;
    // The unfinished partial is not emitted until its F arrives.
    c.append(0, cri(6, "stdout", "F", " done").as_bytes());
    let got = w.wait_entries(3).await;
    let stderr = c.labels.replace("stdout", "stderr");
    assert_exactly(
        &got,
        &[
            (
                &c.labels,
                vec!["hello big world".into(), "pending... done".into()],
            ),
            (&stderr, vec!["interleaved".into()]),
        ],
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_megabyte_line_arrives_intact() {
    let mut config = fake_loki::Config::for_tests();
    config.limits.defaults.max_line_size = 4 << 20;
    let w = World::with_config(config).await;
    let c = w.container("ns", "p", "c");
    let big: String = (0..1_000_000)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let mut s = cri_lines(0, 1);
    s.push_str(&cri(1, "stdout", "F", &big));
    s.push_str(&cri_lines(2, 1));
    c.append(0, s.as_bytes());
    let mut settings = w.settings();
    settings.max_line_bytes = 2 << 20;
    let agent = Running::start(settings).await;
    let got = w.wait_entries(3).await;
    assert_exactly(
        &got,
        &[(&c.labels, vec!["line-0".into(), big, "line-2".into()])],
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn line_longer_than_max_is_truncated_counted_and_the_next_line_survives() {
    let w = World::new().await;
    let c = w.container("ns", "p", "c");
    let long = "x".repeat(100_000);
    let mut s = cri(0, "stdout", "F", &long);
    s.push_str(&cri_lines(1, 1));
    c.append(0, s.as_bytes());
    let mut settings = w.settings();
    settings.max_line_bytes = 1000;
    settings.read_bytes = 4096;
    let agent = Running::start(settings).await;
    let got = w.wait_entries(2).await;
    assert_exactly(
        &got,
        &[(&c.labels, vec!["x".repeat(1000), "line-1".into()])],
    );
    let m = agent.metrics().await;
    assert_eq!(metric(&m, "agent_lines_truncated_total"), 1.0, "{m}");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_is_replaced_not_fatal() {
    let w = World::new().await;
    let c = w.container("ns", "p", "c");
    let mut data = cri(0, "stdout", "F", "before").into_bytes();
    data.extend_from_slice(b"2024-05-01T10:00:00.000000001Z stdout F bad \xff\xfe bytes\n");
    data.extend_from_slice(b"plain \xc3 garbage\n");
    data.extend_from_slice(cri(2, "stdout", "F", "after").as_bytes());
    c.append(0, &data);
    let agent = Running::start(w.settings()).await;
    let got = w.wait_entries(4).await;
    let plain = c.labels.replace(", stream=\"stdout\"", "");
    assert_exactly(
        &got,
        &[
            (
                &c.labels,
                vec![
                    "before".into(),
                    "bad \u{fffd}\u{fffd} bytes".into(),
                    "after".into(),
                ],
            ),
            (&plain, vec!["plain \u{fffd} garbage".into()]),
        ],
    );
    let m = agent.metrics().await;
    assert_eq!(metric(&m, "agent_lines_invalid_utf8_total"), 2.0, "{m}");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_own_log_has_no_colour_codes_in_a_file() {
    let w = World::new().await;
    let log = w.dir.path().join("agent.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_agent"))
        .args([
            "run",
            "--loki-url",
            &w.loki.url(),
            "--listen",
            "127.0.0.1:0",
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
    let deadline = std::time::Instant::now() + WAIT;
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("agent started") {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no start line: {text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(!text.contains('\u{1b}'), "ANSI escape in {text:?}");
    assert!(text.contains(" INFO "), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cri_line_with_an_unknown_flag_ships_without_the_flag() {
    let w = World::new().await;
    let c = w.container("ns", "p", "c");
    c.append(0, cri(0, "stdout", "X", "hello").as_bytes());
    c.append(0, cri(1, "stdout", "F", "next").as_bytes());
    let agent = Running::start(w.settings()).await;
    let got = w.wait_entries(2).await;
    assert_exactly(&got, &[(&c.labels, vec!["hello".into(), "next".into()])]);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlinks_out_of_the_pods_root_are_skipped_warned_once_and_counted() {
    let w = World::new().await;
    let secret = w.dir.path().join("passwd");
    std::fs::write(&secret, cri(0, "stdout", "F", "root:x:0:0:host secret")).expect("secret");
    let evil = w.container("ns", "evil", "c");
    std::os::unix::fs::symlink(&secret, evil.log(0)).expect("link");
    let c = w.container("ns", "p", "c");
    c.append(0, cri_lines(0, 10).as_bytes());
    let agent = Running::start(w.settings()).await;
    w.wait_entries(10).await;
    // A rotated file replaced by such a link, while the agent runs.
    std::fs::rename(c.log(0), c.dir.join("0.log.20260101-000000")).expect("rotate");
    c.append(0, cri_lines(10, 10).as_bytes());
    let rotated = c.dir.join("0.log.20260101-000000");
    let deadline = std::time::Instant::now() + WAIT;
    while w.entries().len() < 20 {
        assert!(std::time::Instant::now() < deadline, "live file not read");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    std::fs::remove_file(&rotated).expect("remove rotated");
    std::os::unix::fs::symlink(&secret, &rotated).expect("link");
    c.append(0, cri_lines(20, 10).as_bytes());
    let got = w.wait_entries(30).await;
    // Several rescans later nothing of the host file has been shipped.
    let m = loop {
        let m = agent.metrics().await;
        if metric(&m, "agent_files_refused_total{") >= 2.0 {
            break m;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "refusals not counted: {m}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let got_later = w.entries();
    assert_eq!(got_later.len(), got.len());
    assert_exactly(&got_later, &[(&c.labels, expected_lines(0, 30))]);
    assert!(w
        .loki
        .entries(TENANT)
        .iter()
        .all(|e| !e.line.contains("secret")));
    // Once per path, however many scans saw it.
    assert_eq!(
        metric(&agent.metrics().await, "agent_files_refused_total{"),
        2.0,
        "{m}"
    );
    agent.stop().await;
}
