//! statefulset.yaml and _pod.tpl with the helpers it includes: the SQLite
//! workload, and the pods of either workload with their scheduling,
//! resources and volumes.

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::{or_default, Names};
use crate::certmanager;
use crate::values::{ChartValues, Store};

const DATA_DIR: &str = "/var/lib/kubevision";
const TLS_DIR: &str = "/etc/kubevision/tls";
const DB_CA_DIR: &str = "/etc/kubevision/db-ca";
const KIOSK_CA_DIR: &str = "/etc/kubevision/kiosk-ca";
const IDENTITIES_DIR: &str = "/etc/kubevision/identities";

/// statefulset.yaml (gallery.store=sqlite): one pod and its gallery claim.
pub(super) fn statefulset(names: &Names, v: &ChartValues, secrets: &[Value]) -> Value {
    let mut spec = json!({
        "serviceName": names.headless(),
        "podManagementPolicy": "Parallel",
        "selector": {"matchLabels": names.selector_labels()},
        "template": pod_template(names, v, secrets),
    });
    if !v.autoscaling.enabled {
        spec["replicas"] = json!(v.replica_count);
    }
    if v.persistence.enabled {
        let when_deleted = if v.persistence.keep {
            "Retain"
        } else {
            "Delete"
        };
        spec["persistentVolumeClaimRetentionPolicy"] =
            json!({"whenDeleted": when_deleted, "whenScaled": "Retain"});
        let mut claim = json!({
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": v.persistence.size}},
        });
        if !v.persistence.storage_class.is_empty() {
            claim["storageClassName"] = json!(v.persistence.storage_class);
        }
        spec["volumeClaimTemplates"] = json!([{
            "metadata": {"name": "data", "labels": names.selector_labels()},
            "spec": claim,
        }]);
    }
    names.object("apps/v1", "StatefulSet", &names.fullname, spec)
}

/// _pod.tpl "kubevision.podTemplate": the same pods for either workload.
pub(super) fn pod_template(names: &Names, v: &ChartValues, secrets: &[Value]) -> Value {
    let mut template = json!({"metadata": {"labels": names.labels()}, "spec": pod_spec(names, v)});
    let mut annotations: Map<String, Value> = Map::new();
    if !secrets.is_empty() {
        // Restarts the pods when the Secrets change (the token is read once at start).
        annotations.insert("checksum/secrets".into(), json!(checksum(secrets)));
    }
    annotations.extend(
        v.pod_annotations
            .iter()
            .map(|(k, val)| (k.clone(), json!(val))),
    );
    if !annotations.is_empty() {
        template["metadata"]["annotations"] = Value::Object(annotations);
    }
    template
}

/// Helm hashes the text of secrets.yaml; any digest that changes with the
/// Secrets restarts the pods just as well, so this one hashes their JSON.
fn checksum(secrets: &[Value]) -> String {
    let mut hasher = Sha256::new();
    for secret in secrets {
        hasher.update(secret.to_string());
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn pod_spec(names: &Names, v: &ChartValues) -> Value {
    let mut pod = json!({
        "automountServiceAccountToken": false,
        "securityContext": v.pod_security_context,
        "containers": [container(names, v)],
        "volumes": volumes(names, v),
    });
    if !v.image_pull_secrets.is_empty() {
        pod["imagePullSecrets"] = json!(v.image_pull_secrets);
    }
    scheduling(&mut pod, v);
    pod
}

/// _helpers.tpl "kubevision.scheduling": GPU node selector and tolerations, then the site affinity.
fn scheduling(pod: &mut Value, v: &ChartValues) {
    let mut node_selector = v.node_selector.clone();
    let mut tolerations = v.tolerations.clone();
    if v.gpu.enabled {
        // Helm's `merge`: the user's nodeSelector wins over the GPU one.
        for (k, val) in &v.gpu.node_selector {
            node_selector
                .entry(k.clone())
                .or_insert_with(|| val.clone());
        }
        tolerations.splice(0..0, v.gpu.tolerations.iter().cloned());
        if !v.gpu.runtime_class_name.is_empty() {
            pod["runtimeClassName"] = json!(v.gpu.runtime_class_name);
        }
    }
    if !node_selector.is_empty() {
        pod["nodeSelector"] = json!(node_selector);
    }
    if !tolerations.is_empty() {
        pod["tolerations"] = json!(tolerations);
    }
    let p = &v.placement;
    if !p.site.is_empty() {
        let term = json!({"matchExpressions": [{"key": p.label_key, "operator": "In", "values": [p.site]}]});
        pod["affinity"] = if p.required {
            json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}})
        } else {
            json!({"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "preference": term}
            ]}})
        };
    }
}

