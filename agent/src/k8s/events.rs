//! Run-time side of `loki.source.kubernetes_events`: a list+watch of core/v1 Events per
//! configured namespace (or one cluster-wide), each new event version made into Alloy's log
//! line and sent as a one-entry chunk into the config's routes. What Loki acknowledged is
//! recorded by event uid and resource version ([`Delivered`]) and saved in the positions
//! directory, so a restart sends every event version not delivered yet and nothing else.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Event as KubeEvent;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::backoff::Backoff;
use super::watch::Cause;
use super::K8sError;
use crate::alloy::components::kubernetes_events::{
    format_line, state_path, Delivered, EventFields, EventsSpec,
};
use crate::alloy::router::SOURCE_LABEL;
use crate::chunk::{Chunk, Entry, FileMeta, Stream, NO_METADATA};
use crate::source::{ChunkSource, ID_BASE};

/// How often an acknowledged change of the delivered record is written.
const SAVE_EVERY: Duration = Duration::from_secs(1);

/// Ids of one source: `ID_BASE + source index << 32 + n`.
const IDS_PER_SOURCE: u64 = 1 << 32;

/// One `loki.source.kubernetes_events` component at run time.
pub struct EventsSource {
    spec: EventsSpec,
    client: Client,
    shared: Arc<Shared>,
}

/// A sent event version: (seq = the chunk's commit offset, watched namespace, uid, resource
/// version).
type Pending = (u64, String, String, String);

/// What the watch tasks and the acknowledgements share.
struct Shared {
    /// Route index of the component (the `__agent_source__` label of its chunks).
    source: usize,
    base: u64,
    tenant: Arc<str>,
    state_path: PathBuf,
    delivered: Mutex<Delivered>,
    dirty: AtomicBool,
    /// Sent, not yet acknowledged, per file id in send order.
    pending: Mutex<HashMap<u64, VecDeque<Pending>>>,
    /// One file meta per (watched namespace, involved-object namespace): its labels.
    metas: Mutex<HashMap<(String, String), Arc<FileMeta>>>,
    seq: AtomicU64,
}

impl EventsSource {
    /// Prepares the component: its client, and the record of delivered events read from the
    /// positions directory (`positions` is the agent's positions file).
    pub async fn new(
        spec: EventsSpec,
        source: usize,
        tenant: &str,
        positions: &Path,
    ) -> Result<EventsSource, K8sError> {
        let client = super::client_for(spec.kubeconfig_file.as_deref()).await?;
        Self::with_client(spec, source, tenant, positions, client)
    }

    /// Like [`EventsSource::new`] with a given client (tests: a mock API).
    pub fn with_client(
        spec: EventsSpec,
        source: usize,
        tenant: &str,
        positions: &Path,
        client: Client,
    ) -> Result<EventsSource, K8sError> {
        let state_path = state_path(positions, &spec.id);
        let delivered = Delivered::load(&state_path)
            .map_err(|e| K8sError::Config(format!("{}: {e}", spec.id)))?;
        Ok(EventsSource {
            shared: Arc::new(Shared {
                source,
                base: ID_BASE + (source as u64) * IDS_PER_SOURCE,
                tenant: Arc::from(tenant),
                state_path,
                delivered: Mutex::new(delivered),
                dirty: AtomicBool::new(false),
                pending: Mutex::default(),
                metas: Mutex::default(),
                seq: AtomicU64::new(0),
            }),
            spec,
            client,
        })
    }
}

impl ChunkSource for EventsSource {
    fn start(&self, tx: mpsc::Sender<Chunk>) -> Vec<JoinHandle<()>> {
        let namespaces = if self.spec.namespaces.is_empty() {
            vec![String::new()]
        } else {
            self.spec.namespaces.clone()
        };
        let mut tasks: Vec<JoinHandle<()>> = namespaces
            .into_iter()
            .map(|ns| {
                let api: Api<KubeEvent> = if ns.is_empty() {
                    Api::all(self.client.clone())
                } else {
                    Api::namespaced(self.client.clone(), &ns)
                };
                tokio::spawn(watch(
                    api,
                    ns,
                    self.spec.clone(),
                    self.shared.clone(),
                    tx.clone(),
                ))
            })
            .collect();
        let shared = self.shared.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::time::sleep(SAVE_EVERY).await;
                shared.save();
            }
        }));
        tasks
    }

    fn ack(&self, id: u64, offset: u64) -> bool {
        let s = &self.shared;
        if !(s.base..s.base + IDS_PER_SOURCE).contains(&id) {
            return false;
        }
        let mut done = Vec::new();
        {
            let mut pending = s.pending.lock();
            if let Some(q) = pending.get_mut(&id) {
                while q.front().is_some_and(|p| p.0 <= offset) {
                    done.extend(q.pop_front());
                }
            }
        }
        if !done.is_empty() {
            let mut d = s.delivered.lock();
            for (_, ns, uid, rv) in done {
                d.namespaces.entry(ns).or_default().insert(uid, rv);
            }
            s.dirty.store(true, Ordering::Relaxed);
        }
        true
    }

    fn save(&self) {
        self.shared.save();
    }
}

