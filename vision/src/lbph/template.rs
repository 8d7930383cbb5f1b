//! A face's LBPH template in compact form.
//!
//! OpenCV keeps a template as `cells × bins` float32 values, each a pixel
//! count divided by the cell's pixel count. The counts are what carry the
//! information, and in a normalised face crop no cell has 255 pixels, so we
//! keep one byte a bin: a quarter of OpenCV's size. A count that does not fit
//! (a larger `--aligned` photo) saturates the byte and is kept exactly in a
//! short overflow list, so no result ever changes. OpenCV's floats are
//! recomputed on demand with OpenCV's own arithmetic, bit for bit.
//!
//! Templates also arrive from outside: from kiosks over the network, from
//! stores on disk, from OpenCV model files. A template that no image could
//! have given is refused when it is decoded, with the reason, because the
//! matcher trusts what it is given: a cell size of 0 makes every distance
//! NaN or zero (a template that matches everyone), and counts that do not
//! add up to the cell size are not a histogram at all. Decoding checks
//! that the cells hold at least one and at most
//! [`MAX_IMAGE_PIXELS`]` / cells` pixels, that every cell's counts sum to
//! the cell size, and that the overflow list names exactly the saturated
//! bins, once each and in order (as [`Template::to_bytes`] writes it).

use image::GrayImage;

use super::pattern::{extended_lbp, Codes};
use super::LbphParams;
use crate::Error;

/// The parameters that shape a template (everything but the threshold).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Layout {
    pub radius: u32,
    pub neighbors: u32,
    pub grid_x: u32,
    pub grid_y: u32,
}

impl Layout {
    pub fn of(params: &LbphParams) -> Self {
        Self {
            radius: params.radius,
            neighbors: params.neighbors,
            grid_x: params.grid_x,
            grid_y: params.grid_y,
        }
    }
    pub fn bins(&self) -> usize {
        1 << self.neighbors
    }
    pub fn cells(&self) -> usize {
        (self.grid_x * self.grid_y) as usize
    }
    /// Bins over all cells.
    pub fn histogram_len(&self) -> usize {
        self.cells() * self.bins()
    }
    fn name(&self) -> String {
        format!(
            "radius {}, {} neighbours, {} × {} grid",
            self.radius, self.neighbors, self.grid_x, self.grid_y
        )
    }
    /// `Err(ParamsMismatch)` naming both when `other` differs.
    pub fn check(&self, other: &Layout) -> Result<(), Error> {
        if self == other {
            Ok(())
        } else {
            Err(Error::ParamsMismatch {
                expected: self.name(),
                found: other.name(),
            })
        }
    }
}

/// The compact spatial histogram of one face.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    layout: Layout,
    cell_pixels: u32,
    counts: Box<[u8]>,
    overflow: Box<[(u32, u32)]>,
}

/// A borrowed template, as the gallery stores them side by side.
#[derive(Debug, Clone, Copy)]
pub struct TemplateRef<'a> {
    pub cell_pixels: u32,
    pub counts: &'a [u8],
    pub overflow: &'a [(u32, u32)],
}

/// OpenCV's normalisation factor `1/n`, rounded to float as `Mat::convertTo` does.
pub(crate) fn opencv_scale(cell_pixels: u32) -> f32 {
    if cell_pixels == 0 {
        0.0
    } else {
        (1.0 / cell_pixels as f64) as f32
    }
}

impl TemplateRef<'_> {
    /// The exact pixel counts, overflow restored.
    pub fn exact_counts(&self) -> Vec<u32> {
        let mut counts: Vec<u32> = self.counts.iter().map(|&c| c as u32).collect();
        for &(bin, count) in self.overflow {
            counts[bin as usize] = count;
        }
        counts
    }
}

/// The magic at the start of an encoded LBPH template.
pub const MAGIC: &[u8; 4] = b"KVT1";
const HEADER_LEN: usize = 16;

/// The most LBP codes (about the pixels of the photo) a template may cover:
/// 2^30, a gigapixel photo. The `image` crate refuses to decode more than
/// 512 MiB, and a kiosk's crop has 10 010 codes; anything above is no photo.
pub const MAX_IMAGE_PIXELS: u64 = 1 << 30;

