//! The gate in front of the gRPC services: the caller's identity is
//! resolved from the HTTP request's headers (bearer token) and its TLS
//! peer certificate, and its scope checked against the method, before a
//! byte of its body is read; an authenticated body is read under a
//! server-wide budget of request bytes and checked for its protobuf
//! structure before tonic decodes it.
//!
//! * Unauthenticated: answered UNAUTHENTICATED from the headers alone; the
//!   body is dropped unread (HTTP/2 resets the stream), so an anonymous
//!   16 MiB request costs nothing but the socket buffers.
//! * Out of scope: answered PERMISSION_DENIED (naming the identity, the
//!   method and the scope it lacks) the same way, unread. A known caller
//!   goes on with its [`Caller`] in the request extensions.
//! * Budget: the bytes of all authenticated requests being read and worked
//!   on together stay under `--max-decoding-bytes`; a request that would go
//!   over it is turned away with RESOURCE_EXHAUSTED. The bytes are held
//!   until the call's handler is done ([`HeldBytes`], which
//!   [`crate::service`] keeps), since the decoded message refers to them.
//! * Structure: a request with far more protobuf fields than its size
//!   explains ([`max_fields`]) is refused before decoding. Without this,
//!   16 MiB of empty repeated `frames` decode to 8 million structs (about
//!   400 MB); with it, what a request decodes to stays about its size.
//!
//! Health and reflection stay open, for probes and tools.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http_body_util::{BodyExt, Full};
use prost::bytes::{Bytes, BytesMut};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::body::Body;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::Status;

use crate::admission::AdmissionError;
use crate::config::Config;
use crate::error::ServiceError;
use crate::identity::{Caller, Identities, Scope};

