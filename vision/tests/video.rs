//! Video files (Motion-JPEG AVI) through our reader and writer: a clip of
//! ORL photos reads back as those photos. With `--features opencv-oracle`,
//! OpenCV is the oracle both ways: a clip OpenCV's `VideoWriter` writes
//! reads back through ours as OpenCV's `VideoCapture` reads it, and OpenCV
//! reads the clips we write, frame for frame.

mod orl;

use std::path::Path;

use kubevision_vision::video::{write_mjpg, VideoReader};
use kubevision_vision::{Error, GrayImage};
#[cfg(feature = "opencv-oracle")]
use opencv::{
    core::{Mat, Scalar, Size, CV_8UC3},
    prelude::*,
    videoio::{VideoCapture, VideoWriter},
};

/// Mean absolute difference of two images of one size.
fn mean_abs_diff(a: &GrayImage, b: &GrayImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let sum: u64 = a
        .pixels()
        .zip(b.pixels())
        .map(|(p, q)| p.0[0].abs_diff(q.0[0]) as u64)
        .sum();
    sum as f64 / (a.width() * a.height()) as f64
}

fn read_all(path: &Path) -> (VideoReader, Vec<GrayImage>) {
    let mut reader = VideoReader::open(path).unwrap();
    let frames = reader.by_ref().collect::<Result<Vec<_>, _>>().unwrap();
    (reader, frames)
}

#[test]
fn an_mjpg_clip_of_orl_photos_reads_back_as_the_photos() {
    let photos: Vec<GrayImage> = (1..=6).map(|p| orl::photo(7, p)).collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s7.avi");
    write_mjpg(&path, 25.0, &photos).unwrap();

    let (reader, frames) = read_all(&path);
    assert_eq!(reader.frame_count(), Some(6), "{reader:?}");
    assert!(
        reader.fps().is_some_and(|f| (f - 25.0).abs() < 0.01),
        "{reader:?}"
    );
    assert_eq!(reader.size(), (92, 112));
    assert_eq!(frames.len(), 6);
    for (i, (frame, photo)) in frames.iter().zip(&photos).enumerate() {
        let diff = mean_abs_diff(frame, photo);
        assert!(
            diff < 3.0,
            "frame {i} differs from its photo by {diff:.2} grey levels on average"
        );
    }
    // Frames come in order: each is nearest its own photo.
    for (i, frame) in frames.iter().enumerate() {
        let nearest = (0..photos.len()).min_by(|&a, &b| {
            mean_abs_diff(frame, &photos[a]).total_cmp(&mean_abs_diff(frame, &photos[b]))
        });
        assert_eq!(nearest, Some(i));
    }
}

/// A colour clip written with OpenCV's `VideoWriter` directly: frames come
/// back grey, as the same pictures loaded as photos would be.
#[cfg(feature = "opencv-oracle")]
#[test]
fn a_colour_clip_is_read_in_grey_like_photos() {
    let (w, h) = (96, 64);
    // A colour picture: red, green and blue bands over a horizontal ramp.
    let rgb = image::RgbImage::from_fn(w, h, |x, y| {
        let v = (x * 255 / (w - 1)) as u8;
        image::Rgb(match y * 3 / h {
            0 => [v, 40, 40],
            1 => [40, v, 40],
            _ => [40, 40, v],
        })
    });
    let expected =
        kubevision_vision::imageio::to_gray(&image::DynamicImage::ImageRgb8(rgb.clone()));
    let bgr: Vec<u8> = rgb
        .pixels()
        .flat_map(|p| [p.0[2], p.0[1], p.0[0]])
        .collect();
    let mut frame =
        Mat::new_rows_cols_with_default(h as i32, w as i32, CV_8UC3, Scalar::all(0.0)).unwrap();
    frame.data_bytes_mut().unwrap().copy_from_slice(&bgr);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("colour.avi");
    let fourcc = VideoWriter::fourcc('M', 'J', 'P', 'G').unwrap();
    let mut writer =
        VideoWriter::new(&path, fourcc, 10.0, Size::new(w as i32, h as i32), true).unwrap();
    assert!(
        writer.is_opened().unwrap(),
        "OpenCV cannot write an MJPG AVI here"
    );
    for _ in 0..3 {
        writer.write(&frame).unwrap();
    }
    writer.release().unwrap();

    let (reader, frames) = read_all(&path);
    assert_eq!((reader.frame_count(), frames.len()), (Some(3), 3));
    for frame in &frames {
        let diff = mean_abs_diff(frame, &expected);
        assert!(
            diff < 3.0,
            "grey frame differs from the photo conversion by {diff:.2}"
        );
    }
}

