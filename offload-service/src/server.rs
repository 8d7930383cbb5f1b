//! Assembles the service from its configuration and runs it until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use kubevision_proto::v1::gallery_service_server::GalleryServiceServer;
use kubevision_proto::v1::recognition_service_server::RecognitionServiceServer;
use kubevision_proto::v1::sign_in_service_server::SignInServiceServer;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::server::TcpIncoming;
use tonic::transport::ServerTlsConfig;
use tonic_health::ServingStatus;
use vision::burst::BurstRule;
use vision::lbph::LbphParams;

use crate::admission::Admission;
use crate::backend::{self, BackendError};
use crate::batcher::ActiveBatcher;
use crate::config::Config;
use crate::frames::FaceReader;
use crate::gallery::{GalleryError, OperatorGallery};
use crate::identity::Identities;
use crate::metrics::{self, Metrics};
use crate::recogniser::Recogniser;
use crate::service::{Core, GalleryApi, RecognitionApi, ReportBound, SignInApi};
use crate::store::{
    GalleryStore, PostgresSettings, PostgresStore, SqliteStore, StoreError, StoreLocation,
};
use crate::tls::{self, TlsError};
use crate::wolf::WolfRule;

/// The gRPC services whose health is reported by name (besides "").
const SERVICES: &[&str] = &[
    "kubevision.v1.RecognitionService",
    "kubevision.v1.GalleryService",
    "kubevision.v1.SignInService",
];

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot load the gallery: {0}")]
    Gallery(#[from] GalleryError),
    #[error("backend: {0}")]
    Backend(#[from] BackendError),
    #[error("the {kind} recogniser cannot start: {source}")]
    Recogniser {
        kind: vision::recogniser::Kind,
        source: vision::Error,
    },
    #[error("the matcher cannot start")]
    Batcher(#[from] crate::batcher::BatchError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// A service with its ports bound, ready to run.
pub struct Server {
    config: Config,
    core: Arc<Core>,
    grpc: TcpListener,
    metrics: TcpListener,
    tls: Option<ServerTlsConfig>,
    identities: Arc<Identities>,
}

impl Server {
    /// Opens the store, loads the backend and binds both ports.
    pub async fn bind(config: Config) -> Result<Self, ServerError> {
        config.validate().map_err(ServerError::Config)?;
        if !config.has_credentials() {
            tracing::warn!(
                grpc = %config.listen,
                "--allow-unauthenticated: NO CREDENTIALS ARE CHECKED; anyone who reaches the port can read and change the gallery. For a trial only"
            );
        }
        let tls = tls::server_config(&config)?;
        let identities = Arc::new(Identities::from_config(&config).map_err(ServerError::Config)?);
        let metrics = Metrics::new();
        let params = LbphParams::default();
        let kind = config.recogniser;
        // dlib's models are checked before anything else is opened: a
        // replica told to run dlib without them must not start.
        let recogniser = Recogniser::load(kind, params)
            .map_err(|source| ServerError::Recogniser { kind, source })?;
        let backend = backend::create_for(kind, config.backend, params)?;
        let store = open_store(&config)?;
        let gallery = Arc::new(
            OperatorGallery::with_backend(store, backend.clone(), params, metrics.clone())
                .with_wolf_rule(WolfRule {
                    gallery_kind: kind,
                    accept_threshold: config.threshold(),
                    limit: config.max_wolf_matches,
                }),
        );
        // The first catch-up, here: a store that cannot be read is a problem
        // to report at start, except one that is merely unreachable (the
        // follower keeps trying, and the replica is NOT_SERVING meanwhile).
        // (The store's clients block: off the async threads.)
        let first = tokio::task::spawn_blocking({
            let gallery = gallery.clone();
            move || gallery.catch_up()
        });
        match first
            .await
            .map_err(|e| ServerError::Config(format!("the first catch-up failed: {e}")))?
        {
            Ok(_) => {}
            Err(GalleryError::Store(StoreError::Unavailable(why))) => {
                tracing::warn!(%why, "the gallery store is unreachable: not serving until it can be read");
            }
            Err(e) => return Err(e.into()),
        }
        let faces =
            FaceReader::new(config.max_image_pixels).with_request_pixels(config.max_request_pixels);
        if let Some(problem) = faces.detector_problem() {
            tracing::warn!(%problem, "no face detector: camera images will be refused, face crops still work");
        }
        if config.plant_pepper_id.is_none() {
            tracing::warn!("no --plant-pepper-id: PIN and password hashes must carry a key id, but one of another pepper than the plant's is not refused; set it to the id `kubevision cluster register-kiosk` prints");
        }
        let workers = config.max_concurrency();
        let threshold = config.threshold();
        let core = Arc::new(Core {
            gallery,
            faces,
            recogniser,
            batcher: ActiveBatcher::start(
                &backend,
                config.batch_window(),
                config.max_batch,
                workers + config.max_queue,
                metrics.clone(),
            )?,
            admission: Admission::from_config(&config, metrics.clone()),
            metrics,
            token: config.token.clone(),
            threshold,
            lockout: config.lockout_policy(),
            plant_pepper_id: config.plant_pepper_id,
            reports: ReportBound::default(),
            burst: BurstRule {
                min_frames: config.burst_min_frames,
                min_agreement: config.burst_min_agreement,
                threshold,
            },
        });
        let bind = |what, addr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::Bind { what, addr, source })
        };
        let grpc = bind("gRPC", config.listen).await?;
        let metrics = bind("metrics", config.metrics_listen).await?;
        tracing::info!(
            recogniser = %kind,
            backend = backend.name(),
            store = core.gallery.store().kind(),
            templates = backend.template_count(),
            gallery_version = core.gallery.version(),
            tls = tls.is_some(),
            mtls = config.tls_client_ca.is_some(),
            identities = identities.get().len(),
            "gallery loaded"
        );
        Ok(Self {
            config,
            core,
            grpc,
            metrics,
            tls,
            identities,
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` resolves, then stops taking new work and lets
    /// in-flight requests finish (at most the configured grace period).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        let (grpc_addr, metrics_addr) = (self.grpc_addr(), self.metrics_addr());
        let Self {
            config,
            core,
            grpc,
            metrics: metrics_listener,
            tls,
            identities,
        } = self;
        let (health, health_service) = tonic_health::server::health_reporter();
        // NOT_SERVING until the gallery has caught up with the store: a
        // replica that answered from an empty or stale copy would turn
        // enrolled operators away.
        set_health(&health, ServingStatus::NotServing).await;
        let _follower = core.gallery.follow(config.catch_up_period());
        // A changed identities file (a registration) applies without a restart.
        let _identities_watch = identities.watch(&config, config.identities_reload_period());
        let mut caught_up = core.gallery.caught_up();
        let serving = tokio::spawn({
            let (health, core) = (health.clone(), core.clone());
            async move {
                if caught_up.wait_for(|&c| c).await.is_ok() {
                    core.metrics.ready.store(true, Ordering::Relaxed);
                    set_health(&health, ServingStatus::Serving).await;
                }
            }
        });
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(kubevision_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let max = config.max_message_bytes;
        let mut builder = tonic::transport::Server::builder()
            .timeout(Duration::from_secs(config.request_timeout_secs))
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .layer(crate::auth::layer(&config, identities));
        if let Some(tls) = tls {
            builder = builder.tls_config(tls)?;
        }
        let router = builder
            .add_service(health_service)
            .add_service(reflection().build_v1()?)
            .add_service(reflection().build_v1alpha()?)
            .add_service(
                RecognitionServiceServer::new(RecognitionApi(core.clone()))
                    .max_decoding_message_size(max),
            )
            .add_service(
                GalleryServiceServer::new(GalleryApi(core.clone())).max_decoding_message_size(max),
            )
            .add_service(
                SignInServiceServer::new(SignInApi(core.clone())).max_decoding_message_size(max),
            );

        let (stop_grpc, grpc_stopped) = oneshot::channel::<()>();
        // Our own listener (bound early, for port 0 and clear errors), so
        // the builder's tcp_nodelay does not reach it: set it here, or every
        // small reply waits out Nagle against delayed ACKs (40 ms).
        let incoming = TcpIncoming::from(grpc).with_nodelay(Some(true));
        let mut grpc_task = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async {
            let _ = grpc_stopped.await;
        }));
        let (stop_metrics, metrics_stopped) = oneshot::channel::<()>();
        let metrics_task = tokio::spawn(metrics::serve(
            metrics_listener,
            core.metrics.clone(),
            async {
                let _ = metrics_stopped.await;
            },
        ));
        tracing::info!(grpc = %grpc_addr, metrics = %metrics_addr, "listening");

        tokio::select! {
            _ = shutdown => {}
            ended = &mut grpc_task => {
                // The server only ends by itself on an error.
                return ended.map_err(|e| ServerError::Config(format!("the gRPC server task failed: {e}")))?.map_err(Into::into);
            }
        }
        let grace = Duration::from_secs(config.shutdown_grace_secs);
        tracing::info!(
            in_flight = core.metrics.in_flight.get(),
            ?grace,
            "shutting down: draining in-flight requests"
        );
        serving.abort();
        core.metrics.ready.store(false, Ordering::Relaxed);
        set_health(&health, ServingStatus::NotServing).await;
        let _ = stop_grpc.send(());
        match tokio::time::timeout(grace, grpc_task).await {
            Ok(Ok(result)) => result?,
            Ok(Err(e)) => tracing::error!(error = %e, "the gRPC server task failed"),
            Err(_) => tracing::warn!(
                in_flight = core.metrics.in_flight.get(),
                "grace period over; exiting with requests in flight"
            ),
        }
        let _ = stop_metrics.send(());
        let _ = metrics_task.await;
        tracing::info!("stopped");
        Ok(())
    }
}

fn open_store(config: &Config) -> Result<Arc<dyn GalleryStore>, StoreError> {
    Ok(match &config.store {
        StoreLocation::Sqlite => Arc::new(SqliteStore::open_with(
            &config.data_dir,
            config.max_templates_per_operator,
            config.new_gallery,
        )?),
        StoreLocation::Postgres(url) => Arc::new(PostgresStore::open(&PostgresSettings {
            url: url.clone(),
            ca_file: config.store_ca_file.clone(),
            pool_size: config.store_pool_size,
            connect_timeout: Duration::from_millis(config.store_timeout_ms),
            max_templates_per_operator: config.max_templates_per_operator,
        })?),
    })
}

async fn set_health(health: &tonic_health::server::HealthReporter, status: ServingStatus) {
    for service in std::iter::once(&"").chain(SERVICES) {
        health.set_service_status(*service, status).await;
    }
}
