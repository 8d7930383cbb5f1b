//! dlib's 5-point landmarks and ResNet embedding, behind one type, in our
//! own code ([`super::dlib`]); dlib's HOG face detector where the C++
//! oracle is built in (feature `dlib-oracle`, Linux).
//!
//! dlib's network expects a face chip cut and rotated by the landmarks the
//! way it was trained (`get_face_chip_details(.., 150, 0.25)`), and the
//! landmark model expects a face box of the shape dlib's own HOG detector
//! draws ([`super::alignment`]).

use std::path::Path;

use image::GrayImage;

use super::dlib::chip;
use super::dlib::network::Network;
use super::dlib::shape_predictor::{ShapePredictor, PARTS};
use super::landmarks::{Landmarks, Point};
use super::models::{self, ModelFile};
use super::template::Embedding;
use crate::detect::FaceBox;
use crate::Error;

pub use super::alignment::{cascade_to_dlib, Alignment, CASCADE_DX, CASCADE_DY, CASCADE_SCALE};

/// A grey frame as the landmarks and the embedding read it. dlib's
/// encoder is fed RGB with red = green = blue = grey; the models here read
/// the grey values directly.
pub struct DlibFrame {
    grey: GrayImage,
}

impl DlibFrame {
    pub fn new(frame: &GrayImage) -> Self {
        Self {
            grey: frame.clone(),
        }
    }
}

/// A face's landmarks: as whole pixels (what the face chip is cut by, as
/// dlib's `full_object_detection` holds them) and as plain points.
pub struct Located {
    pub landmarks: Landmarks,
    parts: [[i64; 2]; PARTS],
}

/// The `dlib` recogniser's models.
pub struct Embedder {
    predictor: ShapePredictor,
    network: Network,
    #[cfg(all(feature = "dlib-oracle", target_os = "linux"))]
    hog: dlib_face_recognition::FaceDetector,
}

impl Embedder {
    /// Loads both model files from [`models::search_path`], each checked
    /// against its pinned SHA-256 first (by [`Embedder::load_from`], once).
    pub fn load() -> Result<Self, Error> {
        Self::load_from(
            &models::find(ModelFile::Encoder)?,
            &models::find(ModelFile::Landmarks)?,
        )
    }

    /// Loads the given files after checking their hashes.
    pub fn load_from(encoder: &Path, landmarks: &Path) -> Result<Self, Error> {
        let bad = |path: &Path| {
            let path = path.to_owned();
            move |source| Error::DlibModel { path, source }
        };
        let network =
            Network::read(&models::verify(ModelFile::Encoder, encoder)?).map_err(bad(encoder))?;
        let predictor = ShapePredictor::read(&models::verify(ModelFile::Landmarks, landmarks)?)
            .map_err(bad(landmarks))?;
        Ok(Self {
            predictor,
            network,
            #[cfg(all(feature = "dlib-oracle", target_os = "linux"))]
            hog: dlib_face_recognition::FaceDetector::new(),
        })
    }

    /// Faces dlib's HOG detector finds, largest first.
    #[cfg(all(feature = "dlib-oracle", target_os = "linux"))]
    pub fn detect(&self, frame: &DlibFrame) -> Vec<FaceBox> {
        oracle::detect(&self.hog, &frame.grey)
    }

    /// The five landmarks of the face in `face` (a box of dlib's shape).
    pub fn landmarks(&self, frame: &DlibFrame, face: FaceBox) -> Located {
        let parts = self.predictor.predict(&frame.grey, face);
        let points = parts.map(|[x, y]| Point {
            x: x as f64,
            y: y as f64,
        });
        Located {
            landmarks: Landmarks { face, points },
            parts,
        }
    }

    /// The face's box for the landmark model under `alignment`, given the
    /// cascade's box when there is one; `None` when there is none, or
    /// when dlib's detector finds no face.
    #[cfg_attr(
        not(all(feature = "dlib-oracle", target_os = "linux")),
        allow(unused_variables)
    )]
    pub fn face_box(
        &self,
        frame: &DlibFrame,
        alignment: Alignment,
        cascade: Option<FaceBox>,
    ) -> Option<FaceBox> {
        match alignment {
            Alignment::Cascade => cascade.map(cascade_to_dlib),
            #[cfg(all(feature = "dlib-oracle", target_os = "linux"))]
            Alignment::Hog => self.detect(frame).into_iter().next(),
        }
    }

    /// The face chip dlib's network reads for a located face, 150 × 150.
    fn chip(&self, frame: &DlibFrame, face: &Located) -> GrayImage {
        chip::extract(&frame.grey, &chip::face_chip_details(&face.parts))
    }

    /// The embedding of a located face.
    pub fn embed(&self, frame: &DlibFrame, face: &Located) -> Result<Embedding, Error> {
        let chip = self.chip(frame, face);
        Embedding::new(&self.network.embed(chip.as_raw()))
    }
}

#[cfg(all(feature = "dlib-oracle", target_os = "linux"))]
mod oracle {
    use dlib_face_recognition::{FaceDetector, FaceDetectorTrait, ImageMatrix, Rectangle};
    use image::GrayImage;

    use crate::detect::FaceBox;

    pub fn detect(hog: &FaceDetector, grey: &GrayImage) -> Vec<FaceBox> {
        let rgb: Vec<u8> = grey.as_raw().iter().flat_map(|&v| [v, v, v]).collect();
        // SAFETY: `rgb` holds exactly width × height RGB triples and
        // outlives the call, which copies them.
        let matrix = unsafe {
            ImageMatrix::new(grey.width() as usize, grey.height() as usize, rgb.as_ptr())
        };
        let mut boxes: Vec<FaceBox> = hog
            .face_locations(&matrix)
            .iter()
            .filter_map(|r| clip(r, grey.width(), grey.height()))
            .collect();
        boxes.sort_by_key(|b| std::cmp::Reverse(b.area()));
        boxes
    }

    /// dlib's rectangle as a box inside the frame, or `None` if none of it is.
    fn clip(r: &Rectangle, width: u32, height: u32) -> Option<FaceBox> {
        let left = r.left.clamp(0, i64::from(width));
        let top = r.top.clamp(0, i64::from(height));
        let right = (r.right + 1).clamp(0, i64::from(width));
        let bottom = (r.bottom + 1).clamp(0, i64::from(height));
        (right > left && bottom > top).then(|| FaceBox {
            x: left as u32,
            y: top as u32,
            width: (right - left) as u32,
            height: (bottom - top) as u32,
        })
    }
}
