//! Kubernetes pod discovery (cargo feature `kube`): a watch of the pods on this node through
//! the API server, kept in a kube-runtime reflector store, exposed to the tailer as a
//! [`PodMetadata`] so `discovery.kubernetes` targets get Alloy's `__meta_kubernetes_*` labels.
//!
//! Files are still found on disk: the API only enriches them. While the API server is slow or
//! away the store keeps the last known state; failed attempts are retried with growing delays
//! ([`backoff`]) and a `410 Gone` relists at once ([`watch`]). Every change of the pod index
//! bumps a generation the tailer checks, so the streams of a pod's open files switch to its
//! API labels as soon as the pod is known, and files of a pod not known yet may be held for
//! a short grace period ([`PodWatcher::with_grace`]).

pub mod backoff;
pub mod events;
pub mod labels;
pub mod remote;
pub mod watch;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Request};
use k8s_openapi::api::core::v1::Pod;
use kube::client::{Body, ClientBuilder};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use kube::{Api, Client};
use parking_lot::{Mutex, RwLock};

use crate::discovery::{PodIndex, PodMetadata};

/// Why no API client could be made.
#[derive(Debug, thiserror::Error)]
pub enum K8sError {
    #[error("Kubernetes client configuration: {0}")]
    Config(String),
    #[error("Kubernetes client: {0}")]
    Client(#[from] kube::Error),
}

/// `User-Agent` of every API request, so audit logs and API priority and fairness can tell
/// the agent apart.
pub const USER_AGENT: &str = concat!(env!("CARGO_PKG_NAME"), "/", env!("CARGO_PKG_VERSION"));

/// Default of how long lines of a file whose pod the API does not know yet are held back.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3);

type SetUserAgent = fn(Request<Body>) -> Request<Body>;

fn set_user_agent(mut req: Request<Body>) -> Request<Body> {
    req.headers_mut().insert(
        http::header::USER_AGENT,
        HeaderValue::from_static(USER_AGENT),
    );
    req
}

/// Adds the agent's `User-Agent` to every request the client builds.
pub fn with_user_agent<S>(
    b: ClientBuilder<S>,
) -> ClientBuilder<tower::util::MapRequest<S, SetUserAgent>> {
    b.with_layer(&tower::util::MapRequestLayer::new(
        set_user_agent as SetUserAgent,
    ))
}

/// A client over any HTTP service (tests: a mock API server), with the agent's `User-Agent`.
pub fn client_over<S>(service: S) -> Client
where
    S: tower::Service<Request<Body>, Response = http::Response<Body>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<tower::BoxError>,
{
    with_user_agent(ClientBuilder::new(service, "default")).build()
}

/// What the watch task publishes: the pod index and a generation bumped on each change.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    published: RwLock<(u64, PodIndex)>,
    synced: AtomicBool,
    last_error: Mutex<Option<String>>,
}

impl Shared {
    /// Marks the first list done; returns whether it already was.
    fn mark_synced(&self) -> bool {
        self.synced.swap(true, Ordering::Relaxed)
    }

    /// Rebuilds the index from the store; a different one gets a new generation.
    fn publish(&self, store: &Store<Pod>) {
        let pods = store.state();
        let index = labels::index(pods.iter().map(|p| p.as_ref()));
        let mut p = self.published.write();
        if p.1 != index || p.0 == 0 {
            p.0 += 1;
            p.1 = index;
        }
        *self.last_error.lock() = None;
    }

    fn set_last_error(&self, e: &str) {
        *self.last_error.lock() = Some(e.to_string());
    }
}

/// The pods of one node, watched through the API server.
#[derive(Clone)]
pub struct PodWatcher {
    store: Store<Pod>,
    shared: Arc<Shared>,
    node: String,
    grace: Duration,
}

impl std::fmt::Debug for PodWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodWatcher")
            .field("node", &self.node)
            .field("synced", &self.synced())
            .field("generation", &self.generation())
            .finish()
    }
}

impl PodWatcher {
    /// Starts watching the pods with `spec.nodeName=<node>` on the current tokio runtime.
    /// The task runs until the runtime stops. Files of unknown pods are not held (see
    /// [`with_grace`](Self::with_grace)).
    pub fn start(client: Client, node: &str) -> PodWatcher {
        let api: Api<Pod> = Api::all(client);
        let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
        let (store, writer) = reflector::store();
        let shared = Arc::new(Shared::default());
        tokio::spawn(watch::run(
            api,
            config,
            writer,
            store.clone(),
            shared.clone(),
            node.to_string(),
        ));
        PodWatcher {
            store,
            shared,
            node: node.to_string(),
            grace: Duration::ZERO,
        }
    }

    /// How long the lines of a file whose pod is not known yet may wait for its labels.
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
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

    /// The cause of the last failed attempt, until the next progress.
    pub fn last_error(&self) -> Option<String> {
        self.shared.last_error.lock().clone()
    }
}

impl PodMetadata for PodWatcher {
    fn snapshot(&self) -> PodIndex {
        self.shared.published.read().1.clone()
    }

    fn synced(&self) -> bool {
        self.shared.synced.load(Ordering::Relaxed)
    }

    fn generation(&self) -> u64 {
        self.shared.published.read().0
    }

    fn grace(&self) -> Duration {
        self.grace
    }
}

/// How long startup waits for the first pod list before tailing (the watch keeps trying in
/// the background; the open files switch to the API labels once it answers).
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
    Ok(Some(
        with_user_agent(ClientBuilder::try_from(config)?).build(),
    ))
}

/// An API client for `client { kubeconfig_file }`, else in-cluster or `$KUBECONFIG`.
pub async fn client_for(kubeconfig: Option<&std::path::Path>) -> Result<Client, K8sError> {
    match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| K8sError::Config(format!("{}: {e}", path.display())))?;
            let cfg = kube::Config::from_custom_kubeconfig(
                kc,
                &kube::config::KubeConfigOptions::default(),
            )
            .await
            .map_err(|e| K8sError::Config(format!("{}: {e}", path.display())))?;
            Ok(with_user_agent(kube::client::ClientBuilder::try_from(cfg)?).build())
        }
        None => client_from_env().await?.ok_or_else(|| {
            K8sError::Config(
                "no Kubernetes API configured (no in-cluster service environment, no KUBECONFIG, no client { kubeconfig_file })".into(),
            )
        }),
    }
}

/// The node to watch: `$NODE_NAME` (the downward API's `spec.nodeName`).
pub fn node_name_from_env() -> Option<String> {
    std::env::var("NODE_NAME").ok().filter(|n| !n.is_empty())
}

/// Starts the pod watcher when the environment allows it, logging which way discovery goes.
/// `grace`: see [`PodWatcher::with_grace`].
pub async fn start_from_env(grace: Duration) -> Option<PodWatcher> {
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
    let w = PodWatcher::start(client, &node).with_grace(grace);
    if w.wait_synced(STARTUP_WAIT).await {
        tracing::info!(node = %node, pods = w.pods().len(), "discovery.kubernetes: using the Kubernetes API for pod metadata");
    } else {
        let msg = "discovery.kubernetes: no pod list from the Kubernetes API yet; files get kubelet path labels and switch to the API labels once it answers";
        match w.last_error() {
            // The watch task has already warned with the cause.
            Some(cause) => {
                tracing::info!(node = %node, wait = ?STARTUP_WAIT, cause = %cause, "{msg}")
            }
            None => {
                tracing::warn!(node = %node, wait = ?STARTUP_WAIT, cause = "no answer yet", "{msg}")
            }
        }
    }
    Some(w)
}
