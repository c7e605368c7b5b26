//! Reading usage: fake-loki's ledger (`/fake-loki/api/v1/usage`), Prometheus text from an agent's
//! or fake-loki's `/metrics`, and an agent's resource use from its standard `process_*` metrics.

use std::collections::BTreeMap;

use chrono::NaiveDate;

use crate::cost::{AgentUsage, UsageResponse, UsageRow};
use crate::loki::HttpLoki;
use crate::Error;

/// Parses a usage response. fake-loki names the group column after its grouping label (`cluster`
/// unless started with another `--usage-label`); that column becomes [`UsageRow::cluster`].
pub fn parse_usage(body: &[u8]) -> Result<Vec<UsageRow>, Error> {
    let bad = |m: String| Error::Settings(format!("usage response: {m}"));
    let mut v: serde_json::Value = serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
    // A bare array of rows (a saved `rows` field) is accepted too.
    if v.is_array() {
        v = serde_json::json!({ "rows": v });
    }
    let label = v
        .get("label")
        .and_then(|l| l.as_str())
        .unwrap_or("cluster")
        .to_owned();
    if label != "cluster" {
        if let Some(rows) = v.get_mut("rows").and_then(|r| r.as_array_mut()) {
            for r in rows {
                if let Some(obj) = r.as_object_mut() {
                    if let Some(g) = obj.remove(&label) {
                        obj.insert("cluster".into(), g);
                    }
                }
            }
        }
    }
    let resp: UsageResponse = serde_json::from_value(v).map_err(|e| bad(e.to_string()))?;
    Ok(resp.rows)
}

/// Fetches every day's usage by tenant and cluster.
pub async fn fetch_usage(api: &HttpLoki) -> Result<Vec<UsageRow>, Error> {
    // Ask for the group column by the label fake-loki uses: learn it from an ungrouped query.
    let path = "/fake-loki/api/v1/usage?by=tenant";
    let (status, body) = api.get(path, None).await?;
    if status != 200 {
        return Err(Error::QueryStatus {
            url: format!("{}{path}", api.base()),
            status,
            body: String::from_utf8_lossy(&body).chars().take(300).collect(),
        });
    }
    let label = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("label").and_then(|l| l.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "cluster".to_owned());
    let qs = form_urlencoded::Serializer::new(String::new())
        .append_pair("by", &format!("tenant,{label}"))
        .finish();
    let path = format!("/fake-loki/api/v1/usage?{qs}");
    let (status, body) = api.get(&path, None).await?;
    if status != 200 {
        return Err(Error::QueryStatus {
            url: format!("{}{path}", api.base()),
            status,
            body: String::from_utf8_lossy(&body).chars().take(300).collect(),
        });
    }
    parse_usage(&body)
}

/// One sample of Prometheus text exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// The exposition format's numbers are floats; they are converted to integers at the edge.
    pub value: f64,
}

/// Parses Prometheus text format 0.0.4 (comments skipped; escaped `\\`, `\"`, `\n` in values).
/// Malformed lines are skipped: one odd line must not hide the rest of a scrape.
pub fn parse_prometheus(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(s) = parse_sample(line) {
            out.push(s);
        }
    }
    out
}

fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(r) = rest.strip_prefix('{') {
        let mut chars = r.char_indices().peekable();
        let mut key = String::new();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '}' => {
                    end = Some(i + 1);
                    break;
                }
                ',' | ' ' => {}
                '=' => {
                    if chars.next().map(|x| x.1) != Some('"') {
                        return None;
                    }
                    let mut val = String::new();
                    loop {
                        let (_, c) = chars.next()?;
                        match c {
                            '"' => break,
                            '\\' => match chars.next()?.1 {
                                'n' => val.push('\n'),
                                other => val.push(other),
                            },
                            other => val.push(other),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), val);
                }
                other => key.push(other),
            }
        }
        rest = &r[end?..];
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    (!name.is_empty()).then(|| Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Sum of every series of `name` (`None` when the metric is absent).
pub fn sum_of(samples: &[Sample], name: &str) -> Option<f64> {
    let mut it = samples.iter().filter(|s| s.name == name).peekable();
    it.peek()?;
    Some(it.map(|s| s.value).sum())
}

/// Converts a non-negative float reading to an integer, rounding; NaN and negatives are 0.
fn to_u64(v: f64) -> u64 {
    if v.is_finite() && v > 0.0 {
        v.round() as u64
    } else {
        0
    }
}

/// The metrics an agent must expose for its usage to be measured from `/metrics`.
pub const AGENT_REQUIRED: [&str; 3] = [
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_start_time_seconds",
];

/// An agent's life so far, from one scrape, booked on `day`. Memory is integrated as the current
/// RSS (or `process_max_resident_memory_bytes` when exported) over the process's uptime, an
/// estimate with one sample; CPU is exact. Errors name the missing metrics.
pub fn agent_usage_from_metrics(
    samples: &[Sample],
    cluster: &str,
    day: NaiveDate,
    now_secs: f64,
) -> Result<AgentUsage, Error> {
    let missing: Vec<&str> = AGENT_REQUIRED
        .iter()
        .copied()
        .filter(|m| sum_of(samples, m).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(Error::Settings(format!(
            "agent of cluster {cluster} does not export {}",
            missing.join(", ")
        )));
    }
    let get = |m: &str| sum_of(samples, m).unwrap_or(0.0);
    let rss = sum_of(samples, "process_max_resident_memory_bytes")
        .unwrap_or_else(|| get("process_resident_memory_bytes"));
    let uptime = (now_secs - get("process_start_time_seconds")).max(0.0);
    Ok(AgentUsage {
        day,
        cluster: cluster.to_owned(),
        cpu_ms: to_u64(get("process_cpu_seconds_total") * 1000.0),
        mem_byte_seconds: to_u64(rss * uptime),
        peak_rss_bytes: to_u64(rss),
        read_bytes: to_u64(get("loki_source_file_read_bytes_total")),
        sent_bytes: to_u64(get("loki_write_sent_bytes_total")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_with_escapes_and_sums() {
        let text = r#"# HELP x y
# TYPE loki_fake_stream_last_push_age_seconds gauge
loki_fake_stream_last_push_age_seconds{tenant="t1",stream="{app=\"a\", cluster=\"ops\"}"} 1.5
loki_write_sent_bytes_total{host="h",tenant="a"} 10
loki_write_sent_bytes_total{host="h",tenant="b"} 5 1700000000000
process_cpu_seconds_total 2.25
bad line {
"#;
        let s = parse_prometheus(text);
        assert_eq!(s.len(), 4, "{s:?}");
        assert_eq!(s[0].labels["stream"], r#"{app="a", cluster="ops"}"#);
        assert_eq!(s[0].value, 1.5);
        assert_eq!(sum_of(&s, "loki_write_sent_bytes_total"), Some(15.0));
        assert_eq!(sum_of(&s, "nope"), None);
    }

    #[test]
    fn agent_usage_needs_process_metrics_and_names_the_missing_ones() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 22).expect("day");
        let s = parse_prometheus("process_cpu_seconds_total 1.5\n");
        let err = agent_usage_from_metrics(&s, "ops", day, 100.0).expect_err("missing");
        let msg = err.to_string();
        assert!(
            msg.contains("process_resident_memory_bytes")
                && msg.contains("process_start_time_seconds"),
            "{msg}"
        );
        let s = parse_prometheus(
            "process_cpu_seconds_total 1.5\nprocess_resident_memory_bytes 1000\nprocess_start_time_seconds 40\nloki_source_file_read_bytes_total{path=\"a\"} 7\n",
        );
        let a = agent_usage_from_metrics(&s, "ops", day, 100.0).expect("usage");
        assert_eq!(
            (a.cpu_ms, a.mem_byte_seconds, a.peak_rss_bytes, a.read_bytes),
            (1500, 60_000, 1000, 7)
        );
    }

    #[test]
    fn usage_rows_take_the_group_column_by_its_label() {
        let body = br#"{"label":"k8s_cluster","by":["tenant","k8s_cluster"],"rows":[
            {"day":"2026-11-22","tenant":"ops","k8s_cluster":"a","lines":2,"bytes":10,"loki_bytes":12,"streams":1,"pushes":1,"rejected":{}}]}"#;
        let rows = parse_usage(body).expect("rows");
        assert_eq!(rows[0].cluster, "a");
        assert_eq!(rows[0].loki_bytes, 12);
        assert!(parse_usage(br#"{"rows":[{"day":"22-11-2026","lines":1}]}"#).is_err());
    }
}
