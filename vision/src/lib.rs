//! KubeVision's face pipeline, shared by the kiosk, the offload service and
//! the `kubevision` command-line tool.
//!
//! A sign-in goes through these rooms, in order:
//!
//! - [`imageio`] decodes camera frames and photos into grey-scale images;
//! - [`detect`] finds faces with our Viola–Jones detector (OpenCV's cascade
//!   and boxes, reproduced in Rust) and cuts out
//!   a normalised crop ([`FACE_WIDTH`] × [`FACE_HEIGHT`]);
//! - [`quality`] names the reason a frame is unusable, so the kiosk can say it;
//! - [`pipeline`] ties detection and the quality gate together;
//! - [`lbph`] is our LBPH recogniser: OpenCV's semantics and model files,
//!   compact templates and a much faster matcher;
//! - [`embedding`] is the `dlib` recogniser beside it: dlib's ResNet face
//!   embeddings, exact nearest-neighbour search, and the model files;
//! - [`recogniser`] names the two kinds and tells a template's kind;
//! - [`template`] decodes a template of either kind and makes every
//!   template of a face (one place for the kiosk, its store and the
//!   service);
//! - [`gallery`] holds one recogniser's templates keyed by personnel number
//!   and answers the searches a burst is decided with;
//! - [`liveness`] asks a live person for what a photo cannot do;
//! - [`burst`] turns the answers for a burst of frames into one decision;
//! - [`calibrate`] derives FAR/FRR curves and the accept threshold;
//! - [`video`] reads and writes Motion-JPEG AVI files as grey frames (a
//!   camera for demos and tests);
//! - [`synthetic`] makes deterministic crops and embeddings for tests;
//! - [`files`] reads files from outside with bounds (regular files only, up
//!   to a size limit) and writes model files atomically and privately.

pub mod burst;
pub mod calibrate;
pub mod detect;
pub mod embedding;
mod error;
pub mod files;
pub mod gallery;
pub mod imageio;
pub mod lbph;
pub mod liveness;
pub mod pipeline;
pub mod quality;
pub mod recogniser;
pub mod synthetic;
pub mod template;
pub mod video;

pub use error::Error;
pub use image::GrayImage;

/// One candidate answer of a search: a person and the distance of their
/// nearest template (chi-square for LBPH, L2 for embeddings).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Match {
    pub label: i32,
    pub distance: f64,
}

/// Width of the normalised face crop handed to the recogniser. The kiosk's
/// crops have the geometry of the ORL photos the prototype was tuned on, and
/// keep every LBPH cell under 256 pixels, so templates stay one byte a bin.
pub const FACE_WIDTH: u32 = 92;
/// Height of the normalised face crop (see [`FACE_WIDTH`]).
pub const FACE_HEIGHT: u32 = 112;
