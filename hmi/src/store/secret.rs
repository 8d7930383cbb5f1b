//! PINs and passwords: validated, then hashed with Argon2id into PHC strings.

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;

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

pub(super) fn hash(secret: &str) -> Result<String, StoreError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default() // Argon2id v19, OWASP's minimum memory/time parameters
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| StoreError::Hashing(e.to_string()))
}

/// A corrupt PHC string counts as a mismatch: it must never let anyone in.
pub(super) fn verify(secret: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|parsed| {
            Argon2::default()
                .verify_password(secret.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Most memory (KiB) and passes a received hash may ask of a verification:
/// a hash from elsewhere must not be able to stall the kiosk.
const MAX_MEMORY_KIB: u32 = 256 * 1024;
const MAX_PASSES: u32 = 16;

/// Checks a PHC string that came from elsewhere (the plant-wide gallery):
/// Argon2id, and parameters this kiosk can afford to verify.
pub(super) fn check_phc(phc: &str) -> Result<(), String> {
    let parsed = PasswordHash::new(phc).map_err(|e| format!("not a PHC string: {e}"))?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(format!("{} instead of argon2id", parsed.algorithm));
    }
    let params =
        argon2::Params::try_from(&parsed).map_err(|e| format!("Argon2 parameters: {e}"))?;
    if params.m_cost() > MAX_MEMORY_KIB || params.t_cost() > MAX_PASSES {
        return Err(format!(
            "asks for {} KiB and {} passes; at most {MAX_MEMORY_KIB} KiB and {MAX_PASSES} passes",
            params.m_cost(),
            params.t_cost()
        ));
    }
    Ok(())
}

/// Spends the time of one verification on nothing, so that an unknown
/// personnel number answers as slowly as a wrong password.
pub(super) fn verify_nothing(secret: &str) {
    static DUMMY: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    if let Some(phc) = DUMMY.get_or_init(|| hash("not a real secret").ok()) {
        verify(secret, phc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_salted_and_verify() {
        let a = hash("4711").unwrap();
        let b = hash("4711").unwrap();
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "each hash has its own salt");
        assert!(verify("4711", &a));
        assert!(!verify("4712", &a));
        assert!(!verify("4711", "not a phc string"));
    }

    #[test]
    fn received_hashes_must_be_affordable_argon2id() {
        assert_eq!(check_phc(&hash("4711").unwrap()), Ok(()));
        let greedy = "$argon2id$v=19$m=4194304,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";
        assert!(check_phc(greedy).unwrap_err().contains("KiB"));
        let other = "$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";
        assert!(check_phc(other).unwrap_err().contains("argon2id"));
        assert!(check_phc("4711").is_err());
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
