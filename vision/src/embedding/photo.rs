//! Photos that are not camera frames.
//!
//! Datasets and enrolment photos are often tight face crops (ORL's are
//! 92 × 112). dlib's landmark model and the cascade both want a face of the
//! size a kiosk camera sees at sign-in distance (about 250 px in a 640 × 480
//! frame) with some background around it; a tight crop gives neither. Such
//! a photo is scaled up by a whole factor (at most 3) and centred on a
//! mid-grey frame of that size. A photo as large as a frame is used as it is.

use image::imageops::{self, FilterType};
use image::GrayImage;

use crate::detect::FaceBox;

/// The camera frame size photos are framed to.
pub const FRAME_WIDTH: u32 = 640;
/// See [`FRAME_WIDTH`].
pub const FRAME_HEIGHT: u32 = 480;

/// The whole factor [`as_camera_frame`] scales a `w` × `h` photo by, or
/// `None` for a photo it uses as it is.
fn framing_scale(w: u32, h: u32) -> Option<u32> {
    if w == 0 || h == 0 || w >= FRAME_WIDTH || h >= FRAME_HEIGHT {
        return None;
    }
    // The largest whole factor that leaves a tenth of the frame around it.
    let fit = ((FRAME_WIDTH * 9 / 10) / w).min((FRAME_HEIGHT * 9 / 10) / h);
    Some(fit.clamp(1, 3))
}

/// Where the face of a tight crop (an aligned photo, which the face fills)
/// lies in [`as_camera_frame`]'s frame: a square as wide as the crop,
/// centred on it, in the shape of the cascade's box. It stands in for the
/// cascade's box where the cascade misses such a photo. `None` for a photo
/// that is used as it is.
pub fn framed_crop_face(w: u32, h: u32) -> Option<FaceBox> {
    let scale = framing_scale(w, h)?;
    let (bw, bh) = (w * scale, h * scale);
    Some(FaceBox {
        x: (FRAME_WIDTH - bw) / 2,
        y: (FRAME_HEIGHT - bh) / 2 + bh.saturating_sub(bw) / 2,
        width: bw,
        height: bw.min(bh),
    })
}

/// `photo` as a camera would have seen it (see the module docs).
pub fn as_camera_frame(photo: &GrayImage) -> GrayImage {
    let (w, h) = photo.dimensions();
    let Some(scale) = framing_scale(w, h) else {
        return photo.clone();
    };
    let big = imageops::resize(photo, w * scale, h * scale, FilterType::Triangle);
    let mut frame = GrayImage::from_pixel(FRAME_WIDTH, FRAME_HEIGHT, image::Luma([128]));
    imageops::replace(
        &mut frame,
        &big,
        i64::from((FRAME_WIDTH - big.width()) / 2),
        i64::from((FRAME_HEIGHT - big.height()) / 2),
    );
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crop_is_scaled_and_centred_and_a_frame_is_kept() {
        let crop = GrayImage::from_pixel(92, 112, image::Luma([7]));
        let f = as_camera_frame(&crop);
        assert_eq!(f.dimensions(), (640, 480));
        // 3× is 276 × 336, centred: columns 182..458, rows 72..408.
        assert_eq!(f.get_pixel(182, 72)[0], 7);
        assert_eq!(f.get_pixel(457, 407)[0], 7);
        assert_eq!(f.get_pixel(181, 72)[0], 128);
        assert_eq!(f.get_pixel(182, 408)[0], 128);
        let frame = GrayImage::from_pixel(800, 600, image::Luma([9]));
        assert_eq!(as_camera_frame(&frame), frame);
        // The crop's face: 276 wide, centred on the 276 × 336 crop.
        let face = framed_crop_face(92, 112).unwrap();
        assert_eq!(
            (face.x, face.y, face.width, face.height),
            (182, 102, 276, 276)
        );
        assert_eq!(framed_crop_face(800, 600), None);
    }
}
