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

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Transaction};
use rusqlite_migration::{Migrations, M};

use super::{
    check_count, checksum, to_sql_version, verify, Change, ChangeFeed, ChangeKind, Committed,
    GalleryStore, StoreError, StoreStatus, UpdateMode,
};

/// The database file inside the data directory.
pub const DB_FILE: &str = "gallery.sqlite3";

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
];

pub struct SqliteStore {
    path: PathBuf,
    /// The one writing connection; SQLite allows one writer at a time anyway.
    writer: Mutex<Connection>,
    max_templates_per_operator: usize,
}

impl SqliteStore {
    /// Opens (creating if needed) the gallery in `data_dir`.
    pub fn open(data_dir: &Path, max_templates_per_operator: usize) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::CreateDir {
            path: data_dir.to_owned(),
            source,
        })?;
        let path = data_dir.join(DB_FILE);
        let open_err = |source| StoreError::Open {
            path: path.clone(),
            source,
        };
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
        Ok(Self {
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
            "INSERT INTO change_log (version, operator_id, action, committed_at_ms)
             VALUES (?1, ?2, ?3, ?4)",
            params![version, operator_id, action, now_ms()],
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

    fn enroll(
        &self,
        operator_id: &str,
        templates: &[Vec<u8>],
        profile: Option<&[u8]>,
    ) -> Result<Committed, StoreError> {
        self.change(operator_id, "enroll", |tx, version| {
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
        operator_id: &str,
        templates: &[Vec<u8>],
        mode: UpdateMode,
        profile: Option<&[u8]>,
    ) -> Result<Committed, StoreError> {
        self.change(operator_id, "update", |tx, version| {
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

    fn remove(&self, operator_id: &str) -> Result<Committed, StoreError> {
        self.change(operator_id, "remove", |tx, version| {
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
                verify(&operator_id, &data, &sums)?;
                ChangeKind::Upsert {
                    label,
                    templates: data,
                    profile: row.get(4)?,
                }
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
