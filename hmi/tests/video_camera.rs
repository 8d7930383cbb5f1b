//! A video file as the kiosk's camera (`--camera clip.avi`): a clip made
//! with our Motion-JPEG AVI writer (vision::video) from ORL photos plays, loops and signs in the
//! person whose photos it holds.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::*;
use kubevision_hmi::camera::{
    file_source, Camera, CameraError, CameraStatus, FrameSource, VideoSource,
};
use vision::imageio::load_gray;

/// An MJPG AVI at 25 frames a second of the given ORL photos (92 × 112 crops).
fn clip(dir: &Path, name: &str, photos: &[(u32, u32)]) -> PathBuf {
    let frames: Vec<_> = photos
        .iter()
        .map(|&(person, photo)| load_gray(&orl(person, photo)).unwrap())
        .collect();
    let path = dir.join(name);
    vision::video::write_mjpg(&path, 25.0, &frames).unwrap();
    path
}

#[test]
fn a_video_plays_at_its_own_rate_padded_and_looping() {
    let root = tempfile::tempdir().unwrap();
    let path = clip(root.path(), "s7.avi", &photos(WORKER, 6..=10));

    let mut once = VideoSource::new(&path, 1.0).unwrap().once();
    assert_eq!(once.fps(), 25.0, "the file's rate, not the fallback");
    once.open().unwrap();
    let start = Instant::now();
    let mut frames = Vec::new();
    while let Ok(frame) = once.next_frame() {
        frames.push(frame);
    }
    // Five frames 40 ms apart: the first at once, the last 160 ms later.
    assert!(
        start.elapsed() >= Duration::from_millis(160),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(frames.len(), 5);
    assert!(
        frames.iter().all(|f| f.dimensions() == (480, 360)),
        "aligned crops are padded like a folder's"
    );
    assert!(once.open().is_err(), "a single pass ends");

    // Through the capture thread, as the kiosk runs it: more frames than the clip holds.
    let source = file_source(&path, 1.0).unwrap();
    let camera = Camera::start(move || source as Box<dyn FrameSource>);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = 0;
    while last < 12 {
        assert!(
            Instant::now() < deadline,
            "only {last} frames; status {:?}",
            camera.status()
        );
        if let Some(frame) = camera.frames().take_timeout(Duration::from_millis(200)) {
            last = frame.seq;
        }
    }
    match camera.status() {
        CameraStatus::Running {
            name,
            width,
            height,
        } => {
            assert_eq!((width, height), (480, 360));
            assert!(
                name.starts_with("video ") && name.ends_with("s7.avi"),
                "{name}"
            );
        }
        other => panic!("camera not running: {other:?}"),
    }
}

#[test]
fn a_path_is_a_folder_or_a_video_and_a_bad_one_is_named() {
    let root = tempfile::tempdir().unwrap();
    let folder = camera(&root, "folder", &photos(WORKER, 6..=7));
    assert_eq!(
        file_source(&folder, 10.0).unwrap().name(),
        format!("folder {}", folder.display())
    );

    let notes = root.path().join("notes.avi");
    std::fs::write(&notes, "not a video").unwrap();
    let err = file_source(&notes, 10.0)
        .err()
        .expect("a text file is no camera");
    assert!(
        matches!(err, CameraError::Video(vision::Error::NotAVideo { .. })),
        "{err}"
    );
    assert!(
        err.to_string().contains(&notes.display().to_string()),
        "{err}"
    );
}

#[test]
fn an_enrolled_operator_signs_in_from_a_video_of_their_face() {
    let root = tempfile::tempdir().unwrap();
    let (data, _, worker) = seeded(&root);
    let video = clip(root.path(), "worker.avi", &photos(WORKER, 6..=10));
    let mut h = start(&data, &video);
    wait(&mut h, "the PIN pad", awaiting_pin);
    keys(&mut h, "1357");
    tap(&mut h, "OK");
    wait(&mut h, "the sign-in", signed_in);
    let s = h.state().kiosk().auth.session().unwrap();
    assert_eq!((s.operator.id, s.method.as_str()), (worker.id, "face+pin"));
}
