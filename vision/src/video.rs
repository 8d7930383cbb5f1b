//! Video files as a sequence of grey frames: Motion-JPEG in an AVI (RIFF)
//! container, the format OpenCV's own `VideoWriter` writes with fourcc
//! `MJPG` and most cameras record. The container is read here; each frame
//! is a JPEG decoded by the `image` crate.
//!
//! Frames come out as [`GrayImage`]s made with [`imageio::to_gray`], the
//! conversion photos get, so a video of photos gives the photos' grey pixels
//! (up to the codec's losses).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, GrayImage, ImageFormat};

use crate::{imageio, Error};

/// The largest frame read (a 4K Motion-JPEG frame is a few MB).
const MAX_FRAME_BYTES: u32 = 64 << 20;

/// An open video file, read frame by frame. Also an iterator of frames.
pub struct VideoReader {
    path: PathBuf,
    file: File,
    /// Offset and length of each frame's JPEG data, in file order.
    frames: Vec<(u64, u32)>,
    next: usize,
    fps: Option<f64>,
    size: (u32, u32),
}

impl std::fmt::Debug for VideoReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoReader")
            .field("path", &self.path)
            .field("frame_count", &self.frames.len())
            .field("fps", &self.fps)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

fn fourcc(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '?'
            }
        })
        .collect()
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// What the headers say about the video stream.
#[derive(Default)]
struct Header {
    micros_per_frame: u32,
    /// The first video stream: its number, compression and rate.
    video: Option<(usize, [u8; 4], u32, u32)>,
    streams: usize,
}

impl VideoReader {
    /// Opens `path` and reads its first frame. A missing file is
    /// [`Error::Io`]; a file that is not a Motion-JPEG AVI, or whose first
    /// frame does not decode, is [`Error::NotAVideo`] naming the reason.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let not_a_video = |reason: String| Error::NotAVideo {
            path: path.to_owned(),
            reason,
        };
        let io = |source: std::io::Error| Error::Io {
            path: path.to_owned(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        if meta.is_dir() {
            return Err(not_a_video("it is a folder".into()));
        }
        let mut file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let mut header = Header::default();
        let mut frames = Vec::new();
        let mut at = 0u64;
        let mut first = true;
        // An AVI is a RIFF 'AVI ' chunk, followed in large OpenDML files by
        // RIFF 'AVIX' chunks holding more frames.
        while at + 12 <= len {
            let head = read_bytes(&mut file, at, 12).map_err(io)?;
            if &head[0..4] != b"RIFF" || (first && &head[8..12] != b"AVI ") {
                if first {
                    return Err(not_a_video(
                        "it is not an AVI file (it does not start with a RIFF AVI header)".into(),
                    ));
                }
                break;
            }
            let end = (at + 8 + u32_at(&head, 4) as u64).min(len);
            walk(&mut file, at + 12, end, &mut header, &mut frames, first).map_err(io)?;
            first = false;
            at = end + (end & 1);
        }
        let Some((stream, compression, scale, rate)) = header.video else {
            return Err(not_a_video("it has no video stream".into()));
        };
        if &compression != b"MJPG" {
            return Err(not_a_video(format!(
                "its video is compressed as {:?}; only Motion-JPEG (MJPG) is read",
                fourcc(&compression)
            )));
        }
        frames.retain(|&(s, _, _)| s == stream);
        let fps = if scale > 0 && rate > 0 {
            Some(rate as f64 / scale as f64)
        } else if header.micros_per_frame > 0 {
            Some(1e6 / header.micros_per_frame as f64)
        } else {
            None
        };
        let mut reader = VideoReader {
            path: path.to_owned(),
            file,
            frames: frames.into_iter().map(|(_, o, l)| (o, l)).collect(),
            next: 0,
            fps,
            size: (0, 0),
        };
        match reader.next_frame() {
            Ok(Some(first)) => {
                reader.size = first.dimensions();
                reader.next = 0;
                Ok(reader)
            }
            Ok(None) => Err(not_a_video("it holds no frame".into())),
            Err(e) => Err(not_a_video(e.to_string())),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The number of frames in the file.
    pub fn frame_count(&self) -> Option<u64> {
        Some(self.frames.len() as u64)
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
        let Some(&(offset, len)) = self.frames.get(self.next) else {
            return Ok(None);
        };
        let index = self.next;
        self.next += 1;
        let what = || format!("frame {index} of {}", self.path.display());
        if len > MAX_FRAME_BYTES {
            return Err(Error::NotAnImage {
                what: what(),
                reason: format!("{len} bytes, over the limit of {MAX_FRAME_BYTES}"),
            });
        }
        let bytes =
            read_bytes(&mut self.file, offset, len as usize).map_err(|source| Error::Io {
                path: self.path.clone(),
                source,
            })?;
        let image =
            image::load_from_memory_with_format(&bytes, ImageFormat::Jpeg).map_err(|e| {
                Error::NotAnImage {
                    what: what(),
                    reason: e.to_string(),
                }
            })?;
        Ok(Some(imageio::to_gray(&image)))
    }
}

impl Iterator for VideoReader {
    type Item = Result<GrayImage, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_frame().transpose()
    }
}

fn read_bytes(file: &mut File, at: u64, len: usize) -> std::io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(at))?;
    let mut buf = vec![0; len];
    file.read_exact(&mut buf)?;
    Ok(buf)
}

