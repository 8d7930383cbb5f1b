//! The CPU backend: vision's exact branch-and-bound matcher, parallel over
//! all cores with rayon.

use std::sync::RwLock;

use rayon::prelude::*;
use vision::lbph::distance::chi_square;
use vision::lbph::{Gallery, LbphParams, Match, Template};

use super::{BackendError, MatchBackend};

pub struct CpuBackend {
    gallery: RwLock<Gallery>,
}

impl CpuBackend {
    pub fn new(params: LbphParams) -> Self {
        Self {
            gallery: RwLock::new(Gallery::new(params)),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Gallery> {
        // Writers replace a label in one step under the lock, so even a
        // poisoned lock guards a consistent gallery.
        self.gallery.read().unwrap_or_else(|p| p.into_inner())
    }
}

impl MatchBackend for CpuBackend {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn update_label(
        &self,
        label: i32,
        templates: Vec<Template>,
        replace: bool,
    ) -> Result<(), BackendError> {
        let mut gallery = self.gallery.write().unwrap_or_else(|p| p.into_inner());
        // Check them all first, so a bad one cannot leave the label half-updated.
        let expected = gallery.layout();
        if let Some(bad) = templates.iter().find(|t| t.layout() != expected) {
            return Err(BackendError::LayoutMismatch {
                expected,
                found: bad.layout(),
            });
        }
        if replace {
            gallery.remove_label(label);
        }
        for t in templates {
            gallery.add(label, t)?;
        }
        Ok(())
    }

    fn remove_label(&self, label: i32) {
        self.gallery
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove_label(label);
    }

    fn search_batch(&self, probes: &[Template], k: usize) -> Result<Vec<Vec<Match>>, BackendError> {
        Ok(self.read().search_batch(probes, k, f64::INFINITY)?)
    }

    fn distances_to_label(
        &self,
        probes: &[Template],
        label: i32,
    ) -> Result<Vec<Option<f64>>, BackendError> {
        let gallery = self.read();
        let layout = gallery.layout();
        if let Some(bad) = probes.iter().find(|p| p.layout() != layout) {
            return Err(BackendError::LayoutMismatch {
                expected: layout,
                found: bad.layout(),
            });
        }
        let mine: Vec<usize> = (0..gallery.len())
            .filter(|&i| gallery.labels()[i] == label)
            .collect();
        Ok(probes
            .par_iter()
            .map(|p| {
                mine.iter()
                    .map(|&i| chi_square(layout, gallery.template(i), p.as_ref(), f64::INFINITY))
                    .min_by(f64::total_cmp)
            })
            .collect())
    }

    fn template_count(&self) -> usize {
        self.read().len()
    }
}
