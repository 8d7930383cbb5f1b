//! The chart's objects for a [`DeployValues`], built the way `chart/templates/`
//! builds them (the comments name the template).
//! `tests/cluster/render_matches_helm.rs` compares this with the real
//! `helm template` for the value sets in `tests/chart/values/`.

mod deployment;
mod network;
mod statefulset;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use kube::api::DynamicObject;
use serde_json::{json, Value};

use crate::error::Error;
use crate::values::{chart_meta, ChartValues, DeployValues, IdentityValue, Store};
use crate::FIELD_MANAGER;
use deployment::{cloudnativepg_cluster, deployment};
pub(crate) use deployment::{CNPG_API_VERSION, CNPG_KIND};
use network::{cert_manager, ingress, kiosk_ca, network_policy, services};
use statefulset::statefulset;

/// The objects `helm template` renders for the same values, in apply order
/// (Secrets, Services and the database before the workload that uses them):
/// a StatefulSet for gallery.store=sqlite, a Deployment for postgres.
pub fn render(values: &DeployValues) -> Result<Vec<DynamicObject>, Error> {
    values.validate()?;
    let names = Names::new(values)?;
    let v = &values.chart;
    let secrets = secrets(&names, v);
    let mut docs = secrets.clone();
    docs.extend(services(&names, v));
    if v.network_policy.enabled {
        docs.push(network_policy(&names, v));
    }
    if v.pod_disruption_budget.enabled {
        docs.push(names.object(
            "policy/v1",
            "PodDisruptionBudget",
            &names.fullname,
            json!({
                "maxUnavailable": v.pod_disruption_budget.max_unavailable,
                "selector": {"matchLabels": names.selector_labels()},
            }),
        ));
    }
    docs.extend(cert_manager(&names, v));
    docs.extend(kiosk_ca(&names, v));
    if v.ingress.enabled {
        docs.push(ingress(&names, v));
    }
    if v.gallery.cloudnativepg() {
        docs.push(cloudnativepg_cluster(&names, v));
    }
    docs.push(match v.gallery.store {
        Store::Sqlite => statefulset(&names, v, &secrets),
        Store::Postgres => deployment(&names, v, &secrets),
    });
    if v.autoscaling.enabled {
        docs.push(hpa(&names, v));
    }
    docs.into_iter()
        .map(|doc| serde_json::from_value(doc).map_err(|e| Error::EmbeddedChart(e.to_string())))
        .collect()
}

/// _helpers.tpl: names and labels.
struct Names {
    release: String,
    namespace: String,
    name: String,
    fullname: String,
    chart_label: String,
    app_version: String,
}

impl Names {
    fn new(values: &DeployValues) -> Result<Self, Error> {
        let chart = chart_meta()?;
        let v = &values.chart;
        let release = values.release.name.clone();
        let base = if v.name_override.is_empty() {
            chart.name.clone()
        } else {
            v.name_override.clone()
        };
        let fullname = if !v.fullname_override.is_empty() {
            trunc63(&v.fullname_override)
        } else if release.contains(&base) {
            trunc63(&release)
        } else {
            trunc63(&format!("{release}-{base}"))
        };
        Ok(Names {
            name: trunc63(&base),
            fullname,
            chart_label: trunc63(&format!("{}-{}", chart.name, chart.version).replace('+', "_")),
            app_version: chart.app_version,
            namespace: values.release.namespace.clone(),
            release,
        })
    }

    fn selector_labels(&self) -> Value {
        json!({"app.kubernetes.io/name": self.name, "app.kubernetes.io/instance": self.release})
    }

    fn labels(&self) -> Value {
        let mut labels = self.selector_labels();
        labels["helm.sh/chart"] = json!(self.chart_label);
        labels["app.kubernetes.io/version"] = json!(self.app_version);
        labels["app.kubernetes.io/component"] = json!("offload");
        labels["app.kubernetes.io/part-of"] = json!("kubevision");
        // Helm writes "Helm" here; these objects are ours.
        labels["app.kubernetes.io/managed-by"] = json!(FIELD_MANAGER);
        labels
    }

    fn object(&self, api_version: &str, kind: &str, name: &str, spec: Value) -> Value {
        self.object_with(api_version, kind, name, "spec", spec)
    }

    fn object_with(
        &self,
        api_version: &str,
        kind: &str,
        name: &str,
        body_key: &str,
        body: Value,
    ) -> Value {
        json!({
            "apiVersion": api_version,
            "kind": kind,
            "metadata": {"name": name, "namespace": self.namespace, "labels": self.labels()},
            body_key: body,
        })
    }

    fn headless(&self) -> String {
        format!("{}-headless", self.fullname)
    }

    /// _helpers.tpl "kubevision.cnpgName": short enough for its Services (`<cluster>-rw`).
    fn cnpg_name(&self) -> String {
        format!("{}-db", trunc(&self.fullname, 50))
    }

