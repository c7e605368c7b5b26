//! The load generator: writes kubelet-layout CRI log files for simulated clusters.
//!
//! Layout: `<pods_root>/<namespace>_<pod>_<uid>/<container>/0.log`, one pods root per simulated
//! cluster (node). Each container writes both streams into its `0.log`, one `write` per event so
//! a reader never sees half an event unless the runtime would have split it too.
//!
//! Rotation follows kubelet's `container_log_manager.go`: when `0.log` reaches the size limit,
//! remove the oldest rotated files so that at most `keep_files - 2` remain, gzip every rotated file
//! that is not compressed yet (`X` → `X.tmp` → `X.gz`), then rename `0.log` → `0.log.<YYYYMMDD-hhmmss>`
//! and create a new `0.log`. The newest rotated file therefore stays uncompressed, which is what an
//! agent that finishes unfinished rotated files relies on. Two rotations in one second get `.1`, `.2`
//! suffixes. Copytruncate mode copies `0.log` to the rotated name and truncates it in place.
//!
//! Pod churn: every `churn_every` one live pod stops writing and a replacement (new name, new uid)
//! starts in the same namespace; the stopped pod's directory is removed `churn_grace` later, as
//! kubelet does after the pod is gone (in reality minutes; here short, so the agent must have read
//! it by then). Content and choices are deterministic from the seed; timestamps are wall-clock.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::content::{self, ContentMix};
use crate::cri;
use crate::manifest::{ClusterInfo, Manifest, SourceRecord, Totals};
use crate::marker::SourceId;
use crate::Error;

/// One simulated cluster (one node): its name, tenant and pods root.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub name: String,
    pub tenant: String,
    pub pods_root: PathBuf,
}

/// How `0.log` is rotated when it reaches `max_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    None,
    /// kubelet's rename + create; `keep_files` counts `0.log` too (kubelet's `containerLogMaxFiles`).
    Rename {
        max_bytes: u64,
        keep_files: usize,
    },
    /// Copy to the rotated name, then truncate `0.log` in place.
    CopyTruncate {
        max_bytes: u64,
        keep_files: usize,
    },
}

/// Generator settings.
#[derive(Debug, Clone)]
pub struct GenConfig {
    pub run_id: String,
    pub seed: u64,
    pub clusters: Vec<ClusterSpec>,
    pub namespaces: usize,
    pub pods_per_namespace: usize,
    pub containers_per_pod: usize,
    /// Target entries per second over all containers; `None` writes flat out.
    pub rate_per_sec: Option<f64>,
    /// Stop after this long...
    pub duration: Option<Duration>,
    /// ...or after this many entries, whichever comes first.
    pub max_entries: Option<u64>,
    pub rotation: Rotation,
    pub churn_every: Option<Duration>,
    pub churn_grace: Duration,
    /// CRI chunk size: longer messages are written as `P` chunks then an `F` chunk.
    pub chunk_bytes: usize,
    pub mix: ContentMix,
}

impl GenConfig {
    /// A small default shape for the given clusters: 2 namespaces × 2 pods × 2 containers each.
    pub fn new(run_id: impl Into<String>, seed: u64, clusters: Vec<ClusterSpec>) -> Self {
        GenConfig {
            run_id: run_id.into(),
            seed,
            clusters,
            namespaces: 2,
            pods_per_namespace: 2,
            containers_per_pod: 2,
            rate_per_sec: Some(500.0),
            duration: Some(Duration::from_secs(5)),
            max_entries: None,
            rotation: Rotation::None,
            churn_every: None,
            churn_grace: Duration::from_secs(2),
            chunk_bytes: cri::DEFAULT_CHUNK_BYTES,
            mix: ContentMix::default(),
        }
    }

