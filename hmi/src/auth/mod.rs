//! The sign-in state machine, free of UI and I/O.
//!
//! Workers report what they found (a face identified, a PIN checked); the
//! machine decides the next state and returns the store effects (audit
//! rows, failure counts) for the store worker to carry out. Time comes in
//! as a parameter, so every timer is testable.

#[cfg(test)]
mod tests;

pub use crate::settings::{AuthPolicy, RolePolicy};
use vision::liveness::Verdict;

use crate::store::{AuditAction, AuditEvent, Millis, Operator, OperatorId, SecretCheck, Subject};

/// How a session was opened; also the audit log's `method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    FaceThenPin,
    PasswordThenFace,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::FaceThenPin => "face+pin",
            Method::PasswordThenFace => "password+face",
        }
    }
}

/// A face decision from the recognition worker.
#[derive(Debug, Clone, PartialEq)]
pub struct FaceEvidence {
    pub distance: f64,
    /// Which backend answered, for the badge and the log ("local", "offload").
    pub backend: &'static str,
    /// Whether the liveness checks passed for the frames behind this
    /// decision: the motion check and, when one was asked, the head-turn
    /// challenge.
    pub live: bool,
    /// The head-turn challenge's verdict, when one was asked (for a hint).
    pub challenge: Option<Verdict>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub operator: Operator,
    pub method: Method,
    pub since: Millis,
    pub last_activity: Millis,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AuthState {
    /// The idle screen: watching for faces, personnel-number entry offered.
    Idle,
    /// Face identified; the PIN is due.
    AwaitingPin {
        operator: Operator,
        face: FaceEvidence,
        since: Millis,
    },
    /// Password accepted; the face must match this operator.
    AwaitingFace {
        operator: Operator,
        since: Millis,
    },
    SignedIn(Session),
}

/// What the idle screen tells the person in front of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    WrongCredentials,
    Locked {
        until: Millis,
    },
    FaceFirstNotAllowed,
    PasswordFirstNotAllowed,
    NoFaceEnrolled,
    FaceMismatch,
    /// The face matched, but the frames looked like a photo or screen.
    NotLive,
    TimedOut,
    SignedOut,
    AutoSignedOut,
}

/// Store work that follows from a decision.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Audit(AuditEvent),
    /// Count a failure against the subject and log it.
    Failure(Subject, AuditEvent),
    /// Reset the subject's failure count and log the event.
    Success(Subject, AuditEvent),
}

/// The password step's result as the store worker found it.
#[derive(Debug, Clone, PartialEq)]
pub enum PasswordOutcome {
    UnknownPersonnelNo(String),
    Checked(Operator, SecretCheck),
}

pub struct AuthMachine {
    policy: AuthPolicy,
    state: AuthState,
    notice: Option<(Notice, Millis)>,
    /// The last refused face (operator, when): a photo held up keeps being
    /// identified, and one audit row per incident is enough.
    last_refused_face: Option<(OperatorId, Millis)>,
    /// Faces are ignored until then: whoever just cancelled or signed out
    /// is still in front of the camera.
    faces_ignored_until: Millis,
}

fn event(action: AuditAction, who: &Operator) -> AuditEvent {
    AuditEvent::new(action).actor(who.personnel_no.clone())
}

fn face_event(
    action: AuditAction,
    who: &Operator,
    method: Method,
    face: &FaceEvidence,
) -> AuditEvent {
    event(action, who)
        .method(method.as_str())
        .backend(face.backend)
        .distance(face.distance)
}

/// A failed face-first step, logged with the face's distance and backend.
fn face_pin_failure(who: &Operator, face: &FaceEvidence, detail: &str) -> Effect {
    Effect::Audit(
        face_event(AuditAction::SignInFailed, who, Method::FaceThenPin, face).detail(detail),
    )
}

impl AuthMachine {
    pub fn new(policy: AuthPolicy) -> Self {
        AuthMachine {
            policy,
            state: AuthState::Idle,
            notice: None,
            last_refused_face: None,
            faces_ignored_until: Millis::MIN,
        }
    }

    pub fn state(&self) -> &AuthState {
        &self.state
    }

    pub fn policy(&self) -> &AuthPolicy {
        &self.policy
    }

    pub fn set_policy(&mut self, policy: AuthPolicy) {
        self.policy = policy;
    }

    /// The current notice, if it has not expired.
    pub fn notice(&self, now: Millis) -> Option<Notice> {
        self.notice
            .filter(|&(_, at)| now - at < self.policy.notice_ms)
            .map(|(n, _)| n)
    }

