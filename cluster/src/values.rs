//! The chart's values, typed. A [`DeployValues`] is built like Helm builds its
//! values: the user's values file merged over `chart/values.yaml` (embedded
//! at build time, so the defaults cannot drift from the chart), then checked
//! against the rules of `chart/values.schema.json` and the chart's `fail`s.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    EnvVar, LocalObjectReference, PodSecurityContext, ResourceRequirements, SecurityContext,
    Toleration,
};
use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::Error;

const CHART_VALUES: &str = include_str!("../../chart/values.yaml");

/// The plant profile: what `kubevision cluster deploy` (and the kiosk's
/// cluster panel, through [`DeployValues::for_plant`]) put between the
/// chart's defaults and the user's values. Kiosks prove themselves with
/// certificates from the release's kiosk CA (cert-manager), which also
/// issues the service's own certificate; each kiosk is let in by
/// [`crate::register_kiosk`]. Needs cert-manager on the cluster.
/// tests/chart/values/plant.yaml is the same set, rendered by helm.
pub const PLANT_VALUES: &str = "tls:
  enabled: true
  mtls: true
auth:
  kioskCA:
    certManager: true
";

/// The words of the chart's refusal of a gallery writable without credentials.
pub const UNAUTHENTICATED_REFUSAL: &str = "set auth.identities, auth.existingIdentitiesSecret, \
     auth.kioskCA.certManager=true, a token or tls.mtls (or auth.allowUnauthenticated=true for a \
     trial): without credentials anyone who reaches the port can change the gallery";
const CHART_YAML: &str = include_str!("../../chart/Chart.yaml");

/// Where a release lives: `helm install <name> -n <namespace>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub name: String,
    pub namespace: String,
}

/// Everything [`crate::render()`] needs: the release and the chart's values.
#[derive(Debug, Clone, PartialEq)]
pub struct DeployValues {
    pub release: Release,
    pub chart: ChartValues,
}

impl DeployValues {
    /// `values_yaml` is a Helm values file (`""` or `{}` for the chart's
    /// defaults, which refuse to deploy without credentials: see
    /// [`Self::for_plant`]). Exactly what `helm install -f` would use.
    pub fn new(release: &str, namespace: &str, values_yaml: &str) -> Result<Self, Error> {
        Self::layered(release, namespace, &[values_yaml])
    }

    /// The chart's defaults, then [`PLANT_VALUES`], then the user's values
    /// (`helm install -f plant.yaml -f values.yaml`): what the plant's
    /// tools deploy. The user's values may override any of it.
    pub fn for_plant(release: &str, namespace: &str, values_yaml: &str) -> Result<Self, Error> {
        Self::layered(release, namespace, &[PLANT_VALUES, values_yaml])
    }

    fn layered(release: &str, namespace: &str, layers: &[&str]) -> Result<Self, Error> {
        let mut merged = parse_yaml(CHART_VALUES).map_err(Error::EmbeddedChart)?;
        for layer in layers {
            let user = parse_yaml(layer).map_err(Error::Values)?;
            merge(&mut merged, user);
        }
        let chart: ChartValues =
            serde_json::from_value(merged).map_err(|e| Error::Values(e.to_string()))?;
        let values = DeployValues {
            release: Release {
                name: release.to_owned(),
                namespace: namespace.to_owned(),
            },
            chart,
        };
        values.validate()?;
        Ok(values)
    }

