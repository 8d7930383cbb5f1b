//! PINs and passwords: validated, then hashed with Argon2id into PHC
//! strings, keyed with the installation's pepper (Argon2's `secret` input,
//! kept outside the database: `keys.rs`). A hash names its pepper by a
//! public key id (the PHC `keyid` parameter), so that a copy of the
//! database gives nothing to guess against without the pepper (2^256
//! keys), and a hash whose pepper this kiosk lacks is told apart from a
//! wrong PIN.
//!
//! A hash without a `keyid` (one from before the pepper, or one written
//! into the database by someone who can write the file) never verifies:
//! it needs no secret to make, so accepting it would let SQL alone choose
//! anyone's PIN (issue 22, finding 8). Nor does one dearer than the plant's
//! rule allows ([`kubevision_proto::credential`], which also decides what
//! the plant gallery may hand this kiosk).

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::{Algorithm, Argon2, KeyId, Params, ParamsBuilder, Version};

use super::keys::Secrets;
use super::StoreError;

/// Which secret an operator proves; also the `credentials.kind` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecretKind {
    Pin,
    Password,
}

impl SecretKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SecretKind::Pin => "pin",
            SecretKind::Password => "password",
        }
    }

    pub fn parse(s: &str) -> Option<SecretKind> {
        [SecretKind::Pin, SecretKind::Password]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

pub const PIN_LEN: std::ops::RangeInclusive<usize> = 4..=8;
pub const PASSWORD_LEN: std::ops::RangeInclusive<usize> = 8..=128;

/// Rejects secrets that the kiosk must not accept at creation time.
pub fn validate(kind: SecretKind, secret: &str) -> Result<(), StoreError> {
    let len = secret.chars().count();
    let ok = match kind {
        SecretKind::Pin => PIN_LEN.contains(&len) && secret.bytes().all(|b| b.is_ascii_digit()),
        SecretKind::Password => PASSWORD_LEN.contains(&len),
    };
    if ok {
        Ok(())
    } else {
        Err(StoreError::WeakSecret(kind))
    }
}

fn hashing(e: impl Into<crate::HashingError>) -> StoreError {
    StoreError::Hashing(e.into())
}

/// Argon2id v19 with OWASP's minimum memory/time parameters (as before the
/// pepper), keyed with the pepper.
pub(super) fn hash(secret: &str, secrets: &Secrets) -> Result<String, StoreError> {
    hash_at(
        secret,
        secrets,
        Params::DEFAULT_M_COST,
        Params::DEFAULT_T_COST,
        Params::DEFAULT_P_COST,
    )
}

/// [`hash`] at other costs: memory in KiB, passes, lanes (the benchmark of
/// the plant's cap measures what a kiosk pays for the dearest hash it takes).
pub(super) fn hash_at(
    secret: &str,
    secrets: &Secrets,
    m_cost: u32,
    t_cost: u32,
    p_cost: u32,
) -> Result<String, StoreError> {
    let salt = SaltString::generate(&mut OsRng);
    let params = ParamsBuilder::new()
        .m_cost(m_cost)
        .t_cost(t_cost)
        .p_cost(p_cost)
        .keyid(KeyId::new(&secrets.pepper_id()).map_err(hashing)?)
        .build()
        .map_err(hashing)?;
    Argon2::new_with_secret(
        secrets.pepper().bytes(),
        Algorithm::Argon2id,
        Version::V0x13,
        params,
    )
    .map_err(hashing)?
    .hash_password(secret.as_bytes(), &salt)
    .map(|h| h.to_string())
    .map_err(hashing)
}

/// The outcome of checking a secret against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verified {
    No,
    Yes,
    /// Right, against a hash from before the pepper or under a pepper this
    /// kiosk has retired (it adopted the plant's): rehash it.
    YesStale,
}

/// A corrupt PHC string, one without a pepper, one dearer than the plant's
/// rule allows, or one keyed with a pepper this kiosk does not hold, counts
/// as a mismatch (logged with the reason): it must never let anyone in.
pub(super) fn verify(secret: &str, phc: &str, secrets: &Secrets) -> Verified {
    if let Err(why) = kubevision_proto::credential::check_keyed_phc(phc, None) {
        tracing::warn!("a stored PIN or password hash is refused: {why}");
        return Verified::No;
    }
    let Ok(parsed) = PasswordHash::new(phc) else {
        return Verified::No;
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return Verified::No;
    };
    let Some(pepper) = secrets.pepper_by_id(params.keyid()) else {
        return Verified::No;
    };
    let Ok(argon) = Argon2::new_with_secret(
        pepper.bytes(),
        Algorithm::Argon2id,
        Version::V0x13,
        Params::default(),
    ) else {
        return Verified::No;
    };
    match argon.verify_password(secret.as_bytes(), &parsed) {
        Ok(()) if params.keyid() == secrets.pepper_id() => Verified::Yes,
        Ok(()) => Verified::YesStale,
        Err(_) => Verified::No,
    }
}

