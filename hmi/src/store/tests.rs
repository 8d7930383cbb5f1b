//! Store tests on real SQLite files in temporary directories.

use super::*;
use rusqlite::Connection;
use tempfile::TempDir;

const T0: Millis = 1_700_000_000_000;

fn fresh() -> (TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_in_dir(&dir.path().join("data")).unwrap();
    (dir, store)
}

fn raw(dir: &TempDir) -> Connection {
    Connection::open(dir.path().join("data").join(DB_FILE)).unwrap()
}

fn admin<'a>() -> NewOperator<'a> {
    NewOperator {
        name: "Ada Admin",
        personnel_no: "A-1",
        role: Role::Administrator,
        pin: Some("2468"),
        password: Some("s3cret-pass"),
    }
}

fn worker<'a>(personnel_no: &'a str) -> NewOperator<'a> {
    NewOperator {
        name: "Willi Werker",
        personnel_no,
        role: Role::Operator,
        pin: Some("1357"),
        password: None,
    }
}

/// Distinctive bytes, so the test can look for them in the raw files.
fn template(seed: u8) -> Vec<u8> {
    (0..256u32)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ 0xA5)
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn opens_with_wal_foreign_keys_and_keeps_data_across_reopen() {
    let (dir, mut store) = fresh();
    let mode: String = store
        .conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    let fk: i64 = store
        .conn
        .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
        .unwrap();
    assert_eq!((mode.as_str(), fk), ("wal", 1));
    store.create_operator(&admin(), None, T0).unwrap();
    drop(store);
    let store = Store::open_in_dir(&dir.path().join("data")).unwrap();
    assert_eq!(store.operator_count().unwrap(), 1);
    let version: i64 = store
        .conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, super::schema::VERSION);
}

#[test]
fn foreign_keys_reject_templates_of_nobody() {
    let (_dir, store) = fresh();
    let err = store.conn.execute(
        "INSERT INTO templates (operator_id, data) VALUES (99, x'01')",
        [],
    );
    assert!(err.is_err(), "orphan template accepted");
}

#[test]
fn creates_operators_with_hashed_secrets_only() {
    let (dir, mut store) = fresh();
    let op = store.create_operator(&admin(), None, T0).unwrap();
    assert_eq!(
        (op.personnel_no.as_str(), op.role, op.enrolled_at),
        ("A-1", Role::Administrator, None)
    );
    assert_eq!(
        store.secret_kinds(op.id).unwrap(),
        [SecretKind::Password, SecretKind::Pin]
    );
    let phcs: Vec<String> = raw(&dir)
        .prepare("SELECT phc FROM credentials")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(phcs
        .iter()
        .all(|p| p.starts_with("$argon2id$") && !p.contains("2468") && !p.contains("s3cret")));

    assert!(matches!(
        store.create_operator(&NewOperator { name: "Other", ..admin() }, None, T0),
        Err(StoreError::DuplicatePersonnelNumber(n)) if n == "A-1"
    ));
    assert!(matches!(
        store.create_operator(
            &NewOperator {
                pin: None,
                password: None,
                ..worker("W-1")
            },
            None,
            T0
        ),
        Err(StoreError::NoSecret)
    ));
    assert!(matches!(
        store.create_operator(
            &NewOperator {
                pin: Some("12"),
                ..worker("W-1")
            },
            None,
            T0
        ),
        Err(StoreError::WeakSecret(SecretKind::Pin))
    ));
    assert!(matches!(
        store.create_operator(
            &NewOperator {
                name: "  ",
                ..worker("W-1")
            },
            None,
            T0
        ),
        Err(StoreError::InvalidInput(_))
    ));
    assert_eq!(
        store.operator_count().unwrap(),
        1,
        "failed creations left nothing behind"
    );
    assert_eq!(
        store
            .operator_by_personnel_no(" A-1 ")
            .unwrap()
            .map(|o| o.id),
        Some(op.id)
    );
}

