//! Tells the production line who is signed in: the kiosk's side of the
//! OPC UA server (`kubevision-opcua`).
//!
//! The app hands this the sign-in state once a frame; what it publishes is
//! [`session_state`], a pure mapping from the session and the settings'
//! role → level table. The server runs on threads of its own, and so do
//! its start (the first start makes a certificate) and its stop (which
//! waits for subscribers to hear the sign-out): the UI thread only queues
//! and polls. `SignOut()` calls come back from [`LineLink::poll`] for the
//! app to carry out through the sign-in machine, like a tap on "Sign out";
//! refused `SignOut()` passwords from [`LineLink::refused_passwords`], as
//! audit rows ([`refusal_audit`], issue 22 finding 4).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender};
use kubevision_opcua::pki::ClientCertificate;
use kubevision_opcua::{
    Credentials, Handle, Line, LineServer, PasswordRefused, SessionState, SignOutRequest,
};

use crate::auth::Session;
use crate::settings::{AccessLevels, AuthPolicy, LineSettings, Settings, SignOutAccount};
use crate::store::{AuditAction, AuditEvent, Secrets};

/// Where the OPC UA server is, for the status bar and the line screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineStatus {
    Off,
    Starting,
    /// Listening; the endpoint URL clients use.
    Listening(String),
    /// The server could not start (a taken port, a bad address).
    Failed(String),
}

/// The rejected client certificates, or why they could not be listed.
pub type CertificateList = Result<Vec<ClientCertificate>, String>;

/// What the line is told about `session` (none: nobody signed in). The
/// automatic sign-out time is cut to whole seconds, so that a touch does
/// not republish more than once a second.
pub fn session_state(
    session: Option<&Session>,
    policy: &AuthPolicy,
    levels: &AccessLevels,
) -> SessionState {
    let Some(s) = session else {
        return SessionState::signed_out();
    };
    let time = |millis: i64| UNIX_EPOCH + Duration::from_millis(millis.max(0) as u64);
    let expires = s.last_activity + policy.auto_sign_out_ms;
    SessionState {
        signed_in: true,
        personnel_number: s.operator.personnel_no.clone(),
        display_name: s.operator.name.clone(),
        role: s.operator.role.as_str().to_owned(),
        access_level: levels.for_role(s.operator.role),
        signed_in_at: Some(time(s.since)),
        factors: s.method.as_str().to_owned(),
        expires_at: Some(time(expires - expires.rem_euclid(1000))),
    }
}

/// The audit row for a `SignOut()` password the server refused: a failed
/// sign-in to the line's account, naming the user name the client gave and
/// why (wrong, refused unchecked while locked, another check under way). No
/// actor: an OPC UA user name is no personnel number.
pub fn refusal_audit(refused: &PasswordRefused) -> AuditEvent {
    let mut detail = format!(
        "OPC UA SignOut() password refused for {:?}: {}",
        refused.user, refused.cause
    );
    if refused.unreported_before > 0 {
        detail += &format!(
            " ({} refusals before this one not recorded one by one: the queue was full)",
            refused.unreported_before
        );
    }
    AuditEvent::new(AuditAction::SignInFailed)
        .method("opcua_password")
        .detail(detail)
}

/// The kiosk's `SignOut()` account, as the server asks for it.
struct Account(Option<SignOutAccount>);

impl Credentials for Account {
    fn any_users(&self) -> bool {
        self.0.is_some()
    }

    fn verify(&self, user: &str, password: &str) -> bool {
        self.0.as_ref().is_some_and(|a| a.verify(user, password))
    }
}

/// A server start under way or done, from the thread that does it.
type Started = Result<Handle, String>;

pub struct LineLink {
    /// `pki/` in the secrets folder: the server's private key is a secret,
    /// trusted and rejected client certificates sit beside it.
    pki_dir: PathBuf,
    secrets: Secrets,
    /// `[opcua] listen` from the configuration file, over the settings.
    fixed_listen: Option<String>,
    server: Option<Handle>,
    starting: Option<Receiver<Started>>,
    /// The settings the server runs (or starts) with.
    running: Option<LineSettings>,
    status: LineStatus,
    /// What the line should be told, and whether the server has it.
    wanted: SessionState,
    told: bool,
    wake: Arc<dyn Fn() + Send + Sync>,
}

