//! Who may do what: anonymous clients read, named users may also call
//! `SignOut()`.
//!
//! async-opcua's [`DefaultAuthenticator`] checks user names and passwords
//! against the configured tokens; this wrapper adds the one rule of ours on
//! top, through the stack's own `is_user_executable` hook, so the server
//! answers `BadUserAccessDenied` to an anonymous `SignOut` call before our
//! callback ever runs. Nothing in the address space is writable by anyone.

use ::opcua::crypto::Thumbprint;
use ::opcua::server::authenticator::{
    AuthManager, CoreServerPermissions, DefaultAuthenticator, Password, UserToken,
};
use ::opcua::server::ServerEndpoint;
use ::opcua::types::{Error, NodeId, UserTokenPolicy};
use async_trait::async_trait;

pub(crate) struct KioskAuth {
    pub(crate) inner: DefaultAuthenticator,
}

#[async_trait]
impl AuthManager for KioskAuth {
    async fn authenticate_anonymous_token(&self, endpoint: &ServerEndpoint) -> Result<(), Error> {
        self.inner.authenticate_anonymous_token(endpoint).await
    }

    async fn authenticate_username_identity_token(
        &self,
        endpoint: &ServerEndpoint,
        username: &str,
        password: &Password,
    ) -> Result<UserToken, Error> {
        self.inner
            .authenticate_username_identity_token(endpoint, username, password)
            .await
    }

    async fn authenticate_x509_identity_token(
        &self,
        endpoint: &ServerEndpoint,
        signing_thumbprint: &Thumbprint,
    ) -> Result<UserToken, Error> {
        self.inner
            .authenticate_x509_identity_token(endpoint, signing_thumbprint)
            .await
    }

    fn is_user_executable(&self, token: &UserToken, _method_id: &NodeId) -> bool {
        // SignOut is our only method; it changes the line's state, so an
        // unauthenticated client may not call it.
        !token.is_anonymous()
    }

    fn user_token_policies(&self, endpoint: &ServerEndpoint) -> Vec<UserTokenPolicy> {
        self.inner.user_token_policies(endpoint)
    }

    fn core_permissions(&self, token: &UserToken) -> CoreServerPermissions {
        self.inner.core_permissions(token)
    }
}