#[test]
fn wrong_secrets_lock_out_with_growing_delay() {
    let (_dir, mut store) = fresh();
    store.set_lockout_policy(LockoutPolicy {
        free_attempts: 2,
        base_delay_ms: 1_000,
        max_delay_ms: 60_000,
    });
    let op = store.create_operator(&worker("W-1"), None, T0).unwrap();
    let check = |store: &mut Store, pin, now| {
        store
            .check_secret(op.id, SecretKind::Pin, pin, now)
            .unwrap()
    };

    assert_eq!(
        check(&mut store, "0000", T0),
        SecretCheck::Rejected { locked_until: None }
    );
    assert_eq!(
        check(&mut store, "0000", T0),
        SecretCheck::Rejected { locked_until: None }
    );
    assert_eq!(
        check(&mut store, "0000", T0),
        SecretCheck::Rejected {
            locked_until: Some(T0 + 1_000)
        }
    );
    // While locked even the right PIN is not checked.
    assert_eq!(
        check(&mut store, "1357", T0 + 999),
        SecretCheck::Locked { until: T0 + 1_000 }
    );
    assert_eq!(
        check(&mut store, "0000", T0 + 1_000),
        SecretCheck::Rejected {
            locked_until: Some(T0 + 3_000)
        }
    );
    assert_eq!(
        check(&mut store, "0000", T0 + 3_000),
        SecretCheck::Rejected {
            locked_until: Some(T0 + 7_000)
        }
    );
    assert_eq!(
        store
            .locked_until(Subject::Operator(op.id), T0 + 5_000)
            .unwrap(),
        Some(T0 + 7_000)
    );
    assert_eq!(check(&mut store, "1357", T0 + 7_000), SecretCheck::Accepted);
    assert_eq!(
        store
            .locked_until(Subject::Operator(op.id), T0 + 7_000)
            .unwrap(),
        None
    );
    assert_eq!(
        check(&mut store, "0000", T0 + 7_000),
        SecretCheck::Rejected { locked_until: None },
        "success reset the count"
    );
    // A kind the operator does not have counts as wrong.
    assert_eq!(
        store
            .check_secret(op.id, SecretKind::Password, "whatever-long", T0 + 7_000)
            .unwrap(),
        SecretCheck::Rejected { locked_until: None }
    );
}

#[test]
fn lockout_survives_reopening_the_store() {
    let (dir, mut store) = fresh();
    store.set_lockout_policy(LockoutPolicy {
        free_attempts: 0,
        base_delay_ms: 60_000,
        max_delay_ms: 60_000,
    });
    let op = store.create_operator(&worker("W-1"), None, T0).unwrap();
    store
        .check_secret(op.id, SecretKind::Pin, "9999", T0)
        .unwrap();
    drop(store);
    let mut store = Store::open_in_dir(&dir.path().join("data")).unwrap();
    assert_eq!(
        store
            .check_secret(op.id, SecretKind::Pin, "1357", T0 + 1)
            .unwrap(),
        SecretCheck::Locked { until: T0 + 60_000 }
    );
}

#[test]
fn face_failures_count_and_log_through_record_failure() {
    let (_dir, mut store) = fresh();
    store.set_lockout_policy(LockoutPolicy {
        free_attempts: 1,
        base_delay_ms: 5_000,
        max_delay_ms: 5_000,
    });
    let event = AuditEvent::new(AuditAction::SignInFailed)
        .method("face")
        .backend("local")
        .distance(123.5);
    assert_eq!(
        store.record_failure(Subject::Kiosk, &event, T0).unwrap(),
        None
    );
    assert_eq!(
        store.record_failure(Subject::Kiosk, &event, T0).unwrap(),
        Some(T0 + 5_000)
    );
    let log = store.audit(&AuditFilter::default()).unwrap();
    let actions: Vec<_> = log.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(actions, ["locked_out", "sign_in_failed", "sign_in_failed"]);
    assert_eq!(log[1].distance, Some(123.5));
    store
        .record_success(
            Subject::Kiosk,
            &AuditEvent::new(AuditAction::SignIn).actor("W-1"),
            T0 + 5_000,
        )
        .unwrap();
    assert_eq!(store.locked_until(Subject::Kiosk, T0).unwrap(), None);
}

#[test]
fn enrollment_replaces_templates() {
    let (_dir, mut store) = fresh();
    let a = store.create_operator(&worker("W-1"), None, T0).unwrap();
    let b = store.create_operator(&worker("W-2"), None, T0).unwrap();
    store
        .enroll(a.id, &[template(1), template(2)], Some("A-1"), T0 + 10)
        .unwrap();
    store
        .enroll(b.id, &[template(3)], Some("A-1"), T0 + 20)
        .unwrap();
    store
        .enroll(a.id, &[template(4)], Some("A-1"), T0 + 30)
        .unwrap();
    assert_eq!(
        store.templates().unwrap(),
        [(a.id, template(4)), (b.id, template(3))]
    );
    assert_eq!(
        store.operator(a.id).unwrap().unwrap().enrolled_at,
        Some(T0 + 30)
    );
    assert!(matches!(
        store.enroll(OperatorId(999), &[template(1)], None, T0),
        Err(StoreError::UnknownOperator(999))
    ));
}

