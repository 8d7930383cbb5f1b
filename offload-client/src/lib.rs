//! The kiosk's client for the KubeVision offload service.
//!
//! Every call has a deadline; idempotent calls (identify, verify, status,
//! sync) are retried with exponential back-off and jitter when the server is
//! busy or unreachable; mutations are never retried, since a lost reply does
//! not mean a lost change. A circuit breaker stops calling a failing service
//! for a while, so the kiosk falls back to local recognition at once instead
//! of waiting out a deadline at every sign-in: see
//! [`ClientError::should_fall_back`].
//!
//! Calls are spread over the service's replicas: every address of the
//! endpoint's host name (a headless Service has one per pod), followed as
//! pods come and go, a failing one set aside until it answers again, and a
//! retry sent to another replica: see the `balance` module and
//! [`OffloadClient::endpoints`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), kubevision_offload_client::ClientError> {
//! use kubevision_offload_client::{ClientConfig, OffloadClient};
//! let client = OffloadClient::new(ClientConfig::new("http://offload.kubevision:50051"))?;
//! let status = client.gallery_status().await?;
//! println!("{} operators", status.operator_count);
//! # Ok(()) }
//! ```

mod balance;
mod breaker;
mod config;
mod error;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use kubevision_proto::v1 as proto;
use proto::gallery_service_client::GalleryServiceClient;
use proto::recognition_service_client::RecognitionServiceClient;
use proto::sign_in_service_client::SignInServiceClient;
use proto::{
    sync_event, EnrollRequest, GalleryChange, GalleryStatus, GetGalleryStatusRequest,
    IdentifyRequest, IdentifyResponse, ListLockoutsRequest, RemoveOperatorRequest,
    ReportSignInRequest, SignInOutcome, SignInStanding, SyncGalleryRequest, SyncHeader,
    UpdateOperatorRequest, VerifyRequest, VerifyResponse,
};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

use balance::Balancer;
pub use balance::{EndpointStatus, Resolver};
pub use breaker::{BreakerPolicy, CircuitBreaker};
pub use config::{ClientConfig, RetryPolicy, TlsSettings};
pub use error::ClientError;

/// A cheap-to-clone handle on one connection per replica (HTTP/2
/// multiplexes calls).
#[derive(Clone)]
pub struct OffloadClient {
    balancer: Balancer,
    config: Arc<ClientConfig>,
    breaker: Arc<CircuitBreaker>,
    authorization: Option<MetadataValue<Ascii>>,
}

/// The generated clients on one replica's channel.
struct Stubs {
    recognition: RecognitionServiceClient<Channel>,
    gallery: GalleryServiceClient<Channel>,
    sign_in: SignInServiceClient<Channel>,
}

impl Stubs {
    fn new(channel: Channel, max_message_bytes: usize) -> Self {
        Self {
            recognition: RecognitionServiceClient::new(channel.clone())
                .max_decoding_message_size(max_message_bytes),
            gallery: GalleryServiceClient::new(channel.clone())
                .max_decoding_message_size(max_message_bytes),
            sign_in: SignInServiceClient::new(channel).max_decoding_message_size(max_message_bytes),
        }
    }
}

/// Everything a sync brought: apply `changes` in order to a copy at
/// `header.since_version` to reach `version`.
#[derive(Debug, Clone)]
pub struct GallerySync {
    pub header: SyncHeader,
    pub changes: Vec<sync_event::Event>,
    pub version: u64,
}