fn container(names: &Names, v: &ChartValues) -> Value {
    let chart_tag = || names.app_version.clone();
    let mut tag = or_default(&v.image.tag, chart_tag);
    if v.gpu.enabled {
        tag.push_str(&v.image.cuda_tag_suffix);
    }
    let backend = or_default(&v.backend, || {
        (if v.gpu.enabled { "cuda" } else { "cpu" }).to_owned()
    });
    let env_value = |name: &str, value: String| json!({"name": name, "value": value});
    let mut env = vec![
        env_value("KUBEVISION_LISTEN", format!("0.0.0.0:{}", v.ports.grpc)),
        env_value(
            "KUBEVISION_METRICS_LISTEN",
            format!("0.0.0.0:{}", v.ports.metrics),
        ),
        env_value("KUBEVISION_DATA_DIR", DATA_DIR.to_owned()),
        env_value("KUBEVISION_BACKEND", backend),
        env_value("KUBEVISION_RECOGNISER", v.recogniser.clone()),
    ];
    let store = names.store(v);
    if let Some(store) = &store {
        env.push(
            json!({"name": "KUBEVISION_STORE", "valueFrom": {"secretKeyRef": {
                "name": store.secret, "key": store.key,
            }}}),
        );
        if let Some((_, key)) = &store.ca {
            env.push(env_value(
                "KUBEVISION_STORE_CA_FILE",
                format!("{DB_CA_DIR}/{key}"),
            ));
        }
        env.push(env_value(
            "KUBEVISION_CATCH_UP_SECS",
            v.gallery.catch_up_seconds.to_string(),
        ));
    }
    if v.tls.enabled {
        env.push(env_value(
            "KUBEVISION_TLS_CERT",
            format!("{TLS_DIR}/tls.crt"),
        ));
        env.push(env_value(
            "KUBEVISION_TLS_KEY",
            format!("{TLS_DIR}/tls.key"),
        ));
        if v.tls.mtls {
            let dir = if v.auth.kiosk_ca.cert_manager {
                KIOSK_CA_DIR
            } else {
                TLS_DIR
            };
            env.push(env_value(
                "KUBEVISION_TLS_CLIENT_CA",
                format!("{dir}/ca.crt"),
            ));
        }
    }
    if v.auth.uses_identities() {
        env.push(env_value(
            "KUBEVISION_IDENTITIES",
            IDENTITIES_DIR.to_owned(),
        ));
    }
    if !v.auth.token.is_empty() || !v.auth.existing_secret.is_empty() {
        let key = if v.auth.existing_secret.is_empty() {
            "token"
        } else {
            &v.auth.existing_secret_key
        };
        env.push(
            json!({"name": "KUBEVISION_TOKEN", "valueFrom": {"secretKeyRef": {
                "name": names.token_secret(v), "key": key,
            }}}),
        );
    }
    if !v.auth.plant_pepper_id.is_empty() {
        // Only hashes keyed with the plant's pepper are accepted.
        env.push(env_value(
            "KUBEVISION_PLANT_PEPPER_ID",
            v.auth.plant_pepper_id.clone(),
        ));
    }
    if v.auth.allow_unauthenticated {
        // The trial opt-in: without credentials the service refuses to start.
        env.push(env_value(
            "KUBEVISION_ALLOW_UNAUTHENTICATED",
            "true".to_owned(),
        ));
    }
    env.extend(v.extra_env.iter().map(|e| json!(e)));

    // kubelet's gRPC probe speaks plain text only: with TLS, a TCP connect.
    let probe = |period: u32, failures: u32| {
        let action = if v.tls.enabled { "tcpSocket" } else { "grpc" };
        json!({action: {"port": v.ports.grpc}, "periodSeconds": period, "failureThreshold": failures})
    };
    let mut mounts = vec![
        json!({"name": "data", "mountPath": DATA_DIR}),
        json!({"name": "tmp", "mountPath": "/tmp"}),
    ];
    if v.tls.enabled {
        mounts.push(json!({"name": "tls", "mountPath": TLS_DIR, "readOnly": true}));
    }
    if store.is_some_and(|s| s.ca.is_some()) {
        mounts.push(json!({"name": "db-ca", "mountPath": DB_CA_DIR, "readOnly": true}));
    }
    if v.auth.kiosk_ca.cert_manager {
        mounts.push(json!({"name": "kiosk-ca", "mountPath": KIOSK_CA_DIR, "readOnly": true}));
    }
    if v.auth.uses_identities() {
        mounts.push(json!({"name": "identities", "mountPath": IDENTITIES_DIR, "readOnly": true}));
    }
    json!({
        "name": "offload",
        "image": format!("{}:{tag}", v.image.repository),
        "imagePullPolicy": v.image.pull_policy,
        "securityContext": v.security_context,
        "env": env,
        "ports": [
            {"name": "grpc", "containerPort": v.ports.grpc, "protocol": "TCP"},
            {"name": "metrics", "containerPort": v.ports.metrics, "protocol": "TCP"},
        ],
        "startupProbe": probe(5, 60),
        "livenessProbe": probe(10, 3),
        "readinessProbe": probe(5, 2),
        "resources": resources(v),
        "volumeMounts": mounts,
    })
}

