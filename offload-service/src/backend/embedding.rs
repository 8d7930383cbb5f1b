//! The dlib recogniser's backend: vision's exact embedding search
//! ([`EmbeddingGallery`]) on all cores.
//!
//! CPU only: an L2 scan over 512-byte embeddings covers a plant's gallery
//! in milliseconds, so the CUDA backend matches LBPH templates only.

use std::sync::RwLock;

use vision::embedding::{Embedding, EmbeddingGallery};
use vision::Match;

use super::{BackendError, MatchBackend};

#[derive(Default)]
pub struct EmbeddingBackend {
    gallery: RwLock<EmbeddingGallery>,
}

impl EmbeddingBackend {
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, EmbeddingGallery> {
        // Writers replace a label in one step under the lock, so even a
        // poisoned lock guards a consistent gallery.
        self.gallery.read().unwrap_or_else(|p| p.into_inner())
    }
}

impl MatchBackend<Embedding> for EmbeddingBackend {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn update_label(
        &self,
        label: i32,
        templates: Vec<Embedding>,
        replace: bool,
    ) -> Result<(), BackendError> {
        let mut gallery = self.gallery.write().unwrap_or_else(|p| p.into_inner());
        if replace {
            gallery.remove_label(label);
        }
        for t in templates {
            gallery.add(label, t);
        }
        Ok(())
    }

    fn remove_label(&self, label: i32) {
        self.gallery
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove_label(label);
    }

    fn search_batch(
        &self,
        probes: &[Embedding],
        k: usize,
    ) -> Result<Vec<Vec<Match>>, BackendError> {
        // Each search runs on all cores already.
        let gallery = self.read();
        Ok(probes
            .iter()
            .map(|p| gallery.search(p, k, f64::INFINITY))
            .collect())
    }

    fn distances_to_label(
        &self,
        probes: &[Embedding],
        label: i32,
    ) -> Result<Vec<Option<f64>>, BackendError> {
        // Every label's nearest distance, then `label`'s: one scan a probe,
        // as a search is (a Verify has a few probes).
        let gallery = self.read();
        Ok(probes
            .iter()
            .map(|p| {
                gallery
                    .search(p, gallery.len(), f64::INFINITY)
                    .into_iter()
                    .find(|m| m.label == label)
                    .map(|m| m.distance)
            })
            .collect())
    }

    fn template_count(&self) -> usize {
        self.read().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emb(v: f32) -> Embedding {
        let mut values = [0.0f32; 128];
        values[0] = v;
        values[1] = 1.0;
        Embedding::new(&values).unwrap()
    }

    #[test]
    fn searches_and_measures_one_label() {
        let b = EmbeddingBackend::new();
        b.update_label(1, vec![emb(0.0), emb(0.5)], false).unwrap();
        b.update_label(2, vec![emb(0.9)], false).unwrap();
        assert_eq!(b.template_count(), 3);
        let found = b.search_batch(&[emb(0.8)], 2).unwrap();
        assert_eq!(found[0].iter().map(|m| m.label).collect::<Vec<_>>(), [2, 1]);
        let d = b.distances_to_label(&[emb(0.8)], 1).unwrap();
        assert!(d[0].is_some_and(|d| d > 0.0), "{d:?}");
        assert_eq!(b.distances_to_label(&[emb(0.8)], 3).unwrap(), [None]);
        b.update_label(1, vec![emb(0.8)], true).unwrap();
        assert_eq!(b.template_count(), 2);
        b.remove_label(2);
        assert_eq!(b.search_batch(&[emb(0.8)], 5).unwrap()[0].len(), 1);
    }
}