    fn validate(&self) -> Result<(), Error> {
        let bad = |m: &str| Err(Error::Settings(m.to_owned()));
        if self.clusters.is_empty() {
            return bad("at least one cluster is needed");
        }
        if self.namespaces == 0 || self.pods_per_namespace == 0 || self.containers_per_pod == 0 {
            return bad("namespaces, pods and containers must be at least 1");
        }
        if self.duration.is_none() && self.max_entries.is_none() {
            return bad("set a duration or a line count, or the run never ends");
        }
        if let Some(r) = self.rate_per_sec {
            if !(r.is_finite() && r > 0.0) {
                return bad("rate must be a positive number (omit it to write flat out)");
            }
        }
        if !is_id(&self.run_id) {
            return bad("run id must be [a-z0-9-]+");
        }
        for c in &self.clusters {
            if !is_id(&c.name) {
                return bad("cluster names must be [a-z0-9-]+");
            }
        }
        match self.rotation {
            Rotation::Rename {
                max_bytes,
                keep_files,
            }
            | Rotation::CopyTruncate {
                max_bytes,
                keep_files,
            } if max_bytes == 0 || keep_files < 2 => {
                bad("rotation needs max_bytes > 0 and keep_files >= 2 (kubelet's minimum)")
            }
            _ => Ok(()),
        }
    }
}

fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Wall clock in ns since the epoch.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

const NAMESPACES: &[&str] = &["shop", "payments", "search", "platform", "data", "edge"];
const CONTAINERS: &[&str] = &["app", "sidecar", "proxy", "worker"];
const SERVICES: &[&str] = &[
    "checkout",
    "payments",
    "inventory",
    "auth",
    "search",
    "frontend",
];

struct Container {
    name: String,
    service_hint: usize,
    dir: PathBuf,
    file: Option<File>,
    size: u64,
    rotated: VecDeque<PathBuf>,
    last_stamp: String,
    stamp_dup: u32,
}

struct Pod {
    cluster: usize,
    namespace: String,
    name: String,
    uid: String,
    dir: PathBuf,
    containers: Vec<Container>,
    delete_at: Option<Instant>,
    deleted: bool,
}

/// The running generator. Use [`run`] unless you need to drive it step by step.
pub struct Generator {
    cfg: GenConfig,
    rng: ChaCha8Rng,
    pods: Vec<Pod>,
    live: Vec<usize>,
    sources: BTreeMap<String, SourceRecord>,
    totals: Totals,
    last_ts: i64,
    started_ns: i64,
    buf: Vec<u8>,
}

impl Generator {
    /// Validates the settings and creates the initial pods (directories and empty `0.log` files).
    pub fn new(cfg: GenConfig) -> Result<Generator, Error> {
        cfg.validate()?;
        let rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let mut g = Generator {
            cfg,
            rng,
            pods: Vec::new(),
            live: Vec::new(),
            sources: BTreeMap::new(),
            totals: Totals::default(),
            last_ts: 0,
            started_ns: now_ns(),
            buf: Vec::with_capacity(64 * 1024),
        };
        for cluster in 0..g.cfg.clusters.len() {
            let root = &g.cfg.clusters[cluster].pods_root;
            std::fs::create_dir_all(root).map_err(|e| Error::io("create", root, e))?;
            for ns in 0..g.cfg.namespaces {
                let namespace = ns_name(ns);
                for p in 0..g.cfg.pods_per_namespace {
                    let service = (ns * 7 + p) % SERVICES.len();
                    g.create_pod(cluster, &namespace, service)?;
                }
            }
        }
        Ok(g)
    }

