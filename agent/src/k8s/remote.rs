//! Run-time side of `remote.kubernetes.secret` / `remote.kubernetes.configmap`: fetches the
//! named objects from the API server (the component's `client { kubeconfig_file }`, else
//! in-cluster or `$KUBECONFIG`) before the pipeline is built.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, Client};

use super::{client_from_env, K8sError};
use crate::alloy::components::remote::{Fetched, Kind, RemoteSpec};

/// A client for one component.
async fn client_for(spec: &RemoteSpec) -> Result<Client, K8sError> {
    match &spec.kubeconfig_file {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| K8sError::Config(format!("{}: {e}", path.display())))?;
            let cfg = kube::Config::from_custom_kubeconfig(
                kc,
                &kube::config::KubeConfigOptions::default(),
            )
            .await
            .map_err(|e| K8sError::Config(format!("{}: {e}", path.display())))?;
            Ok(Client::try_from(cfg)?)
        }
        None => client_from_env().await?.ok_or_else(|| {
            K8sError::Config(
                "no Kubernetes API configured (no in-cluster service environment, no KUBECONFIG, no client { kubeconfig_file })".into(),
            )
        }),
    }
}

/// The data of one object, values decoded to strings (secret bytes as UTF-8, lossy).
pub async fn fetch_one(spec: &RemoteSpec) -> Result<BTreeMap<String, String>, K8sError> {
    let client = client_for(spec).await?;
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

/// Re-reads the object every `poll_frequency` and warns when its data changed: values are
/// applied at startup only (Alloy would re-evaluate the components using them), so the
/// operator learns that a restart is needed. The first read is the baseline.
pub async fn warn_on_change(spec: RemoteSpec) {
    let mut tick = tokio::time::interval(spec.poll_frequency);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<BTreeMap<String, String>> = None;
    loop {
        tick.tick().await;
        match fetch_one(&spec).await {
            Ok(d) => {
                if last.as_ref().is_some_and(|l| *l != d) {
                    tracing::warn!(component = %spec.id, object = %format!("{}/{}", spec.namespace, spec.name), "data changed in the Kubernetes API; this agent applies remote.kubernetes data at startup only: restart it to use the new values");
                }
                last = Some(d);
            }
            Err(e) => {
                tracing::warn!(component = %spec.id, error = %e, "re-reading failed; keeping the values read at startup")
            }
        }
    }
}
