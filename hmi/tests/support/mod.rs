//! Helpers shared by the end-to-end tests. Each person's photos 1–5
//! enroll them and photos 6–10 sign them in, so the recogniser never
//! compares a photo with itself; the persons used are ones the padded-ORL
//! pipeline separates cleanly at the test threshold.
#![allow(dead_code)] // each test binary uses its own subset

pub mod cpu_renderer;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use eframe::egui;
pub use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;

use cpu_renderer::CpuRenderer;
use kubevision_hmi::app::{Config, KioskApp};
use kubevision_hmi::auth::AuthState;
use kubevision_hmi::camera::{FolderSource, FrameSource};
use kubevision_hmi::recognition::challenge::{Ask, ChooseAsk};
use kubevision_hmi::recognition::Probe;
use kubevision_hmi::screens::Screen;
use kubevision_hmi::store::{
    now_millis, AuditAction, AuditFilter, AuditRecord, NewOperator, Operator, Role, Store,
};
use tempfile::TempDir;
use vision::detect::FaceDetector;
use vision::lbph::LbphParams;
use vision::liveness::Turn;
use vision::pipeline::FacePipeline;
use vision::quality::QualityGate;
use vision::template::AnyTemplate;
use vision::GrayImage;

/// Below every nearest-impostor distance of the persons used here.
pub const THRESHOLD: &str = "70.0";
pub const ADMIN: u32 = 35;
pub const WORKER: u32 = 7;

pub fn orl(person: u32, photo: u32) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../../shared/datasets/orl/s{person}/{photo}.pgm"))
}

/// A camera folder holding the given photos (copied into the temp dir, never the repo).
pub fn camera(root: &TempDir, name: &str, photos: &[(u32, u32)]) -> PathBuf {
    let dir = root.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for (i, &(person, photo)) in photos.iter().enumerate() {
        std::fs::copy(orl(person, photo), dir.join(format!("{i}.pgm"))).unwrap();
    }
    dir
}

pub fn photos(person: u32, range: std::ops::RangeInclusive<u32>) -> Vec<(u32, u32)> {
    range.map(|p| (person, p)).collect()
}

/// A store with the test threshold and the head-turn challenge off: these
/// tests play photos that do not turn (`dlib_kiosk.rs` plays ones that do).
pub fn data_dir(root: &TempDir) -> PathBuf {
    let dir = root.path().join("data");
    let mut store = Store::open_in_dir(&dir).unwrap();
    store.put_setting("threshold", THRESHOLD, None, 0).unwrap();
    store
        .put_setting("head_turn_challenge", "false", None, 0)
        .unwrap();
    dir
}

/// Normalised face crops the way the kiosk's worker cuts them.
pub fn crops(person: u32, range: std::ops::RangeInclusive<u32>) -> Vec<GrayImage> {
    let mut pipeline = FacePipeline::new(
        FaceDetector::from_default_locations().unwrap(),
        QualityGate::default(),
    );
    let root = tempfile::tempdir().unwrap();
    let mut src = FolderSource::new(&camera(&root, "crops", &photos(person, range)), 1000.0)
        .unwrap()
        .once();
    src.open().unwrap();
    let crops: Vec<GrayImage> = std::iter::from_fn(|| src.next_frame().ok())
        .filter_map(|f| pipeline.process(&f).ok())
        .map(|face| face.crop)
        .collect();
    assert!(!crops.is_empty(), "no face of s{person} found");
    crops
}

/// Probes the way the kiosk's worker makes them for lbph (crops alone).
pub fn probes(person: u32, range: std::ops::RangeInclusive<u32>) -> Vec<Probe> {
    crops(person, range)
        .into_iter()
        .map(|crop| Probe {
            crop,
            embedding: None,
        })
        .collect()
}

/// Templates the way the kiosk makes them, from photos 1–5.
pub fn templates(person: u32) -> Vec<Vec<u8>> {
    crops(person, 1..=5)
        .iter()
        .map(|crop| {
            AnyTemplate::of_crop(&LbphParams::default(), crop)
                .unwrap()
                .to_bytes()
        })
        .collect()
}

pub fn seed(data: &Path, person: u32, no: &str, role: Role, pin: &str, password: &str) -> Operator {
    let mut store = Store::open_in_dir(data).unwrap();
    let new = NewOperator {
        name: &format!("Person {person}"),
        personnel_no: no,
        role,
        pin: Some(pin),
        password: Some(password),
    };
    store
        .create_enrolled_operator(&new, &templates(person), None, now_millis())
        .unwrap()
}

pub fn start(data: &Path, camera: &Path) -> Harness<'static, KioskApp> {
    start_with(data, camera, 40.0, || Ask {
        turn: Turn::Left,
        after: Duration::ZERO,
    })
}

/// A kiosk whose camera plays at `fps` and whose every challenge asks for
/// the turn, at the moment, that `choose_ask` gives.
pub fn start_with(
    data: &Path,
    camera: &Path,
    fps: f64,
    choose_ask: ChooseAsk,
) -> Harness<'static, KioskApp> {
    let config = Config {
        data_dir: data.to_owned(),
        camera: Some(camera.to_owned()),
        camera_fps: fps,
        secrets_dir: None,
        sync: kubevision_hmi::store_worker::SyncPolicy::default(),
        opcua_listen: None,
        choose_ask,
    };
    Harness::builder()
        .with_size(egui::vec2(1280.0, 800.0))
        .renderer(CpuRenderer::default())
        .build_eframe(move |cc| KioskApp::new(&cc.egui_ctx, config, false).unwrap())
}

