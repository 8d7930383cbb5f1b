//! dlib's `shape_predictor`: a cascade of regression-tree forests (Kazemi
//! and Sullivan, 2014) that moves a mean face shape onto the face in a box.
//!
//! Each cascade level samples pixels at points fixed relative to the
//! current shape (an anchor landmark plus a delta, carried over by the
//! similarity transform from the mean shape to the current one), and each
//! tree compares two of those pixels at every split and adds its leaf's
//! shape offset. Shapes live in the box's unit square; the last step maps
//! them to the frame and rounds to whole pixels, as dlib's `point` does.
//!
//! The arithmetic follows dlib's types: shapes, deltas and the transform in
//! `float`, the similarity fit and the box mapping in `double`.

use super::format::{FormatError, Reader};
use image::GrayImage;

use super::geometry::{pixel, round_half_up, similarity};
use crate::detect::FaceBox;

/// How many landmarks the pinned model finds.
pub const PARTS: usize = 5;

struct Split {
    idx1: usize,
    idx2: usize,
    thresh: f32,
}

struct Tree {
    splits: Vec<Split>,
    /// Leaf shape offsets, `splits.len() + 1` of them, each 2 × PARTS.
    leaves: Vec<[f32; 2 * PARTS]>,
}

struct Level {
    forest: Vec<Tree>,
    anchors: Vec<usize>,
    deltas: Vec<[f32; 2]>,
}

/// The 5-point landmark model.
pub struct ShapePredictor {
    initial: [f32; 2 * PARTS],
    levels: Vec<Level>,
}

impl ShapePredictor {
    /// Reads `shape_predictor_5_face_landmarks.dat`'s bytes.
    pub fn read(bytes: &[u8]) -> Result<Self, FormatError> {
        let mut r = Reader::new(bytes);
        let at = r.offset();
        let version = r.int("the shape predictor's version")?;
        if version != 1 {
            return Err(FormatError::OutOfRange {
                offset: at,
                what: "the shape predictor's version",
                value: i128::from(version),
                expected: "version 1".into(),
            });
        }
        let initial = shape(&mut r, "the initial shape")?;

        let cascades = r.count("the number of cascade levels")?;
        let mut forests = Vec::with_capacity(cascades);
        for _ in 0..cascades {
            let trees = r.count("the number of trees in a level")?;
            let mut forest = Vec::with_capacity(trees);
            for _ in 0..trees {
                let n = r.count("the number of splits of a tree")?;
                let mut splits = Vec::with_capacity(n);
                for _ in 0..n {
                    splits.push(Split {
                        idx1: r.ulong("a split's first feature")? as usize,
                        idx2: r.ulong("a split's second feature")? as usize,
                        thresh: r.f32("a split's threshold")?,
                    });
                }
                let n = r.count("the number of leaves of a tree")?;
                let mut leaves = Vec::with_capacity(n);
                for _ in 0..n {
                    leaves.push(shape(&mut r, "a leaf's shape offset")?);
                }
                if leaves.len() != splits.len() + 1 || !leaves.len().is_power_of_two() {
                    return Err(FormatError::Inconsistent {
                        what: "a tree's splits and leaves",
                        detail: format!(
                            "{} splits and {} leaves (a full tree has a power of two leaves, one more than its splits)",
                            splits.len(),
                            leaves.len()
                        ),
                    });
                }
                forest.push(Tree { splits, leaves });
            }
            forests.push(forest);
        }

        let n = r.count("the number of anchor lists")?;
        let mut anchors = Vec::with_capacity(n);
        for _ in 0..n {
            let m = r.count("the number of anchors")?;
            let mut level = Vec::with_capacity(m);
            for _ in 0..m {
                let at = r.offset();
                let a = r.ulong("an anchor landmark")?;
                if a >= PARTS as u64 {
                    return Err(FormatError::OutOfRange {
                        offset: at,
                        what: "an anchor landmark",
                        value: i128::from(a),
                        expected: format!("0..{PARTS}"),
                    });
                }
                level.push(a as usize);
            }
            anchors.push(level);
        }
        let n = r.count("the number of delta lists")?;
        let mut deltas = Vec::with_capacity(n);
        for _ in 0..n {
            let m = r.count("the number of deltas")?;
            let mut level = Vec::with_capacity(m);
            for _ in 0..m {
                level.push([r.f32("a delta's x")?, r.f32("a delta's y")?]);
            }
            deltas.push(level);
        }
        r.finish()?;

        if anchors.len() != forests.len() || deltas.len() != forests.len() {
            return Err(FormatError::Inconsistent {
                what: "the cascade levels",
                detail: format!(
                    "{} forests, {} anchor lists and {} delta lists",
                    forests.len(),
                    anchors.len(),
                    deltas.len()
                ),
            });
        }
        let mut levels = Vec::with_capacity(forests.len());
        for ((forest, anchors), deltas) in forests.into_iter().zip(anchors).zip(deltas) {
            let features = deltas.len();
            if anchors.len() != features {
                return Err(FormatError::Inconsistent {
                    what: "a level's feature points",
                    detail: format!("{} anchors but {features} deltas", anchors.len()),
                });
            }
            if let Some(s) = forest
                .iter()
                .flat_map(|t| &t.splits)
                .find(|s| s.idx1 >= features || s.idx2 >= features)
            {
                return Err(FormatError::Inconsistent {
                    what: "a split's features",
                    detail: format!(
                        "features {} and {} of a level with {features}",
                        s.idx1, s.idx2
                    ),
                });
            }
            levels.push(Level {
                forest,
                anchors,
                deltas,
            });
        }
        Ok(Self { initial, levels })
    }

