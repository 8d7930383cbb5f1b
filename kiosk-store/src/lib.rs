//! The kiosk's persistent state in one SQLite file: operators, hashed
//! secrets, face templates, lockout counters, settings and the audit log,
//! and the sync of that state with the plant-wide gallery.
//!
//! Every change that belongs together (an operator and their credentials,
//! an enrollment, a deletion) commits in one transaction together with its
//! audit row. The store is used from one worker thread; the UI never calls it.
//!
//! A crate of its own, without the UI: the kiosk (`kubevision-hmi`, which
//! re-exports it as `kubevision_hmi::store`) and the CLI's `kubevision
//! doctor` both open the store, and the CLI does not link egui, eframe or
//! the camera stack for it.
//!
//! - `install`: where an installation keeps its configuration and data.
//! - `audit`: the append-only audit log, HMAC-chained and anchored, so that
//!   edits, insertions and cut-off rows show (`verify_chain`).
//! - `keys`: the secrets kept outside the database file (audit key, PIN
//!   pepper, audit anchor, the plant's pepper), so that a copy of the
//!   database alone gives nothing away.
//! - `lockout`: growing delays after failed sign-ins, counted in the store
//!   so that a restart does not reset them.
//! - `operators`: operators, their secrets and their face templates.
//! - `plant`: the kiosk's share in the plant-wide gallery, queued and
//!   applied in the same transactions as local changes.
//! - `plant_sync`: the conversation with the offload service that pushes
//!   that queue and pulls the plant's changes, run by the kiosk's store
//!   worker on the store's own connection.
//! - `schema`: the versioned, append-only migrations.
//! - `secret`: PIN and password rules and their peppered Argon2id hashes.
//! - `settings`: the kiosk's settings, one audited key each, and how they
//!   reach the offload service.
//! - `windows_acl` (Windows): the secrets folder and the database closed
//!   to other local users, as `0700`/`0600` close them on Unix.
//! - `tests`: the store's tests, on real SQLite files.
//!
//! This file holds what ties them together: [`Store`], [`StoreError`],
//! [`verify_store`] and the write transaction that keeps the audit anchor
//! with the chain.

mod audit;
pub mod install;
mod keys;
mod lockout;
mod operators;
mod plant;
pub mod plant_sync;
mod schema;
mod secret;
pub mod settings;
#[cfg(test)]
mod tests;
#[cfg(windows)]
mod windows_acl;

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension};

pub use audit::{
    write_csv, AuditAction, AuditEvent, AuditFilter, AuditRecord, BreakReason, ChainStatus,
};
pub use keys::{
    plant_pepper_id, Secrets, ANCHOR_FILE, AUDIT_KEY_FILE, PEPPER_FILE, PLANT_PEPPER_FILE,
    SECRETS_SUBDIR,
};
pub use lockout::{LockoutPolicy, Subject};
pub use operators::{NewOperator, Operator, OperatorId, Role, SecretCheck};
pub use plant::{
    Incoming, Outbound, Outgoing, Pending, PendingSignIn, PlantLock, PlantSync, Profile,
};
pub use secret::{validate as validate_secret, SecretKind, PASSWORD_LEN, PIN_LEN};

/// Milliseconds since the Unix epoch (UTC).
pub type Millis = i64;

pub fn now_millis() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}

pub const DB_FILE: &str = "kubevision.sqlite3";

/// Every write transaction takes SQLite's write lock up front. A
/// deferred transaction that reads before it writes fails with SQLITE_BUSY
/// when another connection (a CLI command, `--verify-audit`) wrote
/// meanwhile, instead of waiting out the busy timeout.
///
/// It also keeps the audit anchor (`keys.rs`) with the chain: before the
/// commit, the anchor names the head this transaction leaves (pending),
/// and after it, that head (confirmed). A crash in between leaves a pending
/// anchor, which allows either head; otherwise the chain must end exactly
/// at the anchored row.
fn write_transaction<'c>(
    conn: &'c mut Connection,
    secrets: &Secrets,
) -> Result<WriteTx<'c>, StoreError> {
    WriteTx::begin(conn, secrets, None)
}

