//! Install and upgrade alike: server-side apply of the rendered objects under
//! our field manager, forcing ownership of fields another manager (Helm,
//! kubectl) set before, so that the result is what the values say; then,
//! like `helm upgrade`, the release's objects the values no longer render
//! are deleted (e.g. the StatefulSet when the gallery moves to PostgreSQL
//! and the workload becomes a Deployment), the galleries excepted.

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DynamicObject, Patch, PatchParams};

use crate::connect::Connection;
use crate::endpoint::Endpoint;
use crate::error::{is_not_found, Error};
use crate::kinds::{list_release_objects, resource_of, ObjectRef, CNPG_GROUP};
use crate::remove::delete_object;
use crate::render::render;
use crate::values::DeployValues;
use crate::FIELD_MANAGER;

/// What [`deploy()`] applied, and where the service will answer once
/// [`crate::rollout()`] reports it ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    pub objects: Vec<ObjectRef>,
    pub endpoint: Option<Endpoint>,
}

/// Creates the namespace if needed, applies every object in order, then
/// deletes the release's objects that were not rendered.
pub async fn deploy(conn: &Connection, values: &DeployValues) -> Result<Deployment, Error> {
    let objects = render(values)?;
    let namespace = &values.release.namespace;
    ensure_namespace(conn, namespace).await?;
    let params = PatchParams::apply(FIELD_MANAGER).force();
    for obj in &objects {
        let object = ObjectRef::of(obj);
        let resource = resource_of(obj).ok_or_else(|| {
            Error::EmbeddedChart(format!(
                "the chart rendered an unknown kind {}",
                object.kind
            ))
        })?;
        let api: Api<DynamicObject> =
            Api::namespaced_with(conn.client().clone(), namespace, &resource);
        api.patch(&object.name, &params, &Patch::Apply(obj)).await.map_err(|e| {
            if is_not_found(&e) && resource.group == "cert-manager.io" {
                Error::MissingApi {
                    kind: format!("{} ({})", resource.kind, resource.api_version),
                    hint: "install cert-manager (the kiosk CA of auth.kioskCA.certManager, the default \
                           of `kubevision cluster deploy`, and ingress.certManager need it), or turn those \
                           off and give the certificates as Secrets yourself"
                        .into(),
                }
            } else if is_not_found(&e) && resource.group == CNPG_GROUP {
                Error::MissingApi {
                    kind: format!("{} ({})", resource.kind, resource.api_version),
                    hint: "install the CloudNativePG operator (chart/README.md), or set \
                           gallery.postgres.existingSecret to a Secret with the connection string of \
                           a PostgreSQL database"
                        .into(),
                }
            } else {
                Error::kube(format!("apply {object}"), e)
            }
        })?;
    }
    prune(conn, values, &objects).await?;
    Ok(Deployment {
        endpoint: Endpoint::from_objects(&objects),
        objects: objects.iter().map(ObjectRef::of).collect(),
    })
}

/// Deletes, in reverse apply order, the release's objects that `rendered`
/// lacks. Objects another controller made (with an owner) are not the
/// release's own; the galleries stay ([`delete_object`] without `delete_gallery`).
async fn prune(
    conn: &Connection,
    values: &DeployValues,
    rendered: &[DynamicObject],
) -> Result<(), Error> {
    let wanted: Vec<ObjectRef> = rendered.iter().map(ObjectRef::of).collect();
    let release = &values.release;
    let mut deleted = Vec::new();
    for obj in list_release_objects(conn.client(), release)
        .await?
        .iter()
        .rev()
    {
        let owned = obj
            .metadata
            .owner_references
            .as_ref()
            .is_some_and(|o| !o.is_empty());
        if !owned && !wanted.contains(&ObjectRef::of(obj)) {
            delete_object(conn.client(), &release.namespace, obj, false, &mut deleted).await?;
        }
    }
    Ok(())
}

async fn ensure_namespace(conn: &Connection, name: &str) -> Result<(), Error> {
    let api: Api<Namespace> = Api::all(conn.client().clone());
    let action = || format!("create the namespace {name}");
    if api
        .get_opt(name)
        .await
        .map_err(|e| Error::kube(action(), e))?
        .is_none()
    {
        let mut namespace = Namespace::default();
        namespace.metadata.name = Some(name.to_owned());
        let params = PatchParams::apply(FIELD_MANAGER);
        api.patch(name, &params, &Patch::Apply(&namespace))
            .await
            .map_err(|e| Error::kube(action(), e))?;
    }
    Ok(())
}
