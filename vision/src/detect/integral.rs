//! Integral images of a grey image, as OpenCV's `integral(img, sum, sqsum,
//! noArray(), CV_32S, CV_32S)` makes them for the cascade: one more row and
//! column than the image, the sums of squares in 32-bit integers that wrap
//! (a window's difference of four corners is still exact).

use image::GrayImage;

pub struct Integral {
    /// Row length of both tables: the image's width + 1.
    pub stride: usize,
    pub sum: Vec<i32>,
    pub sqsum: Vec<i32>,
}

impl Integral {
    pub fn new(img: &GrayImage) -> Self {
        let (w, h) = (img.width() as usize, img.height() as usize);
        let stride = w + 1;
        let mut sum = vec![0i32; stride * (h + 1)];
        let mut sqsum = vec![0i32; stride * (h + 1)];
        for (y, row) in img.as_raw().chunks_exact(w).enumerate() {
            let (mut s, mut q) = (0i32, 0i32);
            let above = y * stride;
            let here = above + stride;
            for (x, &p) in row.iter().enumerate() {
                let p = p as i32;
                s += p;
                q = q.wrapping_add(p * p);
                sum[here + x + 1] = sum[above + x + 1] + s;
                sqsum[here + x + 1] = sqsum[above + x + 1].wrapping_add(q);
            }
        }
        Integral { stride, sum, sqsum }
    }
}
