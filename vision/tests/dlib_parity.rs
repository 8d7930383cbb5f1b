//! Our dlib landmarks and ResNet against dlib itself (the C++ library,
//! feature `dlib-oracle`), in the same process, on the same frames:
//!
//! - the 400 ORL faces framed as a kiosk camera sees them, each with the
//!   box the kiosk gives the landmark model (the cascade's, mapped);
//! - hard frames generated from one photo of each person: rotated by ±25°,
//!   small (a third of the size), large (twice: dlib's chip pyramid goes
//!   deeper), cut off by the frame's right and bottom edges, and dark.
//!
//! Tolerances: every landmark within [`LANDMARK_TOLERANCE`] px of dlib's
//! (both round to whole pixels, so this means the same pixel); every
//! embedding within L2 [`EMBEDDING_TOLERANCE`] of dlib's; on every pair of
//! ORL faces the same accept/reject at the shipped threshold, except pairs
//! where either distance lies within [`THRESHOLD_MARGIN`] of it, which are
//! counted and printed.
#![cfg(all(feature = "dlib-oracle", target_os = "linux"))]

mod orl;

use dlib_face_recognition::{
    FaceEncoderNetwork, FaceEncoderTrait, ImageMatrix, LandmarkPredictor, LandmarkPredictorTrait,
    Rectangle,
};
use image::imageops::{self, FilterType};
use kubevision_vision::detect::{FaceBox, FaceDetector};
use kubevision_vision::embedding::models::{self, ModelFile};
use kubevision_vision::embedding::{
    as_camera_frame, cascade_to_dlib, DlibFrame, Embedder, DEFAULT_THRESHOLD,
};
use kubevision_vision::GrayImage;
use rayon::prelude::*;

const LANDMARK_TOLERANCE: f64 = 0.05;
const EMBEDDING_TOLERANCE: f64 = 1e-3;
const THRESHOLD_MARGIN: f64 = 1e-3;

struct Oracle {
    predictor: LandmarkPredictor,
    network: FaceEncoderNetwork,
}

impl Oracle {
    fn load() -> Self {
        Self {
            predictor: LandmarkPredictor::open(models::locate(ModelFile::Landmarks).unwrap())
                .unwrap(),
            network: FaceEncoderNetwork::open(models::locate(ModelFile::Encoder).unwrap()).unwrap(),
        }
    }
}

/// One frame's answers from both sides.
struct Answer {
    name: String,
    ours: ([[f64; 2]; 5], Vec<f32>),
    dlib: ([[f64; 2]; 5], Vec<f32>),
}

impl Answer {
    fn landmark_error(&self) -> f64 {
        self.ours
            .0
            .iter()
            .zip(&self.dlib.0)
            .map(|(a, b)| (a[0] - b[0]).abs().max((a[1] - b[1]).abs()))
            .fold(0.0, f64::max)
    }

    fn embedding_error(&self) -> f64 {
        l2(&self.ours.1, &self.dlib.1)
    }
}

fn l2(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
        .sum::<f64>()
        .sqrt()
}

fn answer(
    embedder: &Embedder,
    oracle: &Oracle,
    name: String,
    frame: &GrayImage,
    face: FaceBox,
) -> Answer {
    let ours_frame = DlibFrame::new(frame);
    let located = embedder.landmarks(&ours_frame, face);
    let ours_points = located.landmarks.points.map(|p| [p.x, p.y]);
    let ours_embedding = embedder
        .embed(&ours_frame, &located)
        .unwrap()
        .values()
        .to_vec();

    let rgb: Vec<u8> = frame.as_raw().iter().flat_map(|&v| [v, v, v]).collect();
    // SAFETY: `rgb` holds width × height RGB triples and outlives the call.
    let matrix = unsafe {
        ImageMatrix::new(
            frame.width() as usize,
            frame.height() as usize,
            rgb.as_ptr(),
        )
    };
    let rect = Rectangle {
        left: i64::from(face.x),
        top: i64::from(face.y),
        right: i64::from(face.x + face.width) - 1,
        bottom: i64::from(face.y + face.height) - 1,
    };
    let detection = oracle.predictor.face_landmarks(&matrix, &rect);
    let mut dlib_points = [[0.0; 2]; 5];
    for (p, q) in dlib_points.iter_mut().zip(detection.iter()) {
        *p = [q.x() as f64, q.y() as f64];
    }
    let encodings = oracle
        .network
        .get_face_encodings(&matrix, std::slice::from_ref(&detection), 0);
    let dlib_embedding: Vec<f32> = encodings[0].as_ref().iter().map(|&v| v as f32).collect();
    Answer {
        name,
        ours: (ours_points, ours_embedding),
        dlib: (dlib_points, dlib_embedding),
    }
}

