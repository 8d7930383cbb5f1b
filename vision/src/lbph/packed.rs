//! How the gallery keeps a template: its summary and the rest of its bins in
//! half a byte each, about 11 KiB instead of 16 + 4.
//!
//! The summary ([`super::distance::summary`]) already holds every uniform
//! pattern's count exactly (each is a group of its own), so the gallery
//! keeps only the other bins, the non-uniform patterns, beside it. Those
//! are rare in a face (a few tens of a cell's pixels, spread over 198
//! codes for 8 neighbours), so a count fits in four bits; a count that does
//! not (15 or more, or 255 or more for a uniform one) is kept exactly in
//! the gallery's overflow list, and such a template is scored from its
//! exact counts, as before. Nothing is lost: [`Packing::unpack`] gives back
//! the template's exact counts, and OpenCV's histograms with them.
//!
//! The nibbles of a cell come in chunks of 32 codes in 16 bytes: the low
//! halves hold the chunk's first 16 codes, the high halves the next 16, so
//! that the distance unpacks them 16 lanes at a time.

use multiversion::multiversion;

use super::distance::{cell_sum, groups, padded_groups, sum_cells, LANES};
use super::template::{Layout, Template, TemplateRef};

/// The largest count a nibble holds; it also marks a count in the overflow.
const NIBBLE_MAX: u32 = 15;
/// The largest count a summary byte holds exactly.
const BYTE_MAX: u32 = 255;
/// The most bins a cell may have for [`Packing::distance`] to unpack it on
/// the stack (8 neighbours); larger layouts unpack whole templates.
const STACK_BINS: usize = 256;

/// Where each LBP code of a layout lives in a packed template.
#[derive(Debug, Clone)]
pub struct Packing {
    layout: Layout,
    /// Each code's summary slot.
    slot: Vec<usize>,
    /// Summary bytes a cell.
    width: usize,
    /// Each code's index among the non-uniform codes (`usize::MAX` for a
    /// uniform code).
    rest_index: Vec<usize>,
    /// Nibble bytes a cell: the non-uniform codes rounded up to 32, halved.
    rest_bytes: usize,
    /// The codes kept exactly in the summary, with their slots.
    uniform: Vec<(usize, usize)>,
    /// The code of each non-uniform index (the inverse of `rest_index`).
    rest_code: Vec<usize>,
}

/// A template as the gallery keeps it, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct Packed<'a> {
    pub cell_pixels: u32,
    pub summary: &'a [u8],
    pub rest: &'a [u8],
    /// Exact counts of the bins that did not fit: (bin, count), by bin.
    pub overflow: &'a [(u32, u32)],
}

/// A probe as [`Packing::distance`] takes it: the template, and its summary
/// for the lower bound.
pub struct Probe<'a> {
    template: TemplateRef<'a>,
    pub summary: Vec<u8>,
}

impl Probe<'_> {
    pub fn cell_pixels(&self) -> u32 {
        self.template.cell_pixels
    }
}

impl Packing {
    pub fn new(layout: Layout) -> Self {
        let slot = groups(layout);
        let width = padded_groups(layout);
        let merges = slot.iter().max().is_some_and(|&m| {
            // The merged group is the last, and holds more than one code.
            slot.iter().filter(|&&s| s == m).count() > 1
        });
        let merged = merges.then(|| slot.iter().copied().max().unwrap_or(0));
        let mut next = 0;
        let rest_index: Vec<usize> = slot
            .iter()
            .map(|&s| {
                if Some(s) == merged {
                    next += 1;
                    next - 1
                } else {
                    usize::MAX
                }
            })
            .collect();
        let rest_bytes = next.div_ceil(2 * LANES) * LANES;
        let uniform = (0..slot.len())
            .filter(|&code| rest_index[code] == usize::MAX)
            .map(|code| (code, slot[code]))
            .collect();
        let mut rest_code = vec![0; next];
        for (code, &r) in rest_index.iter().enumerate() {
            if r != usize::MAX {
                rest_code[r] = code;
            }
        }
        Self {
            layout,
            slot,
            width,
            rest_index,
            rest_bytes,
            uniform,
            rest_code,
        }
    }

    /// Summary bytes a template.
    pub fn summary_len(&self) -> usize {
        self.layout.cells() * self.width
    }

    /// Nibble bytes a template.
    pub fn rest_len(&self) -> usize {
        self.layout.cells() * self.rest_bytes
    }

    /// Where the nibble of non-uniform code number `r` of a cell lies: its
    /// byte and its shift.
    fn nibble(&self, cell: usize, r: usize) -> (usize, u32) {
        let (chunk, q) = (r / (2 * LANES), r % (2 * LANES));
        (
            cell * self.rest_bytes + chunk * LANES + q % LANES,
            4 * (q / LANES) as u32,
        )
    }