/// Walks the chunks in `start..end`: headers into `header`, and the data
/// chunks of `movi` lists into `frames` as (stream, offset, length). A chunk
/// that runs past the end of the file (a truncated recording) ends the walk.
fn walk(
    file: &mut File,
    start: u64,
    end: u64,
    header: &mut Header,
    frames: &mut Vec<(usize, u64, u32)>,
    in_header: bool,
) -> std::io::Result<()> {
    let mut at = start;
    while at + 8 <= end {
        let head = read_bytes(file, at, 8)?;
        let size = u32_at(&head, 4);
        let data = at + 8;
        if data + size as u64 > end {
            break;
        }
        match &head[0..4] {
            b"LIST" if size >= 4 => {
                let kind = read_bytes(file, data, 4)?;
                match &kind[..] {
                    b"hdrl" | b"strl" | b"movi" | b"rec " => walk(
                        file,
                        data + 4,
                        data + size as u64,
                        header,
                        frames,
                        in_header,
                    )?,
                    _ => {}
                }
            }
            b"avih" if in_header => {
                let b = read_bytes(file, data, size.min(56) as usize)?;
                header.micros_per_frame = u32_at(&b, 0);
            }
            b"strh" if in_header => {
                let b = read_bytes(file, data, size.min(56) as usize)?;
                let stream = header.streams;
                header.streams += 1;
                if b.get(0..4) == Some(b"vids") && header.video.is_none() {
                    let mut handler = [0; 4];
                    handler.copy_from_slice(b.get(4..8).unwrap_or(&[0; 4]));
                    header.video = Some((stream, handler, u32_at(&b, 20), u32_at(&b, 24)));
                }
            }
            b"strf" if in_header => {
                // BITMAPINFOHEADER: the compression is the authoritative fourcc.
                let b = read_bytes(file, data, size.min(40) as usize)?;
                if let (Some(video), Some(c)) = (header.video.as_mut(), b.get(16..20)) {
                    if video.0 + 1 == header.streams {
                        video.1.copy_from_slice(c);
                    }
                }
            }
            id if id[2..4] == *b"dc" || id[2..4] == *b"db" => {
                if let Ok(stream) = std::str::from_utf8(&id[0..2])
                    .unwrap_or("x")
                    .parse::<usize>()
                {
                    if size > 0 {
                        frames.push((stream, data, size));
                    }
                }
            }
            _ => {}
        }
        at = data + size as u64 + (size & 1) as u64;
    }
    Ok(())
}