    /// The cross-field rules of values.schema.json and the chart's `fail`s,
    /// with the chart's wording.
    pub fn validate(&self) -> Result<(), Error> {
        let v = &self.chart;
        let refuse = |msg: &str| Err(Error::Values(msg.to_owned()));
        if self.release.name.is_empty() || self.release.namespace.is_empty() {
            return refuse("the release name and the namespace must not be empty");
        }
        let kiosk_ca = v.auth.kiosk_ca.cert_manager;
        if v.tls.enabled
            && v.tls.existing_secret.is_empty()
            && !kiosk_ca
            && (v.tls.cert.is_empty() || v.tls.key.is_empty())
        {
            return refuse("tls.enabled without tls.existingSecret needs tls.cert and tls.key");
        }
        if v.tls.mtls && !v.tls.enabled {
            return refuse("tls.mtls is a TLS option: set tls.enabled too");
        }
        if v.tls.mtls && v.tls.existing_secret.is_empty() && !kiosk_ca && v.tls.client_ca.is_empty()
        {
            return refuse("tls.mtls needs tls.clientCA (or ca.crt in tls.existingSecret)");
        }
        for (index, identity) in v.auth.identities.iter().enumerate() {
            identity.check().map_err(|why| {
                Error::Values(format!(
                    "auth.identities[{index}] ({:?}): {why}",
                    identity.name
                ))
            })?;
        }
        if !v.auth.token.is_empty() && !v.auth.existing_secret.is_empty() {
            return refuse("auth.token and auth.existingSecret are alternatives: set one of them");
        }
        if v.ingress.enabled && v.tls.mtls {
            return refuse(
                "ingress.enabled cannot be combined with tls.mtls: ingress-nginx cannot present a client \
                 certificate to a gRPC backend",
            );
        }
        let cuda = v.backend == "cuda" || (v.backend.is_empty() && v.gpu.enabled);
        if v.recogniser == "dlib" && cuda {
            return refuse(
                "recogniser=dlib needs backend=cpu or gpu.enabled=false: the CUDA backend matches \
                 lbph templates only",
            );
        }
        let g = &v.gallery;
        let pg = &g.postgres;
        let cnpg = pg.cloudnativepg.enabled;
        if g.store == Store::Sqlite && (v.replica_count > 1 || v.autoscaling.enabled) {
            return refuse(
                "replicaCount > 1 and autoscaling.enabled need gallery.store=postgres: with SQLite every \
                 replica would keep a gallery of its own",
            );
        }
        if g.store == Store::Postgres && pg.existing_secret.is_empty() && !cnpg {
            return refuse(
                "set gallery.postgres.existingSecret or gallery.postgres.cloudnativepg.enabled=true: \
                 gallery.store=postgres needs a connection string to the database",
            );
        }
        if !pg.existing_secret.is_empty() && cnpg {
            return refuse(
                "set only one of gallery.postgres.existingSecret and gallery.postgres.cloudnativepg.enabled: \
                 they name two different databases",
            );
        }
        if !pg.ca_secret.name.is_empty() && cnpg {
            return refuse(
                "leave gallery.postgres.caSecret empty with gallery.postgres.cloudnativepg.enabled: the \
                 service trusts the CA that CloudNativePG made for the cluster",
            );
        }
        if g.store == Store::Sqlite && cnpg {
            return refuse(
                "gallery.postgres.cloudnativepg.enabled needs gallery.store=postgres: the database cluster \
                 would be unused with SQLite",
            );
        }
        let a = &v.auth;
        if a.kiosk_ca.cert_manager && !(v.tls.enabled && v.tls.mtls) {
            return refuse(
                "set tls.enabled=true and tls.mtls=true for auth.kioskCA.certManager: kiosks prove \
                 themselves with certificates from the kiosk CA over mutual TLS",
            );
        }
        let id = &a.plant_pepper_id;
        if !id.is_empty() && !(id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit())) {
            return Err(Error::Values(format!(
                "auth.plantPepperId {id:?} is not a key id: 16 hex digits (or empty) are expected"
            )));
        }
        if !a.has_credentials() && !v.tls.mtls && !a.allow_unauthenticated {
            return refuse(UNAUTHENTICATED_REFUSAL);
        }
        if !v.tls.mtls && a.identities.iter().any(|i| i.certificate.is_some()) {
            return refuse(
                "set tls.mtls=true for identities with a certificate: the service can verify client \
                 certificates only with mutual TLS",
            );
        }
        let p = &v.placement;
        if !p.site.is_empty() && v.gpu.enabled && v.gpu.node_selector.contains_key(&p.label_key) {
            return Err(Error::Values(format!(
                "placement.site={} cannot be combined with gpu.enabled while GPU nodes are selected by the \
                 same label \"{}\": label the sites with another key and set placement.labelKey",
                p.site, p.label_key
            )));
        }
        Ok(())
    }
}

