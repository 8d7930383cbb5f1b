use std::time::Duration;

use tonic::Code;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("client configuration: {0}")]
    Config(String),
    #[error(
        "the offload service is failing; not calling it for another {0:?} (recognise locally)"
    )]
    CircuitOpen(Duration),
    #[error("offload service: {}: {}", .0.code(), .0.message())]
    Rpc(tonic::Status),
}

impl ClientError {
    /// The gRPC status code, for an RPC that got an answer.
    pub fn code(&self) -> Option<Code> {
        match self {
            ClientError::Rpc(status) => Some(status.code()),
            _ => None,
        }
    }

    /// True when the service, not the request, is the problem, so the kiosk
    /// should recognise locally; false when the request itself was refused
    /// (bad image, unknown operator), which local recognition would not fix.
    pub fn should_fall_back(&self) -> bool {
        match self {
            ClientError::CircuitOpen(_) => true,
            ClientError::Rpc(status) => is_server_trouble(status.code()),
            ClientError::Config(_) => false,
        }
    }
}

/// Codes that say the service is unwell or unreachable (they count against
/// the circuit breaker); the others are answers about the request.
pub(crate) fn is_server_trouble(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Internal
            | Code::Unknown
            | Code::Unimplemented
            | Code::Unauthenticated
            | Code::PermissionDenied
            | Code::DataLoss
            | Code::Aborted
            | Code::Cancelled
    )
}
