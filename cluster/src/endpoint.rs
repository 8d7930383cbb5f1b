//! The address the kiosk's offload client should use for a release: the
//! Ingress host when there is one (production lines outside the cluster),
//! else the ClusterIP Service's in-cluster DNS name.

use std::fmt;

use kube::api::DynamicObject;
use serde_json::Value;

/// Port ingress-nginx serves TLS on.
const INGRESS_PORT: u16 = 443;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host:port`.
    pub address: String,
    /// Whether the client must speak TLS (always through the Ingress).
    pub tls: bool,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}", self.address)
    }
}

impl Endpoint {
    /// From a release's objects, as [`crate::render()`] makes them or as they
    /// are listed from the cluster. `None` without an Ingress or ClusterIP Service.
    pub fn from_objects(objects: &[DynamicObject]) -> Option<Self> {
        let of_kind = |kind: &'static str| {
            objects
                .iter()
                .filter(move |o| o.types.as_ref().is_some_and(|t| t.kind == kind))
        };
        if let Some(host) =
            of_kind("Ingress").find_map(|i| i.data.pointer("/spec/rules/0/host")?.as_str())
        {
            return Some(Endpoint {
                address: format!("{host}:{INGRESS_PORT}"),
                tls: true,
            });
        }
        let service = of_kind("Service")
            .find(|s| s.data.pointer("/spec/clusterIP") != Some(&Value::from("None")))?;
        let port = service
            .data
            .pointer("/spec/ports")?
            .as_array()?
            .iter()
            .find(|p| p["name"] == "grpc")?;
        let name = service.metadata.name.as_deref()?;
        let namespace = service.metadata.namespace.as_deref()?;
        // The service terminates TLS itself when its container is given a certificate.
        let tls = of_kind("StatefulSet")
            .chain(of_kind("Deployment"))
            .any(|s| {
                s.data
                    .pointer("/spec/template/spec/containers/0/env")
                    .and_then(Value::as_array)
                    .is_some_and(|env| env.iter().any(|e| e["name"] == "KUBEVISION_TLS_CERT"))
            });
        Some(Endpoint {
            address: format!("{name}.{namespace}.svc:{}", port["port"]),
            tls,
        })
    }
}