    /// The landmarks of the face in `face` (dlib's box shape), in whole
    /// frame pixels.
    pub fn predict(&self, image: &GrayImage, face: FaceBox) -> [[i64; 2]; PARTS] {
        let to_frame = BoxMap::new(face);
        let mut current = self.initial;
        let mut pixels = Vec::new();
        for level in &self.levels {
            let fit = similarity(&points(&self.initial), &points(&current));
            let m = fit.m.map(|row| row.map(|v| v as f32));
            pixels.clear();
            pixels.extend(level.anchors.iter().zip(&level.deltas).map(|(&a, d)| {
                let x = m[0][0] * d[0] + m[0][1] * d[1] + current[2 * a];
                let y = m[1][0] * d[0] + m[1][1] * d[1] + current[2 * a + 1];
                let [px, py] = to_frame.apply(f64::from(x), f64::from(y));
                f32::from(pixel(image, px, py).unwrap_or(0))
            }));
            for tree in &level.forest {
                let mut i = 0;
                while i < tree.splits.len() {
                    let s = &tree.splits[i];
                    i = if pixels[s.idx1] - pixels[s.idx2] > s.thresh {
                        2 * i + 1
                    } else {
                        2 * i + 2
                    };
                }
                let leaf = &tree.leaves[i - tree.splits.len()];
                for (c, l) in current.iter_mut().zip(leaf) {
                    *c += l;
                }
            }
        }
        std::array::from_fn(|i| {
            to_frame.apply(f64::from(current[2 * i]), f64::from(current[2 * i + 1]))
        })
    }
}

fn shape(r: &mut Reader, what: &'static str) -> Result<[f32; 2 * PARTS], FormatError> {
    let offset = r.offset();
    let values = r.column_f32(what)?;
    values
        .try_into()
        .map_err(|v: Vec<f32>| FormatError::Unexpected {
            offset,
            what,
            found: format!("{} numbers", v.len()),
            expected: format!("{} (the model must have {PARTS} landmarks)", 2 * PARTS),
        })
}

fn points(shape: &[f32; 2 * PARTS]) -> [[f64; 2]; PARTS] {
    std::array::from_fn(|i| [f64::from(shape[2 * i]), f64::from(shape[2 * i + 1])])
}

/// dlib's `unnormalizing_tform`: the unit square onto the box's corner
/// pixels, then dlib's rounding to a whole pixel.
struct BoxMap {
    left: f64,
    top: f64,
    width: f64,
    height: f64,
}

impl BoxMap {
    fn new(b: FaceBox) -> Self {
        Self {
            left: f64::from(b.x),
            top: f64::from(b.y),
            // right - left with dlib's inclusive right = x + width - 1.
            width: f64::from(b.width) - 1.0,
            height: f64::from(b.height) - 1.0,
        }
    }

    fn apply(&self, x: f64, y: f64) -> [i64; 2] {
        [
            round_half_up(self.width * x + self.left),
            round_half_up(self.height * y + self.top),
        ]
    }
}
