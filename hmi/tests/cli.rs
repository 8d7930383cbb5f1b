//! `kubevision-hmi --verify-audit` on real store files.

use std::process::Command;

use kubevision_hmi::store::{AuditAction, AuditEvent, Store, DB_FILE};

fn verify(dir: &std::path::Path) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kubevision-hmi"))
        .arg("--data-dir")
        .arg(dir)
        .arg("--verify-audit")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn verify_audit_reports_intact_and_tampered_logs() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open_in_dir(dir.path()).unwrap();
    for i in 0..3 {
        store
            .append_audit(
                &AuditEvent::new(AuditAction::SignIn).actor(format!("W-{i}")),
                1_000 + i,
            )
            .unwrap();
    }
    drop(store);
    assert_eq!(
        verify(dir.path()),
        (Some(0), "audit log intact: 3 entries\n".into())
    );

    let conn = rusqlite::Connection::open(dir.path().join(DB_FILE)).unwrap();
    conn.execute_batch(
        "DROP TRIGGER audit_log_no_update; UPDATE audit_log SET actor = 'W-9' WHERE seq = 2;",
    )
    .unwrap();
    drop(conn);
    assert_eq!(
        verify(dir.path()),
        (
            Some(1),
            "audit log TAMPERED: first broken entry 2 (ContentMismatch)\n".into()
        )
    );
}

fn run(args: &[&std::ffi::OsStr]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kubevision-hmi"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn verify_audit_on_a_mistyped_folder_fails_and_creates_nothing() {
    let root = tempfile::tempdir().unwrap();
    let missing = root.path().join("kubevison-data"); // sic
    let (code, stdout, stderr) = run(&[
        "--data-dir".as_ref(),
        missing.as_os_str(),
        "--verify-audit".as_ref(),
    ]);
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(stderr.contains("no store at"), "{stderr}");
    assert!(
        !missing.exists(),
        "--verify-audit created {}",
        missing.display()
    );
    // An existing folder without a store: the same, and it stays empty.
    let empty = root.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let (code, _, _) = run(&[
        "--data-dir".as_ref(),
        empty.as_os_str(),
        "--verify-audit".as_ref(),
    ]);
    assert_eq!(code, Some(2));
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
}

#[test]
fn init_store_creates_the_keyed_store_and_verify_audit_sees_a_cut() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let secrets = root.path().join("keys");
    let args = |flag: &'static str| -> Vec<std::ffi::OsString> {
        vec![
            "--data-dir".into(),
            data.clone().into(),
            "--secrets-dir".into(),
            secrets.clone().into(),
            flag.into(),
        ]
    };
    let os = |v: &[std::ffi::OsString]| -> (Option<i32>, String, String) {
        run(&v.iter().map(|s| s.as_os_str()).collect::<Vec<_>>())
    };
    let (code, stdout, stderr) = os(&args("--init-store"));
    assert_eq!(
        (code, stdout.as_str()),
        (Some(0), "audit log intact: 0 entries\n"),
        "{stderr}"
    );
    assert!(secrets
        .join(kubevision_hmi::store::AUDIT_KEY_FILE)
        .is_file());
    assert!(!data.join("secrets").exists(), "--secrets-dir is used");

    let mut store = Store::open_with_secrets(&data, &secrets).unwrap();
    for i in 0..3 {
        store
            .append_audit(
                &AuditEvent::new(AuditAction::SignIn).actor(format!("W-{i}")),
                i,
            )
            .unwrap();
    }
    drop(store);
    assert_eq!(
        os(&args("--verify-audit")).1,
        "audit log intact: 3 entries\n"
    );
    let conn = rusqlite::Connection::open(data.join(DB_FILE)).unwrap();
    conn.execute_batch("DROP TRIGGER audit_log_no_delete; DELETE FROM audit_log;")
        .unwrap();
    drop(conn);
    let (code, stdout, _) = os(&args("--verify-audit"));
    assert_eq!(
        (code, stdout.as_str()),
        (
            Some(1),
            "audit log TAMPERED: first broken entry 1 (Truncated)\n"
        )
    );
}
