//! dlib's face detector, 5-point landmarks and ResNet, behind one type.
//!
//! dlib's network expects a face chip cut and rotated by the landmarks the
//! way it was trained (`get_face_chip_details(.., 150, 0.25)`), and the
//! landmark model expects a face box of the shape dlib's own HOG detector
//! draws ([`super::alignment`]).

use std::path::Path;

use dlib_face_recognition::{
    FaceDetector as HogDetector, FaceDetectorTrait, FaceEncoderNetwork, FaceEncoderTrait,
    FaceLandmarks, ImageMatrix, LandmarkPredictor, LandmarkPredictorTrait, Rectangle,
};
use image::GrayImage;

use super::landmarks::{Landmarks, Point};
use super::models::{self, ModelFile};
use super::template::Embedding;
use crate::detect::FaceBox;
use crate::Error;

pub use super::alignment::{cascade_to_dlib, Alignment, CASCADE_DX, CASCADE_DY, CASCADE_SCALE};

/// A frame in dlib's pixel format, converted once for detection,
/// landmarks and the embedding.
pub struct DlibFrame {
    matrix: ImageMatrix,
    width: u32,
    height: u32,
}

impl DlibFrame {
    pub fn new(frame: &GrayImage) -> Self {
        let rgb: Vec<u8> = frame.as_raw().iter().flat_map(|&v| [v, v, v]).collect();
        // SAFETY: `rgb` holds exactly width × height RGB triples and
        // outlives the call, which copies them.
        let matrix = unsafe {
            ImageMatrix::new(
                frame.width() as usize,
                frame.height() as usize,
                rgb.as_ptr(),
            )
        };
        Self {
            matrix,
            width: frame.width(),
            height: frame.height(),
        }
    }
}

/// A face's landmarks as dlib holds them (what the encoder needs) and as
/// plain points.
pub struct Located {
    pub landmarks: Landmarks,
    detection: FaceLandmarks,
}

/// The `dlib` recogniser's three models.
pub struct Embedder {
    hog: HogDetector,
    predictor: LandmarkPredictor,
    network: FaceEncoderNetwork,
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
        models::verify(ModelFile::Encoder, encoder)?;
        models::verify(ModelFile::Landmarks, landmarks)?;
        let bad = |path: &Path, reason: String| Error::DlibModel {
            path: path.to_owned(),
            reason,
        };
        Ok(Self {
            hog: HogDetector::new(),
            predictor: LandmarkPredictor::open(landmarks).map_err(|r| bad(landmarks, r))?,
            network: FaceEncoderNetwork::open(encoder).map_err(|r| bad(encoder, r))?,
        })
    }

    /// Faces dlib's HOG detector finds, largest first.
    pub fn detect(&self, frame: &DlibFrame) -> Vec<FaceBox> {
        let mut boxes: Vec<FaceBox> = self
            .hog
            .face_locations(&frame.matrix)
            .iter()
            .filter_map(|r| clip(r, frame.width, frame.height))
            .collect();
        boxes.sort_by_key(|b| std::cmp::Reverse(b.area()));
        boxes
    }

    /// The five landmarks of the face in `face` (a box of dlib's shape).
    pub fn landmarks(&self, frame: &DlibFrame, face: FaceBox) -> Located {
        let rect = Rectangle {
            left: i64::from(face.x),
            top: i64::from(face.y),
            right: i64::from(face.x + face.width) - 1,
            bottom: i64::from(face.y + face.height) - 1,
        };
        let detection = self.predictor.face_landmarks(&frame.matrix, &rect);
        let mut points = [Point { x: 0.0, y: 0.0 }; 5];
        for (p, q) in points.iter_mut().zip(detection.iter()) {
            *p = Point {
                x: q.x() as f64,
                y: q.y() as f64,
            };
        }
        Located {
            landmarks: Landmarks { face, points },
            detection,
        }
    }

    /// The face's box for the landmark model under `alignment`, given the
    /// cascade's box when there is one; `None` when dlib's detector finds
    /// no face.
    pub fn face_box(
        &self,
        frame: &DlibFrame,
        alignment: Alignment,
        cascade: Option<FaceBox>,
    ) -> Option<FaceBox> {
        match (alignment, cascade) {
            (Alignment::Cascade, Some(b)) => Some(cascade_to_dlib(b)),
            _ => self.detect(frame).into_iter().next(),
        }
    }

    /// The embedding of a located face.
    pub fn embed(&self, frame: &DlibFrame, face: &Located) -> Result<Embedding, Error> {
        let encodings = self.network.get_face_encodings(
            &frame.matrix,
            std::slice::from_ref(&face.detection),
            0,
        );
        let values: Vec<f32> = encodings
            .first()
            .map(|e| e.as_ref().iter().map(|&v| v as f32).collect())
            .unwrap_or_default();
        Embedding::new(&values)
    }
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
