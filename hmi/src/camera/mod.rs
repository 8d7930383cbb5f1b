//! Frame sources on their own thread, handing the newest frame over through
//! a [`Mailbox`]. A source that fails (a USB camera unplugged) is reopened
//! every second; the status says what is going on.

mod device;
mod folder;
mod mailbox;
mod pace;
mod video;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

pub use device::{list as list_devices, DeviceSource};

/// The USB cameras found (index, name), or why none could be listed; for
/// the settings screen.
pub type CameraList = Result<Vec<(u32, String)>, String>;
pub use folder::FolderSource;
pub use mailbox::Mailbox;
pub use video::VideoSource;
use vision::GrayImage;

#[derive(Debug, thiserror::Error)]
pub enum CameraError {
    #[error("no images in {0}")]
    NoImages(std::path::PathBuf),
    #[error("reading {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("decoding a frame: {0}")]
    Decode(#[from] vision::Error),
    /// A video file that cannot be opened (the error names the file).
    #[error("{0}")]
    Video(vision::Error),
    #[error("camera: {0}")]
    Device(String),
}

/// One captured frame. Shared, because the preview and the recogniser both look at it.
#[derive(Clone)]
pub struct Frame {
    pub image: Arc<GrayImage>,
    /// Counts up from 1 for each frame of this camera.
    pub seq: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CameraStatus {
    Starting,
    Running {
        name: String,
        width: u32,
        height: u32,
    },
    /// Failed or unplugged; being reopened.
    Lost {
        reason: String,
    },
}

/// Something that yields frames: a USB camera, a folder of images, a video file. It
/// lives on the capture thread only (nokhwa's cameras are not `Send`).
pub trait FrameSource {
    fn name(&self) -> String;
    /// (Re)opens the source; called again after any error.
    fn open(&mut self) -> Result<(), CameraError>;
    /// Blocks until the next frame is due.
    fn next_frame(&mut self) -> Result<GrayImage, CameraError>;
}

/// The source for a camera given as a path (`--camera PATH`): a folder of
/// images, or else a video file. `fps` paces a folder, and a video whose
/// file does not say its frame rate.
pub fn file_source(path: &Path, fps: f64) -> Result<Box<dyn FrameSource + Send>, CameraError> {
    if path.is_dir() {
        Ok(Box::new(FolderSource::new(path, fps)?))
    } else {
        Ok(Box::new(VideoSource::new(path, fps)?))
    }
}

/// The capture thread. Dropping it stops the thread.
pub struct Camera {
    frames: Arc<Mailbox<Frame>>,
    status: Arc<Mutex<CameraStatus>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

const REOPEN_DELAY: Duration = Duration::from_secs(1);

impl Camera {
    /// Starts the capture thread; `make` builds the source on that thread.
    pub fn start(make: impl FnOnce() -> Box<dyn FrameSource> + Send + 'static) -> Camera {
        let frames = Arc::new(Mailbox::default());
        let status = Arc::new(Mutex::new(CameraStatus::Starting));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (frames, status, stop) =
                (Arc::clone(&frames), Arc::clone(&status), Arc::clone(&stop));
            std::thread::Builder::new()
                .name("camera".into())
                .spawn(move || {
                    let mut source = make();
                    let set = |s| *status.lock().unwrap_or_else(PoisonError::into_inner) = s;
                    let mut seq = 0;
                    while !stop.load(Ordering::Relaxed) {
                        if let Err(e) = source.open() {
                            set(CameraStatus::Lost {
                                reason: e.to_string(),
                            });
                            std::thread::sleep(REOPEN_DELAY);
                            continue;
                        }
                        let mut announced = false;
                        while !stop.load(Ordering::Relaxed) {
                            match source.next_frame() {
                                Ok(image) => {
                                    if !announced {
                                        let (width, height) = image.dimensions();
                                        set(CameraStatus::Running {
                                            name: source.name(),
                                            width,
                                            height,
                                        });
                                        announced = true;
                                    }
                                    seq += 1;
                                    frames.put(Frame {
                                        image: Arc::new(image),
                                        seq,
                                    });
                                }
                                Err(e) => {
                                    tracing::warn!("camera {}: {e}", source.name());
                                    set(CameraStatus::Lost {
                                        reason: e.to_string(),
                                    });
                                    std::thread::sleep(REOPEN_DELAY);
                                    break;
                                }
                            }
                        }
                    }
                })
                .expect("spawning the camera thread")
        };
        Camera {
            frames,
            status,
            stop,
            thread: Some(thread),
        }
    }

    /// The mailbox the newest frame lands in.
    pub fn frames(&self) -> Arc<Mailbox<Frame>> {
        Arc::clone(&self.frames)
    }

    pub fn status(&self) -> CameraStatus {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for Camera {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.frames.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails on the third frame as an unplugged camera would, then comes back.
    struct Flaky {
        served: u32,
        opens: u32,
    }

    impl FrameSource for Flaky {
        fn name(&self) -> String {
            "flaky".into()
        }
        fn open(&mut self) -> Result<(), CameraError> {
            self.opens += 1;
            Ok(())
        }
        fn next_frame(&mut self) -> Result<GrayImage, CameraError> {
            std::thread::sleep(Duration::from_millis(5));
            self.served += 1;
            if self.served == 3 {
                return Err(CameraError::Device("unplugged".into()));
            }
            Ok(GrayImage::from_pixel(8, 6, image::Luma([self.opens as u8])))
        }
    }

    #[test]
    fn survives_a_lost_source_and_reports_it() {
        let camera = Camera::start(|| {
            Box::new(Flaky {
                served: 0,
                opens: 0,
            })
        });
        let first = camera
            .frames()
            .take_timeout(Duration::from_secs(5))
            .unwrap();
        assert_eq!(first.image.get_pixel(0, 0).0, [1]);
        assert!(matches!(
            camera.status(),
            CameraStatus::Running {
                width: 8,
                height: 6,
                ..
            } | CameraStatus::Lost { .. }
        ));
        // Frames from the second opening prove that the thread reconnected.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut saw_lost = false;
        loop {
            saw_lost |= matches!(camera.status(), CameraStatus::Lost { ref reason } if reason.contains("unplugged"));
            if let Some(f) = camera.frames().take_timeout(Duration::from_millis(50)) {
                if f.image.get_pixel(0, 0).0 == [2] {
                    break;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no frame after reconnecting"
            );
        }
        assert!(saw_lost, "the loss was visible in the status");
    }
}
