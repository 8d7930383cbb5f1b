//! The plant-wide gallery of record: operators, their templates and profiles,
//! and the history of changes, behind one interface with two stores.
//!
//! - [`sqlite`]: a file in the data directory. The embedded default, for a
//!   service that runs as one replica.
//! - [`postgres`]: a PostgreSQL database, chosen with `--store postgres://…`.
//!   Several replicas then share one gallery: one `gallery_id`, one version
//!   sequence, one change log.
//!
//! Both keep the same contract, which is what lets every replica follow the
//! store (see [`crate::gallery`]):
//! - every change is one transaction that takes the next gallery version,
//!   writes a change-log row (with the caller's identity) and only then commits, so versions are handed
//!   out in commit order and a change acknowledged to a client is durable;
//! - [`GalleryStore::changes_since`] reads one consistent snapshot and
//!   reports, in version order, every operator changed after a version (with
//!   all of their current templates) and every removal (a tombstone);
//! - every template is stored with its SHA-256, checked whenever it is read
//!   (a replica loading it, a kiosk syncing it): an operator with a damaged
//!   or edited row is reported as [`ChangeKind::Damaged`], naming the
//!   template, never served as good, and the rest of the gallery still
//!   reads;
//! - [`GalleryStore::watch`] opens a [`ChangeFeed`] that wakes its reader
//!   when another writer commits (PostgreSQL's LISTEN/NOTIFY); the reader
//!   still catches up by version periodically, so a lost notification never
//!   loses a change.

pub mod postgres;
pub mod sqlite;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use kubevision_proto::lockout::LockoutPolicy;

pub use self::postgres::{PostgresSettings, PostgresStore};
pub use self::sqlite::SqliteStore;

