//! Registering a kiosk with a release: its client certificate from the
//! release's kiosk CA, its identity in the service's identities, and the
//! plant PIN pepper, for `kubevision cluster register-kiosk` and the
//! kiosk's cluster panel.
//!
//! - The certificate: a cert-manager `Certificate` `<fullname>-kiosk-<name>`
//!   (common name = the kiosk's identity name, usage client auth) from the
//!   Issuer `<fullname>-kiosk-ca` (chart value `auth.kioskCA.certManager`),
//!   applied server-side under [`FIELD_MANAGER`]; its Secret is read once
//!   cert-manager reports it Ready.
//! - The identity: one key, `<name>.json`, of the Secret `<fullname>-kiosks`,
//!   which the pods mount into their identities directory (the service
//!   reads every file there and reloads on change). One key per kiosk,
//!   added and removed by JSON merge patches that name only that key, so
//!   two registrations at once never overwrite each other (no
//!   read-modify-write of a shared file, no lost update) and a `deploy`
//!   never touches them.
//! - The pepper: the Secret `<fullname>-pin-pepper` (key `pin-pepper.key`,
//!   32 random bytes as 64 lowercase hex digits and a newline), created
//!   only when missing (a create that fails with AlreadyExists reads the
//!   other one's), never overwritten: every kiosk of the plant gets the
//!   same.
//!
//! None of these objects carries the release's instance label, so a
//! `deploy` (which prunes the release's objects it did not render) and a
//! `remove` leave registrations alone; they carry `kubevision.io/release`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams,
};
use kube::Client;
use serde_json::{json, Value};

use crate::certmanager::{self, CertificateSpec, CertificateStatus, IssuerRef, PrivateKey, GROUP};
use crate::connect::Connection;
use crate::error::{is_not_found, Error};
use crate::kinds::{release_selector, ObjectRef};
use crate::render::identities_json;
use crate::values::{IdentityValue, Release, SCOPES};
use crate::FIELD_MANAGER;

/// The key of the plant pepper in its Secret, and the kiosk's file name.
pub const PEPPER_KEY: &str = "pin-pepper.key";
pub const PEPPER_FILE: &str = "plant-pepper.key";
/// How long a kiosk certificate is valid; register again to renew it.
pub const KIOSK_CERTIFICATE_DURATION: &str = "8760h";
/// The label naming the release a registration belongs to.
pub const RELEASE_LABEL: &str = "kubevision.io/release";
pub const KIOSK_LABEL: &str = "kubevision.io/kiosk";

/// What a registered kiosk needs, and what the registration made.
#[derive(Clone, PartialEq, Eq)]
pub struct KioskCredentials {
    /// The identity's name (the certificate's common name).
    pub name: String,
    pub scopes: Vec<String>,
    /// PEM: the kiosk's certificate (tls.crt), its key (tls.key) and the
    /// kiosk CA (ca.crt), which also signed the service's certificate when
    /// the chart issued it.
    pub certificate_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
    /// The plant PIN pepper: 64 lowercase hex digits and a newline.
    pub plant_pepper: String,
    /// Whether this registration created the pepper (the plant's first).
    pub pepper_created: bool,
    /// The Certificate, and the Secret holding the identity.
    pub certificate: ObjectRef,
    pub identities_secret: String,
}

impl std::fmt::Debug for KioskCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KioskCredentials")
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .field("certificate", &self.certificate)
            .field("identities_secret", &self.identities_secret)
            .field("pepper_created", &self.pepper_created)
            .finish_non_exhaustive()
    }
}

/// The files [`KioskCredentials::write_to`] writes into the kiosk's folder.
pub const FILES: [&str; 4] = ["tls.crt", "tls.key", "ca.crt", PEPPER_FILE];

