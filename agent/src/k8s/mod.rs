//! Kubernetes pod discovery (cargo feature `kube`): a watch of the pods on this node through
//! the API server, kept in a kube-runtime reflector store, exposed to the tailer as a
//! [`PodMetadata`] so `discovery.kubernetes` targets get Alloy's `__meta_kubernetes_*` labels.
//!
//! Files are still found on disk: the API only enriches them. While the API server is slow or
//! away the store keeps the last known state (the watcher retries with kube-runtime's default
//! backoff; after a `410 Gone` it relists, and the reflector swaps the new list in at once,
//! which is the resync). A file whose pod the store does not know is shipped with the labels
//! its path gives.

pub mod labels;
pub mod remote;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};

use crate::discovery::{PodIndex, PodMetadata};

/// Why no API client could be made.
#[derive(Debug, thiserror::Error)]
pub enum K8sError {
    #[error("Kubernetes client configuration: {0}")]
    Config(String),
    #[error("Kubernetes client: {0}")]
    Client(#[from] kube::Error),
}

/// The pods of one node, watched through the API server.
#[derive(Clone)]
pub struct PodWatcher {
    store: Store<Pod>,
    synced: Arc<AtomicBool>,
    node: String,
}

impl std::fmt::Debug for PodWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodWatcher")
            .field("node", &self.node)
            .field("synced", &self.synced())
            .finish()
    }
}

impl PodWatcher {
    /// Starts watching the pods with `spec.nodeName=<node>` on the current tokio runtime.
    /// The task runs until the runtime stops.
    pub fn start(client: Client, node: &str) -> PodWatcher {
        let api: Api<Pod> = Api::all(client);
        let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
        let (store, writer) = reflector::store();
        let synced = Arc::new(AtomicBool::new(false));
        let stream = watcher(api, config).default_backoff().reflect(writer);
        let node_name = node.to_string();
        {
            let synced = synced.clone();
            let store = store.clone();
            tokio::spawn(async move {
                let mut stream = std::pin::pin!(stream);
                let mut failing = false;
                while let Some(ev) = stream.next().await {
                    match ev {
                        Ok(watcher::Event::InitDone) => {
                            let first = !synced.swap(true, Ordering::Relaxed);
                            tracing::info!(
                                node = %node_name,
                                pods = store.state().len(),
                                resync = !first,
                                "Kubernetes API: pod list complete"
                            );
                            failing = false;
                        }
                        Ok(_) => failing = false,
                        Err(e) => {
                            // The store keeps the last known pods; the watcher backs off and
                            // re-watches or relists.
                            if !failing {
                                tracing::warn!(node = %node_name, error = %e, "Kubernetes API watch failed; keeping the last known pods and retrying");
                            } else {
                                tracing::debug!(error = %e, "Kubernetes API watch still failing");
                            }
                            failing = true;
                        }
                    }
                }
            });
        }
        PodWatcher {
            store,
            synced,
            node: node.to_string(),
        }
    }

    /// Waits up to `timeout` for the first complete list; returns whether it arrived.
    pub async fn wait_synced(&self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.store.wait_until_ready())
            .await
            .is_ok_and(|r| r.is_ok())
            || self.synced()
    }

    /// The pods in the store now.
    pub fn pods(&self) -> Vec<Arc<Pod>> {
        self.store.state()
    }

    pub fn node(&self) -> &str {
        &self.node
    }
}

impl PodMetadata for PodWatcher {
    fn snapshot(&self) -> PodIndex {
        let pods = self.store.state();
        labels::index(pods.iter().map(|p| p.as_ref()))
    }

    fn synced(&self) -> bool {
        self.synced.load(Ordering::Relaxed)
    }
}

/// How long startup waits for the first pod list before tailing with path labels only (the
/// watch keeps trying in the background and enriches files once it answers).
pub const STARTUP_WAIT: Duration = Duration::from_secs(5);

/// An API client from the environment: in-cluster (`KUBERNETES_SERVICE_HOST` and the service
/// account) or `$KUBECONFIG`. `Ok(None)` when neither is configured; `~/.kube/config` is never
/// read implicitly, so a developer machine does not watch some cluster by accident.
pub async fn client_from_env() -> Result<Option<Client>, K8sError> {
    let config = if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        kube::Config::incluster().map_err(|e| K8sError::Config(e.to_string()))?
    } else if std::env::var_os("KUBECONFIG").is_some() {
        kube::Config::from_kubeconfig(&kube::config::KubeConfigOptions::default())
            .await
            .map_err(|e| K8sError::Config(e.to_string()))?
    } else {
        return Ok(None);
    };
    Ok(Some(Client::try_from(config)?))
}

/// The node to watch: `$NODE_NAME` (the downward API's `spec.nodeName`).
pub fn node_name_from_env() -> Option<String> {
    std::env::var("NODE_NAME").ok().filter(|n| !n.is_empty())
}

/// Starts the pod watcher when the environment allows it, logging which way discovery goes.
pub async fn start_from_env() -> Option<PodWatcher> {
    let client = match client_from_env().await {
        Ok(Some(c)) => c,
        Ok(None) => {
            tracing::info!("discovery.kubernetes: no Kubernetes API configured (no in-cluster service environment, no KUBECONFIG); pod targets come from kubelet paths");
            return None;
        }
        Err(e) => {
            tracing::warn!(error = %e, "discovery.kubernetes: cannot configure a Kubernetes API client; pod targets come from kubelet paths");
            return None;
        }
    };
    let Some(node) = node_name_from_env() else {
        tracing::warn!("discovery.kubernetes: NODE_NAME is not set (downward API spec.nodeName); not watching the API, pod targets come from kubelet paths");
        return None;
    };
    let w = PodWatcher::start(client, &node);
    if w.wait_synced(STARTUP_WAIT).await {
        tracing::info!(node = %node, pods = w.pods().len(), "discovery.kubernetes: using the Kubernetes API for pod metadata");
    } else {
        tracing::warn!(node = %node, wait = ?STARTUP_WAIT, "discovery.kubernetes: Kubernetes API not reachable yet; kubelet path labels until it answers");
    }
    Some(w)
}
