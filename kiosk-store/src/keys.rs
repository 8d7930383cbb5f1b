//! The kiosk's secrets, kept outside the database file so that a copy of
//! the database alone neither lets anyone re-chain the audit log nor guess
//! PINs offline:
//!
//! - `audit.key`: 32 random bytes, this installation's HMAC-SHA256 key for
//!   the audit chain;
//! - `pin-pepper.key`: 32 random bytes, Argon2id's secret input for PIN and
//!   password hashes. One pepper per plant: a kiosk whose PINs must verify
//!   at other lines is given the same file (hashes name the pepper they
//!   need by its key id, so a kiosk refuses a hash it cannot verify);
//! - `audit.anchor`: the audit chain's latest head (sequence number and
//!   MAC), so that cutting entries off the end, or all of them, shows;
//! - `plant-pepper.key`: the plant's pepper, as registration
//!   (`kubevision cluster register-kiosk`, or the cluster panel) writes it.
//!   At its next start the kiosk adopts it: the pepper it had is kept as
//!   `pin-pepper.retired-<key id>.key` (its hashes still verify, and are
//!   rehashed with the plant's pepper at their next successful sign-in),
//!   and the plant's becomes `pin-pepper.key`.
//!
//! The folder is created 0700 and the files 0600 (Unix). Key files are
//! hex text, so that an administrator can provision the plant pepper.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use argon2::password_hash::rand_core::{OsRng, RngCore};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::StoreError;

/// The default secrets folder inside the data directory (a different
/// folder from the database's files; `--secrets-dir` puts it elsewhere).
pub const SECRETS_SUBDIR: &str = "secrets";
pub const AUDIT_KEY_FILE: &str = "audit.key";
pub const PEPPER_FILE: &str = "pin-pepper.key";
pub const ANCHOR_FILE: &str = "audit.anchor";
pub const PLANT_PEPPER_FILE: &str = "plant-pepper.key";
const RETIRED_PREFIX: &str = "pin-pepper.retired-";
const KEY_SUFFIX: &str = ".key";

type HmacSha256 = Hmac<Sha256>;

pub(super) fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// Constant-time comparison of two MACs.
pub(super) fn mac_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A 32-byte key; its bytes never appear in `Debug`.
#[derive(Clone)]
pub(super) struct Key([u8; 32]);

impl Key {
    pub(super) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A public fingerprint (8 bytes): which key, without revealing it.
    pub(super) fn id(&self, purpose: &str) -> [u8; 8] {
        let mac = hmac(&self.0, &[b"kubevision key id: ", purpose.as_bytes()]);
        mac[..8].try_into().expect("8 of 32 bytes")
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

/// The secrets of one installation, shared by the store's connections.
#[derive(Clone, Debug)]
pub struct Secrets(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    audit_key: Key,
    pepper: Key,
    /// Peppers this kiosk used before it adopted the plant's.
    retired: Vec<Key>,
}

/// Which key files `Secrets::load_or_create` had to make.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Created {
    pub audit_key: bool,
    pub pepper: bool,
}

impl Secrets {
    /// Where the secrets live when no folder is configured.
    pub fn default_dir(data_dir: &Path) -> PathBuf {
        data_dir.join(SECRETS_SUBDIR)
    }

    /// Loads the keys, never creating anything; a missing folder or key
    /// file is an error.
    pub fn load(dir: &Path) -> Result<Secrets, StoreError> {
        Ok(Secrets(Arc::new(Inner {
            dir: dir.to_owned(),
            audit_key: read_key(&dir.join(AUDIT_KEY_FILE))?,
            pepper: read_key(&dir.join(PEPPER_FILE))?,
            retired: retired_peppers(dir)?,
        })))
    }