pub(crate) struct WriteTx<'c> {
    tx: rusqlite::Transaction<'c>,
    secrets: Secrets,
    start: keys::Head,
    keyed_from: i64,
    /// `false`: the anchor does not match the chain (missing, another
    /// key's, or the chain was cut behind the kiosk's back); it is left as
    /// it is, as evidence, and not moved on.
    anchored: bool,
    /// The first keyed start writes the anchor even with no new row.
    keying: bool,
    _lock: keys::AnchorLock,
}

impl<'c> WriteTx<'c> {
    fn begin(
        conn: &'c mut Connection,
        secrets: &Secrets,
        keying_from: Option<i64>,
    ) -> Result<Self, StoreError> {
        let lock = secrets.lock_anchor();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let start = audit::head(&tx)?;
        let (keyed_from, anchored) = match (keying_from, keys::read_anchor(secrets)) {
            (Some(from), _) => (from, true),
            (None, keys::AnchorRead::Valid(a)) => (a.keyed_from, a.allows(&start)),
            (None, _) => {
                let from: Option<i64> = tx
                    .query_row("SELECT keyed_from FROM audit_chain", [], |r| r.get(0))
                    .optional()?;
                (from.unwrap_or(1), false)
            }
        };
        Ok(WriteTx {
            tx,
            secrets: secrets.clone(),
            start,
            keyed_from,
            anchored,
            keying: keying_from.is_some(),
            _lock: lock,
        })
    }

    pub(crate) fn secrets(&self) -> &Secrets {
        &self.secrets
    }

    pub(crate) fn keyed_from(&self) -> i64 {
        self.keyed_from
    }

    pub(crate) fn commit(self) -> Result<(), StoreError> {
        let end = audit::head(&self.tx)?;
        let moved = end != self.start || self.keying;
        if moved && !self.anchored {
            tracing::error!(
                "the audit anchor in {} does not match the log; it is kept as evidence and not moved on (kubevision-hmi --verify-audit)",
                self.secrets.dir().display()
            );
        }
        let mut anchor = keys::Anchor {
            keyed_from: self.keyed_from,
            prev: self.start,
            head: end,
            confirmed: false,
        };
        let anchoring = moved && self.anchored;
        if anchoring {
            keys::write_anchor(&self.secrets, &anchor)?;
        }
        self.tx.commit()?;
        if anchoring {
            anchor.confirmed = true;
            // Committed either way: a pending anchor still allows this head.
            if let Err(e) = keys::write_anchor(&self.secrets, &anchor) {
                tracing::error!("confirming the audit anchor: {e}");
            }
        }
        Ok(())
    }
}

