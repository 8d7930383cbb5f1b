//! The face chip dlib's network reads: `get_face_chip_details(landmarks,
//! 150, 0.25)` and `extract_image_chips` with bilinear interpolation.
//!
//! The chip's place in the frame is the similarity transform that puts the
//! five landmarks where dlib's mean face has them (with a quarter of the
//! face's size as margin on every side). When the chip is much smaller than
//! that region of the frame, dlib first halves the region with its 5 × 5
//! Gaussian pyramid (`pyramid_down<2>`) until one more halving would make
//! it smaller than the chip, so that the bilinear samples do not skip
//! pixels. Both steps are reproduced here to the pixel, with dlib's
//! truncation of the interpolated value and black outside the frame.

use image::GrayImage;

use super::geometry::{round_half_up, similarity};
use super::shape_predictor::PARTS;

/// The chip's side in pixels.
pub const CHIP_SIZE: usize = 150;
/// The margin around the mean face, in face sizes.
const PADDING: f64 = 0.25;

/// dlib's 5-point mean face, in a unit square (in the landmark model's
/// order: the image-right eye's outer and inner corners, the image-left
/// eye's outer and inner corners, the base of the nose).
const MEAN_FACE: [[f64; 2]; PARTS] = [
    [0.8595674595992, 0.2134981538014],
    [0.6460604764104, 0.2289674387677],
    [0.1205750620789, 0.2137274526848],
    [0.3340850613712, 0.2290642403242],
    [0.4901123135679, 0.6277975316475],
];

/// dlib's `drectangle`: inclusive corners in `double`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Rect {
    l: f64,
    t: f64,
    r: f64,
    b: f64,
}

impl Rect {
    fn is_empty(&self) -> bool {
        self.t > self.b || self.l > self.r
    }

    fn area(&self) -> f64 {
        if self.is_empty() {
            0.0
        } else {
            (self.r - self.l + 1.0) * (self.b - self.t + 1.0)
        }
    }

    fn center(&self) -> [f64; 2] {
        [(self.l + self.r) / 2.0, (self.t + self.b) / 2.0]
    }

    /// `pyramid_down<2>::rect_down`.
    fn down(&self) -> Rect {
        Rect {
            l: self.l / 2.0 - 1.25,
            t: self.t / 2.0 - 0.75,
            r: self.r / 2.0 - 1.25,
            b: self.b / 2.0 - 0.75,
        }
    }

    fn translate(&self, dx: f64, dy: f64) -> Rect {
        Rect {
            l: self.l + dx,
            t: self.t + dy,
            r: self.r + dx,
            b: self.b + dy,
        }
    }

    fn rotated_corner(&self, corner: [f64; 2], angle: f64) -> [f64; 2] {
        let c = self.center();
        let (s, k) = angle.sin_cos();
        let (x, y) = (corner[0] - c[0], corner[1] - c[1]);
        [k * x - s * y + c[0], s * x + k * y + c[1]]
    }
}

/// Where the chip lies in the frame (dlib's `chip_details`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChipDetails {
    rect: Rect,
    angle: f64,
}

/// `get_face_chip_details(det, 150, 0.25)` for the five landmarks.
pub fn face_chip_details(parts: &[[i64; 2]; PARTS]) -> ChipDetails {
    let size = CHIP_SIZE as f64;
    let from = MEAN_FACE.map(|p| p.map(|v| (PADDING + v) / (2.0 * PADDING + 1.0) * size));
    let to = parts.map(|p| p.map(|v| v as f64));
    let fit = similarity(&from, &to);
    let (px, py) = (fit.m[0][0], fit.m[1][0]);
    let angle = py.atan2(px);
    let scale = px.hypot(py);
    let centre = fit.apply([size / 2.0, size / 2.0]);
    // `centered_drect`: a width of w spans w - 1 between the corners.
    let half = (size * scale - 1.0) / 2.0;
    ChipDetails {
        rect: Rect {
            l: centre[0] - half,
            t: centre[1] - half,
            r: centre[0] + half,
            b: centre[1] + half,
        },
        angle,
    }
}

