//! A template of either recogniser, and "every template of this face": the
//! one place where templates are decoded and made, for the kiosk, its store
//! and the offload service alike, so that both sides of the network hold
//! the same templates and give the same answers.
//!
//! - [`AnyTemplate::decode`] reads a stored or sent template of any kind,
//!   checked by its own kind's rules (an LBPH one also against the
//!   gallery's layout); a foreign, garbled or wrong-layout one is a typed
//!   [`Error`] that names the problem.
//! - [`templates_of_face`] makes a template of every kind that can be made
//!   of a face found in a camera frame: LBPH's from the crop and, where
//!   dlib's models are loaded, dlib's embedding from the frame, aligned from
//!   the cascade's box ([`locate`]). [`template_of_face`] makes one kind.
//! - [`EmbedderPool`] shares dlib's models between threads (an [`Embedder`]
//!   is not `Sync`).

use std::path::PathBuf;
use std::sync::Mutex;

use image::GrayImage;

use crate::detect::FaceBox;
use crate::embedding::models::{self, ModelFile};
use crate::embedding::{cascade_to_dlib, DlibFrame, Embedder, Embedding, Located};
use crate::lbph::{Layout, LbphParams, Template};
use crate::pipeline::Face;
use crate::recogniser::Kind;
use crate::Error;

