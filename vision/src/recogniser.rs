//! The two recognisers an installation can run, by name.
//!
//! - `lbph`: Local Binary Pattern Histograms with OpenCV's semantics (the
//!   prototype's, the default): chi-square distance, threshold 80 on ORL.
//! - `dlib`: dlib's ResNet embeddings (the accuracy mode): L2 distance.
//!
//! A template says which kind made it by its first four bytes (`KVT1`,
//! `KVE1`), so a store or a service can refuse one of the wrong kind with
//! a message that says so rather than "malformed".

use std::fmt;
use std::str::FromStr;

use crate::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Kind {
    #[default]
    Lbph,
    Dlib,
}

impl Kind {
    pub const ALL: [Kind; 2] = [Kind::Lbph, Kind::Dlib];

    /// The name used in settings, flags, the proto and the audit log.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Lbph => "lbph",
            Kind::Dlib => "dlib",
        }
    }

    /// The version of the template format (LBPH) or model (dlib) this
    /// build makes; a template of another version is refused.
    pub fn version(self) -> u32 {
        match self {
            Kind::Lbph => 1,
            Kind::Dlib => u32::from(crate::embedding::template::MODEL_VERSION),
        }
    }

    /// The shipped accept threshold on this kind's distance.
    pub fn default_threshold(self) -> f64 {
        match self {
            Kind::Lbph => crate::lbph::DEFAULT_THRESHOLD,
            Kind::Dlib => crate::embedding::DEFAULT_THRESHOLD,
        }
    }

    /// The kind that made an encoded template, by its magic.
    pub fn of_template(bytes: &[u8]) -> Option<Kind> {
        match bytes.get(..4)? {
            m if m == crate::lbph::template::MAGIC => Some(Kind::Lbph),
            m if m == crate::embedding::template::MAGIC => Some(Kind::Dlib),
            _ => None,
        }
    }

    /// Refuses a template of another kind with a message naming both.
    pub fn check_template(self, bytes: &[u8]) -> Result<(), Error> {
        match Kind::of_template(bytes) {
            Some(k) if k == self => Ok(()),
            Some(found) => Err(Error::WrongKind {
                expected: self,
                found,
            }),
            None => Err(Error::NotATemplate),
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Kind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| Error::UnknownKind(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedding::Embedding;

    #[test]
    fn names_parse_back_and_unknown_names_are_refused() {
        for k in Kind::ALL {
            assert_eq!(k.name().parse::<Kind>().unwrap(), k);
        }
        assert_eq!(" DLIB ".parse::<Kind>().unwrap(), Kind::Dlib);
        let e = "resnet".parse::<Kind>().unwrap_err().to_string();
        assert!(
            e.contains("resnet") && e.contains("lbph") && e.contains("dlib"),
            "{e}"
        );
    }

    #[test]
    fn a_template_of_the_other_kind_is_refused_by_name() {
        let dlib = Embedding::new(&[0.01; 128]).unwrap().to_bytes();
        assert_eq!(Kind::of_template(&dlib), Some(Kind::Dlib));
        Kind::Dlib.check_template(&dlib).unwrap();
        let e = Kind::Lbph.check_template(&dlib).unwrap_err().to_string();
        assert!(e.contains("dlib") && e.contains("lbph"), "{e}");
        assert!(matches!(
            Kind::Lbph.check_template(b"xx"),
            Err(Error::NotATemplate)
        ));
    }
}
