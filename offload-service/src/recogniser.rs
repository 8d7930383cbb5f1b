//! The recognisers this service makes templates of, and the one its
//! gallery matches with (`--recogniser`).
//!
//! A replica matches with one recogniser: `lbph` (the default) or `dlib`.
//! It makes templates of every recogniser it can run, though: an enrollment
//! from frames stores an LBPH template and, where dlib's model files are
//! installed, a dlib embedding of each face. So a plant switches recogniser
//! by restarting its replicas with the other flag, without re-enrolling
//! anyone, and a kiosk running either recogniser finds its templates in the
//! sync. The store keeps templates of every kind as blobs; each says its
//! kind by its first four bytes ([`Kind::of_template`]).

use std::path::PathBuf;
use std::sync::Mutex;

use vision::embedding::models::{self, ModelFile};
use vision::embedding::{Alignment, DlibFrame, Embedder, Embedding};
use vision::lbph::{Layout, LbphParams, Template};
use vision::recogniser::Kind;

use crate::frames::Face;

/// A template of either kind (an embedding is boxed: 512 bytes inline
/// would make every LBPH template as large in a list).
#[derive(Debug, Clone)]
pub enum AnyTemplate {
    Lbph(Template),
    Dlib(Box<Embedding>),
}

impl AnyTemplate {
    pub fn kind(&self) -> Kind {
        match self {
            Self::Lbph(_) => Kind::Lbph,
            Self::Dlib(_) => Kind::Dlib,
        }
    }

    /// The LBPH template, or a [`vision::Error::WrongKind`].
    pub fn into_lbph(self) -> Result<Template, vision::Error> {
        match self {
            Self::Lbph(t) => Ok(t),
            other => Err(other.wrong_kind(Kind::Lbph)),
        }
    }

    /// The dlib embedding, or a [`vision::Error::WrongKind`].
    pub fn into_dlib(self) -> Result<Embedding, vision::Error> {
        match self {
            Self::Dlib(e) => Ok(*e),
            other => Err(other.wrong_kind(Kind::Dlib)),
        }
    }

    fn wrong_kind(&self, expected: Kind) -> vision::Error {
        vision::Error::WrongKind {
            expected,
            found: self.kind(),
        }
    }

    /// The encoding stored and synced (`KVT1…` or `KVE1…`).
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Self::Lbph(t) => t.to_bytes(),
            Self::Dlib(e) => e.to_bytes(),
        }
    }

    /// Decodes a template of either kind, checked by its own kind's rules
    /// (an LBPH template also against `params`' layout).
    pub fn decode(bytes: &[u8], params: &LbphParams) -> Result<Self, vision::Error> {
        match Kind::of_template(bytes) {
            Some(Kind::Lbph) => {
                let t = Template::from_bytes(bytes)?;
                Layout::of(params).check(&t.layout())?;
                Ok(Self::Lbph(t))
            }
            Some(Kind::Dlib) => Embedding::from_bytes(bytes).map(|e| Self::Dlib(Box::new(e))),
            None => Err(vision::Error::BadTemplate(
                "not a KubeVision template (no KVT1 or KVE1 header)".into(),
            )),
        }
    }
}

/// dlib's models, one [`Embedder`] per worker that needs one (an embedder
/// is not `Sync`): a small pool grown on demand, as the face detectors are.
struct Embedders {
    encoder: PathBuf,
    landmarks: PathBuf,
    pool: Mutex<Vec<Embedder>>,
}

impl Embedders {
    /// Finds and checks the model files, and loads the first embedder.
    fn load() -> Result<Self, vision::Error> {
        let encoder = models::locate(ModelFile::Encoder)?;
        let landmarks = models::locate(ModelFile::Landmarks)?;
        let first = Embedder::load_from(&encoder, &landmarks)?;
        Ok(Self {
            encoder,
            landmarks,
            pool: Mutex::new(vec![first]),
        })
    }

