//! Named pipelines for `bench e2e --pipeline NAME`: the built-in CLI path and Alloy files
//! (`bench/pipelines/*.alloy`), each with the line bodies it can parse, so that one run
//! compares the cost of a config against the agent's own floor.

use std::io::Write;

use crate::data::TsFormatter;

/// What a generated line carries after the CRI header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// `level=info caller=... msg="..." ...` (logfmt).
    Logfmt,
    /// `{"ts":"...","level":"info",...}` (one JSON object).
    Json,
    /// Per pod, as real services write: even pods JSON, odd pods logfmt.
    Mixed,
}

/// One named pipeline.
#[derive(Debug)]
pub struct Pipeline {
    pub name: &'static str,
    /// The Alloy file; `None` runs the agent's CLI mode.
    pub config: Option<&'static str>,
    pub body: Body,
    /// Pods whose index is a multiple of this write a second container, `worker`, instead
    /// of `app` (the `k8s` pipeline's multiline stage selects it); 0 = none.
    pub worker_every: usize,
    pub about: &'static str,
}

/// Every pipeline, `cli` first (the reference the others are compared with).
pub const PIPELINES: &[Pipeline] = &[
    Pipeline {
        name: "cli",
        config: None,
        body: Body::Logfmt,
        worker_every: 0,
        about: "no config: the agent's built-in CRI path",
    },
    Pipeline {
        name: "labels",
        config: Some(include_str!("../pipelines/labels.alloy")),
        body: Body::Logfmt,
        worker_every: 0,
        about: "stage.cri, stage.logfmt (one key), stage.labels",
    },
    Pipeline {
        name: "json",
        config: Some(include_str!("../pipelines/json.alloy")),
        body: Body::Json,
        worker_every: 0,
        about: "stage.cri, stage.json (three keys), stage.labels, stage.timestamp",
    },
    Pipeline {
        name: "k8s",
        config: Some(include_str!("../pipelines/k8s.alloy")),
        body: Body::Mixed,
        worker_every: 10,
        about: "k8s-monitoring pod-logs shape: runtime match, json/logfmt by pod, drop, multiline, structured metadata, labels",
    },
    Pipeline {
        name: "heavy",
        config: Some(include_str!("../pipelines/heavy.alloy")),
        body: Body::Logfmt,
        worker_every: 0,
        about: "stage.cri, stage.regex, stage.template, stage.replace",
    },
];

/// The pipeline called `name`.
pub fn by_name(name: &str) -> Option<&'static Pipeline> {
    PIPELINES.iter().find(|p| p.name == name)
}

/// Every pipeline name, for error messages.
pub fn names() -> Vec<&'static str> {
    PIPELINES.iter().map(|p| p.name).collect()
}

impl Pipeline {
    /// The container directory of pod `p`.
    pub fn container(&self, p: usize) -> &'static str {
        if self.worker_every > 0 && p.is_multiple_of(self.worker_every) {
            "worker"
        } else {
            "app"
        }
    }

    /// Whether pod `p` writes JSON bodies.
    pub fn json_body(&self, p: usize) -> bool {
        match self.body {
            Body::Logfmt => false,
            Body::Json => true,
            Body::Mixed => p.is_multiple_of(2),
        }
    }
}

const LEVELS: [&str; 5] = ["info", "info", "info", "warn", "error"];
const FILLER: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// Appends one line body of about `room` bytes for `seq`, starting with the e2e marker
/// (`marker` = `run=... src=... seq=N`) so the completeness check finds it in either format.
/// `ts_ns` is the CRI time; JSON bodies repeat it as `ts` (what `stage.timestamp` reads).
pub fn write_body(
    out: &mut Vec<u8>,
    json: bool,
    marker: &str,
    seq: u64,
    ts_ns: i64,
    ts: &mut TsFormatter,
    room: usize,
) {
    let start = out.len();
    let level = LEVELS[(seq % LEVELS.len() as u64) as usize];
    if json {
        out.extend_from_slice(b"{\"ts\":\"");
        ts.write(out, ts_ns);
        let _ = write!(
            out,
            "\",\"level\":\"{level}\",\"caller\":\"handler.go:{}\",\"msg\":\"{marker} request served\",\"path\":\"/api/v1/items/{}\",\"pad\":\"",
            seq % 997,
            seq % 7919
        );
        pad(out, start, room.saturating_sub(2), seq);
        out.extend_from_slice(b"\"}");
    } else {
        let _ = write!(
            out,
            "{marker} level={level} caller=handler.go:{} msg=\"request served\" path=/api/v1/items/{} pad=",
            seq % 997,
            seq % 7919
        );
        pad(out, start, room, seq);
    }
}

/// Fills `out` with filler until the body started at `start` is `room` bytes long.
fn pad(out: &mut Vec<u8>, start: usize, room: usize, seq: u64) {
    let mut i = seq as usize;
    // At least four filler bytes, so `stage.replace`'s `pad=(\w{4})` always matches.
    let want = room.max(out.len() - start + 4);
    while out.len() - start < want {
        out.push(FILLER[i % FILLER.len()]);
        i += 7;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_config_names_a_known_pipeline_and_cli_comes_first() {
        assert_eq!(PIPELINES[0].name, "cli");
        assert!(PIPELINES[0].config.is_none());
        for p in &PIPELINES[1..] {
            assert!(p.config.is_some(), "{} has no config", p.name);
        }
        assert!(by_name("k8s").is_some());
        assert!(by_name("nope").is_none());
    }

    #[test]
    fn bodies_keep_the_marker_and_parse_in_their_format() {
        let mut ts = TsFormatter::default();
        for json in [false, true] {
            let mut out = Vec::new();
            write_body(
                &mut out,
                json,
                "run=bench src=bench/bench/pod-0001/app/stdout seq=42",
                42,
                1_700_000_000_000_000_000,
                &mut ts,
                250,
            );
            let line = String::from_utf8(out).expect("utf-8");
            assert_eq!(line.len(), 250, "{line}");
            let m = e2e::marker::parse(&line).expect("marker");
            assert_eq!(m.seq, 42);
            if json {
                let v: serde_json::Value = serde_json::from_str(&line).expect("json");
                assert_eq!(v["level"], "info");
                assert_eq!(v["ts"], "2023-11-14T22:13:20.000000000Z");
            } else {
                assert!(line.contains(" level=info caller=handler.go:42 "));
            }
        }
    }

    #[test]
    fn k8s_pipeline_mixes_formats_and_has_a_worker_container() {
        let p = by_name("k8s").expect("k8s");
        assert!(p.json_body(0) && !p.json_body(1));
        assert_eq!(p.container(10), "worker");
        assert_eq!(p.container(11), "app");
    }
}
