//! The kinds of object the chart renders, for applying, listing and deleting
//! them without a discovery round trip, and the label selectors of a release.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::Client;

use crate::error::{is_not_found, Error};
use crate::values::Release;

/// One object of a release, as `kubectl` would name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub kind: String,
    pub name: String,
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

impl ObjectRef {
    pub(crate) fn of(obj: &DynamicObject) -> Self {
        ObjectRef {
            kind: obj
                .types
                .as_ref()
                .map(|t| t.kind.clone())
                .unwrap_or_default(),
            name: obj.metadata.name.clone().unwrap_or_default(),
        }
    }
}

/// The kinds of the workload: a StatefulSet (SQLite) or a Deployment (PostgreSQL).
pub(crate) const WORKLOAD_KINDS: [&str; 2] = ["StatefulSet", "Deployment"];

/// CloudNativePG's API group: its `Cluster` holds the PostgreSQL gallery.
pub(crate) const CNPG_GROUP: &str = "postgresql.cnpg.io";

pub(crate) fn is_workload(obj: &DynamicObject) -> bool {
    obj.types
        .as_ref()
        .is_some_and(|t| t.api_version == "apps/v1" && WORKLOAD_KINDS.contains(&t.kind.as_str()))
}

/// The CloudNativePG `Cluster`: its volumes are the PostgreSQL gallery.
pub(crate) fn is_database(obj: &DynamicObject) -> bool {
    obj.types.as_ref().is_some_and(|t| {
        t.api_version == crate::render::CNPG_API_VERSION && t.kind == crate::render::CNPG_KIND
    })
}

/// Every kind the chart can render, in the order they are applied: what the
/// pods use (Secrets, Services, the database) before the workload, the
/// autoscaler last.
pub(crate) fn release_kinds() -> Vec<ApiResource> {
    let custom = |group: &str, kind: &str, plural: &str| {
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, "v1", kind), plural)
    };
    let cert_manager = |kind: &str, plural: &str| custom("cert-manager.io", kind, plural);
    vec![
        ApiResource::erase::<Secret>(&()),
        ApiResource::erase::<Service>(&()),
        ApiResource::erase::<NetworkPolicy>(&()),
        ApiResource::erase::<PodDisruptionBudget>(&()),
        cert_manager("Issuer", "issuers"),
        cert_manager("Certificate", "certificates"),
        ApiResource::erase::<Ingress>(&()),
        custom(CNPG_GROUP, crate::render::CNPG_KIND, "clusters"),
        ApiResource::erase::<StatefulSet>(&()),
        ApiResource::erase::<Deployment>(&()),
        ApiResource::erase::<HorizontalPodAutoscaler>(&()),
    ]
}

/// The API resource for an object's apiVersion and kind, if the chart renders that kind.
pub(crate) fn resource_of(obj: &DynamicObject) -> Option<ApiResource> {
    let types = obj.types.as_ref()?;
    release_kinds()
        .into_iter()
        .find(|r| r.api_version == types.api_version && r.kind == types.kind)
}

/// The release's own objects and pods: the chart labels all of them with
/// the release and `part-of: kubevision`.
pub(crate) fn release_selector(release: &Release) -> String {
    format!(
        "app.kubernetes.io/instance={},app.kubernetes.io/part-of=kubevision",
        release.name
    )
}

/// The gallery claims carry only the selector labels (chart/README.md's
/// `kubectl delete pvc -l app.kubernetes.io/instance=<release>`).
pub(crate) fn claim_selector(release: &Release) -> String {
    format!("app.kubernetes.io/instance={}", release.name)
}

/// The release's objects of every kind, in apply order. A kind whose API
/// the cluster lacks (cert-manager or CloudNativePG not installed) simply has none.
pub(crate) async fn list_release_objects(
    client: &Client,
    release: &Release,
) -> Result<Vec<DynamicObject>, Error> {
    let lp = ListParams::default().labels(&release_selector(release));
    let mut objects = Vec::new();
    for resource in release_kinds() {
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &release.namespace, &resource);
        match api.list(&lp).await {
            Ok(list) => objects.extend(list.items.into_iter().map(|mut obj| {
                // List items come without apiVersion/kind.
                obj.types = Some(kube::api::TypeMeta {
                    api_version: resource.api_version.clone(),
                    kind: resource.kind.clone(),
                });
                obj
            })),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(Error::kube(format!("list {}s", resource.kind), e)),
        }
    }
    Ok(objects)
}
