//! Finding log files: a trait, so the tailer never knows about Kubernetes, and the kubelet
//! pod-log layout `<root>/<ns>_<pod>_<uid>/<container>/<n>.log` as its first implementation.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What kind of file a path is, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FileKind {
    /// The file the runtime writes (`0.log`).
    Live,
    /// Renamed by the kubelet (`0.log.20261122-101500`): read to finish what was started, or
    /// from 0 when its content is new to the agent (see the tailer's rotation rules).
    Rotated,
    /// Gzipped rotated file (`0.log.20261122-101500.gz`): same rules, identified by the
    /// content of its decompressed head.
    RotatedGz,
}

/// One discovered file and the labels of the streams it feeds (without `stream`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub path: PathBuf,
    pub kind: FileKind,
    /// Label pairs (e.g. `namespace`, `pod`, `container`).
    pub labels: Vec<(String, String)>,
    /// Namespace, for the tenant map (empty when unknown).
    pub namespace: String,
    /// `Some(until)`: the file belongs to a pod the Kubernetes API does not know (yet), so
    /// `labels` are the path's only. The reader may hold its lines until `until` in case the
    /// pod becomes known, and never replaces API labels it already uses with these.
    pub pending: Option<Instant>,
}

/// A source of files to tail.
pub trait Discovery: Send {
    /// Lists every candidate file now (live, rotated and gzipped).
    fn scan(&mut self) -> Vec<Target>;
    /// Directory to watch recursively for changes.
    fn watch_root(&self) -> PathBuf;
    /// Changes whenever [`scan`](Self::scan) may give open files other labels (the pod
    /// metadata changed): the reader rescans before using labels older than that.
    fn generation(&self) -> u64 {
        0
    }
}

/// Target labels of the containers of the pods known from the Kubernetes API, by pod uid (and,
/// for static pods, by their `kubernetes.io/config.mirror` hash, which names their log
/// directory) and container name. Used to enrich files found on disk; a file whose pod is
/// not in the index keeps the labels its path gives.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodIndex {
    pub pods: HashMap<String, HashMap<String, BTreeMap<String, String>>>,
}

impl PodIndex {
    /// The `__meta_kubernetes_*` labels of a container, if its pod is known.
    pub fn container(&self, uid: &str, container: &str) -> Option<&BTreeMap<String, String>> {
        self.pods.get(uid)?.get(container)
    }
}

/// Label names as Kubernetes service discovery exposes them: characters outside
/// `[a-zA-Z0-9_]` become `_`, like Prometheus does.
pub fn sanitize_label_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A live view of this node's pods (the Kubernetes API watcher implements it).
pub trait PodMetadata: Send + Sync {
    /// The pods known now (the last known state while the API server is away).
    fn snapshot(&self) -> PodIndex;
    /// Whether the first complete list has arrived.
    fn synced(&self) -> bool;
    /// Bumped after every change of [`snapshot`](Self::snapshot) (read it first).
    fn generation(&self) -> u64 {
        0
    }
    /// How long the lines of a file whose pod is unknown may wait for its metadata.
    fn grace(&self) -> Duration {
        Duration::ZERO
    }
}

/// The pod key (uid, or a static pod's mirror hash) of a file under the kubelet root
/// `<root>/<ns>_<pod>_<key>/<container>/<file>`.
pub fn pod_key_of<'a>(root: &Path, path: &'a Path) -> Option<&'a str> {
    let dir = path.strip_prefix(root).ok()?.components().next()?;
    let (_, _, key) = parse_pod_dir(dir.as_os_str().to_str()?)?;
    Some(key)
}

/// When each pod not known to the API was first seen, so its files' hold ends `grace` after
/// that however often they are scanned. Only pods of the last scan are kept.
#[derive(Debug, Default)]
pub struct PendingPods {
    first_seen: HashMap<String, Instant>,
    seen: HashSet<String>,
}

impl PendingPods {
    /// The end of the hold of a file of pod `key`, unknown to the API at `now`.
    pub fn hold_until(&mut self, key: &str, now: Instant, grace: Duration) -> Instant {
        self.seen.insert(key.to_string());
        *self.first_seen.entry(key.to_string()).or_insert(now) + grace
    }

    /// Ends a scan: forgets pods not looked up since the last call.
    pub fn end_scan(&mut self) {
        let seen = std::mem::take(&mut self.seen);
        self.first_seen.retain(|k, _| seen.contains(k));
    }
}

/// The kubelet layout under `/var/log/pods`.
#[derive(Debug, Clone)]
pub struct PodLogs {
    root: PathBuf,
    pod_uid_label: bool,
}

impl PodLogs {
    pub fn new(root: impl Into<PathBuf>, pod_uid_label: bool) -> Self {
        PodLogs {
            root: root.into(),
            pod_uid_label,
        }
    }
}

