//! The cascade on one level of the pyramid: every stump's rectangles turned
//! into offsets in that level's integral image, and a window evaluated the
//! way OpenCV's `HaarEvaluator` and `predictOrderedStump` do (features in
//! `f32`, stage sums in `f64`, the window's variance normalisation).

use super::cascade::Cascade;
use super::integral::Integral;

/// A stump with its feature's rectangles as integral-image offsets.
struct PlacedStump {
    /// Four corner offsets per rectangle (top-left, top-right, bottom-left,
    /// bottom-right); unused rectangles have weight 0.
    corners: [[usize; 4]; 3],
    weights: [f32; 3],
    threshold: f32,
    left: f32,
    right: f32,
}

struct PlacedStage {
    threshold: f32,
    stumps: std::ops::Range<usize>,
}

/// What a window is: rejected before the first stage (`Flat`: too little
/// contrast, or outside), rejected by a stage, or a face.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Flat,
    RejectedAt(usize),
    Face,
}

pub struct PlacedCascade {
    stumps: Vec<PlacedStump>,
    stages: Vec<PlacedStage>,
    /// Corners of the window's inner rectangle (1 pixel in from each side),
    /// over which the variance is taken.
    norm_corners: [usize; 4],
    norm_area: f64,
}

fn corners(x: u32, y: u32, w: u32, h: u32, stride: usize) -> [usize; 4] {
    let (x, y, w, h) = (x as usize, y as usize, w as usize, h as usize);
    [
        y * stride + x,
        y * stride + x + w,
        (y + h) * stride + x,
        (y + h) * stride + x + w,
    ]
}

fn rect_sum(table: &[i32], base: usize, c: &[usize; 4]) -> i32 {
    table[base + c[0]]
        .wrapping_sub(table[base + c[1]])
        .wrapping_sub(table[base + c[2]])
        .wrapping_add(table[base + c[3]])
}

impl PlacedCascade {
    pub fn new(cascade: &Cascade, stride: usize) -> Self {
        let mut stumps = Vec::new();
        let mut stages = Vec::new();
        for stage in &cascade.stages {
            let start = stumps.len();
            for s in &stage.stumps {
                let feature = &cascade.features[s.feature];
                let mut placed = PlacedStump {
                    corners: [[0; 4]; 3],
                    weights: [0.0; 3],
                    threshold: s.threshold,
                    left: s.left,
                    right: s.right,
                };
                for (i, r) in feature.rects.iter().enumerate() {
                    placed.corners[i] = corners(r.x, r.y, r.width, r.height, stride);
                    placed.weights[i] = r.weight;
                }
                stumps.push(placed);
            }
            stages.push(PlacedStage {
                threshold: stage.threshold,
                stumps: start..stumps.len(),
            });
        }
        let (w, h) = (cascade.window_width - 2, cascade.window_height - 2);
        PlacedCascade {
            stumps,
            stages,
            norm_corners: corners(1, 1, w, h, stride),
            norm_area: (w * h) as f64,
        }
    }

    /// Evaluates the window whose top-left corner is at `base` (an offset
    /// into `integral`'s tables).
    pub fn evaluate(&self, integral: &Integral, base: usize) -> Verdict {
        let sum = rect_sum(&integral.sum, base, &self.norm_corners);
        let sqsum = rect_sum(&integral.sqsum, base, &self.norm_corners) as u32;
        let nf = self.norm_area * sqsum as f64 - sum as f64 * sum as f64;
        if nf <= 0.0 {
            return Verdict::Flat;
        }
        let norm = (1.0 / nf.sqrt()) as f32;
        if self.norm_area * norm as f64 >= 1e-1 {
            return Verdict::Flat;
        }
        let table = &integral.sum[base..];
        let at = |c: &[usize; 4]| table[c[0]] - table[c[1]] - table[c[2]] + table[c[3]];
        for (index, stage) in self.stages.iter().enumerate() {
            let mut votes = 0f64;
            for s in &self.stumps[stage.stumps.clone()] {
                let mut value = s.weights[0] * at(&s.corners[0]) as f32
                    + s.weights[1] * at(&s.corners[1]) as f32;
                if s.weights[2] != 0.0 {
                    value += s.weights[2] * at(&s.corners[2]) as f32;
                }
                let value = value * norm;
                votes += if value < s.threshold { s.left } else { s.right } as f64;
            }
            if votes < stage.threshold as f64 {
                return Verdict::RejectedAt(index);
            }
        }
        Verdict::Face
    }
}
