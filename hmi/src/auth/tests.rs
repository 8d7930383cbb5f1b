use super::*;
use crate::store::{Operator, OperatorId, Role};

const T0: Millis = 1_000_000;

fn op(role: Role, enrolled: bool) -> Operator {
    Operator {
        id: OperatorId(7),
        name: "Willi".into(),
        personnel_no: "W-7".into(),
        role,
        created_at: 0,
        enrolled_at: enrolled.then_some(1),
    }
}

fn live() -> FaceEvidence {
    FaceEvidence {
        distance: 42.0,
        backend: "local",
        live: true,
        challenge: None,
    }
}

fn actions(effects: &[Effect]) -> Vec<(&'static str, &str)> {
    effects
        .iter()
        .map(|e| match e {
            Effect::Audit(a) => ("audit", a.action.unwrap().as_str()),
            Effect::Failure(_, a) => ("failure", a.action.unwrap().as_str()),
            Effect::Success(_, a) => ("success", a.action.unwrap().as_str()),
        })
        .collect()
}

fn machine() -> AuthMachine {
    AuthMachine::new(AuthPolicy::default())
}

#[test]
fn face_then_pin_signs_in_and_logs_method_backend_distance() {
    let mut m = machine();
    assert!(m
        .face_identified(op(Role::Operator, true), live(), None, T0)
        .is_empty());
    assert!(matches!(m.state(), AuthState::AwaitingPin { .. }));
    let effects = m.pin_checked(SecretCheck::Accepted, T0 + 1);
    let Effect::Audit(e) = &effects[0] else {
        panic!("{effects:?}")
    };
    assert_eq!(
        (
            e.action,
            e.actor.as_deref(),
            e.method.as_deref(),
            e.backend.as_deref(),
            e.distance
        ),
        (
            Some(AuditAction::SignIn),
            Some("W-7"),
            Some("face+pin"),
            Some("local"),
            Some(42.0)
        )
    );
    let s = m.session().unwrap();
    assert_eq!(
        (s.method, s.operator.id),
        (Method::FaceThenPin, OperatorId(7))
    );
}

#[test]
fn wrong_pin_allows_retry_until_the_store_locks() {
    let mut m = machine();
    m.face_identified(op(Role::Operator, true), live(), None, T0);
    let e = m.pin_checked(SecretCheck::Rejected { locked_until: None }, T0 + 1);
    assert_eq!(actions(&e), [("audit", "sign_in_failed")]);
    assert!(
        matches!(m.state(), AuthState::AwaitingPin { .. }),
        "a typo does not end the attempt"
    );
    assert_eq!(m.notice(T0 + 1), Some(Notice::WrongCredentials));
    let e = m.pin_checked(
        SecretCheck::Rejected {
            locked_until: Some(T0 + 60_000),
        },
        T0 + 2,
    );
    assert_eq!(
        actions(&e),
        [("audit", "sign_in_failed"), ("audit", "locked_out")]
    );
    assert_eq!(m.state(), &AuthState::Idle);
    assert_eq!(
        m.notice(T0 + 2),
        Some(Notice::Locked { until: T0 + 60_000 })
    );
}

#[test]
fn a_locked_operator_is_not_asked_for_the_pin() {
    let mut m = machine();
    let e = m.face_identified(op(Role::Operator, true), live(), Some(T0 + 10), T0);
    assert_eq!(actions(&e), [("audit", "sign_in_failed")]);
    assert_eq!(
        (m.state(), m.notice(T0)),
        (&AuthState::Idle, Some(Notice::Locked { until: T0 + 10 }))
    );
    // The same face keeps arriving: no second audit row for the same incident.
    assert!(m
        .face_identified(op(Role::Operator, true), live(), Some(T0 + 10), T0 + 1)
        .is_empty());
    // An expired lock is no lock.
    m.face_identified(op(Role::Operator, true), live(), Some(T0 + 10), T0 + 6_000);
    assert!(matches!(m.state(), AuthState::AwaitingPin { .. }));
}

