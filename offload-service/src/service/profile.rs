//! Operator profiles: what a kiosk needs to sign in someone enrolled at
//! another line. The service checks their shape and stores them encoded;
//! it never sees a secret, only Argon2id hashes, whose PHC strings it
//! parses and whose cost it bounds ([`kubevision_proto::credential`]), and
//! which must be keyed with the plant pepper (`--plant-pepper-id`). The
//! shape rule is [`kubevision_proto::profile`]'s, the one the kiosk applies
//! to the same profiles; the pepper rule is
//! [`kubevision_proto::credential::check_keyed_phc`], the kiosk's too.

use kubevision_proto::credential::check_keyed_phc;
use kubevision_proto::profile::{check_profile, ProfileError};
use kubevision_proto::v1::OperatorProfile;
use prost::Message;

use crate::error::ServiceError;

/// Checks a profile (the rules the kiosk applies to the profiles it takes
/// from the plant gallery: the shape, and every hash keyed with the plant
/// pepper, `pepper_id` where known) and encodes it for the store, its
/// display name in NFC.
pub fn encode(
    profile: &OperatorProfile,
    pepper_id: Option<&[u8]>,
) -> Result<Vec<u8>, ServiceError> {
    let display_name = check_profile(profile)?;
    for (index, credential) in profile.credentials.iter().enumerate() {
        check_keyed_phc(&credential.phc, pepper_id)
            .map_err(|error| ProfileError::Phc { index, error })?;
    }
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

#[cfg(test)]
mod tests {
    use kubevision_proto::v1::credential::Kind;
    use kubevision_proto::v1::operator_profile::Role;
    use kubevision_proto::v1::Credential;

    use super::*;

    const PHC: &str =
        "$argon2id$v=19$m=19456,t=2,p=1,keyid=AQIDBAUGBwg$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";
    const PLANT: [u8; 8] = [1, 2, 3, 4, 5, 6, 7, 8];

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
        let stored = decode(&encode(&p, Some(&PLANT)).unwrap()).unwrap();
        assert_eq!(stored.display_name, "J\u{00F6}rg");
    }

    #[test]
    fn a_good_profile_round_trips() {
        let bytes = encode(&profile(), Some(&PLANT)).unwrap();
        assert_eq!(decode(&bytes), Some(profile()));
    }

    /// The rule itself is tested in `kubevision_proto::profile`; here, that
    /// Enroll's encoding refuses with its message, as INVALID_ARGUMENT.
    #[test]
    fn a_bad_profile_is_refused_with_the_rules_message() {
        let mut p = profile();
        p.credentials.push(p.credentials[0].clone());
        let err = encode(&p, Some(&PLANT)).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            err.to_string(),
            "profile.credentials[1]: a second KIND_PIN credential"
        );
    }

    /// Issue 22, findings 3 and 12: hashes without the plant pepper's key
    /// id, or with another pepper's, are refused by name.
    #[test]
    fn hashes_must_be_keyed_with_the_plant_pepper() {
        let mut p = profile();
        p.credentials[0].phc = PHC.replace(",keyid=AQIDBAUGBwg", "");
        let err = encode(&p, Some(&PLANT)).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.to_string().contains("keyid is missing"), "{err}");
        assert!(
            encode(&p, None).is_err(),
            "unkeyed even where the id is unknown"
        );
        let err = encode(&profile(), Some(&[9; 8])).unwrap_err();
        assert!(err.to_string().contains("not the plant pepper's"), "{err}");
    }
}
