//! A continuous head turn synthesised from two photos of one person, and
//! the prints an attacker holds up instead. Shared by `vision/tests/liveness.rs`
//! and `hmi/tests/dlib_kiosk.rs` (by path): only `image` types and plain
//! points, so either crate's tests can use it.
//!
//! There is no video of a person turning in the test data. A turn is made
//! by morphing along the landmarks: the frontal photo and the turned one
//! are each warped so that their five landmarks sit at a blend of both
//! poses, and the two warped images are cross-dissolved with the same
//! weight. Each step moves every landmark by a fraction of the turn, as a
//! head turning in front of a camera does from frame to frame. Such a
//! synthetic sequence is, by construction, what a video made for the
//! challenge looks like (the victim turning, recorded and played back):
//! the challenge cannot tell the two apart, and a test that passes it
//! shows the residual risk, not a weakness of the test.
#![allow(dead_code)] // each test binary uses part of this module

use image::{GrayImage, Luma};

/// A point in image coordinates.
pub type Pt = (f64, f64);

/// A rectangle `(x0, y0, x1, y1)`, `x1` and `y1` excluded: where a photo
/// lies in its frame. Pixels outside it are left as they are.
pub type Region = (u32, u32, u32, u32);

/// Where `as_camera_frame` puts a 92 × 112 ORL photo in a 640 × 480 frame
/// (3× and centred).
pub const ORL_IN_FRAME: Region = (182, 72, 458, 408);

/// The region's corners and edge midpoints: anchors that keep the photo's
/// border where it is while the face inside moves.
fn anchors(r: Region) -> Vec<Pt> {
    let (x0, y0) = (f64::from(r.0), f64::from(r.1));
    let (x1, y1) = (f64::from(r.2 - 1), f64::from(r.3 - 1));
    let (xm, ym) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
    vec![
        (x0, y0),
        (xm, y0),
        (x1, y0),
        (x0, ym),
        (x1, ym),
        (x0, y1),
        (xm, y1),
        (x1, y1),
    ]
}

/// Bilinear sample, the region's border colour outside it.
fn sample(img: &GrayImage, x: f64, y: f64) -> f64 {
    let (w, h) = (f64::from(img.width()), f64::from(img.height()));
    let x = x.clamp(0.0, w - 1.001);
    let y = y.clamp(0.0, h - 1.001);
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let p = |dx: u32, dy: u32| f64::from(img.get_pixel(x0 as u32 + dx, y0 as u32 + dy)[0]);
    (p(0, 0) * (1.0 - fx) + p(1, 0) * fx) * (1.0 - fy) + (p(0, 1) * (1.0 - fx) + p(1, 1) * fx) * fy
}

/// Where, in the source, the output pixel `v` comes from: a moving least
/// squares affine map (Schaefer et al. 2006) taking the output's control
/// points `to` onto the source's `from`, weighted by inverse squared
/// distance. Smooth, and exact at the control points.
fn source_of(v: Pt, to: &[Pt], from: &[Pt]) -> Pt {
    let mut sw = 0.0;
    let (mut qx, mut qy, mut px, mut py) = (0.0, 0.0, 0.0, 0.0);
    let weights: Vec<f64> = to
        .iter()
        .map(|q| 1.0 / ((q.0 - v.0).powi(2) + (q.1 - v.1).powi(2) + 1e-6))
        .collect();
    for ((q, p), w) in to.iter().zip(from).zip(&weights) {
        sw += w;
        qx += w * q.0;
        qy += w * q.1;
        px += w * p.0;
        py += w * p.1;
    }
    let (qx, qy, px, py) = (qx / sw, qy / sw, px / sw, py / sw);
    // A = Σ w q̂ᵀq̂ (2×2), B = Σ w q̂ᵀp̂ (2×2); M = A⁻¹ B.
    let (mut a11, mut a12, mut a22) = (0.0, 0.0, 0.0);
    let (mut b11, mut b12, mut b21, mut b22) = (0.0, 0.0, 0.0, 0.0);
    for ((q, p), w) in to.iter().zip(from).zip(&weights) {
        let (hx, hy) = (q.0 - qx, q.1 - qy);
        let (gx, gy) = (p.0 - px, p.1 - py);
        a11 += w * hx * hx;
        a12 += w * hx * hy;
        a22 += w * hy * hy;
        b11 += w * hx * gx;
        b12 += w * hx * gy;
        b21 += w * hy * gx;
        b22 += w * hy * gy;
    }
    let det = a11 * a22 - a12 * a12;
    let (i11, i12, i22) = (a22 / det, -a12 / det, a11 / det);
    let (m11, m12) = (i11 * b11 + i12 * b21, i11 * b12 + i12 * b22);
    let (m21, m22) = (i12 * b11 + i22 * b21, i12 * b12 + i22 * b22);
    let (dx, dy) = (v.0 - qx, v.1 - qy);
    (dx * m11 + dy * m21 + px, dx * m12 + dy * m22 + py)
}

