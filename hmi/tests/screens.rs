//! Snapshot images of every screen, rendered by the software renderer and
//! compared with the committed PNGs under tests/snapshots/ (shown in the
//! README). `UPDATE_SNAPSHOTS=1 cargo test -p kubevision-hmi --test screens`
//! rewrites them after an intended change.
//!
//! Every screen is rendered at 1280×800 (`tests/snapshots/NN_name.png`) and
//! at the smallest and largest supported kiosk sizes, 1024×768 and
//! 1920×1080 (`tests/snapshots/1024x768/NN_name.png`, `…/1920x1080/…`).
//! At each size every screen's layout is also checked through the
//! accessibility tree: touch targets at least 48 px, nothing cut off at the
//! sides, no two targets overlapping, content below the screen only inside a
//! scroll area, and each screen's key actions fully on screen.
//!
//! `face_guide.png` shows the preview's overlay in its three states.
//!
//! The camera shows fixed photos, and the status bar a fixed clock and
//! station name, so the snapshots are the same every run.

use std::path::Path;

use crate::support::cpu_renderer::CpuRenderer;
use crate::support::*;
use eframe::egui::{self, accesskit::Role, Rect};
use egui_kittest::kittest::NodeT;
use egui_kittest::{Harness, SnapshotResults};
use kubevision_hmi::app::{Config, KioskApp};
use kubevision_hmi::auth::Notice;
use kubevision_hmi::camera::CameraStatus;
use kubevision_hmi::screens::Screen;
use kubevision_hmi::store::now_millis;
use kubevision_hmi::theme::MIN_TARGET;
use kubevision_hmi::widgets::status_bar;

/// Widgets a finger can tap.
const TARGETS: [Role; 7] = [
    Role::Button,
    Role::Switch,
    Role::Slider,
    Role::CheckBox,
    Role::RadioButton,
    Role::ComboBox,
    Role::TextInput,
];

/// A kiosk window of the given size (support's `start` is 1280×800).
fn start_sized(data: &Path, camera: &Path, size: egui::Vec2) -> Harness<'static, KioskApp> {
    let config = Config {
        data_dir: data.to_owned(),
        camera: Some(camera.to_owned()),
        camera_fps: 40.0,
        secrets_dir: None,
        sync: kubevision_hmi::store_worker::SyncPolicy::default(),
        opcua_listen: None,
        choose_ask: || kubevision_hmi::recognition::challenge::Ask {
            turn: vision::liveness::Turn::Left,
            after: std::time::Duration::ZERO,
        },
    };
    let h = Harness::builder()
        .with_size(size)
        .renderer(CpuRenderer::default())
        .build_eframe(move |cc| KioskApp::new(&cc.egui_ctx, config, false).unwrap());
    // The same clock and station name on every machine at every minute.
    status_bar::fix_clock_and_station(&h.ctx, "07:30", "line-3-kiosk");
    h
}

/// One window size: its snapshot folder ("" for the README's 1280×800).
struct Size {
    size: egui::Vec2,
    folder: &'static str,
}

impl Size {
    fn name(&self, name: &str) -> String {
        if self.folder.is_empty() {
            name.to_owned()
        } else {
            format!("{}/{name}", self.folder)
        }
    }

    fn start(&self, data: &Path, camera: &Path) -> Harness<'static, KioskApp> {
        start_sized(data, camera, self.size)
    }

    /// Checks the layout of what is on screen, then snapshots it.
    fn shot(&self, h: &mut Harness<'_, KioskApp>, name: &str, key_actions: &[&str]) {
        check_layout(h, &self.name(name), self.size, key_actions);
        h.snapshot(self.name(name));
    }
}

fn describe(node: &egui_kittest::Node<'_>) -> String {
    let n = node.accesskit_node();
    // A label's text is its value.
    let text = n.label().or_else(|| n.value()).unwrap_or_default();
    format!("{:?} {text:?}", n.role())
}