/// Splits a pod directory name `<ns>_<pod>_<uid>`; namespace and pod names cannot contain `_`.
pub fn parse_pod_dir(name: &str) -> Option<(&str, &str, &str)> {
    let mut it = name.splitn(3, '_');
    let (ns, pod, uid) = (it.next()?, it.next()?, it.next()?);
    (!ns.is_empty() && !pod.is_empty() && !uid.is_empty()).then_some((ns, pod, uid))
}

/// Classifies a file name in a container directory.
pub fn classify(name: &str) -> Option<FileKind> {
    let (stem, rest) = name.split_once(".log")?;
    if stem.is_empty() || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if rest.is_empty() {
        Some(FileKind::Live)
    } else if let Some(r) = rest.strip_prefix('.') {
        if r.ends_with(".tmp") || r.is_empty() {
            None
        } else if r.ends_with(".gz") {
            Some(FileKind::RotatedGz)
        } else {
            Some(FileKind::Rotated)
        }
    } else {
        None
    }
}

fn read_dir_names(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
        .collect()
}

impl Discovery for PodLogs {
    fn scan(&mut self) -> Vec<Target> {
        let mut out = Vec::new();
        for (pod_dir, pod_path) in read_dir_names(&self.root) {
            let Some((ns, pod, uid)) = parse_pod_dir(&pod_dir) else {
                continue;
            };
            for (container, c_path) in read_dir_names(&pod_path) {
                if !c_path.is_dir() {
                    continue;
                }
                for (file, f_path) in read_dir_names(&c_path) {
                    let Some(kind) = classify(&file) else {
                        continue;
                    };
                    let mut labels = vec![
                        ("namespace".to_string(), ns.to_string()),
                        ("pod".to_string(), pod.to_string()),
                        ("container".to_string(), container.clone()),
                    ];
                    if self.pod_uid_label {
                        labels.push(("pod_uid".to_string(), uid.to_string()));
                    }
                    out.push(Target {
                        path: f_path,
                        kind,
                        labels,
                        namespace: ns.to_string(),
                        pending: None,
                    });
                }
            }
        }
        // Live files first: a rotated file must be recognised as "already open" before the
        // gz pass looks for unfinished content.
        out.sort_by(|a, b| a.kind.cmp(&b.kind).then_with(|| a.path.cmp(&b.path)));
        out
    }

    fn watch_root(&self) -> PathBuf {
        self.root.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_kubelet_file_names() {
        assert_eq!(classify("0.log"), Some(FileKind::Live));
        assert_eq!(classify("12.log"), Some(FileKind::Live));
        assert_eq!(classify("0.log.20261122-101500"), Some(FileKind::Rotated));
        assert_eq!(
            classify("0.log.20261122-101500.gz"),
            Some(FileKind::RotatedGz)
        );
        assert_eq!(classify("0.log.20261122-101500.tmp"), None);
        assert_eq!(classify("x.log"), None);
        assert_eq!(classify("0.logx"), None);
    }

    #[test]
    fn parses_pod_directory_names() {
        assert_eq!(
            parse_pod_dir("default_web-0_1234-abcd"),
            Some(("default", "web-0", "1234-abcd"))
        );
        assert_eq!(parse_pod_dir("nounderscore"), None);
    }

    #[test]
    fn scan_labels_files_from_their_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = dir.path().join("ns1_pod-a_uid1").join("app");
        std::fs::create_dir_all(&c).expect("mkdir");
        std::fs::write(c.join("0.log"), b"").expect("write");
        std::fs::write(c.join("0.log.20260101-000000.gz"), b"").expect("write");
        let mut d = PodLogs::new(dir.path(), false);
        let t = d.scan();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].kind, FileKind::Live);
        assert_eq!(t[0].namespace, "ns1");
        assert!(t[0].labels.contains(&("pod".into(), "pod-a".into())));
        assert!(t[0].labels.contains(&("container".into(), "app".into())));
    }

    #[test]
    fn pod_key_from_a_kubelet_path() {
        let root = Path::new("/var/log/pods");
        let p = root.join("ns_web-0_u-1").join("app").join("0.log");
        assert_eq!(pod_key_of(root, &p), Some("u-1"));
        assert_eq!(
            pod_key_of(root, Path::new("/other/ns_web-0_u-1/app/0.log")),
            None
        );
        assert_eq!(pod_key_of(root, &root.join("nounderscore/app/0.log")), None);
    }

    #[test]
    fn a_pending_pod_is_held_from_its_first_sight_and_forgotten_when_gone() {
        let mut p = PendingPods::default();
        let t0 = Instant::now();
        let g = Duration::from_secs(3);
        assert_eq!(p.hold_until("u1", t0, g), t0 + g);
        p.end_scan();
        // Seen again later: the hold still ends 3 s after the first sight.
        assert_eq!(p.hold_until("u1", t0 + Duration::from_secs(2), g), t0 + g);
        p.end_scan();
        p.end_scan();
        // Gone from one scan: a later sight starts a new hold.
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(p.hold_until("u1", t1, g), t1 + g);
    }
}
