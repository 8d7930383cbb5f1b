//! OpenCV's `CascadeClassifier::detectMultiScale` (CPU path, 4.x): the
//! image is shrunk by each scale factor with `INTER_LINEAR_EXACT`, the
//! 24-pixel window slides over each level (every 2nd pixel below scale 2,
//! skipping on after a first-stage rejection), and the candidates are
//! grouped and clipped to the image.

use image::GrayImage;
use rayon::prelude::*;

use super::cascade::Cascade;
use super::evaluate::{PlacedCascade, Verdict};
use super::group::{group_rectangles, Rect};
use super::integral::Integral;
use super::resize::resize_linear_exact;

/// `groupRectangles`' `eps` in `detectMultiScale`.
const GROUP_EPS: f64 = 0.2;

fn round_f32(v: f32) -> i32 {
    v.round_ties_even() as i32
}

/// The scale factors searched: every power of `scale_factor` whose window
/// fits the image, less those whose window is under `min_size`; when that
/// leaves none, the one whose window is nearest `min_size` (OpenCV's rule
/// for a minimum size between two scales).
fn scales(
    cascade: &Cascade,
    width: u32,
    height: u32,
    scale_factor: f64,
    min_size: (u32, u32),
) -> Vec<f32> {
    let (ww, wh) = (cascade.window_width as f64, cascade.window_height as f64);
    let mut all = Vec::new();
    let mut factor = 1f64;
    loop {
        let (w, h) = (
            (ww * factor).round_ties_even(),
            (wh * factor).round_ties_even(),
        );
        if w > width as f64 || h > height as f64 {
            break;
        }
        all.push(factor as f32);
        factor *= scale_factor;
    }
    let window = |s: f32| {
        (
            round_f32(cascade.window_width as f32 * s),
            round_f32(cascade.window_height as f32 * s),
        )
    };
    let (min_w, min_h) = (min_size.0 as i32, min_size.1 as i32);
    let chosen: Vec<f32> = all
        .iter()
        .copied()
        .filter(|&s| {
            let (w, h) = window(s);
            w >= min_w && h >= min_h
        })
        .collect();
    if !chosen.is_empty() || all.is_empty() {
        return chosen;
    }
    let distance = |s: f32| {
        let (w, h) = window(s);
        ((min_w - w) * (min_w - w) + (min_h - h) * (min_h - h)) as f64
    };
    let mut nearest = 0;
    for (i, &s) in all.iter().enumerate() {
        if distance(all[nearest]) > distance(s) {
            nearest = i;
        }
    }
    vec![all[nearest]]
}

/// One pyramid level.
struct Level {
    scale: f32,
    /// The shrunk image's size.
    width: usize,
    height: usize,
    step: usize,
}

/// `detectMultiScale(img, objects, scale_factor, min_neighbors, 0,
/// min_size)` with no maximum size.
pub fn detect_multi_scale(
    cascade: &Cascade,
    img: &GrayImage,
    scale_factor: f64,
    min_neighbors: i32,
    min_size: (u32, u32),
) -> Vec<Rect> {
    let (w, h) = img.dimensions();
    if w < cascade.window_width || h < cascade.window_height {
        return Vec::new();
    }
    let levels: Vec<Level> = scales(cascade, w, h, scale_factor, min_size)
        .into_iter()
        .map(|scale| Level {
            scale,
            width: round_f32(w as f32 / scale) as usize,
            height: round_f32(h as f32 / scale) as usize,
            step: if scale >= 2.0 { 1 } else { 2 },
        })
        .collect();
    let Some(first) = levels.first() else {
        return Vec::new();
    };
    let (win_w, win_h) = (
        cascade.window_width as usize,
        cascade.window_height as usize,
    );
    // OpenCV splits each level's rows into as many stripes as the first
    // level has 32-pixel columns; rounding the stripes to whole steps can
    // leave the last rows of a level unvisited, and so it must here too.
    let stripes = (first.width + 1).saturating_sub(win_w).div_ceil(32);
    let candidates: Vec<Rect> = levels
        .par_iter()
        .flat_map_iter(|level| {
            let work_w = (level.width + 1).saturating_sub(win_w);
            let work_h = (level.height + 1).saturating_sub(win_h);
            let stripe = ((work_h / level.step + stripes - 1) / stripes.max(1)).max(1) * level.step;
            let rows = (stripes * stripe).min(work_h);
            let small = resize_linear_exact(img, level.width as u32, level.height as u32);
            let integral = Integral::new(&small);
            let placed = PlacedCascade::new(cascade, integral.stride);
            let win = (
                round_f32(cascade.window_width as f32 * level.scale),
                round_f32(cascade.window_height as f32 * level.scale),
            );
            let mut found = Vec::new();
            for y in (0..rows).step_by(level.step) {
                let mut x = 0;
                while x < work_w {
                    match placed.evaluate(&integral, y * integral.stride + x) {
                        Verdict::Face => found.push(Rect {
                            x: round_f32(x as f32 * level.scale),
                            y: round_f32(y as f32 * level.scale),
                            width: win.0,
                            height: win.1,
                        }),
                        Verdict::RejectedAt(0) => x += level.step,
                        _ => {}
                    }
                    x += level.step;
                }
            }
            found
        })
        .collect();
    group_rectangles(&candidates, min_neighbors, GROUP_EPS)
        .into_iter()
        .filter_map(|r| clip(r, w as i32, h as i32))
        .collect()
}

/// OpenCV's `clipObjects`: the part inside the image, if any.
fn clip(r: Rect, width: i32, height: i32) -> Option<Rect> {
    let x0 = r.x.max(0);
    let y0 = r.y.max(0);
    let x1 = (r.x + r.width).min(width);
    let y1 = (r.y + r.height).min(height);
    (x1 > x0 && y1 > y0).then_some(Rect {
        x: x0,
        y: y0,
        width: x1 - x0,
        height: y1 - y0,
    })
}