impl Shared {
    fn save(&self) {
        if !self.dirty.swap(false, Ordering::Relaxed) {
            return;
        }
        let snapshot = self.delivered.lock().clone();
        if let Err(e) = snapshot.save(&self.state_path) {
            self.dirty.store(true, Ordering::Relaxed);
            tracing::error!(error = %e, "loki.source.kubernetes_events: saving the delivered-events record failed (a restart may send some events again)");
        }
    }

    /// The file meta of events about objects in `namespace` seen by the watch of `watched`:
    /// one id per watch task, so each id's chunks are sent (and acknowledged) in order.
    fn meta(&self, spec: &EventsSpec, watched: &str, namespace: &str) -> Arc<FileMeta> {
        let mut metas = self.metas.lock();
        let n = metas.len() as u64;
        metas
            .entry((watched.to_string(), namespace.to_string()))
            .or_insert_with(|| {
                let source = self.source.to_string();
                let mut pairs = vec![
                    (SOURCE_LABEL, source.as_str()),
                    ("instance", spec.id.as_str()),
                    ("job", spec.job_name.as_str()),
                ];
                // Cluster-scoped objects (nodes) have no namespace: an empty label is none.
                if !namespace.is_empty() {
                    pairs.push(("namespace", namespace));
                }
                let ls: Arc<str> = Arc::from(loki_wire::LabelSet::from_pairs(pairs).to_string());
                Arc::new(FileMeta {
                    id: self.base + n,
                    path: format!("{}/{watched}/{namespace}", spec.id),
                    tenant: self.tenant.clone(),
                    labels: [ls.clone(), ls.clone(), ls],
                })
            })
            .clone()
    }

    /// Forgets records of events the API no longer lists (they cannot come back).
    fn prune(&self, ns: &str, listed: &HashSet<String>) {
        let mut d = self.delivered.lock();
        if let Some(m) = d.namespaces.get_mut(ns) {
            let before = m.len();
            m.retain(|uid, _| listed.contains(uid));
            if m.len() != before {
                self.dirty.store(true, Ordering::Relaxed);
            }
        }
    }

    fn is_delivered(&self, ns: &str, uid: &str, rv: &str) -> bool {
        self.delivered
            .lock()
            .namespaces
            .get(ns)
            .and_then(|m| m.get(uid))
            .is_some_and(|v| v == rv)
    }
}

/// The fields of the line, from the API object.
pub fn fields(e: &KubeEvent) -> EventFields {
    let o = &e.involved_object;
    let s = |v: &Option<String>| v.clone().unwrap_or_default();
    EventFields {
        object_name: s(&o.name),
        object_kind: s(&o.kind),
        object_namespace: s(&o.namespace),
        object_api_version: s(&o.api_version),
        object_resource_version: s(&o.resource_version),
        action: s(&e.action),
        resource_version: s(&e.metadata.resource_version),
        reporting_instance: s(&e.reporting_instance),
        reporting_controller: s(&e.reporting_component),
        source_component: e
            .source
            .as_ref()
            .map(|x| s(&x.component))
            .unwrap_or_default(),
        source_host: e.source.as_ref().map(|x| s(&x.host)).unwrap_or_default(),
        reason: s(&e.reason),
        type_: s(&e.type_),
        count: e.count.unwrap_or(0),
        message: s(&e.message),
    }
}

/// Alloy's entry timestamp: `lastTimestamp`, else `eventTime`. An event with neither (Alloy
/// would send the zero time, which Loki rejects) gets its creation time, else now.
pub fn timestamp_ns(e: &KubeEvent) -> i64 {
    let ns = |t: &k8s_openapi::jiff::Timestamp| i64::try_from(t.as_nanosecond()).ok();
    e.last_timestamp
        .as_ref()
        .and_then(|t| ns(&t.0))
        .or_else(|| e.event_time.as_ref().and_then(|t| ns(&t.0)))
        .or_else(|| {
            e.metadata
                .creation_timestamp
                .as_ref()
                .and_then(|t| ns(&t.0))
        })
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
                .unwrap_or(0)
        })
}

