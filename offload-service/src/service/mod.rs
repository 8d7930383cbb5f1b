//! The RPC layer: request checks, admission, metrics and the mapping between
//! protobuf messages and the gallery, frames and matcher underneath.

mod gallery;
mod profile;
mod recognition;
mod sign_in;
mod wolf;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use kubevision_proto::lockout::LockoutPolicy;
use kubevision_proto::v1::{Frame, GalleryChange, TemplateFormat};
use tonic::{Code, Request, Response, Status};
use vision::burst::BurstRule;
use vision::lbph::Template;
use vision::{FACE_HEIGHT, FACE_WIDTH};

pub use gallery::GalleryApi;
pub use recognition::RecognitionApi;
pub use sign_in::SignInApi;

use crate::admission::{Admission, Bounded, Cancel, Ticket};
use crate::auth::HeldBytes;
use crate::batcher::Batcher;
use crate::config::Secret;
use crate::error::ServiceError;
use crate::frames::{FaceReader, Unusable};
use crate::gallery::OperatorGallery;
use crate::identity::Caller;
use crate::metrics::Metrics;

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
        super::check_text("display_name", name, super::TextKind::Name)
    }

    /// A profile checked and encoded for the store, as Enroll does.
    pub fn encode_profile(profile: &OperatorProfile) -> Result<Vec<u8>, ServiceError> {
        super::profile::encode(profile)
    }

    /// A stored profile read back, as SyncGallery does.
    pub fn decode_profile(bytes: &[u8]) -> Option<OperatorProfile> {
        super::profile::decode(bytes)
    }
}

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
    pub gallery: Arc<OperatorGallery>,
    pub faces: FaceReader,
    pub batcher: Batcher,
    pub admission: Admission,
    pub metrics: Arc<Metrics>,
    pub token: Option<Secret>,
    pub threshold: f64,
    pub burst: BurstRule,
    /// `--max-wolf-matches`: see [`wolf`].
    pub max_wolf_matches: usize,
    /// `--lockout-*`: the plant-wide lockout rule (see [`sign_in`]).
    pub lockout: LockoutPolicy,
}

