//! The enrolled templates and the nearest-neighbour search over them.
//!
//! Templates are packed side by side ([`super::packed`]): each one's 4 KiB
//! summary in one flat array, for the lower bound of [`super::distance`],
//! and its non-uniform bins, half a byte each, in another; the few counts
//! that do not fit share one overflow list. No allocation is a template's
//! own, so the gallery costs its arrays and nothing else. A search is exact
//! branch and bound on every core: the best answers so far give a distance
//! to beat, shared by all threads; a template is bounded from its summary
//! and scored in full only when the bound can still beat that distance, and
//! both computations give up as soon as their partial sums pass it. The
//! answer is the one a full scan gives, ties going to the earlier template
//! as in OpenCV.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use rayon::prelude::*;

use super::distance::lower_bound;
use super::packed::{Packed, Packing};
use super::template::Layout;
use super::{LbphParams, Template};
use crate::Error;

/// Bounds and distances are compared with this relative slack, so that float
/// rounding in either can never prune a template that a full scan would pick.
const SLACK: f64 = 1e-6;

pub use crate::Match;

/// Enrolled templates with their labels.
#[derive(Debug, Clone)]
pub struct Gallery {
    layout: Layout,
    packing: Packing,
    labels: Vec<i32>,
    cell_pixels: Vec<u32>,
    summaries: Vec<u8>,
    rest: Vec<u8>,
    /// Template `i`'s overflow is `overflow[overflow_at[i]..overflow_at[i + 1]]`.
    overflow_at: Vec<u32>,
    overflow: Vec<(u32, u32)>,
}

impl Gallery {
    pub fn new(params: LbphParams) -> Self {
        let layout = Layout::of(&params);
        Self {
            layout,
            packing: Packing::new(layout),
            labels: Vec::new(),
            cell_pixels: Vec::new(),
            summaries: Vec::new(),
            rest: Vec::new(),
            overflow_at: vec![0],
            overflow: Vec::new(),
        }
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Labels of all templates, in enrolment order.
    pub fn labels(&self) -> &[i32] {
        &self.labels
    }

    /// Makes room for `additional` more templates without reallocating.
    pub fn reserve(&mut self, additional: usize) {
        self.summaries
            .reserve_exact(additional * self.packing.summary_len());
        self.rest
            .reserve_exact(additional * self.packing.rest_len());
        self.labels.reserve_exact(additional);
        self.cell_pixels.reserve_exact(additional);
        self.overflow_at.reserve_exact(additional);
    }

    /// Adds one template; it must have this gallery's layout.
    pub fn add(&mut self, label: i32, template: Template) -> Result<(), Error> {
        self.layout.check(&template.layout())?;
        let t = template.as_ref();
        self.packing
            .pack(t, &mut self.summaries, &mut self.rest, &mut self.overflow);
        self.overflow_at.push(self.overflow.len() as u32);
        self.cell_pixels.push(t.cell_pixels);
        self.labels.push(label);
        Ok(())
    }

    /// Keeps the first `len` templates (a failed update undoes its additions).
    pub fn truncate(&mut self, len: usize) {
        if len >= self.len() {
            return;
        }
        self.summaries.truncate(len * self.packing.summary_len());
        self.rest.truncate(len * self.packing.rest_len());
        self.overflow.truncate(self.overflow_at[len] as usize);
        self.overflow_at.truncate(len + 1);
        self.cell_pixels.truncate(len);
        self.labels.truncate(len);
    }

    /// Removes every template of `label`; returns how many there were.
    pub fn remove_label(&mut self, label: i32) -> usize {
        let keep: Vec<bool> = self.labels.iter().map(|&l| l != label).collect();
        let removed = keep.iter().filter(|k| !**k).count();
        if removed == 0 {
            return 0;
        }
        retain_chunks(&mut self.summaries, self.packing.summary_len(), &keep);
        retain_chunks(&mut self.rest, self.packing.rest_len(), &keep);
        let (mut overflow, mut at) = (Vec::new(), vec![0]);
        for (i, _) in keep.iter().enumerate().filter(|(_, k)| **k) {
            overflow.extend_from_slice(self.overflow_of(i));
            at.push(overflow.len() as u32);
        }
        (self.overflow, self.overflow_at) = (overflow, at);
        retain_chunks(&mut self.cell_pixels, 1, &keep);
        retain_chunks(&mut self.labels, 1, &keep);
        removed
    }

    fn overflow_of(&self, index: usize) -> &[(u32, u32)] {
        &self.overflow[self.overflow_at[index] as usize..self.overflow_at[index + 1] as usize]
    }

    fn packed(&self, index: usize) -> Packed<'_> {
        let (slen, rlen) = (self.packing.summary_len(), self.packing.rest_len());
        Packed {
            cell_pixels: self.cell_pixels[index],
            summary: &self.summaries[index * slen..(index + 1) * slen],
            rest: &self.rest[index * rlen..(index + 1) * rlen],
            overflow: self.overflow_of(index),
        }
    }

