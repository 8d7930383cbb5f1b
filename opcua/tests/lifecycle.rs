//! The server's lifetime without a client library: it listens once `start`
//! returns, reports a port that is taken, and is gone when the handle drops.

use std::net::TcpStream;

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
