//! The RPC layer: request checks, admission, metrics and the mapping between
//! protobuf messages and the gallery, frames and matcher underneath.

mod gallery;
mod profile;
mod recognition;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use kubevision_proto::v1::{Frame, TemplateFormat};
use tonic::metadata::MetadataMap;
use tonic::{Code, Request, Response, Status};
use vision::burst::BurstRule;
use vision::lbph::Template;
use vision::{FACE_HEIGHT, FACE_WIDTH};

pub use gallery::GalleryApi;
pub use recognition::RecognitionApi;

use crate::admission::{Admission, Ticket};
use crate::batcher::Batcher;
use crate::config::Secret;
use crate::error::ServiceError;
use crate::frames::{FaceReader, Unusable};
use crate::gallery::OperatorGallery;
use crate::metrics::Metrics;

/// Frames one request may carry.
pub const MAX_FRAMES: usize = 32;
/// Templates one enrollment may carry: a kiosk's whole 50-frame enrollment
/// in one atomic change (16 KiB each, well inside the message size).
pub const MAX_TEMPLATES: usize = 64;
/// Candidates one frame may report.
pub const MAX_CANDIDATES: u32 = 100;
/// Longest operator id or display name, in bytes.
pub const MAX_TEXT_BYTES: usize = 128;

/// Everything the RPC handlers share.
pub struct Core {
    pub gallery: OperatorGallery,
    pub faces: FaceReader,
    pub batcher: Batcher,
    pub admission: Admission,
    pub metrics: Arc<Metrics>,
    pub token: Option<Secret>,
    pub threshold: f64,
    pub burst: BurstRule,
}

/// A frame turned into a probe, or the reason it could not be.
type Probe = Result<Template, Unusable>;

impl Core {
    /// Runs one RPC: token check, admission, the handler, and its metrics.
    async fn handle<Req, Resp, Fut>(
        self: &Arc<Self>,
        method: &'static str,
        request: Request<Req>,
        handler: impl FnOnce(Arc<Self>, Ticket, Req) -> Fut,
    ) -> Result<Response<Resp>, Status>
    where
        Fut: Future<Output = Result<Resp, ServiceError>>,
    {
        let mut observed = Observed {
            metrics: &self.metrics,
            method,
            start: Instant::now(),
            code: None,
        };
        let result = async {
            self.authorize(request.metadata())?;
            let ticket = self.admission.admit()?;
            handler(self.clone(), ticket, request.into_inner()).await
        }
        .await;
        let result = result.map(Response::new).map_err(Status::from);
        observed.code = Some(result.as_ref().map_or_else(Status::code, |_| Code::Ok));
        result
    }

    fn authorize(&self, metadata: &MetadataMap) -> Result<(), ServiceError> {
        let Some(token) = &self.token else {
            return Ok(());
        };
        let sent = metadata
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match sent {
            Some(sent) if constant_time_eq(sent.as_bytes(), token.expose().as_bytes()) => Ok(()),
            _ => Err(ServiceError::Unauthenticated),
        }
    }

    /// Decodes every frame and makes a template of each usable face.
    fn probes(&self, frames: &[Frame]) -> Result<Vec<Probe>, ServiceError> {
        frames
            .iter()
            .enumerate()
            .map(|(index, frame)| match self.faces.face(index, frame)? {
                Ok(crop) => Template::extract(self.gallery.params(), &crop)
                    .map(Ok)
                    .map_err(ServiceError::Template),
                Err(unusable) => Ok(Err(unusable)),
            })
            .collect()
    }

    /// The burst rule for a request: its threshold and frame count, or the server's.
    fn burst_rule(
        &self,
        threshold: Option<f64>,
        min_usable_frames: u32,
        frames: usize,
    ) -> Result<BurstRule, ServiceError> {
        let threshold = match threshold {
            None => self.threshold,
            Some(t) if t.is_finite() && t > 0.0 => t,
            Some(t) => {
                return Err(invalid(format!(
                    "threshold must be a positive number, not {t}"
                )))
            }
        };
        let min_frames = match min_usable_frames as usize {
            0 => self.burst.min_frames.min(frames),
            n if n <= frames => n,
            n => {
                return Err(invalid(format!(
                    "min_usable_frames is {n}, but only {frames} frames were sent"
                )))
            }
        };
        Ok(BurstRule {
            min_frames,
            threshold,
            ..self.burst
        })
    }

    fn template_format(&self) -> TemplateFormat {
        let p = self.gallery.params();
        TemplateFormat {
            radius: p.radius,
            neighbors: p.neighbors,
            grid_x: p.grid_x,
            grid_y: p.grid_y,
            face_width: FACE_WIDTH,
            face_height: FACE_HEIGHT,
        }
    }
}

/// Records an RPC's outcome and latency when dropped; a handler dropped
/// before finishing (its deadline passed, the client went away) counts as
/// CANCELLED.
struct Observed<'a> {
    metrics: &'a Metrics,
    method: &'static str,
    start: Instant,
    code: Option<Code>,
}

impl Drop for Observed<'_> {
    fn drop(&mut self) {
        let code = self.code.unwrap_or(Code::Cancelled);
        self.metrics
            .requests
            .with_label_values(&[self.method, &format!("{code:?}")])
            .inc();
        self.metrics
            .latency
            .with_label_values(&[self.method])
            .observe(self.start.elapsed().as_secs_f64());
    }
}

fn invalid(message: String) -> ServiceError {
    ServiceError::InvalidArgument(message)
}

/// 1 to MAX_FRAMES frames.
fn check_frames(frames: &[Frame]) -> Result<(), ServiceError> {
    match frames.len() {
        0 => Err(invalid("no frames were sent: send 1 to 32 frames".into())),
        n if n > MAX_FRAMES => Err(invalid(format!(
            "{n} frames were sent; at most {MAX_FRAMES} are accepted"
        ))),
        _ => Ok(()),
    }
}

fn check_operator_id(id: &str) -> Result<(), ServiceError> {
    check_text("operator_id", id)
}

/// 1 to MAX_TEXT_BYTES bytes of UTF-8 without control characters: an
/// operator id, a display name.
fn check_text(field: &str, value: &str) -> Result<(), ServiceError> {
    if value.is_empty() {
        return Err(invalid(format!("{field} is empty")));
    }
    if value.len() > MAX_TEXT_BYTES {
        return Err(invalid(format!(
            "{field} is {} bytes long; at most {MAX_TEXT_BYTES} are allowed",
            value.len()
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(format!("{field} contains control characters")));
    }
    Ok(())
}

/// Compares without leaking where the first difference is.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A burst decision in words, for a response's `reason`.
fn explain(decision: &vision::burst::BurstDecision) -> String {
    use vision::burst::BurstDecision as D;
    match decision {
        D::Accepted { .. } => String::new(),
        D::TooFewFrames { usable, needed } => {
            format!("{usable} frame(s) showed a usable face to compare; {needed} are needed")
        }
        D::Disagreement { votes, usable, .. } => {
            format!("the frames disagree: the most common nearest operator has only {votes} of {usable} votes")
        }
        D::NotRecognised {
            distance,
            threshold,
            ..
        } => {
            format!("the nearest match is at distance {distance:.2}, not below the threshold {threshold:.2}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_ids_are_checked() {
        assert!(check_operator_id("4711").is_ok());
        assert!(check_operator_id("Müller-07").is_ok());
        assert!(check_operator_id("").is_err());
        assert!(check_operator_id("a\nb").is_err());
        assert!(check_operator_id(&"x".repeat(129)).is_err());
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
