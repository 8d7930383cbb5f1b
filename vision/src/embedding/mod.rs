//! The `dlib` recogniser: deep face embeddings from dlib's ResNet, beside
//! the OpenCV-exact [`crate::lbph`].
//!
//! LBPH is what the prototype used and stays the default. It is weak at
//! verification at a low false-accept rate; a 128-number embedding from a
//! network trained on millions of faces is not (see the README's accuracy
//! table). The price is a model file of 22 MB and about 15 ms a face.
//!
//! - [`models`]: the two model files, where they are looked for, and the
//!   SHA-256 check before dlib reads them;
//! - [`landmarks`]: dlib's five points and the head-turn cue read from them
//!   (used by [`crate::liveness`]);
//! - [`alignment`]: the face box the landmarks start from;
//! - [`dlib`]: dlib's model format, landmark model, face chip and ResNet in
//!   our own code;
//! - `encoder`: landmarks and the embedding behind one type, [`Embedder`]
//!   (and dlib's HOG detector where the C++ oracle is built in, feature
//!   `dlib-oracle`);
//! - [`photo`]: tight face crops (datasets, enrolment photos) framed the
//!   way a kiosk camera sees a face;
//! - [`template`]: an embedding and its 520-byte encoding;
//! - [`gallery`]: exact nearest-neighbour and top-k search on all cores.

pub mod alignment;
pub mod dlib;
mod encoder;
pub mod gallery;
pub mod landmarks;
pub mod models;
pub mod photo;
pub mod template;

pub use encoder::{
    cascade_to_dlib, Alignment, DlibFrame, Embedder, Located, CASCADE_DX, CASCADE_DY, CASCADE_SCALE,
};
pub use gallery::EmbeddingGallery;
pub use landmarks::{Landmarks, Point};
pub use photo::{as_camera_frame, framed_crop_face};
pub use template::Embedding;

/// The accept threshold on the L2 distance, calibrated on ORL for a
/// false-accept rate of at most 0.1 % (`kubevision evaluate --recogniser
/// dlib`; `vision/tests/embedding.rs` reproduces it). dlib's own suggestion
/// for its network is 0.6.
pub const DEFAULT_THRESHOLD: f64 = 0.48;
