//! The RPC layer: request checks, admission, metrics and the mapping between
//! protobuf messages and the gallery, frames and matcher underneath.

mod enrol_scope;
mod gallery;
mod profile;
mod recognition;
mod sign_in;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use kubevision_proto::lockout::LockoutPolicy;
use kubevision_proto::text::{check_text, TextKind};
use kubevision_proto::v1::frame::Content;
use kubevision_proto::v1::{Frame, GalleryChange, TemplateFormat};
use tonic::{Code, Request, Response, Status};
use vision::burst::BurstRule;
use vision::recogniser::Kind;
use vision::{FACE_HEIGHT, FACE_WIDTH};

pub use gallery::GalleryApi;
pub use recognition::RecognitionApi;
pub use sign_in::{ReportBound, SignInApi};

use crate::admission::{Admission, Bounded, Cancel, Ticket};
use crate::auth::HeldBytes;
use crate::batcher::ActiveBatcher;
use crate::config::Secret;
use crate::error::ServiceError;
use crate::frames::{Face, FaceReader, FrameError, Unusable};
use crate::gallery::OperatorGallery;
use crate::identity::Caller;
use crate::metrics::Metrics;
use crate::recogniser::Recogniser;
use vision::template::AnyTemplate;

/// The request checks the handlers apply, for the fuzz targets under
/// `fuzz/` (not an API: no stability is promised).
#[doc(hidden)]
pub mod fuzzing {
    use kubevision_proto::v1::OperatorProfile;

    use crate::error::ServiceError;

    /// An operator id as the handlers check and store it (NFC).
    pub fn check_operator_id(id: &str) -> Result<String, ServiceError> {
        super::check_operator_id(id)
    }

    /// A display name as profiles are checked (NFC).
    pub fn check_display_name(name: &str) -> Result<String, ServiceError> {
        Ok(super::check_text(
            "display_name",
            name,
            super::TextKind::Name,
        )?)
    }

    /// A profile checked and encoded for the store, as Enroll does.
    pub fn encode_profile(profile: &OperatorProfile) -> Result<Vec<u8>, ServiceError> {
        super::profile::encode(profile, None)
    }

    /// A stored profile read back, as SyncGallery does.
    pub fn decode_profile(bytes: &[u8]) -> Option<OperatorProfile> {
        super::profile::decode(bytes)
    }
}

/// Frames one request may carry.
pub const MAX_FRAMES: usize = 32;
/// Templates one enrollment may carry: a kiosk's whole 50-frame enrollment,
/// a template of each recogniser a frame, in one atomic change (an LBPH
/// template is 16 KiB, a dlib one 520 bytes: well inside the message size).
pub const MAX_TEMPLATES: usize = 128;
/// Candidates one frame may report to a caller with the `admin` scope.
pub const MAX_CANDIDATES: u32 = 100;
/// Candidates one frame may report to any other caller: the burst rule
/// decides on each frame's nearest operator, which is all a sign-in needs;
/// more would list the personnel numbers near any face (issue 22, finding 5).
pub const MAX_CANDIDATES_TO_KIOSKS: u32 = 1;
/// Longest operator id or display name, in bytes.
pub use kubevision_proto::text::MAX_TEXT_BYTES;

/// Everything the RPC handlers share.
pub struct Core {
    pub gallery: Arc<OperatorGallery>,
    pub faces: FaceReader,
    /// The gallery's recogniser (the gallery's backend is of its kind),
    /// and the templates this replica can make.
    pub recogniser: Recogniser,
    pub batcher: ActiveBatcher,
    pub admission: Admission,
    pub metrics: Arc<Metrics>,
    pub token: Option<Secret>,
    /// The default accept threshold, in the recogniser's measure.
    pub threshold: f64,
    pub burst: BurstRule,
    /// `--lockout-*`: the plant-wide lockout rule (see [`sign_in`]).
    pub lockout: LockoutPolicy,
    /// `--plant-pepper-id`: the key id every received hash must carry
    /// ([`kubevision_proto::credential::check_keyed_phc`]).
    pub plant_pepper_id: Option<[u8; kubevision_proto::credential::KEYID_BYTES]>,
    /// Sign-in reports counted per reporting identity (see [`sign_in`]).
    pub reports: ReportBound,
}

