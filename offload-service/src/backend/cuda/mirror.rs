//! The host's side of the gallery: labels, runs, the templates with
//! overflow, and the top-k from what the kernels return.
//!
//! # Top-k
//!
//! On the host: the run minima come back (`probes × runs`), are folded into
//! each label's best `(distance, index)` with the host-scored pairs, and
//! the `k` best labels are sorted by distance, then index: vision's
//! collector, so ties go to the earlier template as in OpenCV.

use std::collections::HashMap;
use std::sync::Arc;

use rayon::prelude::*;
use vision::lbph::distance::chi_square;
use vision::lbph::template::{Layout, TemplateRef};
use vision::lbph::{Match, Template};

/// The host's mirror of the device gallery, in gallery order, and the
/// bookkeeping that needs no device (kept apart so that it is tested
/// without a GPU, against a host transcription of the kernels).
#[derive(Default)]
pub(super) struct Mirror {
    pub(super) labels: Vec<i32>,
    /// Cell pixels, 0 for a template with overflow (as on the device).
    pub(super) cells_host: Vec<u32>,
    cell_pixels: Vec<u32>,
    pub(super) overflow: HashMap<usize, Arc<Template>>,
    /// Templates without overflow by cell size.
    by_cell_size: HashMap<u32, usize>,
    /// Runs of one label: starts, then the end (always at least `[0]`).
    pub(super) runs: Vec<i32>,
    run_label: Vec<u32>,
    /// Labels by dense number, and back.
    dense: Vec<i32>,
    dense_of: HashMap<i32, u32>,
}

impl Mirror {
    /// An empty gallery: no templates, `runs` closed at 0.
    pub(super) fn new() -> Self {
        Mirror {
            runs: vec![0],
            ..Mirror::default()
        }
    }

    /// Host distance of a pair the kernel left to the host.
    fn host_distance(
        &self,
        layout: Layout,
        index: usize,
        probe: &Template,
        fetched: &HashMap<usize, Vec<u8>>,
    ) -> f64 {
        let template = match self.overflow.get(&index) {
            Some(t) => t.as_ref().as_ref(),
            None => TemplateRef {
                cell_pixels: self.cell_pixels[index],
                counts: &fetched[&index],
                overflow: &[],
            },
        };
        chi_square(layout, template, probe.as_ref(), f64::INFINITY)
    }

    /// Templates (among `candidates`) the kernel does not score for `probe`.
    pub(super) fn host_pairs(
        &self,
        probe: &Template,
        candidates: impl Iterator<Item = usize>,
    ) -> Vec<usize> {
        let r = probe.as_ref();
        let pc = if r.overflow.is_empty() {
            r.cell_pixels
        } else {
            0
        };
        candidates
            .filter(|&i| pc == 0 || self.cells_host[i] != pc)
            .collect()
    }