    /// The `index`-th template, exact.
    pub fn template(&self, index: usize) -> Template {
        self.packing.unpack(self.packed(index))
    }

    /// Bytes the gallery holds a template: summary, nibbles and bookkeeping
    /// (and 8 bytes for each count in the overflow).
    pub fn bytes_per_template(&self) -> usize {
        self.packing.summary_len()
            + self.packing.rest_len()
            + std::mem::size_of::<i32>()
            + std::mem::size_of::<u32>()
            + std::mem::size_of::<u32>()
    }

    /// The `k` nearest distinct labels to `probe` with a distance below
    /// `threshold`, nearest first. `k = 1` is OpenCV's `predict`.
    pub fn search(&self, probe: &Template, k: usize, threshold: f64) -> Result<Vec<Match>, Error> {
        self.layout.check(&probe.layout())?;
        if k == 0 || self.is_empty() {
            return Ok(Vec::new());
        }
        let probe = self.packing.probe(probe.as_ref());
        let best = Mutex::new(Best::new(k, threshold));
        // The distance to beat, readable without the lock (positive floats
        // order like their bit patterns).
        let limit = AtomicU64::new(threshold.to_bits());
        (0..self.len())
            .into_par_iter()
            .with_min_len(32)
            .for_each(|i| {
                let beat = f64::from_bits(limit.load(Ordering::Relaxed)) * (1.0 + SLACK);
                let t = self.packed(i);
                let n = t.cell_pixels;
                if n == probe.cell_pixels() && n > 0 {
                    let bound = lower_bound(self.layout, &probe.summary, t.summary, n, beat);
                    if bound * (1.0 - SLACK) > beat {
                        return;
                    }
                }
                let d = self.packing.distance(&probe, t, beat);
                if d.is_finite() {
                    let mut best = best.lock().expect("no panics while held");
                    best.offer(i, self.labels[i], d);
                    limit.store(best.limit().to_bits(), Ordering::Relaxed);
                }
            });
        Ok(best
            .into_inner()
            .expect("no panics while held")
            .into_matches())
    }

    /// [`Gallery::search`] for many probes at once, in parallel.
    pub fn search_batch(
        &self,
        probes: &[Template],
        k: usize,
        threshold: f64,
    ) -> Result<Vec<Vec<Match>>, Error> {
        probes
            .par_iter()
            .map(|p| self.search(p, k, threshold))
            .collect()
    }

    /// Distances from `probe` to every template, in gallery order (what
    /// OpenCV's `StandardCollector` sees). For calibration and tests.
    pub fn all_distances(&self, probe: &Template) -> Result<Vec<f64>, Error> {
        self.layout.check(&probe.layout())?;
        let probe = self.packing.probe(probe.as_ref());
        Ok((0..self.len())
            .into_par_iter()
            .map(|i| self.packing.distance(&probe, self.packed(i), f64::INFINITY))
            .collect())
    }
}

/// Keeps the chunks of `len` items whose `keep` is true.
fn retain_chunks<T: Copy>(v: &mut Vec<T>, len: usize, keep: &[bool]) {
    let mut i = 0;
    v.retain(|_| {
        i += 1;
        keep[(i - 1) / len]
    });
}

/// The best distance per label seen so far, and the `k`-th best as the limit.
struct Best {
    k: usize,
    threshold: f64,
    per_label: HashMap<i32, (f64, usize)>,
}

impl Best {
    fn new(k: usize, threshold: f64) -> Self {
        Self {
            k,
            threshold,
            per_label: HashMap::new(),
        }
    }

    fn offer(&mut self, index: usize, label: i32, distance: f64) {
        // OpenCV collects only `dist < threshold` (never a NaN).
        if distance.partial_cmp(&self.threshold) != Some(std::cmp::Ordering::Less) {
            return;
        }
        let entry = self
            .per_label
            .entry(label)
            .or_insert((f64::INFINITY, usize::MAX));
        if (distance, index) < *entry {
            *entry = (distance, index);
        }
    }

