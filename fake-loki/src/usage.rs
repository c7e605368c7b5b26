//! The usage ledger: per tenant, per value of a grouping label (`cluster` by default), per
//! UTC day of the push: lines and bytes stored (raw, and as Loki counts them: line plus
//! structured metadata), distinct streams, push requests, and rejected entries by
//! Loki's discard reason. Served at `/fake-loki/api/v1/usage` and, with `--data-dir`,
//! snapshotted to `usage.json` (atomically, at most once a second and at shutdown).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::Error;

/// One (day, tenant, group) cell.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    pub lines: u64,
    pub bytes: u64,
    pub loki_bytes: u64,
    pub pushes: u64,
    pub streams: BTreeSet<String>,
    pub rejected: BTreeMap<String, u64>,
    /// Entries and line bytes deleted by retention (on the day of the sweep).
    #[serde(default)]
    pub expired_lines: u64,
    #[serde(default)]
    pub expired_bytes: u64,
}

/// What one push contributed, per stream label string ("" when the labels did not
/// parse); the ledger maps streams to groups when it applies the delta.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delta {
    pub cells: BTreeMap<String, Cell>,
}

impl Delta {
    /// Entries of `stream` were stored.
    pub fn stored(&mut self, stream: &str, lines: u64, bytes: u64, loki_bytes: u64) {
        let c = self.cells.entry(stream.to_string()).or_default();
        c.lines += lines;
        c.bytes += bytes;
        c.loki_bytes += loki_bytes;
        c.streams.insert(stream.to_string());
    }

    /// Entries of `stream` were rejected for `reason`.
    pub fn rejected(&mut self, stream: &str, reason: &str, n: u64) {
        if n == 0 {
            return;
        }
        *self
            .cells
            .entry(stream.to_string())
            .or_default()
            .rejected
            .entry(reason.to_string())
            .or_insert(0) += n;
    }
}

/// Ledger key: (UTC day `YYYY-MM-DD`, tenant, group value).
type Key = (String, String, String);

#[derive(Serialize, Deserialize, Default)]
struct Snapshot {
    label: String,
    cells: Vec<(Key, Cell)>,
}

/// The ledger.
pub struct Ledger {
    label: String,
    cells: BTreeMap<Key, Cell>,
    path: Option<PathBuf>,
    last_save: Option<Instant>,
    dirty: bool,
}

/// Dimensions a usage query can group by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    Tenant,
    Group,
}

