//! The bits of dlib's geometry the landmarks and the face chip need, in
//! `double` as dlib computes them.

use image::GrayImage;

/// A similarity transform `p ↦ m·p + t` (scale and rotation in `m`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Similarity {
    pub m: [[f64; 2]; 2],
    pub t: [f64; 2],
}

impl Similarity {
    pub fn apply(&self, p: [f64; 2]) -> [f64; 2] {
        [
            self.m[0][0] * p[0] + self.m[0][1] * p[1] + self.t[0],
            self.m[1][0] * p[0] + self.m[1][1] * p[1] + self.t[1],
        ]
    }
}

/// The least-squares similarity transform taking `from` onto `to`
/// (Umeyama 1991, as dlib's `find_similarity_transform`). In two
/// dimensions the SVD has a closed form: for the cross-covariance `C`, the
/// best rotation times its trace term is `[[a, -b], [b, a]]` with
/// `a = C00 + C11` and `b = C10 - C01`, whatever the sign of `det C`
/// (dlib's reflection fix), and the scale divides by the variance of
/// `from`.
pub fn similarity(from: &[[f64; 2]], to: &[[f64; 2]]) -> Similarity {
    let n = from.len() as f64;
    let mean = |ps: &[[f64; 2]]| {
        let s = ps
            .iter()
            .fold([0.0, 0.0], |acc, p| [acc[0] + p[0], acc[1] + p[1]]);
        [s[0] / n, s[1] / n]
    };
    let (mf, mt) = (mean(from), mean(to));
    let mut sigma = 0.0;
    let mut c = [[0.0f64; 2]; 2];
    for (f, t) in from.iter().zip(to) {
        let (fx, fy) = (f[0] - mf[0], f[1] - mf[1]);
        let (tx, ty) = (t[0] - mt[0], t[1] - mt[1]);
        sigma += fx * fx + fy * fy;
        c[0][0] += tx * fx;
        c[0][1] += tx * fy;
        c[1][0] += ty * fx;
        c[1][1] += ty * fy;
    }
    sigma /= n;
    let (a, b) = ((c[0][0] + c[1][1]) / n, (c[1][0] - c[0][1]) / n);
    let m = if sigma != 0.0 {
        [[a / sigma, -b / sigma], [b / sigma, a / sigma]]
    } else {
        // dlib keeps scale 1 for a degenerate source; its rotation is then
        // the one of a zero covariance, the identity.
        [[1.0, 0.0], [0.0, 1.0]]
    };
    let t = [
        mt[0] - (m[0][0] * mf[0] + m[0][1] * mf[1]),
        mt[1] - (m[1][0] * mf[0] + m[1][1] * mf[1]),
    ];
    Similarity { m, t }
}

/// dlib's conversion of a `double` coordinate to a whole pixel.
pub fn round_half_up(v: f64) -> i64 {
    (v + 0.5).floor() as i64
}

/// The pixel at (`x`, `y`), or `None` outside the image.
pub fn pixel(image: &GrayImage, x: i64, y: i64) -> Option<u8> {
    let (w, h) = image.dimensions();
    (x >= 0 && y >= 0 && x < i64::from(w) && y < i64::from(h))
        .then(|| image.as_raw()[y as usize * w as usize + x as usize])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fit_recovers_a_similarity_exactly() {
        let from = [[0.0, 0.0], [1.0, 0.0], [0.3, 0.8], [0.9, 0.4]];
        let (s, c) = 0.7f64.sin_cos();
        let truth = Similarity {
            m: [[2.5 * c, -2.5 * s], [2.5 * s, 2.5 * c]],
            t: [10.0, -4.0],
        };
        let to: Vec<[f64; 2]> = from.iter().map(|&p| truth.apply(p)).collect();
        let fit = similarity(&from, &to);
        for (r, e) in fit.m.iter().flatten().zip(truth.m.iter().flatten()) {
            assert!((r - e).abs() < 1e-12);
        }
        assert!((fit.t[0] - 10.0).abs() < 1e-12 && (fit.t[1] + 4.0).abs() < 1e-12);
    }

    #[test]
    fn a_mirrored_target_still_gets_a_rotation() {
        let from = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]];
        let to = [[0.0, 0.0], [-1.0, 0.0], [0.0, 1.0]];
        let m = similarity(&from, &to).m;
        let det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
        assert!(det >= 0.0);
    }

    #[test]
    fn halves_round_up_as_dlib_does() {
        assert_eq!(round_half_up(2.5), 3);
        assert_eq!(round_half_up(-2.5), -2);
        assert_eq!(round_half_up(-2.6), -3);
    }
}
