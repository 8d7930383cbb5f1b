//! Every failure of this crate, worded for a plant administrator.

use crate::diagnose::Failure;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot use the kubeconfig {source_name}: {reason}")]
    Kubeconfig { source_name: String, reason: String },
    #[error("Rancher refused the API token ({status})")]
    RancherToken { status: u16 },
    #[error("Rancher has no cluster named or with the ID \"{0}\"")]
    RancherNoCluster(String),
    #[error(
        "the TLS connection to Rancher at {url} failed: {reason} \
         (if Rancher's certificate comes from a private CA, pass that CA's certificate)"
    )]
    RancherTls { url: String, reason: String },
    #[error("cannot reach Rancher at {url}: {reason}")]
    RancherUnreachable { url: String, reason: String },
    #[error("Rancher gave an unexpected answer to {request}: {reason}")]
    RancherResponse { request: String, reason: String },
    #[error("cannot read the CA certificate {path}: {reason}")]
    CaCertificate { path: String, reason: String },
    #[error("invalid values: {0}")]
    Values(String),
    #[error("the chart files built into this program are unreadable: {0}")]
    EmbeddedChart(String),
    #[error("cannot reach the Kubernetes API server: {0}")]
    Unreachable(String),
    #[error("the Kubernetes API server refused the credentials (401): {0}")]
    Unauthorized(String),
    #[error("not allowed to {action} (403): {message}")]
    Forbidden { action: String, message: String },
    #[error("the cluster has no {kind} API: {hint}")]
    MissingApi { kind: String, hint: String },
    #[error("Kubernetes refused to {action}: {message}")]
    Refused { action: String, message: String },
    #[error("release {release} is not deployed in namespace {namespace} (no StatefulSet or Deployment found)")]
    NotDeployed { release: String, namespace: String },
    #[error("{0}")]
    Rollout(Failure),
    #[error("cannot register kiosk {name}: {reason}")]
    Registration { name: String, reason: String },
    #[error(
        "cert-manager did not issue the certificate of kiosk {name} within {seconds} s: {reason} \
         (kubectl describe certificate {certificate})"
    )]
    NotIssued {
        name: String,
        certificate: String,
        seconds: u64,
        reason: String,
    },
    #[error("cannot write {path}: {reason}")]
    WriteFile { path: String, reason: String },
}

impl Error {
    /// Words for a kube-rs error while trying to `action` (e.g. "apply StatefulSet kv").
    pub(crate) fn kube(action: impl Into<String>, err: kube::Error) -> Self {
        let action = action.into();
        match err {
            kube::Error::Api(status) => match status.code {
                401 => Error::Unauthorized(status.message),
                403 => Error::Forbidden {
                    action,
                    message: status.message,
                },
                _ => Error::Refused {
                    action,
                    message: status.message,
                },
            },
            other => Error::Unreachable(format!("{action}: {other}")),
        }
    }
}

/// Whether a kube-rs error is the API server's 404.
pub(crate) fn is_not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == 404)
}
