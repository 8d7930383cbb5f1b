//! Bench inputs made from the ORL faces.

use std::path::Path;

use anyhow::Context;
use image::{imageops, GrayImage, Luma};

/// The 400 ORL photos, by person (1–40) and photo (1–10).
pub struct Orl {
    photos: Vec<GrayImage>,
}

impl Orl {
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let mut photos = Vec::with_capacity(400);
        for person in 1..=40 {
            for photo in 1..=10 {
                let path = dir.join(format!("s{person}/{photo}.pgm"));
                photos.push(
                    vision::imageio::load_gray(&path)
                        .with_context(|| "the bench needs the ORL faces (--orl DIR)")?,
                );
            }
        }
        Ok(Self { photos })
    }

    pub fn photo(&self, person: usize, photo: usize) -> &GrayImage {
        &self.photos[(person - 1) * 10 + photo - 1]
    }

    /// The `i`-th gallery image (for the LBPH bench, with `oracles`): photos 1–5 of every person, then the same
    /// photos shifted, brightened and mirrored, as a 50-frame enrolment gives
    /// many slightly different views of each person.
    #[cfg(feature = "oracles")]
    pub fn gallery_image(&self, i: usize) -> (i32, GrayImage) {
        let (base, variant) = (i % 200, i / 200);
        let (person, photo) = (base / 5 + 1, base % 5 + 1);
        (person as i32, augment(self.photo(person, photo), variant))
    }

    /// The `i`-th probe: photos 6–10, never in the gallery.
    #[cfg(feature = "oracles")]
    pub fn probe(&self, i: usize) -> (i32, &GrayImage) {
        let person = i % 40 + 1;
        (person as i32, self.photo(person, 6 + (i / 40) % 5))
    }
}

/// A deterministic variation of a face: a shift of up to 3 pixels, a gain of
/// ±15 % and every other variant mirrored. Variant 0 is the photo itself.
#[cfg(feature = "oracles")]
fn augment(img: &GrayImage, variant: usize) -> GrayImage {
    if variant == 0 {
        return img.clone();
    }
    let dx = (variant * 7 % 7) as i64 - 3;
    let dy = (variant * 5 % 7) as i64 - 3;
    let gain = 0.85 + (variant % 11) as f32 * 0.03;
    let (w, h) = img.dimensions();
    let shifted = GrayImage::from_fn(w, h, |x, y| {
        let sx = (x as i64 + dx).clamp(0, w as i64 - 1) as u32;
        let sy = (y as i64 + dy).clamp(0, h as i64 - 1) as u32;
        Luma([(img.get_pixel(sx, sy).0[0] as f32 * gain).min(255.0) as u8])
    });
    if variant % 2 == 1 {
        imageops::flip_horizontal(&shifted)
    } else {
        shifted
    }
}

/// A 640 × 480 frame with one ORL face, scaled to sign-in distance, on a
/// textured background; the face moves a little from frame to frame.
pub fn frame(orl: &Orl, i: usize) -> GrayImage {
    let face = orl.photo(i % 40 + 1, i % 10 + 1);
    let face = imageops::resize(face, 220, 268, imageops::FilterType::Triangle);
    let mut frame = GrayImage::from_fn(640, 480, |x, y| {
        Luma([(90 + (x / 4 + y / 3) % 60 + (((x * 31) ^ (y * 17)) % 13)) as u8])
    });
    let (x0, y0) = (210 + (i % 9) as i64 * 3, 100 + (i % 7) as i64 * 3);
    imageops::overlay(&mut frame, &face, x0, y0);
    frame
}
