//! The in-cluster generator (`e2e emit`) and the manifest assembler (`e2e manifest`) of the kind e2e.
//!
//! A generator pod writes `run=<id> src=<cluster>/<ns>/<pod>/<container>/stdout seq=<i> ...` lines
//! to stdout (the container runtime turns them into the CRI file the agent tails), then leaves its
//! [`SourceRecord`] as one JSON line in its termination message. `kubectl` collects those messages
//! into a JSON-lines file; [`assemble`] turns it into the [`Manifest`] `e2e check` reads.

use std::collections::BTreeSet;
use std::io::Write;
use std::time::{Duration, Instant};

use crate::manifest::{ClusterInfo, Manifest, SourceRecord, Totals};
use crate::marker::{Marker, SourceId};
use crate::Error;

/// The kubelet truncates a termination message at 4096 bytes; the record must fit whole.
pub const MAX_RECORD_BYTES: usize = 4096;

/// Who this generator is, from the downward API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodIdentity {
    pub namespace: String,
    pub pod: String,
    pub pod_uid: String,
    pub container: String,
}

impl PodIdentity {
    /// Reads `POD_NAMESPACE`, `POD_NAME`, `POD_UID`, `CONTAINER_NAME` through `get` (the process
    /// environment in the binary, a map in tests). All four are required: a guessed value would
    /// produce a manifest that can never match what the agent labels.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<PodIdentity, Error> {
        let var = |k: &str| {
            get(k)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| Error::Settings(format!("environment variable {k} is not set")))
        };
        let id = PodIdentity {
            namespace: var("POD_NAMESPACE")?,
            pod: var("POD_NAME")?,
            pod_uid: var("POD_UID")?,
            container: var("CONTAINER_NAME")?,
        };
        // The marker parser stops at the first byte outside [A-Za-z0-9-/_.]; '/' would also
        // break the source id's structure.
        for (k, v) in [
            ("POD_NAMESPACE", &id.namespace),
            ("POD_NAME", &id.pod),
            ("CONTAINER_NAME", &id.container),
        ] {
            if v.bytes()
                .any(|b| !(b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_'))
            {
                return Err(Error::Settings(format!(
                    "{k}={v:?} is not a Kubernetes name"
                )));
            }
        }
        Ok(id)
    }
}

/// Settings of one `e2e emit`.
#[derive(Debug, Clone)]
pub struct EmitConfig {
    pub run_id: String,
    pub cluster: String,
    pub count: u64,
    /// Lines per second; `None` writes flat out.
    pub rate_per_sec: Option<f64>,
}

/// The line for sequence number `seq`: the marker first (as the checker expects of plain lines),
/// then a little logfmt so the line looks like an application's.
pub fn line(run_id: &str, src: &str, seq: u64) -> String {
    let m = Marker {
        run: run_id,
        src,
        seq,
    };
    format!("{m} level=info msg=\"e2e generator line\" component=emit")
}

fn now_ns() -> i64 {
    crate::gen::now_ns()
}