    pub fn session(&self) -> Option<&Session> {
        match &self.state {
            AuthState::SignedIn(s) => Some(s),
            _ => None,
        }
    }

    fn go_idle(&mut self, notice: Notice, now: Millis) {
        self.state = AuthState::Idle;
        self.notice = Some((notice, now));
        self.faces_ignored_until = now + self.policy.notice_ms;
    }

    /// The recognition worker identified `operator` (1:N) in front of the
    /// idle screen; `locked_until` is the operator's lock as the store knows it.
    pub fn face_identified(
        &mut self,
        operator: Operator,
        face: FaceEvidence,
        locked_until: Option<Millis>,
        now: Millis,
    ) -> Vec<Effect> {
        if self.state != AuthState::Idle || now < self.faces_ignored_until {
            return Vec::new();
        }
        let refuse = |m: &mut Self, notice: Notice, detail: &str| {
            let repeat = m
                .last_refused_face
                .is_some_and(|(id, at)| id == operator.id && now - at < m.policy.notice_ms);
            m.last_refused_face = Some((operator.id, now));
            m.notice = Some((notice, now));
            if repeat {
                Vec::new()
            } else {
                vec![face_pin_failure(&operator, &face, detail)]
            }
        };
        if let Some(until) = locked_until.filter(|&u| u > now) {
            return refuse(self, Notice::Locked { until }, "locked");
        }
        if !self.policy.for_role(operator.role).face_then_pin {
            return refuse(
                self,
                Notice::FaceFirstNotAllowed,
                "face-first not allowed for role",
            );
        }
        if !face.live {
            return refuse(self, Notice::NotLive, "liveness check failed");
        }
        self.notice = None;
        self.state = AuthState::AwaitingPin {
            operator,
            face,
            since: now,
        };
        Vec::new()
    }

    /// The store worker checked the PIN typed in `AwaitingPin`.
    pub fn pin_checked(&mut self, check: SecretCheck, now: Millis) -> Vec<Effect> {
        let AuthState::AwaitingPin { operator, face, .. } = &self.state else {
            return Vec::new();
        };
        let (operator, face) = (operator.clone(), face.clone());
        let failed = |detail: &str| face_pin_failure(&operator, &face, detail);
        match check {
            SecretCheck::Accepted => {
                let effects = vec![Effect::Audit(face_event(
                    AuditAction::SignIn,
                    &operator,
                    Method::FaceThenPin,
                    &face,
                ))];
                self.sign_in(operator, Method::FaceThenPin, now);
                effects
            }
            SecretCheck::Rejected { locked_until: None } => {
                // Another try is allowed while the attempt has not timed out.
                self.notice = Some((Notice::WrongCredentials, now));
                vec![failed("wrong PIN")]
            }
            SecretCheck::Rejected {
                locked_until: Some(until),
            }
            | SecretCheck::Locked { until } => {
                self.lock(&operator, failed("wrong PIN"), until, now)
            }
        }
    }

    /// The store worker looked up the personnel number and checked the password.
    pub fn password_checked(&mut self, outcome: PasswordOutcome, now: Millis) -> Vec<Effect> {
        if self.state != AuthState::Idle {
            return Vec::new();
        }
        let method = Method::PasswordThenFace.as_str();
        let (operator, check) = match outcome {
            PasswordOutcome::UnknownPersonnelNo(no) => {
                self.go_idle(Notice::WrongCredentials, now);
                let e = AuditEvent::new(AuditAction::SignInFailed)
                    .actor(no)
                    .method(method)
                    .detail("unknown personnel number");
                return vec![Effect::Failure(Subject::Kiosk, e)];
            }
            PasswordOutcome::Checked(operator, check) => (operator, check),
        };
        let failed = |detail: &str| {
            Effect::Audit(
                event(AuditAction::SignInFailed, &operator)
                    .method(method)
                    .detail(detail),
            )
        };
        match check {
            SecretCheck::Accepted if !self.policy.for_role(operator.role).password_then_face => {
                self.go_idle(Notice::PasswordFirstNotAllowed, now);
                vec![failed("password-first not allowed for role")]
            }
            SecretCheck::Accepted if operator.enrolled_at.is_none() => {
                self.go_idle(Notice::NoFaceEnrolled, now);
                vec![failed("no face enrolled")]
            }
            SecretCheck::Accepted => {
                self.notice = None;
                self.state = AuthState::AwaitingFace {
                    operator,
                    since: now,
                };
                Vec::new()
            }
            SecretCheck::Rejected { locked_until: None } => {
                self.go_idle(Notice::WrongCredentials, now);
                vec![failed("wrong password")]
            }
            SecretCheck::Rejected {
                locked_until: Some(until),
            }
            | SecretCheck::Locked { until } => {
                self.lock(&operator, failed("wrong password"), until, now)
            }
        }
    }

