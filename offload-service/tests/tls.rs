//! TLS with client certificates and a bearer token: the right credentials
//! get in; a missing client certificate, a wrong token and plaintext do not.

use crate::common::*;
use kubevision_offload_client::{ClientConfig, OffloadClient, TlsSettings};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use tonic::Code;

struct Pki {
    ca: String,
    server: (String, String),
    client: (String, String),
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf = |name: &str, usage| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
        params.extended_key_usages = vec![usage];
        (
            params.signed_by(&key, &ca).unwrap().pem(),
            key.serialize_pem(),
        )
    };
    Pki {
        ca: ca.pem(),
        server: leaf(
            "offload.kubevision.test",
            ExtendedKeyUsagePurpose::ServerAuth,
        ),
        client: leaf("kiosk-7", ExtendedKeyUsagePurpose::ClientAuth),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_and_token_admit_only_the_right_clients() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki();
    let write = |name: &str, pem: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).unwrap();
        path.display().to_string()
    };
    let (cert, key, ca) = (
        write("server.pem", &pki.server.0),
        write("server.key", &pki.server.1),
        write("ca.pem", &pki.ca),
    );
    let server = InProcess::start(config(
        &dir.path().join("data"),
        &[
            &format!("--tls-cert={cert}"),
            &format!("--tls-key={key}"),
            &format!("--tls-client-ca={ca}"),
            "--token=line-7-secret",
        ],
    ))
    .await;
    let client = |with_identity: bool, token: Option<&str>, scheme: &str| {
        let mut config = ClientConfig::new(format!("{scheme}://{}", server.grpc));
        config.retry.max_attempts = 1;
        config.token = token.map(String::from);
        if scheme == "https" {
            config.tls = Some(TlsSettings {
                ca_pem: pki.ca.clone().into_bytes(),
                client_identity_pem: with_identity.then(|| {
                    (
                        pki.client.0.clone().into_bytes(),
                        pki.client.1.clone().into_bytes(),
                    )
                }),
                domain: Some("offload.kubevision.test".into()),
            });
        }
        OffloadClient::new(config).unwrap()
    };

    let status = client(true, Some("line-7-secret"), "https")
        .gallery_status()
        .await;
    assert!(
        status.is_ok(),
        "the right certificate and token get in: {status:?}"
    );

    let wrong_token = client(true, Some("guess"), "https")
        .gallery_status()
        .await
        .unwrap_err();
    assert_eq!(
        wrong_token.code(),
        Some(Code::Unauthenticated),
        "{wrong_token}"
    );
    let no_token = client(true, None, "https")
        .gallery_status()
        .await
        .unwrap_err();
    assert_eq!(no_token.code(), Some(Code::Unauthenticated), "{no_token}");

    let no_certificate = client(false, Some("line-7-secret"), "https")
        .gallery_status()
        .await
        .unwrap_err();
    assert!(
        no_certificate.should_fall_back(),
        "refused at the handshake: {no_certificate}"
    );
    let plaintext = client(false, Some("line-7-secret"), "http")
        .gallery_status()
        .await
        .unwrap_err();
    assert!(
        plaintext.should_fall_back(),
        "plaintext is refused: {plaintext}"
    );

    // Probes need no token (kubelet cannot send one): health stays open behind TLS.
    {
        use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
        let tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&pki.ca))
            .identity(tonic::transport::Identity::from_pem(
                &pki.client.0,
                &pki.client.1,
            ))
            .domain_name("offload.kubevision.test");
        let channel = tonic::transport::Channel::from_shared(format!("https://{}", server.grpc))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap();
        let reply = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await;
        assert!(reply.is_ok(), "{reply:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_tls_file_that_is_not_pem_is_a_clear_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("cert.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let junk = junk.display().to_string();
    let config = config(
        &dir.path().join("data"),
        &[&format!("--tls-cert={junk}"), &format!("--tls-key={junk}")],
    );
    let err = kubevision_offload::Server::bind(config)
        .await
        .err()
        .expect("refuses to start");
    assert!(err.to_string().contains("holds no PEM block"), "{err}");
}
