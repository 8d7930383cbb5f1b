//! Connecting by kubeconfig and through Rancher, and listing nodes.

use kubevision_cluster::{list_nodes, Connection, Error, NodeInfo};

use crate::fake_api::{FakeApi, TOKEN};
use crate::fake_rancher::{self, CLUSTER_ID, CLUSTER_NAME, RANCHER_TOKEN};
use crate::fixtures::plant_nodes;

async fn fake_with_nodes() -> FakeApi {
    let fake = FakeApi::start().await;
    for node in plant_nodes() {
        fake.put(node);
    }
    fake
}

fn expected_nodes() -> Vec<NodeInfo> {
    let node = |name: &str, hardware: &str, gpus: u64, ready: bool| NodeInfo {
        name: name.into(),
        hardware: Some(hardware.into()),
        gpus,
        allocatable_gpus: gpus,
        ready,
        tainted_gpu: gpus > 0,
    };
    vec![
        node("cloud-1", "cloud", 0, false),
        node("gpu-1", "gpu", 2, true),
        node("line-server-1", "premise", 0, true),
    ]
}

#[tokio::test]
async fn lists_nodes_through_a_kubeconfig_context() {
    let fake = fake_with_nodes().await;
    let dir = tempfile::tempdir().unwrap();
    let conn = Connection::from_kubeconfig(&fake.kubeconfig(dir.path()), Some("plant"))
        .await
        .unwrap();
    assert_eq!(list_nodes(&conn).await.unwrap(), expected_nodes());
    let request = fake.requests().pop().unwrap();
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("GET", "/api/v1/nodes")
    );
    assert_eq!(request.authorization, Some(format!("Bearer {TOKEN}")));
}

#[tokio::test]
async fn an_unreachable_cluster_and_a_bad_kubeconfig_are_explained() {
    let fake = FakeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = fake.kubeconfig(dir.path());
    let elsewhere = Connection::from_kubeconfig(&path, Some("elsewhere"))
        .await
        .unwrap();
    let err = list_nodes(&elsewhere).await.unwrap_err();
    assert!(matches!(err, Error::Unreachable(_)), "{err}");
    assert!(
        err.to_string()
            .starts_with("cannot reach the Kubernetes API server: list the nodes"),
        "{err}"
    );

    let Err(err) = Connection::from_kubeconfig(&path, Some("no-such-context")).await else {
        panic!("unknown context accepted")
    };
    assert!(err.to_string().contains("no-such-context"), "{err}");
    let missing = dir.path().join("missing");
    let Err(err) = Connection::from_kubeconfig(&missing, None).await else {
        panic!("missing file accepted")
    };
    assert!(
        matches!(err, Error::Kubeconfig { .. }) && err.to_string().contains("missing"),
        "{err}"
    );
}

#[tokio::test]
async fn rancher_hands_out_the_downstream_kubeconfig() {
    let fake = fake_with_nodes().await;
    let rancher = fake_rancher::start(fake.url()).await;
    // By name, by ID, and with a trailing slash on the server URL.
    for (server, cluster) in [
        (rancher.clone(), CLUSTER_NAME),
        (format!("{rancher}/"), CLUSTER_ID),
    ] {
        let conn = Connection::via_rancher(&server, RANCHER_TOKEN, cluster, None)
            .await
            .unwrap();
        assert_eq!(list_nodes(&conn).await.unwrap(), expected_nodes());
    }
}

#[tokio::test]
async fn rancher_failures_are_explained() {
    let fake = FakeApi::start().await;
    let rancher = fake_rancher::start(fake.url()).await;
    let refused = |r: Result<Connection, Error>| r.err().expect("connected").to_string();

    let err =
        refused(Connection::via_rancher(&rancher, "token-wrong:nope", CLUSTER_NAME, None).await);
    assert_eq!(err, "Rancher refused the API token (401)");

    let err = refused(Connection::via_rancher(&rancher, RANCHER_TOKEN, "plant-line-9", None).await);
    assert_eq!(
        err,
        "Rancher has no cluster named or with the ID \"plant-line-9\""
    );

    let err = refused(
        Connection::via_rancher("http://127.0.0.1:1", RANCHER_TOKEN, CLUSTER_NAME, None).await,
    );
    assert!(
        err.starts_with("cannot reach Rancher at http://127.0.0.1:1/v3/clusters"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("plant-ca.pem");
    std::fs::write(&ca, "not a certificate").unwrap();
    let err = refused(
        Connection::via_rancher(&rancher, RANCHER_TOKEN, CLUSTER_NAME, Some(ca.clone())).await,
    );
    assert!(
        err.starts_with(&format!("cannot read the CA certificate {}", ca.display())),
        "{err}"
    );
}

#[tokio::test]
async fn rancher_behind_a_private_ca() {
    let fake = fake_with_nodes().await;
    let rancher = fake_rancher::start_tls(fake.url()).await;
    let ca = Some(fake_rancher::tls_file("ca.pem"));
    let conn = Connection::via_rancher(&rancher, RANCHER_TOKEN, CLUSTER_NAME, ca)
        .await
        .unwrap();
    assert_eq!(list_nodes(&conn).await.unwrap(), expected_nodes());

    let Err(err) = Connection::via_rancher(&rancher, RANCHER_TOKEN, CLUSTER_NAME, None).await
    else {
        panic!("a certificate from an unknown CA was accepted")
    };
    assert!(matches!(err, Error::RancherTls { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "the TLS connection to Rancher at {rancher}/v3/clusters failed"
        )),
        "{text}"
    );
    assert!(
        text.contains("invalid peer certificate") && text.ends_with("pass that CA's certificate)"),
        "{text}"
    );
}
