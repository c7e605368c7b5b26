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
