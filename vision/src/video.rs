//! Video files as a sequence of grey frames, through OpenCV's `VideoCapture`
//! (whatever backend OpenCV picks for the file: FFmpeg where it has it, its
//! own MJPEG reader otherwise).
//!
//! Frames come out as [`GrayImage`]s made with [`imageio::to_gray`], the
//! conversion photos get, so a video of photos gives the photos' grey pixels
//! (up to the codec's losses).

use std::path::{Path, PathBuf};

use image::{DynamicImage, GrayImage, RgbImage};
use opencv::core::{Mat, Size, CV_8U};
use opencv::prelude::*;
use opencv::videoio::{self, VideoCapture, VideoWriter};

use crate::{imageio, Error};

/// An open video file, read frame by frame. Also an iterator of frames.
pub struct VideoReader {
    path: PathBuf,
    capture: VideoCapture,
    /// The first frame, read while opening to prove the file is a video.
    first: Option<GrayImage>,
    frame_count: Option<u64>,
    fps: Option<f64>,
    size: (u32, u32),
}

impl std::fmt::Debug for VideoReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoReader")
            .field("path", &self.path)
            .field("frame_count", &self.frame_count)
            .field("fps", &self.fps)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl VideoReader {
    /// Opens `path` with any backend OpenCV has (`CAP_ANY`) and reads its
    /// first frame. A missing file is [`Error::Io`]; a file OpenCV cannot
    /// play, or one without a single frame, is [`Error::NotAVideo`].
    pub fn open(path: &Path) -> Result<Self, Error> {
        let not_a_video = |reason: String| Error::NotAVideo {
            path: path.to_owned(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        if meta.is_dir() {
            return Err(not_a_video("it is a folder".into()));
        }
        let capture =
            VideoCapture::from_file(path, videoio::CAP_ANY).map_err(|e| not_a_video(e.message))?;
        if !capture.is_opened()? {
            return Err(not_a_video(
                "no video backend of OpenCV recognises the file".into(),
            ));
        }
        // Containers that do not know these report 0 (or nonsense).
        let known = |v: f64| (v.is_finite() && v > 0.0).then_some(v);
        let frame_count =
            known(capture.get(videoio::CAP_PROP_FRAME_COUNT)?).map(|n| n.round() as u64);
        let fps = known(capture.get(videoio::CAP_PROP_FPS)?);
        let mut reader = VideoReader {
            path: path.to_owned(),
            capture,
            first: None,
            frame_count,
            fps,
            size: (0, 0),
        };
        match reader.read_frame() {
            Ok(Some(first)) => {
                reader.size = first.dimensions();
                reader.first = Some(first);
                Ok(reader)
            }
            Ok(None) => Err(not_a_video("it holds no frame OpenCV can decode".into())),
            Err(e) => Err(not_a_video(e.to_string())),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The number of frames, where the container says.
    pub fn frame_count(&self) -> Option<u64> {
        self.frame_count
    }

    /// Frames per second, where the container says.
    pub fn fps(&self) -> Option<f64> {
        self.fps
    }

    /// Width and height of the first frame.
    pub fn size(&self) -> (u32, u32) {
        self.size
    }

    /// The next frame, or `None` at the end of the file.
    pub fn next_frame(&mut self) -> Result<Option<GrayImage>, Error> {
        match self.first.take() {
            Some(first) => Ok(Some(first)),
            None => self.read_frame(),
        }
    }

    fn read_frame(&mut self) -> Result<Option<GrayImage>, Error> {
        let mut frame = Mat::default();
        if !self.capture.read(&mut frame)? || frame.empty() {
            return Ok(None);
        }
        gray_from_mat(&frame).map(Some)
    }
}

impl Iterator for VideoReader {
    type Item = Result<GrayImage, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_frame().transpose()
    }
}

/// An 8-bit grey, BGR or BGRA frame as OpenCV decodes it, in grey.
fn gray_from_mat(frame: &Mat) -> Result<GrayImage, Error> {
    let bad =
        |what: String| Error::OpenCv(opencv::Error::new(opencv::core::StsUnsupportedFormat, what));
    if frame.depth() != CV_8U {
        return Err(bad(format!(
            "video frames of depth {} are not 8-bit",
            frame.depth()
        )));
    }
    let (width, height) = (frame.cols() as u32, frame.rows() as u32);
    let continuous;
    let frame = if frame.is_continuous() {
        frame
    } else {
        continuous = frame.try_clone()?;
        &continuous
    };
    let bytes = frame.data_bytes()?;
    let channels = frame.channels() as usize;
    let rgb = match channels {
        1 => return Ok(GrayImage::from_raw(width, height, bytes.to_vec()).expect("a Mat's size")),
        3 | 4 => {
            let rgb = bytes
                .chunks_exact(channels)
                .flat_map(|bgr| [bgr[2], bgr[1], bgr[0]])
                .collect();
            RgbImage::from_raw(width, height, rgb).expect("a Mat's size")
        }
        n => return Err(bad(format!("video frames with {n} channels"))),
    };
    Ok(imageio::to_gray(&DynamicImage::ImageRgb8(rgb)))
}

/// Writes grey frames into a Motion-JPEG AVI with OpenCV's own writer
/// (`CAP_OPENCV_MJPEG`, no FFmpeg needed): demo clips and test videos.
/// Every frame must have the first one's size.
///
/// Frames are written as colour (three equal channels): OpenCV 4.6's
/// writer makes grey JPEGs that FFmpeg cannot decode when the width is not
/// a multiple of 8, such as the ORL photos' 92.
pub fn write_mjpg<'a>(
    path: &Path,
    fps: f64,
    frames: impl IntoIterator<Item = &'a GrayImage>,
) -> Result<(), Error> {
    let failed = |what: String| Error::Write {
        path: path.to_owned(),
        source: std::io::Error::other(what),
    };
    let mut frames = frames.into_iter().peekable();
    let Some(first) = frames.peek() else {
        return Err(failed("a video needs at least one frame".into()));
    };
    let (width, height) = first.dimensions();
    let fourcc = VideoWriter::fourcc('M', 'J', 'P', 'G')?;
    let size = Size::new(width as i32, height as i32);
    let mut writer =
        VideoWriter::new_with_backend(path, videoio::CAP_OPENCV_MJPEG, fourcc, fps, size, true)?;
    if !writer.is_opened()? {
        return Err(failed(
            "OpenCV cannot open it for writing an MJPG AVI".into(),
        ));
    }
    for (i, frame) in frames.enumerate() {
        if frame.dimensions() != (width, height) {
            let (w, h) = frame.dimensions();
            return Err(failed(format!(
                "frame {i} is {w} × {h} pixels, the video's are {width} × {height}"
            )));
        }
        let gray = Mat::new_rows_cols_with_data(height as i32, width as i32, frame.as_raw())?;
        let mut bgr = Mat::default();
        opencv::imgproc::cvt_color_def(&gray, &mut bgr, opencv::imgproc::COLOR_GRAY2BGR)?;
        writer.write(&bgr)?;
    }
    writer.release()?;
    Ok(())
}
