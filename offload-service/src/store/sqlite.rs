//! The gallery in SQLite: a file in the data directory, for a service that
//! runs as one replica.
//!
//! Every change is one immediate transaction that bumps the gallery version
//! and writes a change-log row; the database runs in WAL mode with
//! `synchronous = FULL`, so a change is on disk before the RPC that made it
//! is acknowledged. Removed operators leave a tombstone carrying the
//! removal's version. Only this process writes the file, so its change feed
//! has nothing to announce: the gallery's periodic catch-up still picks up a
//! change written to the file by hand.
//!
//! The gallery's identity is also kept outside the database, in
//! [`ID_FILE`] beside it: its `gallery_id` and the highest version seen. A
//! database that later turns out missing, empty, another gallery's, or older
//! than recorded (a write-ahead log lost after a crash, an old copy put
//! back) is refused at open instead of silently becoming a new, empty
//! gallery; see [`SqliteStore::open_with`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Transaction};
use rusqlite_migration::{Migrations, M};

use kubevision_proto::lockout::LockoutPolicy;

use super::{
    check_count, checked_templates, checked_upsert, checksum, count_sign_in, to_sql_version,
    Change, ChangeFeed, ChangeKind, Committed, GalleryStore, SignIn, Standing, StoreError,
    StoreStatus, UpdateMode,
};

/// The database file inside the data directory.
pub const DB_FILE: &str = "gallery.sqlite3";

/// The gallery's identity beside the database: `gallery_id=…` and
/// `version=…` lines, written atomically (temporary file, fsync, rename).
pub const ID_FILE: &str = "gallery.id";

/// How often the version in [`ID_FILE`] is brought up to the database's
/// (and once more when the store is closed). A read of one row, and a small
/// file write only when the version moved: cheap. Changes committed less
/// than this long before a crash that lost the write-ahead log are not
/// covered; every older one is.
const ID_REFRESH: Duration = Duration::from_secs(2);

const MIGRATIONS: &[M<'static>] = &[
    M::up(
        "CREATE TABLE gallery (
         id INTEGER PRIMARY KEY CHECK (id = 1),
         gallery_id TEXT NOT NULL,
         version INTEGER NOT NULL
     );
     CREATE TABLE operators (
         label INTEGER PRIMARY KEY AUTOINCREMENT,
         operator_id TEXT NOT NULL UNIQUE,
         version INTEGER NOT NULL
     );
     CREATE INDEX operators_by_version ON operators(version);
     CREATE TABLE templates (
         id INTEGER PRIMARY KEY,
         label INTEGER NOT NULL REFERENCES operators(label) ON DELETE CASCADE,
         data BLOB NOT NULL
     );
     CREATE INDEX templates_by_label ON templates(label);
     CREATE TABLE removals (
         operator_id TEXT PRIMARY KEY,
         version INTEGER NOT NULL
     );
     CREATE INDEX removals_by_version ON removals(version);",
    ),
    // The operator's profile (an encoded kubevision.v1.OperatorProfile) as a
    // kiosk sent it; opaque to the store.
    M::up("ALTER TABLE operators ADD COLUMN profile BLOB;"),
    // One row per change, written in the change's transaction: the history
    // (who changed, when, how) that the version sequence numbers.
    M::up(
        "CREATE TABLE change_log (
         version INTEGER PRIMARY KEY,
         operator_id TEXT NOT NULL,
         action TEXT NOT NULL CHECK (action IN ('enroll', 'update', 'remove')),
         committed_at_ms INTEGER NOT NULL
     );",
    ),
    // Each template's SHA-256, filled in for older rows at open.
    M::up("ALTER TABLE templates ADD COLUMN checksum BLOB;"),
    // Who made each change (the caller's identity; '' before identities).
    M::up("ALTER TABLE change_log ADD COLUMN actor TEXT NOT NULL DEFAULT '';"),
    // Plant-wide sign-in failures per operator (`record_sign_in`); removed
    // with the operator.
    M::up(
        "CREATE TABLE sign_in_failures (
         label INTEGER PRIMARY KEY REFERENCES operators(label) ON DELETE CASCADE,
         failures INTEGER NOT NULL,
         locked_until_ms INTEGER NOT NULL
     );",
    ),
];

