//! The `dlib` recogniser over real gRPC on loopback, with a real SQLite
//! store: enrollment from camera images (a template of both kinds a
//! frame), identification and verification by embeddings, probe templates
//! kind-checked, enrollments without a dlib template refused, both kinds
//! synced, and a clear start-up error without the model files. Needs
//! dlib's model files (`scripts/setup-models`).

use std::process::Command;

use crate::common::*;
use clap::Parser;
use kubevision_offload::{Config, Server};
use kubevision_offload_client::proto::{
    frame::Content, sync_event::Event, EnrollRequest, Frame, IdentifyRequest, VerifyRequest,
};
use tonic::Code;
use vision::recogniser::Kind;

/// A dlib server on loopback at the calibrated threshold (not the other
/// tests' accept-all one: these answers are the recogniser's own).
fn dlib_config(dir: &std::path::Path) -> Config {
    Config::try_parse_from([
        "kubevision-offload".to_string(),
        "--listen=127.0.0.1:0".into(),
        "--metrics-listen=127.0.0.1:0".into(),
        format!("--data-dir={}", dir.display()),
        "--recogniser=dlib".into(),
        "--backend=cpu".into(),
        "--allow-unauthenticated".into(),
    ])
    .unwrap()
}

fn identify(frames: Vec<Frame>, min_usable_frames: u32) -> IdentifyRequest {
    IdentifyRequest {
        frames,
        max_candidates: 2,
        threshold: None,
        min_usable_frames,
        min_agreement: None,
    }
}

fn template_frame(bytes: &[u8]) -> Frame {
    Frame {
        content: Some(Content::Template(bytes.to_vec().into())),
    }
}

