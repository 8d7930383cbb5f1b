//! The chi-square distance of OpenCV's LBPH, and a lower bound for pruning.
//!
//! OpenCV compares histograms with `compareHist(HISTCMP_CHISQR_ALT)`:
//! `2 Σ (a−b)² / (a+b)` over the normalised bins. When both templates come
//! from images of the same size (always, for the kiosk's normalised crops)
//! every bin is `count / n`, so the distance is `(2/n) Σ (ca−cb)² / (ca+cb)`
//! over small integers: exact inputs, one rounding a term. Other pairs take
//! OpenCV's own float path.
//!
//! The matcher must not evaluate every template in full. Merging bins can
//! only lower a chi-square (Titu's lemma: `Σ u²/v ≥ (Σu)²/Σv` within each
//! group), and so can saturating a count at 255, so the chi-square of two
//! *summaries* (each cell's bins merged into groups) is a lower bound of the
//! full distance. The groups are the "uniform" patterns (at most two 0/1
//! transitions around the circle: edges, corners, spots), each its own group,
//! and all the other patterns together: 59 groups for 8 neighbours, a
//! quarter of the bins and three quarters of the distance on faces.

use multiversion::multiversion;

use super::template::{opencv_scale, Layout, Template, TemplateRef};

/// Summary groups a cell, padded to whole 16-lane vectors.
pub(super) fn padded_groups(layout: Layout) -> usize {
    let p = layout.neighbors as usize;
    let groups = (p * (p - 1) + 3).min(layout.bins());
    groups.div_ceil(16) * 16
}

/// Summary bytes a template.
pub fn summary_len(layout: Layout) -> usize {
    layout.cells() * padded_groups(layout)
}

/// The group of each LBP code: uniform codes numbered in order, the rest last.
pub(super) fn groups(layout: Layout) -> Vec<usize> {
    let p = layout.neighbors;
    if (p * (p - 1) + 3) as usize >= layout.bins() {
        return (0..layout.bins()).collect(); // few bins: no merging needed
    }
    let mask = (1u32 << p) - 1;
    let mut next = 0;
    let mut map: Vec<usize> = (0..layout.bins() as u32)
        .map(|c| {
            let rotated = ((c >> 1) | ((c & 1) << (p - 1))) & mask;
            if (c ^ rotated).count_ones() <= 2 {
                next += 1;
                next - 1
            } else {
                usize::MAX
            }
        })
        .collect();
    map.iter_mut()
        .filter(|g| **g == usize::MAX)
        .for_each(|g| *g = next);
    map
}

/// A template's summary: per cell, its counts summed by group, saturated to a byte.
pub fn summary(layout: Layout, t: TemplateRef<'_>) -> Vec<u8> {
    let (map, width) = (groups(layout), padded_groups(layout));
    let mut out = vec![0u32; summary_len(layout)];
    for (cell, counts) in t.exact_counts().chunks_exact(layout.bins()).enumerate() {
        for (code, &c) in counts.iter().enumerate() {
            out[cell * width + map[code]] += c;
        }
    }
    out.into_iter().map(|c| c.min(255) as u8).collect()
}

/// A lower bound of the distance between two templates of the same cell
/// size, from their summaries; `f64::INFINITY` once it exceeds `give_up_above`.
pub fn lower_bound(
    layout: Layout,
    a: &[u8],
    b: &[u8],
    cell_pixels: u32,
    give_up_above: f64,
) -> f64 {
    chi_square_counts(a, b, padded_groups(layout), cell_pixels, give_up_above)
}

/// What [`chi_square`] compares: a borrowed template, or an owned one (as
/// [`super::Gallery::template`] unpacks it).
pub trait Counts {
    fn counts(&self) -> TemplateRef<'_>;
}

impl Counts for TemplateRef<'_> {
    fn counts(&self) -> TemplateRef<'_> {
        *self
    }
}

impl Counts for Template {
    fn counts(&self) -> TemplateRef<'_> {
        self.as_ref()
    }
}

