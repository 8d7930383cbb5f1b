//! What the kiosk tells the production line, and how: the OPC UA server's
//! address, the line's name, the role → access-level table and the one
//! account that may sign an operator out from the line's side.
//!
//! Off until an administrator turns it on: a kiosk that starts listening on
//! the plant network after an update is a decision for plant IT, not for us.

use serde::{Deserialize, Serialize};

use crate::secret::{self, Verified};
use crate::{Role, SecretKind, Secrets, StoreError};

/// The level a role is given on the line, EKS-style: the PLC compares it
/// with what a function needs. 0 means nobody is signed in, so every role
/// has a level of at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessLevels {
    pub operator: u16,
    pub maintenance: u16,
    pub administrator: u16,
}

impl Default for AccessLevels {
    fn default() -> Self {
        AccessLevels {
            operator: 1,
            maintenance: 2,
            administrator: 3,
        }
    }
}

impl AccessLevels {
    pub fn for_role(&self, role: Role) -> u16 {
        match role {
            Role::Operator => self.operator,
            Role::Maintenance => self.maintenance,
            Role::Administrator => self.administrator,
        }
    }

    pub fn for_role_mut(&mut self, role: Role) -> &mut u16 {
        match role {
            Role::Operator => &mut self.operator,
            Role::Maintenance => &mut self.maintenance,
            Role::Administrator => &mut self.administrator,
        }
    }
}

/// The OPC UA server's settings (the `line` key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LineSettings {
    /// Serve OPC UA at all.
    pub enabled: bool,
    /// `host:port` to listen on; `0.0.0.0:4840` (every interface, the
    /// registered opc.tcp port) by default. The endpoint URLs name the
    /// kiosk's host name, not a wildcard.
    pub listen: String,
    /// The plant's name for the production line (`Line.LineId`).
    pub line_id: String,
    pub access_levels: AccessLevels,
    /// Let clients read without credentials.
    pub anonymous_read: bool,
    /// Offer the unsecured `None` endpoint (read-only). For commissioning.
    pub allow_security_none: bool,
    /// The account the line's HMI or PLC uses to call `SignOut()`; empty:
    /// nobody may.
    pub sign_out_user: String,
    /// Its password as an Argon2id PHC string keyed with the kiosk's
    /// pepper, as PINs are: a copy of the store does not give it away.
    pub sign_out_password_hash: String,
}

impl Default for LineSettings {
    fn default() -> Self {
        LineSettings {
            enabled: false,
            listen: "0.0.0.0:4840".into(),
            line_id: String::new(),
            access_levels: AccessLevels::default(),
            anonymous_read: true,
            allow_security_none: false,
            sign_out_user: String::new(),
            sign_out_password_hash: String::new(),
        }
    }
}

/// Why a line setting cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineSettingsError {
    #[error("the OPC UA address {0:?} is not host:port (e.g. 0.0.0.0:4840)")]
    Listen(String),
    #[error("the access level of {0} must be at least 1 (0 means nobody is signed in)")]
    ZeroLevel(&'static str),
}

impl LineSettings {
    /// The host and port of [`listen`](Self::listen).
    fn host_port(&self) -> Result<(String, u16), LineSettingsError> {
        let bad = || LineSettingsError::Listen(self.listen.clone());
        let (host, port) = self.listen.trim().rsplit_once(':').ok_or_else(bad)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = port.parse().map_err(|_| bad())?;
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(bad());
        }
        Ok((host.to_owned(), port))
    }

    /// Whether the server could start with these settings, and if so the
    /// host and port it listens on.
    pub fn check(&self) -> Result<(String, u16), LineSettingsError> {
        let address = self.host_port()?;
        for role in Role::ALL {
            if self.access_levels.for_role(role) == 0 {
                return Err(LineSettingsError::ZeroLevel(role.as_str()));
            }
        }
        Ok(address)
    }

    /// Sets the `SignOut()` account; the password is hashed here (Argon2id,
    /// the kiosk's pepper) and never stored. An empty user removes it.
    pub fn set_sign_out_account(
        &mut self,
        user: &str,
        password: &str,
        secrets: &Secrets,
    ) -> Result<(), StoreError> {
        let user = user.trim();
        if user.is_empty() {
            self.sign_out_user.clear();
            self.sign_out_password_hash.clear();
            return Ok(());
        }
        secret::validate(SecretKind::Password, password)?;
        self.sign_out_password_hash = secret::hash(password, secrets)?;
        self.sign_out_user = user.to_owned();
        Ok(())
    }

    /// The account that may call `SignOut()`, with the pepper to check it.
    pub fn sign_out_account(&self, secrets: &Secrets) -> Option<SignOutAccount> {
        (!self.sign_out_user.is_empty() && !self.sign_out_password_hash.is_empty()).then(|| {
            SignOutAccount {
                user: self.sign_out_user.clone(),
                phc: self.sign_out_password_hash.clone(),
                secrets: secrets.clone(),
            }
        })
    }
}

