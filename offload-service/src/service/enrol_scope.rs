//! What a caller without the `admin` scope may change in the gallery
//! (issue 22, finding 3). Every kiosk that pushes its enrolments holds
//! `enrol`, so `enrol` must not be a way to take over an account: before,
//! `UpdateOperator` from any kiosk appended its own face to an
//! administrator and set PIN and password hashes of its choosing.
//!
//! Without `admin`, a caller may
//! * enrol a new operator, of the role operator (or without a profile);
//! * append templates to an operator of the role operator (or without a
//!   profile), sending their profile only with role and credentials
//!   unchanged;
//! * remove an operator of the role operator.
//!
//! Everything else needs `admin`: changing anyone's credentials or role,
//! replacing templates (which locks the operator out of their own face),
//! and any change to a maintenance or administrator account. It is refused
//! with PERMISSION_DENIED, naming what was asked.

use kubevision_proto::v1::operator_profile::Role;
use kubevision_proto::v1::OperatorProfile;

use crate::error::ServiceError;
use crate::identity::{Caller, Scope};
use crate::store::UpdateMode;

/// A change as the scope rule sees it. `stored`: the operator's profile in
/// the store (`Ok(None)`: enrolled without one; `Err(())`: unreadable,
/// taken as the most privileged).
pub enum Change<'a> {
    Enrol {
        profile: Option<&'a OperatorProfile>,
    },
    Update {
        mode: UpdateMode,
        appends: bool,
        profile: Option<&'a OperatorProfile>,
        stored: Result<Option<&'a OperatorProfile>, ()>,
    },
    Remove {
        stored: Result<Option<&'a OperatorProfile>, ()>,
    },
}

/// Whether `caller` (None: no caller, which fails closed) may make `change`
/// to `operator_id`.
pub fn check(
    caller: Option<&Caller>,
    operator_id: &str,
    change: Change<'_>,
) -> Result<(), ServiceError> {
    let Some(caller) = caller else {
        return Err(ServiceError::Unauthenticated);
    };
    if caller.may(Scope::Admin) {
        return Ok(());
    }
    let refuse = |what: String| {
        tracing::warn!(identity = %caller.name, operator_id, %what, "a change beyond the caller's scope refused");
        Err(ServiceError::BeyondScope {
            identity: caller.name.to_string(),
            what,
        })
    };
    let privileged = |stored: Result<Option<&OperatorProfile>, ()>| match stored {
        Ok(profile) => match role(profile) {
            Role::Operator => None,
            other => Some(role_name(other).to_owned()),
        },
        Err(()) => Some("an account whose stored profile cannot be read".to_owned()),
    };
    match change {
        Change::Enrol { profile } => match role(profile) {
            Role::Operator => Ok(()),
            other => refuse(format!(
                "enrol {operator_id:?} as {}: kiosks may enrol operators only",
                role_name(other)
            )),
        },
        Change::Update {
            mode,
            appends,
            profile,
            stored,
        } => {
            if let Some(whom) = privileged(stored) {
                return refuse(format!("change {operator_id:?}, {whom}"));
            }
            if appends && mode == UpdateMode::Replace {
                return refuse(format!(
                    "replace the templates of {operator_id:?}; enrol may only append"
                ));
            }
            let stored = stored.ok().flatten();
            if let Some(sent) = profile {
                if sent.role != stored.map_or(Role::Operator as i32, |s| s.role) {
                    return refuse(format!("change the role of {operator_id:?}"));
                }
                if Some(&sent.credentials) != stored.map(|s| &s.credentials)
                    && !(sent.credentials.is_empty() && stored.is_none())
                {
                    return refuse(format!(
                        "change the PIN or password hashes of {operator_id:?}"
                    ));
                }
            }
            Ok(())
        }
        Change::Remove { stored } => match privileged(stored) {
            Some(whom) => refuse(format!("remove {operator_id:?}, {whom}")),
            None => Ok(()),
        },
    }
}

