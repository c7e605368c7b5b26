//! Target sets known only at run time (discovery → relabel → glob), resolved on every scan,
//! and the [`Discovery`](crate::discovery::Discovery) implementation that feeds them to the
//! agent's tailer. Without a Kubernetes API, `discovery.kubernetes` targets come from the
//! kubelet's own directory layout, which on a DaemonSet node is exactly the node's pods.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use regex::Regex;

use super::label_selector::LabelSelector;
use super::relabel::{self, Labels, Rule};
use super::value::Value;
use crate::discovery::{
    classify, parse_pod_dir, pod_key_of, Discovery, FileKind, PendingPods, PodIndex, PodMetadata,
    Target,
};

/// Where the kubelet writes pod logs in every Kubernetes distribution; paths in configs that
/// start with it are rebased onto the agent's configured pods root (simulated nodes, tests).
pub const KUBELET_PODS_ROOT: &str = "/var/log/pods";

/// A description of how to compute a list of targets.
#[derive(Debug, Clone, PartialEq)]
pub enum TargetSource {
    /// Literal targets from the config.
    Static(Vec<Labels>),
    /// `discovery.kubernetes` (role pod) answered from the kubelet directories.
    Kubelet(KubeletPods),
    /// `discovery.relabel` over another source.
    Relabel(Box<TargetSource>, Vec<Rule>),
    /// `local.file_match`: expand `__path__` globs into files.
    FileMatch(Box<TargetSource>),
    /// `array.concat` of several sources.
    Concat(Vec<TargetSource>),
}

/// Filters of a pod-role `discovery.kubernetes` that can be answered from paths alone.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct KubeletPods {
    /// Empty = all namespaces.
    pub namespaces: Vec<String>,
    /// `metadata.name=` / `metadata.namespace=` field selectors (positive and `!=`).
    pub field_equals: Vec<(String, String, bool)>,
    /// `selectors { label = … }`: answered from the pod labels the Kubernetes API reports.
    pub label_selectors: Vec<LabelSelector>,
}

/// Converts `list(map(string))` to targets.
pub fn targets_from_value(v: &Value) -> Result<Vec<Labels>, String> {
    match v {
        Value::Array(a) => a.iter().map(|t| t.to_string_map()).collect(),
        other => Err(format!(
            "expected list(map(string)), got {}",
            other.type_name()
        )),
    }
}

impl TargetSource {
    /// Computes the targets now. `pods_root` replaces `/var/log/pods` in paths.
    pub fn resolve(&self, pods_root: &Path) -> Vec<Labels> {
        self.resolve_with(pods_root, None)
    }

    /// Like [`resolve`](Self::resolve), with Kubernetes API metadata for pod targets.
    pub fn resolve_with(&self, pods_root: &Path, pods: Option<&PodIndex>) -> Vec<Labels> {
        match self {
            TargetSource::Static(v) => v.clone(),
            TargetSource::Kubelet(k) => k.scan_with(pods_root, pods),
            TargetSource::Relabel(inner, rules) => inner
                .resolve_with(pods_root, pods)
                .into_iter()
                .filter_map(|mut l| relabel::apply(rules, &mut l).then_some(l))
                .collect(),
            TargetSource::FileMatch(inner) => inner
                .resolve_with(pods_root, pods)
                .into_iter()
                .flat_map(|t| expand_target(&t, pods_root))
                .collect(),
            TargetSource::Concat(v) => v
                .iter()
                .flat_map(|s| s.resolve_with(pods_root, pods))
                .collect(),
        }
    }

    /// Whether a `discovery.kubernetes` part filters on pod labels (for the startup notes).
    pub fn uses_label_selectors(&self) -> bool {
        match self {
            TargetSource::Kubelet(k) => !k.label_selectors.is_empty(),
            TargetSource::Static(_) => false,
            TargetSource::Relabel(i, _) | TargetSource::FileMatch(i) => i.uses_label_selectors(),
            TargetSource::Concat(v) => v.iter().any(TargetSource::uses_label_selectors),
        }
    }

    /// Whether any part comes from Kubernetes discovery (for the startup log line).
    pub fn uses_kubelet(&self) -> bool {
        match self {
            TargetSource::Kubelet(_) => true,
            TargetSource::Static(_) => false,
            TargetSource::Relabel(i, _) | TargetSource::FileMatch(i) => i.uses_kubelet(),
            TargetSource::Concat(v) => v.iter().any(TargetSource::uses_kubelet),
        }
    }
}

