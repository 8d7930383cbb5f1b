//! Matching backends: where probe templates meet the gallery.
//!
//! The RPC layer only sees [`MatchBackend`]; a backend owns its copy of the
//! gallery's templates (in RAM, or in GPU memory for a CUDA backend) and is
//! handed batches of probes by the [batcher](crate::batcher).

mod cpu;

use std::sync::Arc;

use vision::lbph::template::Layout;
use vision::lbph::{LbphParams, Match, Template};

pub use cpu::CpuBackend;

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("the {0} backend is not available in this build; the CUDA backend ships in a later release (use auto or cpu)")]
    Unavailable(&'static str),
    #[error("a template with layout {found:?} does not fit the gallery's {expected:?}")]
    LayoutMismatch { expected: Layout, found: Layout },
    #[error("matching failed: {0}")]
    Matching(#[from] vision::Error),
}

/// Which backend to run, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    /// The best one available (the CPU backend for now).
    Auto,
    /// vision's matcher on all cores.
    Cpu,
    /// GPU matching (not yet available).
    Cuda,
}

/// A gallery matcher. Implementations are shared across request tasks.
pub trait MatchBackend: Send + Sync {
    /// Short name for logs, metrics and GalleryStatus.
    fn name(&self) -> &'static str;

    /// Adds templates to `label`, first dropping its old ones when `replace`
    /// is set; searches see the label either before or after, never half-done.
    fn update_label(&self, label: i32, templates: Vec<Template>, replace: bool) -> Result<(), BackendError>;

    /// Removes every template of `label`.
    fn remove_label(&self, label: i32);

    /// For each probe, the `k` nearest distinct labels, nearest first. No
    /// threshold: the burst rule needs each frame's nearest operator however
    /// far, and requests apply their own thresholds afterwards.
    fn search_batch(&self, probes: &[Template], k: usize) -> Result<Vec<Vec<Match>>, BackendError>;

    /// For each probe, its smallest distance to a template of `label`
    /// (None when the label has no templates).
    fn distances_to_label(&self, probes: &[Template], label: i32) -> Result<Vec<Option<f64>>, BackendError>;

    /// Templates held.
    fn template_count(&self) -> usize;
}

/// Builds the configured backend.
pub fn create(choice: BackendChoice, params: LbphParams) -> Result<Arc<dyn MatchBackend>, BackendError> {
    match choice {
        BackendChoice::Auto | BackendChoice::Cpu => Ok(Arc::new(CpuBackend::new(params))),
        BackendChoice::Cuda => Err(BackendError::Unavailable("cuda")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_is_cpu_and_cuda_is_a_clear_error_until_it_exists() {
        assert_eq!(create(BackendChoice::Auto, LbphParams::default()).unwrap().name(), "cpu");
        let err = create(BackendChoice::Cuda, LbphParams::default()).err().expect("no CUDA backend yet");
        assert!(err.to_string().contains("cuda backend is not available"), "{err}");
    }
}
