//! Viola–Jones face detection, OpenCV's `CascadeClassifier::detectMultiScale`
//! reproduced in Rust box for box, and the normalised crop handed to the
//! recogniser.
//!
//! - [`cascade`] reads and checks OpenCV's cascade file;
//! - [`resize`] is OpenCV's `resize` (`INTER_AREA`, `INTER_LINEAR_EXACT`)
//!   and `equalizeHist`, bit for bit;
//! - `integral`, `evaluate` and `multiscale` run the cascade over the scale
//!   pyramid; `group` is `groupRectangles`.

mod cascade;
mod evaluate;
mod group;
mod integral;
mod multiscale;
mod resize;

use std::path::{Path, PathBuf};

use image::GrayImage;

use crate::{Error, FACE_HEIGHT, FACE_WIDTH};

use cascade::Cascade;
pub use cascade::CascadeProblem;
pub use resize::{equalize_hist, resize_area, resize_linear_exact};

/// The cascade KubeVision uses, as OpenCV ships it.
pub const CASCADE_FILE: &str = "haarcascade_frontalface_default.xml";

/// Where [`FaceDetector::from_default_locations`] looks for [`CASCADE_FILE`],
/// after the folder named by `KUBEVISION_CASCADE_DIR`: next to the program
/// (the Windows installer's layout), the repository's assets (development),
/// the Debian package's data folder, and the system's OpenCV data.
fn search_path() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::var_os("KUBEVISION_CASCADE_DIR") {
        dirs.push(PathBuf::from(dir));
    }
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_owned))
    {
        dirs.push(exe_dir.join("cascades"));
    }
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/cascades"));
    dirs.push("/usr/share/kubevision/cascades".into());
    dirs.push("/usr/share/opencv4/haarcascades".into());
    dirs.push("/usr/share/opencv/haarcascades".into());
    dirs
}

/// Finds the cascade file, or says where it looked.
pub fn find_cascade() -> Result<PathBuf, Error> {
    let dirs = search_path();
    dirs.iter()
        .map(|d| d.join(CASCADE_FILE))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::CascadeNotFound {
            searched: dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// A face's bounding box in frame pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaceBox {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl FaceBox {
    pub fn area(&self) -> u64 {
        self.width as u64 * self.height as u64
    }
}

/// Detector tuning. Detection runs on a copy of the frame scaled down to at
/// most `max_detect_width` pixels across: faces at sign-in distance stay far
/// above the cascade's 24-pixel window, and a 640-pixel frame costs a quarter.
#[derive(Debug, Clone, Copy)]
pub struct DetectorConfig {
    pub scale_factor: f64,
    pub min_neighbors: i32,
    /// Smallest face searched for, as a fraction of the frame's shorter side.
    pub min_face_fraction: f64,
    pub max_detect_width: u32,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            scale_factor: 1.1,
            min_neighbors: 5,
            min_face_fraction: 0.15,
            max_detect_width: 320,
        }
    }
}

/// The Viola–Jones detector over [`CASCADE_FILE`]'s cascade.
pub struct FaceDetector {
    cascade: Cascade,
    config: DetectorConfig,
}

impl FaceDetector {
    pub fn new(cascade_file: &Path, config: DetectorConfig) -> Result<Self, Error> {
        Ok(Self {
            cascade: Cascade::load(cascade_file)?,
            config,
        })
    }

    /// The detector with [`find_cascade`]'s file and default tuning.
    pub fn from_default_locations() -> Result<Self, Error> {
        Self::new(&find_cascade()?, DetectorConfig::default())
    }

