//! An in-test Rancher: `GET /v3/clusters?name=` and
//! `POST /v3/clusters/{id}?action=generateKubeconfig`, with Rancher's bodies,
//! behind a bearer token, over plain HTTP or over TLS with a certificate from
//! a test CA (tests/cluster/tls/: ca.pem signed server.pem for 127.0.0.1).
//! The kubeconfig it hands out points at a fake API server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Path, Query};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::json;

use crate::fake_api::kubeconfig_yaml;

pub const RANCHER_TOKEN: &str = "token-x7kq2:5bq9lzv6h4rw8ncd2xj7mtpkfs9gq3wlr8vb6hzn4tx2cj5mdk";
pub const CLUSTER_NAME: &str = "plant-line-1";
pub const CLUSTER_ID: &str = "c-m-4xk9z2qp";

/// Serves Rancher over plain HTTP; downstream kubeconfigs point at `api_url`.
pub async fn start(api_url: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let app = router(api_url);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

pub fn tls_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/cluster/tls")
        .join(name)
}

/// Serves Rancher over TLS, with the test CA's server certificate.
pub async fn start_tls(api_url: String) -> String {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer> = CertificateDer::pem_file_iter(tls_file("server.pem"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(tls_file("server.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let app = router(api_url);
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                // A client that rejects the certificate ends the handshake: nothing to serve.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    format!("https://{addr}")
}

fn router(api_url: String) -> Router {
    let clusters = get(
        |headers: HeaderMap, Query(query): Query<std::collections::HashMap<String, String>>| async move {
            if let Some(refused) = refuse(&headers) {
                return refused;
            }
            let data = if query.get("name").map(String::as_str) == Some(CLUSTER_NAME) {
                json!([{"id": CLUSTER_ID, "name": CLUSTER_NAME, "type": "cluster", "state": "active",
                    "links": {"self": format!("/v3/clusters/{CLUSTER_ID}")},
                    "actions": {"generateKubeconfig": format!("/v3/clusters/{CLUSTER_ID}?action=generateKubeconfig")}}])
            } else {
                json!([])
            };
            json_response(
                StatusCode::OK,
                json!({"type": "collection", "resourceType": "cluster", "data": data}),
            )
        },
    );
    let generate = post(
        move |headers: HeaderMap,
              Path(id): Path<String>,
              Query(query): Query<std::collections::HashMap<String, String>>| async move {
            if let Some(refused) = refuse(&headers) {
                return refused;
            }
            if query.get("action").map(String::as_str) != Some("generateKubeconfig") {
                return json_response(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json!({"type": "error", "code": "InvalidAction"}),
                );
            }
            if id != CLUSTER_ID {
                return json_response(
                    StatusCode::NOT_FOUND,
                    json!({
                        "type": "error", "status": "404", "code": "NotFound",
                        "message": format!("clusters.management.cattle.io \"{id}\" not found"),
                    }),
                );
            }
            json_response(
                StatusCode::OK,
                json!({
                    "baseType": "generateKubeConfigOutput", "type": "generateKubeConfigOutput",
                    "config": kubeconfig_yaml(&api_url, CLUSTER_NAME),
                }),
            )
        },
    );
    Router::new()
        .route("/v3/clusters", clusters)
        .route("/v3/clusters/{id}", generate)
}

fn refuse(headers: &HeaderMap) -> Option<Response> {
    let expected = format!("Bearer {RANCHER_TOKEN}");
    (headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(expected.as_str()))
    .then(|| {
        json_response(
            StatusCode::UNAUTHORIZED,
            json!({"type": "error", "status": "401", "message": "must authenticate"}),
        )
    })
}

fn json_response(code: StatusCode, body: serde_json::Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}