/// The layout rules of a touch kiosk, checked on the accessibility tree.
fn check_layout(h: &Harness<'_, KioskApp>, what: &str, size: egui::Vec2, key_actions: &[&str]) {
    let screen = Rect::from_min_size(egui::Pos2::ZERO, size);
    let targets: Vec<_> = h
        .query_all_by(|n| TARGETS.contains(&n.role()))
        .map(|n| (describe(&n), n.rect()))
        .collect();
    assert!(!targets.is_empty(), "{what}: no touch targets found");
    let mut problems = Vec::new();
    for (name, rect) in &targets {
        if rect.width() < MIN_TARGET - 0.5 || rect.height() < MIN_TARGET - 0.5 {
            problems.push(format!("{name} is {rect:?}, smaller than {MIN_TARGET} px"));
        }
    }
    // Nothing scrolls sideways: text or targets past an edge are cut off.
    let texts: Vec<_> = h
        .query_all_by(|n| n.role() == Role::Label)
        .map(|n| (describe(&n), n.rect()))
        .collect();
    let all: Vec<_> = targets.iter().chain(&texts).collect();
    for (name, rect) in &all {
        if rect.min.x < screen.min.x - 0.5 || rect.max.x > screen.max.x + 0.5 {
            problems.push(format!("{name} at {rect:?} is cut off at the side"));
        }
    }
    // No text or target drawn over another.
    for (i, (a, ra)) in all.iter().enumerate() {
        for (b, rb) in &all[i + 1..] {
            let overlap = ra.intersect(*rb);
            if !overlap.is_positive() || overlap.area() <= 1.0 {
                continue;
            }
            problems.push(format!("{a} at {ra:?} overlaps {b} at {rb:?}"));
        }
    }
    // Below the bottom edge only inside a scroll area, whose bar shows it.
    let scrolls = h.query_all_by_role(Role::ScrollBar).count() > 0;
    for (name, rect) in &targets {
        if rect.max.y > screen.max.y + 0.5 && !scrolls {
            problems.push(format!(
                "{name} at {rect:?} is below the screen, with no scroll bar"
            ));
        }
    }
    for label in key_actions {
        let rects: Vec<Rect> = h.query_all_by_label(label).map(|n| n.rect()).collect();
        if rects.is_empty() {
            problems.push(format!("key action {label:?} not found"));
        }
        for rect in rects.iter().filter(|r| !screen.contains_rect(**r)) {
            problems.push(format!(
                "key action {label:?} at {rect:?} is not fully on screen"
            ));
        }
    }
    if std::env::var_os("LAYOUT_WARN").is_some() && !problems.is_empty() {
        eprintln!("LAYOUT {what}:\n  {}", problems.join("\n  "));
        return;
    }
    assert!(
        problems.is_empty(),
        "{what} at {}x{}:\n  {}",
        size.x,
        size.y,
        problems.join("\n  ")
    );
}

fn every_screen(size: Size) {
    let root = tempfile::tempdir().unwrap();
    let data = data_dir(&root);
    // One result set for all the kiosk restarts, checked at the end.
    let mut results = SnapshotResults::new();
    // A stranger's photo: the idle screen recognises nobody.
    let stranger = camera(&root, "stranger", &[(1, 1)]);

    let mut h = size.start(&data, &stranger);
    // The camera running: the status bar says so rather than "starting".
    wait(&mut h, "the setup screen", |a| {
        a.screen().name() == "setup"
            && matches!(a.kiosk().camera_status(), CameraStatus::Running { .. })
    });
    h.step();
    size.shot(
        &mut h,
        "01_setup_first_administrator",
        &["Start capture", "OK"],
    );
    results.extend_harness(&mut h);
    drop(h);

    seed_admin(&data);

    let mut h = size.start(&data, &stranger);
    wait(&mut h, "a burst that finds nobody", |a| {
        a.kiosk().not_recognised_at.is_some()
    });
    size.shot(
        &mut h,
        "02_sign_in_idle",
        &["Sign in with personnel number"],
    );
    tap(&mut h, "Sign in with personnel number");
    keys(&mut h, "a1");
    size.shot(
        &mut h,
        "03_sign_in_personnel_number",
        &["Sign in", "Cancel", "OK"],
    );
    tap(&mut h, "Deutsch");
    wait(&mut h, "German", |a| {
        a.kiosk().lang() == kubevision_hmi::i18n::Language::De
    });
    h.step();
    size.shot(
        &mut h,
        "04_sign_in_personnel_number_de",
        &["Anmelden", "Abbrechen", "OK", "Umschalt", "ü", "ä"],
    );
    tap(&mut h, "English");
    results.extend_harness(&mut h);
    drop(h);

    seed_worker(&data);
    let mut h = size.start(&data, &camera(&root, "worker", &photos(WORKER, 6..=10)));
    wait(&mut h, "the PIN pad", awaiting_pin);
    keys(&mut h, "13");
    size.shot(&mut h, "05_sign_in_pin", &["0", "OK", "Del", "Cancel"]);
    results.extend_harness(&mut h);
    drop(h);

    let mut h = size.start(&data, &camera(&root, "admin", &photos(ADMIN, 6..=10)));
    // Face-first is not allowed for administrators: the notice says so.
    wait(&mut h, "the role notice", |a| {
        a.kiosk().auth.notice(now_millis()) == Some(Notice::FaceFirstNotAllowed)
    });
    enter_password(&mut h, "a1", "secret-pass");
    wait(&mut h, "the sign-in", signed_in);
    h.step();
    size.shot(
        &mut h,
        "06_signed_in_administrator",
        &["Operators", "Cluster", "Sign out"],
    );
    for (button, screen, name, key_actions) in [
        (
            "Operators",
            "operators",
            "07_admin_operators",
            &["Back", "New operator"][..],
        ),
        (
            "Settings",
            "settings",
            "08_admin_settings",
            &["Back", "Save"],
        ),
        (
            "Cluster",
            "cluster",
            "10_admin_cluster",
            &["Back", "Connect"],
        ),
        (
            "Line (OPC UA)",
            "line",
            "12_admin_line",
            &["Back", "Save", "Set account"],
        ),
        (
            "New operator",
            "enroll",
            "09_enroll_new_operator",
            &["Start capture", "Cancel", "OK"],
        ),
        // Its rows carry the time of each entry: checked, not snapshotted.
        ("Audit log", "audit", "", &["Back", "Export CSV"]),
    ] {
        tap(&mut h, button);
        // The settings list the USB cameras from a worker, the audit log comes
        // from the store: wait for their answers.
        wait(&mut h, screen, |a| match a.screen() {
            Screen::Settings(s) => s.devices_listed() && s.models_checked(),
            Screen::Audit(s) => s.loaded(),
            Screen::Line(s) => s.listed(),
            other => other.name() == screen,
        });
        // Lay out once more with what arrived (a grid measures its columns then).
        h.step();
        h.step();
        if name.is_empty() {
            check_layout(&h, &size.name(screen), size.size, key_actions);
        } else {
            size.shot(&mut h, name, key_actions);
        }
        if screen == "operators" {
            // The delete confirmation takes the place of the row's buttons.
            let delete = h.get_all_by_label("Delete").nth(1).unwrap();
            delete.click();
            h.step();
            h.step();
            let what = size.name("07_admin_operators_confirm_delete");
            check_layout(&h, &what, size.size, &["Cancel", "Delete"]);
            tap(&mut h, "Cancel");
        }
        let back = if screen == "enroll" { "Cancel" } else { "Back" };
        tap(&mut h, back);
        if screen == "enroll" {
            tap(&mut h, "Back");
        }
        wait(&mut h, "home", |a| a.screen().name() == "sign_in");
    }
    // The high-contrast theme, switched on in the settings and saved.
    tap(&mut h, "Settings");
    wait(&mut h, "the settings", |a| a.screen().name() == "settings");
    tap(&mut h, "High contrast");
    tap(&mut h, "Save");
    wait(&mut h, "the saved setting", |a| {
        a.kiosk().settings.high_contrast
    });
    tap(&mut h, "Back");
    wait(&mut h, "home", |a| a.screen().name() == "sign_in");
    h.step();
    size.shot(
        &mut h,
        "11_signed_in_high_contrast",
        &["Operators", "Cluster", "Sign out"],
    );
    results.extend_harness(&mut h);
    drop(h);
    results.unwrap();
}