    fn create_pod(&mut self, cluster: usize, namespace: &str, service: usize) -> Result<(), Error> {
        let suffix: String = (0..5)
            .map(|_| char::from(b"bcdfghjklmnpqrstvwxz2456789"[self.rng.random_range(0..27)]))
            .collect();
        let name = format!(
            "{}-{:x}-{suffix}",
            SERVICES[service],
            self.rng.random_range(0x1000_0000u32..0xffff_ffff)
        );
        let uid = uuid(&mut self.rng);
        let dir = self.cfg.clusters[cluster]
            .pods_root
            .join(format!("{namespace}_{name}_{uid}"));
        let mut containers = Vec::new();
        for c in 0..self.cfg.containers_per_pod {
            let cname = CONTAINERS
                .get(c)
                .map_or_else(|| format!("c{c}"), |n| (*n).to_owned());
            let cdir = dir.join(&cname);
            std::fs::create_dir_all(&cdir).map_err(|e| Error::io("create", &cdir, e))?;
            let file = open_log(&cdir)?;
            containers.push(Container {
                name: cname,
                service_hint: service + c,
                dir: cdir,
                file: Some(file),
                size: 0,
                rotated: VecDeque::new(),
                last_stamp: String::new(),
                stamp_dup: 0,
            });
        }
        self.pods.push(Pod {
            cluster,
            namespace: namespace.to_owned(),
            name,
            uid,
            dir,
            containers,
            delete_at: None,
            deleted: false,
        });
        self.live.push(self.pods.len() - 1);
        self.totals.pods_created += 1;
        Ok(())
    }

    fn next_ts(&mut self) -> i64 {
        // Strictly increasing, so per-source order by timestamp equals order by sequence number.
        let ts = now_ns().max(self.last_ts + 1);
        self.last_ts = ts;
        ts
    }

    /// Writes one event to a random live container. Returns the number of entries written.
    pub fn step(&mut self) -> Result<u64, Error> {
        if self.live.is_empty() {
            return Ok(0);
        }
        let pod_idx = self.live[self.rng.random_range(0..self.live.len())];
        let c_idx = self
            .rng
            .random_range(0..self.pods[pod_idx].containers.len());
        let hint = self.pods[pod_idx].containers[c_idx].service_hint;
        let event = content::next_event(&mut self.rng, &self.cfg.mix, hint);
        let ts = self.next_ts();
        let src = {
            let pod = &self.pods[pod_idx];
            let cluster = &self.cfg.clusters[pod.cluster];
            SourceId {
                cluster: cluster.name.clone(),
                namespace: pod.namespace.clone(),
                pod: pod.name.clone(),
                container: pod.containers[c_idx].name.clone(),
                stream: event.stream.to_owned(),
            }
        };
        let id = src.id();
        let rec = self.sources.entry(id.clone()).or_insert_with(|| {
            let pod = &self.pods[pod_idx];
            SourceRecord {
                id: id.clone(),
                cluster: src.cluster.clone(),
                tenant: self.cfg.clusters[pod.cluster].tenant.clone(),
                namespace: src.namespace.clone(),
                pod: src.pod.clone(),
                pod_uid: pod.uid.clone(),
                container: src.container.clone(),
                stream: src.stream.clone(),
                count: 0,
                first_seq: 1,
                last_seq: 0,
                first_ts_ns: ts,
                last_ts_ns: ts,
                bytes: 0,
                pod_deleted: false,
            }
        });
        self.buf.clear();
        let mut entries = 0;
        for piece in &event.lines {
            let seq = rec.last_seq + 1;
            let marker = format!("run={} src={id} seq={seq}", self.cfg.run_id);
            let msg = piece.render(&marker);
            let lines = cri::encode(&mut self.buf, ts, event.stream, &msg, self.cfg.chunk_bytes);
            rec.last_seq = seq;
            rec.count += 1;
            rec.last_ts_ns = ts;
            rec.bytes += msg.len() as u64;
            self.totals.cri_lines += lines as u64;
            self.totals.message_bytes += msg.len() as u64;
            entries += 1;
        }
        self.totals.entries += entries;
        self.totals.file_bytes += self.buf.len() as u64;
        let container = &mut self.pods[pod_idx].containers[c_idx];
        let path = container.dir.join("0.log");
        let file = match container.file.as_mut() {
            Some(f) => f,
            None => return Err(Error::Settings(format!("{} is closed", path.display()))),
        };
        file.write_all(&self.buf)
            .map_err(|e| Error::io("write", &path, e))?;
        container.size += self.buf.len() as u64;
        self.maybe_rotate(pod_idx, c_idx)?;
        Ok(entries)
    }

