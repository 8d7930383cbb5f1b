//! The kiosk with the `dlib` recogniser and the head-turn challenge, end
//! to end: the real app, ORL photos in sign-in-sized frames as the camera,
//! every challenge fixed to one turn. The turning sequences are those of
//! `vision/tests/liveness.rs`: s1's photos 1, 1, 2, 5 turn to the person's
//! left. Needs dlib's model files (`scripts/setup-models`).

mod support;

use std::path::PathBuf;

use kubevision_hmi::auth::{AuthState, Notice};
use kubevision_hmi::recognition::enrollment_templates;
use kubevision_hmi::store::{now_millis, AuditAction, NewOperator, Role, Store};
use support::*;
use tempfile::TempDir;
use vision::detect::FaceDetector;
use vision::embedding::Embedder;
use vision::lbph::LbphParams;
use vision::liveness::Turn;
use vision::pipeline::FacePipeline;
use vision::quality::QualityGate;
use vision::recogniser::Kind;

/// s1: the person whose photos 1, 1, 2, 5 turn to their left.
const TURNER: u32 = 1;
/// Their other photos: the enrollment (never a sign-in photo).
const ENROLL: [u32; 7] = [3, 4, 6, 7, 8, 9, 10];
/// A frame a second: the worker (an embedding takes about 60 ms) sees
/// every frame, in order.
const FPS: f64 = 8.0;

/// A store choosing dlib with the challenge on, an administrator, and s1 enrolled as "w1"
/// (PIN 1357) from sign-in-sized frames, the way the kiosk enrolls:
/// templates of both kinds from each frame.
fn dlib_store(root: &TempDir) -> PathBuf {
    let data = data_dir(root);
    // An administrator (lbph templates only) so the kiosk starts at sign-in.
    seed_admin(&data);
    let mut store = Store::open_in_dir(&data).unwrap();
    store
        .put_setting("recogniser", "\"dlib\"", None, 0)
        .unwrap();
    store
        .put_setting("head_turn_challenge", "true", None, 0)
        .unwrap();
    let embedder = Embedder::load().expect("dlib's models: run scripts/setup-models");
    let mut pipeline = FacePipeline::new(
        FaceDetector::from_default_locations().unwrap(),
        QualityGate::default(),
    );
    let mut templates = Vec::new();
    for photo in ENROLL {
        let frame = sign_in_frame(TURNER, photo);
        let face = pipeline.process(&frame).unwrap();
        templates.extend(
            enrollment_templates(&LbphParams::default(), Some(&embedder), &frame, &face).unwrap(),
        );
    }
    assert_eq!(
        templates.len(),
        2 * ENROLL.len(),
        "one of each kind a frame"
    );
    let new = NewOperator {
        name: "Person 1",
        personnel_no: "w1",
        role: Role::Operator,
        pin: Some("1357"),
        password: Some("worker-pass"),
    };
    store
        .create_enrolled_operator(&new, &templates, None, now_millis())
        .unwrap();
    data
}

fn turning(root: &TempDir) -> PathBuf {
    frames_camera(
        root,
        "turning",
        &[(TURNER, 1), (TURNER, 1), (TURNER, 2), (TURNER, 5)],
    )
}

#[test]
fn a_head_turn_as_asked_then_the_pin_signs_in_with_dlib() {
    let root = tempfile::tempdir().unwrap();
    let data = dlib_store(&root);
    let mut h = start_with(&data, &turning(&root), FPS, || Turn::Left);
    wait(&mut h, "the PIN pad", awaiting_pin);
    assert_eq!(h.state().kiosk().settings.recogniser, Kind::Dlib);
    keys(&mut h, "1357");
    tap(&mut h, "OK");
    wait(&mut h, "the sign-in", signed_in);
    drop(h);
    let sign_ins = audit(&data, AuditAction::SignIn);
    assert_eq!(sign_ins.len(), 1);
    let distance = sign_ins[0].distance.unwrap();
    assert!(
        distance < Kind::Dlib.default_threshold(),
        "an L2 distance, under dlib's threshold: {distance}"
    );
    assert!(audit(&data, AuditAction::SignInFailed).is_empty());
}

fn assert_refused_as_not_live(h: &mut egui_kittest::Harness<'_, kubevision_hmi::app::KioskApp>) {
    wait(h, "the refusal", |a| {
        a.kiosk().auth.notice(now_millis()) == Some(Notice::NotLive)
    });
    assert_eq!(
        *h.state().kiosk().auth.state(),
        AuthState::Idle,
        "no PIN pad"
    );
    h.get_by_label("No live face detected");
}

#[test]
fn a_still_photo_is_refused_as_not_live() {
    let root = tempfile::tempdir().unwrap();
    let data = dlib_store(&root);
    let still = frames_camera(&root, "still", &[(TURNER, 1); 6]);
    let mut h = start_with(&data, &still, FPS, || Turn::Left);
    assert_refused_as_not_live(&mut h);
    drop(h);
    let refused = audit(&data, AuditAction::SignInFailed);
    assert_eq!(refused[0].detail, "liveness check failed");
    assert!(audit(&data, AuditAction::SignIn).is_empty());
}

#[test]
fn a_turn_the_wrong_way_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let data = dlib_store(&root);
    let mut h = start_with(&data, &turning(&root), FPS, || Turn::Right);
    assert_refused_as_not_live(&mut h);
    drop(h);
    let refused = audit(&data, AuditAction::SignInFailed);
    assert_eq!(refused[0].detail, "liveness check failed");
    assert!(audit(&data, AuditAction::SignIn).is_empty());
}

/// What the tests above rely on: the kiosk's pipeline takes every frame
/// of the sequence, the first faces the camera (the challenge's track
/// starts there) and the turned ones turn far enough to answer.
#[test]
fn the_turning_sequence_starts_facing_the_camera_and_turns_left() {
    use kubevision_hmi::recognition::challenge::FACING;
    use vision::embedding::{Alignment, DlibFrame};
    let embedder = Embedder::load().expect("dlib's models: run scripts/setup-models");
    let mut pipeline = FacePipeline::new(
        FaceDetector::from_default_locations().unwrap(),
        QualityGate::default(),
    );
    let cue = |photo| {
        let frame = sign_in_frame(TURNER, photo);
        let face = pipeline.process(&frame).unwrap();
        let dlib = DlibFrame::new(&frame);
        let b = embedder
            .face_box(&dlib, Alignment::Cascade, Some(face.face))
            .unwrap();
        embedder.landmarks(&dlib, b).landmarks.yaw_cue()
    };
    let cues: Vec<f64> = [1, 2, 5].into_iter().map(cue).collect();
    assert!(cues[0].abs() < FACING, "{cues:?}");
    let rule = vision::liveness::ChallengeRule::default();
    assert!(
        cues[1..].iter().all(|c| c - cues[0] >= rule.min_turn),
        "{cues:?}"
    );
}