/// Protobuf fields (at every depth) a request of `len` bytes may carry:
/// 16384, and one more per 64 bytes. A decoded field costs at most about
/// 64 bytes (a `Frame` struct), so a request decodes to no more than about
/// 1 MiB plus its own size. The largest real request, an enrollment of 32
/// frames and 64 templates with a profile, has a few hundred.
pub fn max_fields(len: usize) -> u64 {
    16_384 + len as u64 / 64
}
/// How deep the field count looks into nested messages.
const MAX_DEPTH: u32 = 6;
/// Paths open without a token.
const OPEN: &[&str] = &[
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// Request bytes an authenticated call holds against the budget until it
/// is dropped; the RPC layer keeps it for as long as the handler runs.
#[derive(Clone)]
pub struct HeldBytes(#[allow(dead_code)] Arc<Option<OwnedSemaphorePermit>>);

/// The tower layer: `Server::builder().layer(auth::layer(&config, identities))`.
/// Each request is checked against the identities in force when it
/// arrives ([`Identities::get`]), so a reloaded identities file applies to
/// the next request.
#[derive(Clone)]
pub struct GateLayer(Arc<Limits>);

struct Limits {
    identities: Arc<Identities>,
    budget: Arc<Semaphore>,
    budget_bytes: usize,
    max_message_bytes: usize,
}

pub fn layer(config: &Config, identities: Arc<Identities>) -> GateLayer {
    GateLayer::new(
        identities,
        config.max_message_bytes,
        config.max_decoding_bytes,
    )
}

impl GateLayer {
    /// A budget below one largest message would refuse every large
    /// request, so it is raised to that.
    pub fn new(
        identities: Arc<Identities>,
        max_message_bytes: usize,
        max_decoding_bytes: usize,
    ) -> Self {
        let budget_bytes = max_decoding_bytes
            .max(max_message_bytes.saturating_add(5))
            .min(Semaphore::MAX_PERMITS);
        Self(Arc::new(Limits {
            identities,
            budget: Arc::new(Semaphore::new(budget_bytes)),
            budget_bytes,
            max_message_bytes,
        }))
    }
}

impl<S> tower_layer::Layer<S> for GateLayer {
    type Service = Gate<S>;
    fn layer(&self, inner: S) -> Gate<S> {
        Gate {
            inner,
            limits: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Gate<S> {
    inner: S,
    limits: Arc<Limits>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> tower_service::Service<http::Request<Body>> for Gate<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let path = request.uri().path();
        if OPEN.iter().any(|open| path.starts_with(open)) {
            return Box::pin(self.inner.call(request));
        }
        match self.limits.authorize(&request) {
            Ok(caller) => {
                request.extensions_mut().insert(caller);
            }
            // The body is dropped unread.
            Err(refusal) => return Box::pin(std::future::ready(Ok(refuse(refusal)))),
        }
        // The service that was polled ready is the one to call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let limits = self.limits.clone();
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            match limits.read(body).await {
                Ok((bytes, held)) => {
                    parts.extensions.insert(held);
                    let body = Body::new(Full::new(bytes));
                    inner.call(http::Request::from_parts(parts, body)).await
                }
                Err(refusal) => Ok(refusal),
            }
        })
    }
}

/// A gRPC error response, its status from the one error table.
fn refuse(error: ServiceError) -> http::Response<Body> {
    Status::from(error)
        .into_http::<()>()
        .map(|()| Body::empty())
}

impl Limits {
    /// The caller, from the bearer token and the verified TLS client
    /// certificate, if it may call the request's method.
    fn authorize(&self, request: &http::Request<Body>) -> Result<Caller, ServiceError> {
        let bearer = match request.headers().get(http::header::AUTHORIZATION) {
            None => None,
            Some(value) => Some(
                value
                    .to_str()
                    .ok()
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .ok_or(ServiceError::Unauthenticated)?,
            ),
        };
        let names = request
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(TlsConnectInfo::peer_certs)
            .and_then(|chain| {
                chain
                    .first()
                    .map(|leaf| crate::identity::certificate_names(leaf))
            })
            .unwrap_or_default();
        let caller = self
            .identities
            .get()
            .resolve(bearer, &names)
            .map_err(|refusal| ServiceError::UnknownCaller(refusal.to_string()))?;
        let method = request.uri().path().rsplit('/').next().unwrap_or_default();
        let scope = Scope::for_method(method);
        if !caller.may(scope) {
            tracing::info!(identity = %caller.name, method, scope = scope.name(), "call outside the caller's scopes refused");
            return Err(ServiceError::PermissionDenied {
                identity: caller.name.to_string(),
                method: method.to_owned(),
                scope: scope.name(),
            });
        }
        Ok(caller)
    }

    /// Reads the whole body under the budget and checks its messages'
    /// structure. A message whose header declares more than the message
    /// limit is handed on as far as it was read: tonic refuses it from its
    /// header with its usual OUT_OF_RANGE.
    async fn read(&self, mut body: Body) -> Result<(Bytes, HeldBytes), http::Response<Body>> {
        let mut buffer = BytesMut::new();
        let mut held: Option<OwnedSemaphorePermit> = None;
        let over_budget = || refuse(AdmissionError::DecodeBudget(self.budget_bytes).into());
        while let Some(frame) = body.frame().await {
            let frame = match frame {
                Ok(frame) => frame,
                Err(status) => return Err(status.into_http::<()>().map(|()| Body::empty())),
            };
            let Ok(data) = frame.into_data() else {
                continue; // trailers: a unary request has none worth keeping
            };
            let n = u32::try_from(data.len()).map_err(|_| over_budget())?;
            let permit = self
                .budget
                .clone()
                .try_acquire_many_owned(n)
                .map_err(|_| over_budget())?;
            match &mut held {
                Some(h) => h.merge(permit),
                None => held = Some(permit),
            }
            buffer.extend_from_slice(&data);
            if self.declares_too_much(&buffer) {
                break;
            }
        }
        let bytes = buffer.freeze();
        check_structure(&bytes).map_err(refuse)?;
        Ok((bytes, HeldBytes(Arc::new(held))))
    }

    /// Whether a gRPC message header in `buffer` declares a message larger
    /// than the limit (only the first is looked at: requests are unary).
    fn declares_too_much(&self, buffer: &[u8]) -> bool {
        buffer.len() >= 5
            && u32::from_be_bytes([buffer[1], buffer[2], buffer[3], buffer[4]]) as usize
                > self.max_message_bytes
    }
}

/// Counts the protobuf fields of every gRPC message in `body`.
fn check_structure(body: &[u8]) -> Result<(), ServiceError> {
    let mut rest = body;
    while rest.len() >= 5 {
        let compressed = rest[0] != 0;
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        let Some(message) = rest.get(5..5 + len) else {
            return Ok(()); // truncated or over the limit: tonic says which
        };
        if !compressed {
            let max = max_fields(len);
            let fields = count_fields(message, 0, max).unwrap_or(0);
            if fields > max {
                return Err(ServiceError::InvalidArgument(format!(
                    "the request has more than {max} protobuf fields in {len} bytes; \
                     no valid request has that many (at most 32 frames and 64 templates)"
                )));
            }
        }
        rest = &rest[5 + len..];
    }
    Ok(())
}

/// The number of fields in `buf` if it parses as a protobuf message,
/// counting those of nested fields that parse as messages too (binary
/// bytes that happen to parse count as well: the bound is generous).
/// Stops counting past `max`.
fn count_fields(mut buf: &[u8], depth: u32, max: u64) -> Option<u64> {
    let mut count = 0u64;
    while !buf.is_empty() {
        let key = varint(&mut buf)?;
        if key >> 3 == 0 || key >> 3 > u64::from(u32::MAX >> 3) {
            return None;
        }
        count += 1;
        match key & 7 {
            0 => {
                varint(&mut buf)?;
            }
            1 => buf = buf.get(8..)?,
            5 => buf = buf.get(4..)?,
            2 => {
                let len = usize::try_from(varint(&mut buf)?).ok()?;
                let payload = buf.get(..len)?;
                buf = &buf[len..];
                // Printable text is not looked into: a string is decoded
                // as one, and a repeated field hidden in it would need
                // elements of 32 bytes and more (the length byte printable
                // too), which decode to little more than their size.
                let text = payload.iter().all(|b| (0x20..0x7f).contains(b));
                if depth < MAX_DEPTH && !payload.is_empty() && !text {
                    count += count_fields(payload, depth + 1, max).unwrap_or(0);
                }
            }
            _ => return None, // groups (unused by proto3) and invalid types
        }
        if count > max {
            return Some(count);
        }
    }
    Some(count)
}

fn varint(buf: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for i in 0..10 {
        let (&byte, rest) = buf.split_first()?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use kubevision_proto::v1::{
        frame::Content, EnrollRequest, Frame, IdentifyRequest, RawFaceCrop,
    };
    use prost::Message;

    use super::*;

    fn framed(message: &impl Message) -> Vec<u8> {
        let bytes = message.encode_to_vec();
        let mut out = vec![0u8];
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(&bytes);
        out
    }

    #[test]
    fn real_requests_pass_the_structure_check() {
        let crop = Frame {
            content: Some(Content::RawFaceCrop(RawFaceCrop {
                width: 92,
                height: 112,
                pixels: (0..92 * 112)
                    .map(|i| (i * 7 % 251) as u8)
                    .collect::<Vec<_>>()
                    .into(),
            })),
        };
        let enroll = EnrollRequest {
            operator_id: "orl-01".into(),
            frames: vec![crop.clone(); 32],
            templates: vec![vec![0x5a; 16 * 1024].into(); 64],
            ..Default::default()
        };
        assert!(check_structure(&framed(&enroll)).is_ok());
        let identify = IdentifyRequest {
            frames: vec![crop; 32],
            ..Default::default()
        };
        assert!(check_structure(&framed(&identify)).is_ok());
        // Long strings that parse as messages are not mistaken for a bomb.
        let long_id = EnrollRequest {
            operator_id: "x".repeat(100_000),
            ..Default::default()
        };
        assert!(check_structure(&framed(&long_id)).is_ok());
    }

    #[test]
    fn a_request_of_millions_of_empty_frames_is_refused_undecoded() {
        // 1 MiB of empty `frames` entries: 0x0a 0x00, half a million structs.
        let mut message = Vec::new();
        for _ in 0..(1 << 19) {
            message.extend_from_slice(&[0x0a, 0x00]);
        }
        let mut body = vec![0u8];
        body.extend_from_slice(&(message.len() as u32).to_be_bytes());
        body.extend_from_slice(&message);
        let err = check_structure(&body).unwrap_err().to_string();
        assert!(err.contains("protobuf fields in 1048576 bytes"), "{err}");
        // The decoded request really would have been that large.
        assert_eq!(
            IdentifyRequest::decode(&message[..]).unwrap().frames.len(),
            1 << 19
        );
    }

    #[test]
    fn varints_and_garbage() {
        assert_eq!(count_fields(&[0x08, 0x96, 0x01], 0, 10), Some(1));
        assert_eq!(count_fields(&[0x00], 0, 10), None, "field 0");
        assert_eq!(count_fields(&[0x0b], 0, 10), None, "a group");
        assert_eq!(count_fields(&[0x0a, 0x05, 0x01], 0, 10), None, "truncated");
        assert_eq!(count_fields(&[0xff; 11], 0, 10), None, "an endless varint");
    }
}
