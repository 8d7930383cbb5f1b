//! The ORL faces from the shared datasets folder, for tests.
#![allow(dead_code)] // each test binary uses part of this module

use std::path::PathBuf;

use image::imageops::{self, FilterType};
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

/// ORL photos are 92 × 112 crops; a kiosk camera sees a face of about 250
/// px in a 640 × 480 frame at sign-in distance. This puts the photo, scaled
/// 3×, at the centre of such a frame on a mid-grey background: the
/// stand-in for camera frames where a detector and dlib's landmarks run.
pub fn sign_in_frame(photo: &GrayImage) -> GrayImage {
    let big = imageops::resize(
        photo,
        photo.width() * 3,
        photo.height() * 3,
        FilterType::Triangle,
    );
    let mut frame = GrayImage::from_pixel(640, 480, image::Luma([128]));
    imageops::replace(
        &mut frame,
        &big,
        i64::from((640 - big.width()) / 2),
        i64::from((480 - big.height()) / 2),
    );
    frame
}
