//! Issue 11's denial-of-service attacks, each reproduced against the server
//! binary as its own process, with a normal Identify sent beside it that
//! must still answer within its deadline. The server's resident memory
//! (its /metrics) and the latencies are printed as figures
//! (`cargo test -p kubevision-offload --test abuse -- --nocapture`).
//!
//! Also over RPC: confusable operator ids and absurd Argon2 parameters
//! are refused with INVALID_ARGUMENT naming the problem.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::raw::Raw;
use crate::common::*;
use kubevision_offload_client::proto::gallery_service_client::GalleryServiceClient;
use kubevision_offload_client::proto::recognition_service_client::RecognitionServiceClient;
use kubevision_offload_client::proto::{
    credential::Kind, frame::Content, operator_profile::Role, Credential, EnrollRequest, Frame,
    IdentifyRequest, OperatorProfile, SyncGalleryRequest,
};
use prost::bytes::Bytes;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

const TOKEN: &str = "s3cret-line-token";

/// The server binary on loopback, stopped when dropped.
struct Served {
    child: Child,
    url: String,
    metrics: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn serve(extra: &[&str]) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let (port, metrics) = (free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_kubevision-offload"))
        .arg(format!("--listen=127.0.0.1:{port}"))
        .arg(format!("--metrics-listen=127.0.0.1:{metrics}"))
        .arg(format!("--data-dir={}", dir.path().display()))
        .arg(format!("--threshold={ACCEPT_ALL}"))
        .arg(format!("--token={TOKEN}"))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the server binary starts");
    let served = Served {
        child,
        url: format!("http://127.0.0.1:{port}"),
        metrics: format!("127.0.0.1:{metrics}").parse().unwrap(),
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let up = tokio::net::TcpStream::connect(served.metrics).await.is_ok()
            && http_get(served.metrics, "/readyz")
                .await
                .starts_with("HTTP/1.1 200");
        if up {
            break;
        }
        assert!(Instant::now() < deadline, "the server did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    served
}

impl Served {
    async fn channel(&self) -> Channel {
        Endpoint::from_shared(self.url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// A connection that reads as little as HTTP/2 lets it: 64 KiB windows.
    async fn stingy_channel(&self) -> Channel {
        Endpoint::from_shared(self.url.clone())
            .unwrap()
            .initial_stream_window_size(65_535)
            .initial_connection_window_size(65_535)
            .connect()
            .await
            .unwrap()
    }

    async fn metric(&self, name: &str) -> f64 {
        let text = http_get(self.metrics, "/metrics").await;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} not in /metrics"))
    }

    async fn rss_mib(&self) -> f64 {
        self.metric("kubevision_process_resident_memory_bytes")
            .await
            / (1024.0 * 1024.0)
    }

    /// Samples the server's resident memory every 20 ms until stopped; the peak.
    fn sample_rss(
        &self,
    ) -> (
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<f64>,
    ) {
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let metrics = self.metrics;
        let task = tokio::spawn(async move {
            let mut peak = 0f64;
            loop {
                let text = http_get(metrics, "/metrics").await;
                if let Some(v) = text.lines().find_map(|l| {
                    l.strip_prefix("kubevision_process_resident_memory_bytes ")?
                        .trim()
                        .parse::<f64>()
                        .ok()
                }) {
                    peak = peak.max(v / (1024.0 * 1024.0));
                }
                tokio::select! {
                    _ = &mut stopped => return peak,
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
            }
        });
        (stop, task)
    }
}

fn request<T>(message: T, token: Option<&str>, timeout: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(timeout);
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
}

/// A normal one-frame Identify with a 2 s deadline: it must answer, and
/// with operator 1. Returns its latency.
async fn normal_identify(channel: &Channel) -> Duration {
    let started = Instant::now();
    let answer = RecognitionServiceClient::new(channel.clone())
        .identify(request(
            IdentifyRequest {
                frames: vec![orl_raw(1, 2)],
                max_candidates: 1,
                min_usable_frames: 1,
                min_agreement: None,
                threshold: None,
            },
            Some(TOKEN),
            Duration::from_secs(2),
        ))
        .await
        .expect("a normal Identify answers within its deadline beside the attack")
        .into_inner();
    assert_eq!(answer.operator_id, operator(1));
    started.elapsed()
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

async fn enroll(channel: &Channel, person: u32, photos: u32) {
    GalleryServiceClient::new(channel.clone())
        .enroll(request(
            EnrollRequest {
                operator_id: operator(person),
                frames: (0..photos).map(|i| orl_raw(person, 1 + i % 10)).collect(),
                ..Default::default()
            },
            Some(TOKEN),
            Duration::from_secs(30),
        ))
        .await
        .unwrap();
}

/// Sends already-encoded protobuf bytes as a request, so that a hostile
/// message need not be built (or allocated) in this process.
async fn raw_identify(channel: Channel, body: Bytes, token: Option<&str>) -> Result<(), Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    grpc.unary::<Bytes, Bytes, _>(
        request(body, token, Duration::from_secs(30)),
        "/kubevision.v1.RecognitionService/Identify"
            .parse()
            .unwrap(),
        Raw,
    )
    .await
    .map(|_| ())
}

/// 16 000 000 bytes of `IdentifyRequest.frames` entries that are empty
/// messages (0x0a 0x00): eight million `Frame`s once decoded.
fn empty_frames_bomb() -> Bytes {
    Bytes::from([0x0a, 0x00].repeat(8_000_000))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unread_sync_streams_give_their_slots_back_and_identify_still_answers() {
    let server = serve(&["--sync-timeout-secs=3"]).await;
    let channel = server.channel().await;
    // A gallery of more events than the stream buffers and the stingy
    // windows take: 40 operators of 3 templates each.
    for person in 1..=40 {
        enroll(&channel, person, 3).await;
    }
    let rss_before = server.rss_mib().await;
    let (stop, peak) = server.sample_rss();

    // 300 SyncGallery streams on 10 connections, opened and never read.
    let mut connections = Vec::new();
    for _ in 0..10 {
        connections.push(server.stingy_channel().await);
    }
    let opened_at = Instant::now();
    let opens: Vec<_> = (0..300)
        .map(|i| {
            let channel = connections[i % 10].clone();
            tokio::spawn(async move {
                GalleryServiceClient::new(channel)
                    .sync_gallery(request(
                        SyncGalleryRequest { since_version: 0 },
                        Some(TOKEN),
                        Duration::from_secs(60),
                    ))
                    .await
                    .map(|r| r.into_inner())
            })
        })
        .collect();
    let (mut held, mut refused) = (Vec::new(), 0);
    for open in opens {
        match open.await.unwrap() {
            Ok(stream) => held.push(stream),
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert!(status.message().contains("streams"), "{status:?}");
                refused += 1;
            }
        }
    }
    assert!(
        !held.is_empty() && refused > 0,
        "{} held, {refused} refused",
        held.len()
    );
    let admitted = held.len();

    // Beside the held streams, normal calls answer at once.
    let mut latencies = Vec::new();
    for _ in 0..10 {
        latencies.push(normal_identify(&channel).await);
    }
    latencies.sort();
    let in_flight_during = server.metric("kubevision_requests_in_flight").await;
    assert!(
        in_flight_during >= admitted as f64 / 2.0,
        "the unread streams are stalled, holding their slots: {in_flight_during} of {admitted}"
    );
    let rss_during = server.rss_mib().await;

    // The streams' deadline is the server's 3 s: unread or not, their
    // slots come back by then (plus a little scheduling).
    let mut released_after = None;
    while opened_at.elapsed() < Duration::from_secs(8) {
        if server.metric("kubevision_requests_in_flight").await == 0.0 {
            released_after = Some(opened_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let released_after = released_after.expect("the unread streams gave their slots back");
    assert!(
        released_after < Duration::from_secs(5),
        "{released_after:?}"
    );
    let _ = stop.send(());
    let peak = peak.await.unwrap();

    // A reader that comes back to a timed-out stream learns why, and a new
    // sync reads the whole gallery.
    // (The other unread streams go first: on these stingy connections,
    // their buffered data would hold the whole connection window.)
    let mut stale = held.pop().unwrap();
    drop(held);
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stale.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return None,
                Err(status) => return Some(status.code()),
            }
        }
    })
    .await
    .expect("a timed-out stream ends");
    assert_eq!(ended, Some(Code::DeadlineExceeded));
    let mut fresh = GalleryServiceClient::new(channel.clone())
        .sync_gallery(request(
            SyncGalleryRequest { since_version: 0 },
            Some(TOKEN),
            Duration::from_secs(10),
        ))
        .await
        .unwrap()
        .into_inner();
    let mut events = 0;
    while let Some(_event) = fresh.message().await.unwrap() {
        events += 1;
    }
    assert_eq!(events, 1 + 40 + 1, "header, 40 operators, complete");
    normal_identify(&channel).await;

    eprintln!(
        "FIGURES stall: 300 unread SyncGallery streams: {} admitted, {refused} refused at once; \
         in flight during {in_flight_during}; slots back after {}; \
         Identify beside them p50 {} max {}; \
         server RSS {rss_before:.0} MiB before, {rss_during:.0} MiB during, peak {peak:.0} MiB",
        admitted,
        ms(released_after),
        ms(latencies[latencies.len() / 2]),
        ms(*latencies.last().unwrap()),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_token_is_checked_before_the_body_is_read() {
    let server = serve(&[]).await;
    let channel = server.channel().await;
    enroll(&channel, 1, 1).await;
    let bomb = empty_frames_bomb();
    let rss_before = server.rss_mib().await;

    // 24 unauthenticated 16 MB requests at once, a normal Identify beside them.
    let (stop, peak) = server.sample_rss();
    let started = Instant::now();
    let attacks: Vec<_> = (0..24)
        .map(|_| {
            let bomb = bomb.clone();
            let url = server.url.clone();
            tokio::spawn(async move {
                let channel = Endpoint::from_shared(url).unwrap().connect().await.unwrap();
                let started = Instant::now();
                let result = raw_identify(channel, bomb, None).await;
                (result, started.elapsed())
            })
        })
        .collect();
    let beside = normal_identify(&channel).await;
    let mut slowest = Duration::ZERO;
    for attack in attacks {
        let (result, took) = attack.await.unwrap();
        let status = result.expect_err("refused");
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        slowest = slowest.max(took);
    }
    let all = started.elapsed();
    let _ = stop.send(());
    let peak_anonymous = peak.await.unwrap();

    // The same bomb with the token: refused from its structure, undecoded.
    let (stop, peak) = server.sample_rss();
    let attacks: Vec<_> = (0..8)
        .map(|_| {
            let (bomb, url) = (bomb.clone(), server.url.clone());
            tokio::spawn(async move {
                let channel = Endpoint::from_shared(url).unwrap().connect().await.unwrap();
                raw_identify(channel, bomb, Some(TOKEN)).await
            })
        })
        .collect();
    let beside_authenticated = normal_identify(&channel).await;
    for attack in attacks {
        let status = attack.await.unwrap().expect_err("refused");
        assert!(
            matches!(
                status.code(),
                Code::InvalidArgument | Code::ResourceExhausted
            ),
            "{status:?}"
        );
        if status.code() == Code::InvalidArgument {
            assert!(status.message().contains("protobuf fields"), "{status:?}");
        }
    }
    let _ = stop.send(());
    let peak_authenticated = peak.await.unwrap();
    normal_identify(&channel).await;
    assert!(
        peak_anonymous < rss_before + 200.0,
        "unauthenticated requests cost memory: {rss_before:.0} → {peak_anonymous:.0} MiB"
    );

    eprintln!(
        "FIGURES pre-auth: 24 × 16 MB unauthenticated Identify (8 M empty frames each): \
         all UNAUTHENTICATED, slowest {} (all {}); Identify beside them {}; \
         server RSS {rss_before:.0} MiB before, peak {peak_anonymous:.0} MiB. \
         8 × the same with the token: refused undecoded, Identify beside them {}, peak {peak_authenticated:.0} MiB",
        ms(slowest),
        ms(all),
        ms(beside),
        ms(beside_authenticated),
    );
}

/// A PNG of `size` × `size` pixels, 16-bit RGBA or 8-bit grey, all zero.
fn png(size: u32, sixteen_bit: bool) -> Bytes {
    let mut bytes = Vec::new();
    let cursor = &mut std::io::Cursor::new(&mut bytes);
    if sixteen_bit {
        image::ImageBuffer::<image::Rgba<u16>, _>::new(size, size)
            .write_to(cursor, image::ImageFormat::Png)
            .unwrap();
    } else {
        image::GrayImage::new(size, size)
            .write_to(cursor, image::ImageFormat::Png)
            .unwrap();
    }
    bytes.into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn large_png_bursts_are_refused_from_their_headers() {
    let server = serve(&["--max-concurrency=2"]).await;
    let channel = server.channel().await;
    enroll(&channel, 1, 1).await;
    let deep = png(4000, true);
    let grey = png(4000, false);
    // As many as a 16 MiB message holds, at most 32.
    let burst = |image: &Bytes| IdentifyRequest {
        frames: vec![
            Frame {
                content: Some(Content::CameraImage(image.clone())),
            };
            (15_000_000 / image.len()).min(32)
        ],
        ..Default::default()
    };
    let client = RecognitionServiceClient::new(channel.clone());
    let expect = |result: Result<_, Status>, words: &str| {
        let status = result.expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(words), "{status:?}");
    };
    // 4 of each at once, a normal Identify beside them.
    let started = Instant::now();
    let attacks: Vec<_> = (0..8)
        .map(|i| {
            let (mut client, request_) = (
                client.clone(),
                burst(if i % 2 == 0 { &deep } else { &grey }),
            );
            tokio::spawn(async move {
                client
                    .identify(request(request_, Some(TOKEN), Duration::from_secs(30)))
                    .await
            })
        })
        .collect();
    let beside = normal_identify(&channel).await;
    for (i, attack) in attacks.into_iter().enumerate() {
        let result = attack.await.unwrap();
        if i % 2 == 0 {
            expect(result, "bits per channel");
        } else {
            expect(result, "in one request");
        }
    }
    let all = started.elapsed();
    assert!(all < Duration::from_secs(10), "{all:?}");
    eprintln!(
        "FIGURES pixels: 4 × {} frames of 4000 × 4000 16-bit RGBA ({} KB a frame) and 4 × {} of 8-bit grey: \
         refused from their headers in {} all together; Identify beside them {}",
        burst(&deep).frames.len(),
        deep.len() / 1000,
        burst(&grey).frames.len(),
        ms(all),
        ms(beside)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancelled_call_stops_its_work() {
    let server = serve(&["--max-concurrency=1", "--max-queue=8"]).await;
    let channel = server.channel().await;
    enroll(&channel, 1, 1).await;
    let status = GalleryServiceClient::new(channel.clone())
        .get_gallery_status(request(
            Default::default(),
            Some(TOKEN),
            Duration::from_secs(5),
        ))
        .await
        .unwrap()
        .into_inner();
    if !status.accepts_camera_images {
        eprintln!("no face detector here: camera frames cannot make work to cancel; skipped");
        return;
    }
    // 32 camera frames of 1024 × 768: seconds of detection on one worker.
    let mut gradient = Vec::new();
    image::GrayImage::from_fn(1024, 768, |x, y| {
        image::Luma([((x * 3 + y * 5) % 256) as u8])
    })
    .write_to(
        &mut std::io::Cursor::new(&mut gradient),
        image::ImageFormat::Png,
    )
    .unwrap();
    let heavy = IdentifyRequest {
        frames: vec![
            Frame {
                content: Some(Content::CameraImage(gradient.into())),
            };
            32
        ],
        ..Default::default()
    };
    let mut client = RecognitionServiceClient::new(channel.clone());
    let started = Instant::now();
    client
        .identify(request(heavy.clone(), Some(TOKEN), Duration::from_secs(60)))
        .await
        .unwrap();
    let whole = started.elapsed();

    // The same with a 100 ms deadline, then at once a normal Identify: it
    // waits for the single worker only until the cancelled call's current
    // frame is done, not for the whole burst.
    let err = client
        .identify(request(heavy, Some(TOKEN), Duration::from_millis(100)))
        .await
        .unwrap_err();
    assert!(
        matches!(err.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{err:?}"
    );
    let next = normal_identify(&channel).await;
    eprintln!(
        "FIGURES cancel: 32 camera frames take {} on one worker; after cancelling at 100 ms the next Identify took {}",
        ms(whole),
        ms(next)
    );
    if whole > Duration::from_millis(800) {
        assert!(next < whole / 2, "next {next:?}, whole {whole:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confusable_ids_and_absurd_hashes_are_refused_over_rpc() {
    let server = serve(&[]).await;
    let channel = server.channel().await;
    let mut gallery = GalleryServiceClient::new(channel.clone());
    let enroll_as = |id: &str, profile: Option<OperatorProfile>| {
        request(
            EnrollRequest {
                operator_id: id.into(),
                frames: vec![orl_raw(2, 1)],
                profile,
                ..Default::default()
            },
            Some(TOKEN),
            Duration::from_secs(10),
        )
    };
    for (id, words) in [
        ("   ", "only whitespace"),
        (" orl-02", "begins or ends with whitespace"),
        ("orl\u{200B}-02", "zero-width"),
        ("\u{202E}20-lro", "bidirectional control"),
        ("orl\u{2060}-02", "U+2060"),
        ("orl\u{00AD}-02", "format character"),
        ("\u{043E}rl-02", "mixes the scripts"),
        ("\u{FF4F}rl-02", "compatibility character"),
    ] {
        let status = gallery.enroll(enroll_as(id, None)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{id:?}: {status:?}");
        assert!(status.message().contains(words), "{id:?}: {status:?}");
        assert!(
            status.message().contains("operator_id"),
            "{id:?}: {status:?}"
        );
    }
    // NFC: the decomposed and the composed "Jörg" are one operator.
    let first = gallery
        .enroll(enroll_as("Jo\u{0308}rg", None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.operator_id, "J\u{00F6}rg");
    let again = gallery
        .enroll(enroll_as("J\u{00F6}rg", None))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::AlreadyExists, "{again:?}");

    let profile = |phc: &str| OperatorProfile {
        display_name: "Ada Weber".into(),
        role: Role::Operator as i32,
        credentials: vec![Credential {
            kind: Kind::Pin as i32,
            phc: phc.into(),
        }],
    };
    let salt_hash = "$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";
    for (params, words) in [
        ("m=8,t=1,p=1", "m (memory, KiB) is 8"),
        ("m=4194304,t=4294967295,p=1", "m (memory, KiB) is 4194304"),
        ("m=19456,t=4294967295,p=1", "t (passes) is 4294967295"),
        ("m=19456,t=2,p=200", "p (lanes) is 200"),
    ] {
        let phc = format!("$argon2id$v=19${params}{salt_hash}");
        let status = gallery
            .enroll(enroll_as("orl-02", Some(profile(&phc))))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{phc}: {status:?}");
        assert!(status.message().contains(words), "{phc}: {status:?}");
        assert!(
            status.message().contains("profile.credentials[0].phc"),
            "{phc}: {status:?}"
        );
    }
    // Keyed with a pepper: a hash without a key id is refused too (issue 22).
    let good = format!("$argon2id$v=19$m=19456,t=2,p=1,keyid=AQIDBAUGBwg{salt_hash}");
    gallery
        .enroll(enroll_as("orl-02", Some(profile(&good))))
        .await
        .unwrap();
}