    /// A template farther than this cannot change the answer.
    fn limit(&self) -> f64 {
        if self.per_label.len() < self.k {
            return self.threshold;
        }
        let mut d: Vec<f64> = self.per_label.values().map(|&(d, _)| d).collect();
        d.select_nth_unstable_by(self.k - 1, f64::total_cmp);
        d[self.k - 1].min(self.threshold)
    }

    fn into_matches(self) -> Vec<Match> {
        let mut all: Vec<(f64, usize, i32)> = self
            .per_label
            .into_iter()
            .map(|(l, (d, i))| (d, i, l))
            .collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        all.into_iter()
            .take(self.k)
            .map(|(distance, _, label)| Match { label, distance })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::GrayImage;

    /// Faces of `people` people, `per_person` noisy views each.
    fn gallery(people: i32, per_person: u32) -> (Gallery, Vec<Template>) {
        let params = LbphParams::default();
        // A blocky texture of the person's own, plus a little noise a view.
        let hash = |a: u32, b: u32, c: u32| {
            (a.wrapping_mul(0x9E37_79B1)
                ^ b.wrapping_mul(0x85EB_CA77)
                ^ c.wrapping_mul(0xC2B2_AE3D))
            .rotate_left(13)
            .wrapping_mul(0x27D4_EB2F)
                >> 24
        };
        let face = |person: i32, view: u32| {
            GrayImage::from_fn(92, 112, |x, y| {
                image::Luma([(hash(person as u32 + 1, x / 4, y / 4) * 3 / 4
                    + hash(view + 1000, x, y) % 48) as u8])
            })
        };
        let mut g = Gallery::new(params);
        for person in 0..people {
            for view in 0..per_person {
                g.add(
                    person,
                    Template::extract(&params, &face(person, view)).unwrap(),
                )
                .unwrap();
            }
        }
        let probes = (0..people)
            .map(|p| Template::extract(&params, &face(p, 99)).unwrap())
            .collect();
        (g, probes)
    }

    /// What OpenCV's collector sees: per label the nearest template, nearest
    /// first, ties to the earlier template, only below the threshold.
    fn brute_force(g: &Gallery, probe: &Template, k: usize, threshold: f64) -> Vec<Match> {
        let d = g.all_distances(probe).unwrap();
        let mut best = Best::new(k, threshold);
        for (i, &d) in d.iter().enumerate() {
            best.offer(i, g.labels()[i], d);
        }
        best.into_matches()
    }

    #[test]
    fn pruned_search_equals_full_scan() {
        let (g, probes) = gallery(12, 6);
        for probe in &probes {
            for k in [1, 3, 12, 20] {
                assert_eq!(
                    g.search(probe, k, f64::MAX).unwrap(),
                    brute_force(&g, probe, k, f64::MAX),
                    "k = {k}"
                );
            }
            let all = brute_force(&g, probe, 12, f64::MAX);
            let threshold = all[4].distance; // strictly below: four labels qualify
            assert_eq!(g.search(probe, 12, threshold).unwrap(), all[..4].to_vec());
        }
    }

    #[test]
    fn removing_a_person_removes_all_their_templates() {
        let (mut g, probes) = gallery(5, 4);
        assert_eq!(g.search(&probes[2], 1, f64::MAX).unwrap()[0].label, 2);
        assert_eq!(g.remove_label(2), 4);
        assert_eq!(g.len(), 16);
        assert!(!g.labels().contains(&2));
        assert!(g
            .search(&probes[2], 5, f64::MAX)
            .unwrap()
            .iter()
            .all(|m| m.label != 2));
        assert_eq!(
            g.search(&probes[3], 1, f64::MAX).unwrap(),
            brute_force(&g, &probes[3], 1, f64::MAX)
        );
        assert_eq!(g.remove_label(2), 0);
    }

    #[test]
    fn a_template_of_other_parameters_is_refused() {
        let (mut g, _) = gallery(1, 1);
        let other = LbphParams {
            grid_x: 4,
            ..LbphParams::default()
        };
        let t =
            Template::extract(&other, &GrayImage::from_pixel(92, 112, image::Luma([3]))).unwrap();
        assert!(matches!(
            g.add(1, t.clone()),
            Err(Error::ParamsMismatch { .. })
        ));
        assert!(g.search(&t, 1, f64::MAX).is_err());
    }
}
