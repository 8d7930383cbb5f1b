//! USB cameras through nokhwa (V4L2 on Linux, Media Foundation on Windows).
//! Frames are converted to grey here; MJPEG is decoded with the `image`
//! crate rather than nokhwa's decoder, which would pull in a C JPEG build.

use nokhwa::pixel_format::LumaFormat;
use nokhwa::utils::{
    ApiBackend, CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType,
    Resolution,
};
use vision::GrayImage;

use super::{CameraError, FrameSource};

fn device_error(e: nokhwa::NokhwaError) -> CameraError {
    CameraError::Device(e.to_string())
}

/// The cameras the system offers: (index, name).
pub fn list() -> Result<Vec<(u32, String)>, CameraError> {
    let cameras = nokhwa::query(ApiBackend::Auto).map_err(device_error)?;
    Ok(cameras
        .into_iter()
        .filter_map(|c| match c.index() {
            CameraIndex::Index(i) => Some((*i, c.human_name())),
            CameraIndex::String(_) => None,
        })
        .collect())
}

pub struct DeviceSource {
    index: u32,
    resolution: (u32, u32),
    camera: Option<nokhwa::Camera>,
}

impl DeviceSource {
    pub fn new(index: u32, resolution: (u32, u32)) -> Self {
        DeviceSource {
            index,
            resolution,
            camera: None,
        }
    }
}

impl FrameSource for DeviceSource {
    fn name(&self) -> String {
        match &self.camera {
            Some(c) => c.info().human_name(),
            None => format!("camera {}", self.index),
        }
    }

    fn open(&mut self) -> Result<(), CameraError> {
        // Closing first releases the device node, which a replugged camera needs.
        self.camera = None;
        let (w, h) = self.resolution;
        let wanted = CameraFormat::new(Resolution::new(w, h), FrameFormat::MJPEG, 30);
        let format = RequestedFormat::new::<LumaFormat>(RequestedFormatType::Closest(wanted));
        let mut camera =
            nokhwa::Camera::new(CameraIndex::Index(self.index), format).map_err(device_error)?;
        camera.open_stream().map_err(device_error)?;
        self.camera = Some(camera);
        Ok(())
    }

    fn next_frame(&mut self) -> Result<GrayImage, CameraError> {
        let camera = self
            .camera
            .as_mut()
            .ok_or_else(|| CameraError::Device("not open".into()))?;
        let frame = camera.frame().map_err(device_error)?;
        let res = frame.resolution();
        to_gray(
            frame.source_frame_format(),
            (res.width(), res.height()),
            frame.buffer(),
        )
    }
}

/// The luminance of one raw frame.
pub fn to_gray(
    format: FrameFormat,
    (w, h): (u32, u32),
    data: &[u8],
) -> Result<GrayImage, CameraError> {
    let pixels = w as usize * h as usize;
    let short = || {
        CameraError::Device(format!(
            "{format} frame of {} bytes is too short for {w}x{h}",
            data.len()
        ))
    };
    let luma: Vec<u8> = match format {
        FrameFormat::MJPEG => return Ok(vision::imageio::decode_gray(data)?),
        // The Y plane comes first (NV12) or is every other byte (YUYV).
        FrameFormat::GRAY | FrameFormat::NV12 => data.get(..pixels).ok_or_else(short)?.to_vec(),
        FrameFormat::YUYV => data
            .get(..pixels * 2)
            .ok_or_else(short)?
            .iter()
            .step_by(2)
            .copied()
            .collect(),
        FrameFormat::RAWRGB | FrameFormat::RAWBGR => {
            let (r, b) = if format == FrameFormat::RAWRGB {
                (0, 2)
            } else {
                (2, 0)
            };
            let rgb = data.get(..pixels * 3).ok_or_else(short)?;
            rgb.chunks_exact(3)
                .map(|p| {
                    ((u32::from(p[r]) * 299 + u32::from(p[1]) * 587 + u32::from(p[b]) * 114) / 1000)
                        as u8
                })
                .collect()
        }
    };
    GrayImage::from_raw(w, h, luma).ok_or_else(short)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_the_usual_camera_formats() {
        let (w, h) = (4, 2);
        let yuyv: Vec<u8> = (0..8).flat_map(|i| [i * 10, 128]).collect();
        assert_eq!(
            to_gray(FrameFormat::YUYV, (w, h), &yuyv).unwrap().as_raw(),
            &(0..8).map(|i| i * 10).collect::<Vec<u8>>()
        );
        let nv12: Vec<u8> = (0..12).collect();
        assert_eq!(
            to_gray(FrameFormat::NV12, (w, h), &nv12).unwrap().as_raw(),
            &nv12[..8]
        );
        let bgr = [0u8, 0, 255].repeat(8);
        assert_eq!(
            to_gray(FrameFormat::RAWBGR, (w, h), &bgr)
                .unwrap()
                .get_pixel(0, 0)
                .0,
            [76]
        );
        assert!(
            to_gray(FrameFormat::GRAY, (w, h), &[1, 2, 3]).is_err(),
            "short frames are errors, not panics"
        );

        let mut jpeg = Vec::new();
        let grey = GrayImage::from_pixel(16, 8, image::Luma([200]));
        image::DynamicImage::ImageLuma8(grey)
            .write_to(
                &mut std::io::Cursor::new(&mut jpeg),
                image::ImageFormat::Jpeg,
            )
            .unwrap();
        let decoded = to_gray(FrameFormat::MJPEG, (16, 8), &jpeg).unwrap();
        assert_eq!(decoded.dimensions(), (16, 8));
        assert!(decoded.pixels().all(|p| p.0[0].abs_diff(200) <= 2));
        assert!(to_gray(FrameFormat::MJPEG, (16, 8), b"not a jpeg").is_err());
    }
}
