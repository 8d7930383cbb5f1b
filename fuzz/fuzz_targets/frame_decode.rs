//! Frame decoding in the offload service (`frames.rs`): the header-based
//! pixel budget (`FaceReader::check_request`) and the decoding of camera
//! images, face-crop images and raw crops (`FaceReader::face`). The first
//! byte picks the frame's kind (raw crops take their width and height from
//! the next 8 bytes). Property: an image that passes the header check never
//! decodes to more pixels than the budget allows.
#![no_main]

use std::sync::LazyLock;

use kubevision_offload::frames::FaceReader;
use kubevision_proto::v1::{frame::Content, Frame, RawFaceCrop};
use libfuzzer_sys::fuzz_target;

/// A camera's 1024 × 768 a frame (smaller than the service's default, so
/// that the fuzzer spends its time on headers, not on huge valid images).
const MAX_IMAGE_PIXELS: u64 = 1024 * 768;

static READER: LazyLock<FaceReader> =
    LazyLock::new(|| FaceReader::new(MAX_IMAGE_PIXELS).with_request_pixels(4 * MAX_IMAGE_PIXELS));

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let content = match which % 3 {
        0 => Content::CameraImage(rest.to_vec().into()),
        1 => Content::FaceCropImage(rest.to_vec().into()),
        _ => {
            if rest.len() < 8 {
                return;
            }
            let (size, pixels) = rest.split_at(8);
            Content::RawFaceCrop(RawFaceCrop {
                width: u32::from_le_bytes(size[..4].try_into().unwrap()),
                height: u32::from_le_bytes(size[4..].try_into().unwrap()),
                pixels: pixels.to_vec().into(),
            })
        }
    };
    let frames = [Frame {
        content: Some(content),
    }];
    if READER.check_request(&frames).is_err() {
        return;
    }
    if which % 3 != 2 {
        if let Ok(image) = vision::imageio::decode_gray(rest) {
            let pixels = u64::from(image.width()) * u64::from(image.height());
            assert!(
                pixels <= MAX_IMAGE_PIXELS,
                "{} × {} decoded past the header check",
                image.width(),
                image.height()
            );
        }
    }
    if let Ok(Ok(face)) = READER.face(0, &frames[0]) {
        assert_eq!(
            face.crop().dimensions(),
            (vision::FACE_WIDTH, vision::FACE_HEIGHT)
        );
    }
});
