//! Where a burst is decided. The worker hands a `Backend` the whole burst
//! (the [`Probe`]s of consecutive frames: each face's crop and, when dlib
//! is the active recogniser, its embedding) and takes its decision as it is:
//! the Local backend applies `vision::burst`'s rule in process, the Offload
//! one (`offload.rs`) sends the burst in one call and uses the service's
//! decision (the service applies the same rule), and the fallback one
//! (`fallback.rs`) asks the service under a deadline and decides locally
//! when it does not answer. One decision point per burst, whoever answers.

use std::time::Duration;

use kubevision_offload_client::ClientError;
use vision::burst::{decide, BurstDecision, BurstRule};
use vision::embedding::Embedding;
use vision::gallery::Gallery;
use vision::lbph::LbphParams;
use vision::recogniser::Kind;
use vision::template::AnyTemplate;
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
    #[error("the dlib recogniser is chosen, but this frame has no embedding (are dlib's models installed?)")]
    NoEmbedding,
}

/// One frame's face as the worker hands it to a backend.
#[derive(Debug, Clone)]
pub struct Probe {
    /// The normalised face crop: what lbph matches and the motion check reads.
    pub crop: GrayImage,
    /// dlib's embedding of the face (made from the whole frame), when dlib
    /// is the active recogniser.
    pub embedding: Option<Embedding>,
}

impl Probe {
    /// The embedding, which the dlib recogniser cannot do without.
    pub fn embedding(&self) -> Result<&Embedding, BackendError> {
        self.embedding.as_ref().ok_or(BackendError::NoEmbedding)
    }
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
    /// Replaces the enrolled templates (every kind, by personnel number;
    /// each template's magic says its kind); a backend that matches
    /// elsewhere ignores them.
    fn set_gallery(&mut self, entries: &[(String, Vec<u8>)]) -> Result<(), BackendError>;
    /// 1:N: whom the burst shows, if anyone.
    fn identify(&mut self, burst: &[Probe], rule: &BurstRule) -> Result<Decision, BackendError>;
    /// 1:1: whether the burst shows `personnel_no`.
    fn verify(
        &mut self,
        burst: &[Probe],
        personnel_no: &str,
        rule: &BurstRule,
    ) -> Result<Decision, BackendError>;
}

/// Matches in process, with the gallery of the active recogniser
/// ([`vision::gallery`], as the service's decisions are made of).
pub struct LocalBackend {
    params: LbphParams,
    gallery: Gallery,
}

impl LocalBackend {
    /// Matches with recogniser `kind`: its templates only, from the gallery
    /// of every kind the store holds.
    pub fn new(kind: Kind, params: LbphParams) -> Self {
        LocalBackend {
            gallery: Gallery::new(kind, params),
            params,
        }
    }

    /// The probe's template of the gallery's kind: lbph's from the crop,
    /// dlib's the embedding the worker made.
    fn template(&self, probe: &Probe) -> Result<AnyTemplate, BackendError> {
        Ok(match self.gallery.kind() {
            Kind::Lbph => AnyTemplate::of_crop(&self.params, &probe.crop)?,
            Kind::Dlib => AnyTemplate::Dlib(Box::new(probe.embedding()?.clone())),
        })
    }

    fn decision(&self, decision: BurstDecision) -> Decision {
        match decision {
            BurstDecision::Accepted {
                label, distance, ..
            } => Decision {
                accepted: self.gallery.personnel_no(label).map(str::to_owned),
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

pub const LOCAL: &str = "local";

impl Backend for LocalBackend {
    fn name(&self) -> &'static str {
        LOCAL
    }

    /// Keeps the templates of the active recogniser (by their magic) and
    /// leaves the others: the store holds every kind.
    fn set_gallery(&mut self, entries: &[(String, Vec<u8>)]) -> Result<(), BackendError> {
        let mut gallery = Gallery::new(self.gallery.kind(), self.params);
        for (personnel_no, bytes) in entries {
            gallery.add_encoded(personnel_no, bytes).map_err(|source| {
                BackendError::BadTemplate {
                    personnel_no: personnel_no.clone(),
                    source,
                }
            })?;
        }
        self.gallery = gallery;
        Ok(())
    }

    fn identify(&mut self, burst: &[Probe], rule: &BurstRule) -> Result<Decision, BackendError> {
        let nearest = burst
            .iter()
            .map(|p| Ok(self.gallery.nearest(&self.template(p)?)?))
            .collect::<Result<Vec<_>, BackendError>>()?;
        Ok(self.decision(decide(rule, &nearest)))
    }

    fn verify(
        &mut self,
        burst: &[Probe],
        personnel_no: &str,
        rule: &BurstRule,
    ) -> Result<Decision, BackendError> {
        let Some(label) = self.gallery.label_of(personnel_no) else {
            return Ok(Decision::nobody());
        };
        let distances = burst
            .iter()
            .map(|p| Ok(self.gallery.nearest_of(&self.template(p)?, label)?))
            .collect::<Result<Vec<_>, BackendError>>()?;
        Ok(self.decision(decide(rule, &distances)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use vision::synthetic::{embedding, face_crop as crop};

    fn probe(seed: u32) -> Probe {
        Probe {
            crop: crop(seed),
            embedding: Some(embedding(seed)),
        }
    }

    /// Both kinds of templates for two people, as the store holds them.
    fn gallery() -> Vec<(String, Vec<u8>)> {
        let lbph = |s| {
            AnyTemplate::of_crop(&LbphParams::default(), &crop(s))
                .unwrap()
                .to_bytes()
        };
        vec![
            ("W-1".into(), lbph(1)),
            ("W-1".into(), embedding(1).to_bytes()),
            ("W-2".into(), lbph(2)),
            ("W-2".into(), embedding(2).to_bytes()),
        ]
    }

    #[test]
    fn each_kind_matches_with_its_own_templates_from_a_mixed_gallery() {
        let burst = vec![probe(2); 5];
        // Thresholds in each kind's measure; the synthetic crops share
        // their texture, so lbph's is tight.
        for (kind, threshold) in [(Kind::Lbph, 5.0), (Kind::Dlib, 0.48)] {
            let mut b = LocalBackend::new(kind, LbphParams::default());
            b.set_gallery(&gallery()).unwrap();
            let rule = BurstRule {
                threshold,
                ..Default::default()
            };
            let who = b.identify(&burst, &rule).unwrap();
            assert_eq!(who.accepted.as_deref(), Some("W-2"), "{kind}: {who:?}");
            assert!(who.distance < 1e-3, "{kind}: the same face");
            let not = b.verify(&burst, "W-1", &rule).unwrap();
            assert_eq!(not.accepted, None, "{kind}: {not:?}");
        }
    }

    #[test]
    fn dlib_without_an_embedding_or_an_unknown_template_is_an_error() {
        let mut b = LocalBackend::new(Kind::Dlib, LbphParams::default());
        b.set_gallery(&gallery()).unwrap();
        let bare = Probe {
            crop: crop(1),
            embedding: None,
        };
        let e = b.identify(&[bare], &BurstRule::default()).unwrap_err();
        assert!(matches!(e, BackendError::NoEmbedding), "{e}");
        let e = b
            .set_gallery(&[("W-3".into(), b"junk".to_vec())])
            .unwrap_err()
            .to_string();
        assert!(e.contains("W-3"), "{e}");
    }
}