/// The `SignOut()` account, checkable off the store's thread (the OPC UA
/// server verifies on its own).
#[derive(Clone)]
pub struct SignOutAccount {
    user: String,
    phc: String,
    secrets: Secrets,
}

impl std::fmt::Debug for SignOutAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignOutAccount")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl SignOutAccount {
    /// Whether `user` and `password` are this account's. An unknown user
    /// costs one Argon2 verification too, so timing does not tell which
    /// user names exist; the hash comparison itself is constant-time.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        if user != self.user {
            secret::verify_nothing(password, &self.secrets);
            return false;
        }
        secret::verify(password, &self.phc, &self.secrets) != Verified::No
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_parse_or_name_the_problem() {
        let mut s = LineSettings::default();
        assert_eq!(s.host_port().unwrap(), ("0.0.0.0".into(), 4840));
        s.listen = "[::]:4841".into();
        assert_eq!(s.host_port().unwrap(), ("::".into(), 4841));
        for bad in [
            "",
            "4840",
            "host:",
            "host:port",
            ":4840",
            "a b:1",
            "h:70000",
        ] {
            s.listen = bad.into();
            assert_eq!(s.check(), Err(LineSettingsError::Listen(bad.into())));
        }
    }

    #[test]
    fn level_zero_is_refused_because_it_means_nobody() {
        let mut s = LineSettings::default();
        assert_eq!(s.check(), Ok(("0.0.0.0".into(), 4840)));
        s.access_levels.maintenance = 0;
        assert_eq!(s.check(), Err(LineSettingsError::ZeroLevel("maintenance")));
    }

    #[test]
    fn the_sign_out_password_is_stored_hashed_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::Store::open_in_dir(dir.path()).unwrap();
        let secrets = store.secrets();
        let mut s = LineSettings::default();
        assert!(s.sign_out_account(secrets).is_none());
        assert!(matches!(
            s.set_sign_out_account("plc", "short", secrets),
            Err(StoreError::WeakSecret(SecretKind::Password))
        ));
        s.set_sign_out_account(" plc ", "line-7-signout", secrets)
            .unwrap();
        assert_eq!(s.sign_out_user, "plc");
        assert!(s.sign_out_password_hash.starts_with("$argon2id$"));
        assert!(!s.sign_out_password_hash.contains("line-7-signout"));
        let account = s.sign_out_account(secrets).unwrap();
        assert!(account.verify("plc", "line-7-signout"));
        assert!(!account.verify("plc", "line-7-signout!"));
        assert!(!account.verify("PLC", "line-7-signout"));
        assert!(!format!("{account:?}").contains("argon2"));
        // Another kiosk's pepper cannot check (or be fooled by) this hash.
        let other_dir = tempfile::tempdir().unwrap();
        let other = crate::Store::open_in_dir(other_dir.path()).unwrap();
        assert!(!s
            .sign_out_account(other.secrets())
            .unwrap()
            .verify("plc", "line-7-signout"));
        s.set_sign_out_account("", "", secrets).unwrap();
        assert!(s.sign_out_account(secrets).is_none());
    }
}