    /// Makes a `plant-pepper.key` that registration left in `dir` the
    /// kiosk's pepper: the current one (if any, and if different) is kept
    /// as `pin-pepper.retired-<key id>.key` first, then the plant's is
    /// renamed into place (atomic; a start interrupted in between does it
    /// again). Returns the key ids (retired, adopted) when it changed.
    pub(super) fn adopt_plant_pepper(dir: &Path) -> Result<Option<(String, String)>, StoreError> {
        let plant_path = dir.join(PLANT_PEPPER_FILE);
        if !plant_path.exists() {
            return Ok(None);
        }
        let plant = read_key(&plant_path)?;
        let current_path = dir.join(PEPPER_FILE);
        let retired = if current_path.exists() {
            let current = read_key(&current_path)?;
            if current.bytes() == plant.bytes() {
                std::fs::remove_file(&plant_path).map_err(|e| secrets_io(&plant_path, e))?;
                return Ok(None);
            }
            let id = hex(&current.id("pepper"));
            let keep = dir.join(format!("{RETIRED_PREFIX}{id}{KEY_SUFFIX}"));
            match create_private_new(&keep, format!("{}\n", hex(current.bytes())).as_bytes()) {
                Ok(_) => {}
                Err(e) => return Err(secrets_io(&keep, e)),
            }
            if read_key(&keep)?.bytes() != current.bytes() {
                return Err(StoreError::Secrets(format!(
                    "{} holds another key than {}: resolve by hand",
                    keep.display(),
                    current_path.display()
                )));
            }
            id
        } else {
            String::new()
        };
        tighten(&plant_path, 0o600);
        std::fs::rename(&plant_path, &current_path).map_err(|e| secrets_io(&current_path, e))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(Some((retired, hex(&plant.id("pepper")))))
    }

    /// Which key files are missing (before `load_or_create` would make them).
    pub(super) fn missing(dir: &Path) -> Created {
        Created {
            audit_key: !dir.join(AUDIT_KEY_FILE).exists(),
            pepper: !dir.join(PEPPER_FILE).exists(),
        }
    }

    /// Loads the keys, creating the folder (0700) and any missing key file
    /// (0600, random) first.
    pub(super) fn load_or_create(dir: &Path) -> Result<(Secrets, Created), StoreError> {
        create_private_dir(dir).map_err(|source| StoreError::DataDir {
            path: dir.to_owned(),
            source,
        })?;
        tighten(dir, 0o700);
        let mut created = Created::default();
        for (file, flag) in [
            (AUDIT_KEY_FILE, &mut created.audit_key),
            (PEPPER_FILE, &mut created.pepper),
        ] {
            let path = dir.join(file);
            if !path.exists() {
                let mut key = [0u8; 32];
                OsRng.fill_bytes(&mut key);
                *flag = create_private_new(&path, format!("{}\n", hex(&key)).as_bytes())
                    .map_err(|e| secrets_io(&path, e))?;
            }
            tighten(&path, 0o600);
        }
        Ok((Self::load(dir)?, created))
    }

    pub fn dir(&self) -> &Path {
        &self.0.dir
    }

    pub(super) fn audit_key(&self) -> &Key {
        &self.0.audit_key
    }

    pub(super) fn pepper(&self) -> &Key {
        &self.0.pepper
    }

    /// The audit key's public fingerprint, recorded in the store.
    pub fn audit_key_id(&self) -> String {
        hex(&self.0.audit_key.id("audit"))
    }

    /// The pepper's public fingerprint, carried in each hash (`keyid`).
    pub(super) fn pepper_id(&self) -> [u8; 8] {
        self.0.pepper.id("pepper")
    }

    /// The pepper a hash names by its key id: the current one or a retired
    /// one (None: a pepper this kiosk never held).
    pub(super) fn pepper_by_id(&self, id: &[u8]) -> Option<&Key> {
        std::iter::once(&self.0.pepper)
            .chain(&self.0.retired)
            .find(|k| k.id("pepper") == id)
    }

    fn anchor_path(&self) -> PathBuf {
        self.0.dir.join(ANCHOR_FILE)
    }

    /// Held from the start of a write transaction until its anchor is
    /// confirmed, by every connection of this process to the store.
    pub(super) fn lock_anchor(&self) -> AnchorLock {
        AnchorLock::acquire(&self.0.dir)
    }
}

fn secrets_io(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::SecretsIo {
        path: path.to_owned(),
        source,
    }
}

/// The retired peppers in `dir`, each `pin-pepper.retired-<id>.key`.
fn retired_peppers(dir: &Path) -> Result<Vec<Key>, StoreError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(secrets_io(dir, e)),
    };
    let mut keys = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| secrets_io(dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(RETIRED_PREFIX) && name.ends_with(KEY_SUFFIX) {
            keys.push(read_key(&entry.path())?);
        }
    }
    Ok(keys)
}

