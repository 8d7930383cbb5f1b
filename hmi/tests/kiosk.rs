//! The real application driven through egui_kittest, with ORL photos
//! played as the camera and a real store in a temporary directory.

use crate::support::*;
use kubevision_hmi::auth::{AuthState, Notice};
use kubevision_hmi::store::{now_millis, AuditAction, Role, Store, Subject};
use vision::recogniser::Kind;

#[test]
fn first_start_enrolls_the_administrator_who_then_signs_in_with_password_then_face() {
    let root = tempfile::tempdir().unwrap();
    let data = data_dir(&root);
    let mut h = start(&data, &camera(&root, "enroll", &photos(ADMIN, 1..=5)));
    wait(&mut h, "the setup screen", |a| a.screen().name() == "setup");
    tap(&mut h, "Start capture");
    h.get_by_label("Name / Personnel number"); // nothing starts without the details

    keys(&mut h, "ada");
    tap(&mut h, "OK");
    keys(&mut h, "a1");
    tap(&mut h, "OK");
    for _ in 0..2 {
        keys(&mut h, "2468");
        tap(&mut h, "OK");
    }
    for _ in 0..2 {
        keys(&mut h, "secret-pass");
        tap(&mut h, "OK");
    }
    wait_for_text(&mut h, "Enrollment saved and verified");
    tap(&mut h, "OK");
    wait(&mut h, "the idle screen", idle);
    let admin = &h.state().kiosk().operators[0];
    assert_eq!(
        (admin.name.as_str(), admin.role, admin.enrolled_at.is_some()),
        ("ada", Role::Administrator, true)
    );
    drop(h);

    // Restart with the administrator's other photos as the camera.
    let mut h = start(&data, &camera(&root, "live", &photos(ADMIN, 6..=10)));
    wait(&mut h, "the idle screen", idle);
    enter_password(&mut h, "a1", "secret-pass");
    wait(&mut h, "the sign-in", signed_in);
    let s = h.state().kiosk().auth.session().unwrap();
    assert_eq!(
        (s.operator.personnel_no.as_str(), s.method.as_str()),
        ("a1", "password+face")
    );
    h.get_by_label("Operators");
    tap(&mut h, "Sign out");
    wait(&mut h, "the idle screen", idle);
    drop(h);
    let sign_ins = audit(&data, AuditAction::SignIn);
    assert_eq!(sign_ins.len(), 1);
    assert_eq!(
        (
            sign_ins[0].backend.as_deref(),
            sign_ins[0].distance.is_some_and(|d| d < 70.0)
        ),
        (Some("local"), true)
    );
    assert_eq!(audit(&data, AuditAction::SignOut).len(), 1);
}

#[test]
fn face_then_pin_signs_an_operator_in() {
    let root = tempfile::tempdir().unwrap();
    let (data, _, worker) = seeded(&root);
    let h = sign_in_worker(&root, &data);
    let s = h.state().kiosk().auth.session().unwrap();
    assert_eq!((s.operator.id, s.method.as_str()), (worker.id, "face+pin"));
    assert!(
        h.query_by_label("Operators").is_none(),
        "operators see no administration"
    );
}

#[test]
fn wrong_pins_lock_the_operator_out() {
    let root = tempfile::tempdir().unwrap();
    let (data, _, worker) = seeded(&root);
    let mut h = start(&data, &camera(&root, "live", &photos(WORKER, 6..=10)));
    wait(&mut h, "the PIN pad", awaiting_pin);
    for _ in 0..4 {
        keys(&mut h, "9999");
        tap(&mut h, "OK");
        wait(&mut h, "the PIN check", not_busy);
    }
    wait(&mut h, "the lock", |a| {
        matches!(
            a.kiosk().auth.notice(now_millis()),
            Some(Notice::Locked { .. })
        )
    });
    assert_eq!(*h.state().kiosk().auth.state(), AuthState::Idle);
    h.get_by_label_contains("Locked: wait");
    drop(h);
    let store = Store::open_in_dir(&data).unwrap();
    assert!(store
        .locked_until(Subject::Operator(worker.id), now_millis())
        .unwrap()
        .is_some());
    assert_eq!(audit(&data, AuditAction::SignInFailed).len(), 4);
    assert!(!audit(&data, AuditAction::LockedOut).is_empty());
    assert!(audit(&data, AuditAction::SignIn).is_empty());
}

#[test]
fn a_replayed_still_photo_of_an_enrolled_person_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let (data, ..) = seeded(&root);
    // The same photo, frame after frame: what a printed picture held still gives.
    let still = camera(&root, "still", &[(WORKER, 8); 6]);
    let mut h = start(&data, &still);
    wait(&mut h, "the refusal", |a| {
        a.kiosk().auth.notice(now_millis()) == Some(Notice::NotLive)
    });
    assert_eq!(
        *h.state().kiosk().auth.state(),
        AuthState::Idle,
        "no PIN pad for a photo"
    );
    h.get_by_label("No live face detected");
    drop(h);
    let refused = audit(&data, AuditAction::SignInFailed);
    assert_eq!(refused[0].detail, "liveness check failed");
}