/// Writes grey frames into a Motion-JPEG AVI (JPEG quality 95, OpenCV's
/// default): demo clips and test videos. Every frame must have the first
/// one's size. Frames are stored as colour JPEGs of three equal channels,
/// which every player decodes.
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
    if !(fps.is_finite() && fps > 0.0) {
        return Err(failed(format!("{fps} is not a frame rate")));
    }
    let (width, height) = first.dimensions();
    let mut jpegs = Vec::new();
    for (i, frame) in frames.enumerate() {
        if frame.dimensions() != (width, height) {
            let (w, h) = frame.dimensions();
            return Err(failed(format!(
                "frame {i} is {w} × {h} pixels, the video's are {width} × {height}"
            )));
        }
        let rgb = DynamicImage::ImageLuma8(frame.clone()).to_rgb8();
        let mut jpeg = Vec::new();
        JpegEncoder::new_with_quality(&mut jpeg, 95)
            .encode_image(&rgb)
            .map_err(|e| failed(format!("frame {i} cannot be encoded: {e}")))?;
        jpegs.push(jpeg);
    }
    let avi = avi_bytes(&jpegs, fps, width, height);
    crate::files::write_atomic(path, |out| out.write_all(&avi))
}

fn chunk(out: &mut Vec<u8>, id: &[u8; 4], body: &[u8]) {
    out.extend_from_slice(id);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
    if body.len() % 2 == 1 {
        out.push(0);
    }
}

fn list(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut inner = kind.to_vec();
    inner.extend_from_slice(body);
    let mut out = Vec::new();
    chunk(&mut out, b"LIST", &inner);
    out
}

fn le(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// An AVI 1.0 file: one MJPG video stream, its frames, and the `idx1` index.
fn avi_bytes(jpegs: &[Vec<u8>], fps: f64, width: u32, height: u32) -> Vec<u8> {
    const RATE_SCALE: u32 = 1000;
    let n = jpegs.len() as u32;
    let largest = jpegs.iter().map(Vec::len).max().unwrap_or(0) as u32;
    let micros = (1e6 / fps).round() as u32;
    let mut avih = Vec::new();
    chunk(
        &mut avih,
        b"avih",
        &le(&[
            micros, 0, 0, 0x10, n, 0, 1, largest, width, height, 0, 0, 0, 0,
        ]),
    );
    let mut strh_body = b"vidsMJPG".to_vec();
    strh_body.extend(le(&[
        0,
        0,
        0,
        RATE_SCALE,
        (fps * RATE_SCALE as f64).round() as u32,
        0,
        n,
        largest,
        u32::MAX,
        0,
    ]));
    strh_body.extend_from_slice(&0u16.to_le_bytes());
    strh_body.extend_from_slice(&0u16.to_le_bytes());
    strh_body.extend_from_slice(&(width as u16).to_le_bytes());
    strh_body.extend_from_slice(&(height as u16).to_le_bytes());
    let mut strf_body = le(&[40, width, height]);
    strf_body.extend_from_slice(&1u16.to_le_bytes());
    strf_body.extend_from_slice(&24u16.to_le_bytes());
    strf_body.extend_from_slice(b"MJPG");
    strf_body.extend(le(&[width * height * 3, 0, 0, 0, 0]));
    let mut strl = Vec::new();
    chunk(&mut strl, b"strh", &strh_body);
    chunk(&mut strl, b"strf", &strf_body);
    let mut hdrl = avih;
    hdrl.extend(list(b"strl", &strl));
    let mut movi = Vec::new();
    let mut idx1 = Vec::new();
    for jpeg in jpegs {
        // Offsets in idx1 count from the 'movi' fourcc.
        let offset = 4 + movi.len() as u32;
        chunk(&mut movi, b"00dc", jpeg);
        idx1.extend_from_slice(b"00dc");
        idx1.extend(le(&[0x10, offset, jpeg.len() as u32]));
    }
    let mut body = b"AVI ".to_vec();
    body.extend(list(b"hdrl", &hdrl));
    body.extend(list(b"movi", &movi));
    chunk(&mut body, b"idx1", &idx1);
    let mut out = Vec::new();
    chunk(&mut out, b"RIFF", &body);
    out
}
