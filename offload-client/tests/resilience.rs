//! Retries, deadlines and the circuit breaker against a scripted gRPC server
//! on loopback that fails a set number of times before answering.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kubevision_offload_client::proto::gallery_service_server::{
    GalleryService, GalleryServiceServer,
};
use kubevision_offload_client::proto::*;
use kubevision_offload_client::{
    BreakerPolicy, ClientConfig, ClientError, OffloadClient, RetryPolicy,
};
use tonic::{Code, Request, Response, Status};

/// Fails the first `failures` calls with `code`, then answers; counts calls.
struct Scripted {
    calls: Arc<AtomicU32>,
    failures: u32,
    code: Code,
}

impl Scripted {
    fn next(&self) -> Result<(), Status> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if n < self.failures {
            Err(Status::new(self.code, "scripted failure"))
        } else {
            Ok(())
        }
    }
}

#[tonic::async_trait]
impl GalleryService for Scripted {
    async fn enroll(&self, r: Request<EnrollRequest>) -> Result<Response<GalleryChange>, Status> {
        self.next()?;
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
        r: Request<GetGalleryStatusRequest>,
    ) -> Result<Response<GalleryStatus>, Status> {
        self.next()?;
        // Echo whether the token arrived, through a field the test can see.
        let token = r
            .metadata()
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        Ok(Response::new(GalleryStatus {
            gallery_id: token,
            ..Default::default()
        }))
    }
    type SyncGalleryStream = tokio_stream::Iter<std::vec::IntoIter<Result<SyncEvent, Status>>>;
    async fn sync_gallery(
        &self,
        _: Request<SyncGalleryRequest>,
    ) -> Result<Response<Self::SyncGalleryStream>, Status> {
        self.next()?;
        let events = vec![
            Ok(SyncEvent {
                event: Some(sync_event::Event::Header(SyncHeader::default())),
            }),
            Ok(SyncEvent {
                event: Some(sync_event::Event::Removal(OperatorRemoval {
                    operator_id: "A".into(),
                    version: 2,
                })),
            }),
            Ok(SyncEvent {
                event: Some(sync_event::Event::Complete(SyncComplete { version: 2 })),
            }),
        ];
        Ok(Response::new(tokio_stream::iter(events)))
    }
}

async fn serve(failures: u32, code: Code) -> (String, Arc<AtomicU32>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let calls = Arc::new(AtomicU32::new(0));
    let service = GalleryServiceServer::new(Scripted {
        calls: calls.clone(),
        failures,
        code,
    });
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (url, calls)
}

fn client(url: &str, attempts: u32, breaker_after: u32) -> OffloadClient {
    let mut config = ClientConfig::new(url);
    config.retry = RetryPolicy {
        max_attempts: attempts,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
    };
    config.breaker = BreakerPolicy {
        failure_threshold: breaker_after,
        open_for: Duration::from_secs(60),
    };
    config.token = Some("t0k3n".into());
    OffloadClient::new(config).unwrap()
}

#[tokio::test]
async fn idempotent_calls_are_retried_through_transient_failures() {
    let (url, calls) = serve(2, Code::Unavailable).await;
    let status = client(&url, 3, 100)
        .gallery_status()
        .await
        .expect("the third attempt succeeds");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(
        status.gallery_id, "Bearer t0k3n",
        "every attempt carries the token"
    );

    let (url, calls) = serve(1, Code::ResourceExhausted).await;
    let sync = client(&url, 3, 100)
        .sync_gallery(1)
        .await
        .expect("a busy server is retried");
    assert_eq!(
        (
            sync.version,
            sync.changes.len(),
            calls.load(Ordering::SeqCst)
        ),
        (2, 1, 2)
    );
}

#[tokio::test]
async fn mutations_and_request_errors_are_not_retried() {
    let (url, calls) = serve(1, Code::Unavailable).await;
    let err = client(&url, 5, 100)
        .enroll(EnrollRequest {
            operator_id: "A".into(),
            frames: vec![],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), calls.load(Ordering::SeqCst)),
        (Some(Code::Unavailable), 1),
        "an enrollment may have landed: never resent"
    );
    assert!(err.should_fall_back());

    let (url, calls) = serve(1, Code::InvalidArgument).await;
    let err = client(&url, 5, 100).gallery_status().await.unwrap_err();
    assert_eq!(
        (err.code(), calls.load(Ordering::SeqCst)),
        (Some(Code::InvalidArgument), 1)
    );
    assert!(
        !err.should_fall_back(),
        "a bad request is not fixed by local recognition"
    );
}

#[tokio::test]
async fn the_breaker_opens_on_an_unreachable_service_and_fails_fast() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port(); // closed once dropped
    let client = client(&format!("http://127.0.0.1:{port}"), 1, 3);
    for _ in 0..3 {
        let err = client.gallery_status().await.unwrap_err();
        assert_eq!(err.code(), Some(Code::Unavailable), "{err}");
    }
    assert!(!client.breaker().is_closed());
    let started = std::time::Instant::now();
    let err = client.gallery_status().await.unwrap_err();
    assert!(matches!(err, ClientError::CircuitOpen(_)), "{err}");
    assert!(err.should_fall_back());
    assert!(
        started.elapsed() < Duration::from_millis(5),
        "an open circuit answers at once"
    );
}
