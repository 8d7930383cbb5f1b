//! Detection and normalisation of 640 × 480 frames with one face: our
//! Viola–Jones detector against OpenCV's `CascadeClassifier` run with the
//! same parameters on the same frames (the 320-pixel `INTER_AREA`
//! downscale, `equalizeHist`, scale 1.1, 5 neighbours, the same smallest
//! face) and the same crop scaled with OpenCV's `resize`.

use std::time::Instant;

use opencv::core::{Mat, Rect, Size, Vector};
use opencv::objdetect::CascadeClassifier;
use opencv::prelude::*;
use vision::detect::{crop_region, find_cascade, normalize, DetectorConfig, FaceBox, FaceDetector};
use vision::{GrayImage, FACE_HEIGHT, FACE_WIDTH};

use super::data::{frame, Orl};
use super::{median_ms, Row};

pub fn run(orl: &Orl, frames: usize) -> anyhow::Result<Vec<Row>> {
    let frames: Vec<GrayImage> = (0..frames.max(1)).map(|i| frame(orl, i)).collect();
    let mut ours = FaceDetector::from_default_locations()?;
    let mut peer = CascadeClassifier::new(find_cascade()?)?;
    let config = DetectorConfig::default();
    let (mut ours_t, mut peer_t, mut same) = (Vec::new(), Vec::new(), 0);
    for f in &frames {
        let start = Instant::now();
        let faces = ours.detect(f)?;
        if let Some(face) = faces.first() {
            normalize(f, face)?;
        }
        ours_t.push(start.elapsed());

        let start = Instant::now();
        let theirs = opencv_detect_and_crop(&mut peer, &config, f)?;
        peer_t.push(start.elapsed());
        same += usize::from(faces.first() == theirs.as_ref());
    }
    let fps = |ms: f64| 1e3 / ms;
    let (ours_fps, peer_fps) = (fps(median_ms(ours_t)), fps(median_ms(peer_t)));
    println!(
        "detection: ours {ours_fps:.1} frames/s, OpenCV {peer_fps:.1} frames/s; the same largest face on {same} of {n} frames",
        n = frames.len()
    );
    Ok(vec![Row {
        measure: "detection + normalisation, 640×480 (frames/s)".into(),
        ours: ours_fps,
        peer: peer_fps,
        higher_is_better: true,
    }])
}

/// The kiosk's detection as it ran on OpenCV: the largest face, cut out
/// and scaled to the recogniser's size.
fn opencv_detect_and_crop(
    cascade: &mut CascadeClassifier,
    config: &DetectorConfig,
    frame: &GrayImage,
) -> anyhow::Result<Option<FaceBox>> {
    let (w, h) = frame.dimensions();
    let src = Mat::new_rows_cols_with_data(h as i32, w as i32, frame.as_raw())?;
    let scale = (config.max_detect_width as f64 / w as f64).min(1.0);
    let mut small = Mat::default();
    let size = Size::new(
        (w as f64 * scale).round() as i32,
        (h as f64 * scale).round() as i32,
    );
    opencv::imgproc::resize(
        &src,
        &mut small,
        size,
        0.0,
        0.0,
        opencv::imgproc::INTER_AREA,
    )?;
    let mut equalized = Mat::default();
    opencv::imgproc::equalize_hist(&small, &mut equalized)?;
    let min_side = (w.min(h) as f64 * scale * config.min_face_fraction).max(24.0) as i32;
    let mut found = Vector::<Rect>::new();
    cascade.detect_multi_scale(
        &equalized,
        &mut found,
        config.scale_factor,
        config.min_neighbors,
        0,
        Size::new(min_side, min_side),
        Size::default(),
    )?;
    let Some(r) = found.iter().max_by_key(|r| r.area()) else {
        return Ok(None);
    };
    let x = ((r.x as f64 / scale).round() as u32).min(w - 1);
    let y = ((r.y as f64 / scale).round() as u32).min(h - 1);
    let face = FaceBox {
        x,
        y,
        width: ((r.width as f64 / scale).round() as u32).clamp(1, w - x),
        height: ((r.height as f64 / scale).round() as u32).clamp(1, h - y),
    };
    let c = crop_region(frame, &face);
    let roi = Rect::new(c.x as i32, c.y as i32, c.width as i32, c.height as i32);
    let mut out = Mat::default();
    opencv::imgproc::resize(
        &Mat::roi(&src, roi)?,
        &mut out,
        Size::new(FACE_WIDTH as i32, FACE_HEIGHT as i32),
        0.0,
        0.0,
        opencv::imgproc::INTER_AREA,
    )?;
    Ok(Some(face))
}
