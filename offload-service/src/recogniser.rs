//! The recognisers this service makes templates of, and the one its
//! gallery matches with (`--recogniser`).
//!
//! A replica matches with one recogniser: `lbph` (the default) or `dlib`.
//! It makes templates of every recogniser it can run, though: an enrollment
//! from frames stores an LBPH template and, where dlib's model files are
//! installed, a dlib embedding of each face ([`vision::template`], as the
//! kiosk does). So a plant switches recogniser by restarting its replicas
//! with the other flag, without re-enrolling anyone, and a kiosk running
//! either recogniser finds its templates in the sync. The store keeps
//! templates of every kind as blobs; each says its kind by its first four
//! bytes ([`Kind::of_template`]).

use vision::embedding::Embedder;
use vision::lbph::LbphParams;
use vision::recogniser::Kind;
use vision::template::{template_of_face, templates_of_face, AnyTemplate, EmbedderPool};

use crate::frames::Face;

/// The gallery's recogniser, and the templates this replica can make.
pub struct Recogniser {
    kind: Kind,
    params: LbphParams,
    /// None where dlib's model files are not installed (lbph only).
    embedders: Option<EmbedderPool>,
}

impl Recogniser {
    /// The recogniser `kind`. dlib's models are loaded whenever they are
    /// installed: with `dlib` a missing or damaged file is an error that
    /// names it and `scripts/setup-models`; with `lbph` the replica then
    /// makes LBPH templates only, and says so once.
    pub fn load(kind: Kind, params: LbphParams) -> Result<Self, vision::Error> {
        let embedders = match (kind, EmbedderPool::load()) {
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
        match (self.kind, face) {
            (Kind::Lbph, face) => AnyTemplate::of_crop(&self.params, face.crop()),
            (Kind::Dlib, Face::Crop(_)) => Err(vision::Error::CropForDlib),
            (Kind::Dlib, Face::Camera { frame, face }) => self.with_embedder(|embedder| {
                template_of_face(Kind::Dlib, &self.params, embedder, frame, face)
            }),
        }
    }

    /// A template of every kind this replica can make of `face`: LBPH, and
    /// a dlib embedding where the models are loaded and the face comes from
    /// a camera image (a face crop cannot be aligned by dlib).
    pub fn every_template(&self, face: &Face) -> Result<Vec<AnyTemplate>, vision::Error> {
        match face {
            Face::Crop(crop) => Ok(vec![AnyTemplate::of_crop(&self.params, crop)?]),
            Face::Camera { frame, face } => self
                .with_embedder(|embedder| templates_of_face(&self.params, embedder, frame, face)),
        }
    }

    /// Runs `f` with an embedder of the pool, or with none where dlib's
    /// models are not loaded.
    fn with_embedder<R>(
        &self,
        f: impl FnOnce(Option<&Embedder>) -> Result<R, vision::Error>,
    ) -> Result<R, vision::Error> {
        match &self.embedders {
            Some(pool) => pool.with(|embedder| f(Some(embedder))),
            None => f(None),
        }
    }
}