/// Identity of an event version: uid (else namespace/name) and resource version.
fn identity(e: &KubeEvent) -> (String, String) {
    let m = &e.metadata;
    let uid = m.uid.clone().unwrap_or_else(|| {
        format!(
            "{}/{}",
            m.namespace.as_deref().unwrap_or(""),
            m.name.as_deref().unwrap_or("")
        )
    });
    (uid, m.resource_version.clone().unwrap_or_default())
}

/// List+watch of one namespace ("" = all) until the task is aborted or the router is gone.
async fn watch(
    api: Api<KubeEvent>,
    ns: String,
    spec: EventsSpec,
    shared: Arc<Shared>,
    tx: mpsc::Sender<Chunk>,
) {
    let shown = if ns.is_empty() { "<all>" } else { &ns };
    tracing::info!(component = %spec.id, namespace = shown, "watching Kubernetes events");
    let config = watcher::Config::default();
    let mut backoff = Backoff::default();
    let mut failing: Option<String> = None;
    // Versions sent in this run (a relist offers them again).
    let mut sent: HashMap<String, String> = HashMap::new();
    let mut listed: Option<HashSet<String>> = None;
    let mut stream = Box::pin(watcher::watcher(api.clone(), config.clone()));
    loop {
        let Some(ev) = stream.next().await else {
            stream = Box::pin(watcher::watcher(api.clone(), config.clone()));
            continue;
        };
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                let cause = Cause::of_resource(&e, "events");
                if cause.gone {
                    stream = Box::pin(watcher::watcher(api.clone(), config.clone()));
                    continue;
                }
                let delay = backoff.failed();
                if failing.is_none() {
                    tracing::warn!(component = %spec.id, namespace = shown, cause = %cause.text, retry_in = ?delay,
                        "Kubernetes API: listing/watching events failed; retrying with growing delays (logged again when it recovers)");
                    failing = Some(cause.text);
                }
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        let progress = !matches!(ev, Event::Init | Event::InitApply(_));
        match ev {
            Event::Init => listed = Some(HashSet::new()),
            Event::InitApply(e) => {
                if let Some(l) = listed.as_mut() {
                    l.insert(identity(&e).0);
                }
                if !send(&e, &ns, &spec, &shared, &mut sent, &tx).await {
                    return;
                }
            }
            Event::InitDone => {
                if let Some(l) = listed.take() {
                    sent.retain(|uid, _| l.contains(uid));
                    shared.prune(&ns, &l);
                }
            }
            Event::Apply(e) => {
                if !send(&e, &ns, &spec, &shared, &mut sent, &tx).await {
                    return;
                }
            }
            Event::Delete(e) => {
                sent.remove(&identity(&e).0);
            }
        }
        if progress {
            backoff.reset();
            if let Some(first) = failing.take() {
                tracing::info!(component = %spec.id, namespace = shown, cause = %first, "Kubernetes API: event list/watch recovered");
            }
        }
    }
}

/// Sends an event version not sent or delivered yet; false when the router is gone.
async fn send(
    e: &KubeEvent,
    ns: &str,
    spec: &EventsSpec,
    shared: &Shared,
    sent: &mut HashMap<String, String>,
    tx: &mpsc::Sender<Chunk>,
) -> bool {
    let (uid, rv) = identity(e);
    if sent.get(&uid) == Some(&rv) {
        return true;
    }
    if shared.is_delivered(ns, &uid, &rv) {
        sent.insert(uid, rv);
        return true;
    }
    let f = fields(e);
    let Some(line) = format_line(&f, spec.log_format) else {
        tracing::debug!(component = %spec.id, uid, "event without involved object; skipped");
        sent.insert(uid, rv);
        return true;
    };
    let meta = shared.meta(spec, ns, &f.object_namespace);
    let seq = shared.seq.fetch_add(1, Ordering::Relaxed) + 1;
    let len = u32::try_from(line.len()).unwrap_or(u32::MAX);
    let data = line.into_bytes();
    let chunk = Chunk {
        file: meta.clone(),
        line_bytes: data.len(),
        data,
        entries: vec![Entry {
            ts_ns: timestamp_ns(e),
            start: 0,
            end: len,
            stream: Stream::Unknown,
            metadata: NO_METADATA,
        }],
        commit_offset: seq,
        metadata: Vec::new(),
    };
    shared
        .pending
        .lock()
        .entry(meta.id)
        .or_default()
        .push_back((seq, ns.to_string(), uid.clone(), rv.clone()));
    if tx.send(chunk).await.is_err() {
        return false;
    }
    sent.insert(uid, rv);
    true
}