const PERSONS: [u32; 3] = [1, 2, 3];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlib_gallery_enrolls_identifies_and_syncs_both_kinds() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(dlib_config(dir.path())).await;
    let client = server.client();

    for person in PERSONS {
        let change = client
            .enroll(EnrollRequest {
                operator_id: operator(person),
                frames: (1..=3).map(|p| orl_camera(person, p)).collect(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            change.template_count, 6,
            "an lbph and a dlib template a frame"
        );
    }
    let status = client.gallery_status().await.unwrap();
    let format = status.template_format.as_ref().unwrap();
    assert_eq!(
        (format.recogniser.as_str(), format.recogniser_version),
        ("dlib", 1)
    );
    assert_eq!(
        status.default_threshold,
        vision::embedding::DEFAULT_THRESHOLD
    );
    assert_eq!((status.operator_count, status.template_count), (3, 18));

    // Camera images of photos not enrolled find the right person.
    for person in PERSONS {
        let answer = client
            .identify(identify(
                (8..=10).map(|p| orl_camera(person, p)).collect(),
                0,
            ))
            .await
            .unwrap();
        assert!(
            answer.identified && answer.operator_id == operator(person),
            "person {person}: {answer:?}"
        );
        assert!(answer.distance < vision::embedding::DEFAULT_THRESHOLD);
    }
    let verdict = client
        .verify(VerifyRequest {
            operator_id: operator(2),
            frames: vec![orl_camera(2, 9), orl_camera(2, 10)],
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(verdict.verified, "{verdict:?}");

    // The sync carries both kinds of every operator.
    let sync = client.sync_gallery(0).await.unwrap();
    let header_format = sync.header.template_format.as_ref().unwrap();
    assert_eq!(header_format.recogniser, "dlib");
    let mut dlib_of = std::collections::HashMap::new();
    let mut lbph_of = std::collections::HashMap::new();
    for change in &sync.changes {
        let Event::Upsert(u) = change else { continue };
        let kinds: Vec<_> = u.templates.iter().map(|t| Kind::of_template(t)).collect();
        assert_eq!(kinds.iter().filter(|k| **k == Some(Kind::Lbph)).count(), 3);
        assert_eq!(kinds.iter().filter(|k| **k == Some(Kind::Dlib)).count(), 3);
        let magic = |k: Kind| u.templates.iter().find(|t| Kind::of_template(t) == Some(k));
        dlib_of.insert(u.operator_id.clone(), magic(Kind::Dlib).unwrap().to_vec());
        lbph_of.insert(u.operator_id.clone(), magic(Kind::Lbph).unwrap().to_vec());
    }
    assert!(dlib_of.values().all(|t| t.starts_with(b"KVE1")));
    assert!(lbph_of.values().all(|t| t.starts_with(b"KVT1")));

    // A dlib template as the probe: the operator's own, at distance 0.
    let answer = client
        .identify(identify(vec![template_frame(&dlib_of[&operator(2)])], 1))
        .await
        .unwrap();
    assert_eq!(
        (answer.operator_id.as_str(), answer.distance),
        (operator(2).as_str(), 0.0)
    );

    // An lbph template as the probe is refused, naming both recognisers.
    let err = client
        .identify(identify(vec![template_frame(&lbph_of[&operator(2)])], 1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(Code::InvalidArgument), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("lbph") && message.contains("dlib"),
        "{message}"
    );

    // Face crops cannot be aligned by dlib.
    let err = client
        .identify(identify(vec![orl_camera(1, 9), orl_raw(1, 9)], 1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(Code::InvalidArgument), "{err}");
    assert!(
        err.to_string().contains(
            "frame 1: the dlib recogniser needs whole camera images or templates, not normalised face crops"
        ),
        "{err}"
    );

    // An enrollment of lbph templates only is refused; with a dlib one it is taken.
    let lbph_only = vec![lbph_of[&operator(1)].clone().into()];
    let err = client
        .enroll(EnrollRequest {
            operator_id: "kiosk-made".into(),
            templates: lbph_only,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(Code::InvalidArgument), "{err}");
    assert!(err.to_string().contains("dlib template"), "{err}");
    let change = client
        .enroll(EnrollRequest {
            operator_id: "kiosk-made".into(),
            templates: vec![
                lbph_of[&operator(3)].clone().into(),
                dlib_of[&operator(3)].clone().into(),
            ],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(change.template_count, 2);
    let err = client
        .enroll(EnrollRequest {
            operator_id: "broken".into(),
            templates: vec![
                dlib_of[&operator(3)].clone().into(),
                b"KVE1garbage".to_vec().into(),
            ],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(Code::InvalidArgument), "{err}");
    assert!(err.to_string().contains("template 1"), "{err}");
    server.stop().await;

    // The same store served by an lbph replica: the lbph templates are
    // matched, the dlib ones kept (nobody re-enrols).
    let lbph = InProcess::start(config(dir.path(), &["--backend=cpu"])).await;
    let client = lbph.client();
    let status = client.gallery_status().await.unwrap();
    assert_eq!(status.template_format.as_ref().unwrap().recogniser, "lbph");
    assert_eq!(status.template_count, 20);
    let answer = client
        .identify(identify(vec![template_frame(&lbph_of[&operator(1)])], 1))
        .await
        .unwrap();
    assert_eq!(
        (answer.operator_id.as_str(), answer.distance),
        (operator(1).as_str(), 0.0)
    );
    let err = client
        .identify(identify(vec![template_frame(&dlib_of[&operator(1)])], 1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(Code::InvalidArgument), "{err}");
    lbph.stop().await;
}

/// `--recogniser dlib` without the model files: no server, an error that
/// names the file and the installer, a non-zero exit.
#[test]
fn dlib_without_models_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("no-models");
    std::fs::create_dir(&empty).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kubevision-offload"))
        .args([
            "--listen=127.0.0.1:0",
            "--metrics-listen=127.0.0.1:0",
            "--allow-unauthenticated",
        ])
        .arg(format!("--data-dir={}", dir.path().join("data").display()))
        .arg("--recogniser=dlib")
        .env("KUBEVISION_MODELS_DIR", &empty)
        .env("XDG_DATA_HOME", &empty)
        .env("HOME", &empty)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("dlib recogniser cannot start")
            && stderr.contains(".dat")
            && stderr.contains("scripts/setup-models"),
        "{stderr}"
    );

    // An lbph server starts without them, and says so once.
    let mut lbph = Command::new(env!("CARGO_BIN_EXE_kubevision-offload"))
        .args([
            "--listen=127.0.0.1:0",
            "--metrics-listen=127.0.0.1:0",
            "--allow-unauthenticated",
        ])
        .arg(format!("--data-dir={}", dir.path().join("lbph").display()))
        .env("KUBEVISION_MODELS_DIR", &empty)
        .env("XDG_DATA_HOME", &empty)
        .env("HOME", &empty)
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let log = std::io::BufReader::new(lbph.stderr.take().unwrap());
    let mut said = Vec::new();
    for line in std::io::BufRead::lines(log) {
        let line = line.unwrap();
        said.push(line.clone());
        if line.contains("listening") {
            break;
        }
    }
    let _ = lbph.kill();
    let _ = lbph.wait();
    let said = said.join("\n");
    assert!(said.contains("listening"), "{said}");
    assert_eq!(
        said.matches("enrollments make lbph templates only").count(),
        1,
        "{said}"
    );
}

/// The CUDA backend matches lbph only: dlib on it is refused at start.
#[tokio::test]
async fn dlib_on_the_cuda_backend_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &["--recogniser=dlib", "--backend=cuda"]);
    let err = Server::bind(config)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("the CUDA backend matches lbph templates only; run dlib on --backend cpu"),
        "{err}"
    );
}

/// A replica checks the stored templates of every kind, not only its own:
/// a damaged dlib template read by an lbph replica quarantines its
/// operator, named, never carried along unnoticed (issue 22: and never
/// stops the whole gallery).
#[test]
fn a_damaged_template_of_another_kind_is_reported_with_its_operator() {
    use std::sync::Arc;

    use kubevision_offload::backend::CpuBackend;
    use kubevision_offload::gallery::OperatorGallery;
    use kubevision_offload::metrics::Metrics;
    use kubevision_offload::store::{GalleryStore, SqliteStore};
    use vision::lbph::{LbphParams, Template};

    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn GalleryStore> = Arc::new(SqliteStore::open(dir.path(), 128).unwrap());
    let params = LbphParams::default();
    let face = vision::imageio::decode_gray(&orl_bytes(1, 1)).unwrap();
    let lbph = Template::extract(&params, &face).unwrap().to_bytes();
    store
        .enroll(
            "test",
            "alice",
            &[lbph, b"KVE1 not an embedding".to_vec()],
            None,
        )
        .unwrap();
    let gallery = OperatorGallery::new(
        store,
        Arc::new(CpuBackend::new(params)),
        params,
        Metrics::new(),
    );
    gallery
        .catch_up()
        .expect("a damaged operator does not stop the gallery");
    // Quarantined: named with the template, and not matched.
    let quarantined = gallery.quarantined();
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    assert_eq!(quarantined[0].0, "alice");
    assert!(
        quarantined[0]
            .1
            .contains("stored template 1 of operator \"alice\""),
        "{quarantined:?}"
    );
    assert_eq!(gallery.label_of("alice"), None);
}