impl<'c> std::ops::Deref for WriteTx<'c> {
    type Target = rusqlite::Transaction<'c>;
    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("schema migration: {0}")]
    Migration(#[from] rusqlite_migration::Error),
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("hashing a secret failed: {0}")]
    Hashing(#[source] HashingError),
    #[error("personnel number {0} is already taken")]
    DuplicatePersonnelNumber(String),
    #[error("no operator with id {0}")]
    UnknownOperator(i64),
    #[error("the {} does not meet the rules", .0.as_str())]
    WeakSecret(SecretKind),
    #[error("an operator needs a PIN or a password")]
    NoSecret,
    #[error("the last administrator cannot be deleted or demoted")]
    LastAdministrator,
    #[error("invalid input: {0}")]
    InvalidInput(&'static str),
    /// A personnel number or name the plant's text rule refuses
    /// ([`kubevision_proto::text`], the one the offload service applies):
    /// taken here, it could never reach the plant gallery. The message
    /// names the field and the character at fault.
    #[error("{0}")]
    InvalidText(#[from] kubevision_proto::text::TextError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A settings row without the kiosk's key (issue 22, finding 8).
    #[error("setting {key} was changed without the kiosk's key (by SQL behind the kiosk's back, or by a copy of the database from another kiosk): refused")]
    SettingNotKeyed { key: String },
    #[error("no store at {0}")]
    Missing(PathBuf),
    #[error("kiosk secrets: {0}")]
    Secrets(String),
    /// A file of the secrets folder could not be read or written.
    #[error("kiosk secrets: {}: {source}", path.display())]
    SecretsIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Why Argon2 could not hash a secret (parameters it refused, or the hash).
#[derive(Debug, thiserror::Error)]
pub enum HashingError {
    #[error(transparent)]
    Parameters(#[from] argon2::Error),
    #[error(transparent)]
    Hash(#[from] password_hash::Error),
}

pub struct Store {
    conn: Connection,
    lockout: LockoutPolicy,
    secrets: Secrets,
}

/// Opens SQLite on `path`, creating the file readable by its owner only
/// (SQLite gives its -wal and -shm files the database file's permissions);
/// a file from an older kiosk loses group and other access.
fn open_private(path: &Path) -> Result<Connection, StoreError> {
    keys::create_private_file(path).map_err(|source| StoreError::DataDir {
        path: path.to_owned(),
        source,
    })?;
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        keys::tighten(Path::new(&p), 0o600);
    }
    Ok(Connection::open(path)?)
}

/// Checks the audit log of the store in `data_dir` without creating or
/// changing anything: a missing store or data directory is an error. The
/// keys come from `secrets_dir`; a store that was never keyed (and has no
/// keys) is checked with its unkeyed links and reported `Unkeyed`.
pub fn verify_store(data_dir: &Path, secrets_dir: &Path) -> Result<ChainStatus, StoreError> {
    let db = data_dir.join(DB_FILE);
    if !db.is_file() {
        return Err(StoreError::Missing(db));
    }
    let conn = Connection::open_with_flags(
        &db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let has_chain_table: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'audit_chain')",
        [],
        |r| r.get(0),
    )?;
    let secrets = if Secrets::missing(secrets_dir).audit_key {
        None
    } else {
        Some(Secrets::load(secrets_dir)?)
    };
    if !has_chain_table {
        // A store from before the keyed chain, not opened by a kiosk since.
        return audit::verify_legacy(&conn);
    }
    audit::verify_chain(&conn, secrets.as_ref())
}

impl Store {
    /// Opens (creating if needed) `DB_FILE` in `dir`, with the secrets in
    /// the default folder `dir/secrets`.
    pub fn open_in_dir(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with_secrets(dir, &Secrets::default_dir(dir))
    }

    /// Opens (creating if needed) `DB_FILE` in `dir`, with the audit key,
    /// the PIN pepper and the audit anchor in `secrets_dir` (created if
    /// needed). New folders are 0700, new files 0600.
    pub fn open_with_secrets(dir: &Path, secrets_dir: &Path) -> Result<Self, StoreError> {
        keys::create_private_dir(dir).map_err(|source| StoreError::DataDir {
            path: dir.to_owned(),
            source,
        })?;
        Self::open(&dir.join(DB_FILE), secrets_dir)
    }

    fn open(path: &Path, secrets_dir: &Path) -> Result<Self, StoreError> {
        let mut conn = open_private(path)?;
        // WAL: readers never block the writer, and a power cut mid-write
        // leaves the last committed state. secure_delete: erased templates
        // are overwritten, not left in free pages.
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Corrupt(format!(
                "journal mode {mode} instead of WAL"
            )));
        }
        // FULL: a commit is on disk when it returns, so that a power cut
        // cannot take back a transaction whose audit anchor is confirmed.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        conn.pragma_update(None, "secure_delete", true)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let before: usize =
            conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
        schema::migrations().to_latest(&mut conn)?;
        let secrets = open_secrets(&conn, secrets_dir)?;
        key_the_chain(&mut conn, &secrets)?;
        if before < schema::SETTINGS_KEYED_VERSION {
            settings::key_stored(&mut conn, &secrets)?;
        }
        Ok(Store {
            conn,
            lockout: LockoutPolicy::default(),
            secrets,
        })
    }

    /// The installation's secrets, for the store's other connections.
    pub fn secrets(&self) -> &Secrets {
        &self.secrets
    }

    pub fn set_lockout_policy(&mut self, policy: LockoutPolicy) {
        self.lockout = policy;
    }

    pub fn lockout_policy(&self) -> LockoutPolicy {
        self.lockout
    }

    pub fn append_audit(&mut self, event: &AuditEvent, now: Millis) -> Result<i64, StoreError> {
        let tx = write_transaction(&mut self.conn, &self.secrets)?;
        let seq = audit::append(&tx, event, now)?;
        tx.commit()?;
        Ok(seq)
    }

    pub fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        audit::query(&self.conn, filter)
    }

    /// Walks the whole log and names the first row whose link or content is broken.
    pub fn verify_chain(&self) -> Result<ChainStatus, StoreError> {
        audit::verify_chain(&self.conn, Some(&self.secrets))
    }

    pub fn locked_until(
        &self,
        subject: Subject,
        now: Millis,
    ) -> Result<Option<Millis>, StoreError> {
        lockout::locked_until(&self.conn, subject, now)
    }

    /// Counts a failure against `subject` and logs it; a failure that starts a
    /// lock is logged as `LockedOut`. Returns the lock's end if there is one.
    pub fn record_failure(
        &mut self,
        subject: Subject,
        event: &AuditEvent,
        now: Millis,
    ) -> Result<Option<Millis>, StoreError> {
        let tx = write_transaction(&mut self.conn, &self.secrets)?;
        let until = lockout::count_failure(&tx, &self.lockout, subject, now)?;
        audit::append(&tx, event, now)?;
        if let Some(until) = until {
            let locked = AuditEvent {
                action: Some(AuditAction::LockedOut),
                detail: format!("until {until}"),
                ..event.clone()
            };
            audit::append(&tx, &locked, now)?;
        }
        tx.commit()?;
        Ok(until)
    }

    /// A success resets the subject's failure count.
    pub fn record_success(
        &mut self,
        subject: Subject,
        event: &AuditEvent,
        now: Millis,
    ) -> Result<(), StoreError> {
        let tx = write_transaction(&mut self.conn, &self.secrets)?;
        lockout::count_success(&tx, subject, now)?;
        audit::append(&tx, event, now)?;
        tx.commit()?;
        Ok(())
    }

    /// The cost of a password check without an operator behind it.
    pub fn check_unknown_secret(&self, s: &str) {
        secret::verify_nothing(s, &self.secrets);
    }

    /// A stored setting's value; [`StoreError::SettingNotKeyed`] for a row
    /// the kiosk did not write (changed by SQL, without the audit key).
    pub fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        settings::read_keyed(&self.conn, &self.secrets, key)
    }

    pub fn put_setting(
        &mut self,
        key: &str,
        value: &str,
        actor: Option<&str>,
        now: Millis,
    ) -> Result<(), StoreError> {
        let tx = write_transaction(&mut self.conn, &self.secrets)?;
        tx.execute(
            "INSERT INTO settings (key, value, mac) VALUES (?1, ?2, ?3)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value, mac = excluded.mac",
            rusqlite::params![
                key,
                value,
                settings::mac(&self.secrets, key, value).as_slice()
            ],
        )?;
        audit::append(
            &tx,
            &AuditEvent::new(AuditAction::SettingsChanged)
                .actor_opt(actor)
                .detail(key),
            now,
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Folds the WAL into the main file and empties it, so that erased data
    /// does not linger in old WAL frames.
    fn checkpoint_truncate(&self) -> Result<(), StoreError> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }
}

