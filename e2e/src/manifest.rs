//! The generator's manifest: what was written, per source, as JSON. The checker's expectations.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Error;

/// One simulated cluster: its name (the `cluster` external label) and its Loki tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInfo {
    pub name: String,
    pub tenant: String,
}

/// What the generator wrote for one source (cluster, namespace, pod, container, stream).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRecord {
    /// `cluster/namespace/pod/container/stream`, as in the marker.
    pub id: String,
    pub cluster: String,
    pub tenant: String,
    pub namespace: String,
    pub pod: String,
    pub pod_uid: String,
    pub container: String,
    pub stream: String,
    /// Entries written (logical entries; a partial-split long line counts once).
    pub count: u64,
    /// Sequence numbers are contiguous from `first_seq` to `last_seq` inclusive.
    pub first_seq: u64,
    pub last_seq: u64,
    /// CRI timestamps (write time) of the first and last entry, ns since the epoch.
    pub first_ts_ns: i64,
    pub last_ts_ns: i64,
    /// Message bytes written (without CRI framing).
    pub bytes: u64,
    /// The pod was deleted by churn (its directory removed) before the end of the run.
    pub pod_deleted: bool,
}

/// Run-wide totals.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub entries: u64,
    pub cri_lines: u64,
    pub message_bytes: u64,
    pub file_bytes: u64,
    pub rotations: u64,
    pub truncations: u64,
    pub pods_created: u64,
    pub pods_deleted: u64,
}

/// The whole manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub run_id: String,
    pub seed: u64,
    pub started_ns: i64,
    pub finished_ns: i64,
    pub clusters: Vec<ClusterInfo>,
    pub totals: Totals,
    pub sources: Vec<SourceRecord>,
}

impl Manifest {
    pub const VERSION: u32 = 1;

    /// The tenant a cluster's data belongs to.
    pub fn tenant_of(&self, cluster: &str) -> Option<&str> {
        self.clusters
            .iter()
            .find(|c| c.name == cluster)
            .map(|c| c.tenant.as_str())
    }

    /// Distinct tenants, in cluster order.
    pub fn tenants(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for c in &self.clusters {
            if !out.contains(&c.tenant) {
                out.push(c.tenant.clone());
            }
        }
        out
    }

    /// Writes the manifest atomically (temp file, then rename) so a reader never sees half of it.
    pub fn write(&self, path: &Path) -> Result<(), Error> {
        let tmp = path.with_extension("json.tmp");
        let body = serde_json::to_vec_pretty(self).map_err(|source| Error::Manifest {
            path: path.to_owned(),
            source,
        })?;
        std::fs::write(&tmp, body).map_err(|e| Error::io("write", &tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io("rename", path, e))
    }

    /// Reads a manifest written by [`Manifest::write`].
    pub fn read(path: &Path) -> Result<Manifest, Error> {
        let body = std::fs::read(path).map_err(|e| Error::io("read", path, e))?;
        serde_json::from_slice(&body).map_err(|source| Error::Manifest {
            path: path.to_owned(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_read_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("manifest.json");
        let m = Manifest {
            version: Manifest::VERSION,
            run_id: "r1".into(),
            seed: 9,
            started_ns: 1,
            finished_ns: 2,
            clusters: vec![ClusterInfo {
                name: "ops".into(),
                tenant: "t-ops".into(),
            }],
            totals: Totals {
                entries: 3,
                ..Totals::default()
            },
            sources: vec![SourceRecord {
                id: "ops/n/p/c/stdout".into(),
                cluster: "ops".into(),
                tenant: "t-ops".into(),
                namespace: "n".into(),
                pod: "p".into(),
                pod_uid: "u".into(),
                container: "c".into(),
                stream: "stdout".into(),
                count: 3,
                first_seq: 1,
                last_seq: 3,
                first_ts_ns: 10,
                last_ts_ns: 30,
                bytes: 99,
                pod_deleted: false,
            }],
        };
        m.write(&path).expect("write");
        assert_eq!(Manifest::read(&path).expect("read"), m);
        assert_eq!(m.tenant_of("ops"), Some("t-ops"));
        assert!(!dir.path().join("manifest.json.tmp").exists());
    }

    #[test]
    fn read_reports_the_path_of_a_bad_manifest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.json");
        std::fs::write(&path, b"{").expect("write");
        let err = Manifest::read(&path).expect_err("must fail");
        assert!(err.to_string().contains("bad.json"), "{err}");
    }
}
