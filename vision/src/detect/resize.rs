//! OpenCV's `resize` for 8-bit grey images, bit for bit: `INTER_AREA` (the
//! integer-factor fast path, the fractional-area path, and the bilinear
//! variant OpenCV uses when an axis grows) and `INTER_LINEAR_EXACT` (the
//! fixed-point bilinear resize the cascade's scale pyramid uses).
//!
//! The arithmetic follows OpenCV 4.6's CPU code: `f32` accumulation where it
//! accumulates in `float`, its fixed-point formats where it uses them, and
//! `cvRound`'s round-half-to-even.

use image::GrayImage;

/// OpenCV's `cvRound` on a `float`: nearest, ties to even.
fn round_f32(v: f32) -> i32 {
    v.round_ties_even() as i32
}

fn saturate_u8(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}

/// `cv::resize(src, dst, Size(width, height), 0, 0, INTER_AREA)`.
///
/// # Panics
/// If a dimension of `src` or of the requested size is 0.
pub fn resize_area(src: &GrayImage, width: u32, height: u32) -> GrayImage {
    let (sw, sh) = src.dimensions();
    assert!(sw > 0 && sh > 0 && width > 0 && height > 0, "empty resize");
    if (sw, sh) == (width, height) {
        return src.clone();
    }
    let inv_x = width as f64 / sw as f64;
    let inv_y = height as f64 / sh as f64;
    let (scale_x, scale_y) = (1.0 / inv_x, 1.0 / inv_y);
    let (ix, iy) = (scale_x.round_ties_even(), scale_y.round_ties_even());
    let whole = (scale_x - ix).abs() < f64::EPSILON && (scale_y - iy).abs() < f64::EPSILON;
    if scale_x >= 1.0 && scale_y >= 1.0 {
        if whole {
            area_fast(src, width, height, ix as usize, iy as usize)
        } else {
            area_general(src, width, height, scale_x, scale_y)
        }
    } else {
        area_upscale(src, width, height, (inv_x, inv_y), (scale_x, scale_y))
    }
}

/// Whole-number factors: each output pixel is the mean of its block.
fn area_fast(src: &GrayImage, dw: u32, dh: u32, fx: usize, fy: usize) -> GrayImage {
    let (sw, sh) = (src.width() as usize, src.height() as usize);
    let (dw, dh) = (dw as usize, dh as usize);
    let s = src.as_raw();
    let area = fx * fy;
    let scale = 1.0f32 / area as f32;
    let full_width = sw / fx;
    let mut out = vec![0u8; dw * dh];
    for dy in 0..dh {
        let row = &mut out[dy * dw..(dy + 1) * dw];
        let sy0 = dy * fy;
        if sy0 >= sh {
            continue;
        }
        let w = if sy0 + fy <= sh {
            full_width.min(dw)
        } else {
            0
        };
        for (dx, d) in row.iter_mut().enumerate().take(w) {
            let sx0 = dx * fx;
            let mut sum = 0i32;
            for y in sy0..sy0 + fy {
                for &p in &s[y * sw + sx0..y * sw + sx0 + fx] {
                    sum += p as i32;
                }
            }
            *d = if fx == 2 && fy == 2 {
                ((sum + 2) >> 2) as u8
            } else {
                saturate_u8(round_f32(sum as f32 * scale))
            };
        }
        for (dx, d) in row.iter_mut().enumerate().skip(w) {
            let sx0 = dx * fx;
            let (mut sum, mut count) = (0i32, 0i32);
            for y in (sy0..sy0 + fy).take_while(|&y| y < sh) {
                for x in (sx0..sx0 + fx).take_while(|&x| x < sw) {
                    sum += s[y * sw + x] as i32;
                    count += 1;
                }
            }
            *d = if count == 0 {
                0
            } else {
                saturate_u8(round_f32(sum as f32 / count as f32))
            };
        }
    }
    GrayImage::from_raw(dw as u32, dh as u32, out).expect("sized buffer")
}

