//! Synthetic faces and embeddings for tests: deterministic, distinct by
//! seed, and of the shapes the recognisers take (a [`FACE_WIDTH`] ×
//! [`FACE_HEIGHT`] crop, a 128-value embedding). Not faces a person would
//! recognise; real photos are ORL's.

use image::GrayImage;

use crate::embedding::Embedding;
use crate::{FACE_HEIGHT, FACE_WIDTH};

/// A normalised crop of a texture that differs by `seed`.
pub fn face_crop(seed: u32) -> GrayImage {
    GrayImage::from_fn(FACE_WIDTH, FACE_HEIGHT, |x, y| {
        image::Luma([((x * (3 + seed) + y * 7 + seed * 31) % 251) as u8])
    })
}

/// An embedding that stands out in the dimensions `seed` names (modulo 8):
/// two of different seeds below 8 lie far apart.
pub fn embedding(seed: u32) -> Embedding {
    let values: Vec<f32> = (0..128u32)
        .map(|i| if i % 8 == seed { 0.3 } else { 0.01 })
        .collect();
    Embedding::new(&values).expect("finite values")
}
