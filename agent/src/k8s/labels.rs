//! Alloy's `discovery.kubernetes` (role `pod`) target labels for a pod's containers, from a
//! `Pod` object: `__meta_kubernetes_*` as in the spec's §2.4 (one target per container, init
//! containers included; per-port targets are not produced, a log file has no port).

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{Container, ContainerStatus, Pod};

use crate::discovery::PodIndex;

const P: &str = "__meta_kubernetes_";

pub use crate::discovery::sanitize_label_name as sanitize;

fn set(l: &mut BTreeMap<String, String>, name: &str, v: impl Into<String>) {
    l.insert(format!("{P}{name}"), v.into());
}

/// The labels every container of `pod` shares.
pub fn pod_labels(pod: &Pod) -> BTreeMap<String, String> {
    let mut l = BTreeMap::new();
    let m = &pod.metadata;
    set(&mut l, "namespace", m.namespace.clone().unwrap_or_default());
    set(&mut l, "pod_name", m.name.clone().unwrap_or_default());
    set(&mut l, "pod_uid", m.uid.clone().unwrap_or_default());
    for (k, v) in m.labels.iter().flatten() {
        let n = sanitize(k);
        set(&mut l, &format!("pod_label_{n}"), v.clone());
        set(&mut l, &format!("pod_labelpresent_{n}"), "true");
    }
    for (k, v) in m.annotations.iter().flatten() {
        let n = sanitize(k);
        set(&mut l, &format!("pod_annotation_{n}"), v.clone());
        set(&mut l, &format!("pod_annotationpresent_{n}"), "true");
    }
    if let Some(owner) = m
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
    {
        set(&mut l, "pod_controller_kind", owner.kind.clone());
        set(&mut l, "pod_controller_name", owner.name.clone());
    }
    if let Some(spec) = &pod.spec {
        set(
            &mut l,
            "pod_node_name",
            spec.node_name.clone().unwrap_or_default(),
        );
    }
    let status = pod.status.as_ref();
    set(
        &mut l,
        "pod_ip",
        status.and_then(|s| s.pod_ip.clone()).unwrap_or_default(),
    );
    set(
        &mut l,
        "pod_host_ip",
        status.and_then(|s| s.host_ip.clone()).unwrap_or_default(),
    );
    set(
        &mut l,
        "pod_phase",
        status.and_then(|s| s.phase.clone()).unwrap_or_default(),
    );
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .map(|c| match c.status.as_str() {
            "True" => "true",
            "False" => "false",
            _ => "unknown",
        })
        .unwrap_or("unknown");
    set(&mut l, "pod_ready", ready);
    l
}

fn container_id(statuses: Option<&Vec<ContainerStatus>>, name: &str) -> String {
    statuses
        .and_then(|s| s.iter().find(|s| s.name == name))
        .and_then(|s| s.container_id.clone())
        .unwrap_or_default()
}

/// One label set per container (init containers first, then the regular ones).
pub fn container_labels(pod: &Pod) -> Vec<(String, BTreeMap<String, String>)> {
    let base = pod_labels(pod);
    let Some(spec) = &pod.spec else {
        return Vec::new();
    };
    let status = pod.status.as_ref();
    let one = |c: &Container, init: bool, statuses: Option<&Vec<ContainerStatus>>| {
        let mut l = base.clone();
        set(&mut l, "pod_container_name", c.name.clone());
        set(
            &mut l,
            "pod_container_image",
            c.image.clone().unwrap_or_default(),
        );
        set(
            &mut l,
            "pod_container_init",
            if init { "true" } else { "false" },
        );
        set(&mut l, "pod_container_id", container_id(statuses, &c.name));
        (c.name.clone(), l)
    };
    let mut out = Vec::new();
    for c in spec.init_containers.iter().flatten() {
        out.push(one(
            c,
            true,
            status.and_then(|s| s.init_container_statuses.as_ref()),
        ));
    }
    for c in &spec.containers {
        out.push(one(
            c,
            false,
            status.and_then(|s| s.container_statuses.as_ref()),
        ));
    }
    out
}

/// Indexes pods by uid and, for static pods, by their mirror hash (their log directory name).
pub fn index<'a>(pods: impl IntoIterator<Item = &'a Pod>) -> PodIndex {
    let mut idx = PodIndex::default();
    for pod in pods {
        let containers: HashMap<String, BTreeMap<String, String>> =
            container_labels(pod).into_iter().collect();
        let m = &pod.metadata;
        if let Some(hash) = m
            .annotations
            .as_ref()
            .and_then(|a| a.get("kubernetes.io/config.mirror"))
        {
            idx.pods.insert(hash.clone(), containers.clone());
        }
        if let Some(uid) = &m.uid {
            idx.pods.insert(uid.clone(), containers);
        }
    }
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "web-0",
                "namespace": "shop",
                "uid": "u-1",
                "labels": {"app.kubernetes.io/name": "web"},
                "annotations": {"kubernetes.io/config.mirror": "hash1"},
                "ownerReferences": [
                    {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "o", "controller": true}
                ]
            },
            "spec": {
                "nodeName": "node-1",
                "initContainers": [{"name": "init", "image": "busybox"}],
                "containers": [{"name": "app", "image": "nginx:1"}]
            },
            "status": {
                "phase": "Running",
                "podIP": "10.0.0.7",
                "hostIP": "192.168.1.2",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{"name": "app", "containerID": "containerd://abc", "image": "nginx:1", "imageID": "", "ready": true, "restartCount": 0}]
            }
        }))
        .expect("pod json")
    }

    #[test]
    fn labels_follow_alloy_names() {
        let c = container_labels(&pod());
        assert_eq!(c.len(), 2);
        let (name, l) = &c[1];
        assert_eq!(name, "app");
        let get = |k: &str| l.get(&format!("{P}{k}")).map(String::as_str);
        assert_eq!(get("namespace"), Some("shop"));
        assert_eq!(get("pod_name"), Some("web-0"));
        assert_eq!(get("pod_uid"), Some("u-1"));
        assert_eq!(get("pod_node_name"), Some("node-1"));
        assert_eq!(get("pod_label_app_kubernetes_io_name"), Some("web"));
        assert_eq!(get("pod_labelpresent_app_kubernetes_io_name"), Some("true"));
        assert_eq!(
            get("pod_annotation_kubernetes_io_config_mirror"),
            Some("hash1")
        );
        assert_eq!(get("pod_controller_kind"), Some("StatefulSet"));
        assert_eq!(get("pod_controller_name"), Some("web"));
        assert_eq!(get("pod_container_image"), Some("nginx:1"));
        assert_eq!(get("pod_container_init"), Some("false"));
        assert_eq!(get("pod_container_id"), Some("containerd://abc"));
        assert_eq!(get("pod_phase"), Some("Running"));
        assert_eq!(get("pod_ready"), Some("true"));
        assert_eq!(get("pod_ip"), Some("10.0.0.7"));
        assert_eq!(c[0].1[&format!("{P}pod_container_init")], "true");
    }

    #[test]
    fn index_by_uid_and_mirror_hash() {
        let p = pod();
        let idx = index([&p]);
        assert!(idx.container("u-1", "app").is_some());
        assert!(idx.container("hash1", "init").is_some());
        assert!(idx.container("u-1", "nope").is_none());
    }
}
