//! Operator profiles: what a kiosk needs to sign in someone enrolled at
//! another line. The service checks their shape and stores them encoded;
//! it never sees a secret, only Argon2id hashes, and never interprets them.

use kubevision_proto::v1::credential::Kind;
use kubevision_proto::v1::operator_profile::Role;
use kubevision_proto::v1::OperatorProfile;
use prost::Message;

use super::{check_text, invalid};
use crate::error::ServiceError;

/// Longest PHC string, in bytes (Argon2id's are about 100).
pub const MAX_PHC_BYTES: usize = 256;

/// Checks a profile and encodes it for the store.
pub fn encode(profile: &OperatorProfile) -> Result<Vec<u8>, ServiceError> {
    check(profile)?;
    Ok(profile.encode_to_vec())
}

/// A stored profile; `None` if it cannot be read (a store written by a
/// newer release, say), which the sync then leaves out.
pub fn decode(bytes: &[u8]) -> Option<OperatorProfile> {
    OperatorProfile::decode(bytes)
        .inspect_err(|e| tracing::warn!("a stored operator profile is unreadable: {e}"))
        .ok()
}

fn check(p: &OperatorProfile) -> Result<(), ServiceError> {
    if p.display_name.trim().is_empty() {
        return Err(invalid("profile.display_name is blank".into()));
    }
    check_text("profile.display_name", &p.display_name)?;
    match Role::try_from(p.role) {
        Ok(Role::Unspecified) | Err(_) => {
            return Err(invalid(format!(
                "profile.role {} is not a role (operator 1, maintenance 2, administrator 3)",
                p.role
            )))
        }
        Ok(_) => {}
    }
    let mut seen = Vec::new();
    for (index, c) in p.credentials.iter().enumerate() {
        let kind = match Kind::try_from(c.kind) {
            Ok(Kind::Unspecified) | Err(_) => {
                return Err(invalid(format!(
                    "profile.credentials[{index}].kind {} is not PIN (1) or password (2)",
                    c.kind
                )))
            }
            Ok(kind) => kind,
        };
        if seen.contains(&kind) {
            return Err(invalid(format!(
                "profile.credentials[{index}]: a second {} credential",
                kind.as_str_name()
            )));
        }
        seen.push(kind);
        let phc_like = c.phc.starts_with("$argon2id$")
            && c.phc.len() <= MAX_PHC_BYTES
            && c.phc.bytes().all(|b| b.is_ascii_graphic());
        if !phc_like {
            return Err(invalid(format!(
                "profile.credentials[{index}].phc is not an Argon2id PHC string of at most {MAX_PHC_BYTES} bytes"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use kubevision_proto::v1::Credential;

    use super::*;

    const PHC: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";

    fn profile() -> OperatorProfile {
        OperatorProfile {
            display_name: "Ada Weber".into(),
            role: Role::Maintenance as i32,
            credentials: vec![Credential {
                kind: Kind::Pin as i32,
                phc: PHC.into(),
            }],
        }
    }

    #[test]
    fn a_good_profile_round_trips() {
        let bytes = encode(&profile()).unwrap();
        assert_eq!(decode(&bytes), Some(profile()));
    }

    #[test]
    fn each_bad_field_is_named() {
        type Spoil = fn(&mut OperatorProfile);
        let cases: [(&str, Spoil); 5] = [
            ("display_name", |p| p.display_name = " ".into()),
            ("role", |p| p.role = 9),
            ("kind", |p| p.credentials[0].kind = 0),
            ("phc", |p| p.credentials[0].phc = "1234".into()),
            ("a second", |p| p.credentials.push(p.credentials[0].clone())),
        ];
        for (needle, spoil) in cases {
            let mut p = profile();
            spoil(&mut p);
            let message = encode(&p).unwrap_err().to_string();
            assert!(message.contains(needle), "{needle}: {message}");
        }
    }
}