#[test]
fn a_photo_is_refused_even_when_the_face_matches() {
    let mut m = machine();
    let photo = FaceEvidence {
        live: false,
        ..live()
    };
    let e = m.face_identified(op(Role::Operator, true), photo.clone(), None, T0);
    assert_eq!(actions(&e), [("audit", "sign_in_failed")]);
    assert_eq!(
        (m.state(), m.notice(T0)),
        (&AuthState::Idle, Some(Notice::NotLive))
    );

    // In the other order the photo costs a counted failure.
    let mut m = machine();
    m.password_checked(
        PasswordOutcome::Checked(op(Role::Operator, true), SecretCheck::Accepted),
        T0,
    );
    let e = m.face_verified(true, photo, T0 + 1);
    assert_eq!(actions(&e), [("failure", "sign_in_failed")]);
    assert_eq!(m.notice(T0 + 1), Some(Notice::NotLive));
}

#[test]
fn password_then_face_signs_in() {
    let mut m = machine();
    let e = m.password_checked(
        PasswordOutcome::Checked(op(Role::Administrator, true), SecretCheck::Accepted),
        T0,
    );
    assert!(e.is_empty());
    assert!(matches!(m.state(), AuthState::AwaitingFace { .. }));
    let e = m.face_verified(true, live(), T0 + 1);
    assert_eq!(actions(&e), [("success", "sign_in")]);
    assert_eq!(m.session().unwrap().method, Method::PasswordThenFace);
}

#[test]
fn a_mismatching_face_after_the_password_counts_against_the_operator() {
    let mut m = machine();
    m.password_checked(
        PasswordOutcome::Checked(op(Role::Operator, true), SecretCheck::Accepted),
        T0,
    );
    let e = m.face_verified(
        false,
        FaceEvidence {
            distance: 140.0,
            ..live()
        },
        T0 + 1,
    );
    let [Effect::Failure(Subject::Operator(OperatorId(7)), ev)] = e.as_slice() else {
        panic!("{e:?}")
    };
    assert_eq!(
        (ev.method.as_deref(), ev.distance),
        (Some("password+face"), Some(140.0))
    );
    assert_eq!(
        (m.state(), m.notice(T0 + 1)),
        (&AuthState::Idle, Some(Notice::FaceMismatch))
    );
}

#[test]
fn unknown_personnel_numbers_count_against_the_kiosk() {
    let mut m = machine();
    let e = m.password_checked(PasswordOutcome::UnknownPersonnelNo("X-9".into()), T0);
    let [Effect::Failure(Subject::Kiosk, ev)] = e.as_slice() else {
        panic!("{e:?}")
    };
    assert_eq!(ev.actor.as_deref(), Some("X-9"));
    assert_eq!(
        m.notice(T0),
        Some(Notice::WrongCredentials),
        "same notice as a wrong password: no enumeration"
    );
}

#[test]
fn role_policy_decides_the_allowed_orders() {
    // By default administrators may not use face-first.
    let mut m = machine();
    m.face_identified(op(Role::Administrator, true), live(), None, T0);
    assert_eq!(
        (m.state(), m.notice(T0)),
        (&AuthState::Idle, Some(Notice::FaceFirstNotAllowed))
    );

    let mut policy = AuthPolicy::default();
    policy.operator.password_then_face = false;
    let mut m = AuthMachine::new(policy);
    m.password_checked(
        PasswordOutcome::Checked(op(Role::Operator, true), SecretCheck::Accepted),
        T0,
    );
    assert_eq!(
        (m.state(), m.notice(T0)),
        (&AuthState::Idle, Some(Notice::PasswordFirstNotAllowed))
    );

    let never = AuthPolicy {
        maintenance: RolePolicy {
            face_then_pin: false,
            password_then_face: false,
        },
        ..Default::default()
    };
    assert!(!never.is_valid() && AuthPolicy::default().is_valid());
}

