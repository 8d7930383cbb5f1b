//! Detection and normalisation of 640 × 480 frames with one face: our
//! pipeline against the plain way (a full-resolution `detectMultiScale`
//! with OpenCV's default parameters, as the prototype called it).

use std::time::Instant;

use opencv::core::{Mat, Rect, Size, Vector};
use opencv::objdetect::CascadeClassifier;
use opencv::prelude::*;
use vision::detect::{find_cascade, normalize, FaceDetector};
use vision::{GrayImage, FACE_HEIGHT, FACE_WIDTH};

use super::data::{frame, Orl};
use super::{median_ms, Row};

pub fn run(orl: &Orl, frames: usize) -> anyhow::Result<Vec<Row>> {
    let frames: Vec<GrayImage> = (0..frames.max(1)).map(|i| frame(orl, i)).collect();
    let mut ours = FaceDetector::from_default_locations()?;
    let mut plain = CascadeClassifier::new(&find_cascade()?)?;
    let (mut ours_t, mut plain_t, mut ours_found, mut plain_found) = (Vec::new(), Vec::new(), 0, 0);
    for f in &frames {
        let start = Instant::now();
        let faces = ours.detect(f)?;
        if let Some(face) = faces.first() {
            normalize(f, face)?;
            ours_found += 1;
        }
        ours_t.push(start.elapsed());

        let start = Instant::now();
        plain_found += plain_detect_and_crop(&mut plain, f)? as usize;
        plain_t.push(start.elapsed());
    }
    let fps = |ms: f64| 1e3 / ms;
    let (ours_fps, plain_fps) = (fps(median_ms(ours_t)), fps(median_ms(plain_t)));
    println!("detection: ours {ours_fps:.1} frames/s (face found in {ours_found} of {n}), plain {plain_fps:.1} frames/s ({plain_found} of {n})", n = frames.len());
    Ok(vec![Row {
        measure: "detection + normalisation, 640×480 (frames/s)".into(),
        ours: ours_fps,
        peer: plain_fps,
        higher_is_better: true,
    }])
}

fn plain_detect_and_crop(
    cascade: &mut CascadeClassifier,
    frame: &GrayImage,
) -> anyhow::Result<bool> {
    let src =
        Mat::new_rows_cols_with_data(frame.height() as i32, frame.width() as i32, frame.as_raw())?;
    let mut found = Vector::<Rect>::new();
    cascade.detect_multi_scale_def(&src, &mut found)?;
    let Some(largest) = found.iter().max_by_key(|r| r.area()) else {
        return Ok(false);
    };
    let mut out = Mat::default();
    opencv::imgproc::resize(
        &Mat::roi(&src, largest)?,
        &mut out,
        Size::new(FACE_WIDTH as i32, FACE_HEIGHT as i32),
        0.0,
        0.0,
        opencv::imgproc::INTER_LINEAR,
    )?;
    Ok(true)
}