    /// All faces in the frame, largest first.
    pub fn detect(&mut self, frame: &GrayImage) -> Result<Vec<FaceBox>, Error> {
        let (w, h) = frame.dimensions();
        if w == 0 || h == 0 {
            return Err(Error::EmptyImage {
                what: "the frame".into(),
            });
        }
        let scale = (self.config.max_detect_width as f64 / w as f64).min(1.0);
        let small = if scale < 1.0 {
            let sw = ((w as f64 * scale).round() as u32).max(1);
            let sh = ((h as f64 * scale).round() as u32).max(1);
            resize_area(frame, sw, sh)
        } else {
            frame.clone()
        };
        let equalized = equalize_hist(&small);
        let min_side = (w.min(h) as f64 * scale * self.config.min_face_fraction).max(24.0) as u32;
        let found = multiscale::detect_multi_scale(
            &self.cascade,
            &equalized,
            self.config.scale_factor,
            self.config.min_neighbors,
            (min_side, min_side),
        );
        let mut faces: Vec<FaceBox> = found
            .iter()
            .map(|r| {
                let x = ((r.x as f64 / scale).round() as u32).min(w - 1);
                let y = ((r.y as f64 / scale).round() as u32).min(h - 1);
                FaceBox {
                    x,
                    y,
                    width: ((r.width as f64 / scale).round() as u32).clamp(1, w - x),
                    height: ((r.height as f64 / scale).round() as u32).clamp(1, h - y),
                }
            })
            .collect();
        faces.sort_by_key(|f| std::cmp::Reverse(f.area()));
        Ok(faces)
    }
}

/// The region [`normalize`] cuts out: the face widened by a fifth and
/// extended to the portrait shape, clamped to the frame.
pub fn crop_region(frame: &GrayImage, face: &FaceBox) -> FaceBox {
    let (fw, fh) = (frame.width() as f64, frame.height() as f64);
    let crop_w = (face.width as f64 * 1.2).min(fw);
    let crop_h = (crop_w * FACE_HEIGHT as f64 / FACE_WIDTH as f64).min(fh);
    let cx = face.x as f64 + face.width as f64 / 2.0;
    let cy = face.y as f64 + face.height as f64 / 2.0;
    let x0 = (cx - crop_w / 2.0).clamp(0.0, fw - crop_w);
    let y0 = (cy - crop_h / 2.0).clamp(0.0, fh - crop_h);
    FaceBox {
        x: x0 as u32,
        y: y0 as u32,
        width: (crop_w as u32).max(1),
        height: (crop_h as u32).max(1),
    }
}

/// Cuts the face out with a margin, in the ORL photos' proportions, and
/// scales it to [`FACE_WIDTH`] × [`FACE_HEIGHT`] (OpenCV's `INTER_AREA`).
///
/// The cascade's box runs from the brows to the chin; the crop widens it by a
/// fifth and extends it to the portrait shape, like the photos the
/// recogniser's defaults were tuned on. Parts outside the frame are clamped.
pub fn normalize(frame: &GrayImage, face: &FaceBox) -> Result<GrayImage, Error> {
    if frame.width() == 0 || frame.height() == 0 {
        return Err(Error::EmptyImage {
            what: "the frame".into(),
        });
    }
    let r = crop_region(frame, face);
    let width = r.width.min(frame.width() - r.x);
    let height = r.height.min(frame.height() - r.y);
    let region = image::imageops::crop_imm(frame, r.x, r.y, width, height).to_image();
    Ok(resize_area(&region, FACE_WIDTH, FACE_HEIGHT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cascade_that_cannot_be_loaded_is_named_bad_cascade() {
        let dir = tempfile::tempdir().unwrap();
        let truncated = dir.path().join(CASCADE_FILE);
        std::fs::write(&truncated, "<opencv_storage>truncated").unwrap();
        for path in [truncated, dir.path().join("missing.xml")] {
            let err = FaceDetector::new(&path, DetectorConfig::default())
                .err()
                .expect("no detector");
            assert!(
                matches!(&err, Error::BadCascade { path: p, .. } if *p == path),
                "{err}"
            );
            assert!(
                err.to_string().contains(&path.display().to_string()),
                "{err}"
            );
        }
    }
}
