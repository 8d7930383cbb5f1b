//! Operator profiles: what a kiosk needs to sign in someone enrolled at
//! another line. The service checks their shape and stores them encoded;
//! it never sees a secret, only Argon2id hashes, whose PHC strings it
//! parses and whose cost it bounds ([`kubevision_proto::credential`], the
//! rule the kiosk applies to the same hashes).

use kubevision_proto::credential::check_phc;
use kubevision_proto::v1::credential::Kind;
use kubevision_proto::v1::operator_profile::Role;
use kubevision_proto::v1::OperatorProfile;
use prost::Message;

use super::{check_text, invalid, TextKind};
use crate::error::ServiceError;

/// Checks a profile and encodes it for the store, its display name in NFC.
pub fn encode(profile: &OperatorProfile) -> Result<Vec<u8>, ServiceError> {
    let display_name = check(profile)?;
    if display_name == profile.display_name {
        return Ok(profile.encode_to_vec());
    }
    Ok(OperatorProfile {
        display_name,
        ..profile.clone()
    }
    .encode_to_vec())
}

/// A stored profile; `None` if it cannot be read (a store written by a
/// newer release, say), which the sync then leaves out.
pub fn decode(bytes: &[u8]) -> Option<OperatorProfile> {
    OperatorProfile::decode(bytes)
        .inspect_err(|e| tracing::warn!("a stored operator profile is unreadable: {e}"))
        .ok()
}

/// The display name as stored (NFC), or why the profile is refused.
fn check(p: &OperatorProfile) -> Result<String, ServiceError> {
    if p.display_name.trim().is_empty() {
        return Err(invalid("profile.display_name is blank".into()));
    }
    let display_name = check_text("profile.display_name", &p.display_name, TextKind::Name)?;
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
        if let Err(e) = check_phc(&c.phc) {
            return Err(invalid(format!(
                "profile.credentials[{index}].phc: {e} (field {})",
                e.field()
            )));
        }
    }
    Ok(display_name)
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
    fn display_names_are_stored_in_nfc() {
        let mut p = profile();
        p.display_name = "Jo\u{0308}rg".into();
        let stored = decode(&encode(&p).unwrap()).unwrap();
        assert_eq!(stored.display_name, "J\u{00F6}rg");
    }

    #[test]
    fn a_good_profile_round_trips() {
        let bytes = encode(&profile()).unwrap();
        assert_eq!(decode(&bytes), Some(profile()));
    }

    #[test]
    fn each_bad_field_is_named() {
        type Spoil = fn(&mut OperatorProfile);
        let cases: [(&str, Spoil); 12] = [
            ("display_name", |p| p.display_name = " ".into()),
            ("display_name contains the bidirectional control", |p| {
                p.display_name = "Ada \u{202E}rebeW".into()
            }),
            ("role", |p| p.role = 9),
            ("kind", |p| p.credentials[0].kind = 0),
            ("phc: not a PHC string", |p| {
                p.credentials[0].phc = "1234".into()
            }),
            ("a second", |p| p.credentials.push(p.credentials[0].clone())),
            ("m (memory, KiB) is 8", |p| {
                p.credentials[0].phc = PHC.replace("m=19456,t=2", "m=8,t=1")
            }),
            ("m (memory, KiB) is 4194304", |p| {
                p.credentials[0].phc = PHC.replace("m=19456,t=2", "m=4194304,t=4294967295")
            }),
            ("t (passes) is 4294967295", |p| {
                p.credentials[0].phc = PHC.replace("t=2", "t=4294967295")
            }),
            ("p (lanes) is 255", |p| {
                p.credentials[0].phc = PHC.replace("p=1", "p=255")
            }),
            ("only argon2id", |p| {
                p.credentials[0].phc = PHC.replace("argon2id", "argon2i")
            }),
            ("field v", |p| {
                p.credentials[0].phc = PHC.replace("v=19", "v=16")
            }),
        ];
        for (needle, spoil) in cases {
            let mut p = profile();
            spoil(&mut p);
            let message = encode(&p).unwrap_err().to_string();
            assert!(message.contains(needle), "{needle}: {message}");
        }
    }
}
