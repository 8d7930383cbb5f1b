//! Balancing across replicas, against real gRPC servers on loopback: each
//! replica answers every call and counts them, and an injected resolver plays
//! the headless Service's DNS.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kubevision_offload_client::proto::gallery_service_server::{
    GalleryService, GalleryServiceServer,
};
use kubevision_offload_client::proto::recognition_service_server::{
    RecognitionService, RecognitionServiceServer,
};
use kubevision_offload_client::proto::*;
use kubevision_offload_client::{
    BreakerPolicy, ClientConfig, ClientError, EndpointStatus, OffloadClient, Resolver, RetryPolicy,
    TlsSettings,
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic::{Code, Request, Response, Status};

/// The name the injected resolver answers for, as a headless Service would.
const HEADLESS: &str = "offload-headless.kubevision.test";

/// Calls a replica answered (or refused, when scripted to).
#[derive(Debug, Default)]
struct Counts {
    status: AtomicU32,
    identify: AtomicU32,
    enroll: AtomicU32,
}

impl Counts {
    fn total(&self) -> u32 {
        self.status.load(Ordering::SeqCst)
            + self.identify.load(Ordering::SeqCst)
            + self.enroll.load(Ordering::SeqCst)
    }
}

/// How a replica answers.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Script {
    Answer,
    /// Every status and identification: RESOURCE_EXHAUSTED (busy).
    Busy,
    /// Every enrolment: UNAVAILABLE (say, its database is down).
    EnrollUnavailable,
    /// Every identification: no answer for a minute.
    SlowIdentify,
}

#[derive(Clone)]
struct Replica {
    counts: Arc<Counts>,
    script: Script,
}

impl Replica {
    fn count(&self, counter: &AtomicU32) -> Result<(), Status> {
        counter.fetch_add(1, Ordering::SeqCst);
        match self.script {
            Script::Busy => Err(Status::resource_exhausted("scripted: busy")),
            _ => Ok(()),
        }
    }
}

#[tonic::async_trait]
impl GalleryService for Replica {
    async fn enroll(&self, r: Request<EnrollRequest>) -> Result<Response<GalleryChange>, Status> {
        self.counts.enroll.fetch_add(1, Ordering::SeqCst);
        if self.script == Script::EnrollUnavailable {
            return Err(Status::unavailable("scripted: the database is down"));
        }
        Ok(Response::new(GalleryChange {
            operator_id: r.into_inner().operator_id,
            gallery_version: 1,
            template_count: 1,
        }))
    }
    async fn update_operator(
        &self,
        _: Request<UpdateOperatorRequest>,
    ) -> Result<Response<GalleryChange>, Status> {
        Err(Status::unimplemented("not scripted"))
    }
    async fn remove_operator(
        &self,
        _: Request<RemoveOperatorRequest>,
    ) -> Result<Response<GalleryChange>, Status> {
        Err(Status::unimplemented("not scripted"))
    }
    async fn get_gallery_status(
        &self,
        _: Request<GetGalleryStatusRequest>,
    ) -> Result<Response<GalleryStatus>, Status> {
        self.count(&self.counts.status)?;
        Ok(Response::new(GalleryStatus::default()))
    }
    type SyncGalleryStream = tokio_stream::Iter<std::vec::IntoIter<Result<SyncEvent, Status>>>;
    async fn sync_gallery(
        &self,
        _: Request<SyncGalleryRequest>,
    ) -> Result<Response<Self::SyncGalleryStream>, Status> {
        Err(Status::unimplemented("not scripted"))
    }
}

