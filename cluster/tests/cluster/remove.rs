//! Status of a release, and removing it with or without its galleries.

use kubevision_cluster::{remove, status, Endpoint, Failure, ObjectRef, Release};
use serde_json::{json, Value};

use crate::fake_api::{FakeApi, Recorded};
use crate::fixtures::{
    crash_loop, deployed, deployment_pod, deployment_with, plant_nodes, pod, running,
    statefulset_with, DEPLOY_PATH, FULLNAME, NAMESPACE, STS_PATH,
};

const CLAIM_PATH: &str =
    "/api/v1/namespaces/kubevision/persistentvolumeclaims/data-kv-kubevision-offload-0";

fn refs(kinds: &[&str], names: &[&str]) -> Vec<ObjectRef> {
    kinds
        .iter()
        .zip(names)
        .map(|(k, n)| ObjectRef {
            kind: (*k).into(),
            name: (*n).into(),
        })
        .collect()
}

/// The claim the StatefulSet controller made from the volumeClaimTemplate.
fn claim() -> Value {
    json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data-kv-kubevision-offload-0", "namespace": NAMESPACE,
                     "labels": {"app.kubernetes.io/name": "kubevision-offload", "app.kubernetes.io/instance": "kv"},
                     "finalizers": ["kubernetes.io/pvc-protection"]},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}},
                 "storageClassName": "longhorn", "volumeMode": "Filesystem", "volumeName": "pvc-1b2c3d4e"},
        "status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "5Gi"}},
    })
}

#[tokio::test]
async fn status_of_a_ready_release() {
    let (fake, conn, values, _dir) = deployed("defaults", plant_nodes()).await;
    fake.put(statefulset_with(&fake, 1));
    fake.put(pod(
        &fake,
        0,
        running("ghcr.io/kubevision/kubevision-offload:0.1.0-cuda", true),
    ));
    let s = status(&conn, &values.release).await.unwrap();
    let headless = format!("{FULLNAME}-headless");
    let kinds = [
        "Service",
        "Service",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "StatefulSet",
    ];
    assert_eq!(
        s.objects,
        refs(&kinds, &[FULLNAME, &headless, FULLNAME, FULLNAME, FULLNAME])
    );
    assert_eq!((s.ready, s.desired, s.rolled_out), (1, 1, true));
    assert_eq!(
        s.endpoint,
        Some(Endpoint {
            address: "kv-kubevision-offload.kubevision.svc:50051".into(),
            tls: false
        })
    );
    assert!(s.failures.is_empty());
}

#[tokio::test]
async fn status_explains_a_crash_loop_and_an_absent_release() {
    // A PostgreSQL gallery: three replicas of a Deployment, one crashing.
    let (fake, conn, values, _dir) = deployed("postgres-secret", plant_nodes()).await;
    fake.put(deployment_with(&fake, 2));
    let image = "ghcr.io/kubevision/kubevision-offload:0.1.0";
    fake.put(deployment_pod(&fake, "x2k9p", running(image, true)));
    fake.put(deployment_pod(&fake, "q7m4w", running(image, true)));
    let crashing = deployment_pod(&fake, "b5t8z", crash_loop(image));
    let crashing_path = format!(
        "/api/v1/namespaces/{NAMESPACE}/pods/{}",
        crashing["metadata"]["name"].as_str().unwrap()
    );
    fake.put(crashing);
    // No log of a previous run: the current one's is shown.
    let log = "2026-11-23T02:01:11Z INFO kubevision_offload: connecting to the gallery store\n\
               Error: the database refused the connection: password authentication failed for user \"kubevision\"";
    fake.set_log(&crashing_path, false, log);
    let s = status(&conn, &values.release).await.unwrap();
    assert_eq!((s.ready, s.desired, s.rolled_out), (2, 3, false));
    assert_eq!(
        s.objects
            .iter()
            .map(|o| o.kind.as_str())
            .collect::<Vec<_>>(),
        [
            "Service",
            "Service",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "Deployment"
        ]
    );
    let last_logs = log.lines().map(str::to_owned).collect();
    assert_eq!(
        s.failures,
        [Failure::CrashLoop {
            container: "offload".into(),
            last_logs
        }]
    );

    let other = Release {
        name: "other".into(),
        namespace: NAMESPACE.into(),
    };
    let s = status(&conn, &other).await.unwrap();
    assert!(s.objects.is_empty() && s.endpoint.is_none() && !s.rolled_out);
}