/// `img` warped inside `region` so that its points `from` land on `to`.
fn warp(img: &GrayImage, region: Region, from: &[Pt], to: &[Pt]) -> Vec<f64> {
    let mut from = from.to_vec();
    let mut to = to.to_vec();
    from.extend(anchors(region));
    to.extend(anchors(region));
    let mut out = Vec::with_capacity(((region.2 - region.0) * (region.3 - region.1)) as usize);
    for y in region.1..region.3 {
        for x in region.0..region.2 {
            let (sx, sy) = source_of((f64::from(x), f64::from(y)), &to, &from);
            out.push(sample(img, sx, sy));
        }
    }
    out
}

/// The frame a fraction `t` (0: `a`, 1: `b`) of the way from photo frame
/// `a` (landmarks `la`) to photo frame `b` (landmarks `lb`): both warped to
/// the blended landmarks and cross-dissolved.
pub fn between(
    a: &GrayImage,
    la: &[Pt],
    b: &GrayImage,
    lb: &[Pt],
    region: Region,
    t: f64,
) -> GrayImage {
    let mid: Vec<Pt> = la
        .iter()
        .zip(lb)
        .map(|(p, q)| (p.0 + t * (q.0 - p.0), p.1 + t * (q.1 - p.1)))
        .collect();
    let wa = warp(a, region, la, &mid);
    let wb = warp(b, region, lb, &mid);
    let mut out = a.clone();
    let width = (region.2 - region.0) as usize;
    for (i, (va, vb)) in wa.iter().zip(&wb).enumerate() {
        let (x, y) = (region.0 + (i % width) as u32, region.1 + (i / width) as u32);
        let v = (1.0 - t) * va + t * vb;
        out.put_pixel(x, y, Luma([v.round().clamp(0.0, 255.0) as u8]));
    }
    out
}

/// A turn from `a` to `b` in `steps` equal steps: the frames strictly
/// between them (`steps - 1` of them).
pub fn turn(
    a: &GrayImage,
    la: &[Pt],
    b: &GrayImage,
    lb: &[Pt],
    region: Region,
    steps: usize,
) -> Vec<GrayImage> {
    (1..steps)
        .map(|k| between(a, la, b, lb, region, k as f64 / steps as f64))
        .collect()
}

/// The frame mirrored left to right: a turned photo printed reversed
/// answers the other direction.
pub fn mirror(frame: &GrayImage) -> GrayImage {
    image::imageops::flip_horizontal(frame)
}

/// What a camera adds to any frame: the frame shifted by `(dx, dy)` whole
/// pixels (a head or a hand is never perfectly still) and sensor noise of
/// up to `noise` grey levels, the same for the same `seed`.
pub fn camera(frame: &GrayImage, dx: i32, dy: i32, noise: u8, seed: u64) -> GrayImage {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let (w, h) = (frame.width() as i32, frame.height() as i32);
    GrayImage::from_fn(frame.width(), frame.height(), |x, y| {
        let (sx, sy) = (x as i32 - dx, y as i32 - dy);
        let v = if sx >= 0 && sy >= 0 && sx < w && sy < h {
            i32::from(frame.get_pixel(sx as u32, sy as u32)[0])
        } else {
            128
        };
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let n = if noise == 0 {
            0
        } else {
            ((state >> 33) % (2 * u64::from(noise) + 1)) as i32 - i32::from(noise)
        };
        Luma([(v + n).clamp(0, 255) as u8])
    })
}
