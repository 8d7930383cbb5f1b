//! RecognitionService: Identify and Verify.

use std::sync::Arc;

use kubevision_proto::v1::frame_outcome::Status as FrameStatus;
use kubevision_proto::v1::recognition_service_server::RecognitionService;
use kubevision_proto::v1::{
    Candidate, FrameOutcome, IdentifyRequest, IdentifyResponse, VerifyRequest, VerifyResponse,
};
use tonic::{Request, Response, Status};
use vision::burst::{decide, BurstDecision};
use vision::Match;

use super::{
    check_frames, check_operator_id, explain, invalid, Core, Probe, MAX_CANDIDATES,
    MAX_CANDIDATES_TO_KIOSKS,
};
use crate::error::ServiceError;
use crate::frames::Unusable;
use crate::identity::Scope;
use vision::template::AnyTemplate;

pub struct RecognitionApi(pub Arc<Core>);

#[tonic::async_trait]
impl RecognitionService for RecognitionApi {
    async fn identify(
        &self,
        request: Request<IdentifyRequest>,
    ) -> Result<Response<IdentifyResponse>, Status> {
        self.0.handle("Identify", request, identify).await
    }

    async fn verify(
        &self,
        request: Request<VerifyRequest>,
    ) -> Result<Response<VerifyResponse>, Status> {
        self.0.handle("Verify", request, verify).await
    }
}

async fn identify(
    core: Arc<Core>,
    ticket: crate::admission::Ticket,
    req: IdentifyRequest,
) -> Result<IdentifyResponse, ServiceError> {
    check_frames(&req.frames)?;
    let k = match req.max_candidates {
        0 => 1,
        n if n <= MAX_CANDIDATES_TO_KIOSKS => n as usize,
        n if n <= MAX_CANDIDATES => {
            let caller = crate::identity::current();
            match caller.filter(|c| c.may(Scope::Admin)) {
                Some(_) => n as usize,
                None => {
                    return Err(ServiceError::BeyondScope {
                        identity: crate::identity::current()
                            .map_or_else(|| "unknown".to_owned(), |c| c.name.to_string()),
                        what: format!(
                            "ask for {n} candidates a frame; a sign-in needs {MAX_CANDIDATES_TO_KIOSKS} (more would list the personnel numbers near any face)"
                        ),
                    })
                }
            }
        }
        n => {
            return Err(invalid(format!(
                "max_candidates is {n}; at most {MAX_CANDIDATES} are allowed"
            )))
        }
    };
    let rule = core.burst_rule(
        req.threshold,
        req.min_usable_frames,
        req.min_agreement,
        req.frames.len(),
    )?;
    let gallery_version = core.gallery.version();
    let frames = req.frames;
    let probes = ticket
        .run_cancellable({
            let core = core.clone();
            move |cancel| core.probes(&frames, cancel)
        })
        .await??;
    let (usable, templates): (Vec<usize>, Vec<AnyTemplate>) = probes
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.as_ref().ok().map(|t| (i, t.clone())))
        .unzip();
    let mut found = core.batcher.search(templates, k).await?.into_iter();
    let mut nearest: Vec<Vec<Match>> = vec![Vec::new(); probes.len()];
    for i in usable {
        nearest[i] = found.next().unwrap_or_default();
    }

    let decision = decide(
        &rule,
        &nearest
            .iter()
            .map(|m| m.first().copied())
            .collect::<Vec<_>>(),
    );
    let frames = probes
        .iter()
        .zip(&nearest)
        .map(|(probe, matches)| {
            outcome(probe, || {
                matches
                    .iter()
                    .filter(|m| m.distance < rule.threshold)
                    .filter_map(|m| {
                        core.gallery
                            .operator_of(m.label)
                            .map(|id| candidate(&id, m.distance))
                    })
                    .collect()
            })
        })
        .collect();
    let mut response = IdentifyResponse {
        frames,
        gallery_version,
        reason: explain(&decision),
        ..Default::default()
    };
    if let BurstDecision::Accepted {
        label,
        distance,
        votes,
        ..
    } = decision
    {
        match core.gallery.operator_of(label) {
            Some(id) => {
                response.identified = true;
                response.operator_id = id.to_string();
                response.distance = distance;
                response.votes = votes as u32;
            }
            None => response.reason = "the recognised operator was removed meanwhile".into(),
        }
    } else if nearest.iter().all(Vec::is_empty) && probes.iter().any(Result::is_ok) {
        response.reason = "the gallery is empty".into();
    }
    Ok(response)
}

async fn verify(
    core: Arc<Core>,
    ticket: crate::admission::Ticket,
    mut req: VerifyRequest,
) -> Result<VerifyResponse, ServiceError> {
    req.operator_id = check_operator_id(&req.operator_id)?;
    check_frames(&req.frames)?;
    let rule = core.burst_rule(
        req.threshold,
        req.min_usable_frames,
        req.min_agreement,
        req.frames.len(),
    )?;
    let label = core
        .gallery
        .label_of(&req.operator_id)
        .ok_or_else(|| ServiceError::UnknownOperator(req.operator_id.clone()))?;
    let gallery_version = core.gallery.version();
    let frames = req.frames;
    let (probes, distances) = ticket
        .run_cancellable({
            let core = core.clone();
            move |cancel| -> Result<_, ServiceError> {
                let probes = core.probes(&frames, cancel)?;
                let templates: Vec<AnyTemplate> = probes
                    .iter()
                    .filter_map(|p| p.as_ref().ok().cloned())
                    .collect();
                let distances = core
                    .gallery
                    .backend()
                    .distances_to_label(templates, label)?;
                Ok((probes, distances))
            }
        })
        .await??;
    let mut distances = distances.into_iter();
    let per_frame: Vec<Option<Match>> = probes
        .iter()
        .map(|p| {
            p.as_ref()
                .ok()
                .and_then(|_| distances.next().flatten())
                .map(|distance| Match { label, distance })
        })
        .collect();
    let decision = decide(&rule, &per_frame);
    let frames = probes
        .iter()
        .zip(&per_frame)
        .map(|(probe, m)| {
            outcome(probe, || {
                m.iter()
                    .map(|m| candidate(&req.operator_id, m.distance))
                    .collect()
            })
        })
        .collect();
    let mut response = VerifyResponse {
        frames,
        gallery_version,
        reason: explain(&decision),
        ..Default::default()
    };
    match decision {
        BurstDecision::Accepted {
            distance, votes, ..
        } => {
            response.verified = true;
            response.distance = distance;
            response.votes = votes as u32;
        }
        BurstDecision::NotRecognised { distance, .. } => response.distance = distance,
        _ => {}
    }
    Ok(response)
}

fn candidate(operator_id: &str, distance: f64) -> Candidate {
    Candidate {
        operator_id: operator_id.to_owned(),
        distance,
    }
}

/// A frame's outcome; `candidates` is only asked for usable frames.
fn outcome(probe: &Probe, candidates: impl FnOnce() -> Vec<Candidate>) -> FrameOutcome {
    let (status, detail, candidates) = match probe {
        Ok(_) => (FrameStatus::Matched, String::new(), candidates()),
        Err(why @ Unusable::NoFace) => (FrameStatus::NoFace, why.to_string(), Vec::new()),
        Err(why @ Unusable::PoorQuality(_)) => {
            (FrameStatus::PoorQuality, why.to_string(), Vec::new())
        }
    };
    FrameOutcome {
        status: status as i32,
        detail,
        candidates,
    }
}
