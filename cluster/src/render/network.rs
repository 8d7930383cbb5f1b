//! services.yaml, networkpolicy.yaml, ingress.yaml and certificate.yaml:
//! how clients reach the pods.

use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
use serde_json::{json, Map, Value};

use super::Names;
use crate::certmanager::{self, CertificateSpec, IssuerRef, PrivateKey};
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

/// kiosk-ca.yaml: the kiosk CA (bootstrap Issuer, CA Certificate, CA
/// Issuer) and, without a certificate in the values, the service's own.
pub(super) fn kiosk_ca(names: &Names, v: &ChartValues) -> Vec<Value> {
    if !v.auth.kiosk_ca.cert_manager {
        return Vec::new();
    }
    let ca = certmanager::kiosk_ca_name(&names.fullname);
    let bootstrap = format!("{ca}-bootstrap");
    let certificate = |name: &str, spec: CertificateSpec| {
        names.object(certmanager::API_VERSION, "Certificate", name, json!(spec))
    };
    let mut out = vec![
        names.object(
            certmanager::API_VERSION,
            "Issuer",
            &bootstrap,
            json!({"selfSigned": {}}),
        ),
        certificate(
            &ca,
            CertificateSpec {
                is_ca: true,
                common_name: Some(ca.clone()),
                secret_name: ca.clone(),
                dns_names: Vec::new(),
                duration: Some("87600h".into()),
                usages: Vec::new(),
                private_key: Some(PrivateKey::ecdsa_p256()),
                issuer_ref: IssuerRef::issuer(&bootstrap),
            },
        ),
        names.object(
            certmanager::API_VERSION,
            "Issuer",
            &ca,
            json!({"ca": {"secretName": ca}}),
        ),
    ];
    if names.issues_server_certificate(v) {
        let (name, ns, headless) = (&names.fullname, &names.namespace, names.headless());
        out.push(certificate(
            &format!("{name}-server"),
            CertificateSpec {
                is_ca: false,
                common_name: None,
                secret_name: names.tls_secret(v),
                dns_names: vec![
                    name.clone(),
                    format!("{name}.{ns}.svc"),
                    format!("{name}.{ns}.svc.cluster.local"),
                    format!("{headless}.{ns}.svc"),
                    format!("{headless}.{ns}.svc.cluster.local"),
                ],
                duration: None,
                usages: vec!["server auth".into(), "digital signature".into()],
                private_key: Some(PrivateKey::ecdsa_p256()),
                issuer_ref: IssuerRef::issuer(&ca),
            },
        ));
    }
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
