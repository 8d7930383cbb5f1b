//! dlib's face models in our own code: the file format, the 5-point shape
//! predictor, the face chip and the ResNet. dlib itself (the C++ library)
//! is only the oracle the parity tests (`vision/tests/dlib_parity.rs`) and
//! `kubevision bench` compare these against.
//!
//! - [`format`]: dlib's serialization, every field checked;
//! - [`geometry`]: the similarity fit and rounding dlib's geometry uses;
//! - [`shape_predictor`]: the regression-tree landmark model;
//! - [`chip`]: the 150 × 150 face chip cut by the landmarks;
//! - [`network`]: the ResNet that maps a chip to 128 numbers.

pub mod chip;
pub mod format;
pub mod geometry;
pub mod network;
pub mod shape_predictor;

pub use format::FormatError;
