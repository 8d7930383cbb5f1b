//! Who is calling, and what they may do: identities and their scopes.
//!
//! Each kiosk (or tool) has an identity: a name, its scopes and how it
//! proves itself, read from `--identities PATH` (JSON), a file or a
//! directory of such files (every regular file whose name does not start
//! with a dot, in name order: the layout of a mounted Kubernetes Secret,
//! one key per file):
//!
//! ```json
//! { "identities": [
//!     { "name": "kiosk-line-3", "scopes": ["identify", "sync"],
//!       "certificate": "kiosk-line-3",
//!       "token_sha256": "<64 hex digits: SHA-256 of the kiosk's token>" }
//! ] }
//! ```
//!
//! * `certificate`: the subject CN or a SAN DNS name of a client
//!   certificate signed by `--tls-client-ca` (mTLS).
//! * `token_sha256`: the SHA-256 (hex) of the bearer token the kiosk sends;
//!   the file holds no secret that a copy of it gives away.
//! * An identity with both must present both.
//!
//! Scopes: `identify` (Identify, Verify, ReportSignIn, ListLockouts), `enrol` (Enroll, UpdateOperator,
//! RemoveOperator), `sync` (SyncGallery, GetGalleryStatus), `admin` (every
//! method, including any not listed here).
//!
//! The single `--token`/`--token-file` of earlier versions still works, as
//! the identity `legacy-token` with every scope (not recommended: one
//! secret shared by every kiosk). Without `--identities`, a token or a
//! client CA the service is open, as before, to the identity `anonymous`;
//! with `--identities` it never is, even while the file or directory names
//! no identity yet (every call is then refused until one is registered).
//!
//! The file (or directory) is read again every `--identities-reload-secs`
//! ([`Identities::watch`]): Kubernetes updates a mounted Secret in place,
//! so a kiosk registered later is let in without a restart. A new content
//! that does not parse is logged as an error naming the problem, and the
//! identities read before stay in force.
//!
//! The gate ([`crate::auth`]) resolves the caller from the headers and the
//! TLS peer certificate and checks the scope before the body is read; the
//! caller travels in the request extensions to the RPC layer, which makes
//! it [`current`] while the handler runs.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::Config;

/// The name the legacy shared token's identity goes by.
pub const LEGACY: &str = "legacy-token";
/// The name of the caller of a service with no credentials configured.
pub const ANONYMOUS: &str = "anonymous";
/// Shortest token accepted from `--token-file`, in characters.
pub const MIN_TOKEN_FILE_CHARS: usize = 32;

/// What an identity may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    Identify,
    Enrol,
    Sync,
    Admin,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Scope::Identify => "identify",
            Scope::Enrol => "enrol",
            Scope::Sync => "sync",
            Scope::Admin => "admin",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "identify" => Scope::Identify,
            "enrol" => Scope::Enrol,
            "sync" => Scope::Sync,
            "admin" => Scope::Admin,
            _ => return None,
        })
    }

    /// The scope a gRPC method needs; methods not listed need `admin`.
    pub fn for_method(method: &str) -> Scope {
        match method {
            "Identify" | "Verify" | "ReportSignIn" | "ListLockouts" => Scope::Identify,
            "Enroll" | "UpdateOperator" | "RemoveOperator" => Scope::Enrol,
            "SyncGallery" | "GetGalleryStatus" => Scope::Sync,
            _ => Scope::Admin,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The authenticated caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: Arc<str>,
    scopes: BTreeSet<Scope>,
}

impl Caller {
    fn all(name: &str) -> Self {
        Self {
            name: name.into(),
            scopes: [Scope::Admin].into(),
        }
    }

    /// Whether the caller holds `scope` (`admin` holds every scope).
    pub fn may(&self, scope: Scope) -> bool {
        self.scopes.contains(&Scope::Admin) || self.scopes.contains(&scope)
    }

    pub fn scopes(&self) -> impl Iterator<Item = Scope> + '_ {
        self.scopes.iter().copied()
    }
}

tokio::task_local! {
    static CURRENT: Caller;
}

/// The caller of the RPC being handled on this task (set by the RPC layer
/// around every handler), or None outside one. Task-local: read it on the
/// async side and hand it to blocking work explicitly.
pub fn current() -> Option<Caller> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Runs `future` with `caller` as its [`current`] caller.
pub async fn scope<F: std::future::Future>(caller: Caller, future: F) -> F::Output {
    CURRENT.scope(caller, future).await
}

