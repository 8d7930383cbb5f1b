//! A folder of images played as a camera, for demos, training rooms and
//! tests. Images are shown in natural name order ("2.pgm" before "10.pgm"),
//! looping, at a fixed rate. Aligned face crops (exactly FACE_WIDTH ×
//! FACE_HEIGHT, like the ORL photos) are placed, enlarged, in the middle
//! of a larger frame, so that detection sees them as a camera would.

use std::path::{Path, PathBuf};

use image::imageops::{self, FilterType};
use vision::{GrayImage, FACE_HEIGHT, FACE_WIDTH};

use super::pace::Pacer;
use super::{CameraError, FrameSource};

/// Frame size an aligned crop is padded into, and its enlargement.
const PADDED: (u32, u32) = (480, 360);
const CROP_SCALE: u32 = 2;

pub struct FolderSource {
    dir: PathBuf,
    files: Vec<PathBuf>,
    next: usize,
    pace: Pacer,
    /// Stop after one pass instead of looping.
    once: bool,
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), CameraError> {
    let io = |source| CameraError::Io {
        path: dir.to_owned(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if vision::imageio::is_photo(&path) {
            out.push(path);
        }
    }
    Ok(())
}

/// Enlarges an aligned crop and centres it on a mid-grey frame.
pub fn pad_aligned(crop: &GrayImage) -> GrayImage {
    let big = imageops::resize(
        crop,
        FACE_WIDTH * CROP_SCALE,
        FACE_HEIGHT * CROP_SCALE,
        FilterType::Triangle,
    );
    let mean = (crop.pixels().map(|p| u64::from(p.0[0])).sum::<u64>()
        / u64::from(FACE_WIDTH * FACE_HEIGHT)) as u8;
    let mut frame = GrayImage::from_pixel(PADDED.0, PADDED.1, image::Luma([mean]));
    let x = i64::from((PADDED.0 - big.width()) / 2);
    let y = i64::from((PADDED.1 - big.height()) / 2);
    imageops::overlay(&mut frame, &big, x, y);
    frame
}

/// A frame as the camera shows it: aligned crops padded ([`pad_aligned`]),
/// anything else unchanged.
pub fn as_camera_frame(image: GrayImage) -> GrayImage {
    if image.dimensions() == (FACE_WIDTH, FACE_HEIGHT) {
        pad_aligned(&image)
    } else {
        image
    }
}

impl FolderSource {
    pub fn new(dir: &Path, fps: f64) -> Result<Self, CameraError> {
        let mut files = Vec::new();
        collect(dir, &mut files)?;
        if files.is_empty() {
            return Err(CameraError::NoImages(dir.to_owned()));
        }
        files.sort_by(|a, b| vision::imageio::natural_cmp(a, b));
        Ok(FolderSource {
            dir: dir.to_owned(),
            files,
            next: 0,
            pace: Pacer::new(fps),
            once: false,
        })
    }

    /// Plays the images once; afterwards `next_frame` reports the end as an error.
    pub fn once(mut self) -> Self {
        self.once = true;
        self
    }

    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
}

impl FrameSource for FolderSource {
    fn name(&self) -> String {
        format!("folder {}", self.dir.display())
    }

    fn open(&mut self) -> Result<(), CameraError> {
        if self.once && self.next >= self.files.len() {
            return Err(CameraError::Device("end of the folder".into()));
        }
        Ok(())
    }

    fn next_frame(&mut self) -> Result<GrayImage, CameraError> {
        if self.next >= self.files.len() {
            if self.once {
                return Err(CameraError::Device("end of the folder".into()));
            }
            self.next = 0;
        }
        self.pace.wait();
        let path = &self.files[self.next];
        self.next += 1;
        Ok(as_camera_frame(vision::imageio::load_gray(path)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order() {
        let mut v: Vec<PathBuf> = ["s10/1.pgm", "s9/10.pgm", "s9/2.pgm", "s1/1.pgm"]
            .iter()
            .map(PathBuf::from)
            .collect();
        v.sort_by(|a, b| vision::imageio::natural_cmp(a, b));
        let names: Vec<_> = v.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["s1/1.pgm", "s9/2.pgm", "s9/10.pgm", "s10/1.pgm"]);
    }

    #[test]
    fn plays_real_images_and_pads_aligned_crops() {
        let dir = tempfile::tempdir().unwrap();
        let crop = GrayImage::from_fn(FACE_WIDTH, FACE_HEIGHT, |x, _| {
            image::Luma([if x < FACE_WIDTH / 2 { 0 } else { 250 }])
        });
        crop.save(dir.path().join("2.png")).unwrap();
        GrayImage::from_pixel(64, 48, image::Luma([9]))
            .save(dir.path().join("10.png"))
            .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not an image").unwrap();

        let mut src = FolderSource::new(dir.path(), 100.0).unwrap().once();
        assert_eq!(src.files().len(), 2);
        src.open().unwrap();
        let padded = src.next_frame().unwrap();
        assert_eq!(padded.dimensions(), PADDED);
        let (left, right) = (
            (PADDED.0 - FACE_WIDTH * CROP_SCALE) / 2,
            (PADDED.0 + FACE_WIDTH * CROP_SCALE) / 2,
        );
        let mid = PADDED.1 / 2;
        let at = |x, y| padded.get_pixel(x, y).0[0];
        assert_eq!(
            (at(5, 5), at(left + 10, mid), at(right - 10, mid)),
            (125, 0, 250),
            "mean-grey border, enlarged crop centred"
        );
        assert_eq!(
            src.next_frame().unwrap().dimensions(),
            (64, 48),
            "other images pass unchanged"
        );
        assert!(
            src.next_frame().is_err() && src.open().is_err(),
            "a single pass ends"
        );
    }

    #[test]
    fn an_empty_or_missing_folder_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            FolderSource::new(dir.path(), 10.0),
            Err(CameraError::NoImages(_))
        ));
        assert!(matches!(
            FolderSource::new(&dir.path().join("missing"), 10.0),
            Err(CameraError::Io { .. })
        ));
    }
}
