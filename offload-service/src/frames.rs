//! Turning the frames of a request into faces: normalised face crops, and
//! for camera images the whole frame with the face's box in it.
//!
//! Problems with the request itself (an undecodable or wrongly sized image)
//! are [`FrameError`]s and fail the RPC; a camera image in which no usable
//! face is found is an ordinary outcome ([`Unusable`]) reported per frame.

use std::sync::Mutex;

use image::ImageDecoder;
use kubevision_proto::v1::{frame::Content, Frame, RawFaceCrop};
use vision::detect::FaceDetector;
use vision::pipeline::{FacePipeline, FrameError as PipelineError};
use vision::quality::QualityGate;
use vision::{GrayImage, FACE_HEIGHT, FACE_WIDTH};

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error(
        "frame {index}: no image was given (set camera_image, face_crop_image, raw_face_crop or template)"
    )]
    Missing { index: usize },
    #[error("frame {index}: a template was sent where an image is needed")]
    NotAnImage { index: usize },
    #[error("frame {index}: the dlib recogniser needs whole camera images or templates, not normalised face crops")]
    CropForDlib { index: usize },
    /// A probe template (`Frame.template`) of another recogniser than the
    /// gallery's, or not a valid template.
    #[error("frame {index}: {source}")]
    BadTemplate { index: usize, source: vision::Error },
    #[error("frame {index}: {source}")]
    Undecodable { index: usize, source: vision::Error },
    #[error("frame {index}: the image is {width} × {height} pixels, more than the {max} pixels this server accepts")]
    TooLarge {
        index: usize,
        width: u32,
        height: u32,
        max: u64,
    },
    #[error("frame {index}: the frames up to this one add up to {total} pixels, more than the {max} pixels this server accepts in one request")]
    RequestTooLarge { index: usize, total: u64, max: u64 },
    #[error("frame {index}: the image has {bits} bits per channel ({color:?}); this server accepts images of 8 bits per channel (grey, grey with alpha, RGB or RGBA)")]
    TooDeep {
        index: usize,
        bits: u16,
        color: image::ColorType,
    },
    #[error("frame {index}: a face crop must be {FACE_WIDTH} × {FACE_HEIGHT} pixels, not {width} × {height}")]
    WrongCropSize {
        index: usize,
        width: u32,
        height: u32,
    },
    #[error("frame {index}: a raw face crop of {width} × {height} needs {expected} pixel bytes, not {actual}")]
    WrongPixelCount {
        index: usize,
        width: u32,
        height: u32,
        expected: u64,
        actual: usize,
    },
    #[error("frame {index}: this server has no face detector ({reason}); send face crops instead")]
    NoDetector { index: usize, reason: String },
    #[error("frame {index}: face detection failed: {source}")]
    Detection { index: usize, source: vision::Error },
}

/// Why a camera image gave no face to match, in words for the operator.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Unusable {
    #[error("no face was found")]
    NoFace,
    #[error("{0}")]
    PoorQuality(String),
}

/// A face found in a frame.
#[derive(Debug, Clone)]
pub enum Face {
    /// A normalised crop sent as such: the LBPH recogniser's input only.
    Crop(GrayImage),
    /// A face found in a camera image: the whole frame, and the detector's
    /// box in it with the crop cut from it (the dlib recogniser aligns by
    /// landmarks on the whole frame).
    Camera {
        frame: GrayImage,
        face: vision::pipeline::Face,
    },
}

impl Face {
    /// The normalised crop (the LBPH recogniser's input).
    pub fn crop(&self) -> &GrayImage {
        match self {
            Face::Crop(crop) => crop,
            Face::Camera { face, .. } => &face.crop,
        }
    }
}

/// Decoded pixels one request may add up to by default: a whole burst of
/// 32 frames from the kiosk's 1024 × 768 camera pass.
pub const DEFAULT_MAX_REQUEST_PIXELS: u64 = 32 * 1024 * 768;

/// Decodes frames and finds faces. OpenCV's detector is not thread-safe, so
/// each worker borrows a pipeline from a small pool (grown on demand, at most
/// one per concurrent worker).
pub struct FaceReader {
    detector: Result<Mutex<Vec<FacePipeline>>, String>,
    max_image_pixels: u64,
    max_request_pixels: u64,
}

impl FaceReader {
    /// A reader with a face detector if the cascade can be found.
    pub fn new(max_image_pixels: u64) -> Self {
        let detector = FaceDetector::from_default_locations()
            .map(|d| Mutex::new(vec![FacePipeline::new(d, QualityGate::default())]))
            .map_err(|e| e.to_string());
        Self {
            detector,
            max_image_pixels,
            max_request_pixels: DEFAULT_MAX_REQUEST_PIXELS.max(max_image_pixels),
        }
    }