/// Checks that `counts` (exact, overflow restored) is a histogram an image
/// could give with `cell_pixels` codes a cell.
fn check_counts(layout: Layout, cell_pixels: u32, counts: &[u32]) -> Result<(), String> {
    if cell_pixels == 0 {
        return Err("its cells have 0 pixels, which no face image gives".into());
    }
    let cells = layout.cells() as u64;
    if cell_pixels as u64 * cells > MAX_IMAGE_PIXELS {
        return Err(format!(
            "its cells have {cell_pixels} pixels, implausible for {} cells: \
             a photo of over {MAX_IMAGE_PIXELS} pixels",
            cells
        ));
    }
    for (cell, hist) in counts.chunks_exact(layout.bins()).enumerate() {
        let sum: u64 = hist.iter().map(|&c| c as u64).sum();
        if sum != cell_pixels as u64 {
            return Err(format!(
                "cell {cell} counts {sum} pixels, but its cells have {cell_pixels}"
            ));
        }
    }
    Ok(())
}

impl Template {
    /// Computes the template of a grey face image, as OpenCV's `train` does.
    pub fn extract(params: &LbphParams, face: &GrayImage) -> Result<Self, Error> {
        params.validate()?;
        let layout = Layout::of(params);
        let (w, h) = face.dimensions();
        let (min_w, min_h) = (
            layout.grid_x + 2 * layout.radius,
            layout.grid_y + 2 * layout.radius,
        );
        if w < min_w || h < min_h {
            return Err(Error::ImageTooSmall {
                width: w,
                height: h,
                radius: layout.radius,
                grid_x: layout.grid_x,
                grid_y: layout.grid_y,
                min_width: min_w,
                min_height: min_h,
            });
        }
        Ok(Self::from_codes(
            layout,
            &extended_lbp(face, layout.radius, layout.neighbors),
        ))
    }

    fn from_codes(layout: Layout, codes: &Codes) -> Self {
        // OpenCV's spatial_histogram: cells of (width / grid_x) × (height / grid_y)
        // codes; the remainder on the right and bottom is ignored.
        let cell_w = codes.width / layout.grid_x as usize;
        let cell_h = codes.height / layout.grid_y as usize;
        let bins = layout.bins();
        let mut counts = vec![0u32; layout.histogram_len()];
        for gy in 0..layout.grid_y as usize {
            for gx in 0..layout.grid_x as usize {
                let hist = &mut counts[(gy * layout.grid_x as usize + gx) * bins..][..bins];
                for row in gy * cell_h..(gy + 1) * cell_h {
                    let start = row * codes.width + gx * cell_w;
                    for &code in &codes.codes[start..start + cell_w] {
                        hist[code as usize] += 1;
                    }
                }
            }
        }
        Self::from_exact_counts(layout, (cell_w * cell_h) as u32, &counts)
    }

    pub(crate) fn from_exact_counts(layout: Layout, cell_pixels: u32, counts: &[u32]) -> Self {
        let compact = counts.iter().map(|&c| c.min(255) as u8).collect();
        let overflow = counts
            .iter()
            .enumerate()
            .filter(|(_, &c)| c >= 255)
            .map(|(bin, &c)| (bin as u32, c))
            .collect();
        Self {
            layout,
            cell_pixels,
            counts: compact,
            overflow,
        }
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Pixels in one cell of the LBP image (the normalisation divisor).
    pub fn cell_pixels(&self) -> u32 {
        self.cell_pixels
    }

    pub fn as_ref(&self) -> TemplateRef<'_> {
        TemplateRef {
            cell_pixels: self.cell_pixels,
            counts: &self.counts,
            overflow: &self.overflow,
        }
    }

    /// The exact pixel counts, overflow restored.
    pub fn exact_counts(&self) -> Vec<u32> {
        self.as_ref().exact_counts()
    }

    /// Bytes this template occupies in memory (its histogram and overflow).
    pub fn byte_len(&self) -> usize {
        self.counts.len() + self.overflow.len() * 8
    }

    /// The histogram exactly as OpenCV's `getHistograms()` holds it.
    pub fn to_opencv_histogram(&self) -> Vec<f32> {
        let scale = opencv_scale(self.cell_pixels);
        self.as_ref()
            .exact_counts()
            .into_iter()
            .map(|c| c as f32 * scale)
            .collect()
    }