    /// The recognition worker compared the live face with the operator
    /// awaited in `AwaitingFace` (1:1).
    pub fn face_verified(&mut self, matched: bool, face: FaceEvidence, now: Millis) -> Vec<Effect> {
        let AuthState::AwaitingFace { operator, .. } = &self.state else {
            return Vec::new();
        };
        let operator = operator.clone();
        let subject = Subject::Operator(operator.id);
        let e = |action| face_event(action, &operator, Method::PasswordThenFace, &face);
        if matched && face.live {
            let effects = vec![Effect::Success(subject, e(AuditAction::SignIn))];
            self.sign_in(operator, Method::PasswordThenFace, now);
            effects
        } else {
            let (notice, detail) = if matched {
                (Notice::NotLive, "liveness check failed")
            } else {
                (Notice::FaceMismatch, "face does not match")
            };
            self.go_idle(notice, now);
            vec![Effect::Failure(
                subject,
                e(AuditAction::SignInFailed).detail(detail),
            )]
        }
    }

    /// A failure that started (or met) a lock: back to idle, logging the
    /// failure and the lock.
    fn lock(
        &mut self,
        operator: &Operator,
        failed: Effect,
        until: Millis,
        now: Millis,
    ) -> Vec<Effect> {
        self.go_idle(Notice::Locked { until }, now);
        let locked = event(AuditAction::LockedOut, operator).detail(format!("until {until}"));
        vec![failed, Effect::Audit(locked)]
    }

    fn sign_in(&mut self, operator: Operator, method: Method, now: Millis) {
        self.notice = None;
        self.last_refused_face = None;
        self.state = AuthState::SignedIn(Session {
            operator,
            method,
            since: now,
            last_activity: now,
        });
    }

    /// Abandons a half-done sign-in (the person pressed Cancel).
    pub fn cancel(&mut self, now: Millis) {
        if matches!(
            self.state,
            AuthState::AwaitingPin { .. } | AuthState::AwaitingFace { .. }
        ) {
            self.state = AuthState::Idle;
            self.notice = None;
            self.faces_ignored_until = now + self.policy.notice_ms;
        }
    }

    /// A touch or key press: keeps the session alive.
    pub fn activity(&mut self, now: Millis) {
        if let AuthState::SignedIn(s) = &mut self.state {
            s.last_activity = now;
        }
    }

    pub fn sign_out(&mut self, now: Millis) -> Vec<Effect> {
        self.end_session(AuditAction::SignOut, Notice::SignedOut, "", now)
    }

    /// The line signed the operator out: its HMI or PLC called OPC UA
    /// `SignOut()` as `user`, whom the audit row names.
    pub fn sign_out_by_line(&mut self, user: &str, now: Millis) -> Vec<Effect> {
        let detail = format!("by the line: OPC UA SignOut() as {user}");
        self.end_session(AuditAction::SignOut, Notice::SignedOut, &detail, now)
    }

    fn end_session(
        &mut self,
        action: AuditAction,
        notice: Notice,
        detail: &str,
        now: Millis,
    ) -> Vec<Effect> {
        let AuthState::SignedIn(s) = &self.state else {
            return Vec::new();
        };
        let e = event(action, &s.operator)
            .method(s.method.as_str())
            .detail(detail);
        self.go_idle(notice, now);
        vec![Effect::Audit(e)]
    }

    /// Runs the timers: second-factor timeout and automatic sign-out.
    pub fn tick(&mut self, now: Millis) -> Vec<Effect> {
        match &self.state {
            AuthState::AwaitingPin {
                operator, since, ..
            }
            | AuthState::AwaitingFace { operator, since }
                if now - since >= self.policy.second_factor_timeout_ms =>
            {
                let e =
                    event(AuditAction::SignInFailed, operator).detail("second factor timed out");
                self.go_idle(Notice::TimedOut, now);
                vec![Effect::Audit(e)]
            }
            AuthState::SignedIn(s) if now - s.last_activity >= self.policy.auto_sign_out_ms => {
                self.end_session(AuditAction::AutoSignOut, Notice::AutoSignedOut, "", now)
            }
            _ => Vec::new(),
        }
    }
}