/// One source pixel's share of one output pixel.
#[derive(Clone, Copy)]
struct Share {
    dst: usize,
    src: usize,
    alpha: f32,
}

/// The shares along one axis (OpenCV's `computeResizeAreaTab`).
fn area_shares(ssize: usize, dsize: usize, scale: f64) -> Vec<Share> {
    let mut tab = Vec::with_capacity(ssize * 2);
    for dx in 0..dsize {
        let fsx1 = dx as f64 * scale;
        let fsx2 = fsx1 + scale;
        let cell = scale.min(ssize as f64 - fsx1);
        let mut sx1 = fsx1.ceil() as i64;
        let sx2 = (fsx2.floor() as i64).min(ssize as i64 - 1);
        sx1 = sx1.min(sx2);
        if sx1 as f64 - fsx1 > 1e-3 {
            tab.push(Share {
                dst: dx,
                src: (sx1 - 1) as usize,
                alpha: ((sx1 as f64 - fsx1) / cell) as f32,
            });
        }
        for sx in sx1..sx2 {
            tab.push(Share {
                dst: dx,
                src: sx as usize,
                alpha: (1.0 / cell) as f32,
            });
        }
        if fsx2 - sx2 as f64 > 1e-3 {
            tab.push(Share {
                dst: dx,
                src: sx2 as usize,
                alpha: ((fsx2 - sx2 as f64).min(1.0).min(cell) / cell) as f32,
            });
        }
    }
    tab
}

/// Fractional factors of at least 1: area-weighted means in `f32`.
fn area_general(src: &GrayImage, dw: u32, dh: u32, scale_x: f64, scale_y: f64) -> GrayImage {
    let sw = src.width() as usize;
    let (dw, dh) = (dw as usize, dh as usize);
    let s = src.as_raw();
    let xtab = area_shares(sw, dw, scale_x);
    let ytab = area_shares(src.height() as usize, dh, scale_y);
    let mut out = vec![0u8; dw * dh];
    let mut buf = vec![0f32; dw];
    let mut sum = vec![0f32; dw];
    let mut prev_dy = ytab.first().map_or(0, |t| t.dst);
    let flush = |out: &mut [u8], dy: usize, sum: &[f32]| {
        for (d, &v) in out[dy * dw..(dy + 1) * dw].iter_mut().zip(sum) {
            *d = saturate_u8(round_f32(v));
        }
    };
    for t in &ytab {
        let row = &s[t.src * sw..(t.src + 1) * sw];
        buf.fill(0.0);
        for x in &xtab {
            buf[x.dst] += row[x.src] as f32 * x.alpha;
        }
        if t.dst != prev_dy {
            flush(&mut out, prev_dy, &sum);
            for (s, &b) in sum.iter_mut().zip(&buf) {
                *s = t.alpha * b;
            }
            prev_dy = t.dst;
        } else {
            for (s, &b) in sum.iter_mut().zip(&buf) {
                *s += t.alpha * b;
            }
        }
    }
    flush(&mut out, prev_dy, &sum);
    GrayImage::from_raw(dw as u32, dh as u32, out).expect("sized buffer")
}

const COEF_BITS: i32 = 11;
const COEF_SCALE: f32 = (1 << COEF_BITS) as f32;

/// An axis of `INTER_AREA` that grows: OpenCV's bilinear resize with
/// area-style weights, in its 11-bit fixed point.
fn area_upscale_axis(
    ssize: usize,
    dsize: usize,
    inv: f64,
    scale: f64,
) -> (Vec<usize>, Vec<[i32; 2]>, usize) {
    let mut offsets = Vec::with_capacity(dsize);
    let mut coeffs = Vec::with_capacity(dsize);
    let mut limit = dsize;
    for d in 0..dsize {
        let mut s = (d as f64 * scale).floor() as i64;
        let mut f = ((d + 1) as f64 - (s + 1) as f64 * inv) as f32;
        f = if f <= 0.0 { 0.0 } else { f - f.floor() };
        if s < 0 {
            f = 0.0;
            s = 0;
        }
        if s + 1 >= ssize as i64 {
            limit = limit.min(d);
            if s >= ssize as i64 - 1 {
                f = 0.0;
                s = ssize as i64 - 1;
            }
        }
        offsets.push(s as usize);
        let fixed = |v: f32| round_f32(v * COEF_SCALE).clamp(i16::MIN as i32, i16::MAX as i32);
        coeffs.push([fixed(1.0 - f), fixed(f)]);
    }
    (offsets, coeffs, limit)
}

