//! The encoder's API in a build without the `dlib` feature (or on a
//! platform without a dlib build): [`Embedder::load`] says so, and nothing
//! else can be reached, since no `Embedder` can exist.

use std::path::Path;

use image::GrayImage;

use super::landmarks::Landmarks;
use super::template::Embedding;
use crate::detect::FaceBox;
use crate::Error;

pub use super::alignment::{cascade_to_dlib, Alignment, CASCADE_DX, CASCADE_DY, CASCADE_SCALE};

enum Never {}

/// A frame for dlib; without dlib it only keeps its size.
pub struct DlibFrame {
    _size: (u32, u32),
}

impl DlibFrame {
    pub fn new(frame: &GrayImage) -> Self {
        Self {
            _size: frame.dimensions(),
        }
    }
}

/// A located face; never made without dlib.
pub struct Located {
    pub landmarks: Landmarks,
    never: Never,
}

/// The dlib recogniser's models; never loaded without dlib.
pub struct Embedder {
    never: Never,
}

impl Embedder {
    pub fn load() -> Result<Self, Error> {
        Err(Error::DlibUnavailable)
    }

    pub fn load_from(_encoder: &Path, _landmarks: &Path) -> Result<Self, Error> {
        Err(Error::DlibUnavailable)
    }

    pub fn detect(&self, _frame: &DlibFrame) -> Vec<FaceBox> {
        match self.never {}
    }

    pub fn landmarks(&self, _frame: &DlibFrame, _face: FaceBox) -> Located {
        match self.never {}
    }

    pub fn face_box(&self, _: &DlibFrame, _: Alignment, _: Option<FaceBox>) -> Option<FaceBox> {
        match self.never {}
    }

    pub fn embed(&self, _frame: &DlibFrame, face: &Located) -> Result<Embedding, Error> {
        match face.never {}
    }
}
