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
