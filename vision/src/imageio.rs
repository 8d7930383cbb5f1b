//! Decoding photos and frames into 8-bit grey images.
//!
//! Colour is reduced with OpenCV's BT.601 fixed-point weights (the ones
//! `cvtColor(BGR2GRAY)` uses), so a colour photo gives the same grey pixels
//! it would give in the OpenCV prototype.
//!
//! A photo file is read through [`crate::files::read_limited`]: only a
//! regular file of at most [`crate::files::MAX_IMAGE_FILE_BYTES`], so that a
//! path to `/dev/zero` or a named pipe is an error and not a hang or an
//! exhausted memory.

use std::cmp::Ordering;
use std::path::Path;

use image::{DynamicImage, GrayImage, ImageReader};

use crate::Error;

/// File endings of the formats [`load_gray`] reads, lower case.
pub const PHOTO_ENDINGS: &[&str] = &[
    "png", "jpg", "jpeg", "pgm", "ppm", "pbm", "pnm", "gif", "bmp", "webp",
];

/// Whether `path` names a photo by its ending (any case).
pub fn is_photo(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| PHOTO_ENDINGS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Orders file names as people read them: digit runs compare as numbers,
/// so `s2/9.pgm` comes before `s10/10.pgm` (ORL's and cameras' numbering).
pub fn natural_cmp(a: &Path, b: &Path) -> Ordering {
    fn key(s: &str) -> Vec<(String, u64)> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            match c.to_digit(10) {
                Some(first) => {
                    let mut n = first as u64;
                    while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                        n = n.saturating_mul(10).saturating_add(d as u64);
                        chars.next();
                    }
                    parts.push((std::mem::take(&mut text), n));
                }
                None => text.push(c),
            }
        }
        parts.push((text, 0));
        parts
    }
    let (a, b) = (a.to_string_lossy(), b.to_string_lossy());
    key(&a).cmp(&key(&b)).then_with(|| a.cmp(&b))
}

/// Loads a photo in any common format (PNG, JPEG, PGM, GIF, BMP, WebP).
/// Anything but a regular file of at most
/// [`MAX_IMAGE_FILE_BYTES`](crate::files::MAX_IMAGE_FILE_BYTES) is refused.
pub fn load_gray(path: &Path) -> Result<GrayImage, Error> {
    let what = path.display().to_string();
    let bytes = crate::files::read_limited(path, crate::files::MAX_IMAGE_FILE_BYTES, "a photo")?;
    decode_named(&bytes, &what)
}

/// Decodes an encoded image held in memory (a frame sent over gRPC, say).
pub fn decode_gray(bytes: &[u8]) -> Result<GrayImage, Error> {
    decode_named(bytes, "the image data")
}

fn decode_named(bytes: &[u8], what: &str) -> Result<GrayImage, Error> {
    if bytes.is_empty() {
        return Err(Error::NotAnImage {
            what: what.to_owned(),
            reason: "the data is empty".into(),
        });
    }
    let reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::NotAnImage {
            what: what.to_owned(),
            reason: e.to_string(),
        })?;
    if reader.format().is_none() {
        return Err(Error::NotAnImage {
            what: what.to_owned(),
            reason: "unknown image format".into(),
        });
    }
    let image = reader.decode().map_err(|e| Error::NotAnImage {
        what: what.to_owned(),
        reason: e.to_string(),
    })?;
    if image.width() == 0 || image.height() == 0 {
        return Err(Error::EmptyImage {
            what: what.to_owned(),
        });
    }
    Ok(to_gray(&image))
}

/// Converts any decoded image to 8-bit grey the way OpenCV does.
pub fn to_gray(image: &DynamicImage) -> GrayImage {
    match image {
        DynamicImage::ImageLuma8(gray) => gray.clone(),
        other => {
            let rgb = other.to_rgb8();
            let mut gray = GrayImage::new(rgb.width(), rgb.height());
            for (dst, src) in gray.pixels_mut().zip(rgb.pixels()) {
                dst.0[0] = bt601(src.0);
            }
            gray
        }
    }
}

/// OpenCV's `RGB2Gray<uchar>`: 14-bit fixed-point BT.601 weights with rounding.
fn bt601([r, g, b]: [u8; 3]) -> u8 {
    const R: u32 = 4899; // round(0.299 * 2^14)
    const G: u32 = 9617; // round(0.587 * 2^14)
    const B: u32 = 1868; // round(0.114 * 2^14)
    ((r as u32 * R + g as u32 * G + b as u32 * B + (1 << 13)) >> 14) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_named_not_an_image() {
        let err = decode_gray(b"definitely not a picture").unwrap_err();
        assert!(matches!(err, Error::NotAnImage { .. }), "{err}");
        assert!(matches!(
            decode_gray(&[]).unwrap_err(),
            Error::NotAnImage { .. }
        ));
    }

    #[cfg(unix)]
    #[test]
    fn devices_and_pipes_are_not_photos() {
        let err = load_gray(Path::new("/dev/zero")).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("frame.png");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        let err = load_gray(&fifo).unwrap_err().to_string();
        assert!(err.contains("named pipe"), "{err}");
    }

    #[test]
    fn numbers_sort_as_numbers() {
        let mut v: Vec<&Path> = ["s10", "s2", "s1", "10.pgm", "9.pgm"]
            .iter()
            .map(Path::new)
            .collect();
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["9.pgm", "10.pgm", "s1", "s2", "s10"].map(Path::new));
        assert!(is_photo(Path::new("a/B.JPG")) && !is_photo(Path::new("notes.txt")));
    }

    #[test]
    fn grey_weights_match_opencv() {
        assert_eq!(bt601([255, 255, 255]), 255);
        assert_eq!(bt601([0, 0, 0]), 0);
        // cv::cvtColor of pure red/green/blue gives 76, 150 and 29.
        assert_eq!(
            (bt601([255, 0, 0]), bt601([0, 255, 0]), bt601([0, 0, 255])),
            (76, 150, 29)
        );
    }
}
