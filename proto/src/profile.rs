//! The one rule for the shape of an [`OperatorProfile`]: the service
//! checks every profile it receives with [`check_profile`], and the kiosk
//! every profile it takes from the plant gallery, so that a profile one
//! refuses never reaches the other. A profile carries no secret, only
//! Argon2id hashes, whose PHC strings are held to [`check_phc`].

use crate::credential::{check_phc, PhcError};
use crate::text::{check_text, TextError, TextKind};
use crate::v1::credential::Kind;
use crate::v1::operator_profile::Role;
use crate::v1::OperatorProfile;

/// Why a profile is refused. Each message names the field at fault
/// (`profile.display_name`, `profile.role`, `profile.credentials[i]…`) and
/// is what the service answers with (INVALID_ARGUMENT).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    #[error("profile.display_name is blank")]
    BlankName,
    #[error(transparent)]
    Name(TextError),
    #[error("profile.role {0} is not a role (operator 1, maintenance 2, administrator 3)")]
    Role(i32),
    #[error("profile.credentials[{index}].kind {kind} is not PIN (1) or password (2)")]
    Kind { index: usize, kind: i32 },
    #[error("profile.credentials[{index}]: a second {} credential", .kind.as_str_name())]
    RepeatedKind { index: usize, kind: Kind },
    #[error("profile.credentials[{index}].phc: {error} (field {})", .error.field())]
    Phc { index: usize, error: PhcError },
}

/// The display name as stored (NFC), or why the profile is refused: a
/// display name that is blank or fails the [text rule](crate::text) for
/// names, a role other than operator, maintenance or administrator, a
/// credential of no known kind or of a kind already given, or a hash that
/// fails [`check_phc`].
pub fn check_profile(p: &OperatorProfile) -> Result<String, ProfileError> {
    if p.display_name.trim().is_empty() {
        return Err(ProfileError::BlankName);
    }
    let display_name = check_text("profile.display_name", &p.display_name, TextKind::Name)
        .map_err(ProfileError::Name)?;
    match Role::try_from(p.role) {
        Ok(Role::Unspecified) | Err(_) => return Err(ProfileError::Role(p.role)),
        Ok(_) => {}
    }
    let mut seen = Vec::new();
    for (index, c) in p.credentials.iter().enumerate() {
        let kind = match Kind::try_from(c.kind) {
            Ok(Kind::Unspecified) | Err(_) => {
                return Err(ProfileError::Kind {
                    index,
                    kind: c.kind,
                })
            }
            Ok(kind) => kind,
        };
        if seen.contains(&kind) {
            return Err(ProfileError::RepeatedKind { index, kind });
        }
        seen.push(kind);
        check_phc(&c.phc).map_err(|error| ProfileError::Phc { index, error })?;
    }
    Ok(display_name)
}

#[cfg(test)]
mod tests {
    use crate::v1::Credential;

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
    fn a_good_profile_passes() {
        assert_eq!(check_profile(&profile()).as_deref(), Ok("Ada Weber"));
    }

    #[test]
    fn display_names_come_back_in_nfc() {
        let mut p = profile();
        p.display_name = "Jo\u{0308}rg".into();
        assert_eq!(check_profile(&p).as_deref(), Ok("J\u{00F6}rg"));
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
            let message = check_profile(&p).unwrap_err().to_string();
            assert!(message.contains(needle), "{needle}: {message}");
        }
    }

    /// The messages are the service's answers, word for word.
    #[test]
    fn messages_are_the_services() {
        type Spoil = fn(&mut OperatorProfile);
        let cases: [(&str, Spoil); 5] = [
            ("profile.display_name is blank", |p| {
                p.display_name = " ".into()
            }),
            (
                "profile.role 9 is not a role (operator 1, maintenance 2, administrator 3)",
                |p| p.role = 9,
            ),
            (
                "profile.credentials[0].kind 0 is not PIN (1) or password (2)",
                |p| p.credentials[0].kind = 0,
            ),
            (
                "profile.credentials[1]: a second KIND_PIN credential",
                |p| p.credentials.push(p.credentials[0].clone()),
            ),
            (
                "profile.credentials[0].phc: v=16: only v=19 is accepted (field v)",
                |p| p.credentials[0].phc = PHC.replace("v=19", "v=16"),
            ),
        ];
        for (message, spoil) in cases {
            let mut p = profile();
            spoil(&mut p);
            assert_eq!(check_profile(&p).unwrap_err().to_string(), message);
        }
    }
}