    /// Where the PostgreSQL connection string and the database's CA come
    /// from; `None` with SQLite.
    fn store(&self, v: &ChartValues) -> Option<StoreSecrets> {
        let pg = &v.gallery.postgres;
        if v.gallery.store != Store::Postgres {
            None
        } else if v.gallery.cloudnativepg() {
            let cluster = self.cnpg_name();
            Some(StoreSecrets {
                secret: format!("{cluster}-app"),
                key: "uri".into(),
                ca: Some((format!("{cluster}-ca"), "ca.crt".into())),
            })
        } else {
            Some(StoreSecrets {
                secret: pg.existing_secret.clone(),
                key: pg.existing_secret_key.clone(),
                ca: Some((pg.ca_secret.name.clone(), pg.ca_secret.key.clone()))
                    .filter(|(name, _)| !name.is_empty()),
            })
        }
    }

    fn tls_secret(&self, v: &ChartValues) -> String {
        or_default(&v.tls.existing_secret, || format!("{}-tls", self.fullname))
    }

    /// _helpers.tpl "kubevision.issuesServerCertificate": cert-manager
    /// issues the service's certificate from the kiosk CA.
    fn issues_server_certificate(&self, v: &ChartValues) -> bool {
        v.auth.kiosk_ca.cert_manager
            && v.tls.enabled
            && v.tls.existing_secret.is_empty()
            && v.tls.cert.is_empty()
    }

    fn identities_secret(&self) -> String {
        format!("{}-identities", self.fullname)
    }

    fn token_secret(&self, v: &ChartValues) -> String {
        or_default(&v.auth.existing_secret, || {
            format!("{}-token", self.fullname)
        })
    }

    fn ingress_tls_secret(&self, v: &ChartValues) -> String {
        or_default(&v.ingress.tls_secret_name, || {
            format!("{}-ingress-tls", self.fullname)
        })
    }
}

/// The Secret and key of KUBEVISION_STORE, and those of the CA file.
struct StoreSecrets {
    secret: String,
    key: String,
    ca: Option<(String, String)>,
}

/// Helm's `trunc 63 | trimSuffix "-"`.
fn trunc63(s: &str) -> String {
    trunc(s, 63)
}

/// Helm's `trunc <len> | trimSuffix "-"`.
fn trunc(s: &str, len: usize) -> String {
    let cut: String = s.chars().take(len).collect();
    cut.strip_suffix('-').map(str::to_owned).unwrap_or(cut)
}

fn or_default(value: &str, default: impl FnOnce() -> String) -> String {
    if value.is_empty() {
        default()
    } else {
        value.to_owned()
    }
}

/// hpa.yaml: scales the workload on CPU load.
fn hpa(names: &Names, v: &ChartValues) -> Value {
    let a = &v.autoscaling;
    let kind = match v.gallery.store {
        Store::Sqlite => "StatefulSet",
        Store::Postgres => "Deployment",
    };
    names.object("autoscaling/v2", "HorizontalPodAutoscaler", &names.fullname, json!({
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": kind, "name": names.fullname},
        "minReplicas": a.min_replicas,
        "maxReplicas": a.max_replicas,
        "metrics": [{"type": "Resource", "resource": {
            "name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": a.target_cpu_utilization_percentage},
        }}],
    }))
}

/// secrets.yaml: only what the values contain.
fn secrets(names: &Names, v: &ChartValues) -> Vec<Value> {
    let b64 = |s: &str| BASE64.encode(s);
    let secret = |name: String, kind: &str, data: Value| {
        let mut obj = names.object_with("v1", "Secret", &name, "data", data);
        obj["type"] = json!(kind);
        obj
    };
    let mut out = Vec::new();
    if v.tls.enabled && v.tls.existing_secret.is_empty() && !names.issues_server_certificate(v) {
        let mut data = json!({"tls.crt": b64(&v.tls.cert), "tls.key": b64(&v.tls.key)});
        if v.tls.mtls && !v.auth.kiosk_ca.cert_manager {
            data["ca.crt"] = json!(b64(&v.tls.client_ca));
        }
        out.push(secret(names.tls_secret(v), "kubernetes.io/tls", data));
    }
    if !v.auth.token.is_empty() && v.auth.existing_secret.is_empty() {
        out.push(secret(
            names.token_secret(v),
            "Opaque",
            json!({"token": b64(&v.auth.token)}),
        ));
    }
    if !v.auth.identities.is_empty() {
        out.push(secret(
            names.identities_secret(),
            "Opaque",
            json!({"values.json": b64(&identities_json(&v.auth.identities))}),
        ));
    }
    out
}

/// _helpers.tpl "kubevision.identitiesJson": the service's identities
/// file, byte for byte what Helm's `toJson` writes (keys sorted, compact;
/// the schema keeps out the characters Go would escape).
pub(crate) fn identities_json(identities: &[IdentityValue]) -> String {
    #[derive(serde::Serialize)]
    struct Entry<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        certificate: Option<&'a str>,
        name: &'a str,
        scopes: &'a [String],
        #[serde(skip_serializing_if = "Option::is_none")]
        token_sha256: Option<&'a str>,
    }
    #[derive(serde::Serialize)]
    struct File<'a> {
        identities: Vec<Entry<'a>>,
    }
    let file = File {
        identities: identities
            .iter()
            .map(|i| Entry {
                certificate: i.certificate.as_deref().filter(|c| !c.is_empty()),
                name: &i.name,
                scopes: &i.scopes,
                token_sha256: i.token_sha256.as_deref().filter(|t| !t.is_empty()),
            })
            .collect(),
    };
    serde_json::to_string(&file).expect("plain strings serialise")
}