/// The key id (16 hex digits) that hashes keyed with the plant PIN pepper
/// carry, from the pepper as registration writes it (64 hex digits and a
/// newline): what the offload service's `--plant-pepper-id` (the chart's
/// `auth.plantPepperId`) must be. None: not such a pepper.
pub fn plant_pepper_id(pepper: &str) -> Option<String> {
    let bytes: [u8; 32] = unhex(pepper.strip_suffix('\n').unwrap_or(pepper))?
        .try_into()
        .ok()?;
    Some(hex(&Key(bytes).id("pepper")))
}

fn read_key(path: &Path) -> Result<Key, StoreError> {
    let text = std::fs::read_to_string(path).map_err(|e| secrets_io(path, e))?;
    let bytes = unhex(text.trim())
        .filter(|b| b.len() == 32)
        .ok_or_else(|| StoreError::Secrets(format!("{}: not 64 hex digits", path.display())))?;
    Ok(Key(bytes.try_into().expect("32 bytes")))
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

pub(super) fn unhex(s: &str) -> Option<Vec<u8>> {
    // Digits only: `from_str_radix` alone would read `+f` as `0f`.
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// Creates `dir` and its missing parents readable by the owner only.
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
    }
    #[cfg(windows)]
    {
        std::fs::create_dir_all(dir)?;
        crate::windows_acl::restrict_to_owner(dir)
    }
    #[cfg(not(any(unix, windows)))]
    {
        std::fs::create_dir_all(dir)
    }
}

/// Takes group and other permissions away from a file or folder of ours.
pub(crate) fn tighten(path: &Path, mode: u32) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o077 != 0 {
                if let Err(e) =
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                {
                    tracing::warn!("cannot restrict {} to its owner: {e}", path.display());
                }
            }
        }
    }
    #[cfg(windows)]
    {
        let _ = mode;
        if let Err(e) = crate::windows_acl::restrict_to_owner(path) {
            tracing::warn!("cannot restrict {} to its owner: {e}", path.display());
        }
    }
    #[cfg(not(any(unix, windows)))]
    let _ = (path, mode);
}

fn private_options() -> std::fs::OpenOptions {
    let mut o = std::fs::OpenOptions::new();
    o.write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o
}

/// Creates an empty file readable by its owner only, if there is none.
pub(crate) fn create_private_file(path: &Path) -> std::io::Result<()> {
    match private_options().create_new(true).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// Writes a complete file under a temporary name and links it in place
/// only if `path` does not exist yet: a crash leaves no half key, and a
/// second process does not replace the first one's key. Returns whether
/// this call created it.
fn create_private_new(path: &Path, bytes: &[u8]) -> std::io::Result<bool> {
    let tmp = tmp_path(path);
    let result = (|| {
        let mut f = private_options().create(true).truncate(true).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        match std::fs::hard_link(&tmp, path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    })();
    let _ = std::fs::remove_file(&tmp);
    sync_dir(path);
    result
}

/// Replaces `path` atomically (write, fsync, rename, fsync the folder).
fn replace_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = tmp_path(path);
    let mut f = private_options().create(true).truncate(true).open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    sync_dir(path);
    Ok(())
}

fn sync_dir(path: &Path) {
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// The last row of the chain: sequence number and MAC (or hash).
pub(super) type Head = Option<(i64, Vec<u8>)>;

/// The chain's head, outside the database. Written before each write
/// transaction commits (`Pending`: the head is `head` if the commit landed,
/// `prev` if it did not) and confirmed after it (`Confirmed`: the head is
/// `head`). Truncation and rewriting show as a head that is neither.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Anchor {
    /// The first keyed row; rows before it were written before the key existed.
    pub keyed_from: i64,
    pub prev: Head,
    pub head: Head,
    pub confirmed: bool,
}

const ANCHOR_MAGIC: &str = "kubevision-audit-anchor v1";

fn head_text(h: &Head) -> String {
    match h {
        None => "0 -".into(),
        Some((seq, mac)) => format!("{seq} {}", hex(mac)),
    }
}

fn parse_head(s: &str) -> Option<Head> {
    let (seq, mac) = s.split_once(' ')?;
    let seq: i64 = seq.parse().ok()?;
    if mac == "-" {
        return (seq == 0).then_some(None);
    }
    Some(Some((seq, unhex(mac)?)))
}

impl Anchor {
    /// `true` when the chain's head `h` is what this anchor allows.
    pub fn allows(&self, h: &Head) -> bool {
        *h == self.head || (!self.confirmed && *h == self.prev)
    }

    fn body(&self) -> String {
        format!(
            "{ANCHOR_MAGIC}\nkeyed-from {}\nprev {}\nhead {}\nstate {}\n",
            self.keyed_from,
            head_text(&self.prev),
            head_text(&self.head),
            if self.confirmed {
                "confirmed"
            } else {
                "pending"
            }
        )
    }
}

/// What the anchor file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum AnchorRead {
    Missing,
    /// Unreadable, or its MAC is not this key's.
    Invalid(String),
    Valid(Anchor),
}

