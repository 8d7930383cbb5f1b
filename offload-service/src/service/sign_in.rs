//! SignInService: failed sign-ins counted across the plant.
//!
//! A kiosk counts its own failures (it must lock people out while it is
//! offline), so a PIN guesser who moves from line to line starts again at
//! every kiosk. Each kiosk therefore reports every outcome here; the count
//! lives in the store of record (one count for every replica, by the
//! store's clock) under the same rule the kiosks use
//! ([`kubevision_proto::lockout`]), and the kiosks adopt the plant's locks
//! ([`ListLockouts`](SignInService::list_lockouts)) at each sync.
//!
//! Reports come from identities with the `identify` scope: the kiosks that
//! sign people in. Reporting a failure for an operator who is not enrolled
//! is NOT_FOUND and counts nothing, so the table holds enrolled people only.
//!
//! Bounds on what one reporter can do (issue 22, finding 5):
//! * each identity may send at most [`REPORTS_PER_WINDOW`] reports in
//!   [`REPORT_WINDOW`] ([`ReportBound`], per replica), about what one
//!   kiosk's sign-ins make at the fastest (a burst and a PIN take seconds);
//!   beyond that RESOURCE_EXHAUSTED, which a kiosk takes as "retry later"
//!   and keeps its queue. Ten fake FAILED reports for each operator no
//!   longer lock a whole plant out in a tenth of a second.
//! * a SUCCEEDED report does not lift a lock before it runs out (the
//!   store's rule): a kiosk that honours the plant's locks never signs a
//!   locked operator in, so only a forged report could.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kubevision_proto::v1::sign_in_service_server::SignInService;
use kubevision_proto::v1::{
    ListLockoutsRequest, Lockouts, ReportSignInRequest, SignInOutcome, SignInStanding,
};
use tonic::{Request, Response, Status};

use super::{check_operator_id, invalid, Core};
use crate::error::ServiceError;
use crate::gallery::GalleryError;
use crate::store::{SignIn, Standing};

pub struct SignInApi(pub Arc<Core>);

/// Reports one identity may send in [`REPORT_WINDOW`].
pub const REPORTS_PER_WINDOW: usize = 30;
/// See [`REPORTS_PER_WINDOW`].
pub const REPORT_WINDOW: Duration = Duration::from_secs(60);

/// The sign-in reports each identity sent in the last [`REPORT_WINDOW`].
#[derive(Default)]
pub struct ReportBound(Mutex<HashMap<String, VecDeque<Instant>>>);

impl ReportBound {
    /// Counts one report from `identity` at `now`, or refuses it when the
    /// identity has sent [`REPORTS_PER_WINDOW`] within the window.
    pub fn admit(&self, identity: &str, now: Instant) -> Result<(), ServiceError> {
        let mut sent = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // Identities gone quiet are forgotten, so the map stays small.
        sent.retain(|_, times| {
            times
                .back()
                .is_some_and(|t| now.saturating_duration_since(*t) < REPORT_WINDOW)
        });
        let times = sent.entry(identity.to_owned()).or_default();
        while times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= REPORT_WINDOW)
        {
            times.pop_front();
        }
        if times.len() >= REPORTS_PER_WINDOW {
            return Err(ServiceError::TooManyReports {
                identity: identity.to_owned(),
                limit: REPORTS_PER_WINDOW,
                window_secs: REPORT_WINDOW.as_secs(),
            });
        }
        times.push_back(now);
        Ok(())
    }
}

fn to_proto(s: Standing) -> SignInStanding {
    SignInStanding {
        operator_id: s.operator_id,
        failures: s.failures,
        locked_for_ms: s.locked_for_ms,
    }
}

#[tonic::async_trait]
impl SignInService for SignInApi {
    async fn report_sign_in(
        &self,
        request: Request<ReportSignInRequest>,
    ) -> Result<Response<SignInStanding>, Status> {
        self.0
            .handle(
                "ReportSignIn",
                request,
                |core, ticket, req: ReportSignInRequest| async move {
                    let operator_id = check_operator_id(&req.operator_id)?;
                    let outcome = match req.outcome() {
                        SignInOutcome::Succeeded => SignIn::Succeeded,
                        SignInOutcome::Failed => SignIn::Failed,
                        SignInOutcome::Unspecified => {
                            return Err(invalid(
                                "outcome is unspecified: send SUCCEEDED or FAILED".into(),
                            ))
                        }
                    };
                    let actor = crate::identity::current()
                        .map_or_else(|| "unknown".to_owned(), |c| c.name.to_string());
                    if let Err(refused) = core.reports.admit(&actor, Instant::now()) {
                        tracing::warn!(identity = %actor, operator_id = %operator_id, "sign-in report over the identity's bound refused");
                        return Err(refused);
                    }
                    let standing = ticket
                        .run(move || {
                            core.gallery.store().record_sign_in(
                                &operator_id,
                                outcome,
                                &core.lockout,
                            )
                        })
                        .await?
                        .map_err(GalleryError::from)?;
                    if outcome == SignIn::Failed {
                        tracing::info!(
                            identity = %actor,
                            operator_id = %standing.operator_id,
                            failures = standing.failures,
                            locked_for_ms = standing.locked_for_ms,
                            "failed sign-in reported"
                        );
                    }
                    Ok(to_proto(standing))
                },
            )
            .await
    }

    async fn list_lockouts(
        &self,
        request: Request<ListLockoutsRequest>,
    ) -> Result<Response<Lockouts>, Status> {
        self.0
            .handle("ListLockouts", request, |core, ticket, _| async move {
                let locked = ticket
                    .run(move || core.gallery.store().lockouts())
                    .await?
                    .map_err(GalleryError::from)?;
                Ok(Lockouts {
                    locked: locked.into_iter().map(to_proto).collect(),
                })
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_identity_has_its_own_bound_per_window() {
        let bound = ReportBound::default();
        let t0 = Instant::now();
        for _ in 0..REPORTS_PER_WINDOW {
            bound.admit("kiosk-a", t0).unwrap();
        }
        let err = bound.admit("kiosk-a", t0).unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        assert!(
            err.to_string()
                .contains("\"kiosk-a\" sent more than 30 sign-in reports in 60 s"),
            "{err}"
        );
        // Another kiosk is not held back by the first.
        bound.admit("kiosk-b", t0).unwrap();
        // Once the window has passed, the first may report again.
        bound.admit("kiosk-a", t0 + REPORT_WINDOW).unwrap();
    }
}