    fn maybe_rotate(&mut self, pod_idx: usize, c_idx: usize) -> Result<(), Error> {
        let (max_bytes, keep_files, copy) = match self.cfg.rotation {
            Rotation::None => return Ok(()),
            Rotation::Rename {
                max_bytes,
                keep_files,
            } => (max_bytes, keep_files, false),
            Rotation::CopyTruncate {
                max_bytes,
                keep_files,
            } => (max_bytes, keep_files, true),
        };
        let c = &mut self.pods[pod_idx].containers[c_idx];
        if c.size < max_bytes {
            return Ok(());
        }
        rotate(c, keep_files, copy)?;
        if copy {
            self.totals.truncations += 1;
        } else {
            self.totals.rotations += 1;
        }
        Ok(())
    }

    /// Stops one random live pod, schedules its directory for removal and starts a replacement.
    pub fn churn(&mut self) -> Result<(), Error> {
        if self.live.is_empty() {
            return Ok(());
        }
        let at = self.rng.random_range(0..self.live.len());
        let pod_idx = self.live.swap_remove(at);
        let grace = self.cfg.churn_grace;
        let (cluster, namespace, service) = {
            let pod = &mut self.pods[pod_idx];
            pod.delete_at = Some(Instant::now() + grace);
            for c in &mut pod.containers {
                c.file = None;
            }
            let service = pod.containers.first().map(|c| c.service_hint).unwrap_or(0);
            (pod.cluster, pod.namespace.clone(), service)
        };
        self.create_pod(cluster, &namespace, service % SERVICES.len())
    }

    /// Removes the directories of stopped pods whose grace period has passed.
    pub fn reap(&mut self, now: Instant) -> Result<(), Error> {
        for pod in &mut self.pods {
            if pod.deleted || pod.delete_at.is_none_or(|t| t > now) {
                continue;
            }
            std::fs::remove_dir_all(&pod.dir).map_err(|e| Error::io("remove", &pod.dir, e))?;
            pod.deleted = true;
            self.totals.pods_deleted += 1;
            let prefix = format!(
                "{}/{}/{}/",
                self.cfg.clusters[pod.cluster].name, pod.namespace, pod.name
            );
            for (id, rec) in self.sources.range_mut(prefix.clone()..) {
                if !id.starts_with(&prefix) {
                    break;
                }
                rec.pod_deleted = true;
            }
        }
        Ok(())
    }

    /// Entries written so far.
    pub fn entries(&self) -> u64 {
        self.totals.entries
    }

    /// The manifest of everything written so far.
    pub fn manifest(&self) -> Manifest {
        Manifest {
            version: Manifest::VERSION,
            run_id: self.cfg.run_id.clone(),
            seed: self.cfg.seed,
            started_ns: self.started_ns,
            finished_ns: now_ns(),
            clusters: self
                .cfg
                .clusters
                .iter()
                .map(|c| ClusterInfo {
                    name: c.name.clone(),
                    tenant: c.tenant.clone(),
                })
                .collect(),
            totals: self.totals.clone(),
            sources: self.sources.values().cloned().collect(),
        }
    }
}

fn ns_name(i: usize) -> String {
    if i < NAMESPACES.len() {
        NAMESPACES[i].to_owned()
    } else {
        format!(
            "{}-{}",
            NAMESPACES[i % NAMESPACES.len()],
            i / NAMESPACES.len()
        )
    }
}

fn uuid<R: Rng>(rng: &mut R) -> String {
    let b: [u8; 16] = rng.random();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn open_log(dir: &Path) -> Result<File, Error> {
    let path = dir.join("0.log");
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| Error::io("open", &path, e))
}

fn gzip(path: &Path) -> Result<(), Error> {
    use flate2::{write::GzEncoder, Compression};
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!("{name}.tmp"));
    let gz = path.with_file_name(format!("{name}.gz"));
    let data = std::fs::read(path).map_err(|e| Error::io("read", path, e))?;
    let out = File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
    let mut enc = GzEncoder::new(out, Compression::fast());
    enc.write_all(&data)
        .map_err(|e| Error::io("gzip", &tmp, e))?;
    enc.finish().map_err(|e| Error::io("gzip", &tmp, e))?;
    std::fs::rename(&tmp, &gz).map_err(|e| Error::io("rename", &gz, e))?;
    std::fs::remove_file(path).map_err(|e| Error::io("remove", path, e))
}

