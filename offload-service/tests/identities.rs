//! Issue 11, "Identities and scopes": each kiosk has its own identity (a
//! per-kiosk token kept as its SHA-256, or a client certificate), each
//! identity its scopes; a call outside them is PERMISSION_DENIED, unknown
//! credentials UNAUTHENTICATED, both decided before the body is read.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::raw::Raw;
use crate::common::*;
use kubevision_offload::identity::token_sha256_hex;
use kubevision_offload_client::proto::{EnrollRequest, IdentifyRequest};
use kubevision_offload_client::{ClientConfig, OffloadClient, TlsSettings};
use prost::bytes::Bytes;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use tonic::{Code, Status};

/// Tokens as a kiosk keeps them: 32 random bytes, hex (here fixed).
const KIOSK_TOKEN: &str = "6b696f736b2d6c696e652d332d746f6b656e2d6f662d33322d6279746573212";
const ENROL_TOKEN: &str = "656e726f6c2d73746174696f6e2d746f6b656e2d6f662d33322d6279746573";
const LEGACY_TOKEN: &str = "6c65676163792d7368617265642d746f6b656e2d6f662d33322d6279746573";

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn identities_file(dir: &Path) -> String {
    write(
        dir,
        "identities.json",
        &format!(
            r#"{{
  "identities": [
    {{ "name": "kiosk-line-3", "scopes": ["identify", "sync"],
       "token_sha256": "{}" }},
    {{ "name": "enrol-station", "scopes": ["enrol"],
       "token_sha256": "{}" }}
  ]
}}
"#,
            token_sha256_hex(KIOSK_TOKEN),
            token_sha256_hex(ENROL_TOKEN)
        ),
    )
}

fn client(url: String, token: Option<&str>, tls: Option<TlsSettings>) -> OffloadClient {
    let mut config = ClientConfig::new(url);
    config.retry.max_attempts = 1;
    config.token = token.map(String::from);
    config.tls = tls;
    OffloadClient::new(config).unwrap()
}

fn enrollment(person: u32) -> EnrollRequest {
    EnrollRequest {
        operator_id: operator(person),
        frames: (1..=3).map(|photo| orl_raw(person, photo)).collect(),
        ..Default::default()
    }
}

fn identification(person: u32) -> IdentifyRequest {
    IdentifyRequest {
        frames: vec![orl_raw(person, 9)],
        max_candidates: 1,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_identities_get_their_scopes_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let identities = identities_file(dir.path());
    let token_file = write(dir.path(), "legacy.token", &format!("{LEGACY_TOKEN}\n"));
    // The file holds only hashes: a copy of it gives no token away.
    let text = std::fs::read_to_string(&identities).unwrap();
    for token in [KIOSK_TOKEN, ENROL_TOKEN, LEGACY_TOKEN] {
        assert!(!text.contains(token), "{text}");
    }
    let server = InProcess::start(config(
        &dir.path().join("data"),
        &[
            &format!("--identities={identities}"),
            &format!("--token-file={token_file}"),
        ],
    ))
    .await;
    let kiosk = client(server.url(), Some(KIOSK_TOKEN), None);
    let station = client(server.url(), Some(ENROL_TOKEN), None);
    let legacy = client(server.url(), Some(LEGACY_TOKEN), None);

    // enrol: the station enrols, the kiosk may not.
    let change = station.enroll(enrollment(1)).await.unwrap();
    assert_eq!(change.operator_id, operator(1));
    let denied = kiosk.enroll(enrollment(2)).await.unwrap_err();
    assert_eq!(denied.code(), Some(Code::PermissionDenied), "{denied}");
    let message = denied.to_string();
    for part in ["kiosk-line-3", "Enroll", "\"enrol\""] {
        assert!(message.contains(part), "names {part}: {message}");
    }
    let denied = kiosk.remove_operator(operator(1)).await.unwrap_err();
    assert_eq!(denied.code(), Some(Code::PermissionDenied), "{denied}");

    // identify and sync: the kiosk may, the station may not.
    let identified = kiosk.identify(identification(1)).await.unwrap();
    assert_eq!(identified.operator_id, operator(1));
    let synced = kiosk.sync_gallery(0).await.unwrap();
    assert_eq!(synced.changes.len(), 1);
    assert!(kiosk.gallery_status().await.is_ok());
    let denied = station.identify(identification(1)).await.unwrap_err();
    assert_eq!(denied.code(), Some(Code::PermissionDenied), "{denied}");
    assert!(denied.to_string().contains("\"identify\""), "{denied}");
    let denied = station.sync_gallery(0).await.unwrap_err();
    assert_eq!(denied.code(), Some(Code::PermissionDenied), "{denied}");

    // The legacy token from --token-file has every scope.
    legacy.enroll(enrollment(2)).await.unwrap();
    legacy.identify(identification(2)).await.unwrap();

    // Unknown, missing: UNAUTHENTICATED.
    for token in [Some("not-a-token-this-service-knows-at-all"), None] {
        let refused = client(server.url(), token, None)
            .gallery_status()
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Some(Code::Unauthenticated), "{refused}");
    }
    server.stop().await;
}

