//! The `dlib` recogniser on the ORL faces (photos 1–5 enrolled, 6–10
//! probed), each photo in a kiosk-sized frame ([`orl::sign_in_frame`]):
//! the accuracy bar, the shipped threshold reproduced, and (with
//! dlib's HOG detector, feature `dlib-oracle`) the cascade-to-dlib box
//! mapping measured. Needs the model files (`scripts/setup-models`).

mod orl;

use std::time::Instant;

use kubevision_vision::calibrate::{self, Scores};
use kubevision_vision::detect::{FaceBox, FaceDetector};
use kubevision_vision::embedding::{
    framed_crop_face, Alignment, DlibFrame, Embedder, Embedding, EmbeddingGallery, CASCADE_DX,
    CASCADE_DY, CASCADE_SCALE, DEFAULT_THRESHOLD,
};
use rayon::prelude::*;

struct Photo {
    label: i32,
    index: u32,
    hog: Option<FaceBox>,
    cascade: Option<FaceBox>,
    embedding: Option<Embedding>,
}

/// Every ORL photo: both detectors' boxes, and the embedding aligned by
/// the cascade's box as the kiosk does it.
fn measure() -> Vec<Photo> {
    let items: Vec<(i32, u32)> = (1..=40)
        .flat_map(|p| (1..=10).map(move |i| (p, i)))
        .collect();
    items
        .par_iter()
        .map_init(
            || {
                (
                    Embedder::load().expect("dlib models: run scripts/setup-models"),
                    FaceDetector::from_default_locations().unwrap(),
                )
            },
            |(embedder, cascade), &(label, index)| {
                let frame = orl::sign_in_frame(&orl::photo(label as u32, index));
                let matrix = DlibFrame::new(&frame);
                let hog = hog_box(embedder, &matrix);
                let cascade = cascade.detect(&frame).unwrap().into_iter().next();
                // Where the cascade misses, the photo's own place in the
                // frame (ORL photos are tight crops, centred by
                // `as_camera_frame`) stands in for its box.
                let photo_box = framed_crop_face(92, 112).unwrap();
                let embedding = embedder
                    .face_box(&matrix, Alignment::Cascade, cascade.or(Some(photo_box)))
                    .map(|b| {
                        embedder
                            .embed(&matrix, &embedder.landmarks(&matrix, b))
                            .unwrap()
                    });
                Photo {
                    label,
                    index,
                    hog,
                    cascade,
                    embedding,
                }
            },
        )
        .collect()
}

/// dlib's own detector's box, where dlib is built in as the oracle.
#[cfg(all(feature = "dlib-oracle", target_os = "linux"))]
fn hog_box(embedder: &Embedder, frame: &DlibFrame) -> Option<FaceBox> {
    embedder.detect(frame).into_iter().next()
}

#[cfg(not(all(feature = "dlib-oracle", target_os = "linux")))]
fn hog_box(_: &Embedder, _: &DlibFrame) -> Option<FaceBox> {
    None
}

fn scores(photos: &[Photo]) -> Scores {
    let mut gallery = EmbeddingGallery::new();
    let mut probes = Vec::new();
    for p in photos {
        let e = p.embedding.clone().expect("a face in every photo");
        if p.index <= 5 {
            gallery.add(p.label, e);
        } else {
            probes.push((p.label, e));
        }
    }
    calibrate::score_embeddings(&gallery, &probes)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[test]
fn dlib_on_orl_meets_the_bar_and_reproduces_the_shipped_threshold() {
    let t = Instant::now();
    let photos = measure();
    eprintln!("400 frames in {:.1} s", t.elapsed().as_secs_f64());

    let s = scores(&photos);
    let calibrated = calibrate::threshold_for_far(&s, 0.001).unwrap();
    let (far, frr) = (
        calibrate::far(&s, DEFAULT_THRESHOLD),
        calibrate::frr(&s, DEFAULT_THRESHOLD),
    );
    eprintln!(
        "rank-1 {}/{}; threshold for FAR <= 0.1 %: {calibrated:.4}; shipped {DEFAULT_THRESHOLD}: FAR {:.3} %, FRR {:.2} % ({} genuine, {} impostor scores)",
        s.correct, s.probes, 100.0 * far, 100.0 * frr, s.genuine.len(), s.impostor.len()
    );
    assert!(s.accuracy() >= 0.995, "rank-1 {}/{}", s.correct, s.probes);
    assert!(far <= 0.001, "FAR {far} at the shipped threshold");
    assert!(frr <= 0.01, "FRR {frr} at the shipped threshold");
    // The shipped threshold is the calibrated one, rounded down to 0.01.
    assert_eq!(
        (calibrated * 100.0).floor() / 100.0,
        DEFAULT_THRESHOLD,
        "calibrated {calibrated}"
    );

    // The cascade-to-dlib mapping's constants are the medians measured here.
    if cfg!(all(feature = "dlib-oracle", target_os = "linux")) {
        check_box_mapping(&photos);
    }
}

fn check_box_mapping(photos: &[Photo]) {
    let pairs: Vec<(FaceBox, FaceBox)> = photos
        .iter()
        .filter_map(|p| Some((p.cascade?, p.hog?)))
        .collect();
    let centre = |v: u32, len: u32| f64::from(v) + f64::from(len) / 2.0;
    let dx = median(
        pairs
            .iter()
            .map(|(c, h)| (centre(h.x, h.width) - centre(c.x, c.width)) / f64::from(c.width))
            .collect(),
    );
    let dy = median(
        pairs
            .iter()
            .map(|(c, h)| (centre(h.y, h.height) - centre(c.y, c.height)) / f64::from(c.height))
            .collect(),
    );
    let scale = median(
        pairs
            .iter()
            .map(|(c, h)| f64::from(h.width) / f64::from(c.width))
            .collect(),
    );
    eprintln!("both detectors found {} of 400 faces; dlib's box from the cascade's: dx {dx:.3}, dy {dy:.3}, scale {scale:.3}", pairs.len());
    assert!(pairs.len() >= 380);
    for (name, measured, shipped) in [
        ("dx", dx, CASCADE_DX),
        ("dy", dy, CASCADE_DY),
        ("scale", scale, CASCADE_SCALE),
    ] {
        assert!(
            (measured - shipped).abs() < 0.02,
            "{name}: measured {measured:.3}, shipped {shipped}"
        );
    }
}
