//! Run-time side of `remote.kubernetes.secret` / `remote.kubernetes.configmap`: fetches the
//! named objects from the API server (the component's `client { kubeconfig_file }`, else
//! in-cluster or `$KUBECONFIG`) before the pipeline is built, then again every
//! `poll_frequency` ([`poll`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use parking_lot::Mutex;

use super::K8sError;
use crate::alloy::components::remote::{Fetched, Kind, RemoteSpec};

/// The data of one object, values decoded to strings (secret bytes as UTF-8, lossy).
pub async fn fetch_one(spec: &RemoteSpec) -> Result<BTreeMap<String, String>, K8sError> {
    let client = super::client_for(spec.kubeconfig_file.as_deref()).await?;
    let get = async {
        match spec.kind {
            Kind::Secret => {
                let api: Api<Secret> = Api::namespaced(client, &spec.namespace);
                let s = api.get(&spec.name).await?;
                Ok::<_, kube::Error>(
                    s.data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                        .collect(),
                )
            }
            Kind::ConfigMap => {
                let api: Api<ConfigMap> = Api::namespaced(client, &spec.namespace);
                Ok(api.get(&spec.name).await?.data.unwrap_or_default())
            }
        }
    };
    match tokio::time::timeout(spec.poll_timeout, get).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(K8sError::Config(format!(
            "timed out after {:?} (poll_timeout)",
            spec.poll_timeout
        ))),
    }
}

/// Fetches every component's object; the first failure names the component and the object.
pub async fn fetch(specs: &[RemoteSpec]) -> Result<Fetched, K8sError> {
    let mut out = Fetched::new();
    for s in specs {
        let data = fetch_one(s).await.map_err(|e| {
            K8sError::Config(format!("{}: reading {}/{}: {e}", s.id, s.namespace, s.name))
        })?;
        out.insert(s.id.clone(), data);
    }
    Ok(out)
}

/// Re-reads every object every `poll_frequency` (the read at startup is the baseline);
/// when an object's data changed, `on_change` gets every component's latest data, as Alloy
/// re-evaluates the components that use it. A failed read keeps the last values (warned
/// once per outage). Runs until aborted.
pub async fn poll(
    specs: Vec<RemoteSpec>,
    initial: Fetched,
    on_change: Arc<dyn Fn(&Fetched) + Send + Sync>,
) {
    let current = Arc::new(Mutex::new(initial));
    let tasks: Vec<_> = specs
        .into_iter()
        .map(|spec| tokio::spawn(poll_one(spec, current.clone(), on_change.clone())))
        .collect();
    // Aborting this task must stop the pollers too.
    struct AbortAll(Vec<tokio::task::JoinHandle<()>>);
    impl Drop for AbortAll {
        fn drop(&mut self) {
            for t in &self.0 {
                t.abort();
            }
        }
    }
    let _pollers = AbortAll(tasks);
    futures::future::pending::<()>().await;
}

async fn poll_one(
    spec: RemoteSpec,
    current: Arc<Mutex<Fetched>>,
    on_change: Arc<dyn Fn(&Fetched) + Send + Sync>,
) {
    let object = format!("{}/{}", spec.namespace, spec.name);
    let mut tick = tokio::time::interval(spec.poll_frequency);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate; the startup read stands for it.
    tick.tick().await;
    let mut failing = false;
    loop {
        tick.tick().await;
        match fetch_one(&spec).await {
            Ok(data) => {
                if std::mem::take(&mut failing) {
                    tracing::info!(component = %spec.id, object = %object, "re-reading works again");
                }
                let changed = {
                    let mut c = current.lock();
                    if c.get(&spec.id) == Some(&data) {
                        None
                    } else {
                        c.insert(spec.id.clone(), data);
                        Some(c.clone())
                    }
                };
                if let Some(all) = changed {
                    tracing::info!(component = %spec.id, object = %object, "data changed in the Kubernetes API; applying it");
                    on_change(&all);
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(component = %spec.id, object = %object, error = %e, "re-reading failed; keeping the last values read (logged again when it works)");
                }
                failing = true;
            }
        }
    }
}
