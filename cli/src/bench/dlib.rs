//! The `dlib` recogniser on this machine: what a sign-in costs, ours
//! beside dlib's own C++ (with OpenBLAS) in the same run:
//!
//! - the face box for the landmarks: our cascade's box mapped to dlib's
//!   shape (what the kiosk ships) against dlib's HOG detector;
//! - per face: our landmarks and embedding against dlib's
//!   `shape_predictor` and `get_face_encodings` on the same frame and box;
//! - top-5 search of 50 000 embeddings: [`EmbeddingGallery`] against dlib's
//!   `FaceEncoding::distance`, one template at a time;
//! - a 5-frame sign-in burst, decided: ours against the same burst with
//!   dlib's landmarks and embedding (target ≤ 120 ms);
//! - the peak resident memory of a process that loads the models and
//!   decides bursts, as the kiosk's recognition does (budget 300 MB).

use std::time::{Duration, Instant};

use dlib_face_recognition::{
    FaceEncoderNetwork, FaceEncoderTrait, FaceEncoding, ImageMatrix, LandmarkPredictor,
    LandmarkPredictorTrait, Rectangle,
};
use vision::burst::{decide, BurstRule};
use vision::detect::{FaceBox, FaceDetector};
use vision::embedding::models::{self, ModelFile};
use vision::embedding::{
    cascade_to_dlib, DlibFrame, Embedder, Embedding, EmbeddingGallery, DEFAULT_THRESHOLD,
};
use vision::GrayImage;

use super::data::{frame, Orl};
use super::{median_ms, Row};

/// A measure with a target rather than a peer.
pub struct Budget {
    pub measure: String,
    pub value: f64,
    pub target: String,
}

/// Frames in a sign-in burst (the kiosk's `BURST`).
const BURST: usize = 5;

/// dlib's own landmarks and network, the peer.
struct Dlib {
    predictor: LandmarkPredictor,
    network: FaceEncoderNetwork,
}

impl Dlib {
    fn load() -> anyhow::Result<Self> {
        let open = |f| models::locate(f);
        Ok(Self {
            predictor: LandmarkPredictor::open(open(ModelFile::Landmarks)?)
                .map_err(anyhow::Error::msg)?,
            network: FaceEncoderNetwork::open(open(ModelFile::Encoder)?)
                .map_err(anyhow::Error::msg)?,
        })
    }

    fn matrix(frame: &GrayImage) -> ImageMatrix {
        let rgb: Vec<u8> = frame.as_raw().iter().flat_map(|&v| [v, v, v]).collect();
        // SAFETY: `rgb` holds width × height RGB triples and outlives the
        // call, which copies them.
        unsafe {
            ImageMatrix::new(
                frame.width() as usize,
                frame.height() as usize,
                rgb.as_ptr(),
            )
        }
    }

    fn landmarks(&self, m: &ImageMatrix, b: FaceBox) -> dlib_face_recognition::FaceLandmarks {
        let rect = Rectangle {
            left: i64::from(b.x),
            top: i64::from(b.y),
            right: i64::from(b.x + b.width) - 1,
            bottom: i64::from(b.y + b.height) - 1,
        };
        self.predictor.face_landmarks(m, &rect)
    }

    fn embed(&self, m: &ImageMatrix, b: FaceBox) -> anyhow::Result<Embedding> {
        let landmarks = self.landmarks(m, b);
        let e = self
            .network
            .get_face_encodings(m, std::slice::from_ref(&landmarks), 0);
        let values: Vec<f32> = e[0].as_ref().iter().map(|&v| v as f32).collect();
        Ok(Embedding::new(&values)?)
    }
}