    /// Packs a template: appends its summary and nibbles, and its overflow.
    pub fn pack(
        &self,
        t: TemplateRef<'_>,
        summary: &mut Vec<u8>,
        rest: &mut Vec<u8>,
        overflow: &mut Vec<(u32, u32)>,
    ) {
        summary.extend(super::distance::summary(self.layout, t));
        let start = rest.len();
        rest.resize(start + self.rest_len(), 0);
        let bins = self.layout.bins();
        for (bin, c) in t.exact_counts().into_iter().enumerate() {
            let (cell, code) = (bin / bins, bin % bins);
            let r = self.rest_index[code];
            if r == usize::MAX {
                if c >= BYTE_MAX {
                    overflow.push((bin as u32, c));
                }
                continue;
            }
            if c >= NIBBLE_MAX {
                overflow.push((bin as u32, c));
            }
            let (byte, shift) = self.nibble(cell, r);
            rest[start + byte] |= (c.min(NIBBLE_MAX) as u8) << shift;
        }
    }

    /// The template back, exact.
    pub fn unpack(&self, p: Packed<'_>) -> Template {
        let bins = self.layout.bins();
        let mut counts: Vec<u32> = (0..self.layout.histogram_len())
            .map(|bin| {
                let (cell, code) = (bin / bins, bin % bins);
                match self.rest_index[code] {
                    usize::MAX => u32::from(p.summary[cell * self.width + self.slot[code]]),
                    r => {
                        let (byte, shift) = self.nibble(cell, r);
                        u32::from(p.rest[byte] >> shift) & NIBBLE_MAX
                    }
                }
            })
            .collect();
        for &(bin, c) in p.overflow {
            counts[bin as usize] = c;
        }
        Template::from_exact_counts(self.layout, p.cell_pixels, &counts)
    }

    /// A probe for [`Packing::distance`].
    pub fn probe<'a>(&self, t: TemplateRef<'a>) -> Probe<'a> {
        Probe {
            template: t,
            summary: super::distance::summary(self.layout, t),
        }
    }

    /// One cell of a packed template without overflow, its counts a byte
    /// each in code order, into `out` (the cell's bins long).
    fn unpack_cell(&self, t: Packed<'_>, cell: usize, out: &mut [u8]) {
        let summary = &t.summary[cell * self.width..][..self.width];
        for &(code, slot) in &self.uniform {
            out[code] = summary[slot];
        }
        let rest = &t.rest[cell * self.rest_bytes..][..self.rest_bytes];
        for (chunk, codes) in self.rest_code.chunks(2 * LANES).enumerate() {
            let bytes = &rest[chunk * LANES..][..LANES];
            for (q, &code) in codes.iter().enumerate() {
                out[code] = (bytes[q % LANES] >> (4 * (q / LANES))) & 15;
            }
        }
    }

    /// The chi-square distance of OpenCV's LBPH between a probe and a packed
    /// template, or `f64::INFINITY` once it exceeds `give_up_above`: the
    /// dense distance's answer to the last bit, since each cell is unpacked
    /// and summed by the same [`cell_sum`] in the same order.
    pub fn distance(&self, probe: &Probe<'_>, t: Packed<'_>, give_up_above: f64) -> f64 {
        let n = t.cell_pixels;
        if n == probe.template.cell_pixels
            && n > 0
            && t.overflow.is_empty()
            && probe.template.overflow.is_empty()
            && self.layout.bins() <= STACK_BINS
        {
            chi_square_packed(self, probe.template.counts, t, give_up_above)
        } else {
            let exact = self.unpack(t);
            super::distance::chi_square(self.layout, exact.as_ref(), probe.template, give_up_above)
        }
    }
}