/// Chi-square distance between two templates of one layout, as OpenCV's
/// LBPH computes it. Returns `f64::INFINITY` as soon as the partial sum
/// exceeds `give_up_above` (every term is non-negative, so it can only grow).
pub fn chi_square(layout: Layout, a: impl Counts, b: impl Counts, give_up_above: f64) -> f64 {
    let (a, b) = (a.counts(), b.counts());
    if a.cell_pixels == b.cell_pixels
        && a.overflow.is_empty()
        && b.overflow.is_empty()
        && a.cell_pixels > 0
    {
        chi_square_counts(
            a.counts,
            b.counts,
            layout.bins(),
            a.cell_pixels,
            give_up_above,
        )
    } else {
        chi_square_opencv(a, b)
    }
}

/// Same-size templates: integer counts, one byte a bin.
#[multiversion(targets("x86_64+avx512f+avx512bw", "x86_64+avx2+fma", "aarch64+neon"))]
fn chi_square_counts(a: &[u8], b: &[u8], bins: usize, cell_pixels: u32, give_up_above: f64) -> f64 {
    let cells = a.chunks_exact(bins).zip(b.chunks_exact(bins));
    sum_cells(
        cells.map(|(ca, cb)| cell_sum(ca, cb)),
        cell_pixels,
        give_up_above,
    )
}

/// The distance from its cells' sums, in cell order: `(2/n) Σ`, or
/// `f64::INFINITY` as soon as the partial sum passes `give_up_above`. The
/// dense and the packed distance both end here, so they agree to the bit.
#[inline(always)]
pub(super) fn sum_cells(
    cells: impl Iterator<Item = f64>,
    cell_pixels: u32,
    give_up_above: f64,
) -> f64 {
    let factor = 2.0 / cell_pixels as f64;
    let limit = give_up_above / factor;
    let mut total = 0.0f64;
    for cell in cells {
        total += cell;
        if total > limit {
            return f64::INFINITY;
        }
    }
    total * factor
}

/// Lanes of [`cell_sum`]'s accumulator.
pub(super) const LANES: usize = 16;

/// One cell's `Σ (ca−cb)² / (ca+cb)` over integer counts. Bin `i` goes to
/// f32 lane `i % 16`, the bins in order, and the lanes are summed in f64.
/// Float addition is not associative, so this order *is* the distance:
/// every same-size distance (the dense one here, the packed gallery's) adds
/// its cells through this one function and so agrees to the last bit.
#[inline(always)]
pub(super) fn cell_sum(ca: &[u8], cb: &[u8]) -> f64 {
    let mut acc = [0.0f32; LANES];
    for (xa, xb) in ca.chunks_exact(LANES).zip(cb.chunks_exact(LANES)) {
        for l in 0..LANES {
            let (x, y) = (xa[l] as f32, xb[l] as f32);
            let d = x - y;
            // Both zero: 0/1 = 0, as OpenCV's "skip when a+b is 0".
            acc[l] += d * d / (x + y).max(1.0);
        }
    }
    // Fewer bins than lanes (neighbours < 4): no chunk above; do them singly.
    let tail = ca.len() - ca.len() % LANES;
    for (&x, &y) in ca[tail..].iter().zip(&cb[tail..]) {
        let (x, y) = (x as f32, y as f32);
        acc[0] += (x - y) * (x - y) / (x + y).max(1.0);
    }
    acc.iter().map(|&v| v as f64).sum::<f64>()
}

