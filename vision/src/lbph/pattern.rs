//! OpenCV's extended LBP operator (`cv::face::elbp`), bit for bit.
//!
//! Each neighbour `n` is sampled on a circle of the given radius at angle
//! 2πn/P with bilinear interpolation in single precision, and sets bit `n`
//! when the sample is greater than the centre or equal within `f32::EPSILON`.
//! The arithmetic follows OpenCV's order exactly (the same float weights, the
//! same left-to-right sum), so the codes are identical; the loops run a row at
//! a time over contiguous slices so that the compiler vectorises them.

use image::GrayImage;

/// One neighbour's sampling offsets and bilinear weights, as OpenCV computes them.
struct Sample {
    fx: i32,
    fy: i32,
    cx: i32,
    cy: i32,
    w: [f32; 4],
}

fn samples(radius: u32, neighbors: u32) -> Vec<Sample> {
    (0..neighbors)
        .map(|n| {
            // OpenCV: radius * cos(2.0*CV_PI*n/static_cast<float>(neighbors)), in double, then to float.
            let angle = 2.0 * std::f64::consts::PI * n as f64 / (neighbors as f32) as f64;
            let x = (radius as f64 * angle.cos()) as f32;
            let y = (-(radius as f64) * angle.sin()) as f32;
            let (fx, fy) = (x.floor() as i32, y.floor() as i32);
            let (cx, cy) = (x.ceil() as i32, y.ceil() as i32);
            let ty = y - fy as f32;
            let tx = x - fx as f32;
            let w = [
                (1.0 - tx) * (1.0 - ty),
                tx * (1.0 - ty),
                (1.0 - tx) * ty,
                tx * ty,
            ];
            Sample { fx, fy, cx, cy, w }
        })
        .collect()
}

/// The LBP code image: `(width - 2r) × (height - 2r)` codes, row-major.
pub struct Codes {
    pub width: usize,
    pub height: usize,
    pub codes: Vec<u32>,
}

/// Computes the extended LBP codes of `image`. The caller has checked that the
/// image is larger than `2 * radius` in both directions.
pub fn extended_lbp(image: &GrayImage, radius: u32, neighbors: u32) -> Codes {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let r = radius as usize;
    let (out_w, out_h) = (w - 2 * r, h - 2 * r);
    let src = image.as_raw();
    let mut codes = vec![0u32; out_w * out_h];
    let at = |row: usize, dy: i32, dx: i32| -> &[u8] {
        let start = (row as isize + dy as isize) as usize * w + (r as isize + dx as isize) as usize;
        &src[start..start + out_w]
    };
    for (n, s) in samples(radius, neighbors).iter().enumerate() {
        for i in 0..out_h {
            let row = i + r;
            let (p1, p2, p3, p4) = (
                at(row, s.fy, s.fx),
                at(row, s.fy, s.cx),
                at(row, s.cy, s.fx),
                at(row, s.cy, s.cx),
            );
            let centre = at(row, 0, 0);
            let out = &mut codes[i * out_w..(i + 1) * out_w];
            for j in 0..out_w {
                let t = s.w[0] * p1[j] as f32
                    + s.w[1] * p2[j] as f32
                    + s.w[2] * p3[j] as f32
                    + s.w[3] * p4[j] as f32;
                let c = centre[j] as f32;
                let bit = (t > c) | ((t - c).abs() < f32::EPSILON);
                out[j] |= (bit as u32) << n;
            }
        }
    }
    Codes {
        width: out_w,
        height: out_h,
        codes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The eight neighbours at radius 1 start at the right and turn
    /// counter-clockwise (y grows downwards, hence the minus sign).
    #[test]
    fn radius_one_samples_follow_opencv_orientation() {
        let s = samples(1, 8);
        assert_eq!((s[0].fx, s[0].fy, s[0].w[0]), (1, 0, 1.0));
        assert_eq!((s[2].fy, s[2].cy), (-1, -1), "n=2 is straight up");
        assert_eq!((s[4].fx, s[4].cx), (-1, -1), "n=4 is to the left");
    }

    #[test]
    fn flat_image_sets_every_bit() {
        // Equal neighbours count as "greater or equal": all ones.
        let img = GrayImage::from_pixel(5, 5, image::Luma([77]));
        let codes = extended_lbp(&img, 1, 8);
        assert_eq!((codes.width, codes.height), (3, 3));
        assert!(codes.codes.iter().all(|&c| c == 255));
    }

    #[test]
    fn bright_centre_sets_no_bit() {
        let mut img = GrayImage::from_pixel(3, 3, image::Luma([10]));
        img.put_pixel(1, 1, image::Luma([200]));
        assert_eq!(extended_lbp(&img, 1, 8).codes, vec![0]);
    }
}
