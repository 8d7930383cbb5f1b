//! Install and upgrade by server-side apply.

use kubevision_cluster::{deploy, render, Endpoint, Error, FIELD_MANAGER};
use serde_json::{json, Value};

use crate::fake_api::{path_of, FakeApi, Recorded};
use crate::fixtures::{
    connect, deployed, plant_nodes, values, values_file, DEPLOY_PATH, NAMESPACE, RELEASE, STS_PATH,
};

const APPLY: &str = "application/apply-patch+yaml";

fn patches(requests: &[Recorded]) -> Vec<&Recorded> {
    requests.iter().filter(|r| r.method == "PATCH").collect()
}

#[tokio::test]
async fn applies_every_rendered_object_under_our_field_manager() {
    let fake = FakeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let conn = connect(&fake, &dir).await;
    let values = values("gpu");
    let deployment = deploy(&conn, &values).await.unwrap();

    let requests = fake.requests();
    let ns_path = format!("/api/v1/namespaces/{NAMESPACE}");
    assert_eq!(
        (requests[0].method.as_str(), requests[0].path.as_str()),
        ("GET", ns_path.as_str())
    );
    let patches = patches(&requests);
    let (namespace, objects) = patches.split_first().unwrap();
    assert_eq!(namespace.path, ns_path);
    assert_eq!(namespace.body["kind"], "Namespace");

    let rendered: Vec<Value> = render(&values)
        .unwrap()
        .iter()
        .map(|o| serde_json::to_value(o).unwrap())
        .collect();
    assert_eq!(objects.len(), rendered.len());
    for (request, object) in objects.iter().zip(&rendered) {
        assert_eq!(request.path, path_of(object));
        assert_eq!(
            request.content_type.as_deref(),
            Some(APPLY),
            "{}",
            request.path
        );
        assert_eq!(
            request.query.get("fieldManager").map(String::as_str),
            Some(FIELD_MANAGER)
        );
        assert_eq!(request.query.get("force").map(String::as_str), Some("true"));
        assert_eq!(&request.body, object);
    }
    // Secrets before the StatefulSet whose pods read them.
    let kinds: Vec<&str> = objects
        .iter()
        .map(|r| r.body["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "Secret",
            "Secret",
            "Service",
            "Service",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "StatefulSet"
        ]
    );
    assert_eq!(deployment.objects.len(), rendered.len());
    assert_eq!(
        deployment.endpoint,
        Some(Endpoint {
            address: format!("kv-kubevision-offload.{NAMESPACE}.svc:50051"),
            tls: true
        })
    );
    assert_eq!(
        deployment.endpoint.unwrap().to_string(),
        "https://kv-kubevision-offload.kubevision.svc:50051"
    );
}

#[tokio::test]
async fn an_upgrade_applies_the_new_values_over_the_old_objects() {
    let (fake, conn, _, _dir) = deployed("defaults", plant_nodes()).await;
    let before = fake.requests().len();
    let upgraded = kubevision_cluster::DeployValues::new(
        RELEASE,
        NAMESPACE,
        "image: {tag: 0.2.0}\nauth: {allowUnauthenticated: true}",
    )
    .unwrap();
    deploy(&conn, &upgraded).await.unwrap();

    let requests = fake.requests().split_off(before);
    // The namespace exists now: looked up, not applied again.
    assert_eq!(
        patches(&requests)
            .iter()
            .filter(|r| r.body["kind"] == "Namespace")
            .count(),
        0
    );
    let set = fake.get(STS_PATH).unwrap();
    assert_eq!(
        set["spec"]["template"]["spec"]["containers"][0]["image"],
        "ghcr.io/kubevision/kubevision-offload:0.2.0-cuda"
    );
    assert_eq!(set["metadata"]["generation"], json!(2));
}

#[tokio::test]
async fn a_cluster_without_cert_manager_is_explained() {
    let fake = FakeApi::start().await;
    fake.without_group("cert-manager.io");
    let dir = tempfile::tempdir().unwrap();
    let conn = connect(&fake, &dir).await;
    let err = deploy(&conn, &values("ingress-tls")).await.unwrap_err();
    assert!(matches!(err, Error::MissingApi { .. }), "{err}");
    assert!(
        err.to_string().starts_with(
            "the cluster has no Issuer (cert-manager.io/v1) API: install cert-manager"
        ),
        "{err}"
    );
    // Nothing after the Issuer was applied: no StatefulSet without its certificate.
    assert!(fake.get(STS_PATH).is_none());
}