/// A template of either kind (an embedding is boxed: 512 bytes inline
/// would make every LBPH template as large in a list).
#[derive(Debug, Clone, PartialEq)]
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

    /// The LBPH template, or an [`Error::WrongKind`].
    pub fn into_lbph(self) -> Result<Template, Error> {
        match self {
            Self::Lbph(t) => Ok(t),
            other => Err(other.wrong_kind(Kind::Lbph)),
        }
    }

    /// The dlib embedding, or an [`Error::WrongKind`].
    pub fn into_dlib(self) -> Result<Embedding, Error> {
        match self {
            Self::Dlib(e) => Ok(*e),
            other => Err(other.wrong_kind(Kind::Dlib)),
        }
    }

    fn wrong_kind(&self, expected: Kind) -> Error {
        Error::WrongKind {
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

    /// Decodes a template of either kind, checked by its own kind's rules:
    /// [`Error::NotATemplate`] without a magic, [`Error::BadTemplate`] when
    /// garbled, [`Error::ParamsMismatch`] for an LBPH template of another
    /// layout than `params`'.
    pub fn decode(bytes: &[u8], params: &LbphParams) -> Result<Self, Error> {
        match Kind::of_template(bytes) {
            Some(Kind::Lbph) => {
                let t = Template::from_bytes(bytes)?;
                Layout::of(params).check(&t.layout())?;
                Ok(Self::Lbph(t))
            }
            Some(Kind::Dlib) => Embedding::from_bytes(bytes).map(|e| Self::Dlib(Box::new(e))),
            None => Err(Error::NotATemplate),
        }
    }

    /// The LBPH template of a normalised face crop.
    pub fn of_crop(params: &LbphParams, crop: &GrayImage) -> Result<Self, Error> {
        Template::extract(params, crop).map(Self::Lbph)
    }
}

/// The face's landmarks in `frame`, from the cascade's box mapped to the
/// shape of box dlib's landmark model expects: how the kiosk and the
/// service both align a face, so that their embeddings agree.
pub fn locate(embedder: &Embedder, frame: &DlibFrame, face: FaceBox) -> Located {
    embedder.landmarks(frame, cascade_to_dlib(face))
}

/// The template of `kind` of `face`, found in `frame` (its box and the
/// crop cut from it): LBPH's from the crop, dlib's from the frame, which
/// needs `embedder` ([`Error::DlibNotLoaded`] without).
pub fn template_of_face(
    kind: Kind,
    params: &LbphParams,
    embedder: Option<&Embedder>,
    frame: &GrayImage,
    face: &Face,
) -> Result<AnyTemplate, Error> {
    match kind {
        Kind::Lbph => AnyTemplate::of_crop(params, &face.crop),
        Kind::Dlib => {
            let embedder = embedder.ok_or(Error::DlibNotLoaded)?;
            let frame = DlibFrame::new(frame);
            let located = locate(embedder, &frame, face.face);
            let embedding = embedder.embed(&frame, &located)?;
            Ok(AnyTemplate::Dlib(Box::new(embedding)))
        }
    }
}

/// Every template of `face`, found in `frame`, that can be made here: the
/// LBPH template and, with dlib's models (`embedder`), the dlib embedding,
/// in that order. An enrollment stores them all, so that switching
/// recognisers needs no re-enrollment.
pub fn templates_of_face(
    params: &LbphParams,
    embedder: Option<&Embedder>,
    frame: &GrayImage,
    face: &Face,
) -> Result<Vec<AnyTemplate>, Error> {
    let mut made = vec![template_of_face(Kind::Lbph, params, None, frame, face)?];
    if embedder.is_some() {
        made.push(template_of_face(Kind::Dlib, params, embedder, frame, face)?);
    }
    Ok(made)
}

/// dlib's models, one [`Embedder`] per thread that needs one at a time
/// (an embedder is not `Sync`): a small pool grown on demand.
pub struct EmbedderPool {
    encoder: PathBuf,
    landmarks: PathBuf,
    pool: Mutex<Vec<Embedder>>,
}

impl EmbedderPool {
    /// Finds and checks the model files, and loads the first embedder.
    pub fn load() -> Result<Self, Error> {
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
    pub fn with<R>(&self, f: impl FnOnce(&Embedder) -> Result<R, Error>) -> Result<R, Error> {
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

#[cfg(test)]
mod tests {
    use super::*;

    use crate::synthetic::face_crop as crop;

    fn embedding() -> Embedding {
        crate::synthetic::embedding(5)
    }

    #[test]
    fn a_template_of_each_kind_round_trips() {
        let params = LbphParams::default();
        let lbph = AnyTemplate::of_crop(&params, &crop(1)).unwrap();
        let dlib = AnyTemplate::Dlib(Box::new(embedding()));
        for t in [lbph, dlib] {
            let back = AnyTemplate::decode(&t.to_bytes(), &params).unwrap();
            assert_eq!(back.kind(), t.kind());
            assert_eq!(back, t);
            assert_eq!(back.to_bytes(), t.to_bytes());
        }
    }

    #[test]
    fn a_foreign_garbled_or_wrong_layout_template_is_a_typed_error() {
        let params = LbphParams::default();
        let e = AnyTemplate::decode(b"GIF89a, not a template", &params).unwrap_err();
        assert!(matches!(e, Error::NotATemplate), "{e}");
        assert!(e.to_string().contains("not a KubeVision template"), "{e}");
        assert!(matches!(
            AnyTemplate::decode(b"", &params),
            Err(Error::NotATemplate)
        ));

        // Cut short: each kind's own check says what is wrong.
        let lbph = AnyTemplate::of_crop(&params, &crop(2)).unwrap().to_bytes();
        let dlib = embedding().to_bytes();
        for bytes in [&lbph, &dlib] {
            let e = AnyTemplate::decode(&bytes[..bytes.len() - 3], &params).unwrap_err();
            assert!(matches!(e, Error::BadTemplate(_)), "{e}");
        }

        // Made with another grid than the gallery's.
        let other = LbphParams {
            grid_x: 4,
            grid_y: 4,
            ..params
        };
        let e = AnyTemplate::decode(&lbph, &other).unwrap_err();
        assert!(matches!(e, Error::ParamsMismatch { .. }), "{e}");
        assert!(e.to_string().contains("4 × 4 grid"), "{e}");
    }

    #[test]
    fn a_template_asked_for_by_kind_is_refused_as_the_other() {
        let t = AnyTemplate::Dlib(Box::new(embedding()));
        assert!(matches!(
            t.clone().into_lbph(),
            Err(Error::WrongKind {
                expected: Kind::Lbph,
                found: Kind::Dlib
            })
        ));
        assert_eq!(t.into_dlib().unwrap(), embedding());
    }

    #[test]
    fn without_dlib_models_a_face_gives_its_lbph_template_only() {
        let params = LbphParams::default();
        let frame = GrayImage::from_fn(320, 240, |x, y| image::Luma([((x + y) % 251) as u8]));
        let face = Face {
            face: FaceBox {
                x: 100,
                y: 60,
                width: 92,
                height: 112,
            },
            crop: crop(3),
        };
        let made = templates_of_face(&params, None, &frame, &face).unwrap();
        assert_eq!(made, vec![AnyTemplate::of_crop(&params, &crop(3)).unwrap()]);
        let e = template_of_face(Kind::Dlib, &params, None, &frame, &face).unwrap_err();
        assert!(matches!(e, Error::DlibNotLoaded), "{e}");
    }
}
