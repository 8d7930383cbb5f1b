//! One frame in, one usable face crop (or the reason there is none) out.

use image::GrayImage;

use crate::detect::{normalize, FaceBox, FaceDetector};
use crate::quality::{QualityGate, QualityIssue};
use crate::Error;

/// A face found in a frame, and its normalised crop for the recogniser.
#[derive(Debug, Clone)]
pub struct Face {
    pub face: FaceBox,
    pub crop: GrayImage,
}

/// Why a frame gave no face: the frame itself, or OpenCV failing.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("{0}")]
    Quality(#[from] QualityIssue),
    #[error(transparent)]
    Vision(#[from] Error),
}

/// Detection, the quality gate and normalisation, in that order.
pub struct FacePipeline {
    detector: FaceDetector,
    gate: QualityGate,
}

impl FacePipeline {
    pub fn new(detector: FaceDetector, gate: QualityGate) -> Self {
        Self { detector, gate }
    }

    pub fn gate(&self) -> &QualityGate {
        &self.gate
    }

    /// Finds the face to sign in with, or says why the frame is unusable.
    pub fn process(&mut self, frame: &GrayImage) -> Result<Face, FrameError> {
        let faces = self.detector.detect(frame)?;
        let face = self.gate.choose_face(frame, &faces)?;
        let crop = normalize(frame, &face)?;
        self.gate.check_crop(&crop)?;
        Ok(Face { face, crop })
    }
}