/// [`super::distance::chi_square`]'s integer path on the packed form: each
/// cell unpacked on the stack, then summed as the dense distance sums it.
#[multiversion(targets("x86_64+avx512f+avx512bw", "x86_64+avx2+fma", "aarch64+neon"))]
fn chi_square_packed(packing: &Packing, probe: &[u8], t: Packed<'_>, give_up_above: f64) -> f64 {
    let bins = packing.layout.bins();
    let mut cell = [0u8; STACK_BINS];
    let cells = probe.chunks_exact(bins).enumerate().map(|(i, counts)| {
        packing.unpack_cell(t, i, &mut cell[..bins]);
        cell_sum(counts, &cell[..bins])
    });
    sum_cells(cells, t.cell_pixels, give_up_above)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lbph::distance::chi_square;
    use crate::lbph::distance::tests::face;
    use crate::lbph::LbphParams;
    use image::GrayImage;

    fn packed(p: &Packing, t: &Template) -> (Vec<u8>, Vec<u8>, Vec<(u32, u32)>) {
        let (mut s, mut r, mut o) = (Vec::new(), Vec::new(), Vec::new());
        p.pack(t.as_ref(), &mut s, &mut r, &mut o);
        (s, r, o)
    }

    #[test]
    fn eight_neighbours_pack_into_eleven_kib() {
        let p = Packing::new(Layout::of(&LbphParams::default()));
        assert_eq!(p.uniform.len(), 58, "the uniform codes, each its own slot");
        assert_eq!(p.rest_code.len(), 198, "the non-uniform codes");
        assert_eq!(p.rest_bytes, 112, "198 codes in 7 chunks of 32");
        assert_eq!(p.summary_len() + p.rest_len(), 11 * 1024);
    }

    /// Every layout the parameters allow packs and unpacks exactly, with
    /// counts that need the overflow (a uniform image puts all of a cell's
    /// pixels in one bin).
    #[test]
    fn packing_gives_back_the_exact_template() {
        for neighbors in [2, 4, 8] {
            let params = LbphParams {
                neighbors,
                ..LbphParams::default()
            };
            let p = Packing::new(Layout::of(&params));
            for img in [
                GrayImage::from_fn(92, 112, |x, y| image::Luma([((x * 31) ^ (y * 17)) as u8])),
                GrayImage::from_pixel(300, 300, image::Luma([9])),
            ] {
                let t = Template::extract(&params, &img).unwrap();
                let (s, r, o) = packed(&p, &t);
                let back = p.unpack(Packed {
                    cell_pixels: t.cell_pixels(),
                    summary: &s,
                    rest: &r,
                    overflow: &o,
                });
                assert_eq!(back, t, "{neighbors} neighbours");
            }
        }
    }

    /// Bit for bit the dense distance for every layout the parameters
    /// allow (fewer bins than lanes, merged and unmerged summaries), on
    /// many pairs: the packed gallery must not move a distance by its last
    /// bit, or a search near a threshold answers differently from OpenCV.
    #[test]
    fn packed_distance_is_the_dense_one_to_the_last_bit() {
        for neighbors in [2, 4, 8] {
            let params = LbphParams {
                neighbors,
                ..LbphParams::default()
            };
            let layout = Layout::of(&params);
            let p = Packing::new(layout);
            let image = |seed: u32| {
                GrayImage::from_fn(92, 112, |x, y| {
                    image::Luma([((x * 13 + seed) ^ (y * 7 + seed * x) ^ (x * y / 5)) as u8])
                })
            };
            let templates: Vec<Template> = (0..16)
                .map(|seed| Template::extract(&params, &image(seed)).unwrap())
                .collect();
            for a in &templates {
                let probe = p.probe(a.as_ref());
                for b in &templates {
                    let (s, r, o) = packed(&p, b);
                    let t = Packed {
                        cell_pixels: b.cell_pixels(),
                        summary: &s,
                        rest: &r,
                        overflow: &o,
                    };
                    let dense = chi_square(layout, a.as_ref(), b.as_ref(), f64::INFINITY);
                    let d = p.distance(&probe, t, f64::INFINITY);
                    assert_eq!(
                        d.to_bits(),
                        dense.to_bits(),
                        "{neighbors} neighbours: {d} against {dense}"
                    );
                }
            }
        }
    }

    /// The packed distance is the dense one's, and so OpenCV's, whether or
    /// not a nibble overflowed; and it gives up only above the limit.
    #[test]
    fn packed_distance_equals_the_dense_one() {
        let layout = Layout::of(&LbphParams::default());
        let p = Packing::new(layout);
        let mut overflowed = 0;
        for seed in 0..12 {
            let a = face(seed, 92, 112);
            // A checkerboard on a third of them: one non-uniform code fills
            // its cells, far past a nibble.
            let b = if seed % 3 == 0 {
                let img = GrayImage::from_fn(92, 112, |x, y| {
                    image::Luma([if x < 40 && (x + y) % 2 == 0 {
                        200
                    } else {
                        (x * y % 97) as u8
                    }])
                });
                Template::extract(&LbphParams::default(), &img).unwrap()
            } else {
                face(seed * 5 + 3, 92, 112)
            };
            let (s, r, o) = packed(&p, &b);
            overflowed += usize::from(!o.is_empty());
            let t = Packed {
                cell_pixels: b.cell_pixels(),
                summary: &s,
                rest: &r,
                overflow: &o,
            };
            let probe = p.probe(a.as_ref());
            let dense = chi_square(layout, b.as_ref(), a.as_ref(), f64::INFINITY);
            let d = p.distance(&probe, t, f64::INFINITY);
            assert_eq!(d.to_bits(), dense.to_bits(), "{d} against {dense}");
            assert_eq!(p.distance(&probe, t, d * 1.0001), d);
            if o.is_empty() {
                assert_eq!(p.distance(&probe, t, d * 0.5), f64::INFINITY);
            }
        }
        assert!(
            (1..12).contains(&overflowed),
            "both kinds tested: {overflowed} of 12 overflowed"
        );
    }
}