pub struct SqliteStore {
    /// First, so that it is dropped (its last update written) before the
    /// writer closes the database.
    _identity: IdentityKeeper,
    path: PathBuf,
    /// The one writing connection; SQLite allows one writer at a time anyway.
    writer: Mutex<Connection>,
    max_templates_per_operator: usize,
}

impl SqliteStore {
    /// Opens (creating if needed) the gallery in `data_dir`; a gallery that
    /// the data directory remembers but the database lost is refused (see
    /// [`Self::open_with`]).
    pub fn open(data_dir: &Path, max_templates_per_operator: usize) -> Result<Self, StoreError> {
        Self::open_with(data_dir, max_templates_per_operator, false)
    }

    /// Opens (creating if needed) the gallery in `data_dir`, made 0700 if it
    /// is created here.
    ///
    /// When [`ID_FILE`] names a gallery and the database is missing, 0 bytes,
    /// unreadable, has no gallery row, holds another gallery or an older
    /// version than recorded, the open fails with
    /// [`StoreError::GalleryLost`], unless `new_gallery` (`--new-gallery`):
    /// then the old files are renamed `<name>.lost-<unix time>` (never
    /// deleted) and a new, empty gallery is started. `new_gallery` does
    /// nothing to an intact gallery. A database without [`ID_FILE`] (made by
    /// an older release) is taken as it is, and the file is written.
    pub fn open_with(
        data_dir: &Path,
        max_templates_per_operator: usize,
        new_gallery: bool,
    ) -> Result<Self, StoreError> {
        create_data_dir(data_dir)?;
        let path = data_dir.join(DB_FILE);
        let id_path = data_dir.join(ID_FILE);
        // A leftover of a crash in the middle of writing the identity.
        let _ = std::fs::remove_file(temp_path(&id_path));
        if let Some(known) = read_identity(&id_path)? {
            match lost(&path, &known)? {
                Some(found) if !new_gallery => {
                    return Err(StoreError::GalleryLost {
                        dir: data_dir.to_owned(),
                        gallery_id: known.gallery_id,
                        found,
                    })
                }
                Some(found) => {
                    let stamp = move_aside(data_dir)?;
                    tracing::warn!(dir = %data_dir.display(), was = %known.gallery_id, %found,
                        kept_as = %format!("*.lost-{stamp}"),
                        "--new-gallery: the lost gallery's files are moved aside; starting a new, empty gallery");
                }
                None if new_gallery => {
                    tracing::warn!(dir = %data_dir.display(), gallery_id = %known.gallery_id,
                        "--new-gallery ignored: the gallery is intact");
                }
                None => {}
            }
        }
        let open_err = |source| StoreError::Open {
            path: path.clone(),
            source,
        };
        make_private(&path)?;
        let mut conn = Connection::open(&path).map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(open_err)?;
        Migrations::from_slice(MIGRATIONS)
            .to_latest(&mut conn)
            .map_err(|source| StoreError::Migrate {
                path: path.clone(),
                source,
            })?;
        conn.execute(
            "INSERT OR IGNORE INTO gallery (id, gallery_id, version) VALUES (1, ?1, 0)",
            [new_gallery_id()],
        )
        .map_err(open_err)?;
        add_missing_checksums(&mut conn).map_err(open_err)?;
        // The database file itself now holds everything committed so far,
        // so that a write-ahead log lost later loses only newer changes.
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(open_err)?;
        let status = status_of(&conn)?;
        let identity = Identity {
            gallery_id: status.gallery_id,
            version: status.version,
        };
        write_identity(&id_path, &identity)?;
        Ok(Self {
            _identity: IdentityKeeper::start(path.clone(), id_path, identity),
            path,
            writer: Mutex::new(conn),
            max_templates_per_operator,
        })
    }

