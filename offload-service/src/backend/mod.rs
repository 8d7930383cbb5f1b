//! Matching backends: where probe templates meet the gallery.
//!
//! The RPC layer only sees [`MatchBackend`]; a backend owns its copy of the
//! gallery's templates (in RAM, or in GPU memory for a CUDA backend) and is
//! handed batches of probes by the [batcher](crate::batcher).

mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
mod embedding;
mod fallback;

use std::sync::Arc;

use vision::embedding::Embedding;
use vision::lbph::Layout;
use vision::lbph::{LbphParams, Match, Template};
use vision::recogniser::Kind;

pub use cpu::CpuBackend;
#[cfg(feature = "cuda")]
pub use cuda::{CudaBackend, CudaOptions};
pub use embedding::EmbeddingBackend;
pub use fallback::FallbackBackend;
use vision::template::AnyTemplate;

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("the {backend} backend is not available: {reason}")]
    Unavailable {
        backend: &'static str,
        reason: String,
    },
    #[error("a template with layout {found:?} does not fit the gallery's {expected:?}")]
    LayoutMismatch { expected: Layout, found: Layout },
    #[error("matching failed: {0}")]
    Matching(#[from] vision::Error),
    /// The gallery (with the search buffers it needs) does not fit in the
    /// GPU memory left; nothing was changed.
    #[error(
        "out of GPU memory: {templates} templates need {needed} bytes on the device, only {available} are available"
    )]
    OutOfDeviceMemory {
        templates: usize,
        needed: u64,
        available: u64,
    },
    /// The GPU failed while working (a driver or launch error).
    #[error("GPU failure: {0}")]
    Device(String),
}

impl BackendError {
    /// Whether the error is the device's, not the request's: a reason for
    /// [`FallbackBackend`] to continue on the CPU.
    pub fn is_device_failure(&self) -> bool {
        matches!(self, Self::OutOfDeviceMemory { .. } | Self::Device(_))
    }
}

/// Which backend to run, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    /// CUDA when this build has it and a GPU initialises, the CPU otherwise.
    Auto,
    /// vision's matcher on all cores.
    Cpu,
    /// GPU matching (builds with the `cuda` feature; fails at start without a GPU).
    Cuda,
}

/// A gallery matcher of templates of one kind (`T`: LBPH templates, the
/// default, or dlib embeddings). Implementations are shared across request
/// tasks.
pub trait MatchBackend<T = Template>: Send + Sync {
    /// Short name for logs, metrics and GalleryStatus.
    fn name(&self) -> &'static str;

    /// Adds templates to `label`, first dropping its old ones when `replace`
    /// is set; searches see the label either before or after, never half-done.
    fn update_label(
        &self,
        label: i32,
        templates: Vec<T>,
        replace: bool,
    ) -> Result<(), BackendError>;

    /// Removes every template of `label`.
    fn remove_label(&self, label: i32);

    /// For each probe, the `k` nearest distinct labels, nearest first. No
    /// threshold: the burst rule needs each frame's nearest operator however
    /// far, and requests apply their own thresholds afterwards.
    fn search_batch(&self, probes: &[T], k: usize) -> Result<Vec<Vec<Match>>, BackendError>;

    /// For each probe, its smallest distance to a template of `label`
    /// (None when the label has no templates).
    fn distances_to_label(
        &self,
        probes: &[T],
        label: i32,
    ) -> Result<Vec<Option<f64>>, BackendError>;

    /// Templates held.
    fn template_count(&self) -> usize;
}

/// The matcher of the gallery's recogniser (`--recogniser`): a replica
/// holds the templates of that one kind in memory; the store keeps the
/// others (see [`crate::gallery`]).
#[derive(Clone)]
pub enum ActiveBackend {
    /// LBPH on the configured backend (CPU or CUDA).
    Lbph(Arc<dyn MatchBackend>),
    /// dlib embeddings, on the CPU.
    Dlib(Arc<dyn MatchBackend<Embedding>>),
}

impl ActiveBackend {
    /// The backend's name for logs, metrics and GalleryStatus.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Lbph(b) => b.name(),
            Self::Dlib(b) => b.name(),
        }
    }

    pub fn template_count(&self) -> usize {
        match self {
            Self::Lbph(b) => b.template_count(),
            Self::Dlib(b) => b.template_count(),
        }
    }

    pub fn remove_label(&self, label: i32) {
        match self {
            Self::Lbph(b) => b.remove_label(label),
            Self::Dlib(b) => b.remove_label(label),
        }
    }

    /// See [`MatchBackend::distances_to_label`]; a probe of another kind
    /// is an error.
    pub fn distances_to_label(
        &self,
        probes: Vec<AnyTemplate>,
        label: i32,
    ) -> Result<Vec<Option<f64>>, BackendError> {
        match self {
            Self::Lbph(b) => {
                let probes: Vec<Template> = probes
                    .into_iter()
                    .map(AnyTemplate::into_lbph)
                    .collect::<Result<_, _>>()?;
                b.distances_to_label(&probes, label)
            }
            Self::Dlib(b) => {
                let probes: Vec<Embedding> = probes
                    .into_iter()
                    .map(AnyTemplate::into_dlib)
                    .collect::<Result<_, _>>()?;
                b.distances_to_label(&probes, label)
            }
        }
    }
}