    /// Recovers the exact pixel counts from an OpenCV histogram.
    ///
    /// The cell size is not stored in OpenCV's files; it is the `n` for which
    /// every value is `count × (1/n)` in OpenCV's float arithmetic and every
    /// cell's counts sum to `n`. The check is exact, so a template loaded from
    /// an OpenCV model predicts exactly as it did in OpenCV.
    pub fn from_opencv_histogram(layout: Layout, values: &[f32]) -> Result<Self, String> {
        if values.len() != layout.histogram_len() {
            return Err(format!(
                "has {} values, expected {} ({} cells × {} bins)",
                values.len(),
                layout.histogram_len(),
                layout.cells(),
                layout.bins()
            ));
        }
        // NaN would slip through the search for the smallest value below
        // (`min` ignores it) and make every distance NaN.
        if let Some((bin, v)) = values
            .iter()
            .enumerate()
            .find(|(_, v)| !v.is_finite() || **v < 0.0)
        {
            return Err(format!(
                "holds {v} (value {bin}), which no LBP histogram can: \
                 they are pixel counts divided by the cell size"
            ));
        }
        let smallest = values
            .iter()
            .copied()
            .filter(|&v| v != 0.0)
            .fold(f32::INFINITY, f32::min);
        if smallest == f32::INFINITY {
            // No image has no LBP code at all: OpenCV's histogram of one too
            // small for the grid is NaN, and ours refuses it.
            return Err("is all zeros, which no face image gives".into());
        }
        if !(smallest > 0.0 && smallest <= 1.0) {
            return Err(format!(
                "holds {smallest}, which no normalised LBP histogram can"
            ));
        }
        // The smallest value is (almost always) one pixel: n ≈ 1/smallest.
        // Also try a few multiples in case no cell had a bin of count one.
        let base = 1.0 / smallest as f64;
        for k in 1..=4u32 {
            let n = (base * k as f64).round();
            if n < 1.0 || n > u32::MAX as f64 {
                continue;
            }
            if let Some(counts) = counts_for(layout, n as u32, values) {
                check_counts(layout, n as u32, &counts)?;
                return Ok(Self::from_exact_counts(layout, n as u32, &counts));
            }
        }
        Err("is not a normalised LBP histogram (no cell size reproduces its values)".into())
    }

    /// Serialises the template: a 16-byte header, one byte a bin, then the
    /// overflow entries. Little-endian throughout.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.byte_len());
        out.extend_from_slice(MAGIC);
        out.extend(
            [
                self.layout.radius,
                self.layout.neighbors,
                self.layout.grid_x,
                self.layout.grid_y,
            ]
            .map(|v| v as u8),
        );
        out.extend(self.cell_pixels.to_le_bytes());
        out.extend((self.overflow.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.counts);
        for &(bin, count) in self.overflow.iter() {
            out.extend(bin.to_le_bytes());
            out.extend(count.to_le_bytes());
        }
        out
    }

