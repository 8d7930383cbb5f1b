//! The plant-wide gallery on disk: operators and their templates in SQLite.
//!
//! Every change is one transaction that also bumps the gallery version, and
//! the database runs in WAL mode with `synchronous = FULL`, so a change is on
//! disk before the RPC that made it is acknowledged. Removed operators leave a
//! tombstone carrying the removal's version, which is what lets a kiosk ask
//! for "every change since version N" without a separate change log.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Transaction};
use rusqlite_migration::{Migrations, M};

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
];

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
}

/// An operator as loaded at start-up.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredOperator {
    pub label: i32,
    pub operator_id: String,
    pub templates: Vec<Vec<u8>>,
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

/// One change reported by [`GalleryStore::changes_since`].
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Upsert {
        operator_id: String,
        version: u64,
        templates: Vec<Vec<u8>>,
        profile: Option<Vec<u8>>,
    },
    Removal {
        operator_id: String,
        version: u64,
    },
}

/// How new templates combine with an operator's existing ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateMode {
    Append,
    Replace,
}

pub struct GalleryStore {
    path: PathBuf,
    /// The one writing connection; SQLite allows one writer at a time anyway.
    writer: Mutex<Connection>,
    max_templates_per_operator: usize,
}

impl GalleryStore {
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
        conn.busy_timeout(std::time::Duration::from_secs(5))
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
        Ok(Self {
            path,
            writer: Mutex::new(conn),
            max_templates_per_operator,
        })
    }

    /// Every operator with their templates, for loading the matcher.
    pub fn load_all(&self) -> Result<Vec<StoredOperator>, StoreError> {
        let conn = self.writer();
        let mut operators: Vec<StoredOperator> = conn
            .prepare("SELECT label, operator_id FROM operators ORDER BY label")?
            .query_map([], |r| {
                Ok(StoredOperator {
                    label: r.get(0)?,
                    operator_id: r.get(1)?,
                    templates: Vec::new(),
                })
            })?
            .collect::<Result<_, _>>()?;
        let index: HashMap<i32, usize> = operators
            .iter()
            .enumerate()
            .map(|(i, o)| (o.label, i))
            .collect();
        let mut templates = conn.prepare("SELECT label, data FROM templates ORDER BY id")?;
        let mut rows = templates.query([])?;
        while let Some(row) = rows.next()? {
            // The foreign key guarantees the operator; skipping is the safe reading otherwise.
            if let Some(&i) = index.get(&row.get(0)?) {
                operators[i].templates.push(row.get(1)?);
            }
        }
        Ok(operators)
    }

    pub fn status(&self) -> Result<StoreStatus, StoreError> {
        status_of(&self.writer())
    }

    /// Adds a new operator, with their profile if one was sent.
    pub fn enroll(
        &self,
        operator_id: &str,
        templates: &[Vec<u8>],
        profile: Option<&[u8]>,
    ) -> Result<Committed, StoreError> {
        self.change(|tx, version| {
            if label_of(tx, operator_id)?.is_some() {
                return Err(StoreError::AlreadyEnrolled(operator_id.to_owned()));
            }
            self.check_count(operator_id, templates.len())?;
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

    /// Appends to or replaces an enrolled operator's templates, and replaces
    /// their profile if one was sent.
    pub fn update(
        &self,
        operator_id: &str,
        templates: &[Vec<u8>],
        mode: UpdateMode,
        profile: Option<&[u8]>,
    ) -> Result<Committed, StoreError> {
        self.change(|tx, version| {
            let label = label_of(tx, operator_id)?.ok_or_else(|| StoreError::UnknownOperator(operator_id.to_owned()))?;
            let kept: usize = match mode {
                UpdateMode::Replace => {
                    tx.execute("DELETE FROM templates WHERE label = ?1", [label])?;
                    0
                }
                UpdateMode::Append => {
                    tx.query_row("SELECT COUNT(*) FROM templates WHERE label = ?1", [label], |r| r.get::<_, i64>(0))? as usize
                }
            };
            self.check_count(operator_id, kept + templates.len())?;
            tx.execute(
                "UPDATE operators SET version = ?1, profile = coalesce(?3, profile) WHERE label = ?2",
                params![version, label, profile],
            )?;
            insert_templates(tx, label, templates)?;
            Ok(Committed { label, version: version as u64, template_count: kept + templates.len() })
        })
    }

    /// Removes an operator, leaving a tombstone for incremental sync.
    pub fn remove(&self, operator_id: &str) -> Result<Committed, StoreError> {
        self.change(|tx, version| {
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

    /// Reports every change after `since`, in version order, from one
    /// consistent snapshot taken on a connection of its own (so that a slow
    /// reader never holds up writers). `emit` returns false to stop early.
    pub fn changes_since(
        &self,
        since: u64,
        mut emit: impl FnMut(Change) -> bool,
    ) -> Result<StoreStatus, StoreError> {
        let mut conn = Connection::open_with_flags(&self.path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|source| StoreError::Open {
                path: self.path.clone(),
                source,
            })?;
        let tx = conn.transaction()?;
        let status = status_of(&tx)?;
        let mut upserts = tx.prepare(
            "SELECT version, operator_id, label, 0, profile FROM operators WHERE version > ?1
             UNION ALL SELECT version, operator_id, 0, 1, NULL FROM removals WHERE version > ?1
             ORDER BY 1",
        )?;
        let mut templates =
            tx.prepare("SELECT data FROM templates WHERE label = ?1 ORDER BY id")?;
        let mut rows = upserts.query([to_sql_version(since)])?;
        while let Some(row) = rows.next()? {
            let (version, operator_id, label, removed): (i64, String, i64, bool) =
                (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
            let version = version as u64;
            let change = if removed {
                Change::Removal {
                    operator_id,
                    version,
                }
            } else {
                let templates = templates
                    .query_map([label], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                Change::Upsert {
                    operator_id,
                    version,
                    templates,
                    profile: row.get(4)?,
                }
            };
            if !emit(change) {
                break;
            }
        }
        Ok(status)
    }

    fn writer(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half-done transaction
        // behind (it rolls back on drop), so a poisoned lock is still usable.
        self.writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` in one immediate transaction with the next gallery version
    /// (SQLite integers are i64; versions never come near its limit).
    fn change<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>, i64) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.writer();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row(
            "UPDATE gallery SET version = version + 1 RETURNING version",
            [],
            |r| r.get(0),
        )?;
        let out = f(&tx, version)?;
        tx.commit()?;
        Ok(out)
    }

    fn check_count(&self, operator_id: &str, count: usize) -> Result<(), StoreError> {
        if count > self.max_templates_per_operator {
            return Err(StoreError::TooManyTemplates {
                operator_id: operator_id.to_owned(),
                count,
                limit: self.max_templates_per_operator,
            });
        }
        Ok(())
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
    let mut insert = tx.prepare_cached("INSERT INTO templates (label, data) VALUES (?1, ?2)")?;
    for t in templates {
        insert.execute(params![label, t])?;
    }
    Ok(())
}

/// Versions above i64::MAX cannot exist in the store; clamping keeps a
/// client's absurd `since_version` an ordinary "nothing newer" query.
fn to_sql_version(version: u64) -> i64 {
    i64::try_from(version).unwrap_or(i64::MAX)
}

/// A random-enough identifier for a new store: it only has to differ between
/// stores, so the standard library's randomly seeded hasher is plenty.
fn new_gallery_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut id = String::new();
    for _ in 0..2 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.write_u32(std::process::id());
        id.push_str(&format!("{:016x}", h.finish()));
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, GalleryStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = GalleryStore::open(dir.path(), 4).unwrap();
        (dir, store)
    }

    #[test]
    fn changes_are_versioned_and_survive_reopening() {
        let (dir, store) = store();
        let a = store.enroll("A-1", &[vec![1], vec![2]], None).unwrap();
        let b = store.enroll("B-2", &[vec![3]], None).unwrap();
        assert_eq!((a.version, b.version), (1, 2));
        assert_ne!(a.label, b.label);
        assert!(matches!(
            store.enroll("A-1", &[vec![9]], None),
            Err(StoreError::AlreadyEnrolled(_))
        ));
        let up = store
            .update("A-1", &[vec![4]], UpdateMode::Append, None)
            .unwrap();
        assert_eq!((up.version, up.template_count), (3, 3));
        let id = store.status().unwrap().gallery_id;
        drop(store);

        let store = GalleryStore::open(dir.path(), 4).unwrap();
        let status = store.status().unwrap();
        assert_eq!(
            (
                status.gallery_id,
                status.version,
                status.operators,
                status.templates
            ),
            (id, 3, 2, 4)
        );
        let all = store.load_all().unwrap();
        assert_eq!(all[0].templates, vec![vec![1], vec![2], vec![4]]);
        assert_eq!(all[1].templates, vec![vec![3]]);
    }

    #[test]
    fn failed_changes_leave_no_trace() {
        let (_dir, store) = store();
        store.enroll("A", &[vec![1], vec![2]], None).unwrap();
        let err = store
            .update("A", &[vec![3], vec![4], vec![5]], UpdateMode::Append, None)
            .unwrap_err();
        assert!(
            matches!(err, StoreError::TooManyTemplates { count: 5, .. }),
            "{err}"
        );
        assert!(matches!(
            store.remove("nobody"),
            Err(StoreError::UnknownOperator(_))
        ));
        let status = store.status().unwrap();
        assert_eq!(
            (status.version, status.templates),
            (1, 2),
            "the failed changes must roll back the version too"
        );
    }

    #[test]
    fn sync_reports_upserts_and_tombstones_since_a_version() {
        let (_dir, store) = store();
        store.enroll("A", &[vec![1]], None).unwrap(); // v1
        store.enroll("B", &[vec![2]], None).unwrap(); // v2
        store.remove("A").unwrap(); // v3
        store
            .update("B", &[vec![5]], UpdateMode::Replace, None)
            .unwrap(); // v4
        let collect = |since| {
            let mut changes = Vec::new();
            let status = store.changes_since(since, |c| {
                changes.push(c);
                true
            });
            (status.unwrap().version, changes)
        };
        let (version, changes) = collect(2);
        assert_eq!(version, 4);
        assert_eq!(
            changes,
            vec![
                Change::Removal {
                    operator_id: "A".into(),
                    version: 3
                },
                Change::Upsert {
                    operator_id: "B".into(),
                    version: 4,
                    templates: vec![vec![5]],
                    profile: None
                },
            ]
        );
        assert_eq!(collect(4).1, vec![]);
        assert_eq!(collect(u64::MAX).1, vec![]);
        // Re-enrolling a removed operator replaces the tombstone.
        store.enroll("A", &[vec![7]], None).unwrap();
        assert_eq!(collect(0).1.len(), 2);
    }
}