/// Why a request's credentials do not name an identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No token, a wrong one, or a certificate no identity names.
    Unknown(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Unknown(why) => f.write_str(why),
        }
    }
}

#[derive(Debug)]
struct Entry {
    caller: Caller,
    certificate: Option<String>,
    token_sha256: Option<[u8; 32]>,
}

/// Every identity the service knows, and how to recognise each.
#[derive(Debug)]
pub struct Registry {
    entries: Vec<Entry>,
    by_certificate: HashMap<String, usize>,
    /// Whether requests need credentials at all.
    open: bool,
    /// Whether the identities come from `--identities` (then a verified
    /// client certificate that names no identity is refused, even while
    /// none is registered).
    configured: bool,
}

/// The identities file's shape.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    identities: Vec<FileEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    name: String,
    scopes: Vec<String>,
    #[serde(default)]
    certificate: Option<String>,
    #[serde(default)]
    token_sha256: Option<String>,
}

impl Registry {
    /// The identities of the configuration: `--identities`, plus the
    /// legacy `--token`/`--token-file`. Errors name the file and the entry.
    pub fn from_config(config: &Config) -> Result<Self, String> {
        warn_about_a_plain_token(config);
        let sources = match &config.identities {
            Some(path) => Some(read_sources(path)?),
            None => None,
        };
        Self::from_sources(config, sources.as_deref())
    }

    /// The registry of `sources` (what [`read_sources`] read from
    /// `--identities`; None without it) and the legacy token.
    fn from_sources(config: &Config, sources: Option<&[Source]>) -> Result<Self, String> {
        let mut registry = Self::empty();
        for source in sources.unwrap_or_default() {
            registry
                .add_file(&source.text)
                .map_err(|e| format!("the identities file {} is invalid: {e}", source.path))?;
        }
        let legacy = match (&config.token, &config.token_file) {
            (Some(_), Some(_)) => return Err("--token and --token-file: give one".into()),
            (Some(token), None) => Some(token.expose().to_owned()),
            (None, Some(path)) => Some(read_token_file(path)?),
            (None, None) => None,
        };
        if let Some(token) = legacy {
            registry.add_legacy_token(&token)?;
        }
        if config.tls_client_ca.is_none() {
            if let Some(e) = registry.entries.iter().find(|e| e.certificate.is_some()) {
                return Err(format!(
                    "identity {:?} is recognised by a client certificate, but no \
                     --tls-client-ca is set to verify one",
                    &*e.caller.name
                ));
            }
        }
        // With --identities the service is never open, even with no
        // identity registered yet.
        registry.open =
            sources.is_none() && registry.entries.is_empty() && config.tls_client_ca.is_none();
        registry.configured = sources.is_some();
        Ok(registry)
    }

    /// No identities: every request is let in (as `anonymous`).
    pub fn empty() -> Self {
        Self {
            entries: Vec::new(),
            by_certificate: HashMap::new(),
            open: true,
            configured: false,
        }
    }

    /// Only the legacy shared token (or, with None, an open service).
    pub fn legacy(token: Option<&str>) -> Self {
        let mut registry = Self::empty();
        if let Some(token) = token {
            registry
                .add_legacy_token(token)
                .expect("an empty registry has no clash");
            registry.open = false;
        }
        registry
    }

    fn add_legacy_token(&mut self, token: &str) -> Result<(), String> {
        let hash = sha256(token.as_bytes());
        if self.entries.iter().any(|e| e.token_sha256 == Some(hash)) {
            return Err("the legacy token is also the token of an identity in --identities".into());
        }
        if self.entries.iter().any(|e| &*e.caller.name == LEGACY) {
            return Err(format!(
                "the name {LEGACY:?} is taken by the legacy --token; rename the identity"
            ));
        }
        self.entries.push(Entry {
            caller: Caller::all(LEGACY),
            certificate: None,
            token_sha256: Some(hash),
        });
        self.open = false;
        Ok(())
    }

