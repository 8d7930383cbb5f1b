//! What `Credential.phc` may hold: an Argon2id PHC string whose cost is
//! bounded both ways. The offload service checks every hash it receives
//! with [`check_phc`], and the kiosk every hash it takes from the plant
//! gallery, so that both follow one rule:
//!
//! * not cheaper than the kiosk's own hashes (argon2's defaults, OWASP's
//!   minimum: 19 MiB, 2 passes), which would make a copied hash fast to
//!   guess offline (`m=8,t=1` is about a microsecond a guess);
//! * not dearer than a line PC verifies within about 100 ms at sign-in
//!   ([`MAX_WORK_KIB_PASSES`]: memory times passes, at most three times the
//!   kiosk's own hashes), which would let one hash stall a kiosk (the
//!   earlier bound, m=256 MiB, t=16, p=8, took about 10 s a verification;
//!   `m=4G,t=4G` never finishes).
//!
//! A hash that crosses between the kiosks and the plant gallery must also
//! be keyed with the plant pepper ([`check_keyed_phc`]): a hash without a
//! `keyid` needs no secret to make, so whoever can write a profile (or a
//! kiosk's database) could otherwise choose a PIN for someone else.

use std::fmt;

use argon2::password_hash::PasswordHash;

/// Longest PHC string, in bytes (Argon2id's are about 100).
pub const MAX_PHC_BYTES: usize = 256;
/// Memory, KiB: m.
pub const MIN_MEMORY_KIB: u32 = 19 * 1024;
pub const MAX_MEMORY_KIB: u32 = 64 * 1024;
/// Passes: t.
pub const MIN_PASSES: u32 = 2;
pub const MAX_PASSES: u32 = 6;
/// Lanes: p (verified one after the other: more lanes do not make a
/// verification cheaper for the kiosk).
pub const MIN_LANES: u32 = 1;
pub const MAX_LANES: u32 = 4;
/// The work of one verification, memory (KiB) times passes: at most three
/// times the kiosk's own hashes (19 MiB, 2 passes), about 100 ms on a line
/// PC (the kiosk's own hashes take about 33 ms a verification: docs/security.md).
pub const MAX_WORK_KIB_PASSES: u64 = 3 * 19 * 1024 * 2;
/// The length of a pepper's public id (`keyid`), in bytes.
pub const KEYID_BYTES: usize = 8;
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
    /// Memory times passes over [`MAX_WORK_KIB_PASSES`]: each within its
    /// bound, together too dear to verify.
    Work { memory_kib: u32, passes: u32 },
    /// A parameter this rule does not know (data, …).
    UnknownParam(String),
    /// No `keyid`: a hash anyone can make without the plant pepper.
    Unkeyed,
    /// Keyed with another pepper than the plant's.
    ForeignKey { found: Vec<u8>, expected: Vec<u8> },
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
    /// "t", "p", "m×t", "keyid", "salt", "hash" or the unknown parameter's
    /// name.
    pub fn field(&self) -> &str {
        match self {
            PhcError::Shape(_) | PhcError::Syntax(_) => "phc",
            PhcError::Algorithm(_) => "algorithm",
            PhcError::Version(_) => "v",
            PhcError::Cost { field, .. } | PhcError::Length { field, .. } => field,
            PhcError::Work { .. } => "m×t",
            PhcError::UnknownParam(name) => name,
            PhcError::Unkeyed | PhcError::ForeignKey { .. } => "keyid",
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
            PhcError::Work { memory_kib, passes } => write!(
                f,
                "m×t (memory times passes) is {memory_kib}×{passes} = {}; at most {MAX_WORK_KIB_PASSES} are accepted (about 100 ms a verification on a line PC)",
                u64::from(*memory_kib) * u64::from(*passes)
            ),
            PhcError::UnknownParam(name) => {
                write!(f, "parameter {name:?} is not accepted (only m, t, p and keyid)")
            }
            PhcError::Unkeyed => write!(
                f,
                "keyid is missing: only hashes keyed with the plant pepper are accepted (a hash without one needs no secret to make)"
            ),
            PhcError::ForeignKey { found, expected } => write!(
                f,
                "keyid is {}, not the plant pepper's {}: only hashes keyed with the plant pepper are accepted",
                hex(found),
                hex(expected)
            ),
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
    if u64::from(memory_kib) * u64::from(passes) > MAX_WORK_KIB_PASSES {
        return Err(PhcError::Work { memory_kib, passes });
    }
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

/// The plant's rule for a hash that crosses between a kiosk and the plant
/// gallery, applied by the offload service to every hash it receives and by
/// the kiosk to every hash it takes from the plant or reads from its own
/// database: [`check_phc`], and keyed with a pepper. `pepper_id`: the
/// plant pepper's id, which the `keyid` must equal; `None` where it is not
/// known (a service started without `--plant-pepper-id`), where any key id
/// is accepted, but never none.
pub fn check_keyed_phc(phc: &str, pepper_id: Option<&[u8]>) -> Result<AcceptedPhc, PhcError> {
    let accepted = check_phc(phc)?;
    if accepted.keyid.is_empty() {
        return Err(PhcError::Unkeyed);
    }
    match pepper_id {
        Some(expected) if expected != accepted.keyid.as_slice() => Err(PhcError::ForeignKey {
            found: accepted.keyid,
            expected: expected.to_vec(),
        }),
        _ => Ok(accepted),
    }
}

/// A key id in hex, as logs and messages show it.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads a key id written in hex ([`KEYID_BYTES`] bytes, 16 digits).
/// Exactly the digits: no sign, no spaces, so that one id has one spelling
/// (`u8::from_str_radix` alone would read `+f` as `0f`).
pub fn parse_keyid(text: &str) -> Option<[u8; KEYID_BYTES]> {
    if text.len() != 2 * KEYID_BYTES || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut id = [0u8; KEYID_BYTES];
    for (i, byte) in id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(id)
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
        assert!(check_phc(&with("m=38912,t=3,p=4")).is_ok());
        assert!(check_phc(&with("m=58368,t=2,p=1")).is_ok());
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
            // Finding 12 of issue 22: the costliest hash the earlier bound
            // accepted, about 10 s a verification on a kiosk.
            (with("m=262144,t=16,p=8"), "m", "m (memory, KiB) is 262144"),
            (with("m=65536,t=6,p=1"), "m×t", "65536×6 = 393216"),
            (with("m=19456,t=16,p=1"), "t", "t (passes) is 16"),
            (with("m=19456,p=1"), "t", "missing"),
            (with("m=99999999999,t=2,p=1"), "m", "m (memory, KiB)"),
            (with("m=19456,t=2,p=1,data=abc"), "data", "not accepted"),
            (with("m=58369,t=2,p=1"), "m×t", "at most 116736"),
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

    #[test]
    fn hashes_between_kiosks_and_the_plant_must_carry_the_plant_pepper() {
        let plant = [1, 2, 3, 4, 5, 6, 7, 8];
        let keyed = with("m=19456,t=2,p=1,keyid=AQIDBAUGBwg");
        assert!(check_keyed_phc(&keyed, Some(&plant)).is_ok());
        assert!(check_keyed_phc(&keyed, None).is_ok());
        // Finding 3 of issue 22: an unkeyed hash, made without any secret.
        let err = check_keyed_phc(GOOD, Some(&plant)).unwrap_err();
        assert_eq!(err, PhcError::Unkeyed);
        assert_eq!(err.field(), "keyid");
        assert!(err.to_string().contains("keyid is missing"), "{err}");
        assert_eq!(check_keyed_phc(GOOD, None), Err(PhcError::Unkeyed));
        // Finding 12: a foreign key id.
        let foreign = with("m=19456,t=2,p=1,keyid=CQkJCQkJCQk");
        let err = check_keyed_phc(&foreign, Some(&plant)).unwrap_err();
        assert_eq!(err.field(), "keyid");
        assert_eq!(
            err.to_string(),
            "keyid is 0909090909090909, not the plant pepper's 0102030405060708: only hashes keyed with the plant pepper are accepted"
        );
        // The cost rule still comes first.
        let dear = with("m=262144,t=16,p=8,keyid=AQIDBAUGBwg");
        assert_eq!(
            check_keyed_phc(&dear, Some(&plant)).unwrap_err().field(),
            "m"
        );
    }

    #[test]
    fn key_ids_read_from_hex() {
        assert_eq!(
            parse_keyid("0102030405060708"),
            Some([1, 2, 3, 4, 5, 6, 7, 8])
        );
        assert_eq!(hex(&[1, 0xab]), "01ab");
        for bad in [
            "",
            "01020304050607",
            "010203040506070809",
            "zz02030405060708",
            "é102030405060708",
            "+1+2030405060708",
            " 0102030405060708",
            "0102030405060708\n",
            "01020304 5060708",
        ] {
            assert_eq!(parse_keyid(bad), None, "{bad}");
        }
    }
}
