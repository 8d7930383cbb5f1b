//! Realistic API bodies: nodes of the plant's hybrid k3s cluster, and the
//! StatefulSet's pods in the states a rollout meets.

use kubevision_cluster::{Connection, DeployValues};
use serde_json::{json, Value};

use crate::fake_api::FakeApi;

pub const RELEASE: &str = "kv";
pub const NAMESPACE: &str = "kubevision";
pub const FULLNAME: &str = "kv-kubevision-offload";
pub const STS_PATH: &str = "/apis/apps/v1/namespaces/kubevision/statefulsets/kv-kubevision-offload";
pub const REVISION: &str = "kv-kubevision-offload-6d8f9c7b5d";
pub const DEPLOY_PATH: &str =
    "/apis/apps/v1/namespaces/kubevision/deployments/kv-kubevision-offload";
/// The pod-template-hash of the Deployment's current ReplicaSet.
pub const TEMPLATE_HASH: &str = "7c9d5b8f4d";

pub fn values_file(set: &str) -> String {
    let path = format!(
        "{}/../tests/chart/values/{set}.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn values(set: &str) -> DeployValues {
    DeployValues::new(RELEASE, NAMESPACE, &values_file(set)).unwrap()
}

pub async fn connect(fake: &FakeApi, dir: &tempfile::TempDir) -> Connection {
    Connection::from_kubeconfig(&fake.kubeconfig(dir.path()), None)
        .await
        .unwrap()
}

/// A fake cluster with the plant's nodes, connected, with `set` deployed.
pub async fn deployed(
    set: &str,
    nodes: Vec<Value>,
) -> (FakeApi, Connection, DeployValues, tempfile::TempDir) {
    let fake = FakeApi::start().await;
    for node in nodes {
        fake.put(node);
    }
    let dir = tempfile::tempdir().unwrap();
    let conn = connect(&fake, &dir).await;
    let values = values(set);
    kubevision_cluster::deploy(&conn, &values).await.unwrap();
    (fake, conn, values, dir)
}

pub fn node(name: &str, hardware: Option<&str>, gpus: u32, ready: bool) -> Value {
    let mut labels = json!({
        "beta.kubernetes.io/arch": "amd64", "kubernetes.io/arch": "amd64", "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux", "node.kubernetes.io/instance-type": "k3s",
    });
    let mut capacity = json!({"cpu": "16", "ephemeral-storage": "479079112Ki", "memory": "65776572Ki", "pods": "110"});
    let mut taints = json!([]);
    if let Some(hardware) = hardware {
        labels["hardware"] = json!(hardware);
    }
    if gpus > 0 {
        capacity["nvidia.com/gpu"] = json!(gpus.to_string());
        taints = json!([{"key": "hardware", "value": "gpu", "effect": "NoSchedule"}]);
    }
    let (ready_status, reason, message) = if ready {
        ("True", "KubeletReady", "kubelet is posting ready status")
    } else {
        (
            "Unknown",
            "NodeStatusUnknown",
            "Kubelet stopped posting node status.",
        )
    };
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels, "annotations": {"k3s.io/node-args": "[\"agent\"]"}},
        "spec": {"podCIDR": "10.42.1.0/24", "podCIDRs": ["10.42.1.0/24"], "providerID": format!("k3s://{name}"), "taints": taints},
        "status": {
            "capacity": capacity.clone(),
            "allocatable": capacity,
            "conditions": [
                {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory",
                 "lastHeartbeatTime": "2026-11-23T01:58:00Z", "lastTransitionTime": "2026-11-20T08:00:00Z"},
                {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure",
                 "lastHeartbeatTime": "2026-11-23T01:58:00Z", "lastTransitionTime": "2026-11-20T08:00:00Z"},
                {"type": "Ready", "status": ready_status, "reason": reason, "message": message,
                 "lastHeartbeatTime": "2026-11-23T01:58:00Z", "lastTransitionTime": "2026-11-20T08:00:00Z"},
            ],
            "nodeInfo": {"kubeletVersion": "v1.30.6+k3s1", "containerRuntimeVersion": "containerd://1.7.22-k3s1",
                         "operatingSystem": "linux", "architecture": "amd64", "osImage": "Debian GNU/Linux 12 (bookworm)"},
        },
    })
}