    /// Sets the pixel budget of a whole request (the sum over its frames).
    pub fn with_request_pixels(mut self, max_request_pixels: u64) -> Self {
        self.max_request_pixels = max_request_pixels;
        self
    }

    /// Checks a request's frames as a whole before any is decoded: each
    /// encoded image's header (its size and depth), and the sum of their
    /// pixels against the request's budget. Costs a header parse per frame.
    pub fn check_request(&self, frames: &[Frame]) -> Result<(), FrameError> {
        let mut total = 0u64;
        for (index, frame) in frames.iter().enumerate() {
            let pixels = match &frame.content {
                Some(Content::CameraImage(bytes) | Content::FaceCropImage(bytes)) => self
                    .header(index, bytes)?
                    .map_or(0, |(w, h)| u64::from(w) * u64::from(h)),
                Some(Content::RawFaceCrop(raw)) => raw.pixels.len() as u64,
                Some(Content::Template(_)) | None => 0,
            };
            total = total.saturating_add(pixels);
            if total > self.max_request_pixels {
                return Err(FrameError::RequestTooLarge {
                    index,
                    total,
                    max: self.max_request_pixels,
                });
            }
        }
        Ok(())
    }

    /// Why camera images cannot be taken, if they cannot.
    pub fn detector_problem(&self) -> Option<&str> {
        self.detector.as_ref().err().map(String::as_str)
    }

    /// The face of frame `index`, or why it has none.
    pub fn face(&self, index: usize, frame: &Frame) -> Result<Result<Face, Unusable>, FrameError> {
        match &frame.content {
            None => Err(FrameError::Missing { index }),
            Some(Content::Template(_)) => Err(FrameError::NotAnImage { index }),
            Some(Content::RawFaceCrop(raw)) => raw_crop(index, raw).map(|c| Ok(Face::Crop(c))),
            Some(Content::FaceCropImage(bytes)) => {
                let crop = self.decode(index, bytes)?;
                check_crop_size(index, crop.width(), crop.height())?;
                Ok(Ok(Face::Crop(crop)))
            }
            Some(Content::CameraImage(bytes)) => {
                let pool = self
                    .detector
                    .as_ref()
                    .map_err(|reason| FrameError::NoDetector {
                        index,
                        reason: reason.clone(),
                    })?;
                let image = self.decode(index, bytes)?;
                let mut pipeline = match pool.lock().unwrap_or_else(|p| p.into_inner()).pop() {
                    Some(p) => p,
                    None => FaceDetector::from_default_locations()
                        .map(|d| FacePipeline::new(d, QualityGate::default()))
                        .map_err(|source| FrameError::Detection { index, source })?,
                };
                let outcome = pipeline.process(&image);
                pool.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(pipeline);
                match outcome {
                    Ok(face) => Ok(Ok(Face::Camera { frame: image, face })),
                    Err(PipelineError::Quality(vision::quality::QualityIssue::NoFace)) => {
                        Ok(Err(Unusable::NoFace))
                    }
                    Err(PipelineError::Quality(issue)) => {
                        Ok(Err(Unusable::PoorQuality(issue.to_string())))
                    }
                    Err(PipelineError::Vision(source)) => {
                        Err(FrameError::Detection { index, source })
                    }
                }
            }
        }
    }

    /// Decodes after checking the header, so that a small file that claims
    /// a gigantic or 16-bit image never gets its pixels allocated.
    fn decode(&self, index: usize, bytes: &[u8]) -> Result<GrayImage, FrameError> {
        self.header(index, bytes)?;
        vision::imageio::decode_gray(bytes)
            .map_err(|source| FrameError::Undecodable { index, source })
    }

    /// An encoded image's size from its header, refused if it has more
    /// pixels than one image may have or more than 8 bits per channel (a
    /// 16-bit RGBA image decodes to 8 bytes a pixel, and a camera never
    /// sends one). `None`: the header is unreadable, and decoding will say
    /// why in its own words.
    fn header(&self, index: usize, bytes: &[u8]) -> Result<Option<(u32, u32)>, FrameError> {
        let Ok(decoder) = image::ImageReader::new(std::io::Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|_| ())
            .and_then(|r| r.into_decoder().map_err(|_| ()))
        else {
            return Ok(None);
        };
        let (width, height) = decoder.dimensions();
        if u64::from(width) * u64::from(height) > self.max_image_pixels {
            return Err(FrameError::TooLarge {
                index,
                width,
                height,
                max: self.max_image_pixels,
            });
        }
        let color = decoder.color_type();
        let bits = color.bits_per_pixel() / u16::from(color.channel_count().max(1));
        if bits > 8 {
            return Err(FrameError::TooDeep { index, bits, color });
        }
        Ok(Some((width, height)))
    }
}

