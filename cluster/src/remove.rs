//! Uninstall: the release's objects go, its galleries stay unless asked: the
//! SQLite StatefulSet's claims and the CloudNativePG cluster of a PostgreSQL
//! gallery (whose volumes go with it).

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::Client;

use crate::connect::Connection;
use crate::error::{is_not_found, Error};
use crate::kinds::{claim_selector, is_database, list_release_objects, resource_of, ObjectRef};
use crate::values::Release;

/// Deletes the release's objects (the autoscaler first, the Secrets last)
/// and, with `delete_gallery`, the gallery: the SQLite claims and the
/// CloudNativePG cluster. Returns what was deleted; a release that is not
/// there leaves nothing to delete.
pub async fn remove(
    conn: &Connection,
    release: &Release,
    delete_gallery: bool,
) -> Result<Vec<ObjectRef>, Error> {
    let client = conn.client();
    let mut deleted = Vec::new();
    for obj in list_release_objects(client, release).await?.iter().rev() {
        delete_object(
            client,
            &release.namespace,
            obj,
            delete_gallery,
            &mut deleted,
        )
        .await?;
    }
    if delete_gallery {
        let claims: Api<PersistentVolumeClaim> =
            Api::namespaced(client.clone(), &release.namespace);
        let list = claims
            .list(&ListParams::default().labels(&claim_selector(release)))
            .await
            .map_err(|e| Error::kube("list the gallery claims", e))?;
        for claim in list.items {
            let object = ObjectRef {
                kind: "PersistentVolumeClaim".into(),
                name: claim.metadata.name.unwrap_or_default(),
            };
            delete(&claims, object, &mut deleted).await?;
        }
    }
    Ok(deleted)
}

/// Deletes one object of a release (by [`remove()`], or by [`crate::deploy()`]
/// when the values no longer render it). Without `delete_gallery` the
/// gallery survives: the database cluster is left alone, and a StatefulSet
/// that would take its claims along is told to retain them first.
pub(crate) async fn delete_object(
    client: &Client,
    namespace: &str,
    obj: &DynamicObject,
    delete_gallery: bool,
    deleted: &mut Vec<ObjectRef>,
) -> Result<(), Error> {
    let object = ObjectRef::of(obj);
    let Some(resource) = resource_of(obj) else {
        return Ok(());
    };
    if is_database(obj) && !delete_gallery {
        return Ok(());
    }
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    if object.kind == "StatefulSet" && !delete_gallery && deletes_claims(obj) {
        // persistence.keep=false makes the StatefulSet controller delete
        // the claims with it: switch that off first.
        let retain = serde_json::json!({"spec": {"persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain"}}});
        api.patch(
            &object.name,
            &PatchParams::default(),
            &Patch::Merge(&retain),
        )
        .await
        .map_err(|e| Error::kube(format!("keep the galleries of {object}"), e))?;
    }
    delete(&api, object, deleted).await
}

fn deletes_claims(set: &DynamicObject) -> bool {
    set.data
        .pointer("/spec/persistentVolumeClaimRetentionPolicy/whenDeleted")
        .and_then(|v| v.as_str())
        == Some("Delete")
}

/// Deletes one object; one already gone (deleted meanwhile) counts as done.
async fn delete<K>(
    api: &Api<K>,
    object: ObjectRef,
    deleted: &mut Vec<ObjectRef>,
) -> Result<(), Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(&object.name, &DeleteParams::background()).await {
        Ok(_) => {
            deleted.push(object);
            Ok(())
        }
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(Error::kube(format!("delete {object}"), e)),
    }
}