#[test]
fn interrupted_enrollment_rolls_back_completely() {
    let (dir, mut store) = fresh();
    let op = store.create_operator(&worker("W-1"), None, T0).unwrap();
    store
        .enroll(op.id, &[template(1), template(2)], None, T0 + 10)
        .unwrap();
    let log_len = store.audit(&AuditFilter::default()).unwrap().len();

    // The third template violates the schema (empty BLOB) after the old
    // templates were deleted and two new ones inserted: all of it must undo.
    let err = store.enroll(
        op.id,
        &[template(7), template(8), Vec::new()],
        None,
        T0 + 20,
    );
    assert!(matches!(err, Err(StoreError::Sqlite(_))), "{err:?}");
    assert_eq!(
        store.templates().unwrap(),
        [(op.id, template(1)), (op.id, template(2))]
    );
    assert_eq!(
        store.operator(op.id).unwrap().unwrap().enrolled_at,
        Some(T0 + 10)
    );
    assert_eq!(
        store.audit(&AuditFilter::default()).unwrap().len(),
        log_len,
        "no audit row for a failed enrollment"
    );

    // And what the file holds after a fresh open is the same.
    drop(store);
    let n: i64 = raw(&dir)
        .query_row("SELECT count(*) FROM templates", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 2);
}

#[test]
fn deleting_an_operator_erases_their_biometric_data_from_the_files() {
    let (dir, mut store) = fresh();
    store.create_operator(&admin(), None, T0).unwrap();
    let op = store.create_operator(&worker("W-1"), None, T0).unwrap();
    let keep = store.create_operator(&worker("W-2"), None, T0).unwrap();
    store
        .enroll(op.id, &[template(11), template(12)], None, T0)
        .unwrap();
    store.enroll(keep.id, &[template(13)], None, T0).unwrap();

    let files = |dir: &TempDir| -> Vec<u8> {
        let data = dir.path().join("data");
        [DB_FILE.to_owned(), format!("{DB_FILE}-wal")]
            .iter()
            .filter_map(|f| std::fs::read(data.join(f)).ok())
            .flatten()
            .collect()
    };
    assert!(
        contains(&files(&dir), &template(11)),
        "the test's marker must be findable before deletion"
    );

    store.delete_operator(op.id, Some("A-1"), T0 + 1).unwrap();
    assert_eq!(store.templates().unwrap(), [(keep.id, template(13))]);
    assert!(store.secret_kinds(op.id).unwrap().is_empty());
    let bytes = files(&dir);
    assert!(
        !contains(&bytes, &template(11)) && !contains(&bytes, &template(12)),
        "template bytes left in the files"
    );
    assert!(
        contains(&bytes, &template(13)),
        "other operators' templates stay"
    );
    let last = &store
        .audit(&AuditFilter {
            limit: Some(1),
            ..Default::default()
        })
        .unwrap()[0];
    assert_eq!(
        (
            last.action.as_str(),
            last.detail.as_str(),
            last.actor.as_deref()
        ),
        ("operator_deleted", "W-1", Some("A-1"))
    );
}

#[test]
fn the_last_administrator_stays() {
    let (_dir, mut store) = fresh();
    let a = store.create_operator(&admin(), None, T0).unwrap();
    assert!(matches!(
        store.delete_operator(a.id, None, T0),
        Err(StoreError::LastAdministrator)
    ));
    assert!(matches!(
        store.change_role(a.id, Role::Operator, None, T0),
        Err(StoreError::LastAdministrator)
    ));
    let b = store
        .create_operator(
            &NewOperator {
                personnel_no: "A-2",
                ..admin()
            },
            None,
            T0,
        )
        .unwrap();
    store
        .change_role(a.id, Role::Maintenance, None, T0)
        .unwrap();
    assert!(matches!(
        store.delete_operator(b.id, None, T0),
        Err(StoreError::LastAdministrator)
    ));
}