    /// Parses [`Template::to_bytes`]'s output, checking every field.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let bad = |m: &str| Error::BadTemplate(m.to_owned());
        if bytes.len() < HEADER_LEN || &bytes[..4] != MAGIC {
            return Err(bad("not a KubeVision template (missing KVT1 header)"));
        }
        let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap());
        let params = LbphParams {
            radius: bytes[4] as u32,
            neighbors: bytes[5] as u32,
            grid_x: bytes[6] as u32,
            grid_y: bytes[7] as u32,
            ..LbphParams::default()
        };
        params.validate()?;
        let layout = Layout::of(&params);
        let cell_pixels = u32_at(8);
        let overflow_len = u32_at(12) as usize;

        let expected = layout.histogram_len().checked_add(
            overflow_len
                .checked_mul(8)
                .ok_or_else(|| bad("overflow length absurd"))?,
        );
        if Some(bytes.len() - HEADER_LEN) != expected {
            return Err(bad("length does not match its header"));
        }
        let counts: Box<[u8]> = bytes[HEADER_LEN..HEADER_LEN + layout.histogram_len()].into();
        let mut overflow = Vec::with_capacity(overflow_len);
        for i in 0..overflow_len {
            let at = HEADER_LEN + layout.histogram_len() + 8 * i;
            let (bin, count) = (u32_at(at), u32_at(at + 4));
            if bin as usize >= layout.histogram_len() || count < 255 || counts[bin as usize] != 255
            {
                return Err(Error::BadTemplate(format!(
                    "inconsistent overflow entry {i}: bin {bin}, count {count}"
                )));
            }
            if overflow.last().is_some_and(|&(last, _)| last >= bin) {
                return Err(Error::BadTemplate(format!(
                    "overflow entry {i} (bin {bin}) is out of order or repeated"
                )));
            }
            overflow.push((bin, count));
        }
        let saturated = counts.iter().filter(|&&c| c == 255).count();
        if saturated != overflow_len {
            return Err(Error::BadTemplate(format!(
                "{saturated} saturated bins but {overflow_len} overflow entries"
            )));
        }
        let template = Self {
            layout,
            cell_pixels,
            counts,
            overflow: overflow.into(),
        };
        check_counts(layout, cell_pixels, &template.as_ref().exact_counts())
            .map_err(Error::BadTemplate)?;
        Ok(template)
    }
}

