//! Turning a photo into the recogniser's input, on every core.

use std::path::Path;

use rayon::prelude::*;
use vision::detect::{normalize, FaceBox, FaceDetector};
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