    /// Parses an identities file. Errors name the line (syntax) or the
    /// entry (meaning).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut registry = Self::empty();
        registry.add_file(text)?;
        registry.open = registry.entries.is_empty();
        Ok(registry)
    }

    /// Adds the identities of one file; names, tokens and certificate
    /// names must stay unique across every file added.
    fn add_file(&mut self, text: &str) -> Result<(), String> {
        let file: File = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let registry = self;
        for (index, entry) in file.identities.into_iter().enumerate() {
            let at = |why: String| format!("entry {} ({:?}): {why}", index + 1, entry.name);
            let name = entry.name.trim();
            if name.is_empty() || name.len() > 128 || name != entry.name {
                return Err(at(
                    "the name must be 1 to 128 characters, without leading or trailing spaces"
                        .into(),
                ));
            }
            if name.chars().any(char::is_control) || name == ANONYMOUS {
                return Err(at("this name is not allowed".into()));
            }
            if registry.entries.iter().any(|e| &*e.caller.name == name) {
                return Err(at("another entry has the same name".into()));
            }
            if entry.scopes.is_empty() {
                return Err(at(
                    "no scopes: give any of identify, enrol, sync, admin".into()
                ));
            }
            let mut scopes = BTreeSet::new();
            for scope in &entry.scopes {
                scopes.insert(Scope::parse(scope).ok_or_else(|| {
                    at(format!(
                        "unknown scope {scope:?}: the scopes are identify, enrol, sync, admin"
                    ))
                })?);
            }
            let token_sha256 = entry
                .token_sha256
                .as_deref()
                .map(|hex| {
                    parse_sha256(hex).ok_or_else(|| {
                        at(
                            "token_sha256 must be 64 hex digits: the SHA-256 of the token, \
                            never the token itself"
                                .into(),
                        )
                    })
                })
                .transpose()?;
            if let Some(hash) = token_sha256 {
                if registry
                    .entries
                    .iter()
                    .any(|e| e.token_sha256 == Some(hash))
                {
                    return Err(at("another entry has the same token".into()));
                }
            }
            let certificate = match entry.certificate.as_deref().map(str::trim) {
                Some("") => return Err(at("the certificate name is empty".into())),
                Some(c) => Some(c.to_ascii_lowercase()),
                None => None,
            };
            if certificate.is_none() && token_sha256.is_none() {
                return Err(at(
                    "no credential: give a certificate name, a token_sha256, or both".into(),
                ));
            }
            if let Some(c) = &certificate {
                if registry.by_certificate.contains_key(c) {
                    return Err(at(format!("another entry has the certificate name {c:?}")));
                }
                registry
                    .by_certificate
                    .insert(c.clone(), registry.entries.len());
            }
            registry.entries.push(Entry {
                caller: Caller {
                    name: name.into(),
                    scopes,
                },
                certificate,
                token_sha256,
            });
        }
        Ok(())
    }

    /// Identities known (the legacy token counts as one).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The caller a request's credentials name: its bearer token (if it
    /// sent one) and the names of its verified client certificate.
    pub fn resolve(
        &self,
        bearer: Option<&str>,
        certificate_names: &[String],
    ) -> Result<Caller, Refusal> {
        let by_token = match bearer {
            Some(token) => Some(self.by_token(token).ok_or_else(|| {
                Refusal::Unknown("the bearer token is not one this service knows".into())
            })?),
            None => None,
        };
        let by_certificate = self.by_certificate(certificate_names)?;
        let entry = match (by_token, by_certificate) {
            (Some(t), Some(c)) if t != c => {
                return Err(Refusal::Unknown(format!(
                    "the bearer token is {:?}'s but the client certificate is {:?}'s",
                    &*self.entries[t].caller.name, &*self.entries[c].caller.name
                )))
            }
            (Some(i), _) | (None, Some(i)) => i,
            (None, None) if self.open => return Ok(Caller::all(ANONYMOUS)),
            (None, None) if self.entries.is_empty() && !self.configured => {
                // mTLS alone, no identities: any certificate the client CA
                // signed (the handshake required one) gets in, as before.
                let name = certificate_names.first().map_or("unnamed", String::as_str);
                return Ok(Caller::all(&format!("certificate:{name}")));
            }
            (None, None) if self.entries.is_empty() => {
                return Err(Refusal::Unknown(
                    "no identity is registered yet: --identities names none".into(),
                ))
            }
            (None, None) => {
                return Err(Refusal::Unknown(if certificate_names.is_empty() {
                    "no credentials: send \"authorization: Bearer <token>\" or a client \
                     certificate"
                        .into()
                } else {
                    format!(
                        "no identity has the client certificate {:?}, and no bearer token \
                         was sent",
                        certificate_names.join(", ")
                    )
                }))
            }
        };
        let e = &self.entries[entry];
        if e.certificate.is_some() && by_certificate.is_none() {
            return Err(Refusal::Unknown(format!(
                "identity {:?} must also present its client certificate",
                &*e.caller.name
            )));
        }
        if e.token_sha256.is_some() && by_token.is_none() {
            return Err(Refusal::Unknown(format!(
                "identity {:?} must also send its bearer token",
                &*e.caller.name
            )));
        }
        Ok(e.caller.clone())
    }

    /// The entry whose token hash matches, comparing every one in constant time.
    fn by_token(&self, token: &str) -> Option<usize> {
        let hash = sha256(token.as_bytes());
        let mut found = None;
        for (i, e) in self.entries.iter().enumerate() {
            if let Some(h) = &e.token_sha256 {
                if crate::service::constant_time_eq(h, &hash) {
                    found = Some(i);
                }
            }
        }
        found
    }

    /// The one entry any of the certificate's names (CN first) belongs to.
    fn by_certificate(&self, names: &[String]) -> Result<Option<usize>, Refusal> {
        let mut found: Option<usize> = None;
        for name in names {
            if let Some(&i) = self.by_certificate.get(&name.to_ascii_lowercase()) {
                if found.is_some_and(|f| f != i) {
                    return Err(Refusal::Unknown(
                        "the client certificate's names belong to different identities".into(),
                    ));
                }
                found = Some(i);
            }
        }
        Ok(found)
    }
}

