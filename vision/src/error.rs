use std::path::PathBuf;

/// Everything that can go wrong in the face pipeline. Each variant names the
/// offending input so that a batch tool or the kiosk can say which file or
/// which setting is at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: it is {kind}, not a regular file")]
    NotAFile { path: PathBuf, kind: &'static str },
    #[error("cannot read {path}: {size} bytes, over the limit of {limit} bytes for {what}")]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
        what: &'static str,
    },
    #[error("{what} is not a readable image: {reason}")]
    NotAnImage { what: String, reason: String },
    #[error("{what} is empty (0 × 0 pixels)")]
    EmptyImage { what: String },
    #[error("image of {width} × {height} pixels is too small for LBPH with radius {radius} and a {grid_x} × {grid_y} grid (needs at least {min_width} × {min_height})")]
    ImageTooSmall {
        width: u32,
        height: u32,
        radius: u32,
        grid_x: u32,
        grid_y: u32,
        min_width: u32,
        min_height: u32,
    },
    #[error("invalid LBPH parameter: {0}")]
    InvalidParams(String),
    #[error(
        "template was made with other LBPH parameters ({found}) than this gallery's ({expected})"
    )]
    ParamsMismatch { expected: String, found: String },
    #[error("malformed template: {0}")]
    BadTemplate(String),
    /// Bytes that do not start with a template's magic (`KVT1`, `KVE1`).
    #[error("malformed template: not a KubeVision template (no KVT1 or KVE1 header)")]
    NotATemplate,
    /// A dlib template was asked for where dlib's models are not loaded.
    #[error("the dlib recogniser's models are not loaded")]
    DlibNotLoaded,
    /// A dlib template was asked for of a face crop: dlib aligns a face
    /// by landmarks on the whole camera image, which a crop has lost.
    #[error("the dlib recogniser needs whole camera images, not face crops")]
    CropForDlib,
    #[error("the model has no templates: enroll at least one face first")]
    EmptyModel,
    #[error("{images} images but {labels} labels were given")]
    LabelCountMismatch { images: usize, labels: usize },
    #[error("OpenCV model file {path}: {reason}")]
    ModelFile { path: PathBuf, reason: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("face cascade not found; looked in: {searched}")]
    CascadeNotFound { searched: String },
    #[error("face cascade {path} cannot be loaded: {problem}")]
    BadCascade {
        path: PathBuf,
        #[source]
        problem: crate::detect::CascadeProblem,
    },
    #[error("{path} cannot be opened as a video: {reason}")]
    NotAVideo { path: PathBuf, reason: String },
    #[error("dlib model file {file} not found; looked in: {searched}; {hint}", hint = crate::embedding::models::INSTALL_HINT)]
    ModelNotFound {
        file: &'static str,
        searched: String,
    },
    #[error("dlib model file {path} has SHA-256 {found}, not the pinned {expected}; {hint}", hint = crate::embedding::models::INSTALL_HINT)]
    ModelChecksum {
        path: PathBuf,
        found: String,
        expected: &'static str,
    },
    #[error("dlib model file {path} cannot be read")]
    DlibModel {
        path: PathBuf,
        #[source]
        source: crate::embedding::dlib::FormatError,
    },
    #[error("this build has no HOG face detector (dlib's, built in only as the oracle with the `oracles` feature on Linux); use --alignment cascade")]
    NoHogDetector,
    #[error("a template of the {found} recogniser was given where the {expected} recogniser's are used; enrol again, or choose the {found} recogniser")]
    WrongKind {
        expected: crate::recogniser::Kind,
        found: crate::recogniser::Kind,
    },
    #[error("unknown recogniser {0:?}: choose lbph or dlib")]
    UnknownKind(String),
}