/// Both refusals come before the body is read: a 16 MB body that would
/// decode to eight million frames (or, with the right scope, be refused
/// for its structure, INVALID_ARGUMENT) is answered from the headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_come_before_the_body_is_decoded() {
    let dir = tempfile::tempdir().unwrap();
    let identities = identities_file(dir.path());
    let server = InProcess::start(config(
        &dir.path().join("data"),
        &[&format!("--identities={identities}")],
    ))
    .await;
    let bomb = Bytes::from([0x0a, 0x00].repeat(8_000_000));
    let identify = "/kubevision.v1.RecognitionService/Identify";
    let enroll = "/kubevision.v1.GalleryService/Enroll";

    let unknown = raw_call(&server, identify, bomb.clone(), Some("guess")).await;
    assert_eq!(unknown.code(), Code::Unauthenticated, "{unknown:?}");
    let anonymous = raw_call(&server, identify, bomb.clone(), None).await;
    assert_eq!(anonymous.code(), Code::Unauthenticated, "{anonymous:?}");
    let out_of_scope = raw_call(&server, enroll, bomb.clone(), Some(KIOSK_TOKEN)).await;
    assert_eq!(
        out_of_scope.code(),
        Code::PermissionDenied,
        "{out_of_scope:?}"
    );
    // With the right scope the body is read, and refused for its structure.
    let read = raw_call(&server, identify, bomb, Some(KIOSK_TOKEN)).await;
    assert_eq!(read.code(), Code::InvalidArgument, "{read:?}");
    assert!(read.message().contains("protobuf fields"), "{read:?}");
    // None of the refused calls reached the RPC layer.
    let metrics = http_get(server.metrics, "/metrics").await;
    let reached: Vec<_> = metrics
        .lines()
        .filter(|l| l.starts_with("kubevision_requests_total") && !l.ends_with(" 0"))
        .collect();
    assert!(reached.is_empty(), "{reached:?}");
    server.stop().await;
}

/// Issues a client certificate named by the CN and/or SAN DNS name given.
type Issue = Box<dyn Fn(Option<&str>, Option<&str>) -> (String, String)>;