fn warn_about_a_plain_token(config: &Config) {
    if config.token.is_some() {
        tracing::warn!(
            "--token (KUBEVISION_TOKEN) is visible in the process list or environment, and one \
             shared token gives every kiosk every scope: prefer --identities with per-kiosk \
             tokens (or client certificates), or at least --token-file"
        );
    }
}

/// One identities file as read: where it came from and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Source {
    path: String,
    text: String,
}

/// Longest identities file read, in bytes.
const MAX_IDENTITIES_FILE: u64 = 4 << 20;
/// Most files read from an identities directory.
const MAX_IDENTITIES_FILES: usize = 4096;

/// The identities file, or every file of the identities directory whose
/// name does not start with a dot (a mounted Secret's `..data` and
/// timestamped directories do), following symbolic links (a mounted
/// Secret's keys are links into `..data`), in name order.
fn read_sources(path: &Path) -> Result<Vec<Source>, String> {
    let read = |file: &Path| -> Result<Source, String> {
        let cannot =
            |e: std::io::Error| format!("cannot read the identities file {}: {e}", file.display());
        let meta = std::fs::metadata(file).map_err(cannot)?;
        if !meta.is_file() {
            return Err(format!(
                "the identities file {} is not a regular file",
                file.display()
            ));
        }
        if meta.len() > MAX_IDENTITIES_FILE {
            return Err(format!(
                "the identities file {} is larger than {MAX_IDENTITIES_FILE} bytes",
                file.display()
            ));
        }
        Ok(Source {
            path: file.display().to_string(),
            text: std::fs::read_to_string(file).map_err(cannot)?,
        })
    };
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("cannot read the identities file {}: {e}", path.display()))?;
    if !meta.is_dir() {
        return Ok(vec![read(path)?]);
    }
    let listing = std::fs::read_dir(path).map_err(|e| {
        format!(
            "cannot read the identities directory {}: {e}",
            path.display()
        )
    })?;
    let mut files: Vec<PathBuf> = Vec::new();
    for entry in listing {
        let entry = entry.map_err(|e| {
            format!(
                "cannot read the identities directory {}: {e}",
                path.display()
            )
        })?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let file = entry.path();
        match std::fs::metadata(&file) {
            // Directories (and links to them) are not identities files.
            Ok(meta) if meta.is_dir() => continue,
            // A link into a mounted Secret's old `..data`: a key being
            // removed by the kubelet (it unlinks it right after the swap).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            _ => {}
        }
        files.push(file);
        if files.len() > MAX_IDENTITIES_FILES {
            return Err(format!(
                "the identities directory {} holds more than {MAX_IDENTITIES_FILES} files",
                path.display()
            ));
        }
    }
    files.sort();
    files.iter().map(|f| read(f)).collect()
}

/// The identities in force, shared by the gate and swapped whole when the
/// identities file changes: a request sees the old table or the new one,
/// never a mix.
#[derive(Debug)]
pub struct Identities {
    current: RwLock<Arc<Registry>>,
    /// What the registry in force was built from (None without --identities).
    sources: RwLock<Option<Vec<Source>>>,
}