pub fn run(orl: &Orl, frames: usize, size: usize) -> anyhow::Result<(Vec<Row>, Vec<Budget>)> {
    let embedder = Embedder::load()?;
    let dlib = Dlib::load()?;
    let mut cascade = FaceDetector::from_default_locations()?;
    let frames: Vec<GrayImage> = (0..frames.max(BURST)).map(|i| frame(orl, i)).collect();

    let mut t = Timings::default();
    for f in &frames {
        let start = Instant::now();
        let Some(b) = cascade.detect(f)?.first().map(|b| cascade_to_dlib(*b)) else {
            continue;
        };
        t.cascade.push(start.elapsed());
        let m = DlibFrame::new(f);
        let start = Instant::now();
        let _ = embedder.detect(&m);
        t.hog.push(start.elapsed());

        let start = Instant::now();
        let located = embedder.landmarks(&m, b);
        t.landmarks.push(start.elapsed());
        let start = Instant::now();
        embedder.embed(&m, &located)?;
        t.embed.push(start.elapsed());

        let matrix = Dlib::matrix(f);
        let start = Instant::now();
        let theirs = dlib.landmarks(&matrix, b);
        t.dlib_landmarks.push(start.elapsed());
        let start = Instant::now();
        dlib.network
            .get_face_encodings(&matrix, std::slice::from_ref(&theirs), 0);
        t.dlib_embed.push(start.elapsed());
    }
    anyhow::ensure!(!t.cascade.is_empty(), "no face found in the bench frames");
    let per_s = |ms: f64| 1e3 / ms;
    let both = |a: &[Duration], b: &[Duration]| -> Vec<Duration> {
        a.iter().zip(b).map(|(x, y)| *x + *y).collect()
    };
    let mut rows = vec![
        Row {
            measure:
                "dlib: face box for the landmarks, 640×480 (frames/s); peer: dlib's HOG detector"
                    .into(),
            ours: per_s(median_ms(t.cascade.clone())),
            peer: per_s(median_ms(t.hog.clone())),
            higher_is_better: true,
        },
        Row {
            measure: "dlib: 5 landmarks, one face (ms)".into(),
            ours: median_ms(t.landmarks.clone()),
            peer: median_ms(t.dlib_landmarks.clone()),
            higher_is_better: false,
        },
        Row {
            measure: "dlib: face chip and embedding, one face (ms)".into(),
            ours: median_ms(t.embed.clone()),
            peer: median_ms(t.dlib_embed.clone()),
            higher_is_better: false,
        },
        Row {
            measure: "dlib: landmarks + embedding, one face (ms)".into(),
            ours: median_ms(both(&t.landmarks, &t.embed)),
            peer: median_ms(both(&t.dlib_landmarks, &t.dlib_embed)),
            higher_is_better: false,
        },
    ];

    // The enrolled: photos 1–5 of each ORL person.
    let mut gallery = EmbeddingGallery::new();
    let mut real = Vec::new();
    for person in 1..=40 {
        for photo in 1..=5 {
            let e = embed_photo(&embedder, &mut cascade, orl.photo(person, photo))?;
            gallery.add(person as i32, e.clone());
            real.push(e);
        }
    }
    rows.push(search(&real, size)?);

    // A burst: five frames of one face, each detected, aligned, embedded and
    // searched, then decided; by us, and with dlib's landmarks and network.
    let rule = BurstRule {
        threshold: DEFAULT_THRESHOLD,
        ..BurstRule::default()
    };
    let (mut burst_t, mut dlib_burst_t) = (Vec::new(), Vec::new());
    for burst in frames.chunks_exact(BURST) {
        let start = Instant::now();
        let mut votes = Vec::new();
        for f in burst {
            let m = DlibFrame::new(f);
            let found = cascade.detect(f)?.first().map(|b| cascade_to_dlib(*b));
            votes.push(found.and_then(|b| {
                let e = embedder.embed(&m, &embedder.landmarks(&m, b)).ok()?;
                gallery.search(&e, 1, f64::INFINITY).into_iter().next()
            }));
        }
        decide(&rule, &votes);
        burst_t.push(start.elapsed());

        let start = Instant::now();
        let mut votes = Vec::new();
        for f in burst {
            let m = Dlib::matrix(f);
            let found = cascade.detect(f)?.first().map(|b| cascade_to_dlib(*b));
            votes.push(found.and_then(|b| {
                let e = dlib.embed(&m, b).ok()?;
                gallery.search(&e, 1, f64::INFINITY).into_iter().next()
            }));
        }
        decide(&rule, &votes);
        dlib_burst_t.push(start.elapsed());
    }
    rows.push(Row {
        measure: format!(
            "dlib: sign-in decision, {BURST}-frame burst (ms); peer: dlib's landmarks and network"
        ),
        ours: median_ms(burst_t.clone()),
        peer: median_ms(dlib_burst_t),
        higher_is_better: false,
    });
    let budgets = vec![
        Budget {
            measure: "dlib: landmarks + embedding, one face (ms)".into(),
            value: median_ms(both(&t.landmarks, &t.embed)),
            target: "≤ dlib's".into(),
        },
        Budget {
            measure: format!("dlib: sign-in decision, {BURST}-frame burst (ms)"),
            value: median_ms(burst_t),
            target: "≤ 120".into(),
        },
    ];
    Ok((rows, budgets))
}

