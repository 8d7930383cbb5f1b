//! Prometheus metrics, and the plain-HTTP endpoint that serves them along
//! with liveness and readiness for HTTP probes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    /// Finished RPCs by method and gRPC status code name.
    pub requests: IntCounterVec,
    /// RPC latency in seconds by method.
    pub latency: HistogramVec,
    /// Admitted requests waiting for a worker.
    pub queue_depth: IntGauge,
    /// Admitted requests, waiting or running.
    pub in_flight: IntGauge,
    pub gallery_operators: IntGauge,
    pub gallery_templates: IntGauge,
    /// 1 for the backend in use.
    pub backend: IntGaugeVec,
    /// Probes per batch handed to the backend.
    pub batch_size: Histogram,
    /// The version of the latest store change applied to this replica's matcher.
    pub gallery_applied_version: IntGauge,
    /// Versions the store is known to have that this replica has not applied.
    pub gallery_lag_versions: IntGauge,
    /// Seconds from the store's commit of the newest change applied at the
    /// last catch-up to its application here (0 when up to date).
    pub gallery_lag_seconds: Gauge,
    /// 1 while the follower holds a connection to the store (its change feed).
    pub store_connected: IntGauge,
    /// 1 for each operator whose stored templates are damaged, by operator
    /// id: not served, everyone else is.
    pub gallery_quarantined: IntGaugeVec,
    /// Set while the service takes traffic (cleared at shutdown): /readyz.
    pub ready: AtomicBool,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let registry =
            Registry::new_custom(Some("kubevision".into()), None).expect("static prefix is valid");
        let requests = IntCounterVec::new(
            Opts::new(
                "requests_total",
                "Finished RPCs by method and gRPC status code",
            ),
            &["method", "code"],
        )
        .unwrap();
        let latency = HistogramVec::new(
            HistogramOpts::new("request_duration_seconds", "RPC latency by method").buckets(vec![
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["method"],
        )
        .unwrap();
        let queue_depth =
            IntGauge::new("queue_depth", "Admitted requests waiting for a worker").unwrap();
        let in_flight = IntGauge::new(
            "requests_in_flight",
            "Admitted requests, waiting or running",
        )
        .unwrap();
        let gallery_operators = IntGauge::new("gallery_operators", "Operators enrolled").unwrap();
        let gallery_templates = IntGauge::new(
            "gallery_templates",
            "Templates held by the matching backend",
        )
        .unwrap();
        let backend = IntGaugeVec::new(
            Opts::new("backend_info", "The matching backend in use (value 1)"),
            &["backend"],
        )
        .unwrap();
        let batch_size = Histogram::with_opts(
            HistogramOpts::new("batch_probes", "Probes per batch handed to the backend")
                .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
        )
        .unwrap();
        let gallery_applied_version = IntGauge::new(
            "gallery_applied_version",
            "Version of the latest store change applied to this replica",
        )
        .unwrap();
        let gallery_lag_versions = IntGauge::new(
            "gallery_lag_versions",
            "Store versions known but not yet applied to this replica",
        )
        .unwrap();
        let gallery_lag_seconds = Gauge::new(
            "gallery_lag_seconds",
            "Seconds from commit to application of the newest change applied at the last catch-up",
        )
        .unwrap();
        let store_connected = IntGauge::new(
            "store_connected",
            "1 while the replica follows the store over a live connection",
        )
        .unwrap();
        let gallery_quarantined = IntGaugeVec::new(
            Opts::new(
                "gallery_quarantined",
                "Operators whose stored templates are damaged and are not served (value 1)",
            ),
            &["operator_id"],
        )
        .unwrap();
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(queue_depth.clone()),
            Box::new(in_flight.clone()),
            Box::new(gallery_operators.clone()),
            Box::new(gallery_templates.clone()),
            Box::new(backend.clone()),
            Box::new(batch_size.clone()),
            Box::new(gallery_applied_version.clone()),
            Box::new(gallery_lag_versions.clone()),
            Box::new(gallery_lag_seconds.clone()),
            Box::new(store_connected.clone()),
            Box::new(gallery_quarantined.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Arc::new(Self {
            registry,
            requests,
            latency,
            queue_depth,
            in_flight,
            gallery_operators,
            gallery_templates,
            backend,
            batch_size,
            gallery_applied_version,
            gallery_lag_versions,
            gallery_lag_seconds,
            store_connected,
            gallery_quarantined,
            ready: AtomicBool::new(false),
        })
    }

    /// The text exposition format, plus the process's resident memory (read
    /// from /proc so the soak test can watch it without extra dependencies).
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("writing to a Vec cannot fail");
        let mut text = String::from_utf8(out).expect("the text format is UTF-8");
        if let Some(rss) = resident_bytes() {
            text.push_str(&format!(
                "# HELP kubevision_process_resident_memory_bytes Resident memory of the service.\n\
                 # TYPE kubevision_process_resident_memory_bytes gauge\n\
                 kubevision_process_resident_memory_bytes {rss}\n"
            ));
        }
        text
    }
}

/// Resident set size from /proc/self/statm (Linux); None elsewhere.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Serves /metrics, /healthz (the process is up) and /readyz (it takes traffic).
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = axum::Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(metrics);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn render(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics.render(),
    )
}

async fn ready(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    if metrics.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}