impl OffloadClient {
    /// Sets up the connections; they are made on first use (and remade after
    /// a failure), so a kiosk can start while the service is down. Call it
    /// inside a Tokio runtime: the connections and the look-ups of the
    /// host name run as tasks there.
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        let authorization =
            match &config.token {
                Some(token) => Some(format!("Bearer {token}").parse().map_err(|_| {
                    ClientError::Config("the token must be printable ASCII".into())
                })?),
                None => None,
            };
        Ok(Self {
            balancer: Balancer::new(&config, authorization.clone())?,
            breaker: Arc::new(CircuitBreaker::new(config.breaker)),
            config: Arc::new(config),
            authorization,
        })
    }

    /// The breaker, for status displays.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// The service's addresses known now, and which are in use (for status
    /// displays); empty until a host name has been looked up.
    pub fn endpoints(&self) -> Vec<EndpointStatus> {
        self.balancer.endpoints()
    }

    /// Who is this? (idempotent: retried)
    pub async fn identify(
        &self,
        request: IdentifyRequest,
    ) -> Result<IdentifyResponse, ClientError> {
        self.call(
            true,
            self.config.request_timeout,
            request,
            |mut c, r| async move { c.recognition.identify(r).await },
        )
        .await
    }

    /// Is this the claimed operator? (idempotent: retried)
    pub async fn verify(&self, request: VerifyRequest) -> Result<VerifyResponse, ClientError> {
        self.call(
            true,
            self.config.request_timeout,
            request,
            |mut c, r| async move { c.recognition.verify(r).await },
        )
        .await
    }

    /// Enrolls a new operator (not retried).
    pub async fn enroll(&self, request: EnrollRequest) -> Result<GalleryChange, ClientError> {
        self.call(
            false,
            self.config.request_timeout,
            request,
            |mut c, r| async move { c.gallery.enroll(r).await },
        )
        .await
    }

    /// Appends or replaces an operator's templates (not retried).
    pub async fn update_operator(
        &self,
        request: UpdateOperatorRequest,
    ) -> Result<GalleryChange, ClientError> {
        self.call(
            false,
            self.config.request_timeout,
            request,
            |mut c, r| async move { c.gallery.update_operator(r).await },
        )
        .await
    }

    /// Removes an operator (not retried).
    pub async fn remove_operator(
        &self,
        operator_id: impl Into<String>,
    ) -> Result<GalleryChange, ClientError> {
        let request = RemoveOperatorRequest {
            operator_id: operator_id.into(),
        };
        self.call(
            false,
            self.config.request_timeout,
            request,
            |mut c, r| async move { c.gallery.remove_operator(r).await },
        )
        .await
    }

    /// The gallery's size, version and format (idempotent: retried).
    pub async fn gallery_status(&self) -> Result<GalleryStatus, ClientError> {
        let request = GetGalleryStatusRequest {};
        self.call(
            true,
            self.config.request_timeout,
            request,
            |mut c, r| async move { c.gallery.get_gallery_status(r).await },
        )
        .await
    }

    /// Every change since `since_version`, read to the end (idempotent: the
    /// whole stream is retried). Runs under `sync_timeout`, not `request_timeout`.
    pub async fn sync_gallery(&self, since_version: u64) -> Result<GallerySync, ClientError> {
        self.call(
            true,
            self.config.sync_timeout,
            SyncGalleryRequest { since_version },
            |mut c, r| async move {
                collect_sync(c.gallery.sync_gallery(r).await?.into_inner())
                    .await
                    .map(Response::new)
            },
        )
        .await
    }

    /// Reports one sign-in outcome to the plant-wide count and returns the
    /// operator's standing (not retried: a lost reply may still have
    /// counted).
    pub async fn report_sign_in(
        &self,
        operator_id: impl Into<String>,
        outcome: SignInOutcome,
    ) -> Result<SignInStanding, ClientError> {
        let request = ReportSignInRequest {
            operator_id: operator_id.into(),
            outcome: outcome as i32,
        };
        self.call(
            false,
            self.config.request_timeout,
            request,
            |mut c, r| async move { c.sign_in.report_sign_in(r).await },
        )
        .await
    }

    /// Every operator locked plant-wide now (idempotent: retried).
    pub async fn lockouts(&self) -> Result<Vec<SignInStanding>, ClientError> {
        self.call(
            true,
            self.config.request_timeout,
            ListLockoutsRequest {},
            |mut c, r| async move { c.sign_in.list_lockouts(r).await },
        )
        .await
        .map(|l| l.locked)
    }

    /// One call: breaker check, replica, deadline, token, retries for
    /// idempotent calls (each on a replica not tried yet, if one is up).
    async fn call<Req, Resp, Fut>(
        &self,
        idempotent: bool,
        timeout: Duration,
        message: Req,
        send: impl Fn(Stubs, Request<Req>) -> Fut,
    ) -> Result<Resp, ClientError>
    where
        Req: Clone,
        Fut: Future<Output = Result<Response<Resp>, Status>>,
    {
        let policy = self.config.retry;
        let attempts = if idempotent {
            policy.max_attempts.max(1)
        } else {
            1
        };
        let mut tried = Vec::new();
        for attempt in 1..=attempts {
            self.breaker.admit()?;
            let outcome = match self.balancer.pick(&tried).await {
                Ok(replica) => {
                    tried.push(replica.address());
                    let mut request = Request::new(message.clone());
                    // Sent as grpc-timeout, so the server drops work nobody waits for.
                    request.set_timeout(timeout);
                    if let Some(auth) = &self.authorization {
                        request.metadata_mut().insert("authorization", auth.clone());
                    }
                    let stubs = Stubs::new(replica.channel(), self.config.max_message_bytes);
                    let started = std::time::Instant::now();
                    let outcome = send(stubs, request).await;
                    self.balancer.report(&replica, outcome.as_ref().err());
                    outcome.map_err(|status| {
                        // tonic reports its own expired deadline as CANCELLED; call it what it is.
                        if status.code() == Code::Cancelled && started.elapsed() >= timeout {
                            Status::deadline_exceeded(format!(
                                "no answer within the {timeout:?} deadline"
                            ))
                        } else {
                            status
                        }
                    })
                }
                Err(status) => Err(status), // the host name has no address
            };
            match outcome {
                Ok(response) => {
                    self.breaker.record(true);
                    return Ok(response.into_inner());
                }
                Err(status) => {
                    self.breaker
                        .record(!error::is_server_trouble(status.code()));
                    if attempt == attempts || !is_retryable(status.code()) {
                        return Err(ClientError::Rpc(status));
                    }
                    let pause = policy.backoff(attempt);
                    tracing::debug!(code = ?status.code(), attempt, ?pause, "retrying");
                    tokio::time::sleep(pause).await;
                }
            }
        }
        unreachable!("the loop returns on its last attempt")
    }
}

/// Busy or unreachable: the same request may well succeed a moment later.
fn is_retryable(code: Code) -> bool {
    matches!(code, Code::Unavailable | Code::ResourceExhausted)
}

async fn collect_sync(
    mut stream: tonic::Streaming<proto::SyncEvent>,
) -> Result<GallerySync, Status> {
    let mut header = None;
    let mut changes = Vec::new();
    while let Some(event) = stream.message().await? {
        match event.event {
            Some(sync_event::Event::Header(h)) => header = Some(h),
            Some(sync_event::Event::Complete(c)) => {
                let header =
                    header.ok_or_else(|| Status::internal("the sync stream had no header"))?;
                return Ok(GallerySync {
                    header,
                    changes,
                    version: c.version,
                });
            }
            Some(change) => changes.push(change),
            None => {} // an event kind newer than this client: skip it
        }
    }
    Err(Status::unavailable(
        "the sync stream ended before its completion marker",
    ))
}
