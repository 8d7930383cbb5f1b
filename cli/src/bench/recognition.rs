//! Training throughput, predict latency and memory: ours against OpenCV's
//! `LBPHFaceRecognizer` on the same images, in the same process.

use std::time::Instant;

use opencv::core::{Mat, Ptr, Vector};
use opencv::face::LBPHFaceRecognizer;
use opencv::prelude::*;
use vision::lbph::{Lbph, LbphParams};
use vision::GrayImage;

use super::data::Orl;
use super::{median_ms, resident_bytes, Row};

/// Images handed to either recogniser at a time while a gallery is built.
const CHUNK: usize = 2000;

fn mat(img: &GrayImage) -> Mat {
    Mat::new_rows_cols_with_data(img.height() as i32, img.width() as i32, img.as_raw())
        .unwrap()
        .try_clone()
        .unwrap()
}

fn opencv_model() -> anyhow::Result<Ptr<LBPHFaceRecognizer>> {
    Ok(LBPHFaceRecognizer::create(1, 8, 8, 8, f64::MAX)?)
}

pub fn run(orl: &Orl, sizes: &[usize], probes: usize, rounds: usize) -> anyhow::Result<Vec<Row>> {
    let mut rows = vec![training(orl, rounds)?];
    for &size in sizes {
        rows.extend(predict(orl, size, probes)?);
    }
    Ok(rows)
}

fn training(orl: &Orl, rounds: usize) -> anyhow::Result<Row> {
    let images: Vec<(i32, GrayImage)> = (0..400).map(|i| orl.gallery_image(i)).collect();
    let ours_images: Vec<GrayImage> = images.iter().map(|(_, i)| i.clone()).collect();
    let labels: Vec<i32> = images.iter().map(|(l, _)| *l).collect();
    let cv_images: Vector<Mat> = images.iter().map(|(_, i)| mat(i)).collect();
    let cv_labels: Vector<i32> = labels.iter().copied().collect();
    let (mut ours_t, mut cv_t) = (Vec::new(), Vec::new());
    for _ in 0..rounds.max(1) {
        let mut ours = Lbph::new(LbphParams::default())?;
        let start = Instant::now();
        ours.train(&ours_images, &labels)?;
        ours_t.push(start.elapsed());
        let mut cv = opencv_model()?;
        let start = Instant::now();
        cv.train(&cv_images, &cv_labels)?;
        cv_t.push(start.elapsed());
    }
    let per_s = |ms: f64| images.len() as f64 / (ms / 1e3);
    let row = Row {
        measure: "training throughput (images/s)".into(),
        ours: per_s(median_ms(ours_t)),
        peer: per_s(median_ms(cv_t)),
        higher_is_better: true,
    };
    println!(
        "training: ours {:.0} images/s, OpenCV {:.0} images/s",
        row.ours, row.peer
    );
    Ok(row)
}

/// Builds a gallery of `size` templates in both, then times `probes` predictions each.
fn predict(orl: &Orl, size: usize, probes: usize) -> anyhow::Result<Vec<Row>> {
    let before = resident_bytes();
    let mut ours = Lbph::new(LbphParams::default())?;
    ours.reserve(size);
    for start in (0..size).step_by(CHUNK) {
        let (labels, images): (Vec<i32>, Vec<GrayImage>) = (start..(start + CHUNK).min(size))
            .map(|i| orl.gallery_image(i))
            .unzip();
        ours.update(&images, &labels)?;
    }
    let ours_bytes = resident_bytes()
        .zip(before)
        .map(|(a, b)| a.saturating_sub(b));

    let before = resident_bytes();
    let mut cv = opencv_model()?;
    for start in (0..size).step_by(CHUNK) {
        let (labels, images): (Vector<i32>, Vector<Mat>) = (start..(start + CHUNK).min(size))
            .map(|i| orl.gallery_image(i))
            .map(|(l, img)| (l, mat(&img)))
            .unzip();
        cv.update(&images, &labels)?;
    }
    let cv_bytes = resident_bytes()
        .zip(before)
        .map(|(a, b)| a.saturating_sub(b));

    let (mut ours_t, mut cv_t, mut agree) = (Vec::new(), Vec::new(), 0);
    for i in 0..probes.max(1) {
        let (_, probe) = orl.probe(i);
        let start = Instant::now();
        let mine = ours.predict(probe)?;
        ours_t.push(start.elapsed());
        let (mut label, mut distance) = (0, 0.0);
        let start = Instant::now();
        cv.predict(&mat(probe), &mut label, &mut distance)?;
        cv_t.push(start.elapsed());
        agree += (mine.label == Some(label) && (mine.distance - distance).abs() <= 1e-4 * distance)
            as usize;
    }
    let (ours_ms, cv_ms) = (median_ms(ours_t), median_ms(cv_t));
    println!("predict at {size} templates: ours {ours_ms:.3} ms, OpenCV {cv_ms:.3} ms; same answer for {agree} of {} probes", probes.max(1));
    let mut rows = vec![Row {
        measure: format!("predict latency, {size} templates (ms)"),
        ours: ours_ms,
        peer: cv_ms,
        higher_is_better: false,
    }];
    if let (Some(o), Some(c)) = (ours_bytes, cv_bytes) {
        if size >= 5000 {
            let kib = |b: u64| b as f64 / size as f64 / 1024.0;
            rows.push(Row {
                measure: format!("memory per template, {size} templates (KiB, resident)"),
                ours: kib(o),
                peer: kib(c),
                higher_is_better: false,
            });
        }
    }
    Ok(rows)
}