/// Builds the configured backend for `kind`. dlib embeddings are matched
/// on the CPU whatever the choice: the CUDA backend matches LBPH only
/// ([`Config::validate`](crate::Config::validate) refuses `--backend cuda`
/// with dlib, and `auto` means the CPU for it).
pub fn create_for(
    kind: Kind,
    choice: BackendChoice,
    params: LbphParams,
) -> Result<ActiveBackend, BackendError> {
    match kind {
        Kind::Lbph => create(choice, params).map(ActiveBackend::Lbph),
        Kind::Dlib => {
            if choice == BackendChoice::Auto {
                tracing::info!(backend = "cpu", "backend auto: dlib embeddings are matched on the CPU (the CUDA backend matches lbph only)");
            }
            Ok(ActiveBackend::Dlib(Arc::new(EmbeddingBackend::new())))
        }
    }
}

/// Builds the configured LBPH backend.
///
/// `Cuda` and `Auto` with a GPU give the CUDA backend wrapped in a
/// [`FallbackBackend`], so that a GPU failing at run time (or a gallery
/// outgrowing its memory) moves matching to the CPU instead of failing
/// requests.
pub fn create(
    choice: BackendChoice,
    params: LbphParams,
) -> Result<Arc<dyn MatchBackend>, BackendError> {
    match choice {
        BackendChoice::Cpu => Ok(Arc::new(CpuBackend::new(params))),
        BackendChoice::Cuda => {
            let gpu = create_cuda(params)?;
            Ok(Arc::new(FallbackBackend::new(gpu, params)))
        }
        BackendChoice::Auto => match create_cuda(params) {
            Ok(gpu) => {
                tracing::info!(backend = gpu.name(), "backend auto: a GPU initialised");
                Ok(Arc::new(FallbackBackend::new(gpu, params)))
            }
            Err(e) => {
                tracing::info!(backend = "cpu", reason = %e, "backend auto: no usable GPU, matching on the CPU");
                Ok(Arc::new(CpuBackend::new(params)))
            }
        },
    }
}

#[cfg(feature = "cuda")]
fn create_cuda(params: LbphParams) -> Result<Box<dyn MatchBackend>, BackendError> {
    let gpu = CudaBackend::new(params)?;
    tracing::info!(device = %gpu.device_info(), "CUDA backend ready");
    Ok(Box::new(gpu))
}

#[cfg(not(feature = "cuda"))]
fn create_cuda(_: LbphParams) -> Result<Box<dyn MatchBackend>, BackendError> {
    Err(BackendError::Unavailable {
        backend: "cuda",
        reason:
            "this build has no CUDA support (build with `--features cuda`, or use the -cuda image)"
                .into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_cpu() {
        let cpu = create(BackendChoice::Cpu, LbphParams::default()).unwrap();
        assert_eq!(cpu.name(), "cpu");
    }

    /// Without the feature, `cuda` is a start-up error naming the reason and
    /// `auto` is the CPU. With it, both depend on the machine: where a GPU
    /// initialises they give the CUDA backend, elsewhere `cuda` names why not
    /// and `auto` still gives the CPU.
    #[test]
    fn auto_is_cuda_only_where_a_gpu_initialises() {
        let auto = create(BackendChoice::Auto, LbphParams::default()).unwrap();
        match create(BackendChoice::Cuda, LbphParams::default()) {
            Ok(cuda) => {
                assert_eq!(cuda.name(), "cuda");
                assert_eq!(auto.name(), "cuda");
            }
            Err(err) => {
                assert!(
                    matches!(
                        err,
                        BackendError::Unavailable {
                            backend: "cuda",
                            ..
                        }
                    ),
                    "{err:?}"
                );
                assert!(
                    err.to_string().contains("cuda backend is not available: "),
                    "{err}"
                );
                if !cfg!(feature = "cuda") {
                    assert!(err.to_string().contains("--features cuda"), "{err}");
                }
                assert_eq!(auto.name(), "cpu");
            }
        }
    }
}