/// _helpers.tpl "kubevision.resources": the values' resources plus the GPU limit.
fn resources(v: &ChartValues) -> Value {
    let mut resources = json!(v.resources);
    if v.gpu.enabled {
        if resources.get("limits").is_none() {
            resources["limits"] = json!({});
        }
        resources["limits"][&v.gpu.resource_name] = json!(v.gpu.count.to_string());
    }
    resources
}

fn volumes(names: &Names, v: &ChartValues) -> Value {
    let mut volumes = Vec::new();
    // With PostgreSQL the data directory is scratch: the pods hold no state.
    if v.gallery.store == Store::Postgres || !v.persistence.enabled {
        volumes.push(json!({"name": "data", "emptyDir": {}}));
    }
    volumes.push(json!({"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}));
    if v.tls.enabled {
        volumes.push(json!({"name": "tls", "secret": {"secretName": names.tls_secret(v)}}));
    }
    if let Some((secret, key)) = names.store(v).and_then(|s| s.ca) {
        // Only the certificate: a CloudNativePG <cluster>-ca Secret also holds the CA's key.
        volumes.push(json!({"name": "db-ca", "secret": {
            "secretName": secret,
            "items": [{"key": key, "path": key}],
        }}));
    }
    if v.auth.kiosk_ca.cert_manager {
        // Only the CA's certificate: its Secret also holds the CA's key.
        volumes.push(json!({"name": "kiosk-ca", "secret": {
            "secretName": certmanager::kiosk_ca_name(&names.fullname),
            "items": [{"key": "ca.crt", "path": "ca.crt"}],
        }}));
    }
    if v.auth.uses_identities() {
        let mut sources = Vec::new();
        if !v.auth.identities.is_empty() {
            sources.push(json!({"secret": {"name": names.identities_secret()}}));
        }
        if !v.auth.existing_identities_secret.is_empty() {
            sources.push(json!({"secret": {"name": v.auth.existing_identities_secret}}));
        }
        if v.auth.kiosk_ca.cert_manager {
            // Written by register-kiosk; absent until the first registration.
            sources.push(json!({"secret": {
                "name": certmanager::kiosks_secret_name(&names.fullname),
                "optional": true,
            }}));
        }
        volumes.push(json!({"name": "identities", "projected": {"sources": sources}}));
    }
    json!(volumes)
}