/// A frame turned into a probe (a template of the gallery's recogniser),
/// or the reason it could not be.
type Probe = Result<AnyTemplate, Unusable>;

/// What a frame gave: a face, or the probe template a kiosk made.
enum Sighting {
    Face(Face),
    Template(AnyTemplate),
}

impl Core {
    /// Runs one RPC: token check, readiness, admission, the handler, and
    /// its metrics.
    async fn handle<Req, Resp, Fut>(
        self: &Arc<Self>,
        method: &'static str,
        request: Request<Req>,
        handler: impl FnOnce(Arc<Self>, Ticket, Req) -> Fut,
    ) -> Result<Response<Resp>, Status>
    where
        Fut: Future<Output = Result<Resp, ServiceError>>,
        Resp: 'static,
    {
        self.run(method, request, Pool::Requests, handler)
            .await
            .map(Response::new)
    }

    /// Runs one server-streaming RPC like [`handle`](Self::handle), with
    /// two differences: its slot comes from the streams' own pool, and the
    /// stream it returns is [`Bounded`] by the call's deadline (the client's
    /// `grpc-timeout`, capped by `--sync-timeout-secs`), so that a
    /// stream nobody reads gives its slot back when the deadline passes.
    async fn handle_stream<Req, S, Fut>(
        self: &Arc<Self>,
        method: &'static str,
        request: Request<Req>,
        handler: impl FnOnce(Arc<Self>, Ticket, Req) -> Fut,
    ) -> Result<Response<Bounded<S>>, Status>
    where
        Fut: Future<Output = Result<S, ServiceError>>,
        S: Send + 'static,
    {
        let timeout = self.admission.deadline(request.metadata());
        self.run(method, request, Pool::Streams, handler)
            .await
            .map(|stream| Response::new(Bounded::new(stream, timeout)))
    }

    /// The one request wrapper behind both.
    async fn run<Req, Resp, Fut>(
        self: &Arc<Self>,
        method: &'static str,
        request: Request<Req>,
        pool: Pool,
        handler: impl FnOnce(Arc<Self>, Ticket, Req) -> Fut,
    ) -> Result<Resp, Status>
    where
        Fut: Future<Output = Result<Resp, ServiceError>>,
        Resp: 'static,
    {
        let mut observed = Observed {
            metrics: &self.metrics,
            method,
            start: Instant::now(),
            code: None,
        };
        // The request's bytes stay counted against the decode budget
        // until the handler is done (the message refers to them).
        let _held = request.extensions().get::<HeldBytes>().cloned();
        let result = async {
            let caller = self.authorize(&request)?;
            // An empty or stale copy of the gallery would turn enrolled
            // operators away: not before the first catch-up.
            if !self.gallery.is_caught_up() {
                return Err(ServiceError::NotReady);
            }
            let ticket = match pool {
                Pool::Requests => self.admission.admit()?,
                Pool::Streams => self.admission.admit_stream()?,
            };
            // The handler runs with its caller as `identity::current()`.
            let handler = handler(self.clone(), ticket, request.into_inner());
            let done = crate::identity::scope(caller.clone(), handler).await?;
            log_change(&caller, method, &done);
            Ok(done)
        }
        .await
        .map_err(Status::from);
        observed.code = Some(result.as_ref().map_or_else(Status::code, |_| Code::Ok));
        result
    }

    /// The caller the gate ([`crate::auth`]) identified, and checked the
    /// method's scope of, before the body was read. A request that did not
    /// pass the gate has none and is refused: the check fails closed.
    fn authorize<Req>(&self, request: &Request<Req>) -> Result<Caller, ServiceError> {
        request
            .extensions()
            .get::<Caller>()
            .cloned()
            .ok_or(ServiceError::Unauthenticated)
    }

    /// Decodes every frame and makes a template of the gallery's recogniser
    /// of each usable face (a probe template is checked instead), after
    /// checking the request's pixel budget from the image headers; stops
    /// between frames once the call is cancelled.
    fn probes(&self, frames: &[Frame], cancel: &Cancel) -> Result<Vec<Probe>, ServiceError> {
        self.sightings(frames, cancel, |sighting| match sighting {
            Sighting::Face(face) => self.recogniser.probe(&face).map_err(ServiceError::Template),
            Sighting::Template(t) => Ok(t),
        })
    }

