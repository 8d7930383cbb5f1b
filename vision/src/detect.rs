//! Viola–Jones face detection with OpenCV's `CascadeClassifier`, and the
//! normalised crop handed to the recogniser.

use std::path::{Path, PathBuf};

use image::GrayImage;
use opencv::core::{Mat, Rect, Size, Vector};
use opencv::objdetect::CascadeClassifier;
use opencv::prelude::*;

use crate::{Error, FACE_HEIGHT, FACE_WIDTH};

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

/// OpenCV's Viola–Jones detector. Not `Sync`: give each thread its own.
pub struct FaceDetector {
    cascade: CascadeClassifier,
    config: DetectorConfig,
}

impl FaceDetector {
    pub fn new(cascade_file: &Path, config: DetectorConfig) -> Result<Self, Error> {
        let bad = |reason: String| Error::BadCascade {
            path: cascade_file.to_owned(),
            reason,
        };
        if !cascade_file.is_file() {
            return Err(bad("no such file".into()));
        }
        // A malformed file either throws in OpenCV's XML parser or loads empty.
        let cascade = CascadeClassifier::new(cascade_file).map_err(|e| bad(e.message))?;
        if cascade.empty()? {
            return Err(bad("OpenCV could not load it as a cascade".into()));
        }
        Ok(Self { cascade, config })
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
        let src = Mat::new_rows_cols_with_data(h as i32, w as i32, frame.as_raw())?;
        let scale = (self.config.max_detect_width as f64 / w as f64).min(1.0);
        let small = if scale < 1.0 {
            let mut small = Mat::default();
            let size = Size::new(
                (w as f64 * scale).round() as i32,
                (h as f64 * scale).round() as i32,
            );
            opencv::imgproc::resize(
                &src,
                &mut small,
                size,
                0.0,
                0.0,
                opencv::imgproc::INTER_AREA,
            )?;
            small
        } else {
            src.try_clone()?
        };
        let mut equalized = Mat::default();
        opencv::imgproc::equalize_hist(&small, &mut equalized)?;
        let min_side = (w.min(h) as f64 * scale * self.config.min_face_fraction).max(24.0) as i32;
        let mut found = Vector::<Rect>::new();
        self.cascade.detect_multi_scale(
            &equalized,
            &mut found,
            self.config.scale_factor,
            self.config.min_neighbors,
            0,
            Size::new(min_side, min_side),
            Size::default(),
        )?;
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

/// Cuts the face out with a margin, in the ORL photos' proportions, and
/// scales it to [`FACE_WIDTH`] × [`FACE_HEIGHT`].
///
/// The cascade's box runs from the brows to the chin; the crop widens it by a
/// fifth and extends it to the portrait shape, like the photos the
/// recogniser's defaults were tuned on. Parts outside the frame are clamped.
pub fn normalize(frame: &GrayImage, face: &FaceBox) -> Result<GrayImage, Error> {
    let (fw, fh) = (frame.width() as f64, frame.height() as f64);
    let crop_w = (face.width as f64 * 1.2).min(fw);
    let crop_h = (crop_w * FACE_HEIGHT as f64 / FACE_WIDTH as f64).min(fh);
    let cx = face.x as f64 + face.width as f64 / 2.0;
    let cy = face.y as f64 + face.height as f64 / 2.0;
    let x0 = (cx - crop_w / 2.0).clamp(0.0, fw - crop_w);
    let y0 = (cy - crop_h / 2.0).clamp(0.0, fh - crop_h);
    let roi = Rect::new(
        x0 as i32,
        y0 as i32,
        (crop_w as i32).max(1),
        (crop_h as i32).max(1),
    );
    let src =
        Mat::new_rows_cols_with_data(frame.height() as i32, frame.width() as i32, frame.as_raw())?;
    let region = Mat::roi(&src, roi)?;
    let mut out = Mat::default();
    let size = Size::new(FACE_WIDTH as i32, FACE_HEIGHT as i32);
    opencv::imgproc::resize(
        &region,
        &mut out,
        size,
        0.0,
        0.0,
        opencv::imgproc::INTER_AREA,
    )?;
    let data = out.data_bytes()?.to_vec();
    Ok(
        GrayImage::from_raw(FACE_WIDTH, FACE_HEIGHT, data)
            .expect("resize gives the requested size"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cascade_opencv_cannot_load_is_named_bad_cascade() {
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
