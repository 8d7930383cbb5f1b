//! A video file played as a camera, for demos, training rooms and tests:
//! at the file's own frame rate (or the given one when the file does not
//! say), looping, with aligned face crops padded like the folder source's.

use std::path::{Path, PathBuf};

use vision::video::VideoReader;
use vision::GrayImage;

use super::folder::as_camera_frame;
use super::pace::Pacer;
use super::{CameraError, FrameSource};

pub struct VideoSource {
    path: PathBuf,
    fps: f64,
    reader: Option<VideoReader>,
    pace: Pacer,
    /// Stop after one pass instead of looping.
    once: bool,
    ended: bool,
}

impl VideoSource {
    /// Checks that `path` opens as a video; `fps` is used when the file has no frame rate.
    pub fn new(path: &Path, fps: f64) -> Result<Self, CameraError> {
        let reader = VideoReader::open(path).map_err(CameraError::Video)?;
        let fps = reader.fps().unwrap_or(fps);
        Ok(VideoSource {
            path: path.to_owned(),
            fps,
            reader: Some(reader),
            pace: Pacer::new(fps),
            once: false,
            ended: false,
        })
    }

    /// Plays the video once; afterwards `next_frame` reports the end as an error.
    pub fn once(mut self) -> Self {
        self.once = true;
        self
    }

    /// The rate frames are delivered at.
    pub fn fps(&self) -> f64 {
        self.fps
    }
}

impl FrameSource for VideoSource {
    fn name(&self) -> String {
        format!("video {}", self.path.display())
    }

    fn open(&mut self) -> Result<(), CameraError> {
        if self.once && self.ended {
            return Err(CameraError::Device("end of the video".into()));
        }
        // After an error start the file afresh; the reader `new` opened is kept.
        if self.reader.is_none() {
            self.reader = Some(VideoReader::open(&self.path).map_err(CameraError::Video)?);
        }
        Ok(())
    }

    fn next_frame(&mut self) -> Result<GrayImage, CameraError> {
        self.pace.wait();
        let frame = self.read();
        if frame.is_err() {
            // The next `open` starts the file afresh.
            self.reader = None;
        }
        frame.map(as_camera_frame)
    }
}

impl VideoSource {
    fn read(&mut self) -> Result<GrayImage, CameraError> {
        let reader = self
            .reader
            .as_mut()
            .ok_or_else(|| CameraError::Device("not open".into()))?;
        if let Some(frame) = reader.next_frame()? {
            return Ok(frame);
        }
        if self.once {
            self.ended = true;
            return Err(CameraError::Device("end of the video".into()));
        }
        // At the end, play it again from the start, as the folder source loops.
        let reader = self
            .reader
            .insert(VideoReader::open(&self.path).map_err(CameraError::Video)?);
        reader
            .next_frame()?
            .ok_or_else(|| CameraError::Device("no frame after rewinding".into()))
    }
}