impl Identities {
    /// Reads the configuration's identities (see [`Registry::from_config`]).
    pub fn from_config(config: &Config) -> Result<Self, String> {
        warn_about_a_plain_token(config);
        let sources = match &config.identities {
            Some(path) => Some(read_sources(path)?),
            None => None,
        };
        let registry = Registry::from_sources(config, sources.as_deref())?;
        Ok(Self {
            current: RwLock::new(Arc::new(registry)),
            sources: RwLock::new(sources),
        })
    }

    /// A fixed registry (no file behind it).
    pub fn fixed(registry: Registry) -> Self {
        Self {
            current: RwLock::new(Arc::new(registry)),
            sources: RwLock::new(None),
        }
    }

    /// The table in force now.
    pub fn get(&self) -> Arc<Registry> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Reads `--identities` again; when its content changed and parses,
    /// the new table replaces the old one. Ok(true) when it was replaced,
    /// Ok(false) when nothing changed; an error (the old table stays) names
    /// the file and the problem.
    pub fn reload(&self, config: &Config) -> Result<bool, String> {
        let Some(path) = &config.identities else {
            return Ok(false);
        };
        let sources = read_sources(path)?;
        {
            let old = self
                .sources
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if old.as_deref() == Some(&sources[..]) {
                return Ok(false);
            }
        }
        let registry = Registry::from_sources(config, Some(&sources));
        // Remember what was read either way: a bad file is reported once,
        // not every period, and read again when it changes.
        *self
            .sources
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(sources);
        let registry = registry?;
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(registry);
        Ok(true)
    }

    /// Reloads every `period` on a background task (see [`Self::reload`]),
    /// logging each change and each problem. Nothing without
    /// `--identities` or with a zero period. The task ends when the
    /// returned handle is dropped or aborted.
    pub fn watch(self: &Arc<Self>, config: &Config, period: Duration) -> Option<WatchGuard> {
        config.identities.as_ref()?;
        if period.is_zero() {
            return None;
        }
        let (identities, config) = (self.clone(), config.clone());
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await; // the first tick is immediate: the file was just read
            loop {
                ticks.tick().await;
                let reloaded = {
                    let (identities, config) = (identities.clone(), config.clone());
                    tokio::task::spawn_blocking(move || identities.reload(&config)).await
                };
                match reloaded {
                    Ok(Ok(true)) => tracing::info!(
                        identities = identities.get().len(),
                        "the identities file changed: the new identities are in force"
                    ),
                    Ok(Ok(false)) => {}
                    Ok(Err(problem)) => tracing::error!(
                        %problem,
                        "the identities file changed but cannot be used: the identities read before stay in force"
                    ),
                    Err(e) => tracing::error!(%e, "reading the identities file failed"),
                }
            }
        });
        Some(WatchGuard(task))
    }
}