struct Pki {
    ca: String,
    server: (String, String),
    /// A client certificate signed by the CA, named by the CN or SAN given.
    leaf: Issue,
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let ca_pem = ca.pem();
    let issue = move |cn: Option<&str>, san: Option<&str>, usage| {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(san.map(String::from).into_iter().collect::<Vec<_>>()).unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "KubeVision test plant");
        if let Some(cn) = cn {
            dn.push(DnType::CommonName, cn);
        }
        params.distinguished_name = dn;
        params.extended_key_usages = vec![usage];
        (
            params.signed_by(&key, &ca).unwrap().pem(),
            key.serialize_pem(),
        )
    };
    let server = issue(
        None,
        Some("offload.kubevision.test"),
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    Pki {
        ca: ca_pem,
        server,
        leaf: Box::new(move |cn, san| issue(cn, san, ExtendedKeyUsagePurpose::ClientAuth)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_map_to_their_identities() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki();
    let (cert, key, ca) = (
        write(dir.path(), "server.pem", &pki.server.0),
        write(dir.path(), "server.key", &pki.server.1),
        write(dir.path(), "ca.pem", &pki.ca),
    );
    let identities = write(
        dir.path(),
        "identities.json",
        r#"{"identities": [
            {"name": "kiosk-line-3", "scopes": ["identify", "sync"], "certificate": "kiosk-line-3"},
            {"name": "enrol-station", "scopes": ["enrol"], "certificate": "enrol.plant.test"}
        ]}"#,
    );
    let server = InProcess::start(config(
        &dir.path().join("data"),
        &[
            &format!("--tls-cert={cert}"),
            &format!("--tls-key={key}"),
            &format!("--tls-client-ca={ca}"),
            &format!("--identities={identities}"),
        ],
    ))
    .await;
    let with = |identity: (String, String)| {
        client(
            format!("https://{}", server.grpc),
            None,
            Some(TlsSettings {
                ca_pem: pki.ca.clone().into_bytes(),
                client_identity_pem: Some((identity.0.into_bytes(), identity.1.into_bytes())),
                domain: Some("offload.kubevision.test".into()),
            }),
        )
    };
    // One by its subject CN, one by its SAN DNS name.
    let kiosk = with((pki.leaf)(Some("kiosk-line-3"), None));
    let station = with((pki.leaf)(None, Some("enrol.plant.test")));
    let stranger = with((pki.leaf)(Some("stranger"), Some("stranger.plant.test")));

    station.enroll(enrollment(3)).await.unwrap();
    let denied = station.gallery_status().await.unwrap_err();
    assert_eq!(denied.code(), Some(Code::PermissionDenied), "{denied}");
    assert!(denied.to_string().contains("enrol-station"), "{denied}");

    assert!(kiosk.gallery_status().await.is_ok());
    kiosk.identify(identification(3)).await.unwrap();
    let denied = kiosk.enroll(enrollment(4)).await.unwrap_err();
    assert_eq!(denied.code(), Some(Code::PermissionDenied), "{denied}");
    assert!(denied.to_string().contains("kiosk-line-3"), "{denied}");

    let unknown = stranger.gallery_status().await.unwrap_err();
    assert_eq!(unknown.code(), Some(Code::Unauthenticated), "{unknown}");
    server.stop().await;
}

#[tokio::test]
async fn bad_identities_and_token_files_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let start = |flags: Vec<String>| {
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        kubevision_offload::Server::bind(config(&data, &flags))
    };
    let refused = |result: Result<kubevision_offload::Server, kubevision_offload::ServerError>| {
        result.err().expect("refuses to start").to_string()
    };

    // A syntax error: its line.
    let broken = write(
        dir.path(),
        "broken.json",
        "{\"identities\": [\n  {\"name\": \"a\", \"scopes\": [\"identify\"],,}\n]}",
    );
    let err = refused(start(vec![format!("--identities={broken}")]).await);
    assert!(err.contains("line 2"), "{err}");
    // A wrong value: its entry.
    let wrong = write(
        dir.path(),
        "wrong.json",
        &format!(
            r#"{{"identities": [
                {{"name": "kiosk-1", "scopes": ["identify"], "token_sha256": "{}"}},
                {{"name": "kiosk-2", "scopes": ["identify", "enroll"], "token_sha256": "{}"}}
            ]}}"#,
            token_sha256_hex("a"),
            token_sha256_hex("b")
        ),
    );
    let err = refused(start(vec![format!("--identities={wrong}")]).await);
    assert!(
        err.contains("entry 2 (\"kiosk-2\")") && err.contains("\"enroll\""),
        "{err}"
    );
    // A plaintext token in the file is refused, not ignored.
    let plain = write(
        dir.path(),
        "plain.json",
        r#"{"identities": [{"name": "k", "scopes": ["identify"], "token": "secret"}]}"#,
    );
    let err = refused(start(vec![format!("--identities={plain}")]).await);
    assert!(err.contains("token"), "{err}");
    // A certificate name without a client CA to verify it.
    let certs = write(
        dir.path(),
        "certs.json",
        r#"{"identities": [{"name": "k", "scopes": ["identify"], "certificate": "k"}]}"#,
    );
    let err = refused(start(vec![format!("--identities={certs}")]).await);
    assert!(err.contains("--tls-client-ca"), "{err}");
    // A token file with a short token.
    let short = write(dir.path(), "short.token", "abc\n");
    let err = refused(start(vec![format!("--token-file={short}")]).await);
    assert!(err.contains("shorter than 32"), "{err}");
    // --token and --token-file together: clap refuses.
    let args = [
        "kubevision-offload",
        "--token=x",
        &format!("--token-file={short}"),
    ];
    assert!(<kubevision_offload::Config as clap::Parser>::try_parse_from(args).is_err());
}