/// `name`, `version` and `appVersion` of chart/Chart.yaml.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ChartMeta {
    pub name: String,
    pub version: String,
    pub app_version: String,
}

pub(crate) fn chart_meta() -> Result<ChartMeta, Error> {
    serde_norway::from_str(CHART_YAML).map_err(|e| Error::EmbeddedChart(e.to_string()))
}

fn parse_yaml(text: &str) -> Result<Value, String> {
    match serde_norway::from_str::<Option<Value>>(text) {
        Ok(value) => Ok(value.unwrap_or(Value::Null)),
        Err(e) => Err(e.to_string()),
    }
}

/// Helm's coalescing: maps merge key by key, anything else replaces, and a
/// null removes the default.
fn merge(base: &mut Value, user: Value) {
    match (base, user) {
        (_, Value::Null) => {}
        (Value::Object(base), Value::Object(user)) => {
            for (key, value) in user {
                match (base.get_mut(&key), value) {
                    (_, Value::Null) => {
                        base.remove(&key);
                    }
                    (Some(existing @ Value::Object(_)), value @ Value::Object(_)) => {
                        merge(existing, value)
                    }
                    (_, value) => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, user) => *base = user,
    }
}

// The mirror of chart/values.yaml; the comments there explain each setting.
// `deny_unknown_fields` refuses what the chart's schema refuses.

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChartValues {
    pub name_override: String,
    pub fullname_override: String,
    pub image: Image,
    pub image_pull_secrets: Vec<LocalObjectReference>,
    pub replica_count: i32,
    pub backend: String,
    pub recogniser: String,
    pub gallery: Gallery,
    pub gpu: Gpu,
    pub placement: Placement,
    pub node_selector: BTreeMap<String, String>,
    pub tolerations: Vec<Toleration>,
    pub ports: Ports,
    pub resources: ResourceRequirements,
    pub persistence: Persistence,
    pub tls: Tls,
    pub auth: Auth,
    pub extra_env: Vec<EnvVar>,
    pub pod_annotations: BTreeMap<String, String>,
    pub pod_security_context: PodSecurityContext,
    pub security_context: SecurityContext,
    pub ingress: Ingress,
    pub network_policy: NetworkPolicy,
    pub pod_disruption_budget: PodDisruptionBudget,
    pub autoscaling: Autoscaling,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Image {
    pub repository: String,
    pub tag: String,
    pub cuda_tag_suffix: String,
    pub pull_policy: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Gallery {
    pub store: Store,
    pub catch_up_seconds: u32,
    pub postgres: Postgres,
}

impl Gallery {
    /// The chart renders a CloudNativePG Cluster.
    pub fn cloudnativepg(&self) -> bool {
        self.store == Store::Postgres && self.postgres.cloudnativepg.enabled
    }
}

/// Where the gallery of record lives: the StatefulSet's SQLite file, or
/// PostgreSQL followed by every replica of a Deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Store {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Postgres {
    pub existing_secret: String,
    pub existing_secret_key: String,
    pub ca_secret: SecretKey,
    pub cloudnativepg: CloudNativePg,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretKey {
    pub name: String,
    pub key: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudNativePg {
    pub enabled: bool,
    pub instances: u32,
    pub storage: CloudNativePgStorage,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CloudNativePgStorage {
    pub size: Quantity,
    pub storage_class: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Gpu {
    pub enabled: bool,
    pub resource_name: String,
    pub count: u32,
    pub node_selector: BTreeMap<String, String>,
    pub tolerations: Vec<Toleration>,
    pub runtime_class_name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Placement {
    pub site: String,
    pub required: bool,
    pub label_key: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ports {
    pub grpc: i32,
    pub metrics: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Persistence {
    pub enabled: bool,
    pub keep: bool,
    pub storage_class: String,
    pub size: Quantity,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tls {
    pub enabled: bool,
    pub existing_secret: String,
    pub cert: String,
    pub key: String,
    pub mtls: bool,
    #[serde(rename = "clientCA")]
    pub client_ca: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Auth {
    pub identities: Vec<IdentityValue>,
    pub existing_identities_secret: String,
    #[serde(rename = "kioskCA")]
    pub kiosk_ca: KioskCa,
    pub token: String,
    pub existing_secret: String,
    pub existing_secret_key: String,
    pub allow_unauthenticated: bool,
    /// The plant PIN pepper's key id (`KUBEVISION_PLANT_PEPPER_ID`): 16 hex
    /// digits, or empty.
    pub plant_pepper_id: String,
}

impl Auth {
    /// Identities, a kiosk CA or a token (mTLS counts too: see `validate`).
    pub fn has_credentials(&self) -> bool {
        !self.identities.is_empty()
            || !self.existing_identities_secret.is_empty()
            || self.kiosk_ca.cert_manager
            || !self.token.is_empty()
            || !self.existing_secret.is_empty()
    }

    /// The service reads a directory of identities files.
    pub fn uses_identities(&self) -> bool {
        !self.identities.is_empty()
            || !self.existing_identities_secret.is_empty()
            || self.kiosk_ca.cert_manager
    }
}

/// The scopes an identity may hold (offload-service/src/identity.rs).
pub const SCOPES: [&str; 4] = ["identify", "enrol", "sync", "admin"];

/// One entry of `auth.identities`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IdentityValue {
    pub name: String,
    pub scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_sha256: Option<String>,
}

impl IdentityValue {
    /// values.schema.json's rules for one identity.
    fn check(&self) -> Result<(), String> {
        let name_char = |c: char| c.is_ascii_alphanumeric() || "._:@-".contains(c);
        let starts_well = |s: &str, star: bool| {
            s.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric() || (star && c == '*'))
        };
        if !starts_well(&self.name, false)
            || self.name.len() > 128
            || !self.name.chars().all(name_char)
        {
            return Err(
                "the name must be 1 to 128 letters, digits and . _ : @ -, starting with a letter or digit"
                    .into(),
            );
        }
        if self.scopes.is_empty() {
            return Err("no scopes: give any of identify, enrol, sync, admin".into());
        }
        for (i, scope) in self.scopes.iter().enumerate() {
            if !SCOPES.contains(&scope.as_str()) {
                return Err(format!(
                    "unknown scope {scope:?}: the scopes are identify, enrol, sync, admin"
                ));
            }
            if self.scopes[..i].contains(scope) {
                return Err(format!("the scope {scope:?} is given twice"));
            }
        }
        if let Some(c) = &self.certificate {
            if !starts_well(c, true) || c.len() > 253 || !c.chars().skip(1).all(name_char) {
                return Err(
                    "the certificate name must be a client certificate's CN or DNS name".into(),
                );
            }
        }
        if let Some(t) = &self.token_sha256 {
            if t.len() != 64
                || !t
                    .chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
            {
                return Err(
                    "tokenSha256 must be 64 lowercase hex digits: the SHA-256 of the token, never the token"
                        .into(),
                );
            }
        }
        if self.certificate.is_none() && self.token_sha256.is_none() {
            return Err("no credential: give a certificate, a tokenSha256, or both".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KioskCa {
    pub cert_manager: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Ingress {
    pub enabled: bool,
    pub class_name: String,
    pub host: String,
    pub annotations: BTreeMap<String, String>,
    pub tls_secret_name: String,
    pub cert_manager: CertManager,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CertManager {
    pub enabled: bool,
    pub issuer_ref: IssuerRef,
    /// A cert-manager Issuer spec, passed through as it is.
    pub issuer_spec: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerRef {
    pub name: String,
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicy {
    pub enabled: bool,
    pub grpc_from: Vec<NetworkPolicyPeer>,
    pub metrics_from: Vec<NetworkPolicyPeer>,
    pub ingress_controller: NetworkPolicyPeer,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodDisruptionBudget {
    pub enabled: bool,
    pub max_unavailable: IntOrString,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Autoscaling {
    pub enabled: bool,
    pub min_replicas: i32,
    pub max_replicas: i32,
    #[serde(rename = "targetCPUUtilizationPercentage")]
    pub target_cpu_utilization_percentage: i32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plant_profile_needs_no_values_and_the_bare_chart_refuses() {
        let err = DeployValues::new("kv", "kubevision", "").unwrap_err();
        assert!(err.to_string().contains(UNAUTHENTICATED_REFUSAL), "{err}");
        let plant = DeployValues::for_plant("kv", "kubevision", "").unwrap();
        assert!(plant.chart.auth.kiosk_ca.cert_manager);
        assert!(plant.chart.tls.enabled && plant.chart.tls.mtls);
        // The user's values still win.
        let cpu = DeployValues::for_plant("kv", "kubevision", "gpu: {enabled: false}").unwrap();
        assert!(!cpu.chart.gpu.enabled && cpu.chart.auth.kiosk_ca.cert_manager);
    }

    #[test]
    fn defaults_are_the_charts() {
        let v =
            DeployValues::new("kv", "kubevision", "auth: {allowUnauthenticated: true}").unwrap();
        assert!(v.chart.gpu.enabled);
        assert_eq!(
            v.chart
                .gpu
                .node_selector
                .get("hardware")
                .map(String::as_str),
            Some("gpu")
        );
        assert_eq!(v.chart.persistence.size, Quantity("1Gi".into()));
        assert_eq!(v.chart.gallery.store, Store::Sqlite);
        assert_eq!(v.chart.gallery.catch_up_seconds, 5);
        assert_eq!(v.chart.gallery.postgres.existing_secret_key, "uri");
        assert_eq!(v.chart.gallery.postgres.ca_secret.key, "ca.crt");
        assert!(!v.chart.gallery.cloudnativepg());
        assert!(v.chart.auth.identities.is_empty() && !v.chart.auth.kiosk_ca.cert_manager);
    }

    #[test]
    fn maps_merge_and_lists_replace() {
        let v = DeployValues::new(
            "kv",
            "ns",
            "gpu: {nodeSelector: {zone: a}, tolerations: []}\nauth: {token: t}",
        )
        .unwrap();
        let keys: Vec<_> = v.chart.gpu.node_selector.keys().cloned().collect();
        assert_eq!(keys, ["hardware", "zone"]);
        assert!(v.chart.gpu.tolerations.is_empty());
        assert_eq!(v.chart.gpu.resource_name, "nvidia.com/gpu");
    }

    #[test]
    fn refuses_what_the_chart_refuses() {
        for (yaml, words) in [
            ("gpu: {enable: true}", "unknown field `enable`"),
            ("replicaCount: many", "invalid type"),
            ("tls: {enabled: true}", "needs tls.cert and tls.key"),
            (
                "tls: {mtls: true, enabled: true, existingSecret: s}\ningress: {enabled: true}",
                "ingress-nginx",
            ),
            ("auth: {token: t, existingSecret: s}", "alternatives"),
            (
                "auth: {token: t, plantPepperId: \"0123\"}",
                "auth.plantPepperId \"0123\" is not a key id",
            ),
            (
                "auth: {token: t, plantPepperId: \"+123456789abcdef\"}",
                "16 hex digits",
            ),
            ("", "auth.allowUnauthenticated=true"),
            (
                "auth: {identities: [{name: k, scopes: [identify, enroll], tokenSha256: x}]}",
                "unknown scope \"enroll\"",
            ),
            (
                "auth: {identities: [{name: k, scopes: [identify], token: plain}]}",
                "unknown field `token`",
            ),
            (
                "placement: {site: premise}\nauth: {token: t}",
                "cannot be combined with gpu.enabled",
            ),
            ("[unclosed", "invalid values"),
            ("gallery: {store: mysql}", "unknown variant `mysql`"),
            (
                "replicaCount: 2",
                "with SQLite every replica would keep a gallery of its own",
            ),
        ] {
            let err = DeployValues::new("kv", "ns", yaml).unwrap_err().to_string();
            assert!(err.contains(words), "{yaml}: {err}");
        }
    }
}