impl KioskCredentials {
    /// Writes tls.crt, tls.key, ca.crt and plant-pepper.key into `dir`
    /// (created 0700, and made 0700 if it exists): each file 0600, written
    /// to a temporary file beside it, synced and renamed over the old one,
    /// so a kiosk never reads half a key. Returns the paths in [`FILES`] order.
    pub fn write_to(&self, dir: &Path) -> Result<Vec<PathBuf>, Error> {
        let failed = |path: &Path, e: std::io::Error| Error::WriteFile {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(|e| failed(dir, e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| failed(dir, e))?;
        }
        let contents = [
            &self.certificate_pem,
            &self.key_pem,
            &self.ca_pem,
            &self.plant_pepper,
        ];
        let mut written = Vec::new();
        for (name, text) in FILES.iter().zip(contents) {
            let path = dir.join(name);
            write_private(&path, text.as_bytes()).map_err(|e| failed(&path, e))?;
            written.push(path);
        }
        #[cfg(unix)]
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(written)
    }
}

/// Atomic, private (0600) write: a temporary file in the same folder, then a rename.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&temp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let result = (|| {
        let mut file = options.open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Checks a kiosk name: it is the certificate's common name, part of the
/// Certificate's name and a key of the identities Secret, so a DNS label
/// (1–63 lowercase letters, digits and '-', not at either end).
pub fn check_kiosk_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the kiosk name {name:?} must be 1 to 63 lowercase letters, digits and '-', \
             starting and ending with a letter or digit (e.g. kiosk-line-3)"
        ))
    }
}

/// The scopes in their canonical order, each once; refuses unknown ones.
pub fn check_scopes<S: AsRef<str>>(scopes: &[S]) -> Result<Vec<String>, String> {
    if scopes.is_empty() {
        return Err("no scopes: give any of identify, enrol, sync, admin".into());
    }
    for scope in scopes {
        let scope = scope.as_ref();
        if !SCOPES.contains(&scope) {
            return Err(format!(
                "unknown scope {scope:?}: the scopes are identify, enrol, sync, admin"
            ));
        }
    }
    Ok(SCOPES
        .iter()
        .filter(|s| scopes.iter().any(|g| g.as_ref() == **s))
        .map(|s| s.to_string())
        .collect())
}

fn certificate_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(GROUP, "v1", "Certificate"),
        "certificates",
    )
}

fn issuer_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, "v1", "Issuer"), "issuers")
}

/// The Certificate (and Secret) name of a kiosk of the release `fullname`.
pub fn kiosk_certificate_name(fullname: &str, kiosk: &str) -> String {
    format!("{fullname}-kiosk-{kiosk}")
}

/// The pepper Secret's name of the release `fullname`.
pub fn pepper_secret_name(fullname: &str) -> String {
    format!("{fullname}-pin-pepper")
}

fn identity_key(kiosk: &str) -> String {
    format!("{kiosk}.json")
}

/// The release's object name prefix (the chart's fullname), from its kiosk
/// CA Issuer; an error in plain words when the release has none.
async fn release_fullname(
    client: &Client,
    release: &Release,
    kiosk: &str,
) -> Result<String, Error> {
    let issuers: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &release.namespace, &issuer_resource());
    let lp = ListParams::default().labels(&release_selector(release));
    let list = issuers.list(&lp).await.map_err(|e| {
        if is_not_found(&e) {
            Error::MissingApi {
                kind: "Issuer (cert-manager.io/v1)".into(),
                hint: "install cert-manager and deploy the release with auth.kioskCA.certManager=true \
                       (the default of `kubevision cluster deploy`)"
                    .into(),
            }
        } else {
            Error::kube(format!("list the Issuers of release {}", release.name), e)
        }
    })?;
    list.items
        .iter()
        .filter_map(|i| i.metadata.name.as_deref())
        .find_map(|n| n.strip_suffix("-kiosk-ca"))
        .map(str::to_owned)
        .ok_or_else(|| Error::Registration {
            name: kiosk.to_owned(),
            reason: format!(
                "release {} in namespace {} has no kiosk CA: deploy it with \
                 auth.kioskCA.certManager=true (the default of `kubevision cluster deploy`)",
                release.name, release.namespace
            ),
        })
}

