//! The kiosk with the `dlib` recogniser and the head-turn challenge, end
//! to end: the real app, ORL photos in sign-in-sized frames as the camera
//! (a folder of images), every challenge fixed to one turn and delay. s1's
//! photo 1 faces the camera and photos 2 and 5 turn to the person's left
//! (by their yaw cue, `vision/tests/liveness.rs`). A live turn is
//! synthesised between photos 1 and 2 (`vision/tests/turn/mod.rs`): such a
//! sequence is, by construction, what a video made for the challenge looks
//! like. Needs dlib's model files (`scripts/setup-models`).

#[path = "../../vision/tests/turn/mod.rs"]
mod turn;

use std::path::PathBuf;
use std::time::Duration;

use crate::support::*;
use kubevision_hmi::auth::{AuthState, Notice};
use kubevision_hmi::recognition::challenge::{Ask, ChooseAsk};
use kubevision_hmi::store::{now_millis, AuditAction, NewOperator, Role, Store};
use tempfile::TempDir;
use vision::detect::FaceDetector;
use vision::embedding::{Alignment, DlibFrame, Embedder, Landmarks};
use vision::lbph::LbphParams;
use vision::liveness::Turn;
use vision::pipeline::FacePipeline;
use vision::quality::QualityGate;
use vision::recogniser::Kind;
use vision::template::{templates_of_face, AnyTemplate};
use vision::GrayImage;

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
        let made = templates_of_face(&LbphParams::default(), Some(&embedder), &frame, &face);
        templates.extend(made.unwrap().iter().map(AnyTemplate::to_bytes));
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

/// Every challenge asks `turn`, its arrow half a second after the track
/// starts (the kiosk's own ask is random in both).
const LEFT: ChooseAsk = || Ask {
    turn: Turn::Left,
    after: Duration::from_millis(500),
};
const RIGHT: ChooseAsk = || Ask {
    turn: Turn::Right,
    after: Duration::from_millis(500),
};

/// dlib's landmarks of the face in `frame`, as the kiosk finds them.
fn landmarks(frame: &GrayImage) -> Landmarks {
    let embedder = Embedder::load().expect("dlib's models: run scripts/setup-models");
    let mut pipeline = FacePipeline::new(
        FaceDetector::from_default_locations().unwrap(),
        QualityGate::default(),
    );
    let face = pipeline.process(frame).unwrap();
    let dlib = DlibFrame::new(frame);
    let b = embedder
        .face_box(&dlib, Alignment::Cascade, Some(face.face))
        .unwrap();
    embedder.landmarks(&dlib, b).landmarks
}

/// A camera folder of these frames, in order, with a pixel of drift and
/// sensor noise on each (written into the temp dir, never the repo).
fn camera_of(root: &TempDir, name: &str, frames: &[GrayImage]) -> PathBuf {
    let dir = root.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for (i, f) in frames.iter().enumerate() {
        let (dx, dy) = [(0, 0), (1, 0), (1, 1), (0, 1)][i % 4];
        turn::camera(f, dx, dy, 3, i as u64)
            .save(dir.join(format!("{i:03}.pgm")))
            .unwrap();
    }
    dir
}

/// s1 facing the camera for 1.5 s, then turning to their left from photo
/// 1 to photo 2 in ten steps, then holding it: a live turn (synthesised;
/// what a video of s1 turning looks like).
fn turning(root: &TempDir) -> PathBuf {
    let (a, b) = (sign_in_frame(TURNER, 1), sign_in_frame(TURNER, 2));
    let points = |l: Landmarks| l.points.map(|p| (p.x, p.y));
    let (la, lb) = (points(landmarks(&a)), points(landmarks(&b)));
    let mut frames = vec![a.clone(); 12];
    frames.extend(turn::turn(&a, &la, &b, &lb, turn::ORL_IN_FRAME, 10));
    frames.extend(vec![b; 4]);
    camera_of(root, "turning", &frames)
}

#[test]
fn a_head_turn_as_asked_then_the_pin_signs_in_with_dlib() {
    let root = tempfile::tempdir().unwrap();
    let data = dlib_store(&root);
    let mut h = start_with(&data, &turning(&root), FPS, LEFT);
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
    // The camera loops its folder and the worker starts wherever the
    // camera is: an attempt that starts in the middle of the turn, or
    // sees the jump from the last frame back to the first, is refused
    // before the one that sees the whole turn. Only that, and only once.
    let failed = audit(&data, AuditAction::SignInFailed);
    assert!(failed.len() <= 1, "{failed:?}");
    assert!(failed.iter().all(|f| f.detail == "liveness check failed"));
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
    let mut h = start_with(&data, &still, FPS, LEFT);
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
    let mut h = start_with(&data, &turning(&root), FPS, RIGHT);
    assert_refused_as_not_live(&mut h);
    drop(h);
    let refused = audit(&data, AuditAction::SignInFailed);
    assert_eq!(refused[0].detail, "liveness check failed");
    assert!(audit(&data, AuditAction::SignIn).is_empty());
}

/// Issue 22's attack through the kiosk's camera: s1's frontal print until
/// the arrow shows, then s1's own photos turned that way (2 and 5) held up
/// in its place. Before the fix this passed the face step 7 of 7 times.
#[test]
fn the_victims_frontal_print_swapped_for_their_turned_prints_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let data = dlib_store(&root);
    let mut frames = vec![sign_in_frame(TURNER, 1); 6];
    frames.extend([2, 2, 5, 5].map(|p| sign_in_frame(TURNER, p)));
    let swap = camera_of(&root, "swap", &frames);
    let mut h = start_with(&data, &swap, FPS, LEFT);
    assert_refused_as_not_live(&mut h);
    drop(h);
    assert!(audit(&data, AuditAction::SignIn).is_empty());
}

/// The same with prints of the same photos mirrored (they turn the other
/// way) and another person's prints turned the way asked (s23's photos 4,
/// 6 and 9 turn to their right).
#[test]
fn mirrored_prints_and_another_persons_turned_prints_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let data = dlib_store(&root);
    let mut mirrored = vec![sign_in_frame(TURNER, 1); 6];
    mirrored.extend([2, 2, 5, 5].map(|p| turn::mirror(&sign_in_frame(TURNER, p))));
    let mut other = vec![sign_in_frame(TURNER, 1); 6];
    other.extend([4, 6, 9, 9].map(|p| sign_in_frame(23, p)));
    for (name, frames) in [("mirrored", mirrored), ("other", other)] {
        let camera = camera_of(&root, name, &frames);
        let mut h = start_with(&data, &camera, FPS, RIGHT);
        assert_refused_as_not_live(&mut h);
        drop(h);
        assert!(audit(&data, AuditAction::SignIn).is_empty(), "{name}");
    }
}

/// What the tests above rely on: the kiosk's pipeline takes every frame
/// of the sequence, the first faces the camera (the challenge's track
/// starts there) and the turned ones turn far enough to answer.
#[test]
fn the_turning_sequence_starts_facing_the_camera_and_turns_left() {
    use kubevision_hmi::recognition::challenge::FACING;
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
