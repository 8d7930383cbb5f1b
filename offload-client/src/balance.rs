//! Spreading calls over the service's replicas.
//!
//! The endpoint's host name is looked up (a headless Service answers with one
//! address per ready pod) and each address gets its own channel; the name is
//! looked up again every [`ClientConfig::resolve_every`], and sooner when an
//! address fails, so pods that come and go are followed. An address whose
//! call failed in transport (refused, reset, UNAVAILABLE) is set aside and
//! probed in the background (grpc.health.v1 Check, with back-off) until it
//! answers again. When every address is set aside, calls still try them, so
//! one endpoint behaves as it always did and the circuit breaker, not the
//! balancer, decides that the whole service is down.
//!
//! An endpoint whose host is an IP address is used as is, without look-ups.
//! Channels connect to the pod's address, but TLS checks the certificate
//! against the endpoint's host name (or [`TlsSettings::domain`]), and
//! `:authority` stays the endpoint's, as with one channel.
//!
//! [`TlsSettings::domain`]: crate::TlsSettings::domain

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tonic::codegen::http::Uri;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::config::{backoff, random};
use crate::{ClientConfig, ClientError};

/// Looks the endpoint's host name up: one address per replica.
pub trait Resolver: fmt::Debug + Send + Sync + 'static {
    /// The addresses of `host`, with `port` (the endpoint's) unless the
    /// resolver knows better.
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>>;
}

/// The system's resolver: `/etc/hosts`, then DNS (the cluster's, in a pod).
#[derive(Debug)]
struct SystemResolver;

impl Resolver for SystemResolver {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) })
    }
}

/// One address of the service, for status displays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointStatus {
    pub address: SocketAddr,
    /// False from a failed call until the address answers again.
    pub up: bool,
}

/// The lowest interval between two look-ups prompted by failures.
const MIN_LOOKUP_GAP: Duration = Duration::from_secs(1);

/// The replicas and how to reach them; cheap to clone.
#[derive(Clone)]
pub(crate) struct Balancer {
    inner: Arc<Inner>,
}

struct Inner {
    /// `None` when the endpoint's host is an IP address.
    lookup: Option<Lookup>,
    factory: ChannelFactory,
    probe: Probe,
    replicas: Mutex<Vec<Arc<Replica>>>,
    /// One look-up at a time.
    resolving: tokio::sync::Mutex<()>,
    /// Asks the background task for a look-up now.
    nudge: Arc<Notify>,
    picks: AtomicU64,
}

struct Lookup {
    resolver: Arc<dyn Resolver>,
    host: String,
    port: u16,
    timeout: Duration,
}

struct Replica {
    address: SocketAddr,
    channel: Channel,
    up: AtomicBool,
    in_flight: AtomicUsize,
    /// When it was last picked, in picks.
    last_pick: AtomicU64,
}

/// A replica chosen for one attempt; counts as in flight until dropped.
pub(crate) struct Pick(Arc<Replica>);

impl Pick {
    pub(crate) fn channel(&self) -> Channel {
        self.0.channel.clone()
    }

    pub(crate) fn address(&self) -> SocketAddr {
        self.0.address
    }
}