fn is_merge_patch(request: &Recorded) -> bool {
    request.method == "PATCH"
        && request.content_type.as_deref() == Some("application/merge-patch+json")
}

async fn deployed_with_claim(
    set: &str,
) -> (
    FakeApi,
    kubevision_cluster::Connection,
    Release,
    tempfile::TempDir,
) {
    let (fake, conn, values, dir) = deployed(set, plant_nodes()).await;
    fake.put(claim());
    (fake, conn, values.release, dir)
}

#[tokio::test]
async fn remove_keeps_the_galleries() {
    // persistence.keep=false: the StatefulSet would take its claims along.
    let (fake, conn, release, _dir) = deployed_with_claim("persistence").await;
    assert_eq!(
        fake.get(STS_PATH).unwrap()["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"],
        "Delete"
    );
    let deleted = remove(&conn, &release, false).await.unwrap();
    let kinds = [
        "StatefulSet",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "Service",
        "Service",
    ];
    let headless = format!("{FULLNAME}-headless");
    assert_eq!(
        deleted,
        refs(&kinds, &[FULLNAME, FULLNAME, FULLNAME, &headless, FULLNAME])
    );

    let requests = fake.requests();
    let retain = requests
        .iter()
        .position(|r| r.path == STS_PATH && is_merge_patch(r))
        .unwrap();
    let delete = requests
        .iter()
        .position(|r| r.method == "DELETE" && r.path == STS_PATH)
        .unwrap();
    assert!(retain < delete);
    assert_eq!(
        requests[retain].body,
        json!({"spec": {"persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain"}}})
    );
    assert!(
        fake.get(CLAIM_PATH).is_some(),
        "the gallery claim was deleted"
    );
    let left: Vec<String> = fake
        .paths()
        .into_iter()
        .filter(|p| p.contains("/namespaces/kubevision/"))
        .collect();
    assert_eq!(left, [CLAIM_PATH]);
    assert!(remove(&conn, &release, false).await.unwrap().is_empty());
}

#[tokio::test]
async fn remove_deletes_the_galleries_when_asked() {
    // persistence.keep=true: only remove itself can delete the claim.
    let (fake, conn, release, _dir) = deployed_with_claim("defaults").await;
    let deleted = remove(&conn, &release, true).await.unwrap();
    assert_eq!(
        deleted.last(),
        Some(&ObjectRef {
            kind: "PersistentVolumeClaim".into(),
            name: "data-kv-kubevision-offload-0".into()
        })
    );
    assert!(fake.get(CLAIM_PATH).is_none());
    assert!(!fake.requests().iter().any(is_merge_patch));
}

const DB_PATH: &str =
    "/apis/postgresql.cnpg.io/v1/namespaces/kubevision/clusters/kv-kubevision-offload-db";

#[tokio::test]
async fn remove_keeps_the_postgres_gallery_unless_asked() {
    // The CloudNativePG cluster's volumes are the gallery: deleting the
    // Cluster deletes them, so it stays like the SQLite claims.
    let (fake, conn, values, _dir) = deployed("postgres-cnpg", plant_nodes()).await;
    assert!(fake.get(DB_PATH).is_some());
    assert!(fake.get(DEPLOY_PATH).is_some());
    let deleted = remove(&conn, &values.release, false).await.unwrap();
    let headless = format!("{FULLNAME}-headless");
    let (ca, bootstrap) = (
        format!("{FULLNAME}-kiosk-ca"),
        format!("{FULLNAME}-kiosk-ca-bootstrap"),
    );
    let (tls, identities) = (format!("{FULLNAME}-tls"), format!("{FULLNAME}-identities"));
    assert_eq!(
        deleted,
        refs(
            &[
                "HorizontalPodAutoscaler",
                "Deployment",
                "Certificate",
                "Issuer",
                "Issuer",
                "PodDisruptionBudget",
                "NetworkPolicy",
                "Service",
                "Service",
                "Secret",
                "Secret"
            ],
            &[
                FULLNAME,
                FULLNAME,
                &ca,
                &bootstrap,
                &ca,
                FULLNAME,
                FULLNAME,
                &headless,
                FULLNAME,
                &tls,
                &identities
            ]
        )
    );
    assert!(
        fake.get(DB_PATH).is_some(),
        "the database cluster was deleted"
    );
    assert!(fake.get(DEPLOY_PATH).is_none());

    let deleted = remove(&conn, &values.release, true).await.unwrap();
    assert_eq!(deleted, refs(&["Cluster"], &["kv-kubevision-offload-db"]));
    assert!(fake.get(DB_PATH).is_none());
}
