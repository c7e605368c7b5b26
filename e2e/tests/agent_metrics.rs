//! The agent side of the cost report reads the agent's real `/metrics` exposition.

use e2e::usage::{agent_usage_from_metrics, parse_prometheus};

#[test]
fn the_agents_own_metrics_carry_everything_the_cost_report_needs() {
    let text = agent::metrics::Metrics::new("loki:3100").render();
    let samples = parse_prometheus(&text);
    let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 22).expect("date");
    // Ten seconds from now, so the uptime is positive whatever the clock resolution.
    let now = chrono::Utc::now().timestamp() as f64 + 10.0;
    let usage = agent_usage_from_metrics(&samples, "dev", day, now).expect("agent usage");
    assert_eq!(usage.cluster, "dev");
    assert!(usage.peak_rss_bytes > 0, "{text}");
    assert!(
        usage.mem_byte_seconds >= usage.peak_rss_bytes * 9,
        "RSS integrated over ~10 s of uptime"
    );
}
