//! Who may do what: anonymous clients read, named users may also call
//! `SignOut()`.
//!
//! The server never holds a password. A [`Credentials`] implementation, the
//! kiosk's, answers "is this the password of that user?" (it verifies Argon2id
//! hashes with its pepper); [`KioskAuth`] asks it off the server's async
//! workers, because an Argon2 verification takes tens of milliseconds of CPU
//! and would otherwise stall every other client's requests.
//!
//! The rules, all in this file:
//! - anonymous sessions where the endpoint allows them (read-only);
//! - a user name and password only on SignAndEncrypt endpoints: async-opcua
//!   has no separate password policy, so clients send the password as it is,
//!   which a None or Sign-only channel would carry in clear text. The
//!   UserName policy is not even offered elsewhere, and a token that arrives
//!   there anyway is rejected;
//! - `SignOut()` only for a named user (the stack's `is_user_executable`
//!   hook), so an anonymous call gets `BadUserAccessDenied` before our method
//!   runs;
//! - nothing in the address space is writable by anyone.

use std::sync::Arc;

use ::opcua::crypto::Thumbprint;
use ::opcua::server::authenticator::{
    user_pass_security_policy_id, AuthManager, CoreServerPermissions, Password, UserToken,
};
use ::opcua::server::{ServerEndpoint, ANONYMOUS_USER_TOKEN_ID};
use ::opcua::types::{
    Error, MessageSecurityMode, NodeId, StatusCode, UAString, UserTokenPolicy, UserTokenType,
};
use async_trait::async_trait;

/// Checks a user name and password for calling `SignOut()`. The kiosk's implementation verifies Argon2id hashes (with its pepper) in constant time; this crate never sees a stored password.
pub trait Credentials: Send + Sync + 'static {
    /// The user names that exist (for nothing but deciding whether the UserName token policy is offered at all; may be empty).
    fn any_users(&self) -> bool;
    /// Whether `password` is `user`'s. May be slow (an Argon2 verification): the server calls it off its async workers (spawn_blocking).
    fn verify(&self, user: &str, password: &str) -> bool;
}

/// The stack keys sessions by a [`UserToken`] string; ours are this prefix
/// and the user name, so that no user name can collide with the stack's
/// anonymous token id.
const USER_TOKEN_PREFIX: &str = "user:";

/// The user name behind a session's token; `None` for anonymous sessions.
pub(crate) fn user_name(token: &UserToken) -> Option<&str> {
    if token.is_anonymous() {
        return None;
    }
    token.0.strip_prefix(USER_TOKEN_PREFIX)
}

pub(crate) struct KioskAuth {
    pub(crate) credentials: Option<Arc<dyn Credentials>>,
}

impl KioskAuth {
    fn offers_user_names(&self, endpoint: &ServerEndpoint) -> bool {
        endpoint.message_security_mode() == MessageSecurityMode::SignAndEncrypt
            && self.credentials.as_ref().is_some_and(|c| c.any_users())
    }
}

#[async_trait]
impl AuthManager for KioskAuth {
    async fn authenticate_anonymous_token(&self, endpoint: &ServerEndpoint) -> Result<(), Error> {
        if endpoint.user_token_ids.contains(ANONYMOUS_USER_TOKEN_ID) {
            Ok(())
        } else {
            Err(Error::new(
                StatusCode::BadIdentityTokenRejected,
                "this endpoint takes no anonymous sessions",
            ))
        }
    }

    async fn authenticate_username_identity_token(
        &self,
        endpoint: &ServerEndpoint,
        username: &str,
        password: &Password,
    ) -> Result<UserToken, Error> {
        // The stack only passes tokens of policies we offer, but the rule
        // that a password never crosses an unencrypted channel is ours.
        if endpoint.message_security_mode() != MessageSecurityMode::SignAndEncrypt {
            return Err(Error::new(
                StatusCode::BadIdentityTokenRejected,
                "user names are only accepted on SignAndEncrypt endpoints",
            ));
        }
        let Some(credentials) = self.credentials.clone() else {
            return Err(Error::new(
                StatusCode::BadIdentityTokenRejected,
                "this server takes no user names",
            ));
        };
        let user = username.to_owned();
        let password = password.get().to_owned();
        let verified =
            tokio::task::spawn_blocking(move || credentials.verify(&user, &password)).await;
        match verified {
            Ok(true) => {
                tracing::info!(user = username, "OPC UA: user signed in to the server");
                Ok(UserToken(format!("{USER_TOKEN_PREFIX}{username}")))
            }
            // The same answer for an unknown user and a wrong password, so
            // that a client cannot find out which user names exist.
            Ok(false) => {
                tracing::warn!(user = username, "OPC UA: wrong user name or password");
                Err(Error::new(
                    StatusCode::BadUserAccessDenied,
                    "wrong user name or password",
                ))
            }
            Err(e) => {
                tracing::error!(error = %e, "OPC UA: the credentials check failed");
                Err(Error::new(
                    StatusCode::BadUserAccessDenied,
                    "the credentials could not be checked",
                ))
            }
        }
    }

    async fn authenticate_x509_identity_token(
        &self,
        _endpoint: &ServerEndpoint,
        _signing_thumbprint: &Thumbprint,
    ) -> Result<UserToken, Error> {
        Err(Error::new(
            StatusCode::BadIdentityTokenRejected,
            "X509 user tokens are not supported",
        ))
    }

    fn is_user_executable(&self, token: &UserToken, _method_id: &NodeId) -> bool {
        // SignOut is our only method; it changes the line's state, so an
        // unauthenticated client may not call it.
        user_name(token).is_some()
    }

    fn user_token_policies(&self, endpoint: &ServerEndpoint) -> Vec<UserTokenPolicy> {
        let mut policies = Vec::with_capacity(2);
        if endpoint.user_token_ids.contains(ANONYMOUS_USER_TOKEN_ID) {
            policies.push(UserTokenPolicy {
                // The id async-opcua checks anonymous tokens against.
                policy_id: UAString::from("anonymous"),
                token_type: UserTokenType::Anonymous,
                issued_token_type: UAString::null(),
                issuer_endpoint_url: UAString::null(),
                security_policy_uri: UAString::null(),
            });
        }
        if self.offers_user_names(endpoint) {
            policies.push(UserTokenPolicy {
                policy_id: user_pass_security_policy_id(endpoint),
                token_type: UserTokenType::UserName,
                issued_token_type: UAString::null(),
                issuer_endpoint_url: UAString::null(),
                // Empty: the password is protected by the endpoint's own
                // policy, which is always SignAndEncrypt here.
                security_policy_uri: UAString::null(),
            });
        }
        policies
    }

    fn core_permissions(&self, _token: &UserToken) -> CoreServerPermissions {
        // Nobody reads the server's diagnostics (session and subscription
        // details of other clients).
        CoreServerPermissions::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_come_back_from_tokens_and_anonymous_has_none() {
        assert_eq!(
            user_name(&UserToken("user:operator".into())),
            Some("operator")
        );
        assert_eq!(user_name(&UserToken(ANONYMOUS_USER_TOKEN_ID.into())), None);
        // A token not made here names nobody.
        assert_eq!(user_name(&UserToken("operator".into())), None);
    }
}