/// The size the README shows.
#[test]
fn every_screen_1280x800() {
    every_screen(Size {
        size: egui::vec2(1280.0, 800.0),
        folder: "",
    });
}

/// The smallest supported kiosk screen.
#[test]
fn every_screen_1024x768() {
    every_screen(Size {
        size: egui::vec2(1024.0, 768.0),
        folder: "1024x768",
    });
}

/// The largest supported kiosk screen.
#[test]
fn every_screen_1920x1080() {
    every_screen(Size {
        size: egui::vec2(1920.0, 1080.0),
        folder: "1920x1080",
    });
}

/// The face guide's three states, each with a hint chip and the caption
/// strip, drawn over flat grey: what the camera preview carries.
#[test]
fn face_guide_states() {
    use kubevision_hmi::widgets::{face_guide, icons};
    use vision::liveness::Turn;
    let states = [
        (
            face_guide::GuideState::NoFace,
            None,
            Some("Keep your face inside the oval"),
            None,
        ),
        (
            face_guide::GuideState::Adjust,
            Some((icons::ICON_ZOOM_IN, "Come closer")),
            None,
            None,
        ),
        (
            face_guide::GuideState::Good,
            None,
            Some("Face not recognised"),
            None,
        ),
        (
            face_guide::GuideState::Good,
            Some((icons::ICON_SYNC_PROBLEM, "Other way, please")),
            None,
            Some((Turn::Left, "Turn your head to your left")),
        ),
    ];
    let mut first = true;
    let mut h = Harness::builder()
        .with_size(egui::vec2(1680.0, 340.0))
        .renderer(CpuRenderer::default())
        .build_ui(move |ui| {
            // The icon font arrives with the next pass: paint from then on.
            if std::mem::take(&mut first) {
                kubevision_hmi::theme::apply(ui.ctx(), false);
                ui.ctx().request_repaint();
                return;
            }
            for (i, (state, hint, caption, challenge)) in states.into_iter().enumerate() {
                let image = Rect::from_min_size(
                    egui::pos2(10.0 + i as f32 * 420.0, 10.0),
                    egui::vec2(400.0, 320.0),
                );
                ui.painter()
                    .rect_filled(image, 16.0, egui::Color32::from_gray(0x80));
                let face = (state == face_guide::GuideState::Good).then(|| {
                    Rect::from_center_size(
                        image.center() - egui::vec2(0.0, 30.0),
                        egui::vec2(150.0, 170.0),
                    )
                });
                face_guide::paint(
                    ui,
                    image,
                    &face_guide::Overlay {
                        state,
                        face,
                        hint,
                        caption,
                        challenge,
                    },
                );
            }
        });
    h.run();
    h.snapshot("face_guide");
}