fn labels(release: &Release, kiosk: Option<&str>) -> Value {
    let mut labels = json!({
        "app.kubernetes.io/part-of": "kubevision",
        "app.kubernetes.io/managed-by": FIELD_MANAGER,
        RELEASE_LABEL: release.name,
    });
    if let Some(kiosk) = kiosk {
        labels["app.kubernetes.io/component"] = json!("kiosk");
        labels[KIOSK_LABEL] = json!(kiosk);
    }
    labels
}

/// The kiosk's cert-manager Certificate, as applied.
pub fn kiosk_certificate(release: &Release, fullname: &str, kiosk: &str) -> DynamicObject {
    let name = kiosk_certificate_name(fullname, kiosk);
    let spec = CertificateSpec {
        is_ca: false,
        common_name: Some(kiosk.to_owned()),
        secret_name: name.clone(),
        dns_names: Vec::new(),
        duration: Some(KIOSK_CERTIFICATE_DURATION.into()),
        usages: vec!["client auth".into(), "digital signature".into()],
        private_key: Some(PrivateKey::ecdsa_p256()),
        issuer_ref: IssuerRef::issuer(&certmanager::kiosk_ca_name(fullname)),
    };
    serde_json::from_value(json!({
        "apiVersion": certmanager::API_VERSION,
        "kind": "Certificate",
        "metadata": {"name": name, "namespace": release.namespace, "labels": labels(release, Some(kiosk))},
        "spec": spec,
    }))
    .expect("a Certificate is a valid object")
}

/// Registers the kiosk `name` with `release`: issues its certificate
/// (waiting at most `timeout` for cert-manager), gets or creates the plant
/// pepper, and adds its identity (`scopes`, certificate = `name`) to the
/// release's identities. Running it again renews nothing that is current
/// and changes the scopes to the ones given.
pub async fn register_kiosk<S: AsRef<str>>(
    conn: &Connection,
    release: &Release,
    name: &str,
    scopes: &[S],
    timeout: Duration,
) -> Result<KioskCredentials, Error> {
    let refuse = |reason: String| Error::Registration {
        name: name.to_owned(),
        reason,
    };
    check_kiosk_name(name).map_err(refuse)?;
    let scopes = check_scopes(scopes).map_err(refuse)?;
    let client = conn.client();
    let fullname = release_fullname(client, release, name).await?;

    // 1. The certificate.
    let certificate = kiosk_certificate(release, &fullname, name);
    let cert_name = kiosk_certificate_name(&fullname, name);
    let certificates: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &release.namespace, &certificate_resource());
    certificates
        .patch(
            &cert_name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&certificate),
        )
        .await
        .map_err(|e| Error::kube(format!("apply Certificate {cert_name}"), e))?;
    let issued = wait_for_certificate(client, release, name, &cert_name, timeout).await?;

    // 2. The plant pepper.
    let (plant_pepper, pepper_created) = plant_pepper(client, release, &fullname).await?;

    // 3. The identity, last: a kiosk is let in only once it can get in.
    let identity = IdentityValue {
        name: name.to_owned(),
        scopes: scopes.clone(),
        certificate: Some(name.to_owned()),
        token_sha256: None,
    };
    let identities_secret = certmanager::kiosks_secret_name(&fullname);
    let text = identities_json(std::slice::from_ref(&identity));
    set_identity_key(client, release, &identities_secret, name, Some(&text)).await?;

    let field = |key: &str| {
        issued
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
            .unwrap_or_default()
    };
    Ok(KioskCredentials {
        name: name.to_owned(),
        scopes,
        certificate_pem: field("tls.crt"),
        key_pem: field("tls.key"),
        ca_pem: field("ca.crt"),
        plant_pepper,
        pepper_created,
        certificate: ObjectRef {
            kind: "Certificate".into(),
            name: cert_name,
        },
        identities_secret,
    })
}