/// A frame turned into a probe, or the reason it could not be.
type Probe = Result<Template, Unusable>;

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

    /// Decodes every frame and makes a template of each usable face, after
    /// checking the request's pixel budget from the image headers; stops
    /// between frames once the call is cancelled.
    fn probes(&self, frames: &[Frame], cancel: &Cancel) -> Result<Vec<Probe>, ServiceError> {
        self.faces.check_request(frames)?;
        frames
            .iter()
            .enumerate()
            .map(|(index, frame)| {
                cancel.check()?;
                match self.faces.face(index, frame)? {
                    Ok(crop) => Template::extract(self.gallery.params(), &crop)
                        .map(Ok)
                        .map_err(ServiceError::Template),
                    Err(unusable) => Ok(Err(unusable)),
                }
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
/// why it is refused; callers use the returned form from then on.
fn check_operator_id(id: &str) -> Result<String, ServiceError> {
    check_text("operator_id", id, TextKind::Id)
}

/// What a piece of text is: ids are held to stricter rules than names,
/// since one id that looks like another is a way to impersonate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextKind {
    Id,
    Name,
}

/// The one check for operator ids and display names. Refused, with the
/// reason named: empty, more than MAX_TEXT_BYTES bytes (before and after
/// normalisation), control characters, whitespace at either end or other
/// than single plain spaces inside, zero-width characters, bidirectional
/// controls and any other format character (Unicode category Cf; names may
/// keep the joiners U+200C/U+200D that some scripts need). Ids, besides:
/// private-use or unassigned code points, compatibility forms (fullwidth
/// letters, ligatures: whatever NFKC would change) and letters of more
/// than one script (UTS #39's "highly restrictive" level: one script, or
/// Latin with Han and Japanese kana, with Han and Bopomofo, or with Han
/// and Hangul). Nothing is trimmed silently; what is accepted comes back
/// in Unicode NFC, the form stored and compared.
fn check_text(field: &str, value: &str, kind: TextKind) -> Result<String, ServiceError> {
    use unicode_general_category::{get_general_category, GeneralCategory as G};
    use unicode_normalization::UnicodeNormalization;

    if value.is_empty() {
        return Err(invalid(format!("{field} is empty")));
    }
    let too_long = |len: usize| {
        invalid(format!(
            "{field} is {len} bytes long; at most {MAX_TEXT_BYTES} are allowed"
        ))
    };
    if value.len() > MAX_TEXT_BYTES {
        return Err(too_long(value.len()));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(format!("{field} contains control characters")));
    }
    if value.chars().all(char::is_whitespace) {
        return Err(invalid(format!("{field} is only whitespace")));
    }
    if value.starts_with(char::is_whitespace) || value.ends_with(char::is_whitespace) {
        return Err(invalid(format!(
            "{field} begins or ends with whitespace; send it without"
        )));
    }
    if let Some(c) = value.chars().find(|&c| c.is_whitespace() && c != ' ') {
        return Err(invalid(format!(
            "{field} contains the whitespace character {}; only plain spaces (U+0020) are allowed",
            code_point(c)
        )));
    }
    if value.contains("  ") {
        return Err(invalid(format!("{field} contains two spaces in a row")));
    }
    for c in value.chars() {
        let joiner = matches!(c, '\u{200C}' | '\u{200D}');
        let what = match c {
            '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}'
                if !(joiner && kind == TextKind::Name) =>
            {
                "the invisible (zero-width) character"
            }
            '\u{202A}'..='\u{202E}'
            | '\u{2066}'..='\u{2069}'
            | '\u{200E}'
            | '\u{200F}'
            | '\u{061C}' => "the bidirectional control",
            _ if joiner && kind == TextKind::Name => continue,
            _ => match get_general_category(c) {
                G::Format => "the invisible format character",
                G::PrivateUse | G::Unassigned | G::Surrogate if kind == TextKind::Id => {
                    "the private-use or unassigned code point"
                }
                _ => continue,
            },
        };
        return Err(invalid(format!(
            "{field} contains {what} {}, which would make it look like another",
            code_point(c)
        )));
    }
    let nfc: String = value.nfc().collect();
    if nfc.len() > MAX_TEXT_BYTES {
        return Err(too_long(nfc.len()));
    }
    if kind == TextKind::Id {
        if let Some(c) = nfc.chars().find(|&c| {
            let mut buf = [0u8; 4];
            let one: &str = c.encode_utf8(&mut buf);
            !one.nfkc().eq(one.chars())
        }) {
            let plain: String = c.to_string().nfkc().collect();
            return Err(invalid(format!(
                "{field} contains the compatibility character {} (a variant of {plain:?}); use the plain form",
                code_point(c)
            )));
        }
        check_single_script(field, &nfc)?;
    }
    Ok(nfc)
}

/// UTS #39's "highly restrictive" level: the letters of an id come from
/// one script, or from Latin with Han and the Japanese kana, with Han and
/// Bopomofo, or with Han and Hangul. Digits and punctuation (script Common)
/// and combining marks (Inherited) go with anything.
fn check_single_script(field: &str, value: &str) -> Result<(), ServiceError> {
    use unicode_script::{Script as S, UnicodeScript};
    let mut scripts: Vec<S> = Vec::new();
    for c in value.chars() {
        let script = c.script();
        if !matches!(script, S::Common | S::Inherited) && !scripts.contains(&script) {
            scripts.push(script);
        }
    }
    const ALLOWED: [&[S]; 3] = [
        &[S::Latin, S::Han, S::Hiragana, S::Katakana],
        &[S::Latin, S::Han, S::Bopomofo],
        &[S::Latin, S::Han, S::Hangul],
    ];
    if scripts.len() <= 1
        || ALLOWED
            .iter()
            .any(|set| scripts.iter().all(|s| set.contains(s)))
    {
        return Ok(());
    }
    let names: Vec<&str> = scripts.iter().map(|s| s.full_name()).collect();
    Err(invalid(format!(
        "{field} mixes the scripts {}, so it could pass for another id; use one script",
        names.join(", ")
    )))
}

/// `U+200B` for messages.
fn code_point(c: char) -> String {
    format!("U+{:04X}", c as u32)
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

    #[test]
    fn operator_ids_are_checked() {
        assert!(check_operator_id("4711").is_ok());
        assert!(check_operator_id("Müller-07").is_ok());
        assert!(check_operator_id("").is_err());
        assert!(check_operator_id("a\nb").is_err());
        assert!(check_operator_id(&"x".repeat(129)).is_err());
    }

    /// Each confusable id is refused with its reason named.
    #[test]
    fn confusable_ids_are_refused_with_the_reason() {
        let cases = [
            (" ", "only whitespace"),
            ("\u{3000}", "only whitespace"),
            (" 4711", "begins or ends with whitespace"),
            ("4711 ", "begins or ends with whitespace"),
            ("47\u{00A0}11", "U+00A0"),
            ("47  11", "two spaces"),
            ("47\u{200B}11", "invisible (zero-width) character U+200B"),
            ("47\u{200C}11", "U+200C"),
            ("47\u{200D}11", "U+200D"),
            ("47\u{2060}11", "U+2060"),
            ("\u{FEFF}4711", "U+FEFF"),
            ("\u{202E}1174", "bidirectional control U+202E"),
            ("47\u{2066}11\u{2069}", "bidirectional control U+2066"),
            ("47\u{200F}11", "bidirectional control U+200F"),
            ("47\u{00AD}11", "format character U+00AD"),
            ("47\u{E000}11", "private-use or unassigned"),
            ("\u{FF4F}rl-01", "compatibility character U+FF4F"),
            ("\u{FB01}sher", "compatibility character U+FB01"),
            ("p\u{0430}ypal", "mixes the scripts Latin, Cyrillic"),
            ("orl-\u{03BF}1", "mixes the scripts Latin, Greek"),
        ];
        for (id, reason) in cases {
            let err = check_operator_id(id).expect_err(id).to_string();
            assert!(err.contains(reason), "{id:?}: {err}");
            assert!(err.starts_with("operator_id"), "{id:?}: {err}");
        }
    }

    #[test]
    fn ids_come_back_in_nfc_and_legitimate_scripts_pass() {
        // "Müller" with a combining diaeresis is the same id as with "ü".
        assert_eq!(
            check_operator_id("Mu\u{0308}ller").unwrap(),
            "M\u{00FC}ller"
        );
        assert_eq!(check_operator_id("M\u{00FC}ller").unwrap(), "M\u{00FC}ller");
        for id in [
            "Anna Weber",
            "Łukasz-3",
            "Иван-07",
            "山田太郎",
            "やまだ-タロウ",
            "Kim 김민준",
            "王小明 A7",
            "Δημήτρης",
        ] {
            assert_eq!(check_operator_id(id).unwrap(), id, "{id}");
        }
    }

    #[test]
    fn names_may_keep_joiners_but_not_bidi_controls() {
        // Persian names need the zero-width non-joiner.
        assert!(check_text("name", "\u{0645}\u{06CC}\u{200C}\u{0631}", TextKind::Name).is_ok());
        assert!(check_text("name", "Ada \u{202E}rebeW", TextKind::Name).is_err());
        assert!(check_text("name", "Ada\u{200B}", TextKind::Name).is_err());
        assert!(check_text("name", " Ada", TextKind::Name).is_err());
        // Names are not held to one script.
        assert!(check_text("name", "Ada (Ада)", TextKind::Name).is_ok());
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