/// UTC day of `ns`.
pub fn day_of(ns: i64) -> String {
    chrono::DateTime::from_timestamp(ns.div_euclid(1_000_000_000), 0)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

impl Ledger {
    /// A ledger grouping by `label`, persisted under `data_dir` when given.
    pub fn open(label: &str, data_dir: Option<&Path>) -> Result<Ledger, Error> {
        let path = data_dir.map(|d| d.join("usage.json"));
        let mut cells = BTreeMap::new();
        if let Some(p) = &path {
            match std::fs::read(p) {
                Ok(bytes) => {
                    let snap: Snapshot = serde_json::from_slice(&bytes)
                        .map_err(|e| Error::DataDir(format!("{}: {e}", p.display())))?;
                    cells = snap.cells.into_iter().collect();
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::DataDir(format!("{}: {e}", p.display()))),
            }
        }
        Ok(Ledger {
            label: label.to_string(),
            cells,
            path,
            last_save: None,
            dirty: false,
        })
    }

    /// The grouping label's name.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Applies one push's delta, counting the push once per group it stored data in.
    pub fn apply(&mut self, now_ns: i64, tenant: &str, delta: Delta) {
        let day = day_of(now_ns);
        let mut by_group: BTreeMap<String, Cell> = BTreeMap::new();
        for (stream, d) in delta.cells {
            let group = loki_wire::LabelSet::parse(&stream)
                .ok()
                .and_then(|l| l.get(&self.label).map(str::to_string))
                .unwrap_or_default();
            let g = by_group.entry(group).or_default();
            g.lines += d.lines;
            g.bytes += d.bytes;
            g.loki_bytes += d.loki_bytes;
            g.streams.extend(d.streams);
            for (r, n) in d.rejected {
                *g.rejected.entry(r).or_insert(0) += n;
            }
        }
        for (group, d) in by_group {
            let c = self
                .cells
                .entry((day.clone(), tenant.to_string(), group))
                .or_default();
            c.lines += d.lines;
            c.bytes += d.bytes;
            c.loki_bytes += d.loki_bytes;
            if d.lines > 0 {
                c.pushes += 1;
            }
            c.streams.extend(d.streams);
            for (r, n) in d.rejected {
                *c.rejected.entry(r).or_insert(0) += n;
            }
            self.dirty = true;
        }
    }

    /// Records that retention deleted `lines` entries (`bytes` line bytes) of `stream`.
    pub fn expired(&mut self, now_ns: i64, tenant: &str, stream: &str, lines: u64, bytes: u64) {
        let group = loki_wire::LabelSet::parse(stream)
            .ok()
            .and_then(|l| l.get(&self.label).map(str::to_string))
            .unwrap_or_default();
        let c = self
            .cells
            .entry((day_of(now_ns), tenant.to_string(), group))
            .or_default();
        c.expired_lines += lines;
        c.expired_bytes += bytes;
        self.dirty = true;
    }

    /// Saves when something changed and the last save is older than a second.
    pub fn maybe_save(&mut self) -> Result<(), Error> {
        let due = self
            .last_save
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if self.dirty && due {
            self.save()?;
        }
        Ok(())
    }

    /// Writes the snapshot (temp file + fsync + rename).
    pub fn save(&mut self) -> Result<(), Error> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let snap = Snapshot {
            label: self.label.clone(),
            cells: self
                .cells
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        let bytes = serde_json::to_vec(&snap).map_err(|e| Error::DataDir(e.to_string()))?;
        let tmp = path.with_extension("json.tmp");
        let io = |e: std::io::Error| Error::DataDir(format!("{}: {e}", path.display()));
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(io)?;
            f.write_all(&bytes).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, path).map_err(io)?;
        self.last_save = Some(Instant::now());
        self.dirty = false;
        Ok(())
    }

    /// Rows for days in `[from, to]` (inclusive, `YYYY-MM-DD`), grouped by `by` (the
    /// day is always a dimension), as the usage endpoint's JSON.
    pub fn query(&self, from: Option<&str>, to: Option<&str>, by: &[By]) -> serde_json::Value {
        let mut rows: BTreeMap<(String, Option<String>, Option<String>), Cell> = BTreeMap::new();
        for ((day, tenant, group), c) in &self.cells {
            if from.is_some_and(|f| day.as_str() < f) || to.is_some_and(|t| day.as_str() > t) {
                continue;
            }
            let key = (
                day.clone(),
                by.contains(&By::Tenant).then(|| tenant.clone()),
                by.contains(&By::Group).then(|| group.clone()),
            );
            let r = rows.entry(key).or_default();
            r.lines += c.lines;
            r.bytes += c.bytes;
            r.loki_bytes += c.loki_bytes;
            r.pushes += c.pushes;
            // Streams are per tenant; keep them distinct across tenants when merging.
            r.streams
                .extend(c.streams.iter().map(|s| format!("{tenant}\u{0}{s}")));
            for (reason, n) in &c.rejected {
                *r.rejected.entry(reason.clone()).or_insert(0) += n;
            }
            r.expired_lines += c.expired_lines;
            r.expired_bytes += c.expired_bytes;
        }
        let rows: Vec<serde_json::Value> = rows
            .into_iter()
            .map(|((day, tenant, group), c)| {
                let mut row = serde_json::Map::new();
                row.insert("day".into(), day.into());
                if let Some(t) = tenant {
                    row.insert("tenant".into(), t.into());
                }
                if let Some(g) = group {
                    row.insert(self.label.clone(), g.into());
                }
                row.insert("lines".into(), c.lines.into());
                row.insert("bytes".into(), c.bytes.into());
                row.insert("loki_bytes".into(), c.loki_bytes.into());
                row.insert("streams".into(), (c.streams.len() as u64).into());
                row.insert("pushes".into(), c.pushes.into());
                row.insert(
                    "rejected".into(),
                    serde_json::to_value(&c.rejected).unwrap_or_default(),
                );
                row.insert("expired_lines".into(), c.expired_lines.into());
                row.insert("expired_bytes".into(), c.expired_bytes.into());
                serde_json::Value::Object(row)
            })
            .collect();
        let by_names: Vec<&str> = by
            .iter()
            .map(|b| match b {
                By::Tenant => "tenant",
                By::Group => self.label.as_str(),
            })
            .collect();
        serde_json::json!({"label": self.label, "by": by_names, "rows": rows})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000_000_000;

    #[test]
    fn groups_days_tenants_and_clusters() {
        let mut l = Ledger::open("cluster", None).unwrap();
        let mut d = Delta::default();
        d.stored("{a=\"1\", cluster=\"ops\"}", 2, 20, 25);
        d.stored("{a=\"2\", cluster=\"dev\"}", 1, 5, 5);
        d.rejected("{a=\"3\", cluster=\"dev\"}", "line_too_long", 3);
        l.apply(0, "t1", d);
        let mut d = Delta::default();
        d.stored("{a=\"1\", cluster=\"ops\"}", 1, 10, 10);
        l.apply(DAY, "t1", d);
        let v = l.query(None, None, &[By::Tenant, By::Group]);
        let rows = v["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0]["day"], "1970-01-01");
        assert_eq!(rows[0]["cluster"], "dev");
        assert_eq!(rows[0]["rejected"]["line_too_long"], 3);
        assert_eq!(rows[1]["lines"], 2);
        assert_eq!(rows[1]["loki_bytes"], 25);
        assert_eq!(rows[1]["pushes"], 1);
        let by_day = l.query(Some("1970-01-02"), None, &[]);
        assert_eq!(by_day["rows"].as_array().unwrap().len(), 1);
        assert_eq!(by_day["rows"][0]["lines"], 1);
        assert!(by_day["rows"][0].get("tenant").is_none());
    }

    #[test]
    fn survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Ledger::open("cluster", Some(dir.path())).unwrap();
        let mut d = Delta::default();
        d.stored("{cluster=\"ops\"}", 4, 40, 40);
        l.apply(0, "t", d);
        l.save().unwrap();
        let back = Ledger::open("cluster", Some(dir.path())).unwrap();
        assert_eq!(
            back.query(None, None, &[By::Tenant]),
            l.query(None, None, &[By::Tenant])
        );
    }
}