#[test]
fn the_administrator_checks_and_exports_the_audit_log() {
    let root = tempfile::tempdir().unwrap();
    let (data, ..) = seeded(&root);
    let mut h = sign_in_admin(&root, &data);
    tap(&mut h, "Audit log");
    wait_for_text(&mut h, "Log intact");
    tap(&mut h, "Export CSV");
    wait_for_text(&mut h, "Exported to");
    drop(h);
    let export = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "csv"))
        .unwrap();
    let csv = std::fs::read_to_string(export).unwrap();
    assert!(
        csv.starts_with("seq,time_utc,actor,action,method,backend,distance,detail\n"),
        "{csv}"
    );
    assert!(
        csv.lines()
            .any(|l| l.contains(",a1,sign_in,password+face,local,")),
        "{csv}"
    );
    assert!(
        !audit(&data, AuditAction::AuditExported).is_empty(),
        "the export itself is logged"
    );
}

#[test]
fn deleting_an_operator_in_the_ui_erases_their_face_data() {
    let root = tempfile::tempdir().unwrap();
    let (data, admin, worker) = seeded(&root);
    let mut h = sign_in_admin(&root, &data);
    tap(&mut h, "Operators");
    // Rows are sorted by name: "Person 35" (the administrator), then "Person 7".
    for _ in 0..2 {
        h.get_all_by_label("Delete")
            .nth(1)
            .expect("the worker's Delete button")
            .click();
        h.step();
        h.step();
    }
    wait(&mut h, "the deletion", |a| a.kiosk().operators.len() == 1);
    drop(h);
    let store = Store::open_in_dir(&data).unwrap();
    assert!(store.operator(worker.id).unwrap().is_none());
    assert!(
        store
            .templates()
            .unwrap()
            .iter()
            .all(|(id, _)| *id == admin.id),
        "the worker's templates are gone"
    );
    let deleted = audit(&data, AuditAction::OperatorDeleted);
    assert_eq!(
        (deleted[0].actor.as_deref(), deleted[0].detail.as_str()),
        (Some("a1"), "w7")
    );
}

#[test]
fn re_enrolling_replaces_the_templates_and_verifies_at_once() {
    let root = tempfile::tempdir().unwrap();
    let (data, admin, _) = seeded(&root);
    let mut h = sign_in_admin(&root, &data);
    tap(&mut h, "Operators");
    h.get_all_by_label("Re-enroll")
        .next()
        .expect("the administrator's row")
        .click();
    wait_for_text(&mut h, "Enrollment saved and verified");
    tap(&mut h, "OK");
    wait(&mut h, "the operator list", |a| {
        a.screen().name() == "operators"
    });
    drop(h);
    let store = Store::open_in_dir(&data).unwrap();
    let mine: Vec<Option<Kind>> = store
        .templates()
        .unwrap()
        .into_iter()
        .filter(|(id, _)| *id == admin.id)
        .map(|(_, t)| Kind::of_template(&t))
        .collect();
    let count = |kind| mine.iter().filter(|k| **k == Some(kind)).count();
    assert_eq!(
        count(Kind::Lbph),
        50,
        "the seeded 5 templates were replaced by the wizard's 50"
    );
    // The same 50 frames made dlib's templates too, where its models are.
    let dlib = if kubevision_hmi::recognition::dlib_models().is_ok() {
        50
    } else {
        0
    };
    assert_eq!((count(Kind::Dlib), mine.len()), (dlib, 50 + dlib));
}

#[test]
fn inactivity_signs_out_and_returns_to_the_idle_screen() {
    let root = tempfile::tempdir().unwrap();
    let (data, ..) = seeded(&root);
    let mut store = Store::open_in_dir(&data).unwrap();
    let policy = kubevision_hmi::auth::AuthPolicy {
        auto_sign_out_ms: 1_500,
        ..Default::default()
    };
    store
        .put_setting("policy", &serde_json::to_string(&policy).unwrap(), None, 0)
        .unwrap();
    drop(store);
    let mut h = sign_in_admin(&root, &data);
    tap(&mut h, "Operators");
    // Nobody touches the screen: the session ends and the operator list closes.
    wait(&mut h, "the automatic sign-out", |a| {
        !signed_in(a) && a.screen().name() == "sign_in"
    });
    wait_for_text(&mut h, "Signed out after inactivity");
    drop(h);
    assert_eq!(
        audit(&data, AuditAction::AutoSignOut)[0].actor.as_deref(),
        Some("a1")
    );
}
