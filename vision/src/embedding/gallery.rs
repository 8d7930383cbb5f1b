//! Enrolled embeddings and exact nearest-neighbour search.
//!
//! Exact, not approximate: a plant's gallery is tens of thousands of
//! templates, 512 bytes each, which a scan covers in milliseconds on all
//! cores, and an approximate index would make a sign-in's answer depend on
//! how the index was built. The answers have [`crate::lbph::Gallery`]'s
//! semantics: the `k` nearest distinct people with a distance below the
//! threshold, each at the distance of their nearest template.

use std::collections::HashMap;

use rayon::prelude::*;

use super::template::{squared_l2, Embedding, DIMS};
use crate::Match;

/// Templates scanned by one task: large enough that scheduling is noise.
const CHUNK: usize = 512;

#[derive(Debug, Clone, Default)]
pub struct EmbeddingGallery {
    labels: Vec<i32>,
    /// `labels.len()` embeddings of [`DIMS`] values, one after another.
    values: Vec<[f32; DIMS]>,
}

impl EmbeddingGallery {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn labels(&self) -> &[i32] {
        &self.labels
    }

    pub fn add(&mut self, label: i32, embedding: Embedding) {
        self.labels.push(label);
        self.values.push(embedding.0);
    }

    /// Removes every template of `label`; returns how many there were.
    pub fn remove_label(&mut self, label: i32) -> usize {
        let before = self.len();
        let mut keep = self.labels.iter().map(|&l| l != label);
        self.values.retain(|_| keep.next().unwrap_or(true));
        self.labels.retain(|&l| l != label);
        before - self.len()
    }

    /// Bytes the gallery holds a template (values and label).
    pub fn bytes_per_template(&self) -> usize {
        std::mem::size_of::<[f32; DIMS]>() + std::mem::size_of::<i32>()
    }

    /// The `k` nearest distinct labels to `probe` with a distance below
    /// `threshold`, nearest first (ties: the earlier template).
    pub fn search(&self, probe: &Embedding, k: usize, threshold: f64) -> Vec<Match> {
        if k == 0 || self.is_empty() {
            return Vec::new();
        }
        let best = self
            .values
            .par_chunks(CHUNK)
            .enumerate()
            .fold(
                HashMap::new,
                |mut best: HashMap<i32, (f32, usize)>, (c, chunk)| {
                    for (j, v) in chunk.iter().enumerate() {
                        let i = c * CHUNK + j;
                        let d = squared_l2(&probe.0, v);
                        let e = best
                            .entry(self.labels[i])
                            .or_insert((f32::INFINITY, usize::MAX));
                        if (d, i) < *e {
                            *e = (d, i);
                        }
                    }
                    best
                },
            )
            .reduce(HashMap::new, |mut a, b| {
                for (label, entry) in b {
                    let e = a.entry(label).or_insert(entry);
                    if entry < *e {
                        *e = entry;
                    }
                }
                a
            });
        let mut all: Vec<(f64, usize, i32)> = best
            .into_iter()
            .map(|(label, (d, i))| (f64::from(d).sqrt(), i, label))
            .filter(|&(d, _, _)| d < threshold)
            .collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        all.truncate(k);
        all.into_iter()
            .map(|(distance, _, label)| Match { label, distance })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emb(seed: u32) -> Embedding {
        // A small deterministic generator: no two seeds alike.
        let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        let v: Vec<f32> = (0..DIMS)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x % 2000) as f32 / 10_000.0 - 0.1
            })
            .collect();
        Embedding::new(&v).unwrap()
    }

    #[test]
    fn search_is_the_brute_force_answer() {
        let mut g = EmbeddingGallery::new();
        // More templates than one chunk, several per label.
        for i in 0..1500u32 {
            g.add((i % 97) as i32, emb(i));
        }
        for p in [3u32, 5000, 7777] {
            let probe = emb(p);
            let mut per_label: HashMap<i32, f64> = HashMap::new();
            for i in 0..1500u32 {
                let d = probe.distance(&emb(i));
                let e = per_label.entry((i % 97) as i32).or_insert(f64::INFINITY);
                *e = e.min(d);
            }
            let mut expected: Vec<(f64, i32)> =
                per_label.into_iter().map(|(l, d)| (d, l)).collect();
            expected.sort_by(|a, b| a.0.total_cmp(&b.0));
            let threshold = expected[10].0; // strictly below: ten pass
            let got = g.search(&probe, 20, threshold);
            assert_eq!(got.len(), 10);
            for (m, (d, l)) in got.iter().zip(&expected) {
                assert_eq!(m.label, *l);
                assert!((m.distance - d).abs() < 1e-4);
            }
            assert_eq!(g.search(&probe, 3, f64::INFINITY).len(), 3);
        }
        assert_eq!(
            g.search(&emb(3), 1, f64::INFINITY)[0],
            Match {
                label: 3,
                distance: 0.0
            }
        );
    }

    #[test]
    fn removing_a_label_removes_its_templates_only() {
        let mut g = EmbeddingGallery::new();
        for i in 0..10u32 {
            g.add((i % 3) as i32, emb(i));
        }
        assert_eq!(g.remove_label(1), 3);
        assert_eq!(g.len(), 7);
        assert!(g.labels().iter().all(|&l| l != 1));
        let m = g.search(&emb(5), 1, f64::INFINITY);
        assert_eq!(m[0].label, 2);
        assert_eq!(m[0].distance, 0.0, "template 5 kept its own values");
    }
}