/// Writes `count` lines to `out` (flushed one by one, so the runtime timestamps each as it is
/// written) at the configured rate, and returns the record describing them.
pub fn emit(
    cfg: &EmitConfig,
    who: &PodIdentity,
    out: &mut impl Write,
) -> Result<SourceRecord, Error> {
    let src = SourceId {
        cluster: cfg.cluster.clone(),
        namespace: who.namespace.clone(),
        pod: who.pod.clone(),
        container: who.container.clone(),
        stream: "stdout".into(),
    };
    let id = src.id();
    let mut rec = SourceRecord {
        id: id.clone(),
        cluster: src.cluster,
        // The tenant is the collector's business; `e2e manifest` fills it from --cluster.
        tenant: String::new(),
        namespace: src.namespace,
        pod: src.pod,
        pod_uid: who.pod_uid.clone(),
        container: src.container,
        stream: src.stream,
        count: 0,
        first_seq: 1,
        last_seq: 0,
        first_ts_ns: now_ns(),
        last_ts_ns: now_ns(),
        bytes: 0,
        pod_deleted: false,
    };
    let interval = match cfg.rate_per_sec {
        Some(r) if r.is_finite() && r > 0.0 => Some(Duration::from_secs_f64(1.0 / r)),
        Some(r) => return Err(Error::Settings(format!("rate must be > 0, got {r}"))),
        None => None,
    };
    let start = Instant::now();
    let stdout_err = |e| Error::io("write", "stdout", e);
    for seq in 1..=cfg.count {
        if let Some(iv) = interval {
            // Pace against the start (not the previous line) so the average rate holds even when
            // a write or a wake-up is late.
            let due = start + iv.mul_f64((seq - 1) as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        let l = line(&cfg.run_id, &id, seq);
        let ts = now_ns();
        out.write_all(l.as_bytes()).map_err(stdout_err)?;
        out.write_all(b"\n").map_err(stdout_err)?;
        out.flush().map_err(stdout_err)?;
        if seq == 1 {
            rec.first_ts_ns = ts;
        }
        rec.last_ts_ns = ts;
        rec.last_seq = seq;
        rec.count += 1;
        // The newline is the runtime's framing, not part of the entry Loki stores.
        rec.bytes += l.len() as u64;
    }
    Ok(rec)
}

/// The record as the one compact JSON line a termination message can carry.
pub fn record_line(rec: &SourceRecord) -> Result<String, Error> {
    let s = serde_json::to_string(rec).map_err(|e| Error::Settings(format!("record: {e}")))?;
    if s.len() >= MAX_RECORD_BYTES {
        return Err(Error::Settings(format!(
            "record is {} bytes; a termination message holds {MAX_RECORD_BYTES}",
            s.len()
        )));
    }
    Ok(s)
}

/// Parses JSON-lines records (blank lines, as `kubectl`'s jsonpath leaves, are skipped), fills each
/// record's tenant from its cluster, and builds the manifest. A record of an unknown cluster or a
/// source listed twice is an error: either would make the verdict wrong, not just noisy.
pub fn assemble(run_id: &str, clusters: &[ClusterInfo], records: &str) -> Result<Manifest, Error> {
    let mut sources = Vec::new();
    let mut ids = BTreeSet::new();
    for (i, l) in records.lines().enumerate() {
        let l = l.trim();
        if l.is_empty() {
            continue;
        }
        let mut rec: SourceRecord = serde_json::from_str(l)
            .map_err(|e| Error::Settings(format!("records line {}: {e}", i + 1)))?;
        let tenant = clusters
            .iter()
            .find(|c| c.name == rec.cluster)
            .map(|c| c.tenant.clone())
            .ok_or_else(|| {
                Error::Settings(format!(
                    "records line {}: cluster {:?} is not given with --cluster",
                    i + 1,
                    rec.cluster
                ))
            })?;
        if !ids.insert(rec.id.clone()) {
            return Err(Error::Settings(format!(
                "records line {}: source {} appears twice",
                i + 1,
                rec.id
            )));
        }
        rec.tenant = tenant;
        sources.push(rec);
    }
    let totals = Totals {
        entries: sources.iter().map(|s| s.count).sum(),
        // Generator lines are far below the runtime's 16 KiB chunk: one CRI line each.
        cri_lines: sources.iter().map(|s| s.count).sum(),
        message_bytes: sources.iter().map(|s| s.bytes).sum(),
        ..Totals::default()
    };
    Ok(Manifest {
        version: Manifest::VERSION,
        run_id: run_id.to_owned(),
        seed: 0,
        started_ns: sources.iter().map(|s| s.first_ts_ns).min().unwrap_or(0),
        finished_ns: sources.iter().map(|s| s.last_ts_ns).max().unwrap_or(0),
        clusters: clusters.to_vec(),
        totals,
        sources,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn who() -> PodIdentity {
        PodIdentity {
            namespace: "e2e-gen-a".into(),
            pod: "gen-node-1-x7k2p".into(),
            pod_uid: "0b7f5c1e-1d2a-4c3b-9e8f-123456789abc".into(),
            container: "gen".into(),
        }
    }

    #[test]
    fn identity_needs_all_four_variables_and_kubernetes_names() {
        let mut env: HashMap<&str, &str> = HashMap::from([
            ("POD_NAMESPACE", "ns"),
            ("POD_NAME", "p"),
            ("POD_UID", "u"),
            ("CONTAINER_NAME", "gen"),
        ]);
        fn read(env: &HashMap<&str, &str>) -> Result<PodIdentity, Error> {
            PodIdentity::from_env(|k| env.get(k).map(|v| v.to_string()))
        }
        assert_eq!(read(&env).expect("ok").container, "gen");
        env.insert("POD_NAME", "a/b");
        assert!(read(&env).is_err());
        env.remove("POD_NAME");
        let err = read(&env).expect_err("missing");
        assert!(err.to_string().contains("POD_NAME"), "{err}");
    }

    #[test]
    fn emitted_lines_parse_back_and_the_record_counts_them() {
        let cfg = EmitConfig {
            run_id: "r9".into(),
            cluster: "kind".into(),
            count: 5,
            rate_per_sec: None,
        };
        let mut out = Vec::new();
        let rec = emit(&cfg, &who(), &mut out).expect("emit");
        let text = String::from_utf8(out).expect("utf8");
        let seqs: Vec<u64> = text
            .lines()
            .map(|l| {
                let m = crate::marker::parse(l).expect("marker");
                assert_eq!((m.run, m.src), ("r9", rec.id.as_str()));
                m.seq
            })
            .collect();
        assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
        assert_eq!(rec.id, "kind/e2e-gen-a/gen-node-1-x7k2p/gen/stdout");
        assert_eq!((rec.count, rec.first_seq, rec.last_seq), (5, 1, 5));
        assert_eq!(rec.bytes, text.len() as u64 - 5);
        assert!(rec.first_ts_ns <= rec.last_ts_ns);
        assert!(record_line(&rec).expect("fits").len() < MAX_RECORD_BYTES);
    }

    #[test]
    fn assemble_sets_tenants_totals_and_rejects_unknown_clusters_and_repeats() {
        let cfg = EmitConfig {
            run_id: "r9".into(),
            cluster: "kind".into(),
            count: 3,
            rate_per_sec: None,
        };
        let a = emit(&cfg, &who(), &mut Vec::new()).expect("a");
        let mut w = who();
        w.pod = "gen-node-2".into();
        let b = emit(&cfg, &w, &mut Vec::new()).expect("b");
        let records = format!(
            "{}\n\n{}\n",
            record_line(&a).expect("a"),
            record_line(&b).expect("b")
        );
        let clusters = [ClusterInfo {
            name: "kind".into(),
            tenant: "e2e".into(),
        }];
        let m = assemble("r9", &clusters, &records).expect("assemble");
        assert_eq!(m.totals.entries, 6);
        assert_eq!(m.totals.message_bytes, a.bytes + b.bytes);
        assert!(m.sources.iter().all(|s| s.tenant == "e2e"));
        assert_eq!(m.started_ns, a.first_ts_ns.min(b.first_ts_ns));
        let other = [ClusterInfo {
            name: "other".into(),
            tenant: "e2e".into(),
        }];
        assert!(assemble("r9", &other, &records).is_err());
        let twice = format!("{0}\n{0}\n", record_line(&a).expect("a"));
        let err = assemble("r9", &clusters, &twice).expect_err("dup");
        assert!(err.to_string().contains("twice"), "{err}");
        assert!(assemble("r9", &clusters, "{not json").is_err());
    }
}
