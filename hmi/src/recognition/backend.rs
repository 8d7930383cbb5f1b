//! Where a face crop is matched. The worker talks to a `Backend`; the
//! Local one runs `vision` in process, an Offload one (the gRPC client)
//! and an Auto one (offload under a deadline, local fallback) plug in here.

use vision::lbph::{Gallery, LbphParams, Match, Template};
use vision::GrayImage;

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("recogniser: {0}")]
    Vision(#[from] vision::Error),
    #[error("stored template of label {label} is unreadable: {source}")]
    BadTemplate { label: i32, source: vision::Error },
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

impl Backend for LocalBackend {
    fn name(&self) -> &'static str {
        "local"
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
