//! Why a frame cannot be used, in terms the kiosk can turn into a hint.
//!
//! The checks run in the order a person can fix them: be in the picture,
//! alone, close enough, in the middle, in decent light, and still.

use image::GrayImage;

use crate::detect::FaceBox;

/// The reason a frame is unusable. Each variant carries the measured value
/// and the limit it missed, so a hint can say "closer" rather than "no".
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QualityIssue {
    #[error("no face found: look into the camera")]
    NoFace,
    #[error("{count} faces in view: only the person signing in, please")]
    SeveralFaces { count: usize },
    #[error("face too small ({width} px, needs {min} px): come closer")]
    TooSmall { width: u32, min: u32 },
    #[error("face not centred: move to the middle of the picture")]
    OffCentre,
    #[error("too dark (brightness {mean:.0}, needs {min:.0}): more light on the face")]
    TooDark { mean: f64, min: f64 },
    #[error(
        "too bright (brightness {mean:.0}, at most {max:.0}): avoid light from behind the camera"
    )]
    TooBright { mean: f64, max: f64 },
    #[error("blurred (sharpness {sharpness:.0}, needs {min:.0}): hold still")]
    Blurred { sharpness: f64, min: f64 },
}

/// The limits of the quality gate. The defaults suit a 640 × 480 USB camera
/// at arm's length; the kiosk's settings can change them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QualityGate {
    /// Smallest face width, as a fraction of the frame width.
    pub min_face_fraction: f64,
    /// A second face at least this fraction of the largest one's area makes
    /// the frame ambiguous (someone looking over the operator's shoulder).
    pub second_face_ratio: f64,
    /// The face's centre must lie within this fraction of the frame from its centre.
    pub max_centre_offset: f64,
    /// Mean grey level of the crop must lie within these.
    pub min_brightness: f64,
    pub max_brightness: f64,
    /// Variance of the crop's Laplacian (a standard focus measure).
    pub min_sharpness: f64,
}

impl Default for QualityGate {
    fn default() -> Self {
        Self {
            min_face_fraction: 0.18,
            second_face_ratio: 0.5,
            max_centre_offset: 0.3,
            min_brightness: 50.0,
            max_brightness: 210.0,
            min_sharpness: 60.0,
        }
    }
}

impl QualityGate {
    /// Picks the face to use from the detections (largest first), or says
    /// why none will do.
    pub fn choose_face(
        &self,
        frame: &GrayImage,
        faces: &[FaceBox],
    ) -> Result<FaceBox, QualityIssue> {
        let face = *faces.first().ok_or(QualityIssue::NoFace)?;
        let rivals = faces[1..]
            .iter()
            .filter(|f| f.area() as f64 >= self.second_face_ratio * face.area() as f64)
            .count();
        if rivals > 0 {
            return Err(QualityIssue::SeveralFaces { count: rivals + 1 });
        }
        let (w, h) = (frame.width() as f64, frame.height() as f64);
        let min = (self.min_face_fraction * w).round() as u32;
        if face.width < min {
            return Err(QualityIssue::TooSmall {
                width: face.width,
                min,
            });
        }
        let dx = (face.x as f64 + face.width as f64 / 2.0 - w / 2.0).abs() / w;
        let dy = (face.y as f64 + face.height as f64 / 2.0 - h / 2.0).abs() / h;
        if dx > self.max_centre_offset || dy > self.max_centre_offset {
            return Err(QualityIssue::OffCentre);
        }
        Ok(face)
    }

    /// Checks light and focus on the normalised crop.
    pub fn check_crop(&self, crop: &GrayImage) -> Result<(), QualityIssue> {
        let mean = brightness(crop);
        if mean < self.min_brightness {
            return Err(QualityIssue::TooDark {
                mean,
                min: self.min_brightness,
            });
        }
        if mean > self.max_brightness {
            return Err(QualityIssue::TooBright {
                mean,
                max: self.max_brightness,
            });
        }
        let sharpness = sharpness(crop);
        if sharpness < self.min_sharpness {
            return Err(QualityIssue::Blurred {
                sharpness,
                min: self.min_sharpness,
            });
        }
        Ok(())
    }
}

/// Mean grey level.
pub fn brightness(img: &GrayImage) -> f64 {
    let pixels = img.as_raw();
    pixels.iter().map(|&p| p as u64).sum::<u64>() as f64 / pixels.len().max(1) as f64
}

/// Variance of the 4-neighbour Laplacian over the interior pixels.
pub fn sharpness(img: &GrayImage) -> f64 {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w < 3 || h < 3 {
        return 0.0;
    }
    let p = img.as_raw();
    let (mut sum, mut sum_sq) = (0.0f64, 0.0f64);
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            let i = y * w + x;
            let lap = p[i - 1] as f64 + p[i + 1] as f64 + p[i - w] as f64 + p[i + w] as f64
                - 4.0 * p[i] as f64;
            sum += lap;
            sum_sq += lap * lap;
        }
    }
    let n = ((w - 2) * (h - 2)) as f64;
    sum_sq / n - (sum / n) * (sum / n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> GrayImage {
        GrayImage::from_fn(640, 480, |x, y| image::Luma([((x ^ y) % 200) as u8 + 20]))
    }

    fn centred(width: u32) -> FaceBox {
        FaceBox {
            x: 320 - width / 2,
            y: 240 - width / 2,
            width,
            height: width,
        }
    }

    #[test]
    fn each_issue_is_named() {
        let gate = QualityGate::default();
        let f = frame();
        assert_eq!(gate.choose_face(&f, &[]), Err(QualityIssue::NoFace));
        assert_eq!(
            gate.choose_face(&f, &[centred(200), centred(150)]),
            Err(QualityIssue::SeveralFaces { count: 2 })
        );
        assert!(
            gate.choose_face(&f, &[centred(200), centred(40)]).is_ok(),
            "a small face in the background is ignored"
        );
        assert!(matches!(
            gate.choose_face(&f, &[centred(60)]),
            Err(QualityIssue::TooSmall { width: 60, .. })
        ));
        let corner = FaceBox {
            x: 0,
            y: 0,
            width: 150,
            height: 150,
        };
        assert_eq!(
            gate.choose_face(&f, &[corner]),
            Err(QualityIssue::OffCentre)
        );

        let dark = GrayImage::from_pixel(92, 112, image::Luma([10]));
        assert!(matches!(
            gate.check_crop(&dark),
            Err(QualityIssue::TooDark { .. })
        ));
        let bright = GrayImage::from_pixel(92, 112, image::Luma([250]));
        assert!(matches!(
            gate.check_crop(&bright),
            Err(QualityIssue::TooBright { .. })
        ));
        let flat = GrayImage::from_pixel(92, 112, image::Luma([128]));
        assert!(matches!(
            gate.check_crop(&flat),
            Err(QualityIssue::Blurred { .. })
        ));
        let textured = GrayImage::from_fn(92, 112, |x, y| {
            image::Luma([if (x / 3 + y / 3) % 2 == 0 { 60 } else { 190 }])
        });
        assert_eq!(gate.check_crop(&textured), Ok(()));
    }
}
