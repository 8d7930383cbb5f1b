//! The device side transcribed on the host (the kernels' arithmetic and
//! indexing, the buffers, the uploads and `run_min`) around the backend's
//! own [`Mirror`], checked against vision and the CPU backend: everything
//! but CUDA itself, without a GPU.

use std::collections::HashMap;

use vision::lbph::distance::chi_square;
use vision::lbph::Layout;
use vision::lbph::{LbphParams, Match, Template};

use super::mirror::Mirror;

fn rng(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

/// A template of `n`-pixel cells with counts spread over a few bins.
fn template(seed: u64, n: u32) -> Template {
    let layout = Layout::of(&LbphParams::default());
    let mut next = rng(seed);
    let mut counts = vec![0u8; layout.histogram_len()];
    for cell in counts.chunks_mut(layout.bins()) {
        for _ in 0..n {
            let bin = if next().is_multiple_of(4) {
                next() % 256
            } else {
                next() % 40
            } as usize;
            cell[bin] += 1;
        }
    }
    let mut bytes = b"KVT1".to_vec();
    bytes.extend([1u8, 8, 8, 8]);
    bytes.extend(n.to_le_bytes());
    bytes.extend(0u32.to_le_bytes());
    bytes.extend(counts);
    Template::from_bytes(&bytes).unwrap()
}

/// The kernel's arithmetic and indexing, step for step on the host:
/// `stage` (the transposition into 32-bit words) and `chi2_tile`'s loops.
fn as_the_kernel_does(layout: Layout, a: &Template, b: &Template) -> f64 {
    kernel_pair(
        layout,
        a.as_ref().counts,
        b.as_ref().counts,
        b.cell_pixels(),
    )
}

/// `chi2_tile` for one (template, probe) pair of byte histograms.
fn kernel_pair(layout: Layout, a: &[u8], b: &[u8], n: u32) -> f64 {
    let (bins, lanes) = (layout.bins(), 16);
    let (j_len, w_len) = (bins / lanes, bins / lanes / 4);
    let row = lanes * w_len + 1;
    let stage = |t: &[u8], c: usize| {
        let mut words = vec![0u32; row];
        let src = &t[c * bins..(c + 1) * bins];
        for word in 0..bins / 4 {
            let v = u32::from_le_bytes(src[4 * word..4 * word + 4].try_into().unwrap());
            for k in 0..4 {
                let bin = 4 * word + k;
                let (lane, j) = (bin % lanes, bin / lanes);
                let at = (lane * w_len) * 4 + j;
                let byte = (v >> (8 * k)) & 0xff;
                words[at / 4] |= byte << (8 * (at % 4));
            }
        }
        words
    };
    assert_eq!(j_len % 4, 0);
    let mut total = 0.0f64;
    for c in 0..layout.cells() {
        let (st, sp) = (stage(a, c), stage(b, c));
        let mut cell = 0.0f64;
        for lane in 0..lanes {
            let mut acc = 0.0f32;
            for w in 0..w_len {
                let (tw, pw) = (st[lane * w_len + w], sp[lane * w_len + w]);
                for k in 0..4 {
                    let x = ((tw >> (8 * k)) & 0xff) as f32;
                    let y = ((pw >> (8 * k)) & 0xff) as f32;
                    let d = x - y;
                    acc += d * d / (x + y).max(1.0);
                }
            }
            cell += acc as f64;
        }
        total += cell;
    }
    total * (2.0 / n as f64)
}

#[test]
fn the_kernels_arithmetic_is_visions_bit_for_bit() {
    let layout = Layout::of(&LbphParams::default());
    for seed in 0..40 {
        let n = [143, 143, 60, 250][seed as usize % 4];
        let (a, b) = (template(seed, n), template(seed + 1000, n));
        let cpu = chi_square(layout, a.as_ref(), b.as_ref(), f64::INFINITY);
        let gpu = as_the_kernel_does(layout, &a, &b);
        assert_eq!(gpu.to_bits(), cpu.to_bits(), "seed {seed}: {gpu} vs {cpu}");
        assert_eq!(as_the_kernel_does(layout, &a, &a), 0.0);
    }
}

/// The device side, transcribed: the gallery and cell-size buffers,
/// the run starts as uploaded, `chi2_tile` per pair and `run_min`;
/// the host side is the backend's own [`Mirror`].
struct Emulated {
    layout: Layout,
    gallery: Vec<u8>,
    cells: Vec<u32>,
    starts: Vec<i32>,
    m: Mirror,
}

impl Emulated {
    fn new() -> Self {
        Self {
            layout: Layout::of(&LbphParams::default()),
            gallery: Vec::new(),
            cells: Vec::new(),
            starts: vec![0],
            m: Mirror::new(),
        }
    }

    fn update(&mut self, label: i32, templates: Vec<Template>, replace: bool) {
        let len = self.layout.histogram_len();
        let n = self.m.labels.len();
        let removing = self.m.labels.iter().filter(|&&l| l == label).count();
        let mut from = n;
        if replace && removing > 0 {
            self.remove(label);
            from = 0;
        }
        let first = self.m.labels.len();
        let bytes = self.m.append(label, templates);
        self.gallery
            .resize(self.gallery.len().max((first * len) + bytes.len()), 0);
        self.gallery[first * len..first * len + bytes.len()].copy_from_slice(&bytes);
        self.refresh(from);
    }

    fn remove(&mut self, label: i32) -> usize {
        let len = self.layout.histogram_len();
        let (removed, moves) = self.m.remove(label);
        for (src, dst, count) in moves {
            // State::move_left: chunks no longer than the shift.
            let (shift, mut done) = (src - dst, 0);
            while done < count {
                let n = shift.min(count - done);
                let (from, to) = ((src + done) * len, (dst + done) * len);
                assert!(to + n * len <= from, "overlapping copy");
                self.gallery.copy_within(from..from + n * len, to);
                done += n;
            }
        }
        removed
    }

    fn remove_label(&mut self, label: i32) {
        if self.remove(label) > 0 {
            self.refresh(0);
        }
    }

    /// State::refresh: cell sizes from `from`, starts from the first
    /// changed run (all when the buffer must grow).
    fn refresh(&mut self, from: usize) {
        let n = self.m.labels.len();
        self.cells.resize(self.cells.len().max(n), 0);
        self.cells[from..n].copy_from_slice(&self.m.cells_host[from..]);
        let first_changed = self.m.refresh(from);
        let r = self.m.runs.len();
        let from_run = if self.starts.len() < r {
            self.starts = vec![-7; r.next_power_of_two()];
            0
        } else {
            first_changed
        };
        self.starts[from_run..r].copy_from_slice(&self.m.runs[from_run..]);
    }

    fn dist(&self, probes: &[&Template], index: Option<&[i32]>) -> (usize, Vec<f64>) {
        let len = self.layout.histogram_len();
        let n = index.map_or(self.m.labels.len(), |i| i.len());
        let mut out = vec![0.0; probes.len() * n];
        for (p, probe) in probes.iter().enumerate() {
            let r = probe.as_ref();
            let pc = if r.overflow.is_empty() {
                r.cell_pixels
            } else {
                0
            };
            for t in 0..n {
                let g = index.map_or(t, |i| i[t] as usize);
                out[p * n + t] = if pc != 0 && self.cells[g] == pc {
                    kernel_pair(
                        self.layout,
                        &self.gallery[g * len..(g + 1) * len],
                        r.counts,
                        pc,
                    )
                } else {
                    f64::INFINITY
                };
            }
        }
        (n, out)
    }

    fn fetch(&self, indices: impl Iterator<Item = usize>) -> HashMap<usize, Vec<u8>> {
        let len = self.layout.histogram_len();
        indices
            .filter(|i| !self.m.overflow.contains_key(i))
            .map(|i| (i, self.gallery[i * len..(i + 1) * len].to_vec()))
            .collect()
    }

    fn search(&self, probes: &[Template], k: usize) -> Vec<Vec<Match>> {
        if k == 0 || self.m.labels.is_empty() {
            return vec![Vec::new(); probes.len()];
        }
        let probes: Vec<&Template> = probes.iter().collect();
        let (n, dist) = self.dist(&probes, None);
        let runs = self.m.runs.len() - 1;
        let (mut run_d, mut run_i) = (vec![0.0; probes.len() * runs], vec![0; probes.len() * runs]);
        for p in 0..probes.len() {
            for r in 0..runs {
                let (mut best, mut at) = (f64::INFINITY, -1);
                for t in self.starts[r]..self.starts[r + 1] {
                    let d = dist[p * n + t as usize];
                    if d < best {
                        (best, at) = (d, t);
                    }
                }
                (run_d[p * runs + r], run_i[p * runs + r]) = (best, at);
            }
        }
        let host: Vec<Vec<usize>> = probes.iter().map(|p| self.m.host_pairs_fast(p)).collect();
        let fetched = self.fetch(host.iter().flatten().copied());
        self.m
            .top_k(self.layout, &probes, k, &run_d, &run_i, &host, &fetched)
    }

    fn distances_to_label(&self, probes: &[Template], label: i32) -> Vec<Option<f64>> {
        let mine: Vec<i32> = (0..self.m.labels.len())
            .filter(|&i| self.m.labels[i] == label)
            .map(|i| i as i32)
            .collect();
        if mine.is_empty() {
            return vec![None; probes.len()];
        }
        let refs: Vec<&Template> = probes.iter().collect();
        let (n, dist) = self.dist(&refs, Some(&mine));
        refs.iter()
            .enumerate()
            .map(|(q, p)| {
                let host = self.m.host_pairs(p, mine.iter().map(|&i| i as usize));
                let fetched = self.fetch(host.iter().copied());
                self.m.label_min(
                    self.layout,
                    p,
                    &mine,
                    &dist[q * n..(q + 1) * n],
                    &host,
                    &fetched,
                )
            })
            .collect()
    }
}

/// A template from exact counts (overflow for counts of 255 and more).
fn exact(cell_pixels: u32, counts: &[u32]) -> Template {
    let mut bytes = b"KVT1".to_vec();
    bytes.extend([1u8, 8, 8, 8]);
    bytes.extend(cell_pixels.to_le_bytes());
    let over: Vec<(u32, u32)> = counts
        .iter()
        .enumerate()
        .filter(|(_, &c)| c >= 255)
        .map(|(b, &c)| (b as u32, c))
        .collect();
    bytes.extend((over.len() as u32).to_le_bytes());
    bytes.extend(counts.iter().map(|&c| c.min(255) as u8));
    for (b, c) in over {
        bytes.extend(b.to_le_bytes());
        bytes.extend(c.to_le_bytes());
    }
    Template::from_bytes(&bytes).unwrap()
}

fn big(seed: u64) -> Template {
    let mut next = rng(seed);
    let mut counts = vec![0u32; 64 * 256];
    for cell in counts.chunks_mut(256) {
        cell[(next() % 256) as usize] += 400;
        for _ in 0..176 {
            cell[(next() % 256) as usize] += 1;
        }
    }
    exact(576, &counts)
}

/// Everything but CUDA itself: the mirror's bookkeeping through appends,
/// replacements and removals, the device compaction's moves, the
/// incremental uploads, `run_min`, the host-scored pairs and the top-k,
/// against the CPU backend.
#[test]
fn the_bookkeeping_around_the_kernels_gives_the_cpus_answers() {
    use crate::backend::{CpuBackend, MatchBackend};
    let cpu = CpuBackend::new(LbphParams::default());
    let mut emu = Emulated::new();
    let mut seed = 0;
    let mut people = |views: usize, n: u32| {
        (0..views)
            .map(|_| {
                seed += 1;
                template(seed, n)
            })
            .collect::<Vec<_>>()
    };
    let mut ops: Vec<(i32, Vec<Template>, bool)> = Vec::new();
    for label in 0..25 {
        ops.push((label, people(1 + label as usize % 4, 143), false));
    }
    ops.push((30, vec![big(1), big(2)], false)); // overflow
    ops.push((31, people(2, 120), false)); // another cell size
    ops.push((3, people(2, 143), false)); // appended later: a second run
    ops.push((5, people(3, 143), true)); // replaced
    ops.push((40, people(1, 143), false));
    ops.push((3, Vec::new(), true)); // replaced with nothing
    ops.push((30, vec![big(3)], false));
    ops.push((31, people(1, 143), true));
    let mut probes = people(12, 143);
    probes.extend([big(1), big(9), template(999, 120)]);
    probes.push(template(5, 143)); // a gallery template itself: distance 0
    let check = |cpu: &CpuBackend, emu: &Emulated, what: &str| {
        for k in [1, 3, 50] {
            assert_eq!(
                emu.search(&probes, k),
                cpu.search_batch(&probes, k).unwrap(),
                "{what}, k {k}"
            );
        }
        for label in [0, 3, 7, 30, 31, 40, 1234] {
            assert_eq!(
                emu.distances_to_label(&probes, label),
                cpu.distances_to_label(&probes, label).unwrap(),
                "{what}, label {label}"
            );
        }
    };
    for (i, (label, templates, replace)) in ops.into_iter().enumerate() {
        cpu.update_label(label, templates.clone(), replace).unwrap();
        emu.update(label, templates, replace);
        assert_eq!(emu.m.labels.len(), cpu.template_count());
        check(&cpu, &emu, &format!("after update {i} (label {label})"));
    }
    for label in [0, 12, 30, 40, 77, 24] {
        cpu.remove_label(label);
        emu.remove_label(label);
        check(&cpu, &emu, &format!("after removing {label}"));
    }
    for label in 0..50 {
        cpu.remove_label(label);
        emu.remove_label(label);
    }
    assert_eq!(emu.m.labels.len(), 0);
    check(&cpu, &emu, "empty");
    cpu.update_label(9, vec![template(5, 143)], false).unwrap();
    emu.update(9, vec![template(5, 143)], false);
    check(&cpu, &emu, "refilled");
}
