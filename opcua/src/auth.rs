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
//! - nothing in the address space is writable by anyone;
//! - password checks are bounded ([`Guesses`], issue 22 finding 4): one
//!   verification at a time, so an Argon2 verification's memory is taken
//!   once however many clients guess at once, a client that would wait
//!   longer than [`VERIFY_WAIT`] is refused, and once more than
//!   [`FREE_FAILURES`] wrong passwords came in a row every attempt, the right
//!   password's too, is refused unchecked for a backoff that doubles with
//!   each further failure; the memory a verification freed is handed back
//!   at once ([`give_back_freed_memory`]), so that it does not pile up
//!   ([`FIRST_BACKOFF`] … [`MAX_BACKOFF`]). Every refusal is written to the
//!   log with the user name and the reason (target `kubevision_opcua::audit`)
//!   and handed to the kiosk as a [`PasswordRefused`]
//!   ([`crate::Handle::password_refusals`]), which writes it into its keyed
//!   audit trail. That queue is bounded ([`REFUSALS_QUEUED`]): refusals the
//!   kiosk has not collected yet beyond it are counted, not kept, and the
//!   count travels with the next one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

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

/// Wrong passwords in a row that cost nothing but the verification.
pub const FREE_FAILURES: u32 = 3;
/// The lock after the first failure beyond [`FREE_FAILURES`]; each further
/// failure doubles it.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(5);
/// The longest lock.
pub const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);
/// The longest an attempt waits for the verification under way.
pub const VERIFY_WAIT: Duration = Duration::from_secs(2);

/// Refusals waiting for the kiosk to collect them; beyond this they are
/// counted ([`PasswordRefused::unreported_before`]) instead of queued, so a
/// guesser cannot grow the kiosk's memory through the queue.
pub const REFUSALS_QUEUED: usize = 256;
/// The longest user name a [`PasswordRefused`] carries, in characters; a
/// longer one is cut there (a client chooses it).
pub const REPORTED_USER_CHARS: usize = 64;

/// Why a password attempt was refused. Kept typed up to whoever writes it
/// down (the log here, the kiosk's audit row); [`std::fmt::Display`] is its
/// wording for both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalCause {
    /// The password was checked and is not the user's (the same for an
    /// unknown user name, so that no answer tells which names exist).
    WrongPassword,
    /// Refused unchecked: too many wrong passwords in a row; the lock has
    /// `left` to run.
    Locked { left: Duration },
    /// Refused: another verification was under way for longer than
    /// [`VERIFY_WAIT`].
    Busy,
}

impl RefusalCause {
    /// A stable token for machine-readable output (`wrong_password`,
    /// `locked`, `busy`).
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalCause::WrongPassword => "wrong_password",
            RefusalCause::Locked { .. } => "locked",
            RefusalCause::Busy => "busy",
        }
    }

    /// The status the client is answered with.
    fn status(self) -> StatusCode {
        match self {
            RefusalCause::WrongPassword | RefusalCause::Locked { .. } => {
                StatusCode::BadUserAccessDenied
            }
            RefusalCause::Busy => StatusCode::BadTooManyOperations,
        }
    }
}

impl std::fmt::Display for RefusalCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RefusalCause::WrongPassword => f.write_str("wrong user name or password"),
            RefusalCause::Locked { left } => write!(
                f,
                "locked after too many wrong passwords ({} s left), refused unchecked",
                left.as_secs_f64().ceil() as u64
            ),
            RefusalCause::Busy => f.write_str("another password check was under way"),
        }
    }
}

/// A password attempt the server refused, for the kiosk's audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordRefused {
    /// The user name the client gave (at most [`REPORTED_USER_CHARS`]).
    pub user: String,
    pub cause: RefusalCause,
    /// Refusals before this one that found the queue full and were only
    /// counted.
    pub unreported_before: u64,
}

/// Where refusals go: the bounded queue to the kiosk and the count of
/// those it had no room for.
pub(crate) struct Refusals {
    queue: mpsc::SyncSender<PasswordRefused>,
    unreported: AtomicU64,
}

impl Refusals {
    pub(crate) fn new() -> (Self, mpsc::Receiver<PasswordRefused>) {
        let (queue, rx) = mpsc::sync_channel(REFUSALS_QUEUED);
        (
            Refusals {
                queue,
                unreported: AtomicU64::new(0),
            },
            rx,
        )
    }

    /// Logs the refusal and queues it for the kiosk; never blocks.
    fn report(&self, user: &str, cause: RefusalCause) {
        tracing::warn!(target: "kubevision_opcua::audit", user, reason = cause.as_str(),
            "OPC UA: password attempt refused: {cause}");
        let refused = PasswordRefused {
            user: user.chars().take(REPORTED_USER_CHARS).collect(),
            cause,
            unreported_before: self.unreported.swap(0, Ordering::Relaxed),
        };
        if let Err(mpsc::TrySendError::Full(r) | mpsc::TrySendError::Disconnected(r)) =
            self.queue.try_send(refused)
        {
            self.unreported
                .fetch_add(r.unreported_before + 1, Ordering::Relaxed);
        }
    }

    /// The error the client gets, once the refusal is reported.
    fn refuse(&self, user: &str, cause: RefusalCause) -> Error {
        self.report(user, cause);
        Error::new(cause.status(), cause.to_string())
    }
}