impl LineLink {
    pub fn new(
        secrets: Secrets,
        fixed_listen: Option<String>,
        wake: impl Fn() + Send + Sync + 'static,
    ) -> Self {
        LineLink {
            pki_dir: secrets.dir().join("opcua-pki"),
            secrets,
            fixed_listen,
            server: None,
            starting: None,
            running: None,
            status: LineStatus::Off,
            wanted: SessionState::signed_out(),
            told: false,
            wake: Arc::new(wake),
        }
    }

    pub fn pki_dir(&self) -> &Path {
        &self.pki_dir
    }

    pub fn status(&self) -> &LineStatus {
        &self.status
    }

    /// Starts, restarts or stops the server for these settings; the same
    /// line settings again change nothing.
    pub fn apply(&mut self, settings: &Settings) {
        let mut line = settings.line.clone();
        if let Some(listen) = &self.fixed_listen {
            line.listen = listen.clone();
        }
        let wanted = line.enabled.then_some(line);
        if wanted == self.running {
            return;
        }
        self.running = wanted.clone();
        // The old server stops on the starter thread, before the new one
        // binds the same port.
        let old = self.server.take();
        self.starting = None;
        self.told = false;
        let Some(line) = wanted else {
            self.status = LineStatus::Off;
            stop_in_background(old);
            return;
        };
        let config = match self.config(&line) {
            Ok(c) => c,
            Err(e) => {
                self.status = LineStatus::Failed(e);
                stop_in_background(old);
                return;
            }
        };
        self.status = LineStatus::Starting;
        let (tx, rx): (Sender<Started>, _) = crossbeam_channel::bounded(1);
        let wake = Arc::clone(&self.wake);
        let started = std::thread::Builder::new()
            .name("opcua-start".into())
            .spawn(move || {
                drop(old);
                let _ = tx.send(LineServer::start(config).map_err(|e| e.to_string()));
                wake();
            });
        match started {
            Ok(_) => self.starting = Some(rx),
            Err(e) => self.status = LineStatus::Failed(e.to_string()),
        }
    }

    fn config(&self, line: &LineSettings) -> Result<kubevision_opcua::Config, String> {
        let (host, port) = line.check().map_err(|e| e.to_string())?;
        let mut config = kubevision_opcua::Config::new(
            Line {
                line_id: line.line_id.clone(),
                kiosk_name: gethostname::gethostname().to_string_lossy().into_owned(),
            },
            &self.pki_dir,
        );
        // On a wildcard address the endpoint URLs name the host name.
        config.host = host;
        config.port = port;
        config.anonymous_read = line.anonymous_read;
        config.allow_security_none = line.allow_security_none;
        config.credentials = Some(Arc::new(Account(line.sign_out_account(&self.secrets))));
        Ok(config)
    }

    /// What the line should now be told; sent only when it changed.
    pub fn publish(&mut self, state: SessionState) {
        if state != self.wanted {
            self.wanted = state;
            self.told = false;
        }
        self.tell();
    }

    fn tell(&mut self) {
        if self.told {
            return;
        }
        if let Some(server) = &self.server {
            match server.publish(&self.wanted) {
                Ok(()) => self.told = true,
                Err(e) => self.status = LineStatus::Failed(e.to_string()),
            }
        }
    }

    /// Picks up a finished start and returns the `SignOut()` calls since
    /// the last poll.
    pub fn poll(&mut self) -> Vec<SignOutRequest> {
        if let Some(Ok(started)) = self.starting.as_ref().map(|rx| rx.try_recv()) {
            self.starting = None;
            match started {
                Ok(server) => {
                    self.status = LineStatus::Listening(server.endpoint_url().to_owned());
                    self.server = Some(server);
                    self.tell();
                }
                Err(e) => {
                    tracing::error!("OPC UA server: {e}");
                    self.status = LineStatus::Failed(e);
                }
            }
        }
        self.server
            .as_ref()
            .map(|s| s.sign_out_requests().try_iter().collect())
            .unwrap_or_default()
    }