impl KubeletPods {
    /// One target per container directory `<root>/<ns>_<pod>_<uid>/<container>/`, labelled like
    /// Kubernetes service discovery, plus `__path__` for the container's log files.
    pub fn scan(&self, root: &Path) -> Vec<Labels> {
        self.scan_with(root, None)
    }

    /// Like [`scan`](Self::scan); containers whose pod the API knows get all of Alloy's
    /// `__meta_kubernetes_*` labels from `pods`, the others only what their path gives.
    pub fn scan_with(&self, root: &Path, pods: Option<&PodIndex>) -> Vec<Labels> {
        let mut out = Vec::new();
        for (name, dir) in read_dir_sorted(root) {
            let Some((ns, pod, uid)) = parse_pod_dir(&name) else {
                continue;
            };
            if !self.namespaces.is_empty() && !self.namespaces.iter().any(|n| n == ns) {
                continue;
            }
            let field_ok = self.field_equals.iter().all(|(field, want, eq)| {
                let have = match field.as_str() {
                    "metadata.name" => pod,
                    "metadata.namespace" => ns,
                    _ => return true,
                };
                (have == want) == *eq
            });
            if !field_ok {
                continue;
            }
            for (container, cdir) in read_dir_sorted(&dir) {
                if !cdir.is_dir() {
                    continue;
                }
                let known = pods.and_then(|p| p.container(uid, &container));
                if !self.label_selectors.is_empty() {
                    match (pods, known) {
                        (Some(_), Some(l)) => {
                            if !self.label_selectors.iter().all(|s| s.matches_target(l)) {
                                continue;
                            }
                        }
                        // The API is synced but does not know the pod yet: wait for it (files
                        // that become targets later are read from their start).
                        (Some(_), None) => continue,
                        // No API: labels cannot be answered; ship rather than lose (logged
                        // at load).
                        (None, _) => {}
                    }
                }
                let mut l = known.cloned().unwrap_or_default();
                l.insert("__meta_kubernetes_namespace".into(), ns.into());
                l.insert("__meta_kubernetes_pod_name".into(), pod.into());
                l.insert("__meta_kubernetes_pod_uid".into(), uid.into());
                l.insert(
                    "__meta_kubernetes_pod_container_name".into(),
                    container.clone(),
                );
                l.insert("__path__".into(), format!("{}/*.log", cdir.display()));
                out.push(l);
            }
        }
        out
    }
}