/// gpu-1 (2 GPUs, tainted), line-server-1 (premise) and cloud-1 (cloud, not ready).
pub fn plant_nodes() -> Vec<Value> {
    vec![
        node("gpu-1", Some("gpu"), 2, true),
        node("line-server-1", Some("premise"), 0, true),
        node("cloud-1", Some("cloud"), 0, false),
    ]
}

/// The StatefulSet as the fake stores it after `deploy`, with the status its
/// controller would write.
pub fn statefulset_with(fake: &FakeApi, ready: i32) -> Value {
    with_status(
        fake.get(STS_PATH).expect("deploy stored the StatefulSet"),
        ready,
    )
}

/// A stored StatefulSet with `ready` replicas ready, as its controller reports.
pub fn with_status(mut set: Value, ready: i32) -> Value {
    let replicas = set["spec"]["replicas"].as_i64().unwrap_or(1);
    set["status"] = json!({
        "observedGeneration": set["metadata"]["generation"], "replicas": replicas,
        "readyReplicas": ready, "availableReplicas": ready, "currentReplicas": replicas, "updatedReplicas": replicas,
        "currentRevision": REVISION, "updateRevision": REVISION, "collisionCount": 0,
    });
    set
}

/// The Deployment as the fake stores it after `deploy`, with the status its
/// controller writes once every replica runs the current template and
/// `ready` of them are ready.
pub fn deployment_with(fake: &FakeApi, ready: i32) -> Value {
    let mut deployment = fake.get(DEPLOY_PATH).expect("deploy stored the Deployment");
    let replicas = deployment["spec"]["replicas"].as_i64().unwrap_or(1);
    let progressing = if ready as i64 >= replicas {
        (
            "NewReplicaSetAvailable",
            format!("ReplicaSet \"{FULLNAME}-{TEMPLATE_HASH}\" has successfully progressed."),
        )
    } else {
        (
            "ReplicaSetUpdated",
            format!("ReplicaSet \"{FULLNAME}-{TEMPLATE_HASH}\" is progressing."),
        )
    };
    deployment["status"] = json!({
        "observedGeneration": deployment["metadata"]["generation"], "replicas": replicas,
        "updatedReplicas": replicas, "readyReplicas": ready, "availableReplicas": ready,
        "unavailableReplicas": replicas - ready as i64,
        "conditions": [
            {"type": "Available", "status": if ready as i64 >= replicas { "True" } else { "False" },
             "reason": if ready as i64 >= replicas { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" },
             "lastUpdateTime": "2026-11-23T02:00:20Z", "lastTransitionTime": "2026-11-23T02:00:20Z"},
            {"type": "Progressing", "status": "True", "reason": progressing.0, "message": progressing.1,
             "lastUpdateTime": "2026-11-23T02:00:20Z", "lastTransitionTime": "2026-11-23T02:00:02Z"},
        ],
    });
    deployment
}

/// A replica of the deployed Deployment (named by its ReplicaSet and `suffix`), with `status`.
pub fn deployment_pod(fake: &FakeApi, suffix: &str, status: Value) -> Value {
    let deployment = fake.get(DEPLOY_PATH).expect("deploy stored the Deployment");
    let replica_set = format!("{FULLNAME}-{TEMPLATE_HASH}");
    let name = format!("{replica_set}-{suffix}");
    let mut labels = deployment["spec"]["template"]["metadata"]["labels"].clone();
    labels["pod-template-hash"] = json!(TEMPLATE_HASH);
    let mut spec = deployment["spec"]["template"]["spec"].clone();
    spec["restartPolicy"] = json!("Always");
    spec["schedulerName"] = json!("default-scheduler");
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": NAMESPACE, "labels": labels,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": replica_set,
                                 "uid": "5d0c2b1e-7a4f-4c55-9d1e-0b6f3e2a9c11", "controller": true, "blockOwnerDeletion": true}],
        },
        "spec": spec,
        "status": status,
    })
}

