//! The `dlib` recogniser on this machine: what a sign-in costs, with dlib's
//! own way beside ours where there is one.
//!
//! - the face box for the landmarks: our cascade's box mapped to dlib's
//!   shape (what the kiosk ships) against dlib's HOG detector;
//! - top-5 search of 50 000 embeddings: [`EmbeddingGallery`] against dlib's
//!   `FaceEncoding::distance`, one template at a time;
//! - per face: landmarks and the embedding (dlib's, no peer);
//! - a 5-frame sign-in burst, decided (target ≤ 500 ms);
//! - the peak resident memory of a process that loads the models and
//!   decides bursts, as the kiosk's recognition does (budget 300 MB).

use std::time::{Duration, Instant};

use dlib_face_recognition::FaceEncoding;
use vision::burst::{decide, BurstRule};
use vision::detect::FaceDetector;
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

pub fn run(orl: &Orl, frames: usize, size: usize) -> anyhow::Result<(Vec<Row>, Vec<Budget>)> {
    let embedder = Embedder::load()?;
    let mut cascade = FaceDetector::from_default_locations()?;
    let frames: Vec<GrayImage> = (0..frames.max(BURST)).map(|i| frame(orl, i)).collect();

    let (mut cascade_t, mut hog_t, mut landmarks_t, mut embed_t) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for f in &frames {
        let m = DlibFrame::new(f);
        let start = Instant::now();
        let Some(b) = cascade.detect(f)?.first().map(|b| cascade_to_dlib(*b)) else {
            continue;
        };
        cascade_t.push(start.elapsed());
        let start = Instant::now();
        let _ = embedder.detect(&m);
        hog_t.push(start.elapsed());
        let start = Instant::now();
        let located = embedder.landmarks(&m, b);
        landmarks_t.push(start.elapsed());
        let start = Instant::now();
        embedder.embed(&m, &located)?;
        embed_t.push(start.elapsed());
    }
    anyhow::ensure!(!cascade_t.is_empty(), "no face found in the bench frames");
    let per_s = |ms: f64| 1e3 / ms;
    let mut rows = vec![Row {
        measure: "dlib: face box for the landmarks, 640×480 (frames/s); peer: dlib's HOG detector"
            .into(),
        ours: per_s(median_ms(cascade_t)),
        peer: per_s(median_ms(hog_t)),
        higher_is_better: true,
    }];

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
    // searched, then decided.
    let rule = BurstRule {
        threshold: DEFAULT_THRESHOLD,
        ..BurstRule::default()
    };
    let mut burst_t = Vec::new();
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
    }
    let budgets = vec![
        Budget {
            measure: "dlib: landmarks, one face (ms)".into(),
            value: median_ms(landmarks_t),
            target: "".into(),
        },
        Budget {
            measure: "dlib: embedding, one face (ms)".into(),
            value: median_ms(embed_t),
            target: "".into(),
        },
        Budget {
            measure: format!("dlib: sign-in decision, {BURST}-frame burst (ms)"),
            value: median_ms(burst_t),
            target: "≤ 500".into(),
        },
    ];
    Ok((rows, budgets))
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