fn read_dir_sorted(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut v: Vec<(String, PathBuf)> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(Result::ok)
            .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// Rewrites `/var/log/pods/...` onto `pods_root`.
pub fn rebase(path: &str, pods_root: &Path) -> String {
    match path.strip_prefix(KUBELET_PODS_ROOT) {
        Some(rest)
            if pods_root != Path::new(KUBELET_PODS_ROOT)
                && (rest.is_empty() || rest.starts_with('/')) =>
        {
            format!("{}{rest}", pods_root.display())
        }
        _ => path.to_string(),
    }
}

/// Expands one target's `__path__` glob into one target per existing file.
fn expand_target(t: &Labels, pods_root: &Path) -> Vec<Labels> {
    let Some(pattern) = t.get("__path__") else {
        return Vec::new();
    };
    let pattern = rebase(pattern, pods_root);
    let exclude = t
        .get("__path_exclude__")
        .and_then(|e| Glob::new(&rebase(e, pods_root)));
    let Some(g) = Glob::new(&pattern) else {
        return Vec::new();
    };
    g.files()
        .into_iter()
        .filter(|p| !exclude.as_ref().is_some_and(|e| e.matches(p)))
        .map(|p| {
            let mut l = t.clone();
            l.insert("__path__".into(), p);
            l
        })
        .collect()
}

/// A doublestar glob (`*`, `?`, `[..]`, `{a,b}`, `**`), matched on whole paths.
#[derive(Debug, Clone)]
pub struct Glob {
    re: Regex,
    /// The literal directory before the first wildcard: where the walk starts.
    base: PathBuf,
    /// Maximum depth below `base`; `None` with `**`.
    depth: Option<usize>,
}

impl Glob {
    pub fn new(pattern: &str) -> Option<Glob> {
        let segs: Vec<&str> = pattern.split('/').collect();
        let first_wild = segs
            .iter()
            .position(|s| s.contains(['*', '?', '[', '{']))
            .unwrap_or(segs.len())
            // A literal path (e.g. a file_match target loki.source.file globs again): walk its
            // directory, not the file itself.
            .min(segs.len().saturating_sub(1));
        let base = if first_wild == 0 {
            PathBuf::from(".")
        } else {
            PathBuf::from(segs[..first_wild].join("/"))
        };
        let base = if base.as_os_str().is_empty() {
            PathBuf::from("/")
        } else {
            base
        };
        let depth = (!pattern.contains("**")).then(|| segs.len().saturating_sub(first_wild));
        let mut re = String::from("^");
        let chars: Vec<char> = pattern.chars().collect();
        let mut i = 0;
        let mut in_brace = 0;
        while i < chars.len() {
            let c = chars[i];
            match c {
                '*' if chars.get(i + 1) == Some(&'*') => {
                    // `**/` matches zero or more directories.
                    if chars.get(i + 2) == Some(&'/') {
                        re.push_str("(?:.*/)?");
                        i += 3;
                        continue;
                    }
                    re.push_str(".*");
                    i += 2;
                    continue;
                }
                '*' => re.push_str("[^/]*"),
                '?' => re.push_str("[^/]"),
                '[' => {
                    let end = chars[i..].iter().position(|&c| c == ']')? + i;
                    let mut class: String = chars[i + 1..end].iter().collect();
                    if let Some(rest) = class.strip_prefix('!') {
                        class = format!("^{rest}");
                    }
                    re.push('[');
                    re.push_str(&class.replace('\\', "\\\\"));
                    re.push(']');
                    i = end + 1;
                    continue;
                }
                '{' => {
                    in_brace += 1;
                    re.push_str("(?:");
                }
                '}' if in_brace > 0 => {
                    in_brace -= 1;
                    re.push(')');
                }
                ',' if in_brace > 0 => re.push('|'),
                c => re.push_str(&regex::escape(&c.to_string())),
            }
            i += 1;
        }
        re.push('$');
        Some(Glob {
            re: Regex::new(&re).ok()?,
            base,
            depth,
        })
    }

    pub fn matches(&self, path: &str) -> bool {
        self.re.is_match(path)
    }

    /// Every regular file under the base that matches, sorted.
    pub fn files(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![(self.base.clone(), 0usize)];
        while let Some((dir, d)) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in rd.filter_map(Result::ok) {
                let p = e.path();
                let Ok(ft) = std::fs::metadata(&p).map(|m| m.file_type()) else {
                    continue;
                };
                let s = p.to_string_lossy().to_string();
                if ft.is_dir() {
                    if self.depth.is_none_or(|max| d + 1 < max) {
                        stack.push((p, d + 1));
                    }
                } else if ft.is_file() && self.matches(&s) {
                    out.push(s);
                }
            }
        }
        out.sort();
        out
    }
}

/// Feeds resolved targets to the agent's tailer.
pub struct AlloyDiscovery {
    pub sources: Vec<TargetSource>,
    pub pods_root: PathBuf,
    /// Per source: add Alloy's `filename` label (`loki.source.file` does,
    /// `loki.source.kubernetes` does not). Missing entries mean yes.
    pub filename_label: Vec<bool>,
    /// Pod metadata from the Kubernetes API, when a client is running.
    pub pod_metadata: Option<std::sync::Arc<dyn PodMetadata>>,
    /// Pods of files found but not (yet) known to the API, for the grace period.
    pending: PendingPods,
    announced: AtomicBool,
}

impl AlloyDiscovery {
    pub fn new(sources: Vec<TargetSource>, pods_root: PathBuf) -> Self {
        AlloyDiscovery {
            sources,
            pods_root,
            filename_label: Vec::new(),
            pod_metadata: None,
            pending: PendingPods::default(),
            announced: AtomicBool::new(false),
        }
    }

    /// Enriches pod targets with Kubernetes API metadata.
    pub fn with_pod_metadata(mut self, pods: std::sync::Arc<dyn PodMetadata>) -> Self {
        self.pod_metadata = Some(pods);
        self
    }

    /// Whether any source uses `discovery.kubernetes`.
    pub fn uses_kubelet(&self) -> bool {
        self.sources.iter().any(TargetSource::uses_kubelet)
    }

    /// Sets which sources get the `filename` label.
    pub fn with_filename_label(mut self, per_source: Vec<bool>) -> Self {
        self.filename_label = per_source;
        self
    }

    /// Resolved targets, `__` labels still present (for tests and `agent check -v`).
    pub fn resolve(&self) -> Vec<Labels> {
        let pods = self.pod_metadata.as_ref().map(|p| p.snapshot());
        self.sources
            .iter()
            .flat_map(|s| s.resolve_with(&self.pods_root, pods.as_ref()))
            .collect()
    }
}