fn area_upscale(
    src: &GrayImage,
    dw: u32,
    dh: u32,
    inv: (f64, f64),
    scale: (f64, f64),
) -> GrayImage {
    let (sw, sh) = (src.width() as usize, src.height() as usize);
    let (dw, dh) = (dw as usize, dh as usize);
    let s = src.as_raw();
    let (xofs, alpha, xmax) = area_upscale_axis(sw, dw, inv.0, scale.0);
    let mut yofs = Vec::with_capacity(dh);
    let mut beta = Vec::with_capacity(dh);
    for dy in 0..dh {
        let sy = (dy as f64 * scale.1).floor() as i64;
        let mut f = ((dy + 1) as f64 - (sy + 1) as f64 * inv.1) as f32;
        f = if f <= 0.0 { 0.0 } else { f - f.floor() };
        yofs.push(sy);
        let fixed = |v: f32| round_f32(v * COEF_SCALE).clamp(i16::MIN as i32, i16::MAX as i32);
        beta.push([fixed(1.0 - f), fixed(f)]);
    }
    let hresize = |y: usize, row: &mut [i32]| {
        let r = &s[y * sw..(y + 1) * sw];
        for dx in 0..dw {
            let sx = xofs[dx];
            row[dx] = if dx < xmax {
                r[sx] as i32 * alpha[dx][0] + r[sx + 1] as i32 * alpha[dx][1]
            } else {
                r[sx] as i32 * (1 << COEF_BITS)
            };
        }
    };
    let clip = |y: i64| y.clamp(0, sh as i64 - 1) as usize;
    let mut rows = [vec![0i32; dw], vec![0i32; dw]];
    let mut out = vec![0u8; dw * dh];
    for dy in 0..dh {
        let [r0, r1] = &mut rows;
        hresize(clip(yofs[dy]), r0);
        hresize(clip(yofs[dy] + 1), r1);
        let [b0, b1] = beta[dy];
        for (dx, d) in out[dy * dw..(dy + 1) * dw].iter_mut().enumerate() {
            *d = ((((b0 * (r0[dx] >> 4)) >> 16) + ((b1 * (r1[dx] >> 4)) >> 16) + 2) >> 2) as u8;
        }
    }
    GrayImage::from_raw(dw as u32, dh as u32, out).expect("sized buffer")
}

