//! services.yaml, networkpolicy.yaml, ingress.yaml and certificate.yaml:
//! how clients reach the pods.

use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
use serde_json::{json, Map, Value};

use super::Names;
use crate::values::ChartValues;

/// services.yaml: the ClusterIP Service and the headless one (one address
/// per ready pod, which the kiosks' client resolves to balance).
pub(super) fn services(names: &Names, v: &ChartValues) -> Vec<Value> {
    let ports = json!([
        {"name": "grpc", "port": v.ports.grpc, "targetPort": "grpc", "protocol": "TCP", "appProtocol": "grpc"},
        {"name": "metrics", "port": v.ports.metrics, "targetPort": "metrics", "protocol": "TCP", "appProtocol": "http"},
    ]);
    let service = |name: &str, mut spec: Value| {
        spec["selector"] = names.selector_labels();
        spec["ports"] = ports.clone();
        names.object("v1", "Service", name, spec)
    };
    vec![
        service(&names.fullname, json!({"type": "ClusterIP"})),
        service(
            &names.headless(),
            // Only ready pods: the kiosks balance over the ready replicas.
            json!({"clusterIP": "None"}),
        ),
    ]
}

/// networkpolicy.yaml: only the gRPC and metrics ports, from the configured peers.
pub(super) fn network_policy(names: &Names, v: &ChartValues) -> Value {
    let np = &v.network_policy;
    let mut grpc_from = np.grpc_from.clone();
    if v.ingress.enabled {
        grpc_from.push(np.ingress_controller.clone());
    }
    let rule = |port: i32, from: &[NetworkPolicyPeer]| {
        let mut rule = json!({"ports": [{"port": port, "protocol": "TCP"}]});
        if !from.is_empty() {
            rule["from"] = json!(from);
        }
        rule
    };
    names.object(
        "networking.k8s.io/v1",
        "NetworkPolicy",
        &names.fullname,
        json!({
            "podSelector": {"matchLabels": names.selector_labels()},
            "policyTypes": ["Ingress"],
            "ingress": [rule(v.ports.grpc, &grpc_from), rule(v.ports.metrics, &np.metrics_from)],
        }),
    )
}

/// certificate.yaml: the chart's own Issuer (unless one is named) and the Certificate.
pub(super) fn cert_manager(names: &Names, v: &ChartValues) -> Vec<Value> {
    let cm = &v.ingress.cert_manager;
    if !(v.ingress.enabled && cm.enabled) {
        return Vec::new();
    }
    let mut out = Vec::new();
    let issuer_ref = if cm.issuer_ref.name.is_empty() {
        let spec = if cm.issuer_spec.is_empty() {
            json!({"selfSigned": {}})
        } else {
            json!(cm.issuer_spec)
        };
        out.push(names.object("cert-manager.io/v1", "Issuer", &names.fullname, spec));
        json!({"name": names.fullname, "kind": "Issuer", "group": "cert-manager.io"})
    } else {
        json!({"name": cm.issuer_ref.name, "kind": cm.issuer_ref.kind, "group": "cert-manager.io"})
    };
    out.push(names.object(
        "cert-manager.io/v1",
        "Certificate",
        &names.fullname,
        json!({
            "secretName": names.ingress_tls_secret(v),
            "dnsNames": [v.ingress.host],
            "issuerRef": issuer_ref,
        }),
    ));
    out
}

/// ingress.yaml: gRPC over TLS through ingress-nginx.
pub(super) fn ingress(names: &Names, v: &ChartValues) -> Value {
    let mut annotations = Map::new();
    let protocol = if v.tls.enabled { "GRPCS" } else { "GRPC" };
    annotations.insert(
        "nginx.ingress.kubernetes.io/backend-protocol".into(),
        json!(protocol),
    );
    annotations.extend(
        v.ingress
            .annotations
            .iter()
            .map(|(k, val)| (k.clone(), json!(val))),
    );
    let mut obj = names.object(
        "networking.k8s.io/v1",
        "Ingress",
        &names.fullname,
        json!({
            "ingressClassName": v.ingress.class_name,
            "tls": [{"hosts": [v.ingress.host], "secretName": names.ingress_tls_secret(v)}],
            "rules": [{
                "host": v.ingress.host,
                "http": {"paths": [{
                    "path": "/",
                    "pathType": "Prefix",
                    "backend": {"service": {"name": names.fullname, "port": {"name": "grpc"}}},
                }]},
            }],
        }),
    );
    obj["metadata"]["annotations"] = Value::Object(annotations);
    obj
}