/// Loads the keys, creating missing ones, unless the store shows that it
/// was keyed before: a new key would then silently break the audit chain
/// and every peppered PIN, so the kiosk refuses to start and says which
/// file to bring back.
fn open_secrets(conn: &Connection, dir: &Path) -> Result<Secrets, StoreError> {
    let missing = Secrets::missing(dir);
    if missing.audit_key {
        let keyed: bool = conn.query_row("SELECT EXISTS (SELECT 1 FROM audit_chain)", [], |r| {
            r.get(0)
        })?;
        if keyed || dir.join(ANCHOR_FILE).exists() {
            return Err(StoreError::Secrets(format!(
                "{} is missing, but this store's audit log was keyed with it: restore it (a copy of the store belongs with its secrets folder)",
                dir.join(AUDIT_KEY_FILE).display()
            )));
        }
    }
    if missing.pepper {
        let mut stmt = conn.prepare("SELECT phc FROM credentials")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            if secret::is_peppered(&row.get::<_, String>(0)?) {
                return Err(StoreError::Secrets(format!(
                    "{} is missing, but this store's PIN and password hashes need it: restore it",
                    dir.join(PEPPER_FILE).display()
                )));
            }
        }
    }
    if let Some((retired, adopted)) = Secrets::adopt_plant_pepper(dir)? {
        tracing::info!(
            retired = %retired,
            adopted = %adopted,
            "adopted the plant's PIN pepper; hashes under the retired one are rehashed at their next sign-in"
        );
    }
    let (secrets, created) = Secrets::load_or_create(dir)?;
    if created.audit_key || created.pepper {
        tracing::info!("new kiosk secrets in {}", dir.display());
    }
    Ok(secrets)
}