    /// Per probe, the `k` best labels from the run minima the kernel gave
    /// (`probes × runs`, index -1 for a run without a kernel-scored
    /// template) and the pairs in `host` scored here: vision's collector,
    /// nearest first, ties to the earlier template.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn top_k(
        &self,
        layout: Layout,
        probes: &[&Template],
        k: usize,
        run_d: &[f64],
        run_i: &[i32],
        host: &[Vec<usize>],
        fetched: &HashMap<usize, Vec<u8>>,
    ) -> Vec<Vec<Match>> {
        let runs = self.runs.len() - 1;
        (0..probes.len())
            .into_par_iter()
            .map(|q| {
                let mut best = vec![(f64::INFINITY, usize::MAX); self.dense.len()];
                for r in 0..runs {
                    let (d, i) = (run_d[q * runs + r], run_i[q * runs + r]);
                    let slot = &mut best[self.run_label[r] as usize];
                    if i >= 0 && (d, i as usize) < *slot {
                        *slot = (d, i as usize);
                    }
                }
                for &i in &host[q] {
                    let d = self.host_distance(layout, i, probes[q], fetched);
                    let slot = &mut best[self.dense_of(i)];
                    if d < f64::INFINITY && (d, i) < *slot {
                        *slot = (d, i);
                    }
                }
                let mut all: Vec<(f64, usize, i32)> = best
                    .iter()
                    .enumerate()
                    .filter(|(_, (d, _))| *d < f64::INFINITY)
                    .map(|(dense, &(d, i))| (d, i, self.dense[dense]))
                    .collect();
                let by = |a: &(f64, usize, i32), b: &(f64, usize, i32)| {
                    a.0.total_cmp(&b.0).then(a.1.cmp(&b.1))
                };
                if all.len() > k {
                    all.select_nth_unstable_by(k - 1, by);
                    all.truncate(k);
                }
                all.sort_by(by);
                all.into_iter()
                    .map(|(distance, _, label)| Match { label, distance })
                    .collect()
            })
            .collect()
    }

    /// The smallest distance of one probe to a label's templates `mine`,
    /// from the kernel's row for them and the pairs in `host`.
    pub(super) fn label_min(
        &self,
        layout: Layout,
        probe: &Template,
        mine: &[i32],
        row: &[f64],
        host: &[usize],
        fetched: &HashMap<usize, Vec<u8>>,
    ) -> Option<f64> {
        let mut d = row.to_vec();
        for &i in host {
            let at = mine
                .iter()
                .position(|&m| m as usize == i)
                .expect("one of the label's");
            d[at] = self.host_distance(layout, i, probe, fetched);
        }
        d.into_iter().min_by(f64::total_cmp)
    }

    /// Appends templates of `label`; returns their histogram bytes for the device.
    pub(super) fn append(&mut self, label: i32, templates: Vec<Template>) -> Vec<u8> {
        let first = self.labels.len();
        let mut bytes = Vec::new();
        for (k, t) in templates.into_iter().enumerate() {
            let r = t.as_ref();
            bytes.extend_from_slice(r.counts);
            self.labels.push(label);
            self.cell_pixels.push(r.cell_pixels);
            if r.overflow.is_empty() {
                self.cells_host.push(r.cell_pixels);
            } else {
                self.cells_host.push(0);
                self.overflow.insert(first + k, Arc::new(t));
            }
        }
        bytes
    }

    /// Removes the templates of `label`: how many, and the moves
    /// `(from, to, count)` (in templates, `to < from`, in this order) that
    /// compact the device buffer to match. Call [`Mirror::refresh`]`(0)` after.
    pub(super) fn remove(&mut self, label: i32) -> (usize, Vec<(usize, usize, usize)>) {
        let keep: Vec<bool> = self.labels.iter().map(|&l| l != label).collect();
        let removed = keep.iter().filter(|k| !**k).count();
        if removed == 0 {
            return (0, Vec::new());
        }
        let mut moves = Vec::new();
        let (mut write, mut i) = (0, 0);
        while i < keep.len() {
            if !keep[i] {
                i += 1;
                continue;
            }
            let start = i;
            while i < keep.len() && keep[i] {
                i += 1;
            }
            if start != write {
                moves.push((start, write, i - start));
            }
            write += i - start;
        }
        let mut it = keep.iter();
        self.labels.retain(|_| *it.next().unwrap());
        let mut it = keep.iter();
        self.cell_pixels.retain(|_| *it.next().unwrap());
        let mut it = keep.iter();
        self.cells_host.retain(|_| *it.next().unwrap());
        let mut new_index = Vec::with_capacity(keep.len());
        let mut next = 0usize;
        for &k in &keep {
            new_index.push(next);
            next += k as usize;
        }
        self.overflow = std::mem::take(&mut self.overflow)
            .into_iter()
            .filter(|(i, _)| keep[*i])
            .map(|(i, t)| (new_index[i], t))
            .collect();
        (removed, moves)
    }

    /// Brings runs, dense labels and counts up to date from template `from`
    /// on (0 after a removal: everything is rebuilt; the old length after an
    /// append: only the new part, so that loading a gallery person by person
    /// stays linear). Returns the first entry of `runs` that changed.
    pub(super) fn refresh(&mut self, from: usize) -> usize {
        let n = self.labels.len();
        if from == 0 {
            self.by_cell_size.clear();
            self.dense_of.clear();
            self.dense.clear();
            self.runs = vec![0];
            self.run_label.clear();
        }
        for &c in &self.cells_host[from..] {
            if c != 0 {
                *self.by_cell_size.entry(c).or_default() += 1;
            }
        }
        // `runs` ends with the old length: drop it, extend, close again.
        self.runs.pop();
        let first_changed = self.runs.len().saturating_sub(1);
        for i in from..n {
            let l = self.labels[i];
            if i == 0 || self.labels[i - 1] != l {
                let next = self.dense_of.len() as u32;
                let d = *self.dense_of.entry(l).or_insert(next);
                if d == next {
                    self.dense.push(l);
                }
                self.runs.push(i as i32);
                self.run_label.push(d);
            }
        }
        self.runs.push(n as i32);
        first_changed
    }

    /// [`Mirror::host_pairs`] over the whole gallery, skipping the scan when
    /// the kernel scored every template.
    pub(super) fn host_pairs_fast(&self, probe: &Template) -> Vec<usize> {
        let r = probe.as_ref();
        let scored = if r.overflow.is_empty() {
            self.by_cell_size.get(&r.cell_pixels).copied().unwrap_or(0)
        } else {
            0
        };
        if scored == self.labels.len() {
            Vec::new()
        } else {
            self.host_pairs(probe, 0..self.labels.len())
        }
    }

    fn dense_of(&self, index: usize) -> usize {
        // Runs are sorted by start: the run holding `index`.
        let r = self.runs.partition_point(|&s| s as usize <= index) - 1;
        self.run_label[r] as usize
    }
}