fn populated() -> (TempDir, Store) {
    let (dir, mut store) = fresh();
    let a = store.create_operator(&admin(), None, T0).unwrap();
    store
        .create_operator(&worker("W-1"), Some("A-1"), T0 + 1)
        .unwrap();
    store
        .enroll(a.id, &[template(1)], Some("A-1"), T0 + 2)
        .unwrap();
    store
        .record_success(
            Subject::Operator(a.id),
            &AuditEvent::new(AuditAction::SignIn)
                .actor("A-1")
                .method("face+pin")
                .backend("local")
                .distance(41.25),
            T0 + 3,
        )
        .unwrap();
    store
        .append_audit(
            &AuditEvent::new(AuditAction::SignOut)
                .actor("A-1")
                .detail("comma, \"quote\""),
            T0 + 4,
        )
        .unwrap();
    (dir, store)
}

#[test]
fn an_untouched_chain_verifies() {
    let (_dir, store) = populated();
    assert_eq!(
        store.verify_chain().unwrap(),
        ChainStatus::Intact { rows: 5 }
    );
}

#[test]
fn the_application_cannot_rewrite_the_log() {
    let (_dir, store) = populated();
    assert!(store
        .conn
        .execute("UPDATE audit_log SET detail = 'x' WHERE seq = 2", [])
        .is_err());
    assert!(store
        .conn
        .execute("DELETE FROM audit_log WHERE seq = 2", [])
        .is_err());
}

/// Someone with write access to the file drops the triggers and edits rows.
fn tamper(dir: &TempDir, sql: &str) -> ChainStatus {
    let conn = raw(dir);
    conn.execute_batch(&format!(
        "DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete; {sql}"
    ))
    .unwrap();
    drop(conn);
    Store::open_in_dir(&dir.path().join("data"))
        .unwrap()
        .verify_chain()
        .unwrap()
}

#[test]
fn tampering_with_a_row_is_detected_at_that_row() {
    let (dir, _store) = populated();
    let status = tamper(&dir, "UPDATE audit_log SET distance = 12.0 WHERE seq = 4");
    assert_eq!(
        status,
        ChainStatus::Broken {
            seq: 4,
            reason: BreakReason::ContentMismatch
        }
    );
}

#[test]
fn removing_a_row_is_detected() {
    let (dir, _store) = populated();
    let status = tamper(&dir, "DELETE FROM audit_log WHERE seq = 2");
    assert_eq!(
        status,
        ChainStatus::Broken {
            seq: 3,
            reason: BreakReason::Gap
        }
    );
}

#[test]
fn a_rehashed_forgery_breaks_the_next_link() {
    let (dir, store) = populated();
    // The forger edits row 3 and recomputes its hash with the public
    // algorithm: row 3 is self-consistent, but row 4 still names the old hash.
    let mut forged = store
        .audit(&AuditFilter::default())
        .unwrap()
        .into_iter()
        .find(|r| r.seq == 3)
        .unwrap();
    forged.actor = Some("W-1".into());
    let prev: Vec<u8> = raw(&dir)
        .query_row("SELECT prev_hash FROM audit_log WHERE seq = 3", [], |r| {
            r.get(0)
        })
        .unwrap();
    let hash = audit::row_hash(&prev, &forged);
    let sql = format!(
        "UPDATE audit_log SET actor = 'W-1', hash = x'{}' WHERE seq = 3",
        hex::encode(hash)
    );
    assert_eq!(
        tamper(&dir, &sql),
        ChainStatus::Broken {
            seq: 4,
            reason: BreakReason::LinkMismatch
        }
    );
}