/// Every way a store operation can fail.
/// Why the store of record could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum Unreachable {
    /// The server is down, restarting, refusing connections, or it dropped
    /// ours (its code or the driver's causes in words).
    #[error("{}", postgres::describe(.0))]
    Postgres(#[source] ::postgres::Error),
    /// No connection came from the pool within its timeout.
    #[error("no connection: {0}")]
    Pool(#[source] r2d2::Error),
    /// The connection that listens for other writers' commits was closed.
    #[error("the notification connection was closed")]
    NotificationsClosed,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the data directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("gallery database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("gallery database {path}: cannot bring the schema up to date: {source}")]
    Migrate {
        path: PathBuf,
        source: rusqlite_migration::Error,
    },
    #[error("gallery database: {0}")]
    Sql(#[from] rusqlite::Error),
    /// The store cannot be reached (the database is down or restarting):
    /// nothing was changed, and the same request may succeed later.
    #[error("the gallery database is unavailable: {0}")]
    Unavailable(#[source] Unreachable),
    /// The store answered, but not as it should (a constraint, a bad row).
    #[error("gallery database: {}", postgres::describe(.0))]
    Database(#[source] ::postgres::Error),
    /// The database's schema is newer than this release knows.
    #[error("the database's schema is at version {found}, newer than this service knows ({known}): run the newer release, or restore a matching backup")]
    NewerSchema { found: i32, known: usize },
    /// The store's settings cannot work (a bad connection string, CA file).
    #[error("gallery store settings: {0}")]
    Config(String),
    #[error("operator {0:?} is already enrolled")]
    AlreadyEnrolled(String),
    #[error("operator {0:?} is not enrolled")]
    UnknownOperator(String),
    #[error("operator {operator_id:?} would have {count} templates; the limit is {limit} (replace instead of appending)")]
    TooManyTemplates {
        operator_id: String,
        count: usize,
        limit: usize,
    },
    #[error("the gallery has run out of operator labels")]
    LabelsExhausted,
    /// A stored template does not match the checksum written with it: the
    /// database was damaged or edited behind the service's back.
    #[error("stored template {index} of operator {operator_id:?} does not match its checksum: the gallery database was damaged or altered; restore it from a backup, or remove and re-enrol the operator")]
    Corrupt { operator_id: String, index: usize },
    /// The data directory remembers a gallery (its `gallery.id` file) that
    /// the database no longer holds: the file was deleted, emptied, replaced
    /// or rolled back. Starting would serve an empty gallery under a new id.
    #[error("the gallery store in {dir} has lost gallery {gallery_id}: {found}. Refusing to start an empty or older gallery in its place: restore the database from a backup, or start with --new-gallery (KUBEVISION_NEW_GALLERY=true) to begin a new, empty gallery (the old files are kept, renamed *.lost-<unix time>)")]
    GalleryLost {
        dir: PathBuf,
        gallery_id: String,
        found: String,
    },
    /// A file of the store beside the database (`gallery.id`, or one being
    /// moved aside for `--new-gallery`) could not be read or written.
    #[error("gallery store file {path}: cannot {action}: {source}")]
    StoreFile {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
}

/// What a committed change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    pub label: i32,
    pub version: u64,
    pub template_count: usize,
}

/// Counts and identity of the stored gallery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreStatus {
    pub gallery_id: String,
    pub version: u64,
    pub operators: usize,
    pub templates: usize,
}

/// One change reported by [`GalleryStore::changes_since`]: the latest
/// change of one operator after the version asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub operator_id: String,
    pub version: u64,
    /// When the store committed it, by the store's clock (None for changes
    /// older than the change log).
    pub committed_at: Option<SystemTime>,
    pub kind: ChangeKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ChangeKind {
    /// The operator as they are now: their label (the matcher's integer,
    /// shared by every replica), all their templates and their profile.
    Upsert {
        label: i32,
        templates: Vec<Vec<u8>>,
        profile: Option<Vec<u8>>,
    },
    /// The operator was removed (a tombstone).
    Removal,
    /// The operator's stored templates do not match their checksums (from
    /// template `index`): the database was damaged or edited. None of them
    /// is reported; the replica quarantines the operator.
    Damaged { label: i32, index: usize },
}

/// How new templates combine with an operator's existing ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateMode {
    Append,
    Replace,
}

/// A sign-in outcome a kiosk reports ([`GalleryStore::record_sign_in`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignIn {
    Succeeded,
    Failed,
}

/// One operator's plant-wide failure count, by the store's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    pub operator_id: String,
    /// Consecutive failures since the last success.
    pub failures: u32,
    /// How much longer the operator is locked (0: not locked).
    pub locked_for_ms: u64,
}

/// The count after one more outcome: the lockout rule itself lives in
/// [`kubevision_proto::lockout`], shared with the kiosks. Returns the new
/// failure count and the end of the lock (`now` when there is none). A
/// success clears the count only once the lock has run out: a kiosk that
/// honours the plant's locks cannot sign in a locked operator, so a success
/// reported during a lock is not one to believe (issue 22, finding 5).
fn count_sign_in(
    failures_before: u32,
    locked_until_before_ms: i64,
    outcome: SignIn,
    policy: &LockoutPolicy,
    now_ms: i64,
) -> (u32, i64) {
    match outcome {
        SignIn::Succeeded if locked_until_before_ms > now_ms => {
            (failures_before, locked_until_before_ms)
        }
        SignIn::Succeeded => (0, now_ms),
        // A failure never shortens a lock that stands (the policy may have
        // been shortened since it was set, or another replica set it).
        SignIn::Failed => {
            let failures = failures_before.saturating_add(1);
            (
                failures,
                now_ms
                    .saturating_add(policy.delay_after(failures))
                    .max(locked_until_before_ms),
            )
        }
    }
}

/// The gallery of record. Blocking: the service calls it from its worker
/// threads, never from the async executor.
pub trait GalleryStore: Send + Sync {
    /// "sqlite" or "postgres", for logs and metrics.
    fn kind(&self) -> &'static str;

    fn status(&self) -> Result<StoreStatus, StoreError>;

    /// Adds a new operator, with their profile if one was sent. `actor`:
    /// the caller's identity, kept in the change log.
    fn enroll(
        &self,
        actor: &str,
        operator_id: &str,
        templates: &[Vec<u8>],
        profile: Option<&[u8]>,
    ) -> Result<Committed, StoreError>;

    /// Appends to or replaces an enrolled operator's templates, and replaces
    /// their profile if one was sent.
    fn update(
        &self,
        actor: &str,
        operator_id: &str,
        templates: &[Vec<u8>],
        mode: UpdateMode,
        profile: Option<&[u8]>,
    ) -> Result<Committed, StoreError>;

    /// Removes an operator, leaving a tombstone for incremental sync.
    fn remove(&self, actor: &str, operator_id: &str) -> Result<Committed, StoreError>;

    /// Reports every change after `since`, in version order, from one
    /// consistent snapshot, and returns that snapshot's status. `emit`
    /// returns false to stop early.
    fn changes_since(
        &self,
        since: u64,
        emit: &mut dyn FnMut(Change) -> bool,
    ) -> Result<StoreStatus, StoreError>;

    /// An enrolled operator's current templates, each checked against its
    /// checksum ([`StoreError::Corrupt`] when one fails); None when the
    /// operator is not enrolled. For the wolf check of an operator as a
    /// whole ([`crate::wolf`]).
    fn templates_of(&self, operator_id: &str) -> Result<Option<Vec<Vec<u8>>>, StoreError>;

    /// Opens a feed that tells of changes committed by other writers.
    fn watch(&self) -> Result<Box<dyn ChangeFeed>, StoreError>;

    /// An enrolled operator's stored profile (None: enrolled without one);
    /// [`StoreError::UnknownOperator`] if not enrolled. The service reads
    /// it to decide what a caller without `admin` may change.
    fn profile(&self, operator_id: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Counts one sign-in outcome of an enrolled operator across the plant,
    /// in one transaction by the store's clock (one clock for every
    /// replica): a failure adds one and may lock, a success clears the
    /// count once any lock has run out (never lifts one early). Not a gallery change: the version does not move. The count
    /// goes with the operator when they are removed.
    fn record_sign_in(
        &self,
        operator_id: &str,
        outcome: SignIn,
        policy: &LockoutPolicy,
    ) -> Result<Standing, StoreError>;

    /// Every operator locked now, by the store's clock, in operator order.
    fn lockouts(&self) -> Result<Vec<Standing>, StoreError>;
}

/// Tells a replica that the store has changed.
pub trait ChangeFeed: Send {
    /// Waits up to `timeout`. `Ok(Some(v))`: a change with version `v` was
    /// committed; `Ok(None)`: nothing was heard (which proves nothing: the
    /// reader catches up anyway); `Err`: the feed is broken, open another.
    fn wait(&mut self, timeout: Duration) -> Result<Option<u64>, StoreError>;
}

/// Which store to open: `--store` / `KUBEVISION_STORE`.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum StoreLocation {
    /// SQLite in the data directory.
    #[default]
    Sqlite,
    /// A PostgreSQL connection string (`postgres://…` or `postgresql://…`).
    Postgres(String),
}

impl FromStr for StoreLocation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty() || s == "sqlite" {
            Ok(Self::Sqlite)
        } else if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Ok(Self::Postgres(s.to_owned()))
        } else {
            Err(
                "the store is \"sqlite\" or a PostgreSQL URL (postgres://user@host:5432/database)"
                    .into(),
            )
        }
    }
}