    fn writer(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half-done transaction
        // behind (it rolls back on drop), so a poisoned lock is still usable.
        self.writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` in one immediate transaction with the next gallery version
    /// (SQLite integers are i64; versions never come near its limit), and
    /// logs the change in the same transaction.
    fn change(
        &self,
        actor: &str,
        operator_id: &str,
        action: &str,
        f: impl FnOnce(&Transaction<'_>, i64) -> Result<Committed, StoreError>,
    ) -> Result<Committed, StoreError> {
        let mut conn = self.writer();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row(
            "UPDATE gallery SET version = version + 1 RETURNING version",
            [],
            |r| r.get(0),
        )?;
        let out = f(&tx, version)?;
        tx.execute(
            "INSERT INTO change_log (version, operator_id, action, committed_at_ms, actor)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![version, operator_id, action, now_ms(), actor],
        )?;
        tx.commit()?;
        Ok(out)
    }
}

impl GalleryStore for SqliteStore {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn status(&self) -> Result<StoreStatus, StoreError> {
        status_of(&self.writer())
    }

    fn templates_of(&self, operator_id: &str) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        let conn = self.writer();
        let Some(label) = label_of(&conn, operator_id)? else {
            return Ok(None);
        };
        let rows = conn
            .prepare("SELECT data, checksum FROM templates WHERE label = ?1 ORDER BY id")?
            .query_map([label], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        checked_templates(operator_id, rows).map(Some)
    }

    fn enroll(
        &self,
        actor: &str,
        operator_id: &str,
        templates: &[Vec<u8>],
        profile: Option<&[u8]>,
    ) -> Result<Committed, StoreError> {
        self.change(actor, operator_id, "enroll", |tx, version| {
            if label_of(tx, operator_id)?.is_some() {
                return Err(StoreError::AlreadyEnrolled(operator_id.to_owned()));
            }
            check_count(
                operator_id,
                templates.len(),
                self.max_templates_per_operator,
            )?;
            tx.execute(
                "INSERT INTO operators (operator_id, version, profile) VALUES (?1, ?2, ?3)",
                params![operator_id, version, profile],
            )?;
            let label =
                i32::try_from(tx.last_insert_rowid()).map_err(|_| StoreError::LabelsExhausted)?;
            tx.execute("DELETE FROM removals WHERE operator_id = ?1", [operator_id])?;
            insert_templates(tx, label, templates)?;
            Ok(Committed {
                label,
                version: version as u64,
                template_count: templates.len(),
            })
        })
    }

    fn update(
        &self,
        actor: &str,
        operator_id: &str,
        templates: &[Vec<u8>],
        mode: UpdateMode,
        profile: Option<&[u8]>,
    ) -> Result<Committed, StoreError> {
        self.change(actor, operator_id, "update", |tx, version| {
            let label = label_of(tx, operator_id)?
                .ok_or_else(|| StoreError::UnknownOperator(operator_id.to_owned()))?;
            let kept: usize = match mode {
                UpdateMode::Replace => {
                    tx.execute("DELETE FROM templates WHERE label = ?1", [label])?;
                    0
                }
                UpdateMode::Append => tx.query_row(
                    "SELECT COUNT(*) FROM templates WHERE label = ?1",
                    [label],
                    |r| r.get::<_, i64>(0),
                )? as usize,
            };
            check_count(
                operator_id,
                kept + templates.len(),
                self.max_templates_per_operator,
            )?;
            tx.execute(
                "UPDATE operators SET version = ?1, profile = coalesce(?3, profile) WHERE label = ?2",
                params![version, label, profile],
            )?;
            insert_templates(tx, label, templates)?;
            Ok(Committed {
                label,
                version: version as u64,
                template_count: kept + templates.len(),
            })
        })
    }

    fn remove(&self, actor: &str, operator_id: &str) -> Result<Committed, StoreError> {
        self.change(actor, operator_id, "remove", |tx, version| {
            let label = label_of(tx, operator_id)?
                .ok_or_else(|| StoreError::UnknownOperator(operator_id.to_owned()))?;
            tx.execute("DELETE FROM operators WHERE label = ?1", [label])?;
            tx.execute(
                "INSERT INTO removals (operator_id, version) VALUES (?1, ?2)
                 ON CONFLICT (operator_id) DO UPDATE SET version = excluded.version",
                params![operator_id, version],
            )?;
            Ok(Committed {
                label,
                version: version as u64,
                template_count: 0,
            })
        })
    }

    /// Reads on a connection of its own, in one read transaction (a WAL
    /// snapshot), so that a slow reader never holds up writers.
    fn changes_since(
        &self,
        since: u64,
        emit: &mut dyn FnMut(Change) -> bool,
    ) -> Result<StoreStatus, StoreError> {
        let mut conn = Connection::open_with_flags(&self.path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|source| StoreError::Open {
                path: self.path.clone(),
                source,
            })?;
        let tx = conn.transaction()?;
        let status = status_of(&tx)?;
        let mut changed = tx.prepare(
            "SELECT c.version, c.operator_id, c.label, c.removed, c.profile, l.committed_at_ms
             FROM (SELECT version, operator_id, label, 0 AS removed, profile FROM operators
                   WHERE version > ?1
                   UNION ALL
                   SELECT version, operator_id, 0, 1, NULL FROM removals WHERE version > ?1) c
             LEFT JOIN change_log l ON l.version = c.version
             ORDER BY c.version",
        )?;
        let mut templates =
            tx.prepare("SELECT data, checksum FROM templates WHERE label = ?1 ORDER BY id")?;
        let mut rows = changed.query([to_sql_version(since)])?;
        while let Some(row) = rows.next()? {
            let label: i32 = row.get(2)?;
            let removed: bool = row.get(3)?;
            let operator_id: String = row.get(1)?;
            let kind = if removed {
                ChangeKind::Removal
            } else {
                let (data, sums): (Vec<Vec<u8>>, Vec<Option<Vec<u8>>>) = templates
                    .query_map([label], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<Vec<_>, _>>()?
                    .into_iter()
                    .unzip();
                checked_upsert(label, data, &sums, row.get(4)?)
            };
            let change = Change {
                version: row.get::<_, i64>(0)? as u64,
                operator_id,
                committed_at: row
                    .get::<_, Option<i64>>(5)?
                    .map(|ms| UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)),
                kind,
            };
            if !emit(change) {
                break;
            }
        }
        Ok(status)
    }

    fn watch(&self) -> Result<Box<dyn ChangeFeed>, StoreError> {
        Ok(Box::new(Quiet))
    }

    fn record_sign_in(
        &self,
        operator_id: &str,
        outcome: SignIn,
        policy: &LockoutPolicy,
    ) -> Result<Standing, StoreError> {
        let mut conn = self.writer();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let label = label_of(&tx, operator_id)?
            .ok_or_else(|| StoreError::UnknownOperator(operator_id.to_owned()))?;
        let now = now_ms();
        let (before, until_before): (u32, i64) = tx
            .query_row(
                "SELECT failures, locked_until_ms FROM sign_in_failures WHERE label = ?1",
                [label],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?
            .unwrap_or((0, now));
        let (failures, until) = count_sign_in(before, until_before, outcome, policy, now);
        if failures == 0 {
            tx.execute("DELETE FROM sign_in_failures WHERE label = ?1", [label])?;
        } else {
            tx.execute(
                "INSERT INTO sign_in_failures (label, failures, locked_until_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (label) DO UPDATE
                 SET failures = excluded.failures, locked_until_ms = excluded.locked_until_ms",
                params![label, failures, until],
            )?;
        }
        tx.commit()?;
        Ok(Standing {
            operator_id: operator_id.to_owned(),
            failures,
            locked_for_ms: (until - now).max(0) as u64,
        })
    }

    fn profile(&self, operator_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let conn = self.writer();
        conn.query_row(
            "SELECT profile FROM operators WHERE operator_id = ?1",
            [operator_id],
            |r| r.get(0),
        )
        .optional()?
        .ok_or_else(|| StoreError::UnknownOperator(operator_id.to_owned()))
    }

    fn lockouts(&self) -> Result<Vec<Standing>, StoreError> {
        let now = now_ms();
        let conn = self.writer();
        let mut query = conn.prepare_cached(
            "SELECT o.operator_id, f.failures, f.locked_until_ms - ?1
             FROM sign_in_failures f JOIN operators o ON o.label = f.label
             WHERE f.locked_until_ms > ?1 ORDER BY o.operator_id",
        )?;
        let rows = query.query_map([now], |r| {
            Ok(Standing {
                operator_id: r.get(0)?,
                failures: r.get(1)?,
                locked_for_ms: r.get::<_, i64>(2)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// The gallery's identity as [`ID_FILE`] records it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity {
    gallery_id: String,
    version: u64,
}

/// Creates the database file 0600 if it is missing and makes it (and a
/// write-ahead log and shared-memory file left from before) 0600 if it is
/// not, whatever the umask (under umask 000 it was 0644, issue 22). SQLite
/// gives the WAL and SHM files it creates the database file's mode.
fn make_private(db: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let err = |path: &Path| {
            let path = path.to_owned();
            move |source| StoreError::StoreFile {
                path,
                action: "make it private (0600)",
                source,
            }
        };
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(db)
            .map_err(err(db))?;
        for suffix in ["", "-wal", "-shm"] {
            let file = PathBuf::from(format!("{}{suffix}", db.display()));
            match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !suffix.is_empty() => {}
                other => other.map_err(err(&file))?,
            }
        }
    }
    #[cfg(not(unix))]
    let _ = db;
    Ok(())
}

/// Creates the data directory (0700 on Unix); an existing one is kept as it
/// is.
fn create_data_dir(data_dir: &Path) -> Result<(), StoreError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(data_dir)
        .map_err(|source| StoreError::CreateDir {
            path: data_dir.to_owned(),
            source,
        })
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

fn read_identity(path: &Path) -> Result<Option<Identity>, StoreError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StoreError::StoreFile {
                path: path.to_owned(),
                action: "read the gallery's identity",
                source,
            })
        }
    };
    let field = |key: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
            .map(str::trim)
    };
    match (
        field("gallery_id").filter(|id| !id.is_empty()),
        field("version").map(str::parse::<u64>),
    ) {
        (Some(gallery_id), Some(Ok(version))) => Ok(Some(Identity {
            gallery_id: gallery_id.to_owned(),
            version,
        })),
        _ => Err(StoreError::StoreFile {
            path: path.to_owned(),
            action: "read the gallery's identity",
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "expected \"gallery_id=<id>\" and \"version=<number>\" lines",
            ),
        }),
    }
}

/// Writes [`ID_FILE`] atomically, 0600: a temporary file, fsync, rename,
/// fsync of the directory.
fn write_identity(path: &Path, identity: &Identity) -> Result<(), StoreError> {
    let temp = temp_path(path);
    let err = |action| {
        move |source| StoreError::StoreFile {
            path: path.to_owned(),
            action,
            source,
        }
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&temp)
        .map_err(err("write the gallery's identity"))?;
    file.write_all(
        format!(
            "gallery_id={}\nversion={}\n",
            identity.gallery_id, identity.version
        )
        .as_bytes(),
    )
    .and_then(|()| file.sync_all())
    .map_err(err("write the gallery's identity"))?;
    drop(file);
    std::fs::rename(&temp, path).map_err(err("write the gallery's identity"))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")));
    Ok(())
}

/// Makes renames in `dir` durable (best effort: not every platform can).
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Err(e) = std::fs::File::open(dir).and_then(|d| d.sync_all()) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot fsync the data directory");
    }
}

/// What is wrong with the database at `db`, if it is not (or no longer) the
/// gallery `known`.
fn lost(db: &Path, known: &Identity) -> Result<Option<String>, StoreError> {
    match std::fs::metadata(db) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Some(format!("its database {DB_FILE} is missing")))
        }
        Err(source) => {
            return Err(StoreError::StoreFile {
                path: db.to_owned(),
                action: "read its size",
                source,
            })
        }
        Ok(meta) if meta.len() == 0 => {
            return Ok(Some(format!("its database {DB_FILE} is empty (0 bytes)")))
        }
        Ok(_) => {}
    }
    let read = || -> rusqlite::Result<Option<(String, i64)>> {
        // Read-write but never created: a -wal left by a crash is recovered.
        let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        let tables: i64 = conn.query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'gallery'",
            [],
            |r| r.get(0),
        )?;
        if tables == 0 {
            return Ok(None);
        }
        conn.query_row(
            "SELECT gallery_id, version FROM gallery WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
    };
    Ok(match read() {
        Ok(None) => Some(format!("its database {DB_FILE} holds no gallery")),
        Ok(Some((id, _))) if id != known.gallery_id => Some(format!(
            "its database {DB_FILE} holds another gallery, {id}"
        )),
        Ok(Some((_, version))) if (version.max(0) as u64) < known.version => Some(format!(
            "its database {DB_FILE} is at version {version}, older than the version {} recorded \
             in {ID_FILE} (a write-ahead log {DB_FILE}-wal lost after a crash, or an older copy \
             put back; if it is a backup restored on purpose, delete {ID_FILE} to accept it)",
            known.version
        )),
        Ok(Some(_)) => None,
        Err(rusqlite::Error::SqliteFailure(e, detail))
            if matches!(
                e.code,
                rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt
            ) =>
        {
            Some(format!(
                "its database {DB_FILE} is unreadable ({})",
                detail.unwrap_or_else(|| e.to_string())
            ))
        }
        Err(source) => {
            return Err(StoreError::Open {
                path: db.to_owned(),
                source,
            })
        }
    })
}

/// Renames the database, its -wal and -shm, and then [`ID_FILE`] to
/// `<name>.lost-<unix time>` (the database's companions keep the names
/// SQLite looks for, so the lost gallery can still be opened), never over an
/// existing file. Returns the suffix's time.
fn move_aside(data_dir: &Path) -> Result<u64, StoreError> {
    let names = |stamp: u64| {
        let db = format!("{DB_FILE}.lost-{stamp}");
        [
            (DB_FILE.to_owned(), db.clone()),
            (format!("{DB_FILE}-wal"), format!("{db}-wal")),
            (format!("{DB_FILE}-shm"), format!("{db}-shm")),
            // Last: until it is gone, a start without the flag still refuses.
            (ID_FILE.to_owned(), format!("{ID_FILE}.lost-{stamp}")),
        ]
    };
    let mut stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    while names(stamp)
        .iter()
        .any(|(_, to)| data_dir.join(to).symlink_metadata().is_ok())
    {
        stamp += 1;
    }
    for (from, to) in names(stamp) {
        let from = data_dir.join(from);
        match std::fs::rename(&from, data_dir.join(to)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(StoreError::StoreFile {
                    path: from,
                    action: "move it aside for --new-gallery",
                    source,
                })
            }
        }
    }
    sync_dir(data_dir);
    Ok(stamp)
}

/// Keeps the version in [`ID_FILE`] following the database's: a thread
/// that reads it every [`ID_REFRESH`] and once more when the store is
/// dropped, and rewrites the file when it has grown (never for another
/// gallery, never backwards).
struct IdentityKeeper {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl IdentityKeeper {
    fn start(db: PathBuf, id_path: PathBuf, mut recorded: Identity) -> Self {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("gallery-id".into())
            .spawn(move || {
                let mut conn = None;
                loop {
                    let last = matches!(
                        stopped.recv_timeout(ID_REFRESH),
                        Err(mpsc::RecvTimeoutError::Disconnected)
                    );
                    if let Err(e) = refresh_identity(&db, &id_path, &mut conn, &mut recorded) {
                        tracing::warn!(error = %e, "cannot update the gallery's identity file");
                        conn = None;
                    }
                    if last {
                        return;
                    }
                }
            })
            .map_err(|e| tracing::warn!(error = %e, "cannot start the gallery-id thread: gallery.id keeps the version seen at start"))
            .ok();
        Self {
            stop: Some(stop),
            thread,
        }
    }
}

impl Drop for IdentityKeeper {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn refresh_identity(
    db: &Path,
    id_path: &Path,
    conn: &mut Option<Connection>,
    recorded: &mut Identity,
) -> Result<(), StoreError> {
    let conn = match conn {
        Some(conn) => conn,
        None => conn.insert(Connection::open_with_flags(
            db,
            OpenFlags::SQLITE_OPEN_READ_ONLY,
        )?),
    };
    let (gallery_id, version): (String, i64) = conn.query_row(
        "SELECT gallery_id, version FROM gallery WHERE id = 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let version = version.max(0) as u64;
    if gallery_id == recorded.gallery_id && version > recorded.version {
        let next = Identity {
            gallery_id,
            version,
        };
        write_identity(id_path, &next)?;
        *recorded = next;
    }
    Ok(())
}

/// The feed of a store only this process writes: nothing to announce.
struct Quiet;

impl ChangeFeed for Quiet {
    fn wait(&mut self, timeout: Duration) -> Result<Option<u64>, StoreError> {
        std::thread::sleep(timeout);
        Ok(None)
    }
}

fn status_of(conn: &Connection) -> Result<StoreStatus, StoreError> {
    let (gallery_id, version): (String, i64) = conn.query_row(
        "SELECT gallery_id, version FROM gallery WHERE id = 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let operators: i64 = conn.query_row("SELECT COUNT(*) FROM operators", [], |r| r.get(0))?;
    let templates: i64 = conn.query_row("SELECT COUNT(*) FROM templates", [], |r| r.get(0))?;
    Ok(StoreStatus {
        gallery_id,
        version: version as u64,
        operators: operators as usize,
        templates: templates as usize,
    })
}

fn label_of(conn: &Connection, operator_id: &str) -> Result<Option<i32>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT label FROM operators WHERE operator_id = ?1",
            [operator_id],
            |r| r.get(0),
        )
        .optional()?)
}

fn insert_templates(
    tx: &Transaction<'_>,
    label: i32,
    templates: &[Vec<u8>],
) -> Result<(), StoreError> {
    let mut insert =
        tx.prepare_cached("INSERT INTO templates (label, data, checksum) VALUES (?1, ?2, ?3)")?;
    for t in templates {
        insert.execute(params![label, t, checksum(t)])?;
    }
    Ok(())
}

/// Rows written before templates had checksums get theirs, once.
fn add_missing_checksums(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut missing = tx.prepare("SELECT id, data FROM templates WHERE checksum IS NULL")?;
        let rows: Vec<(i64, Vec<u8>)> = missing
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let mut set = tx.prepare("UPDATE templates SET checksum = ?2 WHERE id = ?1")?;
        for (id, data) in rows {
            set.execute(params![id, checksum(&data)])?;
        }
    }
    tx.commit()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A random-enough identifier for a new store: it only has to differ between
/// stores, so the standard library's randomly seeded hasher is plenty.
fn new_gallery_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut id = String::new();
    for _ in 0..2 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.write_u32(std::process::id());
        id.push_str(&format!("{:016x}", h.finish()));
    }
    id
}
