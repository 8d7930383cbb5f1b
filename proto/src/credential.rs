//! What `Credential.phc` may hold: an Argon2id PHC string whose cost is
//! bounded both ways. The offload service checks every hash it receives
//! with [`check_phc`], and the kiosk every hash it takes from the plant
//! gallery, so that both follow one rule:
//!
//! * not cheaper than the kiosk's own hashes (argon2's defaults, OWASP's
//!   minimum: 19 MiB, 2 passes), which would make a copied hash fast to
//!   guess offline (`m=8,t=1` is about a microsecond a guess);
//! * not dearer than a line PC can afford to verify at sign-in (256 MiB,
//!   16 passes, 8 lanes), which would let one hash stall a kiosk
//!   (`m=4G,t=4G` never finishes).

use std::fmt;

use argon2::password_hash::PasswordHash;

/// Longest PHC string, in bytes (Argon2id's are about 100).
pub const MAX_PHC_BYTES: usize = 256;
/// Memory, KiB: m.
pub const MIN_MEMORY_KIB: u32 = 19 * 1024;
pub const MAX_MEMORY_KIB: u32 = 256 * 1024;
/// Passes: t.
pub const MIN_PASSES: u32 = 2;
pub const MAX_PASSES: u32 = 16;
/// Lanes: p.
pub const MIN_LANES: u32 = 1;
pub const MAX_LANES: u32 = 8;
/// Salt and hash lengths, in bytes (the salt's minimum is the one RFC 9106
/// recommends against; 16 is what kiosks generate).
pub const MIN_SALT_BYTES: usize = 8;
pub const MAX_SALT_BYTES: usize = 64;
pub const MIN_HASH_BYTES: usize = 16;
pub const MAX_HASH_BYTES: usize = 64;
/// Argon2 version 1.3, the only one current libraries write.
pub const VERSION: u32 = 0x13;

/// Why a PHC string is refused. [`field`](Self::field) names the part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhcError {
    /// Longer than [`MAX_PHC_BYTES`], or not printable ASCII.
    Shape(String),
    /// Not a PHC string at all.
    Syntax(String),
    /// Another algorithm than argon2id.
    Algorithm(String),
    /// A version other than v=19, or none.
    Version(Option<u32>),
    /// A cost parameter (m, t or p) missing, unreadable or out of bounds.
    Cost {
        field: &'static str,
        what: &'static str,
        value: Option<u64>,
        min: u64,
        max: u64,
    },
    /// A parameter this rule does not know (keyid, data, …).
    UnknownParam(String),
    /// Salt or hash missing or of the wrong length.
    Length {
        field: &'static str,
        value: Option<usize>,
        min: usize,
        max: usize,
    },
}

impl PhcError {
    /// The part of the PHC string at fault: "phc", "algorithm", "v", "m",
    /// "t", "p", "salt", "hash" or the unknown parameter's name.
    pub fn field(&self) -> &str {
        match self {
            PhcError::Shape(_) | PhcError::Syntax(_) => "phc",
            PhcError::Algorithm(_) => "algorithm",
            PhcError::Version(_) => "v",
            PhcError::Cost { field, .. } | PhcError::Length { field, .. } => field,
            PhcError::UnknownParam(name) => name,
        }
    }
}

impl fmt::Display for PhcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PhcError::Shape(why) => write!(f, "not an Argon2id PHC string: {why}"),
            PhcError::Syntax(why) => write!(f, "not a PHC string: {why}"),
            PhcError::Algorithm(alg) => {
                write!(f, "algorithm {alg:?}: only argon2id is accepted")
            }
            PhcError::Version(v) => match v {
                Some(v) => write!(f, "v={v}: only v={VERSION} is accepted"),
                None => write!(f, "v is missing: v={VERSION} is required"),
            },
            PhcError::Cost {
                field,
                what,
                value,
                min,
                max,
            } => match value {
                Some(value) => write!(
                    f,
                    "{field} ({what}) is {value}; between {min} and {max} are accepted"
                ),
                None => write!(
                    f,
                    "{field} ({what}) is missing or not a number; between {min} and {max} are accepted"
                ),
            },
            PhcError::UnknownParam(name) => {
                write!(f, "parameter {name:?} is not accepted (only m, t and p)")
            }
            PhcError::Length {
                field,
                value,
                min,
                max,
            } => match value {
                Some(len) => write!(
                    f,
                    "{field} is {len} bytes; between {min} and {max} are accepted"
                ),
                None => write!(f, "{field} is missing"),
            },
        }
    }
}

impl std::error::Error for PhcError {}

/// An accepted hash: the cost it asks of a verification, and the public id
/// of the pepper it was made with (Argon2's `keyid`; empty for a hash made
/// without one). The pepper itself never travels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedPhc {
    pub memory_kib: u32,
    pub passes: u32,
    pub lanes: u32,
    pub keyid: Vec<u8>,
}

