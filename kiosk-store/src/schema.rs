//! Versioned schema. Migrations are append-only: a released migration is
//! never edited, a change is a new `M::up` at the end of the list.

use rusqlite_migration::{Migrations, M};

/// The schema version a fully migrated store reports (`PRAGMA user_version`);
/// the tests hold the migration list to it.
#[cfg(test)]
pub const VERSION: i64 = 6;

pub(super) fn migrations() -> Migrations<'static> {
    Migrations::new(vec![
        M::up(V1).foreign_key_check(),
        M::up(V2),
        M::up(V3),
        M::up(V4),
        M::up(V5),
        M::up(V6),
    ])
}

const V1: &str = r#"
CREATE TABLE operators (
    id           INTEGER PRIMARY KEY,
    name         TEXT    NOT NULL CHECK (length(trim(name)) > 0),
    personnel_no TEXT    NOT NULL UNIQUE CHECK (length(trim(personnel_no)) > 0),
    role         TEXT    NOT NULL CHECK (role IN ('operator', 'maintenance', 'administrator')),
    created_at   INTEGER NOT NULL,
    enrolled_at  INTEGER
);

-- PHC strings (Argon2id); never the secret itself.
CREATE TABLE credentials (
    operator_id INTEGER NOT NULL REFERENCES operators(id) ON DELETE CASCADE,
    kind        TEXT    NOT NULL CHECK (kind IN ('pin', 'password')),
    phc         TEXT    NOT NULL,
    PRIMARY KEY (operator_id, kind)
) WITHOUT ROWID;

-- LBPH histograms as produced by vision::lbph::Template::to_bytes; no images.
CREATE TABLE templates (
    id          INTEGER PRIMARY KEY,
    operator_id INTEGER NOT NULL REFERENCES operators(id) ON DELETE CASCADE,
    data        BLOB    NOT NULL CHECK (length(data) > 0)
);
CREATE INDEX templates_by_operator ON templates(operator_id);

CREATE TABLE lockouts (
    subject      TEXT    PRIMARY KEY,
    failures     INTEGER NOT NULL,
    locked_until INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE audit_log (
    seq       INTEGER PRIMARY KEY,
    at        INTEGER NOT NULL,
    actor     TEXT,
    action    TEXT    NOT NULL,
    method    TEXT,
    backend   TEXT,
    distance  REAL,
    detail    TEXT    NOT NULL,
    prev_hash BLOB    NOT NULL,
    hash      BLOB    NOT NULL
);
-- The chain detects edits made behind the application's back; these
-- triggers stop the application itself (and casual SQL) from making them.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
"#;

/// Offload sync: changes waiting for the service, and how far the local copy
/// of the plant-wide gallery has come.
const V2: &str = r#"
-- Enrollments and removals made while the offload service was unreachable.
-- The service enrolls from face crops, so an enrollment holds its crops
-- (concatenated raw 92x112 pixels) until pushed; the row is deleted then.
CREATE TABLE pending_sync (
    id           INTEGER PRIMARY KEY,
    kind         TEXT    NOT NULL CHECK (kind IN ('enroll', 'remove')),
    personnel_no TEXT    NOT NULL CHECK (length(trim(personnel_no)) > 0),
    crops        BLOB,
    queued_at    INTEGER NOT NULL,
    CHECK ((kind = 'enroll') = (crops IS NOT NULL))
);

-- One row: which service gallery the local copy follows, at which version.
CREATE TABLE gallery_sync (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    gallery_id TEXT    NOT NULL,
    version    INTEGER NOT NULL
);
"#;

/// The queue names people, not faces: a push sends the operator's current
/// templates and profile, so V2's queued crops (raw face images) go, and
/// one row per personnel number is enough. The old table is dropped with
/// secure_delete on, which overwrites the crops.
const V3: &str = r#"
CREATE TABLE pending_sync_v3 (
    id           INTEGER PRIMARY KEY,
    kind         TEXT    NOT NULL CHECK (kind IN ('upsert', 'remove')),
    personnel_no TEXT    NOT NULL UNIQUE CHECK (length(trim(personnel_no)) > 0),
    queued_at    INTEGER NOT NULL
);
INSERT INTO pending_sync_v3 (kind, personnel_no, queued_at)
    SELECT CASE kind WHEN 'enroll' THEN 'upsert' ELSE 'remove' END, personnel_no, queued_at
    FROM pending_sync p
    WHERE id = (SELECT max(id) FROM pending_sync q WHERE q.personnel_no = p.personnel_no)
    ORDER BY id;
DROP TABLE pending_sync;
ALTER TABLE pending_sync_v3 RENAME TO pending_sync;
"#;

/// The audit chain is keyed (`keys.rs`): which key (its public
/// fingerprint, to tell a copy on another PC from tampering) and from which
/// row on. The anchor outside the database is what verification trusts;
/// this row lets a kiosk whose key went missing refuse to start with a new
/// one instead of silently breaking the chain and everyone's PINs.
const V4: &str = r#"
CREATE TABLE audit_chain (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    key_id     TEXT    NOT NULL,
    keyed_from INTEGER NOT NULL,
    keyed_at   INTEGER NOT NULL
);
"#;

/// Sign-in outcomes waiting to be counted plant-wide (the offload
/// service's SignInService), queued in the transaction that counts them
/// here, and only while the kiosk follows a plant gallery.
const V5: &str = r#"
CREATE TABLE pending_sign_ins (
    id           INTEGER PRIMARY KEY,
    personnel_no TEXT    NOT NULL,
    succeeded    INTEGER NOT NULL CHECK (succeeded IN (0, 1)),
    at           INTEGER NOT NULL
);
"#;

/// Each setting keyed with the audit key (HMAC of its key and value), so
/// that a row changed by SQL behind the kiosk's back is told apart from
/// one the kiosk wrote (issue 22, finding 8). Rows from before are keyed
/// once, by the start that migrates to this version (`Store::open`).
pub(crate) const SETTINGS_KEYED_VERSION: usize = 6;
const V6: &str = r#"
ALTER TABLE settings ADD COLUMN mac BLOB;
"#;

#[cfg(test)]
mod tests {
    #[test]
    fn migrations_are_valid() {
        super::migrations().validate().unwrap();
    }
}