/// OpenCV's `compareHist(h1, h2, HISTCMP_CHISQR_ALT)` on the float
/// histograms, with its exact arithmetic: differences and sums in float,
/// the quotient and the accumulation in double.
fn chi_square_opencv(a: TemplateRef<'_>, b: TemplateRef<'_>) -> f64 {
    let (sa, sb) = (opencv_scale(a.cell_pixels), opencv_scale(b.cell_pixels));
    let (ca, cb) = (a.exact_counts(), b.exact_counts());
    let mut result = 0.0f64;
    for (&x, &y) in ca.iter().zip(&cb) {
        let (h1, h2) = (x as f32 * sa, y as f32 * sb);
        let diff = (h1 - h2) as f64;
        let sum = (h1 + h2) as f64;
        if sum.abs() > f64::EPSILON {
            result += diff * diff / sum;
        }
    }
    result * 2.0
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::lbph::{LbphParams, Template};
    use image::GrayImage;

    /// A textured image, distinct for each seed.
    pub(crate) fn face_image(seed: u32, w: u32, h: u32) -> GrayImage {
        GrayImage::from_fn(w, h, |x, y| {
            image::Luma([((x * 13 + seed) ^ (y * 7 + seed * x)) as u8])
        })
    }

    /// [`face_image`]'s template with the default parameters.
    pub(crate) fn face(seed: u32, w: u32, h: u32) -> Template {
        Template::extract(&LbphParams::default(), &face_image(seed, w, h)).unwrap()
    }

    #[test]
    fn integer_path_agrees_with_opencv_arithmetic() {
        let layout = Layout::of(&LbphParams::default());
        for seed in 0..5 {
            let (a, b) = (face(seed, 92, 112), face(seed + 10, 92, 112));
            let fast = chi_square(layout, a.as_ref(), b.as_ref(), f64::INFINITY);
            let reference = chi_square_opencv(a.as_ref(), b.as_ref());
            assert!(
                (fast - reference).abs() <= 1e-6 * reference,
                "{fast} vs {reference}"
            );
            assert_eq!(
                chi_square(layout, a.as_ref(), a.as_ref(), f64::INFINITY),
                0.0
            );
        }
    }

    #[test]
    fn lower_bound_never_exceeds_distance() {
        let layout = Layout::of(&LbphParams::default());
        for seed in 0..20 {
            let (a, b) = (face(seed, 92, 112), face(seed * 3 + 1, 92, 112));
            let d = chi_square(layout, a.as_ref(), b.as_ref(), f64::INFINITY);
            let lb = lower_bound(
                layout,
                &summary(layout, a.as_ref()),
                &summary(layout, b.as_ref()),
                a.cell_pixels(),
                f64::INFINITY,
            );
            assert!(lb <= d * (1.0 + 1e-9), "bound {lb} above distance {d}");
            assert!(lb > 0.0);
        }
    }

    #[test]
    fn uniform_patterns_are_58_of_256() {
        let map = groups(Layout::of(&LbphParams::default()));
        assert_eq!(map.iter().filter(|&&g| g < 58).count(), 58);
        assert_eq!((map[0], map[255], map[0b0101_0101]), (0, 57, 58));
        assert_eq!(padded_groups(Layout::of(&LbphParams::default())), 64);
    }

    #[test]
    fn giving_up_only_above_the_limit() {
        let layout = Layout::of(&LbphParams::default());
        let (a, b) = (face(1, 92, 112), face(2, 92, 112));
        let d = chi_square(layout, a.as_ref(), b.as_ref(), f64::INFINITY);
        assert_eq!(chi_square(layout, a.as_ref(), b.as_ref(), d * 1.0001), d);
        assert_eq!(
            chi_square(layout, a.as_ref(), b.as_ref(), d * 0.5),
            f64::INFINITY
        );
    }

    #[test]
    fn mixed_sizes_use_opencv_path() {
        let layout = Layout::of(&LbphParams::default());
        let (a, b) = (face(1, 92, 112), face(1, 120, 140));
        let d = chi_square(layout, a.as_ref(), b.as_ref(), f64::INFINITY);
        assert_eq!(d, chi_square_opencv(a.as_ref(), b.as_ref()));
        assert!(
            d > 0.0 && d < 4.0 * 64.0,
            "chi-square of two distributions is at most 4 a cell: {d}"
        );
    }
}