/// Stops the reloading task of [`Identities::watch`] when dropped.
pub struct WatchGuard(tokio::task::JoinHandle<()>);

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The SHA-256 of a token as the identities file writes it (lowercase hex).
pub fn token_sha256_hex(token: &str) -> String {
    sha256(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// Reads a token from its file: one line, surrounding whitespace trimmed.
pub fn read_token_file(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the --token-file {}: {e}", path.display()))?;
    let token = text.trim();
    if token.lines().count() != 1 {
        return Err(format!(
            "the --token-file {} must hold the token on one line",
            path.display()
        ));
    }
    if token.chars().count() < MIN_TOKEN_FILE_CHARS {
        return Err(format!(
            "the token in --token-file {} is shorter than {MIN_TOKEN_FILE_CHARS} characters: \
             use 32 random bytes or more (e.g. `openssl rand -hex 32`)",
            path.display()
        ));
    }
    if token.chars().any(|c| c.is_control() || c == ' ') {
        return Err(format!(
            "the token in --token-file {} holds spaces or control characters",
            path.display()
        ));
    }
    Ok(token.to_owned())
}

/// The names a client certificate (DER) goes by: its subject CNs, then its
/// SAN DNS names. Empty if it does not parse (the TLS stack verified it
/// already; a certificate with no usable name names no identity).
pub fn certificate_names(der: &[u8]) -> Vec<String> {
    use x509_cert::der::asn1::ObjectIdentifier;
    use x509_cert::der::{Decode, Tag, Tagged};
    use x509_cert::ext::pkix::name::GeneralName;
    use x509_cert::ext::pkix::SubjectAltName;

    const CN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
    const SAN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.17");
    let Ok(cert) = x509_cert::Certificate::from_der(der) else {
        return Vec::new();
    };
    let tbs = &cert.tbs_certificate;
    let mut names = Vec::new();
    for rdn in &tbs.subject.0 {
        for atv in rdn.0.iter() {
            let text = matches!(
                atv.value.tag(),
                Tag::Utf8String | Tag::PrintableString | Tag::Ia5String
            );
            if atv.oid == CN && text {
                if let Ok(s) = std::str::from_utf8(atv.value.value()) {
                    names.push(s.to_owned());
                }
            }
        }
    }
    for ext in tbs.extensions.iter().flatten() {
        if ext.extn_id == SAN {
            if let Ok(san) = SubjectAltName::from_der(ext.extn_value.as_bytes()) {
                for name in san.0 {
                    if let GeneralName::DnsName(dns) = name {
                        names.push(dns.to_string());
                    }
                }
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(entries: &str) -> String {
        format!("{{\"identities\": [{entries}]}}")
    }

    #[test]
    fn tokens_resolve_by_hash_and_scopes_apply() {
        let hash = token_sha256_hex("kiosk-3-token");
        let registry = Registry::parse(&file(&format!(
            r#"{{"name": "kiosk-line-3", "scopes": ["identify", "sync"], "token_sha256": "{hash}"}}"#
        )))
        .unwrap();
        let caller = registry.resolve(Some("kiosk-3-token"), &[]).unwrap();
        assert_eq!(&*caller.name, "kiosk-line-3");
        assert!(caller.may(Scope::Identify) && caller.may(Scope::Sync));
        assert!(!caller.may(Scope::Enrol) && !caller.may(Scope::Admin));
        assert!(registry.resolve(Some("guess"), &[]).is_err());
        assert!(registry.resolve(None, &[]).is_err());
    }

    #[test]
    fn admin_implies_every_scope_and_unknown_methods_need_it() {
        let caller = Caller::all("x");
        for scope in [Scope::Identify, Scope::Enrol, Scope::Sync, Scope::Admin] {
            assert!(caller.may(scope));
        }
        assert_eq!(Scope::for_method("Enroll"), Scope::Enrol);
        assert_eq!(Scope::for_method("DropGallery"), Scope::Admin);
    }

    #[test]
    fn malformed_files_name_the_entry_or_line() {
        let err = Registry::parse("{\"identities\": [\n{\"name\": \"a\",,}]}").unwrap_err();
        assert!(err.contains("line 2"), "{err}");
        let err = Registry::parse(&file(
            r#"{"name": "a", "scopes": ["identify"], "token_sha256": "00"}"#,
        ))
        .unwrap_err();
        assert!(err.contains("entry 1 (\"a\")"), "{err}");
        let err = Registry::parse(&file(
            r#"{"name": "a", "scopes": ["identify"], "certificate": "a"},
               {"name": "b", "scopes": ["enroll"], "certificate": "b"}"#,
        ))
        .unwrap_err();
        assert!(
            err.contains("entry 2 (\"b\")") && err.contains("enroll"),
            "{err}"
        );
        let err = Registry::parse(&file(
            r#"{"name": "a", "scopes": ["identify"], "token": "plain"}"#,
        ))
        .unwrap_err();
        assert!(err.contains("token"), "{err}");
    }

    #[test]
    fn both_credentials_must_agree() {
        let hash = token_sha256_hex("t-a");
        let registry = Registry::parse(&file(&format!(
            r#"{{"name": "a", "scopes": ["identify"], "certificate": "kiosk-a", "token_sha256": "{hash}"}},
               {{"name": "b", "scopes": ["identify"], "certificate": "kiosk-b"}}"#
        )))
        .unwrap();
        let a = vec!["Kiosk-A".to_string()];
        let b = vec!["kiosk-b".to_string()];
        assert_eq!(&*registry.resolve(Some("t-a"), &a).unwrap().name, "a");
        assert!(
            registry.resolve(Some("t-a"), &[]).is_err(),
            "a needs its cert"
        );
        assert!(registry.resolve(None, &a).is_err(), "a needs its token");
        assert!(
            registry.resolve(Some("t-a"), &b).is_err(),
            "mixed identities"
        );
        assert_eq!(&*registry.resolve(None, &b).unwrap().name, "b");
    }
}