    /// Runs `f` with an embedder of the pool (a new one when all are busy).
    fn with<R>(
        &self,
        f: impl FnOnce(&Embedder) -> Result<R, vision::Error>,
    ) -> Result<R, vision::Error> {
        let idle = self.pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let embedder = match idle {
            Some(e) => e,
            None => Embedder::load_from(&self.encoder, &self.landmarks)?,
        };
        let result = f(&embedder);
        self.pool
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(embedder);
        result
    }
}

/// The gallery's recogniser, and the templates this replica can make.
pub struct Recogniser {
    kind: Kind,
    params: LbphParams,
    /// None where dlib's model files are not installed (lbph only).
    embedders: Option<Embedders>,
}

impl Recogniser {
    /// The recogniser `kind`. dlib's models are loaded whenever they are
    /// installed: with `dlib` a missing or damaged file is an error that
    /// names it and `scripts/setup-models`; with `lbph` the replica then
    /// makes LBPH templates only, and says so once.
    pub fn load(kind: Kind, params: LbphParams) -> Result<Self, vision::Error> {
        let embedders = match (kind, Embedders::load()) {
            (_, Ok(e)) => Some(e),
            (Kind::Dlib, Err(e)) => return Err(e),
            (Kind::Lbph, Err(e)) => {
                tracing::info!(reason = %e, "dlib's models are not loaded: enrollments make lbph templates only");
                None
            }
        };
        Ok(Self {
            kind,
            params,
            embedders,
        })
    }

    /// A recogniser that makes LBPH templates only (tests, tools).
    pub fn lbph_only(params: LbphParams) -> Self {
        Self {
            kind: Kind::Lbph,
            params,
            embedders: None,
        }
    }

    /// The gallery's recogniser.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The LBPH parameters (the server keeps making LBPH templates).
    pub fn params(&self) -> &LbphParams {
        &self.params
    }

    /// The gallery's kind of template of a face. Only a face from a camera
    /// image has a dlib template (callers refuse crops in dlib mode first).
    pub fn probe(&self, face: &Face) -> Result<AnyTemplate, vision::Error> {
        self.make(self.kind, face)
    }

    /// A template of every kind this replica can make of `face`: LBPH, and
    /// a dlib embedding where the models are loaded and the face comes from
    /// a camera image (a face crop cannot be aligned by dlib).
    pub fn every_template(&self, face: &Face) -> Result<Vec<AnyTemplate>, vision::Error> {
        let mut made = vec![self.make(Kind::Lbph, face)?];
        if self.embedders.is_some() && face.camera.is_some() {
            made.push(self.make(Kind::Dlib, face)?);
        }
        Ok(made)
    }

    fn make(&self, kind: Kind, face: &Face) -> Result<AnyTemplate, vision::Error> {
        match kind {
            Kind::Lbph => Template::extract(&self.params, &face.crop).map(AnyTemplate::Lbph),
            Kind::Dlib => {
                let embedders = self.embedders.as_ref().ok_or_else(|| {
                    vision::Error::BadTemplate("dlib's models are not loaded".into())
                })?;
                let (frame, cascade) = face.camera.as_ref().ok_or_else(|| {
                    vision::Error::BadTemplate(
                        "the dlib recogniser needs whole camera images, not face crops".into(),
                    )
                })?;
                embedders
                    .with(|embedder| {
                        // The cascade's box mapped to dlib's shape: the
                        // kiosk aligns the same way, so its templates and
                        // ours agree.
                        let frame = DlibFrame::new(frame);
                        let b = embedder
                            .face_box(&frame, Alignment::Cascade, Some(*cascade))
                            .ok_or_else(|| {
                                vision::Error::BadTemplate("no face box for dlib".into())
                            })?;
                        embedder.embed(&frame, &embedder.landmarks(&frame, b))
                    })
                    .map(|e| AnyTemplate::Dlib(Box::new(e)))
            }
        }
    }
}
