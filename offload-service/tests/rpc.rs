//! The whole contract over real gRPC on loopback, against an in-process
//! server with a real SQLite store: enrollment, identification on the ORL
//! faces, verification, updates, removal, incremental sync, health,
//! reflection (v1 and v1alpha) and metrics.

use crate::common::*;
use kubevision_offload_client::proto::{
    sync_event::Event, update_operator_request::Mode, EnrollRequest, IdentifyRequest,
    UpdateOperatorRequest, VerifyRequest,
};
use tonic::Code;

/// Enrolls ORL photos 1–5 of persons `persons` as operators.
async fn enroll_orl(
    client: &kubevision_offload_client::OffloadClient,
    persons: impl Iterator<Item = u32>,
) {
    for person in persons {
        let frames = (1..=5).map(|photo| orl_raw(person, photo)).collect();
        let change = client
            .enroll(EnrollRequest {
                operator_id: operator(person),
                frames,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(change.template_count, 5);
    }
}

fn identify(
    frames: Vec<kubevision_offload_client::proto::Frame>,
    min_usable_frames: u32,
) -> IdentifyRequest {
    IdentifyRequest {
        frames,
        max_candidates: 3,
        threshold: None,
        min_usable_frames,
        min_agreement: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orl_faces_are_identified_and_verified() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(config(dir.path(), &[])).await;
    let client = server.client();
    enroll_orl(&client, 1..=40).await;
    let status = client.gallery_status().await.unwrap();
    assert_eq!(
        (status.operator_count, status.template_count, status.version),
        (40, 200, 40)
    );
    assert_eq!(status.backend, "cpu");

    // Single frames: photos 6–10 of everyone, raw and encoded.
    let mut correct = 0;
    for person in 1..=40 {
        for photo in 6..=10 {
            let frame = if photo % 2 == 0 {
                orl_raw(person, photo)
            } else {
                orl_encoded(person, photo)
            };
            let answer = client.identify(identify(vec![frame], 1)).await.unwrap();
            assert!(answer.identified, "{answer:?}");
            assert_eq!(answer.frames.len(), 1);
            assert_eq!(
                answer.frames[0].candidates.len(),
                3,
                "max_candidates distinct operators"
            );
            correct += (answer.operator_id == operator(person)) as u32;
        }
    }
    // LBPH on ORL with five photos enrolled is right about 95 % of the time.
    assert!(
        correct >= 180,
        "{correct} of 200 single frames identified correctly"
    );

    // Bursts of three: the burst rule smooths out single-frame mistakes.
    let mut correct_bursts = 0;
    for person in 1..=40 {
        let frames = (6..=8).map(|photo| orl_raw(person, photo)).collect();
        let answer = client.identify(identify(frames, 0)).await.unwrap();
        correct_bursts += (answer.identified && answer.operator_id == operator(person)) as u32;
    }
    assert!(correct_bursts >= 38, "{correct_bursts} of 40 bursts");

    // Verification: the claim of the right person holds, a threshold below
    // every distance rejects it, and a stranger's claim is refused with NOT_FOUND.
    let verify = |who: u32, as_whom: String, threshold| VerifyRequest {
        operator_id: as_whom,
        frames: (6..=8).map(|photo| orl_raw(who, photo)).collect(),
        threshold,
        min_usable_frames: 0,
        min_agreement: None,
    };
    let yes = client.verify(verify(7, operator(7), None)).await.unwrap();
    assert!(
        yes.verified && yes.votes == 3 && yes.distance > 0.0,
        "{yes:?}"
    );
    let strict = client
        .verify(verify(7, operator(7), Some(1e-9)))
        .await
        .unwrap();
    assert!(
        !strict.verified && strict.reason.contains("threshold"),
        "{strict:?}"
    );
    let err = client
        .verify(verify(7, "nobody".into(), None))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(Code::NotFound), "{err}");
    // A claim of someone else is farther than the truth.
    let other = client.verify(verify(7, operator(8), None)).await.unwrap();
    assert!(other.distance > yes.distance, "{other:?} vs {yes:?}");
    server.stop().await;
}

/// Issue 24: the request carries the kiosk's whole burst rule, and the
/// service follows each field. A burst of three frames of person 3 and two
/// of person 4: accepted for person 3 at the default agreement (3 of 5 ≥
/// 0.6), a disagreement at 0.8, too few frames when all five must be
/// usable and one is blank, not recognised under a tiny threshold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_follows_each_field_of_the_requests_burst_rule() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(config(dir.path(), &[])).await;
    let client = server.client();
    enroll_orl(&client, 1..=6).await;
    let frames: Vec<_> = [(3, 6), (3, 7), (3, 8), (4, 6), (4, 7)]
        .into_iter()
        .map(|(person, photo)| orl_raw(person, photo))
        .collect();
    let burst = |min_usable_frames, threshold, min_agreement| IdentifyRequest {
        frames: frames.clone(),
        max_candidates: 1,
        threshold,
        min_usable_frames,
        min_agreement,
    };
    // Each frame on its own, to know the votes the rule will count.
    let mut votes = std::collections::HashMap::<String, u32>::new();
    for frame in &frames {
        let one = client
            .identify(identify(vec![frame.clone()], 1))
            .await
            .unwrap();
        *votes
            .entry(one.frames[0].candidates[0].operator_id.clone())
            .or_default() += 1;
    }
    assert_eq!(
        (votes.get(&operator(3)), votes.get(&operator(4))),
        (Some(&3), Some(&2)),
        "the frames' nearest operators: {votes:?}"
    );

    let default = client.identify(burst(5, None, None)).await.unwrap();
    assert!(
        default.identified && default.operator_id == operator(3),
        "{default:?}"
    );
    let agreed = client.identify(burst(5, None, Some(0.6))).await.unwrap();
    assert!(agreed.identified && agreed.votes == 3, "{agreed:?}");
    let stricter = client.identify(burst(5, None, Some(0.8))).await.unwrap();
    assert!(
        !stricter.identified && stricter.reason.contains("agree"),
        "{stricter:?}"
    );
    let strict = client
        .identify(burst(5, Some(1e-9), Some(0.6)))
        .await
        .unwrap();
    assert!(
        !strict.identified && strict.reason.contains("threshold"),
        "{strict:?}"
    );
    // A camera image without a face in place of the last frame: four
    // usable frames, where the request asks for five.
    let mut png = Vec::new();
    image::GrayImage::from_pixel(640, 480, image::Luma([128]))
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let mut blank = burst(5, None, Some(0.6));
    blank.frames[4] = kubevision_offload_client::proto::Frame {
        content: Some(kubevision_offload_client::proto::frame::Content::CameraImage(png.into())),
    };
    let too_few = client.identify(blank.clone()).await.unwrap();
    assert!(
        !too_few.identified && too_few.reason.contains("5 are needed"),
        "{too_few:?}"
    );
    blank.min_usable_frames = 4;
    let enough = client.identify(blank).await.unwrap();
    assert!(
        enough.identified && enough.operator_id == operator(3),
        "{enough:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_are_synced_incrementally_and_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(config(dir.path(), &[])).await;
    let client = server.client();
    enroll_orl(&client, 1..=3).await; // versions 1–3
    let full = client.sync_gallery(0).await.unwrap();
    assert_eq!((full.version, full.changes.len()), (3, 3));
    let Event::Upsert(first) = &full.changes[0] else {
        panic!("{:?}", full.changes[0])
    };
    assert_eq!(first.templates.len(), 5);
    let template = vision::lbph::Template::from_bytes(&first.templates[0])
        .expect("synced templates are vision templates");
    assert_eq!(
        template.layout().grid_x,
        full.header.template_format.as_ref().unwrap().grid_x
    );

    let dup = client
        .enroll(EnrollRequest {
            operator_id: operator(1),
            frames: vec![orl_raw(1, 6)],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(dup.code(), Some(Code::AlreadyExists));
    let appended = client
        .update_operator(UpdateOperatorRequest {
            operator_id: operator(2),
            frames: vec![orl_raw(2, 6)],
            mode: Mode::Append as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!((appended.gallery_version, appended.template_count), (4, 6));
    let replaced = client
        .update_operator(UpdateOperatorRequest {
            operator_id: operator(2),
            frames: vec![orl_raw(2, 7)],
            mode: Mode::Replace as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(replaced.template_count, 1);
    let removed = client.remove_operator(operator(1)).await.unwrap();
    assert_eq!(removed.gallery_version, 6);
    assert_eq!(
        client
            .remove_operator(operator(1))
            .await
            .unwrap_err()
            .code(),
        Some(Code::NotFound)
    );

    let delta = client.sync_gallery(3).await.unwrap();
    assert_eq!(delta.version, 6);
    let kinds: Vec<String> = delta
        .changes
        .iter()
        .map(|c| match c {
            Event::Upsert(u) => format!(
                "upsert {} v{} {}",
                u.operator_id,
                u.version,
                u.templates.len()
            ),
            Event::Removal(r) => format!("remove {} v{}", r.operator_id, r.version),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(kinds, ["upsert orl-02 v5 1", "remove orl-01 v6"]);
    let ahead = client.sync_gallery(99).await.unwrap_err();
    assert_eq!(ahead.code(), Some(Code::FailedPrecondition), "{ahead}");

    // The removed operator is no longer found; the replaced one matches its new template.
    let answer = client
        .identify(identify(vec![orl_raw(1, 1)], 1))
        .await
        .unwrap();
    assert_ne!(answer.operator_id, operator(1));
    let gallery_id = client.gallery_status().await.unwrap().gallery_id;
    server.stop().await;

    // A restart on the same data directory loads the same gallery.
    let server = InProcess::start(config(dir.path(), &[])).await;
    let client = server.client();
    let status = client.gallery_status().await.unwrap();
    assert_eq!(
        (
            status.gallery_id,
            status.version,
            status.operator_count,
            status.template_count
        ),
        (gallery_id, 6, 2, 6)
    );
    let answer = client
        .identify(identify(vec![orl_raw(2, 7)], 1))
        .await
        .unwrap();
    assert_eq!(
        (answer.operator_id.as_str(), answer.distance),
        (operator(2).as_str(), 0.0),
        "its own template is at distance 0"
    );
    server.stop().await;
}

/// Asks one version of the reflection service one question, as grpcurl does.
macro_rules! reflect {
    ($version:ident, $channel:expr, $request:expr) => {{
        use tonic_reflection::pb::$version::{
            server_reflection_client::ServerReflectionClient, ServerReflectionRequest,
        };
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some($request),
        };
        let mut replies = ServerReflectionClient::new($channel)
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        replies
            .message()
            .await
            .unwrap()
            .expect("one reply")
            .message_response
            .expect("an answer")
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reflection_and_metrics_answer() {
    use tonic_health::pb::{
        health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
    };
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(config(dir.path(), &[])).await;
    let channel = tonic::transport::Channel::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel.clone());
    for service in [
        "",
        "kubevision.v1.RecognitionService",
        "kubevision.v1.GalleryService",
    ] {
        let reply = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply.status(), ServingStatus::Serving, "{service:?}");
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    // Reflection, as grpcurl asks it: both the v1 and the v1alpha service.
    let expected = [
        "grpc.health.v1.Health",
        "kubevision.v1.GalleryService",
        "kubevision.v1.RecognitionService",
    ];
    let MessageResponse::ListServicesResponse(list) = reflect!(
        v1,
        channel.clone(),
        MessageRequest::ListServices(String::new())
    ) else {
        panic!("not a service list")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for name in expected {
        assert!(
            names.iter().any(|n| n == name),
            "v1 reflection lacks {name}: {names:?}"
        );
    }
    {
        use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
        let symbol =
            MessageRequest::FileContainingSymbol("kubevision.v1.RecognitionService".into());
        let MessageResponse::FileDescriptorResponse(files) =
            reflect!(v1alpha, channel.clone(), symbol)
        else {
            panic!("not a file descriptor")
        };
        assert!(
            !files.file_descriptor_proto.is_empty(),
            "v1alpha reflection describes the service"
        );
    }

    // One good and one refused request show up in the metrics by code.
    let client = server.client();
    client.gallery_status().await.unwrap();
    let _ = client.identify(identify(Vec::new(), 0)).await;
    let text = http_get(server.metrics, "/metrics").await;
    for needle in [
        "kubevision_requests_total{code=\"Ok\",method=\"GetGalleryStatus\"} 1",
        "kubevision_requests_total{code=\"InvalidArgument\",method=\"Identify\"} 1",
        "kubevision_request_duration_seconds_bucket",
        "kubevision_queue_depth 0",
        "kubevision_gallery_templates 0",
        "kubevision_backend_info{backend=\"cpu\"} 1",
        "kubevision_process_resident_memory_bytes",
    ] {
        assert!(text.contains(needle), "/metrics lacks {needle}:\n{text}");
    }
    assert!(http_get(server.metrics, "/readyz")
        .await
        .starts_with("HTTP/1.1 200"));
    server.stop().await;
}

/// A kiosk enrolls from templates it made itself (no face images on the
/// wire) with the operator's profile; sync hands both to the other kiosks,
/// and bad templates or profiles are refused with the field named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kiosks_enroll_from_templates_with_a_profile_that_sync_hands_on() {
    use kubevision_offload_client::proto::credential::Kind;
    use kubevision_offload_client::proto::operator_profile::Role;
    use kubevision_offload_client::proto::{Credential, OperatorProfile};
    use vision::lbph::{LbphParams, Template};

    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(config(dir.path(), &[])).await;
    let client = server.client();
    let template = |person, photo| {
        let crop = vision::imageio::decode_gray(&orl_bytes(person, photo)).unwrap();
        Template::extract(&LbphParams::default(), &crop)
            .unwrap()
            .to_bytes()
            .into()
    };
    // Keyed with a pepper, as kiosks make them (issue 22).
    let phc = "$argon2id$v=19$m=19456,t=2,p=1,keyid=AQIDBAUGBwg$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";
    let profile = OperatorProfile {
        display_name: "Ada Weber".into(),
        role: Role::Maintenance as i32,
        credentials: vec![Credential {
            kind: Kind::Pin as i32,
            phc: phc.into(),
        }],
    };
    let enroll = EnrollRequest {
        operator_id: operator(3),
        templates: (1..=5).map(|photo| template(3, photo)).collect(),
        profile: Some(profile.clone()),
        ..Default::default()
    };
    assert_eq!(client.enroll(enroll).await.unwrap().template_count, 5);
    let answer = client
        .identify(identify(vec![orl_raw(3, 1)], 1))
        .await
        .unwrap();
    assert_eq!(
        (answer.operator_id.as_str(), answer.distance),
        (operator(3).as_str(), 0.0),
        "the kiosk's template is matched"
    );

    let upserted = |sync: kubevision_offload_client::GallerySync| match &sync.changes[..] {
        [Event::Upsert(up)] => up.clone(),
        other => panic!("{other:?}"),
    };
    let up = upserted(client.sync_gallery(0).await.unwrap());
    assert_eq!(
        (up.templates.len(), up.profile.as_ref()),
        (5, Some(&profile))
    );

    // A profile-only update keeps the templates; a new PIN travels on.
    let mut changed = profile.clone();
    changed.credentials[0].phc = phc.replace("aGFzaGhh", "bmV3bmV3");
    let update = UpdateOperatorRequest {
        operator_id: operator(3),
        profile: Some(changed.clone()),
        mode: Mode::Replace as i32,
        ..Default::default()
    };
    assert_eq!(
        client.update_operator(update).await.unwrap().template_count,
        5
    );
    let up = upserted(client.sync_gallery(1).await.unwrap());
    assert_eq!((up.templates.len(), up.profile), (5, Some(changed)));

    let refused = |request: EnrollRequest, needle: &'static str| {
        let client = client.clone();
        async move {
            let status = client.enroll(request).await.unwrap_err();
            assert_eq!(status.code(), Some(Code::InvalidArgument), "{status}");
            assert!(status.to_string().contains(needle), "{needle}: {status}");
        }
    };
    let with =
        |templates: Vec<prost::bytes::Bytes>, profile: Option<OperatorProfile>| EnrollRequest {
            operator_id: operator(4),
            templates,
            profile,
            ..Default::default()
        };
    refused(with(vec![vec![1, 2, 3].into()], None), "template 0").await;
    let other_grid = Template::extract(
        &LbphParams {
            grid_x: 4,
            ..LbphParams::default()
        },
        &vision::imageio::decode_gray(&orl_bytes(4, 1)).unwrap(),
    );
    refused(
        with(vec![other_grid.unwrap().to_bytes().into()], None),
        "grid",
    )
    .await;
    let plaintext_pin = OperatorProfile {
        credentials: vec![Credential {
            kind: Kind::Pin as i32,
            phc: "1234".into(),
        }],
        ..profile.clone()
    };
    refused(with(vec![template(4, 1)], Some(plaintext_pin)), "phc").await;
    refused(
        with(
            vec![template(4, 1)],
            Some(OperatorProfile { role: 0, ..profile }),
        ),
        "role",
    )
    .await;
    assert_eq!(
        client.gallery_status().await.unwrap().version,
        2,
        "refused enrollments change nothing"
    );
    server.stop().await;
}