/// Sends already-encoded bytes, so that a hostile body need not be built.
async fn raw_call(server: &InProcess, path: &str, body: Bytes, token: Option<&str>) -> Status {
    let channel = tonic::transport::Endpoint::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(body);
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    grpc.unary::<Bytes, Bytes, _>(request, path.parse().unwrap(), Raw)
        .await
        .expect_err("refused")
}

/// The service as its own process, its log in a file; killed when dropped.
struct Served {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Served {
    /// Starts the binary and waits until it answers (any gRPC status: with
    /// identities, an unknown caller gets UNAUTHENTICATED).
    async fn start(dir: &Path, flags: &[String]) -> Self {
        let port = common::process::free_port();
        let metrics = common::process::free_port();
        let log = dir.join("server.log");
        let child = Command::new(env!("CARGO_BIN_EXE_kubevision-offload"))
            .arg(format!("--listen=127.0.0.1:{port}"))
            .arg(format!("--metrics-listen=127.0.0.1:{metrics}"))
            .arg(format!("--data-dir={}", dir.join("data").display()))
            .arg(format!("--threshold={ACCEPT_ALL}"))
            .args(flags)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("the server binary starts");
        let served = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match served.status(None).await {
                Ok(()) => break,
                Err(code) if code != Code::Unavailable && code != Code::Unknown => break,
                Err(_) => {}
            }
            assert!(Instant::now() < deadline, "the server did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        served
    }

    /// GetGalleryStatus with `token`: Ok, or the status code.
    async fn status(&self, token: Option<&str>) -> Result<(), Code> {
        match client(self.url.clone(), token, None).gallery_status().await {
            Ok(_) => Ok(()),
            Err(e) => Err(e.code().unwrap_or(Code::Unavailable)),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory laid out as the kubelet mounts a Secret: each key a link
/// into `..data`, itself a link to a timestamped directory; an update
/// writes a new directory and swaps `..data` in one rename.
struct MountedSecret {
    dir: PathBuf,
    generation: u32,
}

impl MountedSecret {
    fn new(dir: PathBuf, files: &[(&str, String)]) -> Self {
        std::fs::create_dir_all(&dir).unwrap();
        let mut secret = Self { dir, generation: 0 };
        secret.update(files);
        secret
    }

    fn update(&mut self, files: &[(&str, String)]) {
        self.generation += 1;
        let version = format!(
            "..2026_11_30_10_00_{:02}.{}",
            self.generation, self.generation
        );
        std::fs::create_dir(self.dir.join(&version)).unwrap();
        for (name, text) in files {
            std::fs::write(self.dir.join(&version).join(name), text).unwrap();
            let link = self.dir.join(name);
            if std::fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink(format!("..data/{name}"), &link).unwrap();
            }
        }
        let staged = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&version, &staged).unwrap();
        std::fs::rename(&staged, self.dir.join("..data")).unwrap();
        // Then the links of removed keys go (they dangle until then).
        for entry in std::fs::read_dir(&self.dir).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') && !files.iter().any(|(f, _)| *f == name) {
                std::fs::remove_file(self.dir.join(&name)).unwrap();
            }
        }
    }
}

fn token_identity(name: &str, scopes: &str, token: &str) -> String {
    format!(
        r#"{{"identities": [{{"name": "{name}", "scopes": [{scopes}], "token_sha256": "{}"}}]}}"#,
        token_sha256_hex(token)
    )
}

/// Waits until `check` holds, polling every 100 ms for at most `limit`;
/// returns how long it took.
async fn within<F, Fut>(limit: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// A kiosk registered after the start (its identity added to the mounted
/// Secret) gets in within the reload interval, without a restart; a
/// broken update is logged, naming the problem, and the identities read
/// before stay in force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_applies_without_a_restart_and_a_bad_file_keeps_the_old_table() {
    let dir = tempfile::tempdir().unwrap();
    let station = token_identity("enrol-station", r#""enrol", "sync""#, ENROL_TOKEN);
    let mut secret = MountedSecret::new(
        dir.path().join("identities"),
        &[("values.json", station.clone())],
    );
    let served = Served::start(
        dir.path(),
        &[
            format!("--identities={}", secret.dir.display()),
            "--identities-reload-secs=1".into(),
        ],
    )
    .await;
    let pid = served.child.id();
    assert_eq!(served.status(Some(ENROL_TOKEN)).await, Ok(()));
    assert_eq!(
        served.status(Some(KIOSK_TOKEN)).await,
        Err(Code::Unauthenticated)
    );

    // Registration: a second key in the Secret.
    let kiosk = token_identity("kiosk-line-3", r#""identify", "sync""#, KIOSK_TOKEN);
    secret.update(&[
        ("values.json", station.clone()),
        ("kiosk-line-3.json", kiosk.clone()),
    ]);
    let took = within(Duration::from_secs(4), || async {
        served.status(Some(KIOSK_TOKEN)).await.is_ok()
    })
    .await
    .expect("the new kiosk's token works within the reload interval");
    eprintln!("the registration applied after {took:?}");
    assert_eq!(served.child.id(), pid, "no restart");
    assert_eq!(served.status(Some(ENROL_TOKEN)).await, Ok(()));
    assert!(
        served.log().contains("the new identities are in force"),
        "{}",
        served.log()
    );

    // A broken update (an unknown scope): logged by name, old table kept.
    let broken = token_identity("kiosk-line-4", r#""identify", "enroll""#, LEGACY_TOKEN);
    secret.update(&[
        ("values.json", station.clone()),
        ("kiosk-line-3.json", kiosk.clone()),
        ("kiosk-line-4.json", broken),
    ]);
    let logged = within(Duration::from_secs(4), || async {
        served.log().contains("cannot be used")
    })
    .await;
    assert!(logged.is_some(), "{}", served.log());
    let log = served.log();
    assert!(
        log.contains("kiosk-line-4.json") && log.contains("unknown scope \"enroll\""),
        "names the file and the problem: {log}"
    );
    for _ in 0..3 {
        assert_eq!(served.status(Some(KIOSK_TOKEN)).await, Ok(()));
        assert_eq!(served.status(Some(ENROL_TOKEN)).await, Ok(()));
        assert_eq!(
            served.status(Some(LEGACY_TOKEN)).await,
            Err(Code::Unauthenticated)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Unregistration: the kiosk's key goes, and so does its access.
    secret.update(&[("values.json", station)]);
    within(Duration::from_secs(4), || async {
        served.status(Some(KIOSK_TOKEN)).await == Err(Code::Unauthenticated)
    })
    .await
    .expect("the removed kiosk is refused within the reload interval");
    assert_eq!(served.child.id(), pid);
}

/// `--identities` naming no identity yet (a release before its first
/// registration) lets nobody in: the service is not open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_identities_directory_lets_nobody_in() {
    let dir = tempfile::tempdir().unwrap();
    let identities = dir.path().join("identities");
    std::fs::create_dir(&identities).unwrap();
    let server = InProcess::start(config(
        &dir.path().join("data"),
        &[&format!("--identities={}", identities.display())],
    ))
    .await;
    let refused = client(server.url(), None, None)
        .enroll(enrollment(1))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some(Code::Unauthenticated), "{refused}");
    assert!(
        refused
            .to_string()
            .contains("no identity is registered yet"),
        "{refused}"
    );
    let refused = client(server.url(), Some(KIOSK_TOKEN), None)
        .gallery_status()
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some(Code::Unauthenticated), "{refused}");
    server.stop().await;
}