#[test]
fn behind_an_ingress_the_endpoint_is_its_host() {
    let objects = render(&values("ingress-tls")).unwrap();
    let endpoint = Endpoint::from_objects(&objects).unwrap();
    assert_eq!(
        endpoint.to_string(),
        "https://kubevision.line1.plant.example:443"
    );
}

#[test]
fn without_tls_the_endpoint_is_plain() {
    let endpoint = Endpoint::from_objects(&render(&values("defaults")).unwrap()).unwrap();
    assert_eq!(
        endpoint,
        Endpoint {
            address: "kv-kubevision-offload.kubevision.svc:50051".into(),
            tls: false
        }
    );
}

#[tokio::test]
async fn moving_the_gallery_to_postgres_replaces_the_statefulset_with_a_deployment() {
    let (fake, conn, _, _dir) = deployed("persistence", plant_nodes()).await;
    assert_eq!(
        fake.get(STS_PATH).unwrap()["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"],
        "Delete"
    );
    let before = fake.requests().len();
    let yaml = format!(
        "{}\nreplicaCount: 3\ngallery: {{store: postgres, postgres: {{existingSecret: plant-gallery-db}}}}",
        values_file("persistence")
    );
    let postgres = kubevision_cluster::DeployValues::new(RELEASE, NAMESPACE, &yaml).unwrap();
    let deployment = deploy(&conn, &postgres).await.unwrap();

    assert!(deployment.objects.iter().any(|o| o.kind == "Deployment"));
    let new = fake.get(DEPLOY_PATH).expect("the Deployment was applied");
    assert_eq!(new["spec"]["replicas"], 3);
    // Like helm upgrade: the StatefulSet the values no longer render is
    // deleted, after being told to keep its SQLite claim (persistence.keep=false).
    assert!(fake.get(STS_PATH).is_none(), "the StatefulSet is left");
    let requests = fake.requests().split_off(before);
    let retain = requests
        .iter()
        .position(|r| r.path == STS_PATH && r.method == "PATCH")
        .expect("the claim retention was switched to Retain");
    let delete = requests
        .iter()
        .position(|r| r.path == STS_PATH && r.method == "DELETE")
        .unwrap();
    assert!(retain < delete);
    assert_eq!(
        requests[retain].content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    // Nothing else was deleted.
    let deleted: Vec<&str> = requests
        .iter()
        .filter(|r| r.method == "DELETE")
        .map(|r| r.path.as_str())
        .collect();
    assert_eq!(deleted, [STS_PATH]);
}

#[tokio::test]
async fn a_cluster_without_cloudnativepg_is_explained() {
    let fake = FakeApi::start().await;
    fake.without_group("postgresql.cnpg.io");
    let dir = tempfile::tempdir().unwrap();
    let conn = connect(&fake, &dir).await;
    let err = deploy(&conn, &values("postgres-cnpg")).await.unwrap_err();
    assert!(matches!(err, Error::MissingApi { .. }), "{err}");
    assert!(
        err.to_string().starts_with(
            "the cluster has no Cluster (postgresql.cnpg.io/v1) API: install the CloudNativePG operator"
        ),
        "{err}"
    );
    // No Deployment whose pods would wait for the database's Secrets.
    assert!(fake.get(DEPLOY_PATH).is_none());
}

#[tokio::test]
async fn the_postgres_cluster_is_applied_before_the_deployment() {
    let fake = FakeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let conn = connect(&fake, &dir).await;
    deploy(&conn, &values("postgres-cnpg")).await.unwrap();
    let kinds: Vec<String> = patches(&fake.requests())
        .iter()
        .map(|r| r.body["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds,
        [
            "Namespace",
            "Secret",
            "Secret",
            "Service",
            "Service",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "Issuer",
            "Certificate",
            "Issuer",
            "Cluster",
            "Deployment",
            "HorizontalPodAutoscaler"
        ]
    );
    let cluster = fake
        .get("/apis/postgresql.cnpg.io/v1/namespaces/kubevision/clusters/kv-kubevision-offload-db")
        .unwrap();
    assert_eq!(cluster["spec"]["instances"], 3);
    assert_eq!(
        cluster["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
    // Nothing of the release is pruned on a first install.
    assert!(!fake.requests().iter().any(|r| r.method == "DELETE"));
}
