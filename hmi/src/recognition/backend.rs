//! Where a burst is decided. The worker hands a `Backend` the whole burst
//! (the face crops of consecutive frames) and takes its decision as it is:
//! the Local backend applies `vision::burst`'s rule in process, the Offload
//! one (`offload.rs`) sends the burst in one call and uses the service's
//! decision (the service applies the same rule), and the fallback one
//! (`fallback.rs`) asks the service under a deadline and decides locally
//! when it does not answer. One decision point per burst, whoever answers.

use std::time::Duration;

use kubevision_offload_client::ClientError;
use vision::burst::{decide, BurstDecision, BurstRule};
use vision::lbph::{Gallery, LbphParams, Match, Template};
use vision::GrayImage;

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("recogniser: {0}")]
    Vision(#[from] vision::Error),
    #[error("stored template of {personnel_no} is unreadable: {source}")]
    BadTemplate {
        personnel_no: String,
        source: vision::Error,
    },
    #[error(transparent)]
    Offload(#[from] ClientError),
    #[error("the offload service did not answer within {0:?}")]
    Deadline(Duration),
    #[error("cannot start the offload runtime: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Settings(#[from] crate::settings::SettingsError),
    #[error("a face crop is {width}x{height}, not the normalised 92x112")]
    CropSize { width: u32, height: u32 },
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

/// A backend's decision on one burst.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The personnel number the burst was accepted for; `None`: nobody
    /// (too few usable frames, disagreement, too far, not enrolled).
    pub accepted: Option<String>,
    /// The median distance behind the decision; infinite when there is none.
    pub distance: f64,
}

impl Decision {
    pub fn nobody() -> Decision {
        Decision {
            accepted: None,
            distance: f64::INFINITY,
        }
    }
}

pub trait Backend: Send {
    /// Who decided the last burst: shown on the badge and written to the audit log.
    fn name(&self) -> &'static str;
    /// Replaces the enrolled templates (`Template::to_bytes`, by personnel
    /// number); a backend that matches elsewhere ignores them.
    fn set_gallery(&mut self, entries: &[(String, Vec<u8>)]) -> Result<(), BackendError>;
    /// 1:N: whom the burst shows, if anyone.
    fn identify(&mut self, burst: &[GrayImage], rule: &BurstRule)
        -> Result<Decision, BackendError>;
    /// 1:1: whether the burst shows `personnel_no`.
    fn verify(
        &mut self,
        burst: &[GrayImage],
        personnel_no: &str,
        rule: &BurstRule,
    ) -> Result<Decision, BackendError>;
}

pub struct LocalBackend {
    params: LbphParams,
    gallery: Gallery,
    /// The gallery's labels are indexes into this.
    personnel_nos: Vec<String>,
}

impl LocalBackend {
    pub fn new(params: LbphParams) -> Self {
        LocalBackend {
            gallery: Gallery::new(params),
            params,
            personnel_nos: Vec::new(),
        }
    }

    fn label_of(&self, personnel_no: &str) -> Option<i32> {
        self.personnel_nos
            .iter()
            .position(|p| p == personnel_no)
            .map(|i| i as i32)
    }

    fn decision(&self, decision: BurstDecision) -> Decision {
        match decision {
            BurstDecision::Accepted {
                label, distance, ..
            } => Decision {
                accepted: self.personnel_nos.get(label as usize).cloned(),
                distance,
            },
            BurstDecision::NotRecognised { distance, .. } => Decision {
                accepted: None,
                distance,
            },
            BurstDecision::TooFewFrames { .. } | BurstDecision::Disagreement { .. } => {
                Decision::nobody()
            }
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

    fn set_gallery(&mut self, entries: &[(String, Vec<u8>)]) -> Result<(), BackendError> {
        let mut gallery = Gallery::new(self.params);
        let mut personnel_nos: Vec<String> = Vec::new();
        for (personnel_no, bytes) in entries {
            let template =
                Template::from_bytes(bytes).map_err(|source| BackendError::BadTemplate {
                    personnel_no: personnel_no.clone(),
                    source,
                })?;
            let label = match personnel_nos.iter().position(|p| p == personnel_no) {
                Some(i) => i,
                None => {
                    personnel_nos.push(personnel_no.clone());
                    personnel_nos.len() - 1
                }
            };
            gallery.add(label as i32, template)?;
        }
        self.gallery = gallery;
        self.personnel_nos = personnel_nos;
        Ok(())
    }

    fn identify(
        &mut self,
        burst: &[GrayImage],
        rule: &BurstRule,
    ) -> Result<Decision, BackendError> {
        let mut nearest = Vec::with_capacity(burst.len());
        for crop in burst {
            let probe = Template::extract(&self.params, crop)?;
            nearest.push(
                self.gallery
                    .search(&probe, 1, f64::INFINITY)?
                    .into_iter()
                    .next(),
            );
        }
        Ok(self.decision(decide(rule, &nearest)))
    }

    fn verify(
        &mut self,
        burst: &[GrayImage],
        personnel_no: &str,
        rule: &BurstRule,
    ) -> Result<Decision, BackendError> {
        let Some(label) = self.label_of(personnel_no) else {
            return Ok(Decision::nobody());
        };
        let mut distances = Vec::with_capacity(burst.len());
        for crop in burst {
            let probe = Template::extract(&self.params, crop)?;
            let all = self.gallery.all_distances(&probe)?;
            let d = self
                .gallery
                .labels()
                .iter()
                .zip(all)
                .filter(|(l, _)| **l == label)
                .map(|(_, d)| d)
                .min_by(f64::total_cmp);
            distances.push(d.map(|distance| Match { label, distance }));
        }
        Ok(self.decision(decide(rule, &distances)))
    }
}
