//! Where a face crop is matched. The worker talks to a `Backend`; the
//! Local one runs `vision` in process, the Offload one asks the offload
//! service (`offload.rs`) and the fallback one (`fallback.rs`) prefers offload under
//! a deadline and falls back to local.

use std::path::PathBuf;
use std::time::Duration;

use kubevision_offload_client::ClientError;
use vision::lbph::{Gallery, LbphParams, Match, Template};
use vision::GrayImage;

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("recogniser: {0}")]
    Vision(#[from] vision::Error),
    #[error("stored template of label {label} is unreadable: {source}")]
    BadTemplate { label: i32, source: vision::Error },
    #[error(transparent)]
    Offload(#[from] ClientError),
    #[error("the offload service did not answer within {0:?}")]
    Deadline(Duration),
    #[error("cannot start the offload runtime: {0}")]
    Runtime(std::io::Error),
    #[error("reading {path}: {source}")]
    TlsFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("kiosk store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("a face crop is {width}x{height}, not the normalised 92x112")]
    CropSize { width: u32, height: u32 },
    #[error("the offload service sent an unusable answer: {0}")]
    BadAnswer(String),
}

impl BackendError {
    /// The service, not the request, failed: local recognition can answer.
    pub fn should_fall_back(&self) -> bool {
        match self {
            BackendError::Offload(e) => e.should_fall_back(),
            BackendError::Deadline(_) => true,
            _ => false,
        }
    }
}

pub trait Backend: Send {
    /// Shown on the badge and written to the audit log.
    fn name(&self) -> &'static str;
    /// Replaces the enrolled templates (label, `Template::to_bytes`).
    fn set_gallery(&mut self, entries: &[(i32, Vec<u8>)]) -> Result<(), BackendError>;
    /// Nearest enrolled person (1:N), whatever the distance.
    fn identify(&mut self, crop: &GrayImage) -> Result<Option<Match>, BackendError>;
    /// Distance to `label`'s nearest template (1:1); `None` if not enrolled.
    fn verify(&mut self, crop: &GrayImage, label: i32) -> Result<Option<f64>, BackendError>;
}

pub struct LocalBackend {
    params: LbphParams,
    gallery: Gallery,
}

impl LocalBackend {
    pub fn new(params: LbphParams) -> Self {
        LocalBackend {
            gallery: Gallery::new(params),
            params,
        }
    }
}

/// Templates for an enrollment, as the store keeps them.
pub fn extract(params: &LbphParams, crop: &GrayImage) -> Result<Vec<u8>, BackendError> {
    Ok(Template::extract(params, crop)?.to_bytes())
}

pub const LOCAL: &str = "local";

impl Backend for LocalBackend {
    fn name(&self) -> &'static str {
        LOCAL
    }

    fn set_gallery(&mut self, entries: &[(i32, Vec<u8>)]) -> Result<(), BackendError> {
        let mut gallery = Gallery::new(self.params);
        for (label, bytes) in entries {
            let template =
                Template::from_bytes(bytes).map_err(|source| BackendError::BadTemplate {
                    label: *label,
                    source,
                })?;
            gallery.add(*label, template)?;
        }
        self.gallery = gallery;
        Ok(())
    }

    fn identify(&mut self, crop: &GrayImage) -> Result<Option<Match>, BackendError> {
        let probe = Template::extract(&self.params, crop)?;
        Ok(self
            .gallery
            .search(&probe, 1, f64::INFINITY)?
            .into_iter()
            .next())
    }

    fn verify(&mut self, crop: &GrayImage, label: i32) -> Result<Option<f64>, BackendError> {
        let probe = Template::extract(&self.params, crop)?;
        let distances = self.gallery.all_distances(&probe)?;
        Ok(self
            .gallery
            .labels()
            .iter()
            .zip(distances)
            .filter(|(l, _)| **l == label)
            .map(|(_, d)| d)
            .min_by(f64::total_cmp))
    }
}