/// Polls the Certificate until cert-manager reports it Ready for its
/// current spec and its Secret holds tls.crt, tls.key and ca.crt.
async fn wait_for_certificate(
    client: &Client,
    release: &Release,
    kiosk: &str,
    cert_name: &str,
    timeout: Duration,
) -> Result<Secret, Error> {
    let certificates: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &release.namespace, &certificate_resource());
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &release.namespace);
    let deadline = Instant::now() + timeout;
    let mut reason = "cert-manager has not looked at it yet".to_owned();
    loop {
        let cert = certificates
            .get(cert_name)
            .await
            .map_err(|e| Error::kube(format!("read Certificate {cert_name}"), e))?;
        let status: CertificateStatus = cert
            .data
            .get("status")
            .cloned()
            .and_then(|s| serde_json::from_value(s).ok())
            .unwrap_or_default();
        let generation = cert.metadata.generation;
        match status.ready() {
            Some(c)
                if c.status == "True"
                    && c.observed_generation
                        .zip(generation)
                        .is_none_or(|(o, g)| o >= g) =>
            {
                let secret = secrets
                    .get_opt(cert_name)
                    .await
                    .map_err(|e| Error::kube(format!("read Secret {cert_name}"), e))?;
                let complete = |s: &Secret| {
                    ["tls.crt", "tls.key", "ca.crt"].iter().all(|k| {
                        s.data
                            .as_ref()
                            .and_then(|d| d.get(*k))
                            .is_some_and(|b| !b.0.is_empty())
                    })
                };
                match secret {
                    Some(s) if complete(&s) => return Ok(s),
                    _ => {
                        reason = format!("its Secret {cert_name} lacks tls.crt, tls.key or ca.crt")
                    }
                }
            }
            Some(c) => {
                reason = format!(
                    "not ready: {}",
                    c.message
                        .clone()
                        .or_else(|| c.reason.clone())
                        .unwrap_or_else(|| "no reason given".into())
                )
            }
            None => {}
        }
        if Instant::now() >= deadline {
            return Err(Error::NotIssued {
                name: kiosk.to_owned(),
                certificate: cert_name.to_owned(),
                seconds: timeout.as_secs(),
                reason,
            });
        }
        tokio::time::sleep(Duration::from_millis(500).min(timeout)).await;
    }
}

/// The plant pepper: read, or created (never overwritten) when missing.
async fn plant_pepper(
    client: &Client,
    release: &Release,
    fullname: &str,
) -> Result<(String, bool), Error> {
    let name = pepper_secret_name(fullname);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &release.namespace);
    let read = |secret: &Secret| -> Result<String, Error> {
        let text = secret
            .data
            .as_ref()
            .and_then(|d| d.get(PEPPER_KEY))
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
            .unwrap_or_default();
        let hex = text.trim_end_matches('\n');
        if hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
            Ok(format!("{}\n", hex.to_ascii_lowercase()))
        } else {
            Err(Error::Registration {
                name: name.clone(),
                reason: format!(
                    "the Secret {name} exists but its key {PEPPER_KEY} is not 64 hex digits; \
                     it is left as it is (a pepper is never replaced: every PIN hash depends on it)"
                ),
            })
        }
    };
    let action = format!("read Secret {name}");
    if let Some(existing) = secrets
        .get_opt(&name)
        .await
        .map_err(|e| Error::kube(&action, e))?
    {
        return Ok((read(&existing)?, false));
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| Error::Registration {
        name: name.clone(),
        reason: format!("no randomness for the pepper: {e}"),
    })?;
    let pepper: String = bytes.iter().map(|b| format!("{b:02x}")).collect::<String>() + "\n";
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": release.namespace, "labels": labels(release, None)},
        "type": "Opaque",
        "data": {PEPPER_KEY: BASE64.encode(&pepper)},
    }))
    .expect("a Secret is a valid object");
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    match secrets.create(&params, &secret).await {
        Ok(_) => Ok((pepper, true)),
        // Another registration made it first: use theirs.
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let theirs = secrets
                .get(&name)
                .await
                .map_err(|e| Error::kube(&action, e))?;
            Ok((read(&theirs)?, false))
        }
        Err(e) => Err(Error::kube(format!("create Secret {name}"), e)),
    }
}