    /// Each frame's face or probe template, handed to `make` as it is read.
    /// The frames are checked as a whole first: the pixel budget, and in
    /// dlib mode that none is a face crop (dlib aligns a face by landmarks
    /// on the whole camera image, which a crop has lost).
    fn sightings<T>(
        &self,
        frames: &[Frame],
        cancel: &Cancel,
        mut make: impl FnMut(Sighting) -> Result<T, ServiceError>,
    ) -> Result<Vec<Result<T, Unusable>>, ServiceError> {
        self.faces.check_request(frames)?;
        let kind = self.recogniser.kind();
        if kind == Kind::Dlib {
            if let Some(index) = frames.iter().position(|f| {
                matches!(
                    f.content,
                    Some(Content::FaceCropImage(_) | Content::RawFaceCrop(_))
                )
            }) {
                return Err(FrameError::CropForDlib { index }.into());
            }
        }
        frames
            .iter()
            .enumerate()
            .map(|(index, frame)| {
                cancel.check()?;
                let sighting = match &frame.content {
                    Some(Content::Template(bytes)) => kind
                        .check_template(bytes)
                        .and_then(|()| AnyTemplate::decode(bytes, self.recogniser.params()))
                        .map(Sighting::Template)
                        .map_err(|source| FrameError::BadTemplate { index, source })?,
                    _ => match self.faces.face(index, frame)? {
                        Ok(face) => Sighting::Face(face),
                        Err(unusable) => return Ok(Err(unusable)),
                    },
                };
                make(sighting).map(Ok)
            })
            .collect()
    }

    /// The burst rule for a request: its threshold, frame count and
    /// agreement share, each the server's where the request has none.
    fn burst_rule(
        &self,
        threshold: Option<f64>,
        min_usable_frames: u32,
        min_agreement: Option<f64>,
        frames: usize,
    ) -> Result<BurstRule, ServiceError> {
        let min_agreement = match min_agreement {
            None => self.burst.min_agreement,
            Some(share) if BurstRule::agreement_in_range(share) => share,
            Some(share) => {
                return Err(invalid(format!(
                    "min_agreement must be more than 0 and at most 1, not {share}"
                )))
            }
        };
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
            min_agreement,
            threshold,
        })
    }

    /// `--plant-pepper-id`, as the credential rule takes it.
    fn pepper_id(&self) -> Option<&[u8]> {
        self.plant_pepper_id.as_ref().map(|id| id.as_slice())
    }

    fn template_format(&self) -> TemplateFormat {
        let p = self.recogniser.params();
        let kind = self.recogniser.kind();
        TemplateFormat {
            radius: p.radius,
            neighbors: p.neighbors,
            grid_x: p.grid_x,
            grid_y: p.grid_y,
            face_width: FACE_WIDTH,
            face_height: FACE_HEIGHT,
            recogniser: kind.name().into(),
            recogniser_version: kind.version(),
        }
    }
}

/// Records a gallery change with the identity that made it.
fn log_change(caller: &Caller, method: &'static str, response: &dyn std::any::Any) {
    if let Some(change) = response.downcast_ref::<GalleryChange>() {
        tracing::info!(
            identity = %caller.name,
            method,
            operator_id = %change.operator_id,
            version = change.gallery_version,
            "gallery changed"
        );
    }
}

/// Which admission slots a call takes.
enum Pool {
    Requests,
    Streams,
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

/// An operator id as this service stores and compares it (Unicode NFC), or
/// why it is refused; callers use the returned form from then on. The rule
/// is [`kubevision_proto::text`]'s, which the kiosk applies too.
fn check_operator_id(id: &str) -> Result<String, ServiceError> {
    Ok(check_text("operator_id", id, TextKind::Id)?)
}

/// Compares without leaking where the first difference is.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
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

    /// The rule itself is tested in `kubevision_proto::text`; here, that
    /// the service answers with its messages, as INVALID_ARGUMENT.
    #[test]
    fn operator_ids_are_checked() {
        assert_eq!(
            check_operator_id("Mu\u{0308}ller").unwrap(),
            "M\u{00FC}ller"
        );
        let err = check_operator_id("p\u{0430}ypal").unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert_eq!(
            err.to_string(),
            "operator_id mixes the scripts Latin, Cyrillic, so it could pass for another id; use one script"
        );
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