/// dlib's `extract_image_chips` for one chip of 150 × 150 pixels.
pub fn extract(image: &GrayImage, details: &ChipDetails) -> GrayImage {
    let n = CHIP_SIZE as f64 * CHIP_SIZE as f64;
    let Rect { l, t, r, b } = details.rect;

    // How deep the pyramid goes, and the margin its filter needs.
    let mut depth = 0;
    let mut grow = 2.0;
    let mut rect = details.rect.down();
    while rect.area() > n {
        rect = rect.down();
        depth += 1;
        grow = grow * 2.0 + 2.0;
    }

    // The part of the frame the rotated chip touches, with that margin,
    // rounded to whole pixels (dlib's `rectangle` from a `drectangle`).
    let corners =
        [[l, t], [r, t], [l, b], [r, b]].map(|c| details.rect.rotated_corner(c, details.angle));
    let min = |i: usize| corners.iter().map(|c| c[i]).fold(f64::INFINITY, f64::min);
    let max = |i: usize| {
        corners
            .iter()
            .map(|c| c[i])
            .fold(f64::NEG_INFINITY, f64::max)
    };
    let (w, h) = (f64::from(image.width()), f64::from(image.height()));
    let grown = Rect {
        l: (min(0) - grow).max(0.0),
        t: (min(1) - grow).max(0.0),
        r: (max(0) + grow).min(w - 1.0),
        b: (max(1) + grow).min(h - 1.0),
    };
    let bounds = [grown.l, grown.t, grown.r, grown.b].map(round_half_up);
    let region = if bounds[0] > bounds[2] || bounds[1] > bounds[3] {
        // dlib's empty rectangle: nothing of the frame, at the origin.
        Region::empty()
    } else {
        Region::crop(image, bounds)
    };

    let mut source = region.image;
    let mut rect = details.rect.translate(-region.left, -region.top);
    let mut levels = 0;
    while rect.down().area() > n {
        rect = rect.down();
        levels += 1;
    }
    debug_assert!(levels <= depth);
    for _ in 0..levels {
        source = pyramid_down(&source);
    }

    // The affine map from chip pixels to `source`, through three corners.
    let tl = rect.rotated_corner([rect.l, rect.t], details.angle);
    let tr = rect.rotated_corner([rect.r, rect.t], details.angle);
    let bl = rect.rotated_corner([rect.l, rect.b], details.angle);
    let last = (CHIP_SIZE - 1) as f64;
    let m = [
        [(tr[0] - tl[0]) / last, (bl[0] - tl[0]) / last],
        [(tr[1] - tl[1]) / last, (bl[1] - tl[1]) / last],
    ];
    let mut chip = GrayImage::new(CHIP_SIZE as u32, CHIP_SIZE as u32);
    for (i, out) in chip.as_mut().iter_mut().enumerate() {
        let (c, r) = ((i % CHIP_SIZE) as f64, (i / CHIP_SIZE) as f64);
        let x = m[0][0] * c + m[0][1] * r + tl[0];
        let y = m[1][0] * c + m[1][1] * r + tl[1];
        *out = bilinear(&source, x, y);
    }
    chip
}

/// The frame's pixels inside a rectangle, and where it starts.
struct Region {
    image: GrayImage,
    left: f64,
    top: f64,
}

impl Region {
    fn empty() -> Self {
        Self {
            image: GrayImage::new(0, 0),
            left: 0.0,
            top: 0.0,
        }
    }

    /// `bounds` (left, top, right, bottom, inclusive) lie inside `image`.
    fn crop(image: &GrayImage, bounds: [i64; 4]) -> Self {
        let [l, t, r, b] = bounds.map(|v| v as u32);
        Self {
            image: image::imageops::crop_imm(image, l, t, r - l + 1, b - t + 1).to_image(),
            left: f64::from(l),
            top: f64::from(t),
        }
    }
}

