//! The server's lifetime without a client library: it listens once `start`
//! returns, reports a port that is taken, advertises a name clients can
//! reach, and is gone when the handle drops; and the rejected-certificate
//! folder as an administrator's screen sees it.

use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime};

use kubevision_opcua::pki::{self, UNREADABLE};
use kubevision_opcua::{Config, Error, Line, LineServer, SessionState};

fn config(pki: &std::path::Path) -> Config {
    let mut c = Config::new(
        Line {
            line_id: "L1".into(),
            kiosk_name: "k1".into(),
        },
        pki,
    );
    c.host = "127.0.0.1".into();
    c.port = 0;
    c.allow_security_none = true;
    c
}

fn signed_in() -> SessionState {
    let now = SystemTime::now();
    SessionState {
        signed_in: true,
        personnel_number: "P-1042".into(),
        display_name: "Ada Lovelace".into(),
        role: "shift lead".into(),
        access_level: 3,
        signed_in_at: Some(now),
        factors: "face+pin".into(),
        expires_at: Some(now + Duration::from_secs(900)),
    }
}

#[test]
fn listens_until_dropped() {
    let pki = tempfile::tempdir().unwrap();
    let server = LineServer::start(config(pki.path())).unwrap();
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0);
    TcpStream::connect(addr).expect("the server listens once start returns");
    server.publish(&SessionState::signed_out()).unwrap();
    assert!(server.sign_out_requests().try_recv().is_err());
    // The self-signed application certificate is made at first start.
    assert!(pki.path().join("own/cert.der").is_file());
    assert!(pki.path().join("private/private.pem").is_file());
    drop(server);
    assert!(
        TcpStream::connect(addr).is_err(),
        "the port is closed after drop"
    );
}

#[test]
fn a_taken_port_is_an_error_not_a_panic() {
    let pki = tempfile::tempdir().unwrap();
    let first = LineServer::start(config(pki.path())).unwrap();
    let mut second = config(pki.path());
    second.port = first.local_addr().port();
    match LineServer::start(second) {
        Err(Error::Bind { .. }) => {}
        Err(e) => panic!("expected a bind error, got {e}"),
        Ok(_) => panic!("two servers on one port"),
    }
}

#[test]
fn bound_to_every_interface_it_advertises_the_host_name() {
    let pki = tempfile::tempdir().unwrap();
    let mut c = config(pki.path());
    c.host = "0.0.0.0".into();
    let server = LineServer::start(c).unwrap();
    let url = server.endpoint_url();
    assert!(!url.contains("0.0.0.0"), "{url}");
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    assert_eq!(
        url,
        format!("opc.tcp://{host}:{}/", server.local_addr().port())
    );
    // Still reachable on every interface, loopback included.
    TcpStream::connect(("127.0.0.1", server.local_addr().port())).unwrap();
}

#[test]
fn an_advertised_host_is_used_as_it_is() {
    let pki = tempfile::tempdir().unwrap();
    let mut c = config(pki.path());
    c.host = "0.0.0.0".into();
    c.advertised_host = Some("kiosk-7a.line.example".into());
    let server = LineServer::start(c).unwrap();
    assert_eq!(
        server.endpoint_url(),
        format!(
            "opc.tcp://kiosk-7a.line.example:{}/",
            server.local_addr().port()
        )
    );
}

#[test]
fn dropping_a_signed_in_server_without_subscribers_is_quick() {
    let pki = tempfile::tempdir().unwrap();
    let server = LineServer::start(config(pki.path())).unwrap();
    server.publish(&signed_in()).unwrap();
    let start = Instant::now();
    drop(server);
    // Nobody to wait for: the signed-out state is written and the server
    // stops within the send grace, far below the 1 s bound.
    assert!(
        start.elapsed() < Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn rejected_certificates_are_listed_and_trusted_by_name() {
    let pki = tempfile::tempdir().unwrap();
    // No rejected/ folder yet: nothing to show, not an error.
    assert_eq!(pki::rejected(pki.path()).unwrap(), vec![]);

    // A real certificate: the one the server makes for itself at start.
    drop(LineServer::start(config(pki.path())).unwrap());
    let der = std::fs::read(pki.path().join("own/cert.der")).unwrap();
    let rejected = pki.path().join("rejected");
    std::fs::create_dir_all(&rejected).unwrap();
    std::fs::write(rejected.join("k1 [abc].der"), &der).unwrap();
    std::fs::write(rejected.join("garbage.der"), b"not a certificate").unwrap();
    std::fs::write(rejected.join("notes.txt"), b"ignored: not .der").unwrap();

    let list = pki::rejected(pki.path()).unwrap();
    let names: Vec<_> = list.iter().map(|c| c.file_name.as_str()).collect();
    assert_eq!(names, ["garbage.der", "k1 [abc].der"]);
    let garbage = &list[0];
    assert_eq!(garbage.subject, UNREADABLE);
    assert_eq!(garbage.thumbprint.len(), 40);
    let cert = &list[1];
    assert!(cert.subject.contains("CN="), "{}", cert.subject);
    assert_eq!(
        cert.application_uri.as_deref(),
        Some("urn:kubevision:kiosk:k1")
    );
    assert_eq!(cert.thumbprint.len(), 40);
    assert!(cert.thumbprint.chars().all(|c| c.is_ascii_hexdigit()));
    let valid_to = cert.valid_to.as_deref().unwrap();
    assert!(
        valid_to.ends_with('Z') && valid_to.len() == 20,
        "{valid_to}"
    );

    // Names that would leave rejected/ are refused before anything moves.
    for bad in ["../own/cert.der", "..", "", "sub/x.der", "sub\\x.der"] {
        match pki::trust(pki.path(), bad) {
            Err(Error::CertificateName(name)) => assert_eq!(name, bad),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    assert!(pki.path().join("own/cert.der").is_file());
    match pki::trust(pki.path(), "missing.der") {
        Err(e @ Error::NoSuchCertificate { .. }) => {
            assert!(e.to_string().contains("missing.der"), "{e}")
        }
        other => panic!("{other:?}"),
    }

    // Trusting moves the file (and makes trusted/ when there is none).
    let _ = std::fs::remove_dir_all(pki.path().join("trusted"));
    pki::trust(pki.path(), "k1 [abc].der").unwrap();
    assert!(!rejected.join("k1 [abc].der").exists());
    assert_eq!(
        std::fs::read(pki.path().join("trusted/k1 [abc].der")).unwrap(),
        der
    );
    let names: Vec<_> = pki::rejected(pki.path())
        .unwrap()
        .into_iter()
        .map(|c| c.file_name)
        .collect();
    assert_eq!(names, ["garbage.der"]);
}