/// Whether a stored hash is keyed with a pepper (any, not only this kiosk's).
pub(super) fn is_peppered(phc: &str) -> bool {
    PasswordHash::new(phc)
        .ok()
        .and_then(|p| Params::try_from(&p).ok())
        .is_some_and(|p| !p.keyid().is_empty())
}

/// Checks a PHC string that came from elsewhere (the plant-wide gallery)
/// by the plant's rule, the offload service's own: Argon2id, a cost this
/// kiosk can afford to verify, keyed with the plant pepper, which is this
/// kiosk's pepper once registered.
pub(super) fn check_phc(phc: &str, secrets: &Secrets) -> Result<(), String> {
    use kubevision_proto::credential::{check_keyed_phc, PhcError};
    match check_keyed_phc(phc, Some(&secrets.pepper_id())) {
        Ok(_) => Ok(()),
        Err(e @ PhcError::ForeignKey { .. }) => Err(format!(
            "{e}; give every kiosk of the plant the same {}",
            super::keys::PLANT_PEPPER_FILE,
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// Spends the time of one verification on nothing, so that an unknown
/// personnel number answers as slowly as a wrong password.
pub(super) fn verify_nothing(secret: &str, secrets: &Secrets) {
    static DUMMY: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    if let Some(phc) = DUMMY.get_or_init(|| hash("not a real secret", secrets).ok()) {
        // The cost is the same whichever pepper made the dummy.
        let _ = Argon2::default().verify_password(
            secret.as_bytes(),
            &PasswordHash::new(phc).expect("our own hash parses"),
        );
    }
}

/// A hash as the kiosk made them before the pepper (tests and the bench).
#[cfg(test)]
pub(super) fn hash_unpeppered(secret: &str) -> String {
    Argon2::default()
        .hash_password(secret.as_bytes(), &SaltString::generate(&mut OsRng))
        .unwrap()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> (tempfile::TempDir, Secrets) {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = Secrets::load_or_create(&dir.path().join("secrets")).unwrap();
        (dir, s)
    }

    #[test]
    fn hashes_are_argon2id_salted_peppered_and_verify() {
        let (_d, s) = secrets();
        let a = hash("4711", &s).unwrap();
        let b = hash("4711", &s).unwrap();
        assert!(
            a.starts_with("$argon2id$v=19$m=19456,t=2,p=1,keyid="),
            "{a}"
        );
        assert_ne!(a, b, "each hash has its own salt");
        assert!(is_peppered(&a));
        assert_eq!(verify("4711", &a, &s), Verified::Yes);
        assert_eq!(verify("4712", &a, &s), Verified::No);
        assert_eq!(verify("4711", "not a phc string", &s), Verified::No);
        // Another installation's pepper: the same PIN does not verify.
        let (_d2, other) = secrets();
        assert_eq!(verify("4711", &a, &other), Verified::No);
        // Nor does the hash verify as an unkeyed Argon2id hash.
        assert!(Argon2::default()
            .verify_password(b"4711", &PasswordHash::new(&a).unwrap())
            .is_err());
    }

    /// Issue 22, finding 8: a hash without a pepper is made without any
    /// secret, so it never verifies, right PIN or not.
    #[test]
    fn hashes_without_a_pepper_never_verify() {
        let (_d, s) = secrets();
        let old = hash_unpeppered("4711");
        assert!(!is_peppered(&old));
        assert_eq!(verify("4711", &old, &s), Verified::No);
        assert_eq!(verify("4712", &old, &s), Verified::No);
    }

    #[test]
    fn received_hashes_must_be_affordable_argon2id_with_our_pepper() {
        let (_d, s) = secrets();
        assert_eq!(check_phc(&hash("4711", &s).unwrap(), &s), Ok(()));
        assert!(check_phc(&hash_unpeppered("4711"), &s)
            .unwrap_err()
            .contains("keyid is missing"));
        let greedy = "$argon2id$v=19$m=4194304,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";
        assert!(check_phc(greedy, &s).unwrap_err().contains("KiB"));
        let other = "$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";
        assert!(check_phc(other, &s).unwrap_err().contains("argon2id"));
        assert!(check_phc("4711", &s).is_err());
        let (_d2, elsewhere) = secrets();
        let foreign = hash("4711", &elsewhere).unwrap();
        let err = check_phc(&foreign, &s).unwrap_err();
        assert!(err.contains("not the plant pepper's"), "{err}");
        assert!(err.contains("plant-pepper.key"), "{err}");
    }

    #[test]
    fn validation_rules() {
        assert!(validate(SecretKind::Pin, "1234").is_ok());
        assert!(validate(SecretKind::Pin, "123").is_err());
        assert!(validate(SecretKind::Pin, "12a4").is_err());
        assert!(validate(SecretKind::Pin, "123456789").is_err());
        assert!(validate(SecretKind::Password, "correct horse").is_ok());
        assert!(validate(SecretKind::Password, "short").is_err());
    }
}