/// dlib's `interpolate_bilinear` on a grey image: black where the 2 × 2
/// neighbourhood leaves the image, the weighted value truncated otherwise.
fn bilinear(image: &GrayImage, x: f64, y: f64) -> u8 {
    let (left, top) = (x.floor(), y.floor());
    let (w, h) = (f64::from(image.width()), f64::from(image.height()));
    if !(left >= 0.0 && top >= 0.0 && left + 1.0 < w && top + 1.0 < h) {
        return 0;
    }
    let lr = x - left;
    let tb = y - top;
    let (c, r, stride) = (left as usize, top as usize, image.width() as usize);
    let p = image.as_raw();
    let at = |r: usize, c: usize| f64::from(p[r * stride + c]);
    let value = (1.0 - tb) * ((1.0 - lr) * at(r, c) + lr * at(r, c + 1))
        + tb * ((1.0 - lr) * at(r + 1, c) + lr * at(r + 1, c + 1));
    value as u8
}

/// dlib's `pyramid_down<2>`: a separable [1 4 6 4 1] filter and every
/// other row and column, truncated; images of 8 or fewer rows or columns
/// become empty.
fn pyramid_down(image: &GrayImage) -> GrayImage {
    let (w, h) = (image.width() as usize, image.height() as usize);
    if w <= 8 || h <= 8 {
        return GrayImage::new(0, 0);
    }
    let (dw, dh) = ((w - 3) / 2, (h - 3) / 2);
    let p = image.as_raw();
    let mut rows = vec![0u32; h * dw];
    for r in 0..h {
        let line = &p[r * w..(r + 1) * w];
        for c in 0..dw {
            let o = 2 * c;
            let v = |i: usize| u32::from(line[o + i]);
            rows[r * dw + c] = v(0) + 4 * v(1) + 6 * v(2) + 4 * v(3) + v(4);
        }
    }
    let mut out = GrayImage::new(dw as u32, dh as u32);
    let o = out.as_mut();
    for dr in 0..dh {
        let r = 2 + 2 * dr;
        for c in 0..dw {
            let v = |rr: usize| rows[rr * dw + c];
            let sum = v(r - 2) + 4 * v(r - 1) + 6 * v(r) + 4 * v(r + 1) + v(r + 2);
            o[dr * dw + c] = (sum / 256) as u8;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mean_face_lands_on_itself() {
        // Landmarks exactly where the mean face puts them in a 150-pixel
        // chip give the chip's own square, upright.
        let parts = MEAN_FACE.map(|p| p.map(|v| ((PADDING + v) / 1.5 * 150.0 * 1000.0) as i64));
        let d = face_chip_details(&parts);
        assert!(d.angle.abs() < 1e-3, "{}", d.angle);
        assert!(
            (d.rect.r - d.rect.l + 1.0 - 150_000.0).abs() < 30.0,
            "{:?}",
            d.rect
        );
    }

    #[test]
    fn a_flat_image_gives_a_flat_chip_and_black_outside() {
        let frame = GrayImage::from_pixel(400, 400, image::Luma([100]));
        let d = ChipDetails {
            rect: Rect {
                l: 300.0,
                t: 100.0,
                r: 449.0,
                b: 249.0,
            },
            angle: 0.0,
        };
        let chip = extract(&frame, &d);
        assert_eq!(chip.get_pixel(10, 10).0[0], 100);
        assert_eq!(chip.get_pixel(140, 10).0[0], 0);
    }

    #[test]
    fn the_pyramid_keeps_a_flat_image_flat_and_halves_it() {
        let down = pyramid_down(&GrayImage::from_pixel(20, 11, image::Luma([255])));
        assert_eq!(down.dimensions(), (8, 4));
        assert!(down.pixels().all(|p| p.0[0] == 255));
    }
}