pub(super) fn read_anchor(secrets: &Secrets) -> AnchorRead {
    let path = secrets.anchor_path();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return AnchorRead::Missing,
        Err(e) => return AnchorRead::Invalid(e.to_string()),
    };
    let Some((body, mac_line)) = text.trim_end().rsplit_once('\n') else {
        return AnchorRead::Invalid("too short".into());
    };
    let body = format!("{body}\n");
    let expected = hmac(secrets.audit_key().bytes(), &[body.as_bytes()]);
    let mac = mac_line.strip_prefix("mac ").and_then(unhex);
    if !mac.is_some_and(|m| mac_eq(&m, &expected)) {
        return AnchorRead::Invalid("its MAC does not match this installation's audit key".into());
    }
    let mut lines = body.lines();
    let parsed = (|| {
        (lines.next()? == ANCHOR_MAGIC).then_some(())?;
        let keyed_from = lines.next()?.strip_prefix("keyed-from ")?.parse().ok()?;
        let prev = parse_head(lines.next()?.strip_prefix("prev ")?)?;
        let head = parse_head(lines.next()?.strip_prefix("head ")?)?;
        let confirmed = match lines.next()?.strip_prefix("state ")? {
            "confirmed" => true,
            "pending" => false,
            _ => return None,
        };
        Some(Anchor {
            keyed_from,
            prev,
            head,
            confirmed,
        })
    })();
    parsed.map_or_else(
        || AnchorRead::Invalid("malformed".into()),
        AnchorRead::Valid,
    )
}

pub(super) fn write_anchor(secrets: &Secrets, anchor: &Anchor) -> Result<(), StoreError> {
    let body = anchor.body();
    let mac = hmac(secrets.audit_key().bytes(), &[body.as_bytes()]);
    let path = secrets.anchor_path();
    replace_private(&path, format!("{body}mac {}\n", hex(&mac)).as_bytes())
        .map_err(|e| secrets_io(&path, e))
}

/// A process-wide lock per secrets folder (one anchor file): write
/// transactions of the store's thread and of the gallery sync each hold
/// it from their start until their anchor is confirmed, so one cannot
/// confirm a head that another has already moved on from.
pub(super) struct AnchorLock(Arc<LockCell>);

/// Held or not, and a wake-up for whoever waits.
type LockCell = (Mutex<bool>, Condvar);

impl AnchorLock {
    fn acquire(dir: &Path) -> AnchorLock {
        static LOCKS: OnceLock<Mutex<HashMap<PathBuf, Arc<LockCell>>>> = OnceLock::new();
        let key = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
        let cell = LOCKS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key)
            .or_default()
            .clone();
        {
            let (held, freed) = &*cell;
            let mut held = held.lock().unwrap_or_else(|e| e.into_inner());
            while *held {
                held = freed.wait(held).unwrap_or_else(|e| e.into_inner());
            }
            *held = true;
        }
        AnchorLock(cell)
    }
}

impl Drop for AnchorLock {
    fn drop(&mut self) {
        let (held, freed) = &*self.0;
        *held.lock().unwrap_or_else(|e| e.into_inner()) = false;
        freed.notify_one();
    }
}