/// One kubelet-style rotation of a container's `0.log` (see the module docs).
fn rotate(c: &mut Container, keep_files: usize, copy: bool) -> Result<(), Error> {
    // Current file plus the new rotated one are added below, so keep `keep_files - 2` old ones.
    while c.rotated.len() > keep_files.saturating_sub(2) {
        if let Some(old) = c.rotated.pop_front() {
            std::fs::remove_file(&old).map_err(|e| Error::io("remove", &old, e))?;
        }
    }
    for r in c.rotated.iter_mut() {
        if r.extension().is_some_and(|e| e == "gz") {
            continue;
        }
        gzip(r)?;
        let mut name = r.as_os_str().to_owned();
        name.push(".gz");
        *r = PathBuf::from(name);
    }
    let stamp = chrono::Utc::now().format("%Y%m%d-%H%M%S").to_string();
    let suffix = if stamp == c.last_stamp {
        c.stamp_dup += 1;
        format!("{stamp}.{}", c.stamp_dup)
    } else {
        c.last_stamp = stamp.clone();
        c.stamp_dup = 0;
        stamp
    };
    let current = c.dir.join("0.log");
    let target = c.dir.join(format!("0.log.{suffix}"));
    if copy {
        std::fs::copy(&current, &target).map_err(|e| Error::io("copy", &target, e))?;
        if let Some(f) = c.file.as_ref() {
            f.set_len(0)
                .map_err(|e| Error::io("truncate", &current, e))?;
        }
    } else {
        std::fs::rename(&current, &target).map_err(|e| Error::io("rename", &target, e))?;
        c.file = Some(open_log(&c.dir)?);
    }
    c.size = 0;
    c.rotated.push_back(target);
    Ok(())
}

