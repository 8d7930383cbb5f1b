//! The enrolled templates and the nearest-neighbour search over them.
//!
//! Templates are stored side by side (one flat byte array), with a 4 KiB
//! summary each for the lower bound of [`super::distance`]. A search is exact
//! branch and bound: bound every template from its summary (cheap, parallel),
//! evaluate the few with the smallest bounds to get a distance to beat, then
//! evaluate in full only the templates whose bound does not exceed it, giving
//! up on each as soon as its partial sum does. The answer is the one a full
//! scan gives, ties going to the earlier template as in OpenCV.

use std::collections::HashMap;

use rayon::prelude::*;

use super::distance::{chi_square, lower_bound, summary, summary_len};
use super::template::{Layout, TemplateRef};
use super::{LbphParams, Template};
use crate::Error;

/// Bounds and distances are compared with this relative slack, so that float
/// rounding in either can never prune a template that a full scan would pick.
const SLACK: f64 = 1e-6;

/// Templates scored in full up front to get a first distance to beat.
const SEEDS: usize = 8;

/// One candidate answer: a person and the distance of their nearest template.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Match {
    pub label: i32,
    pub distance: f64,
}

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
        self.counts.reserve_exact(additional * self.layout.len());
        self.summaries.reserve_exact(additional * summary_len(self.layout));
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
        let (len, slen) = (self.layout.len(), summary_len(self.layout));
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
        let len = self.layout.len();
        TemplateRef {
            cell_pixels: self.cell_pixels[index],
            counts: &self.counts[index * len..(index + 1) * len],
            overflow: &self.overflow[index],
        }
    }

    /// Bytes the gallery holds a template: histogram, summary and bookkeeping.
    pub fn bytes_per_template(&self) -> usize {
        self.layout.len() + summary_len(self.layout) + std::mem::size_of::<i32>() + std::mem::size_of::<u32>()
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

        // 1. Bound every template (0 where the bound does not apply).
        let bounds: Vec<f64> = self
            .summaries
            .par_chunks(slen)
            .zip(self.cell_pixels.par_iter())
            .with_min_len(64)
            .map(|(s, &n)| {
                if n == probe_ref.cell_pixels && n > 0 {
                    lower_bound(self.layout, &probe_summary, s, n)
                } else {
                    0.0
                }
            })
            .collect();

        // 2. Score the most promising few in full: the first distance to beat.
        let mut order: Vec<u32> = (0..self.len() as u32).collect();
        let seeds = SEEDS.max(2 * k).min(order.len());
        if seeds < order.len() {
            order.select_nth_unstable_by(seeds - 1, |&a, &b| bounds[a as usize].total_cmp(&bounds[b as usize]));
        }
        let mut best = Best::new(k, threshold);
        for &i in &order[..seeds] {
            best.offer(i as usize, self.labels[i as usize], self.distance(probe_ref, i as usize, f64::INFINITY));
        }

        // 3. Score the rest whose bound can still beat it, giving up early.
        let limit = best.limit() * (1.0 + SLACK);
        let rest: Vec<(usize, f64)> = order[seeds..]
            .par_iter()
            .with_min_len(16)
            .filter(|&&i| bounds[i as usize] * (1.0 - SLACK) <= limit)
            .map(|&i| (i as usize, self.distance(probe_ref, i as usize, limit)))
            .filter(|&(_, d)| d.is_finite())
            .collect();
        for (i, d) in rest {
            best.offer(i, self.labels[i], d);
        }
        Ok(best.into_matches())
    }

    /// [`Gallery::search`] for many probes at once, in parallel.
    pub fn search_batch(&self, probes: &[Template], k: usize, threshold: f64) -> Result<Vec<Vec<Match>>, Error> {
        probes.par_iter().map(|p| self.search(p, k, threshold)).collect()
    }

    /// Distances from `probe` to every template, in gallery order (what
    /// OpenCV's `StandardCollector` sees). For calibration and tests.
    pub fn all_distances(&self, probe: &Template) -> Result<Vec<f64>, Error> {
        self.layout.check(&probe.layout())?;
        Ok((0..self.len()).into_par_iter().map(|i| self.distance(probe.as_ref(), i, f64::INFINITY)).collect())
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
        Self { k, threshold, per_label: HashMap::new() }
    }

    fn offer(&mut self, index: usize, label: i32, distance: f64) {
        // OpenCV collects only `dist < threshold`.
        if !(distance < self.threshold) {
            return;
        }
        let entry = self.per_label.entry(label).or_insert((f64::INFINITY, usize::MAX));
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
        let mut all: Vec<(f64, usize, i32)> = self.per_label.into_iter().map(|(l, (d, i))| (d, i, l)).collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        all.into_iter().take(self.k).map(|(distance, _, label)| Match { label, distance }).collect()
    }
}
