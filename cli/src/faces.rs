//! Turning a photo into the recogniser's input, on every core.

use std::path::Path;

use rayon::prelude::*;
use vision::detect::{normalize, FaceBox, FaceDetector};
use vision::embedding::{
    as_camera_frame, framed_crop_face, Alignment, DlibFrame, Embedder, Embedding,
};
use vision::lbph::{LbphParams, Template};
use vision::{imageio, GrayImage};

use crate::InputArgs;

/// A photo's template and where its face was, or why there is none.
pub struct Processed {
    pub face: FaceBox,
    pub template: Template,
}

/// Processes photos in parallel, each thread with its own detector (OpenCV's
/// cascade is not thread-safe). Results come back in input order.
pub fn process_all(
    paths: &[&Path],
    input: InputArgs,
    params: &LbphParams,
) -> anyhow::Result<Vec<Result<Processed, String>>> {
    if !input.aligned {
        FaceDetector::from_default_locations()?; // fail once, clearly, before the batch
    }
    Ok(paths
        .par_iter()
        .map_init(
            || {
                (!input.aligned)
                    .then(|| FaceDetector::from_default_locations().expect("checked above"))
            },
            |detector, path| process(path, detector.as_mut(), params),
        )
        .collect())
}

fn process(
    path: &Path,
    detector: Option<&mut FaceDetector>,
    params: &LbphParams,
) -> Result<Processed, String> {
    let photo = imageio::load_gray(path).map_err(|e| e.to_string())?;
    let (face, input) = match detector {
        None => (
            FaceBox {
                x: 0,
                y: 0,
                width: photo.width(),
                height: photo.height(),
            },
            photo,
        ),
        Some(detector) => detected(detector, &photo)?,
    };
    let template = Template::extract(params, &input).map_err(|e| e.to_string())?;
    Ok(Processed { face, template })
}

/// The largest face, normalised. A batch of photos is not a live camera, so
/// only "is there a face" applies here, not the kiosk's framing rules.
fn detected(
    detector: &mut FaceDetector,
    photo: &GrayImage,
) -> Result<(FaceBox, GrayImage), String> {
    let faces = detector.detect(photo).map_err(|e| e.to_string())?;
    let face = *faces
        .first()
        .ok_or_else(|| vision::quality::QualityIssue::NoFace.to_string())?;
    Ok((face, normalize(photo, &face).map_err(|e| e.to_string())?))
}

/// How the `dlib` recogniser finds the face box its landmarks start from.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AlignmentArg {
    /// The OpenCV cascade's box mapped to dlib's shape (the kiosk's way).
    #[default]
    Cascade,
    /// dlib's own HOG detector (only in a build with the `oracles` feature,
    /// on Linux: dlib itself is built in as the oracle).
    Hog,
}

impl TryFrom<AlignmentArg> for Alignment {
    type Error = vision::Error;

    fn try_from(a: AlignmentArg) -> Result<Self, vision::Error> {
        match a {
            AlignmentArg::Cascade => Ok(Alignment::Cascade),
            #[cfg(all(feature = "oracles", target_os = "linux"))]
            AlignmentArg::Hog => Ok(Alignment::Hog),
            #[cfg(not(all(feature = "oracles", target_os = "linux")))]
            AlignmentArg::Hog => Err(vision::Error::NoHogDetector),
        }
    }
}

/// dlib embeddings of `paths`, in parallel, each thread with its own
/// models and cascade (neither is thread-safe). Every photo is first
/// framed as a kiosk camera sees a face ([`as_camera_frame`]): dlib aligns
/// by landmarks and needs the face in context, so `--aligned` crops too.
///
/// Where the cascade misses an `aligned` photo (a tight crop the face
/// fills), the crop's own place in the frame stands in for its box
/// ([`framed_crop_face`]).
pub fn embed_all(
    paths: &[&Path],
    alignment: Alignment,
    aligned: bool,
) -> anyhow::Result<Vec<Result<Embedding, String>>> {
    Embedder::load()?; // fail once, clearly, before the batch
    FaceDetector::from_default_locations()?;
    Ok(paths
        .par_iter()
        .map_init(
            || {
                (
                    Embedder::load().expect("checked above"),
                    FaceDetector::from_default_locations().expect("checked above"),
                )
            },
            |(embedder, cascade), path| embed(path, embedder, cascade, alignment, aligned),
        )
        .collect())
}

fn embed(
    path: &Path,
    embedder: &Embedder,
    cascade: &mut FaceDetector,
    alignment: Alignment,
    aligned: bool,
) -> Result<Embedding, String> {
    let photo = imageio::load_gray(path).map_err(|e| e.to_string())?;
    let frame = as_camera_frame(&photo);
    let dlib_frame = DlibFrame::new(&frame);
    let cascade_box = match alignment {
        Alignment::Cascade => cascade
            .detect(&frame)
            .map_err(|e| e.to_string())?
            .first()
            .copied()
            .or_else(|| {
                aligned
                    .then(|| framed_crop_face(photo.width(), photo.height()))
                    .flatten()
            }),
        #[cfg(all(feature = "oracles", target_os = "linux"))]
        Alignment::Hog => None,
    };
    let face = embedder
        .face_box(&dlib_frame, alignment, cascade_box)
        .ok_or_else(|| vision::quality::QualityIssue::NoFace.to_string())?;
    embedder
        .embed(&dlib_frame, &embedder.landmarks(&dlib_frame, face))
        .map_err(|e| e.to_string())
}
