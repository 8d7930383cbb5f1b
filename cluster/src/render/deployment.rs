//! deployment.yaml and cloudnativepg.yaml: the PostgreSQL gallery's
//! workload, and the database cluster the chart may create for it.

use serde::Serialize;
use serde_json::{json, Value};

use super::statefulset::pod_template;
use super::Names;
use crate::values::{ChartValues, CloudNativePg};

/// deployment.yaml (gallery.store=postgres): interchangeable pods that follow
/// the database. CPU pods surge one new pod before stopping an old one; GPU
/// pods stop one first, so that no spare GPU is needed.
pub(super) fn deployment(names: &Names, v: &ChartValues, secrets: &[Value]) -> Value {
    let (max_surge, max_unavailable) = if v.gpu.enabled { (0, 1) } else { (1, 0) };
    let mut spec = json!({
        "selector": {"matchLabels": names.selector_labels()},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {
            "maxSurge": max_surge, "maxUnavailable": max_unavailable,
        }},
        "template": pod_template(names, v, secrets),
    });
    if !v.autoscaling.enabled {
        spec["replicas"] = json!(v.replica_count);
    }
    names.object("apps/v1", "Deployment", &names.fullname, spec)
}

/// The API version and kind of a CloudNativePG cluster.
pub(crate) const CNPG_API_VERSION: &str = "postgresql.cnpg.io/v1";
pub(crate) const CNPG_KIND: &str = "Cluster";

/// The part of CloudNativePG's `Cluster` spec the chart sets (the operator
/// defaults the rest).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ClusterSpec {
    instances: u32,
    bootstrap: Bootstrap,
    storage: Storage,
}

#[derive(Debug, Serialize)]
struct Bootstrap {
    initdb: InitDb,
}

#[derive(Debug, Serialize)]
struct InitDb {
    database: &'static str,
    owner: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Storage {
    size: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    storage_class: Option<String>,
}

/// cloudnativepg.yaml: a `Cluster` whose `<name>-app` and `<name>-ca` Secrets
/// the pods use. With persistence.keep Helm leaves it on uninstall (its
/// volumes are the gallery).
pub(super) fn cloudnativepg_cluster(names: &Names, v: &ChartValues) -> Value {
    let CloudNativePg {
        instances, storage, ..
    } = &v.gallery.postgres.cloudnativepg;
    let spec = ClusterSpec {
        instances: *instances,
        bootstrap: Bootstrap {
            initdb: InitDb {
                database: "kubevision",
                owner: "kubevision",
            },
        },
        storage: Storage {
            size: storage.size.0.clone(),
            storage_class: Some(storage.storage_class.clone()).filter(|c| !c.is_empty()),
        },
    };
    let mut obj = names.object(CNPG_API_VERSION, CNPG_KIND, &names.cnpg_name(), json!(spec));
    if v.persistence.keep {
        obj["metadata"]["annotations"] = json!({"helm.sh/resource-policy": "keep"});
    }
    obj
}