/// Wrong passwords in a row and the lock they earned: a pure state machine
/// over the time it is given. One for the server, not per user name or
/// address: the server sees no address, and a guesser may try any name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Lockout {
    failures: u32,
    locked_until: Option<Instant>,
}

impl Lockout {
    /// `Err(left)` while locked.
    pub(crate) fn check(&self, now: Instant) -> Result<(), Duration> {
        match self.locked_until {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// A verified attempt: a right password clears the count, a wrong one
    /// beyond the free ones locks for the doubled backoff.
    pub(crate) fn record(&mut self, right: bool, now: Instant) {
        if right {
            *self = Lockout::default();
            return;
        }
        self.failures = self.failures.saturating_add(1);
        if let Some(beyond) = self.failures.checked_sub(FREE_FAILURES + 1) {
            let backoff = FIRST_BACKOFF
                .checked_mul(1u32.checked_shl(beyond).unwrap_or(u32::MAX))
                .map_or(MAX_BACKOFF, |b| b.min(MAX_BACKOFF));
            self.locked_until = Some(now + backoff);
        }
    }
}

/// Hands the memory a verification freed back to the system (issue 22,
/// finding 4). glibc kept each freed Argon2 buffer (19 MiB at the kiosk's
/// cost) in its arenas instead of reusing it for the next verification,
/// even one at a time: every wrong password left its buffer resident (4 in
/// a row: +77 MiB, kept; tests/opcua `test_concurrent_wrong_sign_out_…`).
/// Other allocators and systems: nothing to do.
fn give_back_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: malloc_trim only releases free memory of glibc's own
        // arenas; it takes no pointer and is thread-safe.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// The server's password checks: one at a time, and the lockout.
pub(crate) struct Guesses {
    one_at_a_time: tokio::sync::Semaphore,
    lockout: Mutex<Lockout>,
    refusals: Refusals,
}

impl Guesses {
    pub(crate) fn new(refusals: Refusals) -> Self {
        Guesses {
            one_at_a_time: tokio::sync::Semaphore::new(1),
            lockout: Mutex::new(Lockout::default()),
            refusals,
        }
    }

    fn lockout(&self) -> std::sync::MutexGuard<'_, Lockout> {
        self.lockout.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `password` is `user`'s, within the bounds above.
    async fn verify(
        &self,
        credentials: Arc<dyn Credentials>,
        user: &str,
        password: &str,
    ) -> Result<(), Error> {
        let locked = |left| self.refusals.refuse(user, RefusalCause::Locked { left });
        self.lockout().check(Instant::now()).map_err(locked)?;
        let Ok(Ok(_slot)) = tokio::time::timeout(VERIFY_WAIT, self.one_at_a_time.acquire()).await
        else {
            return Err(self.refusals.refuse(user, RefusalCause::Busy));
        };
        // The attempts that waited find the lock the ones before them earned.
        self.lockout().check(Instant::now()).map_err(locked)?;
        let (u, p) = (user.to_owned(), password.to_owned());
        let verified = tokio::task::spawn_blocking(move || {
            let right = credentials.verify(&u, &p);
            give_back_freed_memory();
            right
        })
        .await;
        let right = match verified {
            Ok(right) => right,
            Err(e) => {
                tracing::error!(error = %e, "OPC UA: the credentials check failed");
                return Err(Error::new(
                    StatusCode::BadUserAccessDenied,
                    "the credentials could not be checked",
                ));
            }
        };
        self.lockout().record(right, Instant::now());
        if right {
            tracing::info!(target: "kubevision_opcua::audit", user, "OPC UA: user signed in to the server");
            Ok(())
        } else {
            // The same answer for an unknown user and a wrong password, so
            // that a client cannot find out which user names exist.
            Err(self.refusals.refuse(user, RefusalCause::WrongPassword))
        }
    }
}

pub(crate) struct KioskAuth {
    pub(crate) credentials: Option<Arc<dyn Credentials>>,
    pub(crate) guesses: Guesses,
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
        self.guesses
            .verify(credentials, username, password.get())
            .await?;
        Ok(UserToken(format!("{USER_TOKEN_PREFIX}{username}")))
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

    #[test]
    fn wrong_passwords_lock_with_a_doubling_backoff_and_a_right_one_clears() {
        let t0 = Instant::now();
        let mut l = Lockout::default();
        for _ in 0..FREE_FAILURES {
            l.record(false, t0);
            assert_eq!(l.check(t0), Ok(()));
        }
        l.record(false, t0);
        assert_eq!(l.check(t0), Err(FIRST_BACKOFF));
        assert_eq!(l.check(t0 + FIRST_BACKOFF), Ok(()));
        let t1 = t0 + FIRST_BACKOFF;
        l.record(false, t1);
        assert_eq!(l.check(t1), Err(FIRST_BACKOFF * 2));
        // However many failures, never longer than the cap, never overflowing.
        for _ in 0..100 {
            l.record(false, t1);
        }
        assert_eq!(l.check(t1), Err(MAX_BACKOFF));
        l.record(true, t1 + MAX_BACKOFF);
        assert_eq!(l, Lockout::default());
    }
}
