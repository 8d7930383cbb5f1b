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

use std::sync::Arc;

use kubevision_proto::v1::sign_in_service_server::SignInService;
use kubevision_proto::v1::{
    ListLockoutsRequest, Lockouts, ReportSignInRequest, SignInOutcome, SignInStanding,
};
use tonic::{Request, Response, Status};

use super::{check_operator_id, invalid, Core};
use crate::gallery::GalleryError;
use crate::store::{SignIn, Standing};

pub struct SignInApi(pub Arc<Core>);

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
