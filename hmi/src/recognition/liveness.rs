//! A motion check against replayed stills. A printed photo or a frozen
//! image on a screen gives the same face crop frame after frame; a living
//! face never does (blinks, breathing, micro-expressions, sensor noise on
//! skin moving relative to the camera). The check asks for a minimum mean
//! change between consecutive normalised crops of a burst.
//!
//! Limits, stated plainly: a video of the person, or a photo waved about
//! so that its crops resample differently, can pass. A challenge (blink,
//! head turn) is the stronger defence and would replace this check.

use vision::GrayImage;

/// Mean absolute grey-level change between consecutive crops (0–255) that
/// a live burst must reach. Identical frames give 0; ORL sequences, taken
/// seconds apart, give well above 10.
pub const MIN_MOTION: f64 = 2.0;

/// Mean absolute per-pixel difference of two same-sized crops.
pub fn motion(a: &GrayImage, b: &GrayImage) -> f64 {
    if a.dimensions() != b.dimensions() || a.as_raw().is_empty() {
        return 0.0;
    }
    let sum: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&x, &y)| u64::from(x.abs_diff(y)))
        .sum();
    sum as f64 / a.as_raw().len() as f64
}

/// Live when the median change between consecutive crops reaches
/// `MIN_MOTION`; the median lets a repeated frame or two (a camera that
/// delivers duplicates) not decide it.
pub fn is_live(crops: &[GrayImage]) -> bool {
    let mut changes: Vec<f64> = crops.windows(2).map(|w| motion(&w[0], &w[1])).collect();
    if changes.is_empty() {
        return false;
    }
    vision::burst::median(&mut changes) >= MIN_MOTION
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stills_are_not_live_and_changing_crops_are() {
        let a = GrayImage::from_fn(92, 112, |x, y| image::Luma([((x * 3 + y) % 251) as u8]));
        let b = GrayImage::from_fn(92, 112, |x, y| image::Luma([((x * 3 + y + 7) % 251) as u8]));
        assert!(!is_live(&[a.clone(), a.clone(), a.clone()]));
        assert!(is_live(&[a.clone(), b.clone(), a.clone()]));
        assert!(
            !is_live(std::slice::from_ref(&a)),
            "one frame proves nothing"
        );
    }
}