/// The kiosk's box for a frame: the cascade's, mapped to dlib's shape;
/// a centred box of the face's usual size where the cascade finds none.
fn kiosk_box(cascade: &mut FaceDetector, frame: &GrayImage) -> FaceBox {
    cascade
        .detect(frame)
        .unwrap()
        .into_iter()
        .next()
        .map(cascade_to_dlib)
        .unwrap_or(FaceBox {
            x: frame.width() / 2 - 110,
            y: frame.height() / 2 - 90,
            width: 220,
            height: 220,
        })
}

fn rotate(frame: &GrayImage, degrees: f64) -> GrayImage {
    let (s, c) = degrees.to_radians().sin_cos();
    let (w, h) = frame.dimensions();
    let (cx, cy) = (f64::from(w) / 2.0, f64::from(h) / 2.0);
    GrayImage::from_fn(w, h, |x, y| {
        let (dx, dy) = (f64::from(x) - cx, f64::from(y) - cy);
        let (sx, sy) = (c * dx + s * dy + cx, -s * dx + c * dy + cy);
        let inside = sx >= 0.0 && sy >= 0.0 && sx < f64::from(w) && sy < f64::from(h);
        if inside {
            *frame.get_pixel(sx as u32, sy as u32)
        } else {
            image::Luma([128])
        }
    })
}

fn scale_box(b: FaceBox, num: u32, den: u32) -> FaceBox {
    FaceBox {
        x: b.x * num / den,
        y: b.y * num / den,
        width: b.width * num / den,
        height: b.height * num / den,
    }
}

/// The hard frames made from one ORL frame and its box.
fn hard_cases(name: &str, frame: &GrayImage, face: FaceBox) -> Vec<(String, GrayImage, FaceBox)> {
    let (w, h) = frame.dimensions();
    let mut out = Vec::new();
    for degrees in [-25.0, 25.0] {
        out.push((
            format!("{name} rotated {degrees}°"),
            rotate(frame, degrees),
            face,
        ));
    }
    let small = imageops::resize(frame, w / 3, h / 3, FilterType::Triangle);
    out.push((format!("{name} small"), small, scale_box(face, 1, 3)));
    let large = imageops::resize(frame, w * 2, h * 2, FilterType::Triangle);
    out.push((format!("{name} large"), large, scale_box(face, 2, 1)));
    // The face's right third and bottom quarter outside the frame.
    let (cw, ch) = (face.x + face.width * 2 / 3, face.y + face.height * 3 / 4);
    let cut = imageops::crop_imm(frame, 0, 0, cw, ch).to_image();
    out.push((format!("{name} cut off"), cut, face));
    let mut dark = frame.clone();
    dark.pixels_mut().for_each(|p| p.0[0] /= 4);
    out.push((format!("{name} dark"), dark, face));
    out
}

