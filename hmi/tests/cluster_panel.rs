//! The cluster panel end to end: the real kiosk, driven as an administrator,
//! against cluster/tests' in-test Kubernetes API server (included from
//! there, so both crates test against the same fake).

use crate::fake_api::FakeApi;
use crate::fixtures;
use crate::support::*;
use eframe::egui;
use kubevision_hmi::cluster_worker::{NAMESPACE, RELEASE};
use kubevision_hmi::screens::{self, Nav, Screen};
use kubevision_hmi::settings::Settings;
use kubevision_hmi::store::Store;

fn cluster_idle(app: &kubevision_hmi::app::KioskApp) -> bool {
    matches!(app.screen(), Screen::Cluster(c) if !c.busy())
}

#[test]
fn an_administrator_deploys_and_uses_the_endpoint() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fake = runtime.block_on(FakeApi::start());
    for node in fixtures::plant_nodes() {
        fake.put(node);
    }
    let root = tempfile::tempdir().unwrap();
    let kubeconfig = fake.kubeconfig(root.path());
    let (data, _, _) = seeded(&root);

    let mut h = sign_in_admin(&root, &data);
    tap(&mut h, "Cluster");
    assert_eq!(h.state().screen().name(), "cluster");

    // The kubeconfig field is the active one; the path is typed the way a
    // hardware keyboard would (the on-screen keyboard takes that too).
    h.event(egui::Event::Text(kubeconfig.display().to_string()));
    h.step();
    tap(&mut h, "Connect");
    wait(&mut h, "the connection", cluster_idle);
    for node in ["gpu-1", "line-server-1", "cloud-1"] {
        assert!(h.query_by_label(node).is_some(), "{node} listed");
    }
    assert!(
        h.query_by_label("not ready").is_some(),
        "cloud-1 is not ready"
    );
    assert!(h.query_by_label("Not deployed").is_some());

    tap(&mut h, "Deploy / upgrade");
    let set_path =
        format!("/apis/apps/v1/namespaces/{NAMESPACE}/statefulsets/{RELEASE}-kubevision-offload");
    wait(&mut h, "the StatefulSet applied", |_| {
        fake.get(&set_path).is_some()
    });
    // The StatefulSet controller's part: the replica becomes ready. Stored
    // now and on the rollout's next pod watch, whichever it looks at first.
    let ready = fixtures::with_status(fake.get(&set_path).unwrap(), 1);
    fake.put(ready.clone());
    fake.on_next_watch(vec![ready]);
    wait_for_text(&mut h, "all 1 replicas ready");
    wait(&mut h, "the rollout", cluster_idle);
    let applied = fake
        .requests()
        .into_iter()
        .find(|r| r.path == set_path && r.method == "PATCH")
        .unwrap();
    assert_eq!(
        applied.content_type.as_deref(),
        Some("application/apply-patch+yaml")
    );
    assert_eq!(applied.query["fieldManager"], "kubevision");

    let endpoint = format!("https://{RELEASE}-kubevision-offload.{NAMESPACE}.svc:50051");
    wait_for_text(&mut h, &endpoint);
    tap(&mut h, "Use as offload endpoint");
    wait(&mut h, "the saved endpoint", |a| {
        a.kiosk().settings.offload_endpoint == endpoint
    });
    wait_for_text(&mut h, "Saved as the offload endpoint");

    // Registration: cert-manager's part is played here (the Certificate
    // the kiosk applies gets its Secret and turns Ready).
    let issuing = runtime.spawn(issue_kiosk_certificate(fake.clone()));
    tap(&mut h, "Register this kiosk");
    wait(&mut h, "the registration", cluster_idle);
    if let Screen::Cluster(c) = h.state().screen() {
        assert_eq!(c.error(), None, "the registration failed");
    }
    runtime.block_on(issuing).unwrap();
    wait_for_text(&mut h, "Restart the kiosk to use them");
    let secrets = kubevision_hmi::store::Secrets::default_dir(&data);
    wait(
        &mut h,
        "the settings pointing at the kiosk's certificate",
        |a| a.kiosk().settings.tls_cert == secrets.join("tls.crt").display().to_string(),
    );
    drop(h);
    let stored = Settings::load(&Store::open_in_dir(&data).unwrap()).unwrap();
    assert_eq!(stored.offload_endpoint, endpoint);
    assert_eq!(
        stored.tls_key,
        secrets.join("tls.key").display().to_string()
    );
    assert_eq!(stored.tls_ca, secrets.join("ca.crt").display().to_string());
    assert!(
        std::fs::read_to_string(secrets.join("tls.crt"))
            .unwrap()
            .contains("CN="),
        "the issued certificate is the kiosk's"
    );
    // The store opened above adopted the plant's pepper that registration
    // left beside the kiosk's keys.
    let pepper = std::fs::read_to_string(secrets.join(kubevision_hmi::store::PEPPER_FILE)).unwrap();
    assert!(!secrets
        .join(kubevision_hmi::store::PLANT_PEPPER_FILE)
        .exists());
    let created = fake
        .requests()
        .into_iter()
        .any(|r| r.path.ends_with("-pin-pepper") || r.path.ends_with("/secrets"));
    assert!(created, "the plant pepper Secret was read or created");
    assert_eq!(pepper.trim().len(), 64);
}

/// cert-manager: once a kiosk Certificate is applied, its Secret is
/// written and the Certificate is reported Ready.
async fn issue_kiosk_certificate(fake: FakeApi) {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let path = loop {
        if let Some(r) = fake.requests().into_iter().find(|r| {
            r.method == "PATCH"
                && r.path.contains("/certificates/")
                && r.path.contains("-kiosk-")
                && !r.path.ends_with("-kiosk-ca")
        }) {
            break r.path;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let name = path.rsplit('/').next().unwrap().to_owned();
    let cert = fake.get(&path).unwrap();
    let cn = cert["spec"]["commonName"].as_str().unwrap().to_owned();
    fake.put(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "data": {
            "tls.crt": b64(&format!("-----BEGIN CERTIFICATE-----\nCN={cn}\n-----END CERTIFICATE-----\n")),
            "tls.key": b64("-----BEGIN PRIVATE KEY-----\nkey\n-----END PRIVATE KEY-----\n"),
            "ca.crt": b64("-----BEGIN CERTIFICATE-----\nkiosk CA\n-----END CERTIFICATE-----\n"),
        },
    }));
    let mut ready = fake.get(&path).unwrap();
    ready["status"] = serde_json::json!({"conditions": [{
        "type": "Ready", "status": "True", "reason": "Ready", "message": "issued",
        "observedGeneration": ready["metadata"]["generation"],
    }]});
    fake.put(ready);
}

#[test]
fn an_operator_cannot_reach_the_panel() {
    let root = tempfile::tempdir().unwrap();
    let (data, _, _) = seeded(&root);
    let h = sign_in_worker(&root, &data);
    assert!(
        h.query_by_label("Cluster").is_none(),
        "no button for operators"
    );
    let opened = screens::open(Nav::Cluster, h.state().kiosk());
    assert_eq!(opened.0.name(), "sign_in", "the app refuses to open it");
}
