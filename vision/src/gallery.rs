//! The enrolled templates of one recogniser, keyed by personnel number, and
//! the searches a burst is decided with: the nearest person to a probe
//! (1:N) and how near a probe comes to one person (1:1).
//!
//! A store keeps templates of every kind; a gallery keeps its own kind's
//! and leaves the others ([`Gallery::add_encoded`]). Its labels, which the
//! [`Match`]es it answers carry, are indexes into the personnel numbers in
//! the order they were first added.

use crate::embedding::EmbeddingGallery;
use crate::lbph::{self, LbphParams};
use crate::recogniser::Kind;
use crate::template::AnyTemplate;
use crate::{Error, Match};

/// The templates of the gallery's recogniser, searchable.
enum Matcher {
    Lbph(lbph::Gallery),
    Dlib(EmbeddingGallery),
}

pub struct Gallery {
    kind: Kind,
    params: LbphParams,
    matcher: Matcher,
    /// The matcher's labels are indexes into this.
    personnel_nos: Vec<String>,
}

impl Gallery {
    /// An empty gallery of recogniser `kind` (`params`: LBPH's layout,
    /// which its templates must have).
    pub fn new(kind: Kind, params: LbphParams) -> Self {
        Self {
            kind,
            params,
            matcher: match kind {
                Kind::Lbph => Matcher::Lbph(lbph::Gallery::new(params)),
                Kind::Dlib => Matcher::Dlib(EmbeddingGallery::new()),
            },
            personnel_nos: Vec::new(),
        }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// How many templates it holds.
    pub fn len(&self) -> usize {
        match &self.matcher {
            Matcher::Lbph(g) => g.len(),
            Matcher::Dlib(g) => g.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds an encoded template of `personnel_no`, of any kind: one of the
    /// gallery's kind is decoded and checked ([`AnyTemplate::decode`]) and
    /// kept (`Ok(true)`); one of another kind is left as it is
    /// (`Ok(false)`); bytes of no kind are [`Error::NotATemplate`].
    pub fn add_encoded(&mut self, personnel_no: &str, bytes: &[u8]) -> Result<bool, Error> {
        match Kind::of_template(bytes) {
            Some(kind) if kind == self.kind => {
                let template = AnyTemplate::decode(bytes, &self.params)?;
                self.add(personnel_no, template).map(|()| true)
            }
            Some(_) => Ok(false),
            None => Err(Error::NotATemplate),
        }
    }

    /// Adds a template of `personnel_no`; it must be of the gallery's kind
    /// ([`Error::WrongKind`]) and, for LBPH, of its layout.
    pub fn add(&mut self, personnel_no: &str, template: AnyTemplate) -> Result<(), Error> {
        let label = match self.label_of(personnel_no) {
            Some(label) => label,
            None => self.personnel_nos.len() as i32,
        };
        match &mut self.matcher {
            Matcher::Lbph(g) => g.add(label, template.into_lbph()?)?,
            Matcher::Dlib(g) => g.add(label, template.into_dlib()?),
        }
        if label as usize == self.personnel_nos.len() {
            self.personnel_nos.push(personnel_no.to_owned());
        }
        Ok(())
    }

    /// The label of `personnel_no`'s templates, if they have any here.
    pub fn label_of(&self, personnel_no: &str) -> Option<i32> {
        self.personnel_nos
            .iter()
            .position(|p| p == personnel_no)
            .map(|i| i as i32)
    }

    /// The personnel number behind a label a search answered with.
    pub fn personnel_no(&self, label: i32) -> Option<&str> {
        usize::try_from(label)
            .ok()
            .and_then(|i| self.personnel_nos.get(i))
            .map(String::as_str)
    }

    /// The nearest enrolled person to `probe`, however far; `None` when
    /// the gallery is empty.
    pub fn nearest(&self, probe: &AnyTemplate) -> Result<Option<Match>, Error> {
        Ok(match (&self.matcher, probe) {
            (Matcher::Lbph(g), AnyTemplate::Lbph(t)) => {
                g.search(t, 1, f64::INFINITY)?.into_iter().next()
            }
            (Matcher::Dlib(g), AnyTemplate::Dlib(e)) => {
                g.search(e, 1, f64::INFINITY).into_iter().next()
            }
            _ => return Err(self.wrong_kind(probe)),
        })
    }

    /// How near `probe` comes to the person labelled `label` (their
    /// nearest template); `None` when they have none here.
    pub fn nearest_of(&self, probe: &AnyTemplate, label: i32) -> Result<Option<Match>, Error> {
        Ok(match (&self.matcher, probe) {
            (Matcher::Lbph(g), AnyTemplate::Lbph(t)) => g
                .labels()
                .iter()
                .zip(g.all_distances(t)?)
                .filter(|(l, _)| **l == label)
                .map(|(_, d)| d)
                .min_by(f64::total_cmp)
                .map(|distance| Match { label, distance }),
            (Matcher::Dlib(g), AnyTemplate::Dlib(e)) => g
                .search(e, g.len(), f64::INFINITY)
                .into_iter()
                .find(|m| m.label == label),
            _ => return Err(self.wrong_kind(probe)),
        })
    }

    fn wrong_kind(&self, probe: &AnyTemplate) -> Error {
        Error::WrongKind {
            expected: self.kind,
            found: probe.kind(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::{embedding, face_crop as crop};

    fn lbph(seed: u32) -> AnyTemplate {
        AnyTemplate::of_crop(&LbphParams::default(), &crop(seed)).unwrap()
    }

    fn dlib(seed: u32) -> AnyTemplate {
        AnyTemplate::Dlib(Box::new(embedding(seed)))
    }

    /// Both kinds of templates of three people, as a store holds them.
    fn stored() -> Vec<(&'static str, Vec<u8>)> {
        let mut all = Vec::new();
        for (who, seed) in [("W-1", 1), ("W-2", 2), ("W-3", 3)] {
            all.push((who, lbph(seed).to_bytes()));
            all.push((who, dlib(seed).to_bytes()));
        }
        all
    }

    fn gallery(kind: Kind) -> Gallery {
        let mut g = Gallery::new(kind, LbphParams::default());
        for (who, bytes) in stored() {
            g.add_encoded(who, &bytes).unwrap();
        }
        g
    }

    #[test]
    fn each_kind_keeps_its_own_templates_of_a_mixed_store() {
        for kind in Kind::ALL {
            let g = gallery(kind);
            assert_eq!((g.kind(), g.len()), (kind, 3), "{kind}");
            assert_eq!(g.label_of("W-2"), Some(1));
            assert_eq!(g.personnel_no(2), Some("W-3"));
            assert_eq!(g.personnel_no(3), None);
            assert_eq!(g.personnel_no(-1), None);
            assert_eq!(g.label_of("W-4"), None);
        }
    }

    /// The answers the kiosk's own search gave (the distances of the lbph
    /// and embedding galleries it was written on).
    #[test]
    fn the_searches_answer_as_the_matchers_beneath_them() {
        let params = LbphParams::default();
        let g = gallery(Kind::Lbph);
        let probe = lbph(2);
        let nearest = g.nearest(&probe).unwrap().unwrap();
        assert_eq!(
            (nearest.label, g.personnel_no(nearest.label)),
            (1, Some("W-2"))
        );
        assert!(nearest.distance < 1e-9, "{nearest:?}");
        let mut plain = lbph::Gallery::new(params);
        for seed in 1..=3 {
            let t = lbph(seed).into_lbph().unwrap();
            plain.add(seed as i32 - 1, t).unwrap();
        }
        let t = probe.clone().into_lbph().unwrap();
        let all = plain.all_distances(&t).unwrap();
        let of_w1 = g.nearest_of(&probe, 0).unwrap().unwrap();
        assert_eq!(of_w1.distance, all[0]);
        assert_eq!(of_w1.label, 0);

        let g = gallery(Kind::Dlib);
        let probe = dlib(3);
        let nearest = g.nearest(&probe).unwrap().unwrap();
        assert_eq!(g.personnel_no(nearest.label), Some("W-3"));
        let of_w1 = g.nearest_of(&probe, 0).unwrap().unwrap();
        assert_eq!(of_w1.distance, embedding(3).distance(&embedding(1)));
        assert_eq!(g.nearest_of(&probe, 7).unwrap(), None);
    }

    #[test]
    fn an_empty_gallery_answers_nobody() {
        let g = Gallery::new(Kind::Dlib, LbphParams::default());
        assert!(g.is_empty());
        assert_eq!(g.nearest(&dlib(1)).unwrap(), None);
        assert_eq!(g.nearest_of(&dlib(1), 0).unwrap(), None);
    }

    #[test]
    fn a_probe_or_template_of_the_other_kind_or_of_none_is_refused() {
        let mut g = gallery(Kind::Lbph);
        assert!(matches!(
            g.nearest(&dlib(1)),
            Err(Error::WrongKind {
                expected: Kind::Lbph,
                found: Kind::Dlib
            })
        ));
        assert!(matches!(
            g.add("W-9", dlib(1)),
            Err(Error::WrongKind { .. })
        ));
        assert_eq!(g.label_of("W-9"), None, "nobody added by a refusal");
        assert!(matches!(
            g.add_encoded("W-9", b"junk"),
            Err(Error::NotATemplate)
        ));
        let other = LbphParams {
            grid_x: 4,
            grid_y: 4,
            ..LbphParams::default()
        };
        let foreign = AnyTemplate::of_crop(&other, &crop(1)).unwrap().to_bytes();
        assert!(matches!(
            g.add_encoded("W-9", &foreign),
            Err(Error::ParamsMismatch { .. })
        ));
        assert_eq!(g.len(), 3);
    }
}