impl Drop for Pick {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Balancer {
    /// Checks the configuration now; with a host name, starts looking it up
    /// in the background (on the current Tokio runtime).
    pub(crate) fn new(
        config: &ClientConfig,
        authorization: Option<MetadataValue<Ascii>>,
    ) -> Result<Self, ClientError> {
        let invalid = |why: &dyn fmt::Display| {
            ClientError::Config(format!("invalid endpoint {:?}: {why}", config.endpoint))
        };
        let uri: Uri = config.endpoint.parse().map_err(|e| invalid(&e))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(invalid(&"the scheme must be http or https")),
        };
        let host = uri.host().ok_or_else(|| invalid(&"no host"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let factory = ChannelFactory::new(config, uri, &host, https);
        let literal = host.parse::<IpAddr>().ok();
        let replicas = match literal {
            Some(ip) => vec![factory.replica(SocketAddr::new(ip, port))?],
            // Checks the TLS settings before any look-up.
            None => factory
                .endpoint(SocketAddr::from(([127, 0, 0, 1], port)))
                .map(|_| Vec::new())?,
        };
        let lookup = literal.is_none().then(|| Lookup {
            resolver: config
                .resolver
                .clone()
                .unwrap_or_else(|| Arc::new(SystemResolver)),
            host,
            port,
            timeout: config.connect_timeout,
        });
        let balancer = Balancer {
            inner: Arc::new(Inner {
                lookup,
                factory,
                probe: Probe {
                    backoff: config.probe_backoff,
                    max_backoff: config.probe_max_backoff,
                    timeout: config.request_timeout,
                    authorization,
                },
                replicas: Mutex::new(replicas),
                resolving: tokio::sync::Mutex::new(()),
                nudge: Arc::new(Notify::new()),
                picks: AtomicU64::new(0),
            }),
        };
        if balancer.inner.lookup.is_some() {
            tokio::spawn(follow(
                Arc::downgrade(&balancer.inner),
                balancer.inner.nudge.clone(),
                config.resolve_every,
            ));
        }
        Ok(balancer)
    }

    /// Every address now known, and whether it is in use.
    pub(crate) fn endpoints(&self) -> Vec<EndpointStatus> {
        self.inner
            .snapshot()
            .iter()
            .map(|r| EndpointStatus {
                address: r.address,
                up: r.up.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// A replica for one attempt, preferring one that is up and not in
    /// `avoid` (the addresses this call already tried); looks the host up
    /// first if no address is known yet.
    pub(crate) async fn pick(&self, avoid: &[SocketAddr]) -> Result<Pick, Status> {
        let mut replicas = self.inner.snapshot();
        if replicas.is_empty() {
            self.inner.resolve(true).await?;
            replicas = self.inner.snapshot();
        }
        // Up and untried, then up, then untried, then any: when every
        // replica is set aside, calls still try them.
        let ranked: Vec<(u8, &Arc<Replica>)> = replicas
            .iter()
            .map(|r| {
                let up = r.up.load(Ordering::Relaxed);
                let tried = avoid.contains(&r.address);
                (u8::from(!up) * 2 + u8::from(tried), r)
            })
            .collect();
        let best = ranked
            .iter()
            .map(|(rank, _)| *rank)
            .min()
            .ok_or_else(|| Status::unavailable("the offload service has no address"))?;
        let candidates: Vec<&Arc<Replica>> = ranked
            .into_iter()
            .filter(|(rank, _)| *rank == best)
            .map(|(_, r)| r)
            .collect();
        Ok(self.choose(&candidates))
    }

    /// Power of two choices: of two replicas drawn at random, the one with
    /// fewer calls in flight, and on a tie the one picked less recently.
    ///
    /// Chosen over round robin because calls differ in cost (a sync streams
    /// for seconds, an identification takes milliseconds) and replicas in
    /// speed (one catching up after a restart, one whose GPU fell back to the
    /// CPU): a replica that is slow piles up calls in flight and gets fewer
    /// new ones, where round robin would keep sending it a full share. A
    /// kiosk making one call at a time always has a tie, and the tie-break
    /// then spreads its calls as evenly as round robin would.
    fn choose(&self, candidates: &[&Arc<Replica>]) -> Pick {
        let n = candidates.len() as u64;
        let chosen = if n == 1 {
            candidates[0]
        } else {
            let r = random();
            let i = r % n;
            let j = (i + 1 + (r >> 32) % (n - 1)) % n;
            let (a, b) = (candidates[i as usize], candidates[j as usize]);
            let load = |x: &Replica| {
                (
                    x.in_flight.load(Ordering::Relaxed),
                    x.last_pick.load(Ordering::Relaxed),
                )
            };
            if load(b) < load(a) {
                b
            } else {
                a
            }
        };
        let tick = self.inner.picks.fetch_add(1, Ordering::Relaxed) + 1;
        chosen.last_pick.store(tick, Ordering::Relaxed);
        chosen.in_flight.fetch_add(1, Ordering::Relaxed);
        Pick(Arc::clone(chosen))
    }

    /// What became of an attempt: a transport failure sets the replica aside
    /// until a probe finds it answering; any answer brings it back.
    pub(crate) fn report(&self, pick: &Pick, failure: Option<&Status>) {
        let replica = &pick.0;
        let answered = match failure {
            None => true,
            Some(status) if is_endpoint_failure(status) => false,
            // Gave up waiting: says nothing either way.
            Some(status) if matches!(status.code(), Code::Cancelled | Code::DeadlineExceeded) => {
                return
            }
            Some(_) => true, // an answer about the request
        };
        if answered {
            if !replica.up.swap(true, Ordering::Relaxed) {
                tracing::info!(address = %replica.address, "offload replica answering again");
            }
        } else if replica.up.swap(false, Ordering::Relaxed) {
            tracing::warn!(address = %replica.address, code = ?failure.map(Status::code), "offload replica failing: set aside");
            self.inner.nudge.notify_one();
            tokio::spawn(self.inner.probe.clone().until_up(Arc::downgrade(replica)));
        }
    }
}

/// The replica, not the request, failed: unreachable, refused, reset.
fn is_endpoint_failure(status: &Status) -> bool {
    // Transport errors the client could not classify come as UNKNOWN, with
    // the error as source; an UNKNOWN sent by the server has none.
    status.code() == Code::Unavailable
        || (status.code() == Code::Unknown && std::error::Error::source(status).is_some())
}

impl Inner {
    fn snapshot(&self) -> Vec<Arc<Replica>> {
        self.replicas
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Looks the host up and replaces the replicas with its addresses,
    /// keeping the channels (and states) of those already known. A failed
    /// look-up keeps the replicas as they are.
    async fn resolve(&self, only_if_none: bool) -> Result<(), Status> {
        let Some(lookup) = &self.lookup else {
            return Ok(());
        };
        let _one_at_a_time = self.resolving.lock().await;
        if only_if_none && !self.snapshot().is_empty() {
            return Ok(()); // another call just looked it up
        }
        let host = &lookup.host;
        let found =
            tokio::time::timeout(lookup.timeout, lookup.resolver.resolve(host, lookup.port)).await;
        let mut addresses = match found {
            Ok(Ok(addresses)) if !addresses.is_empty() => addresses,
            Ok(Ok(_)) => return Err(lookup_failed(host, &"no address")),
            Ok(Err(e)) => return Err(lookup_failed(host, &e)),
            Err(_) => return Err(lookup_failed(host, &"timed out")),
        };
        addresses.sort_unstable();
        addresses.dedup();
        let mut replicas = self.replicas.lock().unwrap_or_else(|p| p.into_inner());
        let next: Vec<Arc<Replica>> = addresses
            .into_iter()
            .filter_map(
                |address| match replicas.iter().find(|r| r.address == address) {
                    Some(known) => Some(Arc::clone(known)),
                    None => match self.factory.replica(address) {
                        Ok(new) => {
                            tracing::info!(%address, "offload replica added");
                            Some(new)
                        }
                        Err(e) => {
                            tracing::warn!(%address, error = %e, "offload replica not usable");
                            None
                        }
                    },
                },
            )
            .collect();
        for gone in replicas
            .iter()
            .filter(|r| !next.iter().any(|n| n.address == r.address))
        {
            tracing::info!(address = %gone.address, "offload replica removed");
        }
        *replicas = next;
        Ok(())
    }
}

fn lookup_failed(host: &str, why: &dyn fmt::Display) -> Status {
    tracing::warn!(host, %why, "cannot look the offload service up");
    Status::unavailable(format!("cannot look {host} up: {why}"))
}

/// Looks the host up now, every `every`, and when nudged (at most once a
/// `MIN_LOOKUP_GAP`), until the client is dropped.
async fn follow(inner: Weak<Inner>, nudge: Arc<Notify>, every: Duration) {
    loop {
        match inner.upgrade() {
            Some(inner) => {
                let _ = inner.resolve(false).await; // a failure was logged
            }
            None => return,
        }
        tokio::time::sleep(MIN_LOOKUP_GAP.min(every)).await;
        tokio::select! {
            _ = tokio::time::sleep(every.saturating_sub(MIN_LOOKUP_GAP)) => {}
            _ = nudge.notified() => {}
        }
    }
}

/// Re-probing a replica that was set aside.
#[derive(Clone)]
struct Probe {
    backoff: Duration,
    max_backoff: Duration,
    timeout: Duration,
    authorization: Option<MetadataValue<Ascii>>,
}

impl Probe {
    /// Probes with back-off until the replica answers, is dropped, or a call
    /// found it answering.
    async fn until_up(self, replica: Weak<Replica>) {
        for attempt in 1.. {
            tokio::time::sleep(backoff(self.backoff, self.max_backoff, attempt)).await;
            let Some(replica) = replica.upgrade() else {
                return; // no longer an address of the service
            };
            if replica.up.load(Ordering::Relaxed) {
                return;
            }
            if self.answers(replica.channel.clone()).await {
                tracing::info!(address = %replica.address, "offload replica answering again");
                replica.up.store(true, Ordering::Relaxed);
                return;
            }
        }
    }

    /// SERVING, or UNIMPLEMENTED from a server without the health service.
    async fn answers(&self, channel: Channel) -> bool {
        let mut request = tonic::Request::new(HealthCheckRequest {
            service: String::new(),
        });
        request.set_timeout(self.timeout);
        if let Some(auth) = &self.authorization {
            request.metadata_mut().insert("authorization", auth.clone());
        }
        let mut client = HealthClient::new(channel);
        match tokio::time::timeout(self.timeout, client.check(request)).await {
            Ok(Ok(response)) => response.into_inner().status == ServingStatus::Serving as i32,
            Ok(Err(status)) => status.code() == Code::Unimplemented,
            Err(_) => false,
        }
    }
}

/// Makes one channel per address from the client's settings.
struct ChannelFactory {
    scheme: &'static str,
    /// The endpoint as configured: sets `:authority`.
    origin: Uri,
    connect_timeout: Duration,
    tls: Option<ClientTlsConfig>,
}

impl ChannelFactory {
    fn new(config: &ClientConfig, origin: Uri, host: &str, https: bool) -> Self {
        let tls = config.tls.as_ref().map(|tls| {
            let mut tls_config =
                ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&tls.ca_pem));
            if let Some((cert, key)) = &tls.client_identity_pem {
                tls_config = tls_config.identity(Identity::from_pem(cert, key));
            }
            // The certificate names the service, not the pod's address.
            tls_config.domain_name(tls.domain.clone().unwrap_or_else(|| host.to_string()))
        });
        Self {
            scheme: if https { "https" } else { "http" },
            origin,
            connect_timeout: config.connect_timeout,
            tls,
        }
    }

    fn endpoint(&self, address: SocketAddr) -> Result<Endpoint, ClientError> {
        let mut endpoint = Channel::from_shared(format!("{}://{address}", self.scheme))
            .map_err(|e| ClientError::Config(format!("address {address}: {e}")))?
            .origin(self.origin.clone())
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        if let Some(tls) = &self.tls {
            endpoint = endpoint
                .tls_config(tls.clone())
                .map_err(|e| ClientError::Config(format!("TLS: {e}")))?;
        }
        Ok(endpoint)
    }

    /// A replica at `address`, up until shown otherwise; connects on first use.
    fn replica(&self, address: SocketAddr) -> Result<Arc<Replica>, ClientError> {
        Ok(Arc::new(Replica {
            address,
            channel: self.endpoint(address)?.connect_lazy(),
            up: AtomicBool::new(true),
            in_flight: AtomicUsize::new(0),
            last_pick: AtomicU64::new(0),
        }))
    }
}
