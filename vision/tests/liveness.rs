//! The head-turn challenge on real landmarks (dlib's 5-point model on ORL
//! faces in kiosk-sized frames): what must be refused, and what must pass.
//!
//! The live sequences are one person's ORL photos in an order whose head
//! pose turns, as seen by eye (s1/1 faces the camera, s1/2 and s1/5 have
//! the nose towards the image's right: the person's left; s23/4, 6 and 9
//! towards the image's left: the person's right). Needs the model files.

mod orl;

use std::time::Duration;

use kubevision_vision::detect::FaceDetector;
use kubevision_vision::embedding::{Alignment, DlibFrame, Embedder, Landmarks};
use kubevision_vision::liveness::{judge, ChallengeRule, Sample, Turn, Verdict};
use kubevision_vision::GrayImage;

use orl::sign_in_frame;

struct Tracker {
    embedder: Embedder,
    cascade: FaceDetector,
}

impl Tracker {
    fn new() -> Self {
        Self {
            embedder: Embedder::load().expect("dlib models: run scripts/setup-models"),
            cascade: FaceDetector::from_default_locations().unwrap(),
        }
    }

    fn landmarks(&mut self, frame: &GrayImage) -> Landmarks {
        let m = DlibFrame::new(frame);
        let b = self.cascade.detect(frame).unwrap().into_iter().next();
        let b = self
            .embedder
            .face_box(&m, Alignment::Cascade, b)
            .expect("a face in every test frame");
        self.embedder.landmarks(&m, b).landmarks
    }

    /// Frames 250 ms apart, as the kiosk's camera delivers them.
    fn track(&mut self, frames: &[GrayImage]) -> Vec<Sample> {
        frames
            .iter()
            .enumerate()
            .map(|(i, f)| Sample {
                at: Duration::from_millis(250 * i as u64),
                landmarks: self.landmarks(f),
            })
            .collect()
    }
}

fn photos(person: u32, order: &[u32]) -> Vec<GrayImage> {
    order
        .iter()
        .map(|&i| sign_in_frame(&orl::photo(person, i)))
        .collect()
}

/// `frame` warped by x' = A (x - c) + c + t about the frame's centre c,
/// bilinear, mid-grey outside: a print held up and moved.
fn warp(frame: &GrayImage, a: [[f64; 2]; 2], t: (f64, f64)) -> GrayImage {
    let (cx, cy) = (
        f64::from(frame.width()) / 2.0,
        f64::from(frame.height()) / 2.0,
    );
    let det = a[0][0] * a[1][1] - a[0][1] * a[1][0];
    let inv = [
        [a[1][1] / det, -a[0][1] / det],
        [-a[1][0] / det, a[0][0] / det],
    ];
    GrayImage::from_fn(frame.width(), frame.height(), |x, y| {
        let (u, v) = (f64::from(x) - cx - t.0, f64::from(y) - cy - t.1);
        let sx = inv[0][0] * u + inv[0][1] * v + cx;
        let sy = inv[1][0] * u + inv[1][1] * v + cy;
        let (x0, y0) = (sx.floor(), sy.floor());
        if x0 < 0.0
            || y0 < 0.0
            || x0 + 1.0 >= f64::from(frame.width())
            || y0 + 1.0 >= f64::from(frame.height())
        {
            return image::Luma([128]);
        }
        let (fx, fy) = (sx - x0, sy - y0);
        let p = |dx: u32, dy: u32| f64::from(frame.get_pixel(x0 as u32 + dx, y0 as u32 + dy)[0]);
        let v = (p(0, 0) * (1.0 - fx) + p(1, 0) * fx) * (1.0 - fy)
            + (p(0, 1) * (1.0 - fx) + p(1, 1) * fx) * fy;
        image::Luma([v.round() as u8])
    })
}

/// A linear map and a shift (see [`warp`]).
type Pose = ([[f64; 2]; 2], (f64, f64));

fn similarity(angle_deg: f64, scale: f64) -> [[f64; 2]; 2] {
    let (s, c) = angle_deg.to_radians().sin_cos();
    [[scale * c, -scale * s], [scale * s, scale * c]]
}

/// The largest change of the yaw cue from the first sample.
fn largest_turn(track: &[Sample]) -> f64 {
    let first = track[0].landmarks.yaw_cue();
    track
        .iter()
        .map(|s| (s.landmarks.yaw_cue() - first).abs())
        .fold(0.0, f64::max)
}

#[test]
fn a_still_photo_answers_no_challenge() {
    let mut tracker = Tracker::new();
    let still = vec![sign_in_frame(&orl::photo(1, 1)); 6];
    let track = tracker.track(&still);
    for turn in [Turn::Left, Turn::Right] {
        assert_eq!(
            judge(turn, &ChallengeRule::default(), &track),
            Verdict::NoTurn
        );
    }
}

#[test]
fn a_print_moved_scaled_rotated_and_tilted_answers_no_challenge() {
    let mut tracker = Tracker::new();
    let rule = ChallengeRule::default();
    for (person, photo) in [(1, 1), (23, 1), (12, 3)] {
        let print = sign_in_frame(&orl::photo(person, photo));
        // As a hand moves a print: shifts, nearer and farther, rolled either
        // way, and turned about its vertical axis (which compresses it
        // across, the way a head turn would shift the nose, if it could).
        let poses: Vec<Pose> = vec![
            (similarity(0.0, 1.0), (0.0, 0.0)),
            (similarity(6.0, 1.1), (40.0, -15.0)),
            (similarity(-8.0, 0.9), (-50.0, 20.0)),
            (similarity(12.0, 1.25), (25.0, 30.0)),
            (similarity(-12.0, 0.8), (-30.0, -25.0)),
            ([[0.8, 0.0], [0.0, 1.0]], (10.0, 0.0)),
            ([[0.65, 0.0], [0.0, 1.0]], (-10.0, 5.0)),
        ];
        let frames: Vec<GrayImage> = poses.iter().map(|(a, t)| warp(&print, *a, *t)).collect();
        let track = tracker.track(&frames);
        let largest = largest_turn(&track);
        eprintln!("s{person}/{photo} as a moved print: largest yaw-cue change {largest:.3}");
        for turn in [Turn::Left, Turn::Right] {
            assert_eq!(
                judge(turn, &rule, &track),
                Verdict::NoTurn,
                "s{person}/{photo}, asked {turn:?}"
            );
        }
        assert!(
            largest < rule.min_turn * 0.5,
            "s{person}/{photo}: a print moved the cue by {largest:.3}"
        );
    }
}

#[test]
fn a_live_turn_answers_its_challenge_and_refuses_the_other() {
    let mut tracker = Tracker::new();
    let rule = ChallengeRule::default();
    let left = tracker.track(&photos(1, &[1, 1, 2, 5]));
    let right = tracker.track(&photos(23, &[1, 4, 6, 9]));
    assert_eq!(judge(Turn::Left, &rule, &left), Verdict::Answered);
    assert_eq!(judge(Turn::Right, &rule, &right), Verdict::Answered);
    // A sequence that turns the wrong way.
    assert_eq!(judge(Turn::Right, &rule, &left), Verdict::WrongWay);
    assert_eq!(judge(Turn::Left, &rule, &right), Verdict::WrongWay);
    // The right turn, but slower than the time limit allows.
    let slow: Vec<Sample> = left.iter().map(|s| Sample { at: s.at * 8, ..*s }).collect();
    assert_eq!(judge(Turn::Left, &rule, &slow), Verdict::TooLate);
}