/// Per-face times of each step, ours and dlib's.
#[derive(Default)]
struct Timings {
    cascade: Vec<Duration>,
    hog: Vec<Duration>,
    landmarks: Vec<Duration>,
    embed: Vec<Duration>,
    dlib_landmarks: Vec<Duration>,
    dlib_embed: Vec<Duration>,
}

fn embed_photo(
    embedder: &Embedder,
    cascade: &mut FaceDetector,
    photo: &GrayImage,
) -> anyhow::Result<Embedding> {
    let f = vision::embedding::as_camera_frame(photo);
    let m = DlibFrame::new(&f);
    let b = cascade
        .detect(&f)?
        .first()
        .map(|b| cascade_to_dlib(*b))
        .or_else(|| embedder.detect(&m).into_iter().next())
        .ok_or_else(|| anyhow::anyhow!("no face in an ORL photo"))?;
    Ok(embedder.embed(&m, &embedder.landmarks(&m, b))?)
}

/// Top-5 of `size` embeddings: ours against dlib's distance in a loop. The
/// gallery repeats the real ORL embeddings, copy `k` moved by `k` × 10⁻³
/// in one value (a search's cost does not depend on the values, and the
/// nearest template stays unambiguous), 50 templates a person as a 50-frame
/// enrolment gives.
fn search(real: &[Embedding], size: usize) -> anyhow::Result<Row> {
    let mut gallery = EmbeddingGallery::new();
    let mut theirs = Vec::with_capacity(size);
    let label = |i: usize| (i / 50) as i32;
    for i in 0..size {
        let mut v = real[i % real.len()].values().to_vec();
        v[0] += (i / real.len()) as f32 * 1e-3;
        gallery.add(label(i), Embedding::new(&v)?);
        theirs.push(
            FaceEncoding::from_vec(&v.iter().map(|&x| f64::from(x)).collect())
                .map_err(|_| anyhow::anyhow!("dlib refused a 128-value encoding"))?,
        );
    }
    let probes: Vec<&Embedding> = real.iter().step_by(17).take(10).collect();
    let (mut ours_t, mut dlib_t): (Vec<Duration>, Vec<Duration>) = (Vec::new(), Vec::new());
    for p in probes {
        let start = Instant::now();
        let ours = gallery.search(p, 5, f64::INFINITY);
        ours_t.push(start.elapsed());
        let probe = FaceEncoding::from_vec(&p.values().iter().map(|&x| f64::from(x)).collect())
            .map_err(|_| anyhow::anyhow!("dlib refused a 128-value encoding"))?;
        let start = Instant::now();
        let mut best: Vec<(f64, i32)> = Vec::new();
        for (i, t) in theirs.iter().enumerate() {
            let (d, label) = (probe.distance(t), label(i));
            match best.iter_mut().find(|(_, l)| *l == label) {
                Some(b) => b.0 = b.0.min(d),
                None => best.push((d, label)),
            }
        }
        best.sort_by(|a, b| a.0.total_cmp(&b.0));
        dlib_t.push(start.elapsed());
        anyhow::ensure!(
            ours.first().map(|m| m.label) == best.first().map(|b| b.1),
            "our search and dlib's disagree on the nearest person: {:?} against {:?}",
            &ours[..ours.len().min(3)],
            &best[..best.len().min(3)]
        );
    }
    Ok(Row {
        measure: format!("dlib: top-5 search, {size} embeddings (ms); peer: dlib distance loop"),
        ours: median_ms(ours_t),
        peer: median_ms(dlib_t),
        higher_is_better: false,
    })
}

/// The peak resident memory of this process so far (Linux's VmHWM), in MB.
pub fn peak_resident_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}
