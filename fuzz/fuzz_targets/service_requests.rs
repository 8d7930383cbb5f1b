//! The offload service's request handlers, without a network: the first
//! byte picks an RPC, the rest is its request message in protobuf, decoded
//! with prost as tonic would and handed to the same `RecognitionApi` /
//! `GalleryApi` handlers the server mounts (after the gate: the caller is
//! the open service's `anonymous` admin). The service core runs over a
//! SQLite gallery in a folder of its own (on /dev/shm where there is one)
//! with the CPU matcher, so enrolments really commit and identifications
//! really search. The gallery keeps what earlier inputs enrolled, so a
//! finding may need its predecessors to reproduce (`-fork=1` restarts the
//! process, and so the gallery, now and then).
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, OnceLock};

use clap::Parser;
use kubevision_offload::admission::Admission;
use kubevision_offload::backend;
use kubevision_offload::batcher::ActiveBatcher;
use kubevision_offload::frames::FaceReader;
use kubevision_offload::gallery::OperatorGallery;
use kubevision_offload::identity::Registry;
use kubevision_offload::metrics::Metrics;
use kubevision_offload::recogniser::Recogniser;
use kubevision_offload::service::{Core, GalleryApi, RecognitionApi};
use kubevision_offload::store::SqliteStore;
use kubevision_offload::Config;
use kubevision_proto::v1::gallery_service_server::GalleryService;
use kubevision_proto::v1::recognition_service_server::RecognitionService;
use kubevision_proto::v1::{
    EnrollRequest, GetGalleryStatusRequest, IdentifyRequest, RemoveOperatorRequest,
    SyncGalleryRequest, UpdateOperatorRequest, VerifyRequest,
};
use libfuzzer_sys::fuzz_target;
use prost::Message;
use tokio_stream::StreamExt;
use vision::burst::BurstRule;
use vision::lbph::LbphParams;

struct Harness {
    runtime: tokio::runtime::Runtime,
    core: Arc<Core>,
}

/// The gallery's folder: `kv-fuzz-<pid>` on /dev/shm (else the temporary
/// folder). libFuzzer leaves with `exit`, which runs no destructors, so the
/// folder is removed by an `atexit` handler, and a start removes those of
/// processes that are gone (a crash runs no handler either).
static DATA_DIR: OnceLock<PathBuf> = OnceLock::new();

extern "C" {
    fn atexit(callback: extern "C" fn()) -> std::ffi::c_int;
}

extern "C" fn remove_data_dir() {
    if let Some(dir) = DATA_DIR.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn data_dir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    let parent = if shm.is_dir() {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    };
    for entry in std::fs::read_dir(&parent).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let pid = name.to_str().and_then(|n| n.strip_prefix("kv-fuzz-"));
        if pid.is_some_and(|pid| !Path::new("/proc").join(pid).exists()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let dir = parent.join(format!("kv-fuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    DATA_DIR.set(dir.clone()).expect("set once");
    // SAFETY: registers a plain function with the C library.
    unsafe { atexit(remove_data_dir) };
    dir
}

static HARNESS: LazyLock<Harness> = LazyLock::new(|| {
    let dir = data_dir();
    let data_dir = dir.join("data");
    let config = Config::try_parse_from([
        "kubevision-offload".as_ref(),
        "--data-dir".as_ref(),
        data_dir.as_os_str(),
        "--backend".as_ref(),
        "cpu".as_ref(),
        "--allow-unauthenticated".as_ref(),
        "--max-image-pixels".as_ref(),
        "786432".as_ref(),
        "--max-request-pixels".as_ref(),
        "3145728".as_ref(),
    ])
    .expect("a valid configuration");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let core = runtime.block_on(async {
        let metrics = Metrics::new();
        let params = LbphParams::default();
        let backend = backend::create_for(config.recogniser, config.backend, params)
            .expect("the CPU backend");
        let store = Arc::new(
            SqliteStore::open(&config.data_dir, config.max_templates_per_operator)
                .expect("a SQLite gallery"),
        );
        let gallery = Arc::new(OperatorGallery::with_backend(
            store,
            backend.clone(),
            params,
            metrics.clone(),
        ));
        gallery.catch_up().expect("the first catch-up");
        let workers = config.max_concurrency();
        Arc::new(Core {
            gallery,
            faces: FaceReader::new(config.max_image_pixels)
                .with_request_pixels(config.max_request_pixels),
            // LBPH only: loading dlib's models per fuzz process is slow,
            // and the request checks fuzzed here come before the recogniser.
            recogniser: Recogniser::lbph_only(params),
            batcher: ActiveBatcher::start(
                &backend,
                config.batch_window(),
                config.max_batch,
                workers + config.max_queue,
                metrics.clone(),
            )
            .expect("the matcher's threads"),
            admission: Admission::from_config(&config, metrics.clone()),
            metrics,
            token: None,
            threshold: config.threshold(),
            lockout: config.lockout_policy(),
            plant_pepper_id: config.plant_pepper_id,
            reports: Default::default(),
            burst: BurstRule {
                min_frames: config.burst_min_frames,
                min_agreement: config.burst_min_agreement,
                threshold: config.threshold(),
            },
        })
    });
    Harness { runtime, core }
});

/// A request as the gate leaves it: with the caller it identified.
fn request<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let caller = Registry::empty()
        .resolve(None, &[])
        .expect("an open service lets everyone in");
    request.extensions_mut().insert(caller);
    request
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    let h = &*HARNESS;
    let recognition = RecognitionApi(h.core.clone());
    let gallery = GalleryApi(h.core.clone());
    h.runtime.block_on(async {
        // Every outcome is an answer or a Status; only panics, hangs and
        // memory errors are findings.
        match which % 7 {
            0 => {
                if let Ok(m) = IdentifyRequest::decode(bytes) {
                    let _ = recognition.identify(request(m)).await;
                }
            }
            1 => {
                if let Ok(m) = VerifyRequest::decode(bytes) {
                    let _ = recognition.verify(request(m)).await;
                }
            }
            2 => {
                if let Ok(m) = EnrollRequest::decode(bytes) {
                    let _ = gallery.enroll(request(m)).await;
                }
            }
            3 => {
                if let Ok(m) = UpdateOperatorRequest::decode(bytes) {
                    let _ = gallery.update_operator(request(m)).await;
                }
            }
            4 => {
                if let Ok(m) = RemoveOperatorRequest::decode(bytes) {
                    let _ = gallery.remove_operator(request(m)).await;
                }
            }
            5 => {
                if let Ok(m) = GetGalleryStatusRequest::decode(bytes) {
                    let _ = gallery.get_gallery_status(request(m)).await;
                }
            }
            _ => {
                if let Ok(m) = SyncGalleryRequest::decode(bytes) {
                    if let Ok(stream) = gallery.sync_gallery(request(m)).await {
                        let mut stream = stream.into_inner();
                        while let Some(_event) = stream.next().await {}
                    }
                }
            }
        }
    });
});