    /// The audit rows of the `SignOut()` passwords refused since the last
    /// call.
    pub fn refused_passwords(&self) -> Vec<AuditEvent> {
        self.server
            .as_ref()
            .map(|s| {
                s.password_refusals()
                    .try_iter()
                    .map(|r| refusal_audit(&r))
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn stop_in_background(server: Option<Handle>) {
    if let Some(server) = server {
        let _ = std::thread::Builder::new()
            .name("opcua-stop".into())
            .spawn(move || drop(server));
    }
}

/// The client certificates the server refused (a directory read: the app
/// runs it off the UI thread).
pub fn rejected(pki_dir: &Path) -> CertificateList {
    kubevision_opcua::pki::rejected(pki_dir).map_err(|e| e.to_string())
}

/// Trusts a refused certificate, then lists the refused ones again.
pub fn trust(pki_dir: &Path, file_name: &str) -> CertificateList {
    kubevision_opcua::pki::trust(pki_dir, file_name).map_err(|e| e.to_string())?;
    rejected(pki_dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Method;
    use std::time::SystemTime;

    use crate::store::{Operator, OperatorId, Role};

    fn session(role: Role) -> Session {
        Session {
            operator: Operator {
                id: OperatorId(1),
                name: "Ada Lovelace".into(),
                personnel_no: "P-1042".into(),
                role,
                created_at: 0,
                enrolled_at: Some(0),
            },
            method: Method::FaceThenPin,
            since: 1_700_000_000_250,
            last_activity: 1_700_000_100_999,
        }
    }

    #[test]
    fn the_role_sets_the_level_and_the_session_its_times() {
        let policy = AuthPolicy::default();
        let mut levels = AccessLevels::default();
        levels.maintenance = 40;
        let s = session_state(Some(&session(Role::Maintenance)), &policy, &levels);
        assert!(s.signed_in);
        assert_eq!(s.access_level, 40);
        assert_eq!(
            (s.personnel_number.as_str(), s.role.as_str()),
            ("P-1042", "maintenance")
        );
        assert_eq!(s.factors, "face+pin");
        let secs = |t: Option<SystemTime>| t.unwrap().duration_since(UNIX_EPOCH).unwrap();
        assert_eq!(secs(s.signed_in_at).as_millis(), 1_700_000_000_250);
        // Last activity plus the automatic sign-out, in whole seconds.
        let expires = 1_700_000_100_999 + policy.auto_sign_out_ms;
        assert_eq!(secs(s.expires_at).as_millis() as i64, expires - 999);
        let op = session_state(Some(&session(Role::Operator)), &policy, &levels);
        assert_eq!(op.access_level, levels.operator);
    }

    #[test]
    fn a_refused_password_is_a_failed_sign_in_naming_the_user_and_the_cause() {
        use kubevision_opcua::RefusalCause;
        let row = |cause, unreported_before| {
            refusal_audit(&PasswordRefused {
                user: "plc\nforged".into(),
                cause,
                unreported_before,
            })
        };
        let wrong = row(RefusalCause::WrongPassword, 0);
        assert_eq!(wrong.action, Some(AuditAction::SignInFailed));
        assert_eq!(wrong.actor, None);
        // The client's user name quoted, so it cannot forge a line.
        assert_eq!(
            wrong.detail,
            "OPC UA SignOut() password refused for \"plc\\nforged\": wrong user name or password"
        );
        let locked = row(
            RefusalCause::Locked {
                left: Duration::from_millis(4_200),
            },
            0,
        );
        assert!(
            locked
                .detail
                .ends_with("locked after too many wrong passwords (5 s left), refused unchecked"),
            "{}",
            locked.detail
        );
        let busy = row(RefusalCause::Busy, 7);
        assert!(
            busy.detail
                .contains("another password check was under way (7 refusals before"),
            "{}",
            busy.detail
        );
    }

    #[test]
    fn nobody_signed_in_is_the_signed_out_state() {
        let s = session_state(None, &AuthPolicy::default(), &AccessLevels::default());
        assert_eq!(s, SessionState::signed_out());
        assert_eq!(s.access_level, 0);
    }
}
