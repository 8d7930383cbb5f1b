//! A connection to the cluster: from a kubeconfig file, or from the
//! kubeconfig that Rancher generates for one of its downstream clusters.

use std::path::{Path, PathBuf};

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde::Deserialize;

use crate::error::Error;

#[derive(Clone)]
pub struct Connection {
    client: Client,
}

impl Connection {
    /// `context`: a context of the file, or its current context when `None`.
    pub async fn from_kubeconfig(path: &Path, context: Option<&str>) -> Result<Self, Error> {
        let source = path.display().to_string();
        let kubeconfig = Kubeconfig::read_from(path).map_err(|e| kubeconfig_error(&source, e))?;
        Self::from_parsed(kubeconfig, context, &source).await
    }

    /// `cluster`: the downstream cluster's name as Rancher shows it, or its
    /// ID (`c-m-…`, or `local`); `ca`: the PEM certificate of a private CA
    /// that signed Rancher's certificate.
    pub async fn via_rancher(
        server_url: &str,
        token: &str,
        cluster: &str,
        ca: Option<PathBuf>,
    ) -> Result<Self, Error> {
        let rancher = Rancher::new(server_url, token, cluster, ca.as_deref())?;
        let id = rancher.cluster_id().await?;
        let yaml = rancher.generate_kubeconfig(&id).await?;
        let source = format!("Rancher generated for cluster {cluster}");
        let kubeconfig = Kubeconfig::from_yaml(&yaml).map_err(|e| kubeconfig_error(&source, e))?;
        Self::from_parsed(kubeconfig, None, &source).await
    }

    async fn from_parsed(
        kubeconfig: Kubeconfig,
        context: Option<&str>,
        source: &str,
    ) -> Result<Self, Error> {
        let options = KubeConfigOptions {
            context: context.map(str::to_owned),
            ..Default::default()
        };
        let config = Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .map_err(|e| kubeconfig_error(source, e))?;
        let client = Client::try_from(config).map_err(|e| kubeconfig_error(source, e))?;
        Ok(Connection { client })
    }

    /// The kube-rs client, for what this crate does not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

fn kubeconfig_error(source: &str, err: impl std::fmt::Display) -> Error {
    Error::Kubeconfig {
        source_name: source.to_owned(),
        reason: err.to_string(),
    }
}

/// Rancher's v3 API, just the two calls that yield a kubeconfig.
struct Rancher {
    http: reqwest::Client,
    base: String,
    token: String,
    cluster: String,
}

#[derive(Deserialize)]
struct ClusterList {
    data: Vec<ClusterEntry>,
}

#[derive(Deserialize)]
struct ClusterEntry {
    id: String,
}

#[derive(Deserialize)]
struct GeneratedKubeconfig {
    config: String,
}

impl Rancher {
    fn new(server_url: &str, token: &str, cluster: &str, ca: Option<&Path>) -> Result<Self, Error> {
        let mut builder = reqwest::Client::builder();
        if let Some(path) = ca {
            let ca_error = |reason: String| Error::CaCertificate {
                path: path.display().to_string(),
                reason,
            };
            let pem = std::fs::read(path).map_err(|e| ca_error(e.to_string()))?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ca_error(e.to_string()))?;
            if certs.is_empty() {
                return Err(ca_error("no PEM certificate in the file".into()));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|e| Error::RancherUnreachable {
            url: server_url.to_owned(),
            reason: error_chain(&e),
        })?;
        Ok(Rancher {
            http,
            base: server_url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            cluster: cluster.to_owned(),
        })
    }

    /// The ID of the cluster with that name, or the argument itself when no
    /// cluster has that name (it may be an ID).
    async fn cluster_id(&self) -> Result<String, Error> {
        let url = format!("{}/v3/clusters", self.base);
        let request = self.http.get(&url).query(&[("name", &self.cluster)]);
        let list: ClusterList = self.send(request, &url).await?;
        Ok(list
            .data
            .into_iter()
            .next()
            .map_or_else(|| self.cluster.clone(), |c| c.id))
    }

    async fn generate_kubeconfig(&self, id: &str) -> Result<String, Error> {
        let url = format!("{}/v3/clusters/{id}?action=generateKubeconfig", self.base);
        let generated: GeneratedKubeconfig = self.send(self.http.post(&url), &url).await?;
        Ok(generated.config)
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<T, Error> {
        let response = request.bearer_auth(&self.token).send().await.map_err(|e| {
            let reason = error_chain(&e);
            // rustls reports certificate problems as "invalid peer certificate: …".
            if reason.contains("certificate") {
                Error::RancherTls {
                    url: url.to_owned(),
                    reason,
                }
            } else {
                Error::RancherUnreachable {
                    url: url.to_owned(),
                    reason,
                }
            }
        })?;
        let status = response.status();
        let unexpected = |reason: String| Error::RancherResponse {
            request: url.to_owned(),
            reason,
        };
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(Error::RancherToken {
                status: status.as_u16(),
            });
        }
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(Error::RancherNoCluster(self.cluster.clone()));
        }
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(unexpected(format!("{status} {}", body.trim())));
        }
        response
            .json()
            .await
            .map_err(|e| unexpected(error_chain(&e)))
    }
}

/// An error with its causes: reqwest's own message alone ("error sending
/// request") hides the reason.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
