//! Registering kiosks: their certificate from the release's kiosk CA
//! (cert-manager played by the test), their identity as one key of the
//! kiosks Secret, the plant pepper created once, the files in the kiosk's
//! folder; unregistering.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use kubevision_cluster::register::{FILES, PEPPER_FILE};
use kubevision_cluster::{register_kiosk, unregister_kiosk, DeployValues, Error, FIELD_MANAGER};
use serde_json::{json, Value};

use crate::fake_api::FakeApi;
use crate::fixtures::{connect, plant_nodes, FULLNAME, NAMESPACE, RELEASE};

const CERTS: &str = "/apis/cert-manager.io/v1/namespaces/kubevision/certificates";
const SECRETS: &str = "/api/v1/namespaces/kubevision/secrets";
const KIOSK_CA_PEM: &str =
    "-----BEGIN CERTIFICATE-----\nkiosk CA (test)\n-----END CERTIFICATE-----\n";

/// A cluster with the plant profile deployed (so the kiosk CA Issuer exists).
async fn plant() -> (FakeApi, kubevision_cluster::Connection, tempfile::TempDir) {
    let fake = FakeApi::start().await;
    for node in plant_nodes() {
        fake.put(node);
    }
    let dir = tempfile::tempdir().unwrap();
    let conn = connect(&fake, &dir).await;
    let values = DeployValues::for_plant(RELEASE, NAMESPACE, "").unwrap();
    kubevision_cluster::deploy(&conn, &values).await.unwrap();
    (fake, conn, dir)
}

fn release() -> kubevision_cluster::Release {
    kubevision_cluster::Release {
        name: RELEASE.into(),
        namespace: NAMESPACE.into(),
    }
}