/// An operator's role; no profile, or an unknown role number, counts as
/// the least privileged only when there is no profile at all.
fn role(profile: Option<&OperatorProfile>) -> Role {
    match profile {
        None => Role::Operator,
        Some(p) => match Role::try_from(p.role) {
            Ok(Role::Operator) => Role::Operator,
            Ok(Role::Maintenance) => Role::Maintenance,
            // Administrators, and anything not understood: the most privileged.
            _ => Role::Administrator,
        },
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Maintenance => "a maintenance account",
        Role::Administrator | Role::Unspecified => "an administrator",
        Role::Operator => "an operator",
    }
}

#[cfg(test)]
mod tests {
    use kubevision_proto::v1::credential::Kind;
    use kubevision_proto::v1::Credential;

    use super::*;
    use crate::identity::{token_sha256_hex, Registry};

    fn caller(scopes: &[&str]) -> Caller {
        let json = format!(
            r#"{{"identities":[{{"name":"kiosk","scopes":{scopes:?},"token_sha256":"{}"}}]}}"#,
            token_sha256_hex("a token")
        );
        Registry::parse(&json)
            .unwrap()
            .resolve(Some("a token"), &[])
            .unwrap()
    }

    fn profile(role: Role, phc: &str) -> OperatorProfile {
        OperatorProfile {
            display_name: "Ada".into(),
            role: role as i32,
            credentials: vec![Credential {
                kind: Kind::Pin as i32,
                phc: phc.into(),
            }],
        }
    }

    #[test]
    fn enrol_may_add_operators_and_their_faces_only() {
        let kiosk = caller(&["enrol"]);
        let k = Some(&kiosk);
        let op = profile(Role::Operator, "a");
        let admin = profile(Role::Administrator, "a");
        let maint = profile(Role::Maintenance, "a");
        let ok = |c| check(k, "x", c).is_ok();
        assert!(ok(Change::Enrol { profile: Some(&op) }));
        assert!(ok(Change::Enrol { profile: None }));
        assert!(!ok(Change::Enrol {
            profile: Some(&admin)
        }));
        assert!(!ok(Change::Enrol {
            profile: Some(&maint)
        }));
        let update = |mode, profile, stored| Change::Update {
            mode,
            appends: true,
            profile,
            stored,
        };
        assert!(ok(update(UpdateMode::Append, None, Ok(Some(&op)))));
        assert!(ok(update(UpdateMode::Append, Some(&op), Ok(Some(&op)))));
        assert!(!ok(update(UpdateMode::Replace, None, Ok(Some(&op)))));
        assert!(!ok(update(UpdateMode::Append, None, Ok(Some(&admin)))));
        assert!(!ok(update(UpdateMode::Append, None, Ok(Some(&maint)))));
        assert!(!ok(update(UpdateMode::Append, None, Err(()))));
        let new_pin = profile(Role::Operator, "b");
        assert!(!ok(update(
            UpdateMode::Append,
            Some(&new_pin),
            Ok(Some(&op))
        )));
        assert!(!ok(update(UpdateMode::Append, Some(&admin), Ok(Some(&op)))));
        assert!(!ok(update(UpdateMode::Append, Some(&op), Ok(None))));
        assert!(ok(Change::Remove {
            stored: Ok(Some(&op))
        }));
        assert!(!ok(Change::Remove {
            stored: Ok(Some(&admin))
        }));
        // The message names the caller, what it asked and the scope it needs.
        let err = check(k, "P-1", update(UpdateMode::Append, None, Ok(Some(&admin)))).unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
        assert_eq!(
            err.to_string(),
            "identity \"kiosk\" may not change \"P-1\", an administrator: that needs the \"admin\" scope"
        );
        // admin may do all of it; no caller, nothing.
        let admin_caller = caller(&["admin"]);
        assert!(check(
            Some(&admin_caller),
            "x",
            update(UpdateMode::Replace, Some(&new_pin), Ok(Some(&admin)))
        )
        .is_ok());
        assert!(check(None, "x", Change::Enrol { profile: None }).is_err());
    }
}
