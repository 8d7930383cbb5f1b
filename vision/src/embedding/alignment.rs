//! Where the face box for dlib's landmark model comes from.
//!
//! The landmark model expects a box of the shape dlib's own HOG detector
//! draws. The kiosk runs the OpenCV cascade on every frame anyway, so its
//! box mapped to dlib's shape costs nothing; dlib's detector costs 2–3×
//! the cascade (README, Benchmarks), for the same accuracy on ORL.

use crate::detect::FaceBox;

/// Where the face box for the landmark model comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alignment {
    /// dlib's HOG detector on the frame (what the landmark model was
    /// trained with). Only where dlib itself is built in as the oracle
    /// (feature `dlib-oracle`, Linux): `kubevision evaluate/bench
    /// --alignment hog` compares against it; the kiosk and the service use
    /// [`Alignment::Cascade`].
    #[cfg(all(feature = "dlib-oracle", target_os = "linux"))]
    Hog,
    /// The OpenCV cascade's box, mapped to dlib's box shape by
    /// [`cascade_to_dlib`].
    Cascade,
}

/// The cascade's box mapped to the box dlib's detector draws on the same
/// face: dlib's is smaller and sits lower (it spans brows to chin, the
/// cascade's forehead to chin). The factors are the medians over the ORL
/// faces both detectors found (`vision/tests/embedding.rs` measures them).
pub fn cascade_to_dlib(b: FaceBox) -> FaceBox {
    let (w, h) = (f64::from(b.width), f64::from(b.height));
    let cx = f64::from(b.x) + w * (0.5 + CASCADE_DX);
    let cy = f64::from(b.y) + h * (0.5 + CASCADE_DY);
    let side = w * CASCADE_SCALE;
    FaceBox {
        x: (cx - side / 2.0).round().max(0.0) as u32,
        y: (cy - side / 2.0).round().max(0.0) as u32,
        width: side.round().max(1.0) as u32,
        height: side.round().max(1.0) as u32,
    }
}

/// Horizontal shift of the box centre, in cascade box widths.
pub const CASCADE_DX: f64 = 0.0;
/// Vertical shift of the box centre, in cascade box heights.
pub const CASCADE_DY: f64 = 0.08;
/// dlib's box side over the cascade's.
pub const CASCADE_SCALE: f64 = 0.87;
