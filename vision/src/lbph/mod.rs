//! Local Binary Pattern Histograms, with the semantics of OpenCV's
//! `cv::face::LBPHFaceRecognizer` and much faster.
//!
//! - [`params`]: radius, neighbours, grid and threshold, with OpenCV's defaults;
//! - [`pattern`]: OpenCV's extended (circular, bilinear) LBP operator;
//! - [`template`]: a face's spatial histogram in compact form (a byte a bin);
//! - [`distance`]: the chi-square distance and the cheap lower bound that
//!   lets the matcher skip most templates without changing any result;
//! - [`packed`]: how the gallery keeps a template (summary and nibbles);
//! - [`gallery`]: the enrolled templates and the parallel nearest-neighbour search;
//! - [`recognizer`]: the OpenCV-shaped face recogniser (train, update, predict);
//! - [`opencv_file`]: OpenCV's own YAML model files, read and written.

pub mod distance;
pub mod gallery;
pub mod opencv_file;
pub mod packed;
pub mod params;
pub mod pattern;
pub mod recognizer;
pub mod template;

pub use gallery::{Gallery, Match};
pub use params::{LbphParams, DEFAULT_THRESHOLD};
pub use recognizer::{Lbph, Prediction};
pub use template::{Layout, Template};