/// Runs the generator until its duration or line count is reached or `stop` is set; returns the
/// manifest. Blocking: call it from a thread (or `spawn_blocking`).
pub fn run(cfg: GenConfig, stop: &AtomicBool) -> Result<Manifest, Error> {
    let rate = cfg.rate_per_sec;
    let duration = cfg.duration;
    let max_entries = cfg.max_entries;
    let churn_every = cfg.churn_every;
    let mut g = Generator::new(cfg)?;
    let start = Instant::now();
    let mut next_churn = churn_every.map(|d| start + d);
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let now = Instant::now();
        let elapsed = now - start;
        if duration.is_some_and(|d| elapsed >= d) || max_entries.is_some_and(|m| g.entries() >= m) {
            break;
        }
        if let (Some(at), Some(every)) = (next_churn, churn_every) {
            if now >= at {
                g.churn()?;
                next_churn = Some(at + every);
            }
        }
        g.reap(now)?;
        if let Some(rate) = rate {
            let due = (rate * elapsed.as_secs_f64()) as u64;
            if g.entries() >= due {
                // Pacing, not synchronisation: sleep until the next entry is due (capped so that
                // stop, churn and the deadline are still noticed promptly).
                let next_at = (g.entries() + 1) as f64 / rate;
                let wait = (next_at - elapsed.as_secs_f64()).clamp(0.0005, 0.02);
                std::thread::sleep(Duration::from_secs_f64(wait));
                continue;
            }
        }
        g.step()?;
    }
    g.reap(Instant::now())?;
    Ok(g.manifest())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::marker;
    use std::io::Read;

    fn cfg(dir: &Path) -> GenConfig {
        let mut c = GenConfig::new(
            "t1",
            42,
            vec![ClusterSpec {
                name: "ops".into(),
                tenant: "tenant-ops".into(),
                pods_root: dir.join("pods"),
            }],
        );
        c.rate_per_sec = None;
        c.duration = None;
        c.max_entries = Some(2000);
        c
    }

    /// Reads every CRI line of a container dir: rotated (gzip or plain) oldest first, then 0.log.
    fn read_container(dir: &Path) -> Vec<String> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").path())
            .collect();
        // Oldest first by rotation name (`0.log.<stamp>[.<n>][.gz]`), `0.log` last. Not by mtime:
        // gzipping gives an old file a new mtime.
        files.sort_by_key(|p| {
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            let rest = name.strip_prefix("0.log.").unwrap_or("~");
            let rest = rest.strip_suffix(".gz").unwrap_or(rest).to_owned();
            match rest.split_once('.') {
                Some((stamp, n)) => (stamp.to_owned(), n.parse::<u32>().expect("dup suffix")),
                None => (rest, 0),
            }
        });
        let mut out = Vec::new();
        for f in files {
            let raw = std::fs::read(&f).expect("read");
            let text = if f.extension().is_some_and(|e| e == "gz") {
                let mut s = String::new();
                flate2::read::GzDecoder::new(&raw[..])
                    .read_to_string(&mut s)
                    .expect("gunzip");
                s
            } else {
                String::from_utf8(raw).expect("utf8")
            };
            out.extend(text.lines().map(str::to_owned));
        }
        out
    }

    fn all_pod_dirs(root: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(root)
            .expect("read_dir")
            .map(|e| e.expect("entry").path())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn writes_kubelet_layout_and_manifest_matches_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stop = AtomicBool::new(false);
        let m = run(cfg(dir.path()), &stop).expect("run");
        assert!(m.totals.entries >= 2000);
        let pods = all_pod_dirs(&dir.path().join("pods"));
        assert_eq!(pods.len(), 4);
        // Count markers per source from the files; must equal the manifest, seqs contiguous.
        let mut seen: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        let mut partials = 0;
        for pod in &pods {
            let name = pod
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            assert_eq!(name.split('_').count(), 3, "{name}");
            for c in ["app", "sidecar"] {
                let lines = read_container(&pod.join(c));
                for l in lines {
                    let mut parts = l.splitn(4, ' ');
                    let ts = parts.next().expect("ts");
                    assert!(ts.ends_with('Z') && ts.len() == 30, "{ts}");
                    let _stream = parts.next().expect("stream");
                    let tag = parts.next().expect("tag");
                    if tag == "P" {
                        partials += 1;
                        // The marker is in the first chunk; continuation chunks have none.
                    }
                    if let Some(mk) = marker::parse(parts.next().expect("msg")) {
                        seen.entry(mk.src.to_owned()).or_default().push(mk.seq);
                    }
                }
            }
        }
        assert!(partials > 0, "expected some long lines split into P chunks");
        assert_eq!(seen.len(), m.sources.len());
        for s in &m.sources {
            let seqs = &seen[&s.id];
            let want: Vec<u64> = (s.first_seq..=s.last_seq).collect();
            assert_eq!(seqs, &want, "source {}", s.id);
            assert_eq!(s.count, s.last_seq);
        }
    }

    #[test]
    fn same_seed_same_sources_and_counts() {
        let a = tempfile::tempdir().expect("tempdir");
        let b = tempfile::tempdir().expect("tempdir");
        let stop = AtomicBool::new(false);
        let ma = run(cfg(a.path()), &stop).expect("run a");
        let mb = run(cfg(b.path()), &stop).expect("run b");
        let key = |m: &Manifest| -> Vec<(String, u64, u64)> {
            m.sources
                .iter()
                .map(|s| (s.id.clone(), s.count, s.bytes))
                .collect()
        };
        assert_eq!(key(&ma), key(&mb));
    }

    #[test]
    fn rename_rotation_keeps_n_files_gzips_older_and_loses_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = cfg(dir.path());
        c.rotation = Rotation::Rename {
            max_bytes: 20_000,
            keep_files: 4,
        };
        c.mix.long_line_ratio = 0.0;
        c.max_entries = Some(3000);
        let m = run(c, &AtomicBool::new(false)).expect("run");
        assert!(m.totals.rotations > 10, "rotations {}", m.totals.rotations);
        for pod in all_pod_dirs(&dir.path().join("pods")) {
            let cdir = pod.join("app");
            let mut names: Vec<String> = std::fs::read_dir(&cdir)
                .expect("read_dir")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            assert!(names.len() <= 4, "{names:?}");
            assert!(names.contains(&"0.log".to_owned()));
            let plain_rotated = names
                .iter()
                .filter(|n| n.starts_with("0.log.") && !n.ends_with(".gz"))
                .count();
            assert_eq!(
                plain_rotated, 1,
                "newest rotated stays uncompressed: {names:?}"
            );
            assert!(names.iter().any(|n| n.ends_with(".gz")), "{names:?}");
            assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
            // What is still on disk is a contiguous tail of each source's sequence.
            let mut last: BTreeMap<String, u64> = BTreeMap::new();
            for l in read_container(&cdir) {
                if let Some(mk) = marker::parse(&l) {
                    if let Some(prev) = last.get(mk.src) {
                        assert_eq!(mk.seq, prev + 1, "gap in {}", mk.src);
                    }
                    last.insert(mk.src.to_owned(), mk.seq);
                }
            }
            for (src, seq) in last {
                let rec = m.sources.iter().find(|s| s.id == src).expect("in manifest");
                assert_eq!(seq, rec.last_seq);
            }
        }
    }

    #[test]
    fn copytruncate_keeps_the_inode_and_truncates_in_place() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = cfg(dir.path());
        c.rotation = Rotation::CopyTruncate {
            max_bytes: 20_000,
            keep_files: 3,
        };
        c.mix.long_line_ratio = 0.0;
        c.max_entries = Some(10);
        let mut g = Generator::new(c).expect("new");
        let pod = all_pod_dirs(&dir.path().join("pods"))[0].clone();
        let inode = std::fs::metadata(pod.join("app/0.log"))
            .expect("meta")
            .ino();
        for _ in 0..3000 {
            g.step().expect("step");
        }
        let m = g.manifest();
        assert!(m.totals.truncations > 5);
        assert_eq!(
            std::fs::metadata(pod.join("app/0.log"))
                .expect("meta")
                .ino(),
            inode
        );
        let size = std::fs::metadata(pod.join("app/0.log"))
            .expect("meta")
            .len();
        assert!(size < 20_000 + 4096, "size {size}");
    }

    #[test]
    fn churn_replaces_pods_and_removes_old_dirs_after_grace() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = cfg(dir.path());
        c.churn_grace = Duration::ZERO;
        let mut g = Generator::new(c).expect("new");
        for _ in 0..200 {
            g.step().expect("step");
        }
        let before = all_pod_dirs(&dir.path().join("pods"));
        g.churn().expect("churn");
        g.churn().expect("churn");
        for _ in 0..200 {
            g.step().expect("step");
        }
        g.reap(Instant::now()).expect("reap");
        let after = all_pod_dirs(&dir.path().join("pods"));
        assert_eq!(after.len(), 4);
        assert_eq!(before.iter().filter(|p| !after.contains(p)).count(), 2);
        let m = g.manifest();
        assert_eq!(m.totals.pods_deleted, 2);
        assert_eq!(m.totals.pods_created, 6);
        assert!(m.sources.iter().any(|s| s.pod_deleted));
    }

    #[test]
    fn rate_limits_the_write_speed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = cfg(dir.path());
        c.rate_per_sec = Some(1000.0);
        c.max_entries = None;
        c.duration = Some(Duration::from_millis(500));
        let m = run(c, &AtomicBool::new(false)).expect("run");
        // Multi-line events may overshoot by one event; the rate bounds it from above.
        assert!(
            (300..=560).contains(&m.totals.entries),
            "entries {}",
            m.totals.entries
        );
    }

    #[test]
    fn rejects_unbounded_and_bad_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = cfg(dir.path());
        c.max_entries = None;
        assert!(matches!(Generator::new(c), Err(Error::Settings(_))));
        let mut c = cfg(dir.path());
        c.run_id = "Bad Id".into();
        assert!(matches!(Generator::new(c), Err(Error::Settings(_))));
    }
}