/// The first start with a key: records the switch-over in the log (a store
/// with rows from before the key) and in `audit_chain`, and writes the
/// first anchor. A switch-over that did not commit is done again; an
/// anchor that says the store was keyed when the store says it was not is
/// left for verification to report.
fn key_the_chain(conn: &mut Connection, secrets: &Secrets) -> Result<(), StoreError> {
    let keyed: Option<String> = conn
        .query_row("SELECT key_id FROM audit_chain", [], |r| r.get(0))
        .optional()?;
    if let Some(key_id) = keyed {
        if key_id != secrets.audit_key_id() {
            return Err(StoreError::Secrets(format!(
                "this store's audit log was keyed with key {key_id}, {} holds key {}: a store belongs with its own secrets folder",
                secrets.dir().display(),
                secrets.audit_key_id()
            )));
        }
        return Ok(());
    }
    let head = audit::head(conn)?;
    let keyed_from = head.as_ref().map_or(1, |h| h.0 + 1);
    if let keys::AnchorRead::Valid(a) = keys::read_anchor(secrets) {
        let unfinished = !a.confirmed && a.prev == head && a.keyed_from == keyed_from;
        if !unfinished {
            tracing::error!(
                "the audit anchor says this store was keyed from entry {}, the store does not: not keying it again",
                a.keyed_from
            );
            return Ok(());
        }
    }
    let tx = WriteTx::begin(conn, secrets, Some(keyed_from))?;
    tx.execute(
        "INSERT INTO audit_chain (id, key_id, keyed_from, keyed_at) VALUES (1, ?1, ?2, ?3)",
        rusqlite::params![secrets.audit_key_id(), keyed_from, now_millis()],
    )?;
    if head.is_some() {
        let event = AuditEvent::new(AuditAction::ChainKeyed).detail(format!(
            "entries from {keyed_from} on are HMAC-SHA256 chained with audit key {}; entries 1 to {} were written before the key existed and keep their SHA-256 links",
            secrets.audit_key_id(),
            keyed_from - 1
        ));
        audit::append(&tx, &event, now_millis())?;
    }
    tx.commit()
}
