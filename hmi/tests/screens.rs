//! Snapshot images of every screen, rendered by the software renderer and
//! compared with the committed PNGs under tests/snapshots/ (shown in the
//! README). `UPDATE_SNAPSHOTS=1 cargo test -p kubevision-hmi --test screens`
//! rewrites them after an intended change.
//!
//! The camera shows fixed photos, so the previews are the same every run.

mod support;

use kubevision_hmi::auth::Notice;
use kubevision_hmi::screens::Screen;
use kubevision_hmi::store::now_millis;
use support::*;

#[test]
fn every_screen() {
    let root = tempfile::tempdir().unwrap();
    let data = data_dir(&root);
    // One result set for all the kiosk restarts, checked at the end.
    let mut results = egui_kittest::SnapshotResults::new();
    // A stranger's photo: the idle screen recognises nobody.
    let stranger = camera(&root, "stranger", &[(1, 1)]);

    let mut h = start(&data, &stranger);
    wait(&mut h, "the setup screen", |a| a.screen().name() == "setup");
    h.snapshot("01_setup_first_administrator");
    results.extend_harness(&mut h);
    drop(h);

    seed_admin(&data);

    let mut h = start(&data, &stranger);
    wait(&mut h, "a burst that finds nobody", |a| {
        a.kiosk().not_recognised_at.is_some()
    });
    h.snapshot("02_sign_in_idle");
    tap(&mut h, "Sign in with personnel number");
    keys(&mut h, "a1");
    h.snapshot("03_sign_in_personnel_number");
    tap(&mut h, "Deutsch");
    wait(&mut h, "German", |a| {
        a.kiosk().lang() == kubevision_hmi::i18n::Language::De
    });
    h.step();
    h.snapshot("04_sign_in_personnel_number_de");
    tap(&mut h, "English");
    results.extend_harness(&mut h);
    drop(h);

    seed_worker(&data);
    let mut h = start(&data, &camera(&root, "worker", &photos(WORKER, 6..=10)));
    wait(&mut h, "the PIN pad", awaiting_pin);
    keys(&mut h, "13");
    h.snapshot("05_sign_in_pin");
    results.extend_harness(&mut h);
    drop(h);

    let mut h = start(&data, &camera(&root, "admin", &photos(ADMIN, 6..=10)));
    // Face-first is not allowed for administrators: the notice says so.
    wait(&mut h, "the role notice", |a| {
        a.kiosk().auth.notice(now_millis()) == Some(Notice::FaceFirstNotAllowed)
    });
    enter_password(&mut h, "a1", "secret-pass");
    wait(&mut h, "the sign-in", signed_in);
    h.step();
    h.snapshot("06_signed_in_administrator");
    for (button, screen, name) in [
        ("Operators", "operators", "07_admin_operators"),
        ("Settings", "settings", "08_admin_settings"),
        ("Cluster", "cluster", "10_admin_cluster"),
        ("New operator", "enroll", "09_enroll_new_operator"),
    ] {
        tap(&mut h, button);
        // The settings list the USB cameras from a worker: wait for its answer.
        wait(&mut h, screen, |a| match a.screen() {
            Screen::Settings(s) => s.devices_listed(),
            other => other.name() == screen,
        });
        h.step();
        h.snapshot(name);
        let back = if screen == "enroll" { "Cancel" } else { "Back" };
        tap(&mut h, back);
        if screen == "enroll" {
            tap(&mut h, "Back");
        }
        wait(&mut h, "home", |a| a.screen().name() == "sign_in");
    }
    results.extend_harness(&mut h);
    drop(h);
    results.unwrap();
}