#[test]
fn landmarks_and_embeddings_match_dlib_on_orl_and_hard_frames() {
    let photos: Vec<(i32, u32)> = (1..=40)
        .flat_map(|p| (1..=10).map(move |i| (p, i)))
        .collect();
    let frames: Vec<(i32, String, GrayImage, FaceBox)> = photos
        .par_iter()
        .map_init(
            || FaceDetector::from_default_locations().unwrap(),
            |cascade, &(person, index)| {
                let frame = as_camera_frame(&orl::photo(person as u32, index));
                let face = kiosk_box(cascade, &frame);
                (person, format!("s{person}/{index}"), frame, face)
            },
        )
        .collect();
    let hard: Vec<(String, GrayImage, FaceBox)> = frames
        .iter()
        .filter(|f| f.1.ends_with("/1"))
        .flat_map(|(_, name, frame, face)| hard_cases(name, frame, *face))
        .collect();

    let orl_answers: Vec<(i32, Answer)> = frames
        .par_iter()
        .map_init(
            || (Embedder::load().unwrap(), Oracle::load()),
            |(embedder, oracle), (person, name, frame, face)| {
                (
                    *person,
                    answer(embedder, oracle, name.clone(), frame, *face),
                )
            },
        )
        .collect();
    let hard_answers: Vec<Answer> = hard
        .par_iter()
        .map_init(
            || (Embedder::load().unwrap(), Oracle::load()),
            |(embedder, oracle), (name, frame, face)| {
                answer(embedder, oracle, name.clone(), frame, *face)
            },
        )
        .collect();

    let all: Vec<&Answer> = orl_answers
        .iter()
        .map(|(_, a)| a)
        .chain(&hard_answers)
        .collect();
    let worst_landmark = all.iter().map(|a| a.landmark_error()).fold(0.0, f64::max);
    let worst_embedding = all.iter().map(|a| a.embedding_error()).fold(0.0, f64::max);
    eprintln!(
        "{} ORL and {} hard frames: worst landmark difference {worst_landmark} px, worst embedding L2 {worst_embedding:.2e}",
        orl_answers.len(),
        hard_answers.len()
    );
    let landmark_misses: Vec<String> = all
        .iter()
        .filter(|a| a.landmark_error() > LANDMARK_TOLERANCE)
        .map(|a| format!("{}: ours {:?}, dlib {:?}", a.name, a.ours.0, a.dlib.0))
        .collect();
    assert!(
        landmark_misses.is_empty(),
        "landmarks differ: {landmark_misses:#?}"
    );
    let embedding_misses: Vec<String> = all
        .iter()
        .filter(|a| a.embedding_error() > EMBEDDING_TOLERANCE)
        .map(|a| format!("{}: L2 {:.2e}", a.name, a.embedding_error()))
        .collect();
    assert!(
        embedding_misses.is_empty(),
        "embeddings differ: {embedding_misses:#?}"
    );

    // The same accept/reject on every pair of ORL faces.
    let mut pairs = 0;
    let mut near = 0;
    let mut disagree = Vec::new();
    for (i, (_, a)) in orl_answers.iter().enumerate() {
        for (_, b) in &orl_answers[i + 1..] {
            pairs += 1;
            let ours = l2(&a.ours.1, &b.ours.1);
            let dlib = l2(&a.dlib.1, &b.dlib.1);
            if (ours - DEFAULT_THRESHOLD).abs() < THRESHOLD_MARGIN
                || (dlib - DEFAULT_THRESHOLD).abs() < THRESHOLD_MARGIN
            {
                near += 1;
                eprintln!(
                    "near the threshold: {} – {}: ours {ours:.5}, dlib {dlib:.5}",
                    a.name, b.name
                );
                continue;
            }
            if (ours < DEFAULT_THRESHOLD) != (dlib < DEFAULT_THRESHOLD) {
                disagree.push(format!(
                    "{} – {}: ours {ours:.5}, dlib {dlib:.5}",
                    a.name, b.name
                ));
            }
        }
    }
    eprintln!("{pairs} ORL pairs: {near} within {THRESHOLD_MARGIN} of the threshold {DEFAULT_THRESHOLD} (not compared), {} decided differently", disagree.len());
    assert_eq!(pairs, 400 * 399 / 2);
    assert!(disagree.is_empty(), "{disagree:#?}");
}
