//! The parts of cert-manager's `cert-manager.io/v1` objects this crate
//! writes and reads, typed (like the CloudNativePG `Cluster` in
//! render/deployment.rs); they travel as [`kube::api::DynamicObject`]s.

use serde::{Deserialize, Serialize};

pub const API_VERSION: &str = "cert-manager.io/v1";
pub const GROUP: &str = "cert-manager.io";

/// `Certificate.spec`: the fields the chart and the registration set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateSpec {
    #[serde(default, skip_serializing_if = "std::ops::Not::not", rename = "isCA")]
    pub is_ca: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_name: Option<String>,
    pub secret_name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub usages: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<PrivateKey>,
    pub issuer_ref: IssuerRef,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrivateKey {
    pub algorithm: String,
    pub size: u32,
}

impl PrivateKey {
    /// ECDSA P-256: small, fast, and what rustls prefers.
    pub fn ecdsa_p256() -> Self {
        Self {
            algorithm: "ECDSA".into(),
            size: 256,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IssuerRef {
    pub name: String,
    pub kind: String,
    pub group: String,
}

impl IssuerRef {
    /// A namespaced `Issuer` of cert-manager.
    pub fn issuer(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            kind: "Issuer".into(),
            group: GROUP.into(),
        }
    }
}

/// `Certificate.status`: whether the Secret holds a current certificate.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CertificateStatus {
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub observed_generation: Option<i64>,
}

impl CertificateStatus {
    /// The `Ready` condition, if cert-manager has set one.
    pub fn ready(&self) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == "Ready")
    }
}

/// The kiosk CA's name (Issuer, Certificate and Secret alike) of a release
/// whose objects are called `fullname`: chart/templates/_helpers.tpl
/// "kubevision.kioskCaName".
pub fn kiosk_ca_name(fullname: &str) -> String {
    format!("{fullname}-kiosk-ca")
}

/// The Secret of the registered kiosks' identities ("kubevision.kiosksSecretName").
pub fn kiosks_secret_name(fullname: &str) -> String {
    format!("{fullname}-kiosks")
}