#[test]
fn audit_filter_and_csv_export() {
    let (_dir, store) = populated();
    let a1 = store
        .audit(&AuditFilter {
            actor_contains: Some("a-".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        a1.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [5, 4, 3, 2],
        "newest first, case-insensitive"
    );
    let sign_ins = store
        .audit(&AuditFilter {
            action: Some(AuditAction::SignIn),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(sign_ins.len(), 1);
    let window = store
        .audit(&AuditFilter {
            from: Some(T0 + 1),
            until: Some(T0 + 2),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(window.iter().map(|r| r.seq).collect::<Vec<_>>(), [3, 2]);

    let mut csv = Vec::new();
    write_csv(&store.audit(&AuditFilter::default()).unwrap(), &mut csv).unwrap();
    let csv = String::from_utf8(csv).unwrap();
    let lines: Vec<_> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "seq,time_utc,actor,action,method,backend,distance,detail"
    );
    assert_eq!(
        lines[1],
        "5,2023-11-14T22:13:20.004Z,A-1,sign_out,,,,\"comma, \"\"quote\"\"\""
    );
    assert_eq!(
        lines[2],
        "4,2023-11-14T22:13:20.003Z,A-1,sign_in,face+pin,local,41.250,"
    );
    assert_eq!(lines.len(), 6);
}

#[test]
fn settings_roundtrip_and_are_audited() {
    let (_dir, mut store) = fresh();
    assert_eq!(store.setting("language").unwrap(), None);
    store
        .put_setting("language", "de", Some("A-1"), T0)
        .unwrap();
    store
        .put_setting("language", "en", Some("A-1"), T0)
        .unwrap();
    assert_eq!(store.setting("language").unwrap().as_deref(), Some("en"));
    assert_eq!(
        store
            .audit(&AuditFilter {
                action: Some(AuditAction::SettingsChanged),
                ..Default::default()
            })
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn a_failed_create_and_enroll_leaves_no_operator() {
    let (_dir, mut store) = fresh();
    let err =
        store.create_enrolled_operator(&worker("W-1"), &[template(1), Vec::new()], Some("A-1"), T0);
    assert!(matches!(err, Err(StoreError::Sqlite(_))), "{err:?}");
    assert_eq!(
        (
            store.operator_count().unwrap(),
            store.audit(&AuditFilter::default()).unwrap().len()
        ),
        (0, 0)
    );
    let op = store
        .create_enrolled_operator(&worker("W-1"), &[template(1)], Some("A-1"), T0)
        .unwrap();
    assert_eq!(op.enrolled_at, Some(T0));
    assert_eq!(store.templates().unwrap(), [(op.id, template(1))]);
}

// --- the plant-wide gallery: outgoing queue and incoming changes ---

fn sync_store(dir: &TempDir) -> SyncStore {
    SyncStore::open(&dir.path().join("data").join(DB_FILE)).unwrap()
}

fn queued(dir: &TempDir) -> Vec<(String, Outbound)> {
    sync_store(dir)
        .pending()
        .unwrap()
        .into_iter()
        .map(|p| (p.personnel_no, p.what))
        .collect()
}

/// A template the kiosk can match with (made from a synthetic face).
fn real_template(seed: u32) -> Vec<u8> {
    let face = vision::GrayImage::from_fn(92, 112, |x, y| {
        image::Luma([((x * 7 + y * 3 + seed * 13) % 251) as u8])
    });
    vision::lbph::Template::extract(&vision::lbph::LbphParams::default(), &face)
        .unwrap()
        .to_bytes()
}

#[test]
fn local_changes_queue_the_person_never_their_face() {
    let (dir, mut store) = fresh();
    let w = store
        .create_enrolled_operator(&worker("W-1"), &[template(1)], None, T0)
        .unwrap();
    store
        .set_secret(w.id, SecretKind::Pin, "9753", None, T0)
        .unwrap();
    store.enroll(w.id, &[template(2)], None, T0).unwrap();
    assert_eq!(
        queued(&dir),
        [("W-1".to_owned(), Outbound::Upsert)],
        "one row a person"
    );
    let outgoing = sync_store(&dir).outgoing("W-1").unwrap().unwrap();
    assert_eq!(outgoing.templates, [template(2)], "the current templates");
    assert_eq!(outgoing.profile.role, Role::Operator);
    assert_eq!(outgoing.profile.credentials[0].0, SecretKind::Pin);
    assert!(outgoing.profile.credentials[0].1.starts_with("$argon2id$"));

    store.delete_operator(w.id, None, T0).unwrap();
    assert_eq!(queued(&dir), [("W-1".to_owned(), Outbound::Remove)]);
    assert_eq!(sync_store(&dir).outgoing("W-1").unwrap(), None);
    // No column of the queue can hold face data.
    let columns: Vec<String> = raw(&dir)
        .prepare("SELECT name FROM pragma_table_info('pending_sync')")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(columns, ["id", "kind", "personnel_no", "queued_at"]);
}

#[test]
fn the_v2_queue_of_face_crops_migrates_to_names_and_the_crops_are_erased() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data").join(DB_FILE);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let crop: Vec<u8> = (0..92 * 112).map(|i| (i * 7 % 253) as u8 ^ 0x5A).collect();
    {
        let mut conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        schema::migrations().to_version(&mut conn, 2).unwrap();
        let insert = "INSERT INTO pending_sync (kind, personnel_no, crops, queued_at) VALUES (?1, ?2, ?3, 1)";
        conn.execute(insert, rusqlite::params!["enroll", "W-1", crop])
            .unwrap();
        conn.execute(insert, rusqlite::params!["remove", "W-2", None::<Vec<u8>>])
            .unwrap();
        conn.execute(insert, rusqlite::params!["enroll", "W-2", crop])
            .unwrap();
    }
    let store = Store::open(&path).unwrap();
    store.checkpoint_truncate().unwrap();
    drop(store);
    assert_eq!(
        queued(&dir),
        [
            ("W-1".to_owned(), Outbound::Upsert),
            ("W-2".to_owned(), Outbound::Upsert)
        ],
        "the latest change of each person"
    );
    let file = std::fs::read(&path).unwrap();
    assert!(!contains(&file, &crop[..512]), "the crops were overwritten");
}

#[test]
fn incoming_changes_follow_the_rules_and_are_audited() {
    let (dir, mut store) = fresh();
    let a = store.create_operator(&admin(), None, T0).unwrap();
    store.enroll(a.id, &[real_template(1)], None, T0).unwrap();
    store
        .create_enrolled_operator(&worker("W-1"), &[real_template(2)], None, T0)
        .unwrap();
    // W-1 and A-1 are queued here; push them, as a sync would.
    let mut sync = sync_store(&dir);
    for p in sync.pending().unwrap() {
        sync.pushed(p.id).unwrap();
    }
    store
        .set_secret(a.id, SecretKind::Pin, "1111", None, T0)
        .unwrap(); // A-1 queued again

    let phc = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";
    let profile = |name: &str, role| Profile {
        name: name.into(),
        role,
        credentials: vec![(SecretKind::Pin, phc.to_owned())],
    };
    let upsert = |no: &str, templates: Vec<Vec<u8>>, p: Option<Profile>| Incoming::Upsert {
        personnel_no: no.into(),
        templates,
        profile: p,
    };
    let changes = [
        // A local change of A-1 is queued: theirs waits for ours.
        upsert(
            "A-1",
            vec![real_template(9)],
            Some(profile("Mallory", Role::Operator)),
        ),
        // An administrator from elsewhere is maintenance here.
        upsert(
            "B-2",
            vec![real_template(3)],
            Some(profile("Bea", Role::Administrator)),
        ),
        // Unusable: taken not at all, the others still are.
        upsert(
            "C-3",
            vec![vec![1, 2, 3]],
            Some(profile("Carl", Role::Operator)),
        ),
        upsert("D-4", vec![real_template(4)], None),
        Incoming::Removal {
            personnel_no: "W-1".into(),
        },
    ];
    let applied = sync.apply("gallery-1", 7, &changes, T0).unwrap();
    assert_eq!(applied, 3, "B-2, D-4 and the removal of W-1");
    assert_eq!(sync.synced().unwrap(), ("gallery-1".to_owned(), 7));

    let a1 = store.operator_by_personnel_no("A-1").unwrap().unwrap();
    assert_eq!(
        (a1.name.as_str(), a1.role),
        ("Ada Admin", Role::Administrator)
    );
    let b2 = store.operator_by_personnel_no("B-2").unwrap().unwrap();
    assert_eq!((b2.name.as_str(), b2.role), ("Bea", Role::Maintenance));
    assert_eq!(store.secret_kinds(b2.id).unwrap(), [SecretKind::Pin]);
    let d4 = store.operator_by_personnel_no("D-4").unwrap().unwrap();
    assert_eq!((d4.name.as_str(), d4.role), ("D-4", Role::Operator));
    assert!(
        store.secret_kinds(d4.id).unwrap().is_empty(),
        "no profile, no way in but the face"
    );
    assert!(store.operator_by_personnel_no("C-3").unwrap().is_none());
    assert!(store.operator_by_personnel_no("W-1").unwrap().is_none());

    // The local administrator is never removed by a sync.
    sync.pushed(sync.pending().unwrap()[0].id).unwrap();
    let gone = [Incoming::Removal {
        personnel_no: "A-1".into(),
    }];
    assert_eq!(sync.apply("gallery-1", 8, &gone, T0).unwrap(), 0);
    assert!(store.operator_by_personnel_no("A-1").unwrap().is_some());

    let audited: Vec<String> = store
        .audit(&AuditFilter::default())
        .unwrap()
        .into_iter()
        .filter(|r| r.backend.as_deref() == Some("plant gallery"))
        .map(|r| r.detail)
        .collect();
    assert_eq!(audited.len(), 3, "{audited:?}");
    assert_eq!(
        store.verify_chain().unwrap(),
        ChainStatus::Intact {
            rows: store.audit(&AuditFilter::default()).unwrap().len() as u64
        }
    );
}