#[test]
fn password_first_needs_an_enrolled_face() {
    let mut m = machine();
    let e = m.password_checked(
        PasswordOutcome::Checked(op(Role::Operator, false), SecretCheck::Accepted),
        T0,
    );
    assert_eq!(actions(&e), [("audit", "sign_in_failed")]);
    assert_eq!(m.notice(T0), Some(Notice::NoFaceEnrolled));
}

#[test]
fn the_second_factor_times_out() {
    let mut m = machine();
    let timeout = m.policy().second_factor_timeout_ms;
    m.face_identified(op(Role::Operator, true), live(), None, T0);
    assert!(m.tick(T0 + timeout - 1).is_empty());
    assert_eq!(
        actions(&m.tick(T0 + timeout)),
        [("audit", "sign_in_failed")]
    );
    assert_eq!(m.notice(T0 + timeout), Some(Notice::TimedOut));
    // A late PIN result for the abandoned attempt changes nothing.
    assert!(m
        .pin_checked(SecretCheck::Accepted, T0 + timeout + 1)
        .is_empty());
    assert_eq!(m.state(), &AuthState::Idle);
}

#[test]
fn inactivity_signs_out_and_activity_keeps_the_session() {
    let mut m = machine();
    let idle = m.policy().auto_sign_out_ms;
    m.face_identified(op(Role::Operator, true), live(), None, T0);
    m.pin_checked(SecretCheck::Accepted, T0);
    m.activity(T0 + idle - 1);
    assert!(m.tick(T0 + idle).is_empty(), "activity restarted the timer");
    assert_eq!(
        actions(&m.tick(T0 + 2 * idle - 1)),
        [("audit", "auto_sign_out")]
    );
    assert_eq!(m.notice(T0 + 2 * idle - 1), Some(Notice::AutoSignedOut));
}

#[test]
fn sign_out_and_cancel_pause_face_detection_briefly() {
    let mut m = machine();
    m.face_identified(op(Role::Operator, true), live(), None, T0);
    m.pin_checked(SecretCheck::Accepted, T0);
    assert_eq!(actions(&m.sign_out(T0 + 1)), [("audit", "sign_out")]);
    assert!(m.sign_out(T0 + 2).is_empty(), "signing out twice logs once");
    // The person who just signed out is still in view.
    m.face_identified(op(Role::Operator, true), live(), None, T0 + 2);
    assert_eq!(m.state(), &AuthState::Idle);
    m.face_identified(
        op(Role::Operator, true),
        live(),
        None,
        T0 + 1 + m.policy().notice_ms,
    );
    assert!(matches!(m.state(), AuthState::AwaitingPin { .. }));
    m.cancel(T0 + 10_000);
    m.face_identified(op(Role::Operator, true), live(), None, T0 + 10_001);
    assert_eq!(m.state(), &AuthState::Idle);
}

#[test]
fn the_line_signs_out_and_the_audit_row_names_its_account() {
    let mut m = machine();
    assert!(
        m.sign_out_by_line("plc", T0).is_empty(),
        "nobody to sign out: nothing to log"
    );
    m.face_identified(op(Role::Operator, true), live(), None, T0);
    m.pin_checked(SecretCheck::Accepted, T0);
    let effects = m.sign_out_by_line("plc", T0 + 1);
    let [Effect::Audit(row)] = effects.as_slice() else {
        panic!("one audit row expected, got {effects:?}")
    };
    assert_eq!(row.action, Some(AuditAction::SignOut));
    assert_eq!(row.actor.as_deref(), Some("W-7"));
    assert!(
        row.detail.contains("OPC UA SignOut() as plc"),
        "{}",
        row.detail
    );
    assert_eq!(m.state(), &AuthState::Idle);
    assert_eq!(m.notice(T0 + 2), Some(Notice::SignedOut));
}