/// The connection string may hold a password: logs get it redacted.
impl fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite => f.write_str("sqlite"),
            Self::Postgres(url) => f.write_str(&redact_password(url)),
        }
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:<redacted>@host/db`,
/// and any `password=` parameter likewise.
fn redact_password(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let rest = &out[scheme_end + 3..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            if let Some(colon) = rest[..at].find(':') {
                let start = scheme_end + 3 + colon + 1;
                out.replace_range(start..scheme_end + 3 + at, "<redacted>");
            }
        }
    }
    if let Some(p) = out.find("password=") {
        let end = out[p..].find('&').map_or(out.len(), |e| p + e);
        out.replace_range(p + "password=".len()..end, "<redacted>");
    }
    out
}

/// Versions above i64::MAX cannot exist in a store; clamping keeps a
/// client's absurd `since_version` an ordinary "nothing newer" query.
fn to_sql_version(version: u64) -> i64 {
    i64::try_from(version).unwrap_or(i64::MAX)
}

/// The checksum stored beside every template (SHA-256 of its bytes).
fn checksum(template: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(template).to_vec()
}

/// An operator's upsert, checked against their stored checksums:
/// [`ChangeKind::Damaged`] naming the first template that fails.
fn checked_upsert(
    label: i32,
    templates: Vec<Vec<u8>>,
    sums: &[Option<Vec<u8>>],
    profile: Option<Vec<u8>>,
) -> ChangeKind {
    let damaged = templates.iter().enumerate().position(|(index, template)| {
        sums.get(index).cloned().flatten() != Some(checksum(template))
    });
    match damaged {
        Some(index) => ChangeKind::Damaged { label, index },
        None => ChangeKind::Upsert {
            label,
            templates,
            profile,
        },
    }
}

/// An operator's templates with their checksums, checked.
fn checked_templates(
    operator_id: &str,
    rows: Vec<(Vec<u8>, Option<Vec<u8>>)>,
) -> Result<Vec<Vec<u8>>, StoreError> {
    rows.into_iter()
        .enumerate()
        .map(|(index, (data, sum))| {
            if sum == Some(checksum(&data)) {
                Ok(data)
            } else {
                Err(StoreError::Corrupt {
                    operator_id: operator_id.to_owned(),
                    index,
                })
            }
        })
        .collect()
}

fn check_count(operator_id: &str, count: usize, limit: usize) -> Result<(), StoreError> {
    if count > limit {
        return Err(StoreError::TooManyTemplates {
            operator_id: operator_id.to_owned(),
            count,
            limit,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_and_never_log_a_password() {
        assert_eq!("sqlite".parse::<StoreLocation>(), Ok(StoreLocation::Sqlite));
        assert_eq!("".parse::<StoreLocation>(), Ok(StoreLocation::Sqlite));
        assert!("mysql://x".parse::<StoreLocation>().is_err());
        let pg: StoreLocation = "postgresql://app:hunter2@db:5432/app?sslmode=require"
            .parse()
            .unwrap();
        let logged = format!("{pg:?}");
        assert!(!logged.contains("hunter2"), "{logged}");
        assert_eq!(
            logged,
            "postgresql://app:<redacted>@db:5432/app?sslmode=require"
        );
        let kv: StoreLocation = "postgres://db/app?user=a&password=hunter2&sslmode=disable"
            .parse()
            .unwrap();
        let logged = format!("{kv:?}");
        assert!(!logged.contains("hunter2"), "{logged}");
        assert!(logged.ends_with("sslmode=disable"), "{logged}");
        assert_eq!(
            format!(
                "{:?}",
                "postgres://app@db/app".parse::<StoreLocation>().unwrap()
            ),
            "postgres://app@db/app"
        );
    }
}