/// `cv::resize(src, dst, Size(width, height), 0, 0, INTER_LINEAR_EXACT)`:
/// bilinear with 8-bit fixed-point weights per axis.
///
/// # Panics
/// If a dimension of `src` or of the requested size is 0.
pub fn resize_linear_exact(src: &GrayImage, width: u32, height: u32) -> GrayImage {
    let (sw, sh) = (src.width() as usize, src.height() as usize);
    assert!(sw > 0 && sh > 0 && width > 0 && height > 0, "empty resize");
    if (sw, sh) == (width as usize, height as usize) {
        return src.clone();
    }
    let (dw, dh) = (width as usize, height as usize);
    let x = LinearAxis::new(dw as f64 / sw as f64, sw, dw);
    let y = LinearAxis::new(dh as f64 / sh as f64, sh, dh);
    let s = src.as_raw();
    // Each source row resized across, in 8-bit fixed point (u16).
    let hresize = |row: usize, out: &mut [u16]| {
        let r = &s[row * sw..(row + 1) * sw];
        let last = r[x.offsets[dw - 1]] as u16;
        for (dx, o) in out.iter_mut().enumerate() {
            *o = if dx < x.min {
                (r[0] as u16) << 8
            } else if dx < x.max {
                let [c0, c1] = x.coeffs[dx];
                let p = x.offsets[dx];
                (c0 * r[p] as u16).saturating_add(c1 * r[p + 1] as u16)
            } else {
                last << 8
            };
        }
    };
    let set = |line: &[u16], out: &mut [u8]| {
        for (d, &v) in out.iter_mut().zip(line) {
            *d = ((v as u32 + 128) >> 8).min(255) as u8;
        }
    };
    let mut out = vec![0u8; dw * dh];
    let mut a = vec![0u16; dw];
    let mut b = vec![0u16; dw];
    let mut held: Option<usize> = None;
    for dy in 0..dh {
        let line = &mut out[dy * dw..(dy + 1) * dw];
        if dy < y.min || dy >= y.max {
            let row = if dy < y.min { 0 } else { sh - 1 };
            hresize(row, &mut a);
            held = None;
            set(&a, line);
            continue;
        }
        let iy = y.offsets[dy];
        match held {
            Some(h) if h == iy => {}
            Some(h) if h + 1 == iy => {
                std::mem::swap(&mut a, &mut b);
                hresize(iy + 1, &mut b);
            }
            _ => {
                hresize(iy, &mut a);
                hresize(iy + 1, &mut b);
            }
        }
        held = Some(iy);
        let [c0, c1] = y.coeffs[dy];
        for (dx, d) in line.iter_mut().enumerate() {
            let v = (a[dx] as u32 * c0 as u32).saturating_add(b[dx] as u32 * c1 as u32);
            *d = ((v + (1 << 15)) >> 16).min(255) as u8;
        }
    }
    GrayImage::from_raw(width, height, out).expect("sized buffer")
}

/// One axis of `INTER_LINEAR_EXACT`: source offsets, 8-bit weights, and the
/// range of outputs that interpolate (those before `min` copy the first
/// source pixel, those from `max` on the last).
struct LinearAxis {
    offsets: Vec<usize>,
    coeffs: Vec<[u16; 2]>,
    min: usize,
    max: usize,
}

impl LinearAxis {
    fn new(inv_scale: f64, ssize: usize, dsize: usize) -> Self {
        let scale = 1.0 / inv_scale;
        let mut axis = LinearAxis {
            offsets: vec![0; dsize],
            coeffs: vec![[256, 0]; dsize],
            min: 0,
            max: dsize,
        };
        for d in 0..dsize {
            let f = scale * (d as f64 + 0.5) - 0.5;
            let i = f.floor();
            if i >= 0.0 && ssize > 1 {
                let i = i as usize;
                if i < ssize - 1 {
                    axis.offsets[d] = i;
                    let c1 = ((f - i as f64) * 256.0).round_ties_even() as u16;
                    axis.coeffs[d] = [256u16.saturating_sub(c1), c1];
                } else {
                    axis.offsets[d] = ssize - 1;
                    axis.max = axis.max.min(d);
                }
            } else {
                axis.min = axis.min.max(d + 1);
            }
        }
        axis
    }
}

/// `cv::equalizeHist` on an 8-bit image.
pub fn equalize_hist(src: &GrayImage) -> GrayImage {
    let mut hist = [0i32; 256];
    for &p in src.as_raw() {
        hist[p as usize] += 1;
    }
    let total = src.as_raw().len() as i32;
    let Some(first) = hist.iter().position(|&n| n != 0) else {
        return src.clone();
    };
    if hist[first] == total {
        return GrayImage::from_pixel(src.width(), src.height(), image::Luma([first as u8]));
    }
    let scale = 255.0f32 / (total - hist[first]) as f32;
    let mut lut = [0u8; 256];
    let mut sum = 0i32;
    for i in first + 1..256 {
        sum += hist[i];
        lut[i] = saturate_u8(round_f32(sum as f32 * scale));
    }
    let data = src.as_raw().iter().map(|&p| lut[p as usize]).collect();
    GrayImage::from_raw(src.width(), src.height(), data).expect("same size")
}