/// Sets (Some) or removes (None) one kiosk's key of the identities Secret
/// by a JSON merge patch naming only that key; creates the Secret first
/// when it is missing. Ok(false) when removing from a missing Secret.
async fn set_identity_key(
    client: &Client,
    release: &Release,
    secret_name: &str,
    kiosk: &str,
    text: Option<&str>,
) -> Result<bool, Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &release.namespace);
    let key = identity_key(kiosk);
    let value = text.map(|t| BASE64.encode(t));
    let patch = json!({"data": {&key: value}});
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let action = format!("update Secret {secret_name}");
    if text.is_none() {
        let present = secrets
            .get_opt(secret_name)
            .await
            .map_err(|e| Error::kube(&action, e))?
            .is_some_and(|s| s.data.is_some_and(|d| d.contains_key(&key)));
        if !present {
            return Ok(false);
        }
    }
    match secrets
        .patch(secret_name, &params, &Patch::Merge(&patch))
        .await
    {
        Ok(_) => return Ok(true),
        Err(e) if is_not_found(&e) && text.is_none() => return Ok(false),
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(Error::kube(action, e)),
    }
    let mut secret = Secret::default();
    secret.metadata.name = Some(secret_name.to_owned());
    secret.metadata.namespace = Some(release.namespace.clone());
    secret.metadata.labels = serde_json::from_value(labels(release, None)).ok();
    secret.type_ = Some("Opaque".into());
    secret.data = Some(
        [(
            key,
            ByteString(text.unwrap_or_default().as_bytes().to_vec()),
        )]
        .into_iter()
        .collect(),
    );
    let post = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    match secrets.create(&post, &secret).await {
        Ok(_) => Ok(true),
        // Made by a registration at the same time: add the key to theirs.
        Err(kube::Error::Api(s)) if s.code == 409 => secrets
            .patch(secret_name, &params, &Patch::Merge(&patch))
            .await
            .map(|_| true)
            .map_err(|e| Error::kube(action, e)),
        Err(e) => Err(Error::kube(format!("create Secret {secret_name}"), e)),
    }
}

/// Removes the kiosk's identity (it is refused within the service's reload
/// interval), its Certificate and the certificate's Secret. Returns what
/// was removed; nothing that is already gone is an error.
pub async fn unregister_kiosk(
    conn: &Connection,
    release: &Release,
    name: &str,
) -> Result<Vec<ObjectRef>, Error> {
    check_kiosk_name(name).map_err(|reason| Error::Registration {
        name: name.to_owned(),
        reason,
    })?;
    let client = conn.client();
    let fullname = release_fullname(client, release, name).await?;
    let mut removed = Vec::new();
    let identities_secret = certmanager::kiosks_secret_name(&fullname);
    if set_identity_key(client, release, &identities_secret, name, None).await? {
        removed.push(ObjectRef {
            kind: "Secret key".into(),
            name: format!("{identities_secret}/{}", identity_key(name)),
        });
    }
    let cert_name = kiosk_certificate_name(&fullname, name);
    let certificates: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &release.namespace, &certificate_resource());
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &release.namespace);
    let dp = DeleteParams::default();
    match certificates.delete(&cert_name, &dp).await {
        Ok(_) => removed.push(ObjectRef {
            kind: "Certificate".into(),
            name: cert_name.clone(),
        }),
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(Error::kube(format!("delete Certificate {cert_name}"), e)),
    }
    // cert-manager leaves a deleted Certificate's Secret behind: the key goes too.
    match secrets.delete(&cert_name, &dp).await {
        Ok(_) => removed.push(ObjectRef {
            kind: "Secret".into(),
            name: cert_name.clone(),
        }),
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(Error::kube(format!("delete Secret {cert_name}"), e)),
    }
    Ok(removed)
}
