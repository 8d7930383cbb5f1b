//! Every way an RPC can fail, and the gRPC status code each one maps to.

use kubevision_proto::profile::ProfileError;
use kubevision_proto::text::TextError;
use tonic::{Code, Status};

use crate::admission::AdmissionError;
use crate::backend::BackendError;
use crate::batcher::BatchError;
use crate::frames::FrameError;
use crate::gallery::GalleryError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("missing or wrong bearer token: send the metadata \"authorization: Bearer <token>\"")]
    Unauthenticated,
    #[error("unauthenticated: {0}")]
    UnknownCaller(String),
    #[error("identity {identity:?} may not call {method}: it lacks the {scope:?} scope")]
    PermissionDenied {
        identity: String,
        method: String,
        scope: &'static str,
    },
    /// Within the method's scope, but beyond what the scope may change
    /// (`enrol` on an administrator, say): `what` says what was asked.
    #[error("identity {identity:?} may not {what}: that needs the \"admin\" scope")]
    BeyondScope { identity: String, what: String },
    #[error("identity {identity:?} sent more than {limit} sign-in reports in {window_secs} s, more than a kiosk's sign-ins can make; retry later")]
    TooManyReports {
        identity: String,
        limit: usize,
        window_secs: u64,
    },
    #[error("this replica is still loading the gallery from its store; try another replica or retry shortly")]
    NotReady,
    #[error("{0}")]
    InvalidArgument(String),
    #[error("operator {0:?} is not enrolled")]
    UnknownOperator(String),
    #[error("frame {index}: no usable face for enrollment: {reason}")]
    NoUsableFace { index: usize, reason: String },
    /// Templates within the accept threshold of too many enrolled people
    /// (a "wolf": it would be the nearest match of their sign-ins).
    #[error(transparent)]
    Wolf(#[from] crate::wolf::Wolf),
    #[error("the client's gallery copy is at version {since}, ahead of this gallery's {current}: resync from version 0")]
    ClientAhead { since: u64, current: u64 },
    #[error("cannot make a template of the face: {0}")]
    Template(vision::Error),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Admission(#[from] AdmissionError),
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Gallery(#[from] GalleryError),
}

impl ServiceError {
    pub fn code(&self) -> Code {
        use ServiceError as E;
        match self {
            E::Unauthenticated => Code::Unauthenticated,
            E::UnknownCaller(_) => Code::Unauthenticated,
            E::PermissionDenied { .. } | E::BeyondScope { .. } => Code::PermissionDenied,
            E::TooManyReports { .. } => Code::ResourceExhausted,
            E::InvalidArgument(_) | E::NoUsableFace { .. } => Code::InvalidArgument,
            E::UnknownOperator(_) => Code::NotFound,
            E::ClientAhead { .. } | E::Wolf(_) => Code::FailedPrecondition,
            E::Frame(FrameError::NoDetector { .. }) => Code::FailedPrecondition,
            E::Frame(FrameError::Detection { .. }) => Code::Internal,
            E::Frame(_) => Code::InvalidArgument,
            E::Admission(
                AdmissionError::Full(_)
                | AdmissionError::StreamsFull(_)
                | AdmissionError::DecodeBudget(_),
            ) => Code::ResourceExhausted,
            E::Admission(AdmissionError::Cancelled) => Code::Cancelled,
            E::Admission(AdmissionError::StreamDeadline(_)) => Code::DeadlineExceeded,
            E::NotReady
            | E::Admission(AdmissionError::Closed)
            | E::Batch(BatchError::Stopped)
            | E::Gallery(GalleryError::Store(StoreError::Unavailable(_))) => Code::Unavailable,
            E::Gallery(GalleryError::Store(StoreError::AlreadyEnrolled(_))) => Code::AlreadyExists,
            E::Gallery(GalleryError::Store(StoreError::UnknownOperator(_))) => Code::NotFound,
            E::Gallery(GalleryError::Store(StoreError::TooManyTemplates { .. })) => {
                Code::FailedPrecondition
            }
            E::Gallery(GalleryError::Store(StoreError::Corrupt { .. })) => Code::DataLoss,
            E::Gallery(GalleryError::Store(StoreError::GalleryLost { .. })) => Code::DataLoss,
            E::Gallery(GalleryError::GalleryReplaced { .. }) => Code::DataLoss,
            E::Template(_)
            | E::Admission(AdmissionError::WorkerFailed(_))
            | E::Batch(_)
            | E::Backend(_)
            | E::Gallery(_) => Code::Internal,
        }
    }
}

/// An id or display name refused by the shared text rule: the client sent
/// it, so INVALID_ARGUMENT, with the rule's message (it names the field).
impl From<TextError> for ServiceError {
    fn from(e: TextError) -> Self {
        ServiceError::InvalidArgument(e.to_string())
    }
}

/// A profile refused by the shared profile rule, likewise.
impl From<ProfileError> for ServiceError {
    fn from(e: ProfileError) -> Self {
        ServiceError::InvalidArgument(e.to_string())
    }
}

impl From<ServiceError> for Status {
    fn from(e: ServiceError) -> Self {
        let code = e.code();
        if code == Code::Internal {
            tracing::error!(error = %e, "request failed");
        }
        Status::new(code, e.to_string())
    }
}