pub fn wait(h: &mut Harness<'_, KioskApp>, what: &str, done: impl Fn(&KioskApp) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done(h.state()) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what} (screen {}, state {:?})",
            h.state().screen().name(),
            h.state().kiosk().auth.state()
        );
        h.step();
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Steps until a widget whose label contains `text` shows.
pub fn wait_for_text(h: &mut Harness<'_, KioskApp>, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while h.query_by_label_contains(text).is_none() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for \"{text}\" on {}",
            h.state().screen().name()
        );
        h.step();
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn tap(h: &mut Harness<'_, KioskApp>, label: &str) {
    h.get_by_label(label).click();
    h.step();
    h.step();
}

pub fn keys(h: &mut Harness<'_, KioskApp>, text: &str) {
    for c in text.chars() {
        tap(h, &c.to_string());
    }
}

pub fn idle(app: &KioskApp) -> bool {
    matches!(app.screen(), Screen::SignIn(_)) && *app.kiosk().auth.state() == AuthState::Idle
}

pub fn not_busy(app: &KioskApp) -> bool {
    matches!(app.screen(), Screen::SignIn(s) if !s.busy())
}

pub fn audit(data: &Path, action: AuditAction) -> Vec<AuditRecord> {
    Store::open_in_dir(data)
        .unwrap()
        .audit(&AuditFilter {
            action: Some(action),
            ..Default::default()
        })
        .unwrap()
}

pub fn seed_admin(data: &Path) -> Operator {
    seed(
        data,
        ADMIN,
        "a1",
        Role::Administrator,
        "2468",
        "secret-pass",
    )
}

pub fn seed_worker(data: &Path) -> Operator {
    seed(data, WORKER, "w7", Role::Operator, "1357", "worker-pass")
}

/// A store with the administrator (ADMIN, "a1") and an operator (WORKER, "w7").
pub fn seeded(root: &TempDir) -> (PathBuf, Operator, Operator) {
    let data = data_dir(root);
    let (admin, worker) = (seed_admin(&data), seed_worker(&data));
    (data, admin, worker)
}

/// Personnel number and password on the on-screen keyboard, from the idle screen.
pub fn enter_password(h: &mut Harness<'_, KioskApp>, personnel_no: &str, password: &str) {
    tap(h, "Sign in with personnel number");
    keys(h, personnel_no);
    tap(h, "OK");
    keys(h, password);
    tap(h, "OK");
}

pub fn signed_in(app: &KioskApp) -> bool {
    app.kiosk().auth.session().is_some()
}

pub fn awaiting_pin(app: &KioskApp) -> bool {
    matches!(app.kiosk().auth.state(), AuthState::AwaitingPin { .. })
}

/// A kiosk with the administrator (ADMIN, "a1") signed in by password + face.
pub fn sign_in_admin(root: &TempDir, data: &Path) -> Harness<'static, KioskApp> {
    let mut h = start(data, &camera(root, "admin", &photos(ADMIN, 6..=10)));
    wait(&mut h, "the idle screen", idle);
    enter_password(&mut h, "a1", "secret-pass");
    wait(&mut h, "the sign-in", signed_in);
    h
}

/// A kiosk with the operator (WORKER, "w7") signed in by face + PIN.
pub fn sign_in_worker(root: &TempDir, data: &Path) -> Harness<'static, KioskApp> {
    let mut h = start(data, &camera(root, "live", &photos(WORKER, 6..=10)));
    wait(&mut h, "the PIN pad", awaiting_pin);
    keys(&mut h, "1357");
    tap(&mut h, "OK");
    wait(&mut h, "the sign-in", signed_in);
    h
}

/// An ORL photo as a kiosk camera sees a person at the sign-in distance:
/// enlarged 3× in the middle of a 640×480 frame (as `vision/tests/orl.rs`
/// does for its head-turn sequences).
pub fn sign_in_frame(person: u32, photo: u32) -> GrayImage {
    let photo = image::open(orl(person, photo)).unwrap().to_luma8();
    let big = image::imageops::resize(
        &photo,
        photo.width() * 3,
        photo.height() * 3,
        image::imageops::FilterType::Triangle,
    );
    let mut frame = GrayImage::from_pixel(640, 480, image::Luma([128]));
    image::imageops::replace(
        &mut frame,
        &big,
        i64::from((640 - big.width()) / 2),
        i64::from((480 - big.height()) / 2),
    );
    frame
}

/// A camera folder of sign-in-sized frames of the given photos, in order
/// (written into the temp dir, never the repo).
pub fn frames_camera(root: &TempDir, name: &str, photos: &[(u32, u32)]) -> PathBuf {
    let dir = root.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for (i, &(person, photo)) in photos.iter().enumerate() {
        sign_in_frame(person, photo)
            .save(dir.join(format!("{i}.pgm")))
            .unwrap();
    }
    dir
}
