//! Deploys, follows and removes `kubevision-offload` on a Kubernetes cluster,
//! for `kubevision cluster status|deploy|upgrade|remove` and the kiosk's
//! cluster panel. Everything here talks to the cluster through kube-rs; the
//! objects are the ones `chart/` renders for the same values (a test compares
//! the two against the real `helm template`).
//!
//! - [`mod@connect`]: [`Connection::from_kubeconfig`], or [`Connection::via_rancher`]
//!   (Rancher's `generateKubeconfig` for the downstream cluster).
//! - [`mod@nodes`]: [`list_nodes`], each node's `hardware` label, GPUs and readiness.
//! - [`mod@values`]: [`DeployValues`], the chart's values (`chart/values.yaml` under
//!   the user's values file) plus the release name and namespace.
//! - [`mod@render`]: [`render()`], the chart's objects for those values.
//! - [`mod@deploy`]: [`deploy()`] (install and upgrade alike): server-side apply
//!   under the field manager [`FIELD_MANAGER`].
//! - [`mod@rollout`]: [`rollout()`], following the workload (StatefulSet for
//!   SQLite, Deployment for PostgreSQL) until it is ready,
//!   with [`Progress`] reports.
//! - [`mod@diagnose`]: [`diagnose()`], pod states in plain words ([`Failure`]).
//! - [`mod@endpoint`]: [`Endpoint`], the address the kiosk's offload client uses.
//! - [`mod@remove`]: [`remove()`], deleting a release, its galleries (SQLite claims,
//!   CloudNativePG cluster) only on request.
//! - [`mod@status`]: [`status()`], a release's objects, readiness, endpoint and failures.
//! - [`mod@register`]: [`register_kiosk()`], a kiosk's certificate from the
//!   release's kiosk CA, its identity and the plant PIN pepper;
//!   [`unregister_kiosk()`].
//! - [`mod@certmanager`]: the cert-manager objects, typed.
//! - [`mod@error`]: [`Error`], every failure in plain words.

pub mod certmanager;
pub mod connect;
pub mod deploy;
pub mod diagnose;
pub mod endpoint;
pub mod error;
mod kinds;
pub mod nodes;
pub mod register;
pub mod remove;
pub mod render;
pub mod rollout;
pub mod status;
pub mod values;

pub use connect::Connection;
pub use deploy::{deploy, Deployment};
pub use diagnose::{diagnose, Failure};
pub use endpoint::Endpoint;
pub use error::Error;
pub use kinds::ObjectRef;
pub use nodes::{list_nodes, NodeInfo};
pub use register::{register_kiosk, unregister_kiosk, KioskCredentials};
pub use remove::remove;
pub use render::render;
pub use rollout::{rollout, Progress};
pub use status::{status, ReleaseStatus};
pub use values::{ChartValues, DeployValues, Release, PLANT_VALUES};

/// The field manager of every server-side apply, so `kubectl get
/// --show-managed-fields` tells our changes apart from Helm's or a person's.
pub const FIELD_MANAGER: &str = "kubevision";
