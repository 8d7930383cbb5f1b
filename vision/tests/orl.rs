//! The ORL faces from the shared datasets folder, for tests.
#![allow(dead_code)] // each test binary uses part of this module

use std::path::PathBuf;

use kubevision_vision::{imageio, GrayImage};

/// `../shared/datasets/orl` from the repository root, or `KUBEVISION_ORL`.
pub fn root() -> PathBuf {
    let dir = std::env::var_os("KUBEVISION_ORL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/datasets/orl")
        });
    assert!(
        dir.join("s1/1.pgm").is_file(),
        "ORL faces not found at {} (set KUBEVISION_ORL)",
        dir.display()
    );
    dir
}

/// Photo `photo` (1–10) of person `person` (1–40).
pub fn photo(person: u32, photo: u32) -> GrayImage {
    imageio::load_gray(&root().join(format!("s{person}/{photo}.pgm"))).unwrap()
}

/// Photos with their person's label.
pub type Labelled = Vec<(i32, GrayImage)>;

/// The standard split: photos 1–5 of each person train, 6–10 probe.
pub fn split() -> (Labelled, Labelled) {
    let mut train = Vec::new();
    let mut probe = Vec::new();
    for person in 1..=40 {
        for p in 1..=10 {
            let item = (person as i32, photo(person, p));
            if p <= 5 {
                train.push(item)
            } else {
                probe.push(item)
            }
        }
    }
    (train, probe)
}

/// Photo `photo` of `person` as a kiosk camera would see it: a face of
/// sign-in size in a 640 × 480 frame (`embedding::as_camera_frame`).
pub fn sign_in_frame(photo: &GrayImage) -> GrayImage {
    kubevision_vision::embedding::as_camera_frame(photo)
}