impl Discovery for AlloyDiscovery {
    fn scan(&mut self) -> Vec<Target> {
        if !self.announced.swap(true, Ordering::Relaxed) && self.uses_kubelet() {
            if self.pod_metadata.is_some() {
                tracing::info!(
                    pods_root = %self.pods_root.display(),
                    "discovery.kubernetes: files from kubelet paths, pod metadata from the Kubernetes API (files of pods it does not know keep their path labels)"
                );
            } else {
                tracing::info!(
                    pods_root = %self.pods_root.display(),
                    "discovery.kubernetes: no Kubernetes API; pod targets come from kubelet paths (namespace, pod, uid, container)"
                );
            }
        }
        // An API that has not listed the pods yet knows nothing: same as no API, except that
        // files of pods it does not know are marked pending (their labels may still change).
        let now = std::time::Instant::now();
        let grace = self.pod_metadata.as_ref().map(|p| p.grace());
        let pods = self
            .pod_metadata
            .as_ref()
            .filter(|p| p.synced())
            .map(|p| p.snapshot());
        let mut by_path: BTreeMap<PathBuf, Target> = BTreeMap::new();
        let many = self.sources.len() > 1;
        let resolved: Vec<(usize, Labels)> = self
            .sources
            .iter()
            .enumerate()
            .flat_map(|(i, s)| {
                s.resolve_with(&self.pods_root, pods.as_ref())
                    .into_iter()
                    .map(move |t| (i, t))
            })
            .collect();
        for (source, t) in resolved {
            let Some(path) = t.get("__path__") else {
                continue;
            };
            let path = PathBuf::from(path);
            let pending = match (grace, pod_key_of(&self.pods_root, &path)) {
                (Some(grace), Some(key))
                    if pods.as_ref().is_none_or(|i| !i.pods.contains_key(key)) =>
                {
                    Some(self.pending.hold_until(key, now, grace))
                }
                _ => None,
            };
            let namespace = t
                .get("namespace")
                .or_else(|| t.get("__meta_kubernetes_namespace"))
                .cloned()
                .unwrap_or_default();
            // Alloy labels each entry with `filename`; `__*` labels are internal.
            let mut labels: Vec<(String, String)> = t
                .iter()
                .filter(|(k, _)| !k.starts_with("__"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if self.filename_label.get(source).copied().unwrap_or(true) {
                labels.push(("filename".into(), path.display().to_string()));
            }
            if many {
                // Which source's routes apply; the router removes it before processing.
                labels.push((super::router::SOURCE_LABEL.into(), source.to_string()));
            }
            labels.sort();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let kind = classify(name).unwrap_or(FileKind::Live);
            // Rotated siblings of a live kubelet file are read to their end too, so a slow
            // Loki never turns rotation into loss. They keep the live file's labels.
            if kind == FileKind::Live {
                if let Some(dir) = path.parent() {
                    for (sib, sp) in read_dir_sorted(dir) {
                        match classify(&sib) {
                            Some(k @ (FileKind::Rotated | FileKind::RotatedGz))
                                if sib.starts_with(name) =>
                            {
                                by_path.entry(sp.clone()).or_insert(Target {
                                    path: sp,
                                    kind: k,
                                    labels: labels.clone(),
                                    namespace: namespace.clone(),
                                    pending,
                                });
                            }
                            _ => {}
                        }
                    }
                }
            }
            by_path.insert(
                path.clone(),
                Target {
                    path,
                    kind,
                    labels,
                    namespace,
                    pending,
                },
            );
        }
        self.pending.end_scan();
        by_path.into_values().collect()
    }

    fn watch_root(&self) -> PathBuf {
        self.pods_root.clone()
    }

    fn generation(&self) -> u64 {
        self.pod_metadata.as_ref().map_or(0, |p| p.generation())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_table() {
        let cases = [
            (
                "/var/log/pods/*/*/*.log",
                "/var/log/pods/ns_p_u/c/0.log",
                true,
            ),
            (
                "/var/log/pods/*/*/*.log",
                "/var/log/pods/ns_p_u/c/0.log.2024",
                false,
            ),
            ("/var/log/**/*.log", "/var/log/a/b/c.log", true),
            ("/var/log/**/*.log", "/var/log/c.log", true),
            ("/var/log/{a,b}/x.log", "/var/log/b/x.log", true),
            ("/var/log/[ab]?.log", "/var/log/a1.log", true),
            ("/var/log/*.log", "/var/log/sub/a.log", false),
        ];
        for (pat, path, want) in cases {
            assert_eq!(
                Glob::new(pat).map(|g| g.matches(path)),
                Some(want),
                "{pat} {path}"
            );
        }
    }

    /// loki.source.file globs a local.file_match target's `__path__` again; a literal path
    /// must find its file (it used to walk the file as a directory and find nothing).
    #[test]
    fn literal_path_glob_finds_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("app.log");
        std::fs::write(&f, "x\n").expect("write");
        let g = Glob::new(&f.display().to_string()).expect("glob");
        assert_eq!(g.files(), [f.display().to_string()]);
    }

    #[test]
    fn rebases_kubelet_paths() {
        assert_eq!(
            rebase("/var/log/pods/*/x.log", Path::new("/tmp/n")),
            "/tmp/n/*/x.log"
        );
        assert_eq!(
            rebase("/var/log/podsx", Path::new("/tmp/n")),
            "/var/log/podsx"
        );
    }

    #[test]
    fn kubelet_targets_and_relabel_to_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        for (pod, c) in [("default_web_u1", "app"), ("kube-system_dns_u2", "coredns")] {
            std::fs::create_dir_all(root.join(pod).join(c)).expect("mkdir");
            std::fs::write(root.join(pod).join(c).join("0.log"), "x\n").expect("write");
        }
        std::fs::write(
            root.join("default_web_u1/app/0.log.20240101-000000"),
            "old\n",
        )
        .expect("write");
        let k = TargetSource::Kubelet(KubeletPods {
            namespaces: vec!["default".into()],
            ..Default::default()
        });
        let t = k.resolve(root);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0]["__meta_kubernetes_pod_uid"], "u1");
        assert_eq!(t[0]["__meta_kubernetes_pod_container_name"], "app");
        let mut d = AlloyDiscovery::new(
            vec![TargetSource::FileMatch(Box::new(k))],
            root.to_path_buf(),
        );
        let files = d.scan();
        assert_eq!(files.len(), 2, "{files:?}");
        assert!(files.iter().any(|f| f.kind == FileKind::Rotated));
        assert_eq!(files[0].namespace, "default");
    }

    struct StaticPods(PodIndex, bool);

    impl PodMetadata for StaticPods {
        fn snapshot(&self) -> PodIndex {
            self.0.clone()
        }
        fn synced(&self) -> bool {
            self.1
        }
    }

    #[test]
    fn label_selectors_use_api_labels_and_ship_everything_without_an_api() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        for pod in ["default_web_u1", "default_db_u2", "default_new_u3"] {
            std::fs::create_dir_all(root.join(pod).join("c")).expect("mkdir");
            std::fs::write(root.join(pod).join("c/0.log"), "x\n").expect("write");
        }
        let mut index = PodIndex::default();
        for (uid, app) in [("u1", "web"), ("u2", "db")] {
            let mut l = BTreeMap::new();
            l.insert(
                "__meta_kubernetes_pod_label_app".to_string(),
                app.to_string(),
            );
            l.insert(
                "__meta_kubernetes_pod_labelpresent_app".to_string(),
                "true".to_string(),
            );
            index
                .pods
                .entry(uid.to_string())
                .or_default()
                .insert("c".to_string(), l);
        }
        let source = TargetSource::FileMatch(Box::new(TargetSource::Kubelet(KubeletPods {
            label_selectors: vec!["app in (web)".parse().expect("selector")],
            ..Default::default()
        })));
        let pods_of = |d: &mut AlloyDiscovery| {
            let mut v: Vec<String> = d
                .scan()
                .into_iter()
                .filter_map(|t| {
                    let dir = t.path.parent()?.parent()?.file_name()?.to_str()?;
                    Some(dir.split('_').nth(1)?.to_string())
                })
                .collect();
            v.sort();
            v
        };
        // Synced API: only the matching pod; the pod it does not know yet waits.
        let mut d = AlloyDiscovery::new(vec![source.clone()], root.to_path_buf())
            .with_pod_metadata(std::sync::Arc::new(StaticPods(index.clone(), true)));
        assert_eq!(pods_of(&mut d), ["web"]);
        // An API that never listed (broken RBAC) answers nothing: every pod is shipped.
        let mut d = AlloyDiscovery::new(vec![source.clone()], root.to_path_buf())
            .with_pod_metadata(std::sync::Arc::new(StaticPods(index, false)));
        assert_eq!(pods_of(&mut d), ["db", "new", "web"]);
        let mut d = AlloyDiscovery::new(vec![source], root.to_path_buf());
        assert_eq!(pods_of(&mut d), ["db", "new", "web"]);
    }
}