#[tonic::async_trait]
impl RecognitionService for Replica {
    async fn identify(
        &self,
        _: Request<IdentifyRequest>,
    ) -> Result<Response<IdentifyResponse>, Status> {
        self.count(&self.counts.identify)?;
        if self.script == Script::SlowIdentify {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        Ok(Response::new(IdentifyResponse::default()))
    }
    async fn verify(&self, _: Request<VerifyRequest>) -> Result<Response<VerifyResponse>, Status> {
        Err(Status::unimplemented("not scripted"))
    }
}

/// A replica serving on loopback until killed.
struct Running {
    address: SocketAddr,
    counts: Arc<Counts>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// Starts a replica at `address` (port 0: any), with the health service.
async fn start(address: SocketAddr, script: Script, tls: Option<Identity>) -> Running {
    // A port just freed may take a moment to be bindable again.
    let listener = eventually("binding the replica's port", async || {
        tokio::net::TcpListener::bind(address).await.ok()
    })
    .await;
    let address = listener.local_addr().unwrap();
    let counts = Arc::new(Counts::default());
    let replica = Replica {
        counts: counts.clone(),
        script,
    };
    let (_, health) = tonic_health::server::health_reporter();
    let mut builder = Server::builder();
    if let Some(identity) = tls {
        builder = builder
            .tls_config(ServerTlsConfig::new().identity(identity))
            .unwrap();
    }
    let router = builder
        .add_service(health)
        .add_service(GalleryServiceServer::new(replica.clone()))
        .add_service(RecognitionServiceServer::new(replica));
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        router
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async {
                    let _ = stopped.await;
                },
            )
            .await
            .unwrap()
    });
    Running {
        address,
        counts,
        stop,
        task,
    }
}

impl Running {
    /// Stops serving, closes its connections and its port, as a pod that
    /// went away; gives its address back.
    async fn kill(self) -> SocketAddr {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the replica stops within 30 s")
            .unwrap();
        self.address
    }
}

/// The headless Service's DNS, as the test sets it.
#[derive(Debug, Default)]
struct FakeDns {
    addresses: Mutex<Vec<SocketAddr>>,
    failing: AtomicBool,
    lookups: AtomicU32,
}

impl FakeDns {
    fn new(addresses: &[SocketAddr]) -> Arc<Self> {
        let dns = Arc::new(Self::default());
        dns.set(addresses);
        dns
    }

    fn set(&self, addresses: &[SocketAddr]) {
        *self.addresses.lock().unwrap() = addresses.to_vec();
    }
}

impl Resolver for FakeDns {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        _port: u16,
    ) -> Pin<Box<dyn std::future::Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        let answer = if host != HEADLESS {
            Err(io::Error::new(io::ErrorKind::NotFound, format!("{host}?")))
        } else if self.failing.load(Ordering::SeqCst) {
            Err(io::Error::other("scripted: DNS server unreachable"))
        } else {
            Ok(self.addresses.lock().unwrap().clone())
        };
        Box::pin(async move { answer })
    }
}

/// Generous deadlines (a loaded 2-core machine), quick look-ups and probes,
/// no breaker in the way.
fn config(url: &str, dns: Option<&Arc<FakeDns>>, attempts: u32) -> ClientConfig {
    let mut config = ClientConfig::new(url);
    config.resolver = dns.map(|d| d.clone() as Arc<dyn Resolver>);
    config.resolve_every = Duration::from_millis(100);
    config.probe_backoff = Duration::from_millis(50);
    config.probe_max_backoff = Duration::from_millis(200);
    config.connect_timeout = Duration::from_secs(5);
    config.request_timeout = Duration::from_secs(10);
    config.retry = RetryPolicy {
        max_attempts: attempts,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
    };
    config.breaker = BreakerPolicy {
        failure_threshold: u32::MAX,
        open_for: Duration::from_secs(1),
    };
    config
}

fn headless_url() -> String {
    format!("http://{HEADLESS}:50051")
}

/// Polls `check` until it gives something, for at most 30 s.
async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn status_of(client: &OffloadClient, address: SocketAddr) -> Option<EndpointStatus> {
    client
        .endpoints()
        .into_iter()
        .find(|e| e.address == address)
}

