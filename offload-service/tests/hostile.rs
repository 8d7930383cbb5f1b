//! Hostile and absurd requests get the documented status code with a message
//! a person can act on, and the server keeps serving after every one of them.

use crate::common::*;
use kubevision_offload_client::proto::{
    frame::Content, EnrollRequest, Frame, IdentifyRequest, RawFaceCrop, UpdateOperatorRequest,
    VerifyRequest,
};
use kubevision_offload_client::{ClientError, OffloadClient};
use tonic::Code;

fn frame(content: Content) -> Frame {
    Frame {
        content: Some(content),
    }
}

fn burst(frames: Vec<Frame>) -> IdentifyRequest {
    IdentifyRequest {
        frames,
        max_candidates: 1,
        threshold: None,
        min_usable_frames: 0,
        min_agreement: None,
    }
}

/// Asserts the code and that the message mentions `words`.
fn refused(result: Result<impl std::fmt::Debug, ClientError>, code: Code, words: &str) {
    let err = result.expect_err("the request must be refused");
    let ClientError::Rpc(status) = &err else {
        panic!("not an RPC error: {err}")
    };
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().contains(words),
        "message {:?} should mention {words:?}",
        status.message()
    );
}

async fn still_serving(client: &OffloadClient) {
    let answer = client
        .identify(IdentifyRequest {
            min_usable_frames: 1,
            min_agreement: None,
            ..burst(vec![orl_raw(1, 2)])
        })
        .await
        .unwrap();
    assert_eq!(
        answer.operator_id,
        operator(1),
        "the server must still answer correctly"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_and_fields_are_refused_and_the_server_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(config(
        dir.path(),
        &["--max-message-bytes=2000000", "--max-image-pixels=1000000"],
    ))
    .await;
    let client = server.client();
    client
        .enroll(EnrollRequest {
            operator_id: operator(1),
            frames: vec![orl_raw(1, 1)],
            ..Default::default()
        })
        .await
        .unwrap();

    let crop = |width, height, len| {
        frame(Content::RawFaceCrop(RawFaceCrop {
            width,
            height,
            pixels: vec![7u8; len].into(),
        }))
    };
    let cases: Vec<(&str, IdentifyRequest, Code, &str)> = vec![
        (
            "no frames",
            burst(vec![]),
            Code::InvalidArgument,
            "no frames",
        ),
        (
            "33 frames",
            burst(vec![orl_raw(1, 2); 33]),
            Code::InvalidArgument,
            "at most 32",
        ),
        (
            "empty frame",
            burst(vec![Frame { content: None }]),
            Code::InvalidArgument,
            "no image was given",
        ),
        (
            "empty image",
            burst(vec![frame(Content::FaceCropImage(Vec::new().into()))]),
            Code::InvalidArgument,
            "empty",
        ),
        (
            "garbage image",
            burst(vec![frame(Content::CameraImage(
                b"\x89PNG garbage".to_vec().into(),
            ))]),
            Code::InvalidArgument,
            "frame 0",
        ),
        (
            "garbage crop",
            burst(vec![frame(Content::FaceCropImage(vec![0xA5; 5000].into()))]),
            Code::InvalidArgument,
            "not a readable image",
        ),
        (
            "wrong crop size",
            burst(vec![crop(10, 10, 100)]),
            Code::InvalidArgument,
            "must be 92 × 112",
        ),
        (
            "absurd crop size",
            burst(vec![crop(u32::MAX, u32::MAX, 0)]),
            Code::InvalidArgument,
            "must be 92 × 112",
        ),
        (
            "short pixels",
            burst(vec![orl_raw(1, 2), crop(92, 112, 92 * 112 - 1)]),
            Code::InvalidArgument,
            "frame 1",
        ),
        (
            "decompression bomb",
            burst(vec![frame(Content::CameraImage(
                b"P5\n60000 60000\n255\n".to_vec().into(),
            ))]),
            Code::InvalidArgument,
            "more than the 1000000 pixels",
        ),
        (
            "max_candidates",
            IdentifyRequest {
                max_candidates: u32::MAX,
                ..burst(vec![orl_raw(1, 2)])
            },
            Code::InvalidArgument,
            "max_candidates",
        ),
        (
            "NaN threshold",
            IdentifyRequest {
                threshold: Some(f64::NAN),
                ..burst(vec![orl_raw(1, 2)])
            },
            Code::InvalidArgument,
            "threshold",
        ),
        (
            "negative threshold",
            IdentifyRequest {
                threshold: Some(-1.0),
                ..burst(vec![orl_raw(1, 2)])
            },
            Code::InvalidArgument,
            "threshold",
        ),
        (
            "infinite threshold",
            IdentifyRequest {
                threshold: Some(f64::INFINITY),
                ..burst(vec![orl_raw(1, 2)])
            },
            Code::InvalidArgument,
            "threshold",
        ),
        (
            "min_usable_frames",
            IdentifyRequest {
                min_usable_frames: u32::MAX,
                ..burst(vec![orl_raw(1, 2)])
            },
            Code::InvalidArgument,
            "min_usable_frames",
        ),
        (
            "no agreement",
            IdentifyRequest {
                min_agreement: Some(0.0),
                ..burst(vec![orl_raw(1, 2)])
            },
            Code::InvalidArgument,
            "min_agreement",
        ),
        (
            "more than every frame agreeing",
            IdentifyRequest {
                min_agreement: Some(1.5),
                ..burst(vec![orl_raw(1, 2)])
            },
            Code::InvalidArgument,
            "min_agreement",
        ),
        (
            "agreement not a number",
            IdentifyRequest {
                min_agreement: Some(f64::NAN),
                ..burst(vec![orl_raw(1, 2)])
            },
            Code::InvalidArgument,
            "min_agreement",
        ),
    ];
    for (name, request, code, words) in cases {
        let result = client.identify(request).await;
        refused(result, code, words);
        eprintln!("ok: {name}");
    }
    still_serving(&client).await;

    // Over the configured message size: refused by the transport, not read into memory.
    let huge = burst(vec![frame(Content::CameraImage(
        vec![0u8; 3_000_000].into(),
    ))]);
    let err = client.identify(huge).await.unwrap_err();
    assert_eq!(err.code(), Some(Code::OutOfRange), "{err}");
    still_serving(&client).await;

    // Operator ids and unknown operators.
    let enroll = |id: &str| EnrollRequest {
        operator_id: id.into(),
        frames: vec![orl_raw(2, 1)],
        ..Default::default()
    };
    refused(
        client.enroll(enroll("")).await,
        Code::InvalidArgument,
        "empty",
    );
    refused(
        client.enroll(enroll(&"x".repeat(10_000))).await,
        Code::InvalidArgument,
        "at most 128",
    );
    refused(
        client.enroll(enroll("tab\there")).await,
        Code::InvalidArgument,
        "control characters",
    );
    refused(
        client
            .enroll(EnrollRequest {
                operator_id: "blank".into(),
                frames: vec![],
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "no frames",
    );
    let update = UpdateOperatorRequest {
        operator_id: "ghost".into(),
        frames: vec![orl_raw(2, 1)],
        mode: 99,
        ..Default::default()
    };
    refused(
        client.update_operator(update).await,
        Code::NotFound,
        "not enrolled",
    );
    refused(
        client.remove_operator("ghost").await,
        Code::NotFound,
        "not enrolled",
    );
    let verify = VerifyRequest {
        operator_id: "ghost".into(),
        frames: vec![orl_raw(2, 1)],
        threshold: None,
        min_usable_frames: 0,
        min_agreement: None,
    };
    refused(client.verify(verify).await, Code::NotFound, "not enrolled");
    let too_many = UpdateOperatorRequest {
        operator_id: operator(1),
        frames: vec![orl_raw(1, 2); 32],
        mode: 0,
        ..Default::default()
    };
    for appended in 1..=3 {
        let ok = client.update_operator(too_many.clone()).await.unwrap();
        assert_eq!(ok.template_count, 1 + 32 * appended);
    }
    refused(
        client.update_operator(too_many).await,
        Code::FailedPrecondition,
        "limit is 128",
    );

    // A flat grey camera frame has no face: refused for enrollment, reported per frame for identification.
    let mut grey = Vec::new();
    image::GrayImage::from_pixel(320, 240, image::Luma([128]))
        .write_to(
            &mut std::io::Cursor::new(&mut grey),
            image::ImageFormat::Png,
        )
        .unwrap();
    let grey = frame(Content::CameraImage(grey.into()));
    let status = client.gallery_status().await.unwrap();
    if status.accepts_camera_images {
        refused(
            client
                .enroll(EnrollRequest {
                    operator_id: "grey".into(),
                    frames: vec![grey.clone()],
                    ..Default::default()
                })
                .await,
            Code::InvalidArgument,
            "no usable face",
        );
        let answer = client.identify(burst(vec![grey])).await.unwrap();
        assert!(!answer.identified);
        assert_eq!(
            answer.frames[0].status(),
            kubevision_offload_client::proto::frame_outcome::Status::NoFace
        );
    } else {
        refused(
            client.identify(burst(vec![grey])).await,
            Code::FailedPrecondition,
            "no face detector",
        );
    }
    still_serving(&client).await;
    assert_eq!(
        client.gallery_status().await.unwrap().operator_count,
        1,
        "no refused enrollment left a trace"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_resource_exhausted_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(config(
        dir.path(),
        &["--max-concurrency=1", "--max-queue=1"],
    ))
    .await;
    let mut client_config = kubevision_offload_client::ClientConfig::new(server.url());
    client_config.retry.max_attempts = 1; // see the refusals themselves
    client_config.breaker.failure_threshold = u32::MAX;
    let client = OffloadClient::new(client_config).unwrap();
    client
        .enroll(EnrollRequest {
            operator_id: operator(1),
            frames: vec![orl_raw(1, 1)],
            ..Default::default()
        })
        .await
        .unwrap();

    // 32 encoded frames a request keep the single worker busy for a while.
    let heavy = burst(
        (0..32)
            .map(|i| orl_encoded(1 + i % 40, 1 + i % 10))
            .collect(),
    );
    let calls: Vec<_> = (0..24)
        .map(|_| {
            let (client, heavy) = (client.clone(), heavy.clone());
            tokio::spawn(async move { client.identify(heavy).await })
        })
        .collect();
    let (mut ok, mut exhausted) = (0, 0);
    for call in calls {
        match call.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) if e.code() == Some(Code::ResourceExhausted) => {
                assert!(e.to_string().contains("at capacity"), "{e}");
                exhausted += 1;
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert!(
        ok >= 2 && exhausted >= 1,
        "{ok} answered, {exhausted} refused"
    );
    assert_eq!(ok + exhausted, 24);
    let metrics = http_get(server.metrics, "/metrics").await;
    assert!(
        metrics
            .contains("kubevision_requests_total{code=\"ResourceExhausted\",method=\"Identify\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kubevision_requests_in_flight 0"),
        "every slot is given back:\n{metrics}"
    );
    still_serving(&client).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_deadlines_are_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(config(dir.path(), &["--max-concurrency=1"])).await;
    server
        .client()
        .enroll(EnrollRequest {
            operator_id: operator(1),
            frames: vec![orl_raw(1, 1)],
            ..Default::default()
        })
        .await
        .unwrap();
    let mut client_config = kubevision_offload_client::ClientConfig::new(server.url());
    client_config.request_timeout = std::time::Duration::from_millis(20);
    let hasty = OffloadClient::new(client_config).unwrap();
    // The single worker is kept busy, so the hasty request waits in the queue.
    let heavy = burst((0..32).map(|i| orl_encoded(1 + i, 1)).collect());
    let blockers: Vec<_> = (0..10)
        .map(|_| {
            let (client, heavy) = (server.client(), heavy.clone());
            tokio::spawn(async move { client.identify(heavy).await })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let started = std::time::Instant::now();
    let err = hasty.identify(heavy).await.unwrap_err();
    assert_eq!(err.code(), Some(Code::DeadlineExceeded), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_millis(500));
    for blocker in blockers {
        blocker.await.unwrap().unwrap();
    }
    // The server gave the request up too: 10 answered, 1 counted as cancelled.
    let metrics = http_get(server.metrics, "/metrics").await;
    assert!(
        metrics.contains("kubevision_requests_total{code=\"Ok\",method=\"Identify\"} 10"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kubevision_requests_total{code=\"Cancelled\",method=\"Identify\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kubevision_requests_in_flight 0"),
        "{metrics}"
    );
    still_serving(&server.client()).await;
    server.stop().await;
}