/// Parses a received PHC string and checks it against the bounds above.
pub fn check_phc(phc: &str) -> Result<AcceptedPhc, PhcError> {
    if phc.len() > MAX_PHC_BYTES {
        return Err(PhcError::Shape(format!(
            "{} bytes long; at most {MAX_PHC_BYTES} are accepted",
            phc.len()
        )));
    }
    if !phc.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(PhcError::Shape(
            "it contains characters other than printable ASCII".into(),
        ));
    }
    let parsed = PasswordHash::new(phc).map_err(|e| PhcError::Syntax(e.to_string()))?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(PhcError::Algorithm(parsed.algorithm.as_str().to_owned()));
    }
    if parsed.version != Some(VERSION) {
        return Err(PhcError::Version(parsed.version));
    }
    let (mut m, mut t, mut p) = (None, None, None);
    for (name, value) in parsed.params.iter() {
        let slot = match name.as_str() {
            "m" => &mut m,
            "t" => &mut t,
            "p" => &mut p,
            // Checked by the argon2 crate below (at most 8 bytes).
            "keyid" => continue,
            other => return Err(PhcError::UnknownParam(other.to_owned())),
        };
        // Up to 10 digits: a u64 holds it, and out-of-range shows as such.
        *slot = Some(value.as_str().parse::<u64>().ok());
    }
    let bounded = |field, what, value: Option<Option<u64>>, min: u32, max: u32| {
        let value = value.flatten();
        match value {
            Some(v) if (u64::from(min)..=u64::from(max)).contains(&v) => Ok(v as u32),
            _ => Err(PhcError::Cost {
                field,
                what,
                value,
                min: min.into(),
                max: max.into(),
            }),
        }
    };
    let (memory_kib, passes, lanes) = (
        bounded("m", "memory, KiB", m, MIN_MEMORY_KIB, MAX_MEMORY_KIB)?,
        bounded("t", "passes", t, MIN_PASSES, MAX_PASSES)?,
        bounded("p", "lanes", p, MIN_LANES, MAX_LANES)?,
    );
    let length = |field, len: Option<usize>, min: usize, max: usize| match len {
        Some(len) if (min..=max).contains(&len) => Ok(()),
        value => Err(PhcError::Length {
            field,
            value,
            min,
            max,
        }),
    };
    let mut salt = [0u8; MAX_SALT_BYTES];
    let salt_len = match &parsed.salt {
        None => None,
        Some(s) => {
            Some(
                s.decode_b64(&mut salt)
                    .map(<[u8]>::len)
                    .map_err(|_| PhcError::Length {
                        field: "salt",
                        value: Some(s.len() * 3 / 4),
                        min: MIN_SALT_BYTES,
                        max: MAX_SALT_BYTES,
                    })?,
            )
        }
    };
    length("salt", salt_len, MIN_SALT_BYTES, MAX_SALT_BYTES)?;
    length(
        "hash",
        parsed.hash.as_ref().map(|h| h.len()),
        MIN_HASH_BYTES,
        MAX_HASH_BYTES,
    )?;
    // What the argon2 crate will verify with must accept it too.
    let params = argon2::Params::try_from(&parsed).map_err(|e| PhcError::Syntax(e.to_string()))?;
    Ok(AcceptedPhc {
        memory_kib,
        passes,
        lanes,
        keyid: params.keyid().to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the kiosk writes (argon2's defaults), with an 8-byte salt.
    const GOOD: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";

    fn with(params: &str) -> String {
        format!("$argon2id$v=19${params}$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA")
    }

    #[test]
    fn the_kiosks_own_hashes_pass() {
        assert_eq!(
            check_phc(GOOD),
            Ok(AcceptedPhc {
                memory_kib: 19456,
                passes: 2,
                lanes: 1,
                keyid: Vec::new(),
            })
        );
        // A peppered hash names its pepper by a public 8-byte id.
        let peppered = check_phc(&with("m=19456,t=2,p=1,keyid=AQIDBAUGBwg")).unwrap();
        assert_eq!(peppered.keyid, vec![1, 2, 3, 4, 5, 6, 7, 8]);
        // A 16-byte salt and a 32-byte hash, as argon2's hasher writes them.
        let kiosk = "$argon2id$v=19$m=19456,t=2,p=1$gZiV/M1gPc22ElAH/Jh1Hw$CWOrkoo7oJBQ/iyh7uJ0LO2aLEfrHwTWllSAxT0zRno";
        assert!(check_phc(kiosk).is_ok());
        assert!(check_phc(&with("m=65536,t=3,p=4")).is_ok());
    }

    #[test]
    fn each_bad_part_is_named() {
        let cases: Vec<(String, &str, &str)> = vec![
            (with("m=8,t=1,p=1"), "m", "m (memory, KiB) is 8"),
            (with("m=4294967295,t=4294967295,p=1"), "m", "is 4294967295"),
            (with("m=19456,t=1,p=1"), "t", "t (passes) is 1"),
            (
                with("m=19456,t=4294967295,p=1"),
                "t",
                "t (passes) is 4294967295",
            ),
            (with("m=65536,t=2,p=64"), "p", "p (lanes) is 64"),
            (with("m=19456,p=1"), "t", "missing"),
            (with("m=99999999999,t=2,p=1"), "m", "m (memory, KiB)"),
            (with("m=19456,t=2,p=1,data=abc"), "data", "not accepted"),
            (
                GOOD.replace("argon2id", "argon2i"),
                "algorithm",
                "only argon2id",
            ),
            (GOOD.replace("v=19", "v=16"), "v", "v=16"),
            (GOOD.replace("$v=19", ""), "v", "missing"),
            ("1234".into(), "phc", "not a PHC string"),
            (format!("{GOOD}{}", "A".repeat(300)), "phc", "256"),
            (
                GOOD.replace("c2FsdHNhbHQ", "c2FsdA"),
                "salt",
                "salt is 4 bytes",
            ),
            (
                GOOD.replace("aGFzaGhhc2hoYXNoaGFzaA", "aGFzaGhhc2hoYXNo"),
                "hash",
                "hash is 12 bytes",
            ),
            (
                GOOD.replace("$aGFzaGhhc2hoYXNoaGFzaA", ""),
                "hash",
                "hash is missing",
            ),
        ];
        for (phc, field, words) in cases {
            let err = check_phc(&phc).expect_err(&phc);
            assert_eq!(err.field(), field, "{phc}: {err}");
            assert!(err.to_string().contains(words), "{phc}: {err}");
        }
    }
}
