//! The kiosk's persistent state in one SQLite file: operators, hashed
//! secrets, face templates, lockout counters, settings and the audit log.
//!
//! Every change that belongs together (an operator and their credentials,
//! an enrollment, a deletion) commits in one transaction together with its
//! audit row. The store is used from one worker thread; the UI never calls it.

mod audit;
mod lockout;
mod operators;
mod plant;
mod schema;
mod secret;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension};

pub use audit::{
    write_csv, AuditAction, AuditEvent, AuditFilter, AuditRecord, BreakReason, ChainStatus,
};
pub use lockout::{LockoutPolicy, Subject};
pub use operators::{NewOperator, Operator, OperatorId, Role, SecretCheck};
pub use plant::{Incoming, Outbound, Outgoing, Pending, Profile, SyncStore};
pub use secret::{validate as validate_secret, SecretKind, PASSWORD_LEN, PIN_LEN};

/// Milliseconds since the Unix epoch (UTC).
pub type Millis = i64;

pub fn now_millis() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}

pub const DB_FILE: &str = "kubevision.sqlite3";

/// Every write transaction takes SQLite's write lock up front. Two
/// connections write the file (the store's thread and the gallery sync), and
/// a deferred transaction that reads before it writes fails with SQLITE_BUSY
/// when the other wrote meanwhile, instead of waiting out the busy timeout.
fn write_transaction(conn: &mut Connection) -> rusqlite::Result<rusqlite::Transaction<'_>> {
    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
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
    Hashing(String),
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
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

pub struct Store {
    conn: Connection,
    lockout: LockoutPolicy,
}

impl Store {
    /// Opens (creating if needed) `DB_FILE` in `dir`.
    pub fn open_in_dir(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir {
            path: dir.to_owned(),
            source,
        })?;
        Self::open(&dir.join(DB_FILE))
    }

    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut conn = Connection::open(path)?;
        // WAL: readers never block the writer, and a power cut mid-write
        // leaves the last committed state. secure_delete: erased templates
        // are overwritten, not left in free pages.
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Corrupt(format!(
                "journal mode {mode} instead of WAL"
            )));
        }
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        conn.pragma_update(None, "secure_delete", true)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        schema::migrations().to_latest(&mut conn)?;
        Ok(Store {
            conn,
            lockout: LockoutPolicy::default(),
        })
    }

    pub fn set_lockout_policy(&mut self, policy: LockoutPolicy) {
        self.lockout = policy;
    }

    pub fn lockout_policy(&self) -> LockoutPolicy {
        self.lockout
    }

    pub fn append_audit(&mut self, event: &AuditEvent, now: Millis) -> Result<i64, StoreError> {
        let tx = write_transaction(&mut self.conn)?;
        let seq = audit::append(&tx, event, now)?;
        tx.commit()?;
        Ok(seq)
    }

    pub fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        audit::query(&self.conn, filter)
    }

    /// Walks the whole log and names the first row whose link or content is broken.
    pub fn verify_chain(&self) -> Result<ChainStatus, StoreError> {
        audit::verify_chain(&self.conn)
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
        let tx = write_transaction(&mut self.conn)?;
        let until = lockout::record_failure(&tx, &self.lockout, subject, now)?;
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
        let tx = write_transaction(&mut self.conn)?;
        lockout::clear(&tx, subject)?;
        audit::append(&tx, event, now)?;
        tx.commit()?;
        Ok(())
    }

    /// The cost of a password check without an operator behind it.
    pub fn check_unknown_secret(&self, s: &str) {
        secret::verify_nothing(s);
    }

    pub fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    pub fn put_setting(
        &mut self,
        key: &str,
        value: &str,
        actor: Option<&str>,
        now: Millis,
    ) -> Result<(), StoreError> {
        let tx = write_transaction(&mut self.conn)?;
        tx.execute(
            "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [key, value],
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