fn counts(replicas: &[&Running]) -> Vec<u32> {
    replicas.iter().map(|r| r.counts.total()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_spread_over_every_replica() {
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let (a, b, c) = (
        start(any, Script::Answer, None).await,
        start(any, Script::Answer, None).await,
        start(any, Script::Answer, None).await,
    );
    let dns = FakeDns::new(&[a.address, b.address, c.address]);
    let client = OffloadClient::new(config(&headless_url(), Some(&dns), 1)).unwrap();

    for i in 0..300 {
        if i % 2 == 0 {
            client.gallery_status().await.unwrap();
        } else {
            client.identify(IdentifyRequest::default()).await.unwrap();
        }
    }
    let spread = counts(&[&a, &b, &c]);
    assert_eq!(spread.iter().sum::<u32>(), 300, "one attempt per call");
    assert!(
        spread.iter().all(|&n| n >= 60),
        "each of three replicas gets a fair share of 300 calls: {spread:?}"
    );

    // Calls in flight together spread too.
    let together: Vec<_> = (0..60)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.gallery_status().await })
        })
        .collect();
    for call in together {
        call.await.unwrap().unwrap();
    }
    let after = counts(&[&a, &b, &c]);
    assert_eq!(after.iter().sum::<u32>(), 360);
    assert!(
        after.iter().zip(&spread).all(|(now, before)| now > before),
        "{spread:?} then {after:?}"
    );

    let mut endpoints = client.endpoints();
    endpoints.sort_by_key(|e| e.address);
    let mut expected: Vec<_> = [a.address, b.address, c.address]
        .into_iter()
        .map(|address| EndpointStatus { address, up: true })
        .collect();
    expected.sort_by_key(|e| e.address);
    assert_eq!(endpoints, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_replica_is_set_aside_until_it_answers_again() {
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let (a, b, c) = (
        start(any, Script::Answer, None).await,
        start(any, Script::Answer, None).await,
        start(any, Script::Answer, None).await,
    );
    let dns = FakeDns::new(&[a.address, b.address, c.address]);
    // Without retries, a call sent to the dead replica fails: it shows.
    let strict = OffloadClient::new(config(&headless_url(), Some(&dns), 1)).unwrap();
    let retrying = OffloadClient::new(config(&headless_url(), Some(&dns), 3)).unwrap();
    for _ in 0..30 {
        strict.gallery_status().await.unwrap();
        retrying.gallery_status().await.unwrap();
    }
    assert!(counts(&[&a, &b, &c]).iter().all(|&n| n > 0));

    let dead = b.kill().await;
    // A retry goes to another replica: no call fails.
    for _ in 0..30 {
        retrying
            .gallery_status()
            .await
            .expect("retried on a live replica");
    }
    assert_eq!(
        status_of(&retrying, dead).map(|e| e.up),
        Some(false),
        "the dead replica was tried, then set aside"
    );

    eventually(
        "the strict client sets the dead replica aside",
        async || {
            if let Err(e) = strict.gallery_status().await {
                assert_eq!(e.code(), Some(Code::Unavailable), "{e}");
                assert!(e.should_fall_back());
            }
            (!status_of(&strict, dead)?.up).then_some(())
        },
    )
    .await;
    let before = counts(&[&a, &c]);
    for _ in 0..60 {
        strict
            .gallery_status()
            .await
            .expect("no call is sent to the dead replica");
    }
    let after = counts(&[&a, &c]);
    assert_eq!(
        after.iter().sum::<u32>() - before.iter().sum::<u32>(),
        60,
        "the live replicas answered every call"
    );
    assert!(
        after.iter().zip(&before).all(|(now, then)| now > then),
        "both live replicas share the load: {before:?} then {after:?}"
    );
    assert!(!strict.endpoints().iter().any(|e| e.address == dead && e.up));

    // Back on the same port: the probes find it, calls go to it again.
    let b = start(dead, Script::Answer, None).await;
    // Each client marks it up when its own probe answers: wait for both,
    // not only for two calls (which one client alone can make).
    eventually("the restarted replica gets calls again", async || {
        strict.gallery_status().await.unwrap();
        retrying.gallery_status().await.unwrap();
        let up = |client| status_of(client, dead).is_some_and(|e| e.up);
        (b.counts.total() >= 2 && up(&strict) && up(&retrying)).then_some(())
    })
    .await;
    assert_eq!(status_of(&strict, dead).map(|e| e.up), Some(true));
    assert_eq!(status_of(&retrying, dead).map(|e| e.up), Some(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_goes_to_another_replica_and_a_mutation_is_never_retried() {
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let (a, busy, c) = (
        start(any, Script::Answer, None).await,
        start(any, Script::Busy, None).await,
        start(any, Script::Answer, None).await,
    );
    let dns = FakeDns::new(&[a.address, busy.address, c.address]);
    // Two attempts: the second must not go back to the busy replica.
    let client = OffloadClient::new(config(&headless_url(), Some(&dns), 2)).unwrap();
    for _ in 0..60 {
        client
            .identify(IdentifyRequest::default())
            .await
            .expect("a busy replica's refusal is retried elsewhere");
    }
    assert!(
        busy.counts.total() > 0,
        "the busy replica was tried first by some calls"
    );
    assert_eq!(
        a.counts.total() + c.counts.total(),
        60,
        "every call answered once"
    );
    assert!(client.endpoints().iter().all(|e| e.up), "busy is not down");

    // With a call in flight at the other replica, the busy one is the less
    // loaded: every first attempt goes there, and every retry must not.
    let (slow, busy) = (
        start(any, Script::SlowIdentify, None).await,
        start(any, Script::Busy, None).await,
    );
    let dns = FakeDns::new(&[slow.address, busy.address]);
    let client = OffloadClient::new(config(&headless_url(), Some(&dns), 2)).unwrap();
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move { client.identify(IdentifyRequest::default()).await }
    });
    eventually(
        "an identification in flight at the slow replica",
        async || (slow.counts.identify.load(Ordering::SeqCst) == 1).then_some(()),
    )
    .await;
    for _ in 0..20 {
        client
            .gallery_status()
            .await
            .expect("retried at the other replica");
    }
    assert_eq!(slow.counts.status.load(Ordering::SeqCst), 20);
    assert!(busy.counts.status.load(Ordering::SeqCst) > 0);
    in_flight.abort();

    // Every replica refuses enrolments as UNAVAILABLE: an enrolment may have
    // landed all the same, so it is sent once, however many attempts.
    let refusing = [
        start(any, Script::EnrollUnavailable, None).await,
        start(any, Script::EnrollUnavailable, None).await,
        start(any, Script::EnrollUnavailable, None).await,
    ];
    let addresses: Vec<_> = refusing.iter().map(|r| r.address).collect();
    let dns = FakeDns::new(&addresses);
    let client = OffloadClient::new(config(&headless_url(), Some(&dns), 5)).unwrap();
    for sent in 1..=3 {
        let err = client
            .enroll(EnrollRequest {
                operator_id: format!("P{sent}"),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(Code::Unavailable), "{err}");
        assert!(err.should_fall_back());
        let enrolments: u32 = refusing
            .iter()
            .map(|r| r.counts.enroll.load(Ordering::SeqCst))
            .sum();
        assert_eq!(enrolments, sent, "never resent, to any replica");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replicas_follow_the_name() {
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let (a, b, c, d) = (
        start(any, Script::Answer, None).await,
        start(any, Script::Answer, None).await,
        start(any, Script::Answer, None).await,
        start(any, Script::Answer, None).await,
    );
    let dns = FakeDns::new(&[a.address, b.address, c.address]);
    let client = OffloadClient::new(config(&headless_url(), Some(&dns), 1)).unwrap();
    for _ in 0..30 {
        client.gallery_status().await.unwrap();
    }
    assert_eq!(d.counts.total(), 0, "not an address of the service yet");
    assert_eq!(client.endpoints().len(), 3);

    // A fourth pod.
    dns.set(&[a.address, b.address, c.address, d.address]);
    eventually("the new replica gets calls", async || {
        client.gallery_status().await.unwrap();
        (d.counts.total() > 0).then_some(())
    })
    .await;
    assert_eq!(client.endpoints().len(), 4);

    // One goes away from the name (it still answers: only the name says so).
    dns.set(&[a.address, c.address, d.address]);
    eventually("the removed replica is dropped", async || {
        status_of(&client, b.address).is_none().then_some(())
    })
    .await;
    let before = b.counts.total();
    let others = counts(&[&a, &c, &d]).iter().sum::<u32>();
    for _ in 0..60 {
        client.gallery_status().await.unwrap();
    }
    assert_eq!(b.counts.total(), before, "no calls to a removed replica");
    assert_eq!(counts(&[&a, &c, &d]).iter().sum::<u32>(), others + 60);

    // A failed look-up keeps the replicas known.
    dns.failing.store(true, Ordering::SeqCst);
    let lookups = dns.lookups.load(Ordering::SeqCst);
    eventually("a failed look-up or two", async || {
        (dns.lookups.load(Ordering::SeqCst) >= lookups + 2).then_some(())
    })
    .await;
    assert_eq!(client.endpoints().len(), 3);
    for _ in 0..10 {
        client.gallery_status().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_plain_endpoint_works() {
    let server = start(SocketAddr::from(([127, 0, 0, 1], 0)), Script::Answer, None).await;

    // An IP address is used as is: the resolver is never asked.
    let dns = FakeDns::new(&[]);
    let client =
        OffloadClient::new(config(&format!("http://{}", server.address), Some(&dns), 1)).unwrap();
    assert_eq!(
        client.endpoints(),
        vec![EndpointStatus {
            address: server.address,
            up: true
        }]
    );
    for _ in 0..5 {
        client.gallery_status().await.unwrap();
    }
    assert_eq!(dns.lookups.load(Ordering::SeqCst), 0);

    // A name with one address.
    let dns = FakeDns::new(&[server.address]);
    let client = OffloadClient::new(config(&headless_url(), Some(&dns), 1)).unwrap();
    assert!(client.endpoints().is_empty(), "nothing looked up yet");
    for _ in 0..5 {
        client.identify(IdentifyRequest::default()).await.unwrap();
    }
    assert_eq!(client.endpoints().len(), 1);
    assert_eq!(server.counts.total(), 10);

    // The system resolver (localhost may also give ::1, where nothing
    // listens: the retries move on to 127.0.0.1).
    let client = OffloadClient::new(config(
        &format!("http://localhost:{}", server.address.port()),
        None,
        3,
    ))
    .unwrap();
    client.gallery_status().await.unwrap();
    assert!(status_of(&client, server.address).is_some_and(|e| e.up));

    // A name without an address: the service is unreachable, fall back.
    let client =
        OffloadClient::new(config("http://nowhere.kubevision.test:1", Some(&dns), 1)).unwrap();
    let err = client.gallery_status().await.unwrap_err();
    assert_eq!(err.code(), Some(Code::Unavailable), "{err}");
    assert!(err.should_fall_back());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_checks_the_service_name_not_the_pod_address() {
    use rcgen::{CertificateParams, KeyPair};
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec![HEADLESS.to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let identity = || Identity::from_pem(cert.pem(), key.serialize_pem());
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let (a, b) = (
        start(any, Script::Answer, Some(identity())).await,
        start(any, Script::Answer, Some(identity())).await,
    );
    let tls = TlsSettings {
        ca_pem: cert.pem().into_bytes(),
        client_identity_pem: None,
        domain: None,
    };
    let dns = FakeDns::new(&[a.address, b.address]);
    let mut by_name = config(&format!("https://{HEADLESS}:50051"), Some(&dns), 1);
    by_name.tls = Some(tls.clone());
    let client = OffloadClient::new(by_name).unwrap();
    for _ in 0..10 {
        client
            .gallery_status()
            .await
            .expect("the certificate names the service");
    }
    assert!(a.counts.total() > 0 && b.counts.total() > 0);

    // The same pod by its address: the certificate does not name it.
    let mut by_address = config(&format!("https://{}", a.address), None, 1);
    by_address.tls = Some(tls);
    let err = OffloadClient::new(by_address)
        .unwrap()
        .gallery_status()
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Rpc(_)), "{err}");
    assert_eq!(err.code(), Some(Code::Unavailable), "{err}");
}