fn check_crop_size(index: usize, width: u32, height: u32) -> Result<(), FrameError> {
    if (width, height) != (FACE_WIDTH, FACE_HEIGHT) {
        return Err(FrameError::WrongCropSize {
            index,
            width,
            height,
        });
    }
    Ok(())
}

fn raw_crop(index: usize, raw: &RawFaceCrop) -> Result<GrayImage, FrameError> {
    check_crop_size(index, raw.width, raw.height)?;
    let expected = u64::from(raw.width) * u64::from(raw.height);
    let wrong = || FrameError::WrongPixelCount {
        index,
        width: raw.width,
        height: raw.height,
        expected,
        actual: raw.pixels.len(),
    };
    if raw.pixels.len() as u64 != expected {
        return Err(wrong());
    }
    GrayImage::from_raw(raw.width, raw.height, raw.pixels.to_vec()).ok_or_else(wrong)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(width: u32, height: u32, len: usize) -> Frame {
        Frame {
            content: Some(Content::RawFaceCrop(RawFaceCrop {
                width,
                height,
                pixels: vec![128; len].into(),
            })),
        }
    }

    #[test]
    fn raw_crops_must_have_the_normalised_geometry() {
        let reader = FaceReader::new(1000);
        let n = (FACE_WIDTH * FACE_HEIGHT) as usize;
        assert!(matches!(
            reader.face(0, &raw(FACE_WIDTH, FACE_HEIGHT, n)),
            Ok(Ok(_))
        ));
        assert!(matches!(
            reader.face(1, &raw(FACE_WIDTH, FACE_HEIGHT, n - 1)),
            Err(FrameError::WrongPixelCount { .. })
        ));
        assert!(matches!(
            reader.face(2, &raw(u32::MAX, u32::MAX, 0)),
            Err(FrameError::WrongCropSize { .. })
        ));
        assert!(matches!(
            reader.face(3, &Frame { content: None }),
            Err(FrameError::Missing { index: 3 })
        ));
    }

    fn png(width: u32, height: u32, sixteen_bit: bool) -> Frame {
        let mut bytes = Vec::new();
        let cursor = &mut std::io::Cursor::new(&mut bytes);
        if sixteen_bit {
            image::ImageBuffer::<image::Rgba<u16>, _>::new(width, height)
                .write_to(cursor, image::ImageFormat::Png)
                .unwrap();
        } else {
            image::GrayImage::new(width, height)
                .write_to(cursor, image::ImageFormat::Png)
                .unwrap();
        }
        Frame {
            content: Some(Content::CameraImage(bytes.into())),
        }
    }

    #[test]
    fn a_request_has_a_pixel_budget_over_all_its_frames() {
        let reader = FaceReader::new(1_000_000).with_request_pixels(250_000);
        let frames = vec![png(300, 300, false); 3];
        assert!(reader.check_request(&frames[..2]).is_ok());
        let err = reader.check_request(&frames).unwrap_err();
        assert!(
            matches!(
                err,
                FrameError::RequestTooLarge {
                    index: 2,
                    total: 270_000,
                    max: 250_000
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("in one request"), "{err}");
        // Raw crops count too.
        let n = (FACE_WIDTH * FACE_HEIGHT) as usize;
        let crops = vec![raw(FACE_WIDTH, FACE_HEIGHT, n); 25];
        assert!(matches!(
            reader.check_request(&crops),
            Err(FrameError::RequestTooLarge { index: 24, .. })
        ));
    }

    #[test]
    fn sixteen_bit_images_are_refused_from_the_header() {
        let reader = FaceReader::new(1_000_000);
        let err = reader.check_request(&[png(64, 64, true)]).unwrap_err();
        assert!(
            matches!(
                err,
                FrameError::TooDeep {
                    index: 0,
                    bits: 16,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("8 bits per channel"), "{err}");
        assert!(reader.check_request(&[png(64, 64, false)]).is_ok());
    }

    #[test]
    fn a_small_file_claiming_a_huge_image_is_refused_before_decoding() {
        // A valid PGM header for 100000 × 100000 pixels, with no pixel data.
        let bomb = b"P5\n100000 100000\n255\n".to_vec();
        let reader = FaceReader::new(16_000_000);
        let frame = Frame {
            content: Some(Content::FaceCropImage(bomb.into())),
        };
        let err = reader.face(0, &frame).unwrap_err();
        assert!(
            matches!(err, FrameError::TooLarge { width: 100000, .. }),
            "{err}"
        );
    }
}