/// cert-manager's part: once the Certificate `name` is applied, its Secret
/// is written and the Certificate reported Ready.
fn issue_when_applied(fake: &FakeApi, name: &str) -> tokio::task::JoinHandle<()> {
    let fake = fake.clone();
    let path = format!("{CERTS}/{name}");
    let name = name.to_owned();
    tokio::spawn(async move {
        let cert = loop {
            if let Some(cert) = fake.get(&path) {
                break cert;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let cn = cert["spec"]["commonName"].as_str().unwrap().to_owned();
        let b64 = |s: &str| BASE64.encode(s);
        fake.put(json!({
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "data": {
                "tls.crt": b64(&format!("-----BEGIN CERTIFICATE-----\nCN={cn}\n-----END CERTIFICATE-----\n")),
                "tls.key": b64(&format!("-----BEGIN PRIVATE KEY-----\nkey of {cn}\n-----END PRIVATE KEY-----\n")),
                "ca.crt": b64(KIOSK_CA_PEM),
            },
        }));
        let mut ready = fake.get(&path).unwrap();
        ready["status"] = json!({"conditions": [{
            "type": "Ready", "status": "True", "reason": "Ready",
            "message": "Certificate is up to date and has not expired",
            "observedGeneration": ready["metadata"]["generation"],
        }]});
        fake.put(ready);
    })
}

fn secret_data(fake: &FakeApi, name: &str) -> serde_json::Map<String, Value> {
    fake.get(&format!("{SECRETS}/{name}")).unwrap()["data"]
        .as_object()
        .unwrap()
        .clone()
}

fn decoded(data: &serde_json::Map<String, Value>, key: &str) -> String {
    String::from_utf8(BASE64.decode(data[key].as_str().unwrap()).unwrap()).unwrap()
}

#[tokio::test]
async fn a_kiosk_gets_its_certificate_identity_and_the_plant_pepper() {
    let (fake, conn, dir) = plant().await;
    let cert_name = format!("{FULLNAME}-kiosk-kiosk-line-3");
    let cert_manager = issue_when_applied(&fake, &cert_name);
    let creds = register_kiosk(
        &conn,
        &release(),
        "kiosk-line-3",
        &["sync", "identify"],
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    cert_manager.await.unwrap();

    // The Certificate: applied server-side under our field manager.
    let applied = fake
        .requests()
        .into_iter()
        .find(|r| r.method == "PATCH" && r.path == format!("{CERTS}/{cert_name}"))
        .unwrap();
    assert_eq!(
        applied.content_type.as_deref(),
        Some("application/apply-patch+yaml")
    );
    assert_eq!(applied.query["fieldManager"], FIELD_MANAGER);
    let spec = &applied.body["spec"];
    assert_eq!(spec["commonName"], "kiosk-line-3");
    assert_eq!(spec["secretName"], cert_name);
    assert_eq!(spec["usages"], json!(["client auth", "digital signature"]));
    assert_eq!(
        spec["issuerRef"],
        json!({"name": format!("{FULLNAME}-kiosk-ca"), "kind": "Issuer", "group": "cert-manager.io"})
    );
    // Not a release object: a later deploy does not prune it.
    let labels = &applied.body["metadata"]["labels"];
    assert!(
        labels.get("app.kubernetes.io/instance").is_none(),
        "{labels}"
    );
    assert_eq!(labels["kubevision.io/release"], RELEASE);

    // The identity: one key of the kiosks Secret, in the service's format.
    let kiosks = secret_data(&fake, &format!("{FULLNAME}-kiosks"));
    assert_eq!(
        decoded(&kiosks, "kiosk-line-3.json"),
        r#"{"identities":[{"certificate":"kiosk-line-3","name":"kiosk-line-3","scopes":["identify","sync"]}]}"#
    );
    assert_eq!(creds.scopes, ["identify", "sync"]);

    // The pepper: 32 random bytes as 64 lowercase hex digits and a newline.
    let pepper = decoded(
        &secret_data(&fake, &format!("{FULLNAME}-pin-pepper")),
        "pin-pepper.key",
    );
    assert_eq!(pepper.len(), 65, "{pepper:?}");
    assert!(pepper.ends_with('\n'));
    assert!(pepper[..64]
        .chars()
        .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
    assert!(creds.pepper_created);
    assert_eq!(creds.plant_pepper, pepper);

    // The files: 0600 in a 0700 folder, nothing else left there.
    let out = dir.path().join("secrets");
    let written = creds.write_to(&out).unwrap();
    assert_eq!(written.len(), FILES.len());
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&out), 0o700);
    for path in &written {
        assert_eq!(mode(path), 0o600, "{}", path.display());
    }
    let read = |f: &str| std::fs::read_to_string(out.join(f)).unwrap();
    assert!(read("tls.crt").contains("CN=kiosk-line-3"));
    assert!(read("tls.key").contains("key of kiosk-line-3"));
    assert_eq!(read("ca.crt"), KIOSK_CA_PEM);
    assert_eq!(read(PEPPER_FILE), pepper);
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["ca.crt", "plant-pepper.key", "tls.crt", "tls.key"]);

    // A redeploy leaves the registration alone.
    let values = DeployValues::for_plant(RELEASE, NAMESPACE, "").unwrap();
    kubevision_cluster::deploy(&conn, &values).await.unwrap();
    assert!(fake.get(&format!("{CERTS}/{cert_name}")).is_some());
    assert!(secret_data(&fake, &format!("{FULLNAME}-kiosks")).contains_key("kiosk-line-3.json"));
}

#[tokio::test]
async fn a_second_kiosk_keeps_the_first_and_the_pepper_is_never_replaced() {
    let (fake, conn, _dir) = plant().await;
    let mut peppers = Vec::new();
    for (kiosk, scopes) in [
        ("kiosk-line-1", vec!["identify", "sync"]),
        ("enrol-station", vec!["identify", "sync", "enrol"]),
    ] {
        let issuing = issue_when_applied(&fake, &format!("{FULLNAME}-kiosk-{kiosk}"));
        let creds = register_kiosk(&conn, &release(), kiosk, &scopes, Duration::from_secs(10))
            .await
            .unwrap();
        issuing.await.unwrap();
        peppers.push((creds.plant_pepper, creds.pepper_created));
    }
    assert_eq!(peppers[0].0, peppers[1].0, "one pepper for the plant");
    assert_eq!((peppers[0].1, peppers[1].1), (true, false));
    let pepper_path = format!("{SECRETS}/{FULLNAME}-pin-pepper");
    // Only one create of the pepper, and no write to it afterwards.
    let writes: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with(SECRETS) && r.method != "GET")
        .filter(|r| {
            r.path == pepper_path || r.body["metadata"]["name"] == format!("{FULLNAME}-pin-pepper")
        })
        .collect();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(writes[0].method, "POST");

    // The kiosks Secret: created once, then each key added by a merge patch
    // naming only that key (no read-modify-write of the others).
    let kiosks = secret_data(&fake, &format!("{FULLNAME}-kiosks"));
    let keys: Vec<&String> = kiosks.keys().collect();
    assert_eq!(keys, ["enrol-station.json", "kiosk-line-1.json"]);
    assert!(
        decoded(&kiosks, "enrol-station.json").contains(r#""scopes":["identify","enrol","sync"]"#)
    );
    let patch = fake
        .requests()
        .into_iter()
        .find(|r| {
            r.method == "PATCH"
                && r.path == format!("{SECRETS}/{FULLNAME}-kiosks")
                && r.body["data"].get("enrol-station.json").is_some()
        })
        .unwrap();
    assert_eq!(
        patch.content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(
        patch.body["data"].as_object().unwrap().len(),
        1,
        "{}",
        patch.body
    );

    // An existing pepper is read, never overwritten, even by a new release's first kiosk.
    let before = fake.get(&pepper_path).unwrap();
    unregister_kiosk(&conn, &release(), "kiosk-line-1")
        .await
        .unwrap();
    assert_eq!(fake.get(&pepper_path).unwrap(), before);
}

#[tokio::test]
async fn unregistering_removes_the_identity_and_the_certificate() {
    let (fake, conn, _dir) = plant().await;
    let cert_name = format!("{FULLNAME}-kiosk-kiosk-line-2");
    let issuing = issue_when_applied(&fake, &cert_name);
    register_kiosk(
        &conn,
        &release(),
        "kiosk-line-2",
        &["identify"],
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    issuing.await.unwrap();
    let removed = unregister_kiosk(&conn, &release(), "kiosk-line-2")
        .await
        .unwrap();
    let removed: Vec<String> = removed.iter().map(|o| o.to_string()).collect();
    assert_eq!(
        removed,
        [
            format!("Secret key/{FULLNAME}-kiosks/kiosk-line-2.json"),
            format!("Certificate/{cert_name}"),
            format!("Secret/{cert_name}"),
        ]
    );
    assert!(!secret_data(&fake, &format!("{FULLNAME}-kiosks")).contains_key("kiosk-line-2.json"));
    assert!(fake.get(&format!("{CERTS}/{cert_name}")).is_none());
    assert!(fake.get(&format!("{SECRETS}/{cert_name}")).is_none());
    // Again: nothing left to remove, not an error.
    assert!(unregister_kiosk(&conn, &release(), "kiosk-line-2")
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn registration_problems_are_explained() {
    let (fake, conn, _dir) = plant().await;
    // A name that cannot be a certificate's name.
    let err = register_kiosk(
        &conn,
        &release(),
        "Kiosk 3",
        &["identify"],
        Duration::from_secs(1),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("lowercase letters, digits and '-'"),
        "{err}"
    );
    let err = register_kiosk(
        &conn,
        &release(),
        "k3",
        &["identify", "enroll"],
        Duration::from_secs(1),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("unknown scope \"enroll\""),
        "{err}"
    );
    // cert-manager never issues: the wait ends, naming the Certificate and why.
    let err = register_kiosk(
        &conn,
        &release(),
        "k3",
        &["identify"],
        Duration::from_secs(1),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::NotIssued { .. }), "{err}");
    assert!(
        err.to_string().contains(&format!("{FULLNAME}-kiosk-k3")),
        "{err}"
    );
    // Nothing let in before the certificate exists.
    assert!(fake.get(&format!("{SECRETS}/{FULLNAME}-kiosks")).is_none());

    // A release without a kiosk CA.
    let other = FakeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let conn = connect(&other, &dir).await;
    let values =
        DeployValues::new(RELEASE, NAMESPACE, "auth: {allowUnauthenticated: true}").unwrap();
    kubevision_cluster::deploy(&conn, &values).await.unwrap();
    let err = register_kiosk(
        &conn,
        &release(),
        "k3",
        &["identify"],
        Duration::from_secs(1),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("has no kiosk CA"), "{err}");
    assert!(
        err.to_string().contains("auth.kioskCA.certManager=true"),
        "{err}"
    );
}