fn counts_for(layout: Layout, n: u32, values: &[f32]) -> Option<Vec<u32>> {
    let scale = opencv_scale(n);
    let mut counts = Vec::with_capacity(values.len());
    for cell in values.chunks_exact(layout.bins()) {
        let mut total = 0u64;
        for &v in cell {
            let c = (v as f64 * n as f64).round();
            if !(0.0..=n as f64).contains(&c) || (c as f32 * scale).to_bits() != v.to_bits() {
                return None;
            }
            total += c as u64;
            counts.push(c as u32);
        }
        if total != n as u64 {
            return None;
        }
    }
    Some(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(w: u32, h: u32, seed: u32) -> GrayImage {
        GrayImage::from_fn(w, h, |x, y| {
            image::Luma([((x * 31 + y * 17 + seed * 7) ^ (x * y + seed)) as u8])
        })
    }

    #[test]
    fn default_template_is_a_quarter_of_opencv() {
        let t = Template::extract(&LbphParams::default(), &face(92, 112, 1)).unwrap();
        assert_eq!(
            t.byte_len(),
            16 * 1024,
            "one byte a bin, no overflow for a 92×112 crop"
        );
        assert_eq!(t.to_opencv_histogram().len() * 4 / t.byte_len(), 4);
        assert_eq!(t.cell_pixels(), 11 * 13);
    }

    #[test]
    fn bytes_round_trip_with_overflow() {
        // A flat 200×200 image puts 576 pixels of code 255 in every cell.
        let flat = GrayImage::from_pixel(200, 200, image::Luma([9]));
        let t = Template::extract(&LbphParams::default(), &flat).unwrap();
        assert_eq!(t.overflow.len(), 64);
        assert_eq!(Template::from_bytes(&t.to_bytes()).unwrap(), t);
        let mut broken = t.to_bytes();
        broken.pop();
        assert!(matches!(
            Template::from_bytes(&broken),
            Err(Error::BadTemplate(_))
        ));
    }

    #[test]
    fn opencv_histogram_round_trips_exactly() {
        for (w, h) in [(92, 112), (200, 180), (37, 41)] {
            let t = Template::extract(&LbphParams::default(), &face(w, h, w)).unwrap();
            let back =
                Template::from_opencv_histogram(t.layout(), &t.to_opencv_histogram()).unwrap();
            assert_eq!(back, t, "{w}×{h}");
        }
    }

    #[test]
    fn foreign_histograms_are_refused() {
        let layout = Layout::of(&LbphParams::default());
        let mut values = vec![0.0f32; layout.histogram_len()];
        values[3] = 0.3;
        assert!(Template::from_opencv_histogram(layout, &values).is_err());
        assert!(Template::from_opencv_histogram(layout, &values[1..]).is_err());
    }

    /// `to_bytes` of `t` with `edit` applied to the bytes.
    fn edited(t: &Template, edit: impl FnOnce(&mut Vec<u8>)) -> Result<Template, String> {
        let mut bytes = t.to_bytes();
        edit(&mut bytes);
        Template::from_bytes(&bytes).map_err(|e| e.to_string())
    }

    #[test]
    fn templates_no_image_gives_are_refused() {
        let crop = Template::extract(&LbphParams::default(), &face(92, 112, 3)).unwrap();
        let set_cell_pixels =
            |n: u32| move |b: &mut Vec<u8>| b[8..12].copy_from_slice(&n.to_le_bytes());
        for (edit, expect) in [
            (set_cell_pixels(0), "its cells have 0 pixels"),
            (
                set_cell_pixels(144),
                "cell 0 counts 143 pixels, but its cells have 144",
            ),
            (set_cell_pixels(u32::MAX), "implausible for 64 cells"),
        ] {
            let err = edited(&crop, edit).unwrap_err();
            assert!(
                err.contains("malformed template") && err.contains(expect),
                "{err}"
            );
        }
        // One pixel moved between cells: both sums are off.
        let err = edited(&crop, |b| {
            let bin = HEADER_LEN
                + b[HEADER_LEN..]
                    .iter()
                    .position(|&c| c > 0 && c < 254)
                    .unwrap();
            b[bin] += 1;
        })
        .unwrap_err();
        assert!(err.contains("counts 144 pixels"), "{err}");

        // Overflow entries: a saturated byte without one, one repeated.
        let flat = GrayImage::from_pixel(200, 200, image::Luma([9]));
        let big = Template::extract(&LbphParams::default(), &flat).unwrap();
        let err = edited(&big, |b| {
            b[12..16].copy_from_slice(&63u32.to_le_bytes());
            b.truncate(b.len() - 8);
        })
        .unwrap_err();
        assert!(
            err.contains("64 saturated bins but 63 overflow entries"),
            "{err}"
        );
        let err = edited(&big, |b| {
            let last = b.len() - 16;
            let (a, z) = b.split_at_mut(last + 8);
            z.copy_from_slice(&a[last..last + 8]);
        })
        .unwrap_err();
        assert!(err.contains("out of order or repeated"), "{err}");
    }

    #[test]
    fn templates_images_give_pass_the_checks() {
        // Kiosk crops, `--aligned` photos of every size (overflow included),
        // other layouts.
        let other = LbphParams {
            radius: 2,
            neighbors: 4,
            grid_x: 5,
            grid_y: 7,
            ..LbphParams::default()
        };
        for params in [LbphParams::default(), other] {
            for (w, h) in [(92, 112), (200, 200), (37, 41), (640, 480), (10, 10)] {
                let Ok(t) = Template::extract(&params, &face(w, h, w + h)) else {
                    continue; // too small for this layout
                };
                assert_eq!(Template::from_bytes(&t.to_bytes()).unwrap(), t, "{w}×{h}");
                let flat = GrayImage::from_pixel(w, h, image::Luma([7]));
                let t = Template::extract(&params, &flat).unwrap();
                assert_eq!(
                    Template::from_bytes(&t.to_bytes()).unwrap(),
                    t,
                    "flat {w}×{h}"
                );
            }
        }
    }

    #[test]
    fn non_finite_and_negative_opencv_values_are_refused() {
        let layout = Layout::of(&LbphParams::default());
        let t = Template::extract(&LbphParams::default(), &face(92, 112, 5)).unwrap();
        for (bad, expect) in [
            (f32::NAN, "holds NaN (value 9)"),
            (f32::INFINITY, "holds inf (value 9)"),
            (-1.0, "holds -1 (value 9)"),
        ] {
            let mut values = t.to_opencv_histogram();
            values[9] = bad;
            let err = Template::from_opencv_histogram(layout, &values).unwrap_err();
            assert!(err.contains(expect), "{err}");
        }
        let zeros = vec![0.0; layout.histogram_len()];
        let err = Template::from_opencv_histogram(layout, &zeros).unwrap_err();
        assert!(err.contains("all zeros"), "{err}");
    }

    #[test]
    fn too_small_images_are_named() {
        let err = Template::extract(&LbphParams::default(), &face(9, 30, 0)).unwrap_err();
        assert!(
            matches!(err, Error::ImageTooSmall { min_width: 10, .. }),
            "{err}"
        );
    }
}