#[test]
fn a_file_that_is_no_video_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let notes = dir.path().join("notes.avi");
    std::fs::write(&notes, "this is a text file, not a video").unwrap();
    let err = VideoReader::open(&notes).unwrap_err();
    assert!(
        matches!(&err, Error::NotAVideo { path, .. } if *path == notes),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains(&notes.display().to_string()) && message.contains("video"),
        "{message}"
    );

    let missing = dir.path().join("missing.avi");
    let err = VideoReader::open(&missing).unwrap_err();
    assert!(
        matches!(&err, Error::Io { path, .. } if *path == missing),
        "{err}"
    );
    assert!(matches!(
        VideoReader::open(dir.path()),
        Err(Error::NotAVideo { .. })
    ));
}

/// Every frame of `path` as OpenCV's `VideoCapture` decodes it, in grey
/// (OpenCV's BGR frame converted as photos are).
#[cfg(feature = "opencv-oracle")]
fn opencv_frames(path: &Path) -> Vec<GrayImage> {
    let mut capture = VideoCapture::from_file(path, opencv::videoio::CAP_ANY).unwrap();
    assert!(
        capture.is_opened().unwrap(),
        "OpenCV cannot open {}",
        path.display()
    );
    let mut frames = Vec::new();
    let mut frame = Mat::default();
    while capture.read(&mut frame).unwrap() && !frame.empty() {
        let (w, h) = (frame.cols() as u32, frame.rows() as u32);
        let bytes = frame.data_bytes().unwrap();
        let rgb: Vec<u8> = bytes
            .chunks_exact(3)
            .flat_map(|b| [b[2], b[1], b[0]])
            .collect();
        let rgb = image::RgbImage::from_raw(w, h, rgb).unwrap();
        frames.push(kubevision_vision::imageio::to_gray(
            &image::DynamicImage::ImageRgb8(rgb),
        ));
    }
    frames
}

/// OpenCV reads the clips we write, and we read the clips OpenCV writes,
/// frame for frame: the same frame count, and each frame within 1 grey
/// level on average of OpenCV's decoding of it (two JPEG decoders may round
/// the inverse DCT and the colour conversion differently).
#[cfg(feature = "opencv-oracle")]
#[test]
fn opencv_and_our_reader_agree_on_clips_written_by_either() {
    let photos: Vec<GrayImage> = (1..=5).map(|p| orl::photo(12, p)).collect();
    let dir = tempfile::tempdir().unwrap();

    let ours = dir.path().join("ours.avi");
    write_mjpg(&ours, 10.0, &photos).unwrap();

    let theirs = dir.path().join("opencv.avi");
    let fourcc = VideoWriter::fourcc('M', 'J', 'P', 'G').unwrap();
    let mut writer = VideoWriter::new_with_backend(
        &theirs,
        opencv::videoio::CAP_OPENCV_MJPEG,
        fourcc,
        10.0,
        Size::new(92, 112),
        true,
    )
    .unwrap();
    assert!(writer.is_opened().unwrap());
    for photo in &photos {
        let bgr: Vec<u8> = photo.as_raw().iter().flat_map(|&v| [v, v, v]).collect();
        let mut frame =
            Mat::new_rows_cols_with_default(112, 92, CV_8UC3, Scalar::all(0.0)).unwrap();
        frame.data_bytes_mut().unwrap().copy_from_slice(&bgr);
        writer.write(&frame).unwrap();
    }
    writer.release().unwrap();

    for path in [&ours, &theirs] {
        let expected = opencv_frames(path);
        let (reader, frames) = read_all(path);
        assert_eq!(
            reader.frame_count(),
            Some(expected.len() as u64),
            "{}",
            path.display()
        );
        assert_eq!(frames.len(), photos.len(), "{}", path.display());
        for (i, (frame, cv)) in frames.iter().zip(&expected).enumerate() {
            let diff = mean_abs_diff(frame, cv);
            assert!(
                diff <= 1.0,
                "{} frame {i}: ours and OpenCV's decoding differ by {diff:.2} on average",
                path.display()
            );
        }
    }
}

/// Damaged and foreign AVIs: each refusal names its reason.
#[test]
fn a_damaged_or_foreign_avi_names_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.avi");
    write_mjpg(&good, 25.0, &[orl::photo(2, 2)]).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let reason = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        match VideoReader::open(&path).unwrap_err() {
            Error::NotAVideo { path: p, reason } if p == path => reason,
            other => panic!("{name}: {other}"),
        }
    };
    let movi = bytes.windows(4).position(|w| w == b"movi").unwrap();
    assert!(reason("headers-only.avi", &bytes[..movi + 4]).contains("no frame"));
    let mut h264 = bytes.clone();
    for w in 0..h264.len() - 4 {
        if &h264[w..w + 4] == b"MJPG" {
            h264[w..w + 4].copy_from_slice(b"H264");
        }
    }
    assert!(reason("h264.avi", &h264).contains("\"H264\""));
    let mut broken = bytes.clone();
    let frame = bytes.windows(4).position(|w| w == b"00dc").unwrap() + 8;
    broken[frame..frame + 64].fill(0);
    assert!(reason("broken-jpeg.avi", &broken).contains("frame 0"));
    assert!(reason("wav.avi", b"RIFF\x04\0\0\0WAVE").contains("not an AVI"));
}