/// Replica `ordinal` of the deployed StatefulSet, with `status`.
pub fn pod(fake: &FakeApi, ordinal: u32, status: Value) -> Value {
    let set = fake.get(STS_PATH).expect("deploy stored the StatefulSet");
    let name = format!("{FULLNAME}-{ordinal}");
    let mut labels = set["spec"]["template"]["metadata"]["labels"].clone();
    labels["controller-revision-hash"] = json!(REVISION);
    labels["statefulset.kubernetes.io/pod-name"] = json!(name);
    labels["apps.kubernetes.io/pod-index"] = json!(ordinal.to_string());
    let mut spec = set["spec"]["template"]["spec"].clone();
    spec["hostname"] = json!(name);
    spec["subdomain"] = json!(format!("{FULLNAME}-headless"));
    spec["restartPolicy"] = json!("Always");
    spec["schedulerName"] = json!("default-scheduler");
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": NAMESPACE, "labels": labels,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": FULLNAME,
                                 "uid": set["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}],
        },
        "spec": spec,
        "status": status,
    })
}

fn condition(kind: &str, status: &str) -> Value {
    json!({"type": kind, "status": status, "lastProbeTime": null, "lastTransitionTime": "2026-11-23T02:00:05Z"})
}

pub fn unschedulable(message: &str) -> Value {
    json!({
        "phase": "Pending", "qosClass": "Burstable",
        "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
                        "lastProbeTime": null, "lastTransitionTime": "2026-11-23T02:00:03Z"}],
    })
}

fn container_status(
    image: &str,
    ready: bool,
    restarts: u32,
    state: Value,
    last_state: Value,
) -> Value {
    json!({
        "phase": if ready { "Running" } else { "Pending" }, "qosClass": "Burstable",
        "hostIP": "10.10.0.21", "podIP": "10.42.1.17", "startTime": "2026-11-23T02:00:04Z",
        "conditions": [condition("PodScheduled", "True"), condition("Initialized", "True"),
                       condition("ContainersReady", if ready { "True" } else { "False" }),
                       condition("Ready", if ready { "True" } else { "False" })],
        "containerStatuses": [{
            "name": "offload", "image": image, "imageID": if ready { "ghcr.io/kubevision/kubevision-offload@sha256:5c1f" } else { "" },
            "ready": ready, "started": ready, "restartCount": restarts, "state": state, "lastState": last_state,
        }],
    })
}

pub fn image_pull_backoff(image: &str) -> Value {
    container_status(
        image,
        false,
        0,
        json!({"waiting": {
            "reason": "ImagePullBackOff",
            "message": format!("Back-off pulling image \"{image}\": ErrImagePull: failed to pull and unpack image \"{image}\": failed to resolve reference \"{image}\": {image}: not found"),
        }}),
        json!({}),
    )
}

pub fn crash_loop(image: &str) -> Value {
    container_status(
        image,
        false,
        4,
        json!({"waiting": {
            "reason": "CrashLoopBackOff",
            "message": format!("back-off 1m20s restarting failed container=offload pod={FULLNAME}-0_kubevision(3f0c)"),
        }}),
        json!({"terminated": {"exitCode": 1, "reason": "Error", "startedAt": "2026-11-23T02:01:10Z", "finishedAt": "2026-11-23T02:01:11Z",
                               "containerID": "containerd://9a7e"}}),
    )
}

pub fn running(image: &str, ready: bool) -> Value {
    container_status(
        image,
        ready,
        0,
        json!({"running": {"startedAt": "2026-11-23T02:00:09Z"}}),
        json!({}),
    )
}

pub fn pod_path(ordinal: u32) -> String {
    format!("/api/v1/namespaces/{NAMESPACE}/pods/{FULLNAME}-{ordinal}")
}
