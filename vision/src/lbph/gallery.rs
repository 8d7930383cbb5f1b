//! The enrolled templates and the nearest-neighbour search over them.
//!
//! Templates are stored side by side (one flat byte array), with a 4 KiB
//! summary each for the lower bound of [`super::distance`]. A search is exact
//! branch and bound on every core: the best answers so far give a distance to
//! beat, shared by all threads; a template is bounded from its summary and
//! scored in full only when the bound can still beat that distance, and both
//! computations give up as soon as their partial sums pass it. The answer is
//! the one a full scan gives, ties going to the earlier template as in OpenCV.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use rayon::prelude::*;

use super::distance::{chi_square, lower_bound, summary, summary_len};
use super::template::{Layout, TemplateRef};
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
    labels: Vec<i32>,
    cell_pixels: Vec<u32>,
    counts: Vec<u8>,
    summaries: Vec<u8>,
    overflow: Vec<Box<[(u32, u32)]>>,
}

impl Gallery {
    pub fn new(params: LbphParams) -> Self {
        Self {
            layout: Layout::of(&params),
            labels: Vec::new(),
            cell_pixels: Vec::new(),
            counts: Vec::new(),
            summaries: Vec::new(),
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
        self.counts
            .reserve_exact(additional * self.layout.histogram_len());
        self.summaries
            .reserve_exact(additional * summary_len(self.layout));
        self.labels.reserve_exact(additional);
        self.cell_pixels.reserve_exact(additional);
        self.overflow.reserve_exact(additional);
    }

    /// Adds one template; it must have this gallery's layout.
    pub fn add(&mut self, label: i32, template: Template) -> Result<(), Error> {
        self.layout.check(&template.layout())?;
        let t = template.as_ref();
        self.summaries.extend(summary(self.layout, t));
        self.counts.extend_from_slice(t.counts);
        self.cell_pixels.push(t.cell_pixels);
        self.overflow.push(t.overflow.into());
        self.labels.push(label);
        Ok(())
    }

    /// Removes every template of `label`; returns how many there were.
    pub fn remove_label(&mut self, label: i32) -> usize {
        let keep: Vec<bool> = self.labels.iter().map(|&l| l != label).collect();
        let removed = keep.iter().filter(|k| !**k).count();
        if removed == 0 {
            return 0;
        }
        let (len, slen) = (self.layout.histogram_len(), summary_len(self.layout));
        let mut i = 0;
        self.counts.retain(|_| {
            i += 1;
            keep[(i - 1) / len]
        });
        i = 0;
        self.summaries.retain(|_| {
            i += 1;
            keep[(i - 1) / slen]
        });
        let mut it = keep.iter();
        self.overflow.retain(|_| *it.next().unwrap());
        let mut it = keep.iter();
        self.cell_pixels.retain(|_| *it.next().unwrap());
        self.labels.retain(|&l| l != label);
        removed
    }

    /// The `index`-th template.
    pub fn template(&self, index: usize) -> TemplateRef<'_> {
        let len = self.layout.histogram_len();
        TemplateRef {
            cell_pixels: self.cell_pixels[index],
            counts: &self.counts[index * len..(index + 1) * len],
            overflow: &self.overflow[index],
        }
    }

    /// Bytes the gallery holds a template: histogram, summary and bookkeeping.
    pub fn bytes_per_template(&self) -> usize {
        self.layout.histogram_len()
            + summary_len(self.layout)
            + std::mem::size_of::<i32>()
            + std::mem::size_of::<u32>()
            + std::mem::size_of::<Box<[(u32, u32)]>>()
    }

    /// The `k` nearest distinct labels to `probe` with a distance below
    /// `threshold`, nearest first. `k = 1` is OpenCV's `predict`.
    pub fn search(&self, probe: &Template, k: usize, threshold: f64) -> Result<Vec<Match>, Error> {
        self.layout.check(&probe.layout())?;
        if k == 0 || self.is_empty() {
            return Ok(Vec::new());
        }
        let probe_ref = probe.as_ref();
        let probe_summary = summary(self.layout, probe_ref);
        let slen = summary_len(self.layout);
        let best = Mutex::new(Best::new(k, threshold));
        // The distance to beat, readable without the lock (positive floats
        // order like their bit patterns).
        let limit = AtomicU64::new(threshold.to_bits());
        (0..self.len())
            .into_par_iter()
            .with_min_len(32)
            .for_each(|i| {
                let beat = f64::from_bits(limit.load(Ordering::Relaxed)) * (1.0 + SLACK);
                let n = self.cell_pixels[i];
                if n == probe_ref.cell_pixels && n > 0 {
                    let bound = lower_bound(
                        self.layout,
                        &probe_summary,
                        &self.summaries[i * slen..(i + 1) * slen],
                        n,
                        beat,
                    );
                    if bound * (1.0 - SLACK) > beat {
                        return;
                    }
                }
                let d = self.distance(probe_ref, i, beat);
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
        Ok((0..self.len())
            .into_par_iter()
            .map(|i| self.distance(probe.as_ref(), i, f64::INFINITY))
            .collect())
    }

    fn distance(&self, probe: TemplateRef<'_>, index: usize, give_up_above: f64) -> f64 {
        chi_square(self.layout, self.template(index), probe, give_up_above)
    }
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
