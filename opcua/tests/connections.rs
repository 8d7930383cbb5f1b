//! Connections that hold the server without speaking OPC UA (issue 22,
//! finding 11), on raw TCP: a Hello sent half-way or not at all is closed
//! within the Hello deadline, and one address holds a bounded number of
//! connections. And the PKI folder the server writes is private. Sessions,
//! certificates and passwords are attacked with a real client in
//! tests/opcua/test_opcua_attacks.py.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use kubevision_opcua::gate::{HELLO_TIMEOUT, MAX_CONNECTIONS_PER_ADDRESS};
use kubevision_opcua::{Config, Line, LineServer};

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
    c
}

/// How long until the server closes `stream` (reads until end of stream or
/// a reset; an ERR message before the close is fine), at most `limit`.
fn closed_after(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return None
            }
            Err(_) => return Some(start.elapsed()),
        }
        if start.elapsed() > limit {
            return None;
        }
    }
}

/// A Hello header that announces 60 bytes, and 8 of them.
fn half_a_hello() -> Vec<u8> {
    let mut hello = b"HELF".to_vec();
    hello.extend_from_slice(&60u32.to_le_bytes());
    hello.extend_from_slice(&[0; 8]);
    hello
}

#[test]
fn half_sent_and_unsent_hellos_are_closed_within_the_hello_timeout() {
    let pki = tempfile::tempdir().unwrap();
    let server = LineServer::start(config(pki.path())).unwrap();
    let limit = HELLO_TIMEOUT + Duration::from_millis(800);

    let mut half = TcpStream::connect(server.local_addr()).unwrap();
    half.write_all(&half_a_hello()).unwrap();
    let mut silent = TcpStream::connect(server.local_addr()).unwrap();
    for (what, stream) in [("half a Hello", &mut half), ("no Hello", &mut silent)] {
        let after = closed_after(stream, limit);
        assert!(after.is_some(), "{what}: still open after {limit:?}");
    }
    // The server still answers a real client's connection.
    TcpStream::connect(server.local_addr()).unwrap();
}

#[test]
fn one_address_holds_a_bounded_number_of_connections() {
    let pki = tempfile::tempdir().unwrap();
    let server = LineServer::start(config(pki.path())).unwrap();
    let mut held: Vec<TcpStream> = (0..MAX_CONNECTIONS_PER_ADDRESS)
        .map(|_| {
            let mut s = TcpStream::connect(server.local_addr()).unwrap();
            s.write_all(&half_a_hello()).unwrap();
            s
        })
        .collect();
    // Let the server count them.
    std::thread::sleep(Duration::from_millis(200));
    let mut extra = TcpStream::connect(server.local_addr()).unwrap();
    let after = closed_after(&mut extra, Duration::from_millis(500));
    assert!(
        after.is_some(),
        "connection {} from one address was kept",
        MAX_CONNECTIONS_PER_ADDRESS + 1
    );
    // The ones admitted were not closed for it.
    held[0].set_nonblocking(true).unwrap();
    let mut buf = [0u8; 8];
    match held[0].read(&mut buf) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("an admitted connection was closed early: {other:?}"),
    }
    // Once they are gone, the address gets in again.
    held.clear();
    std::thread::sleep(Duration::from_millis(200));
    let mut again = TcpStream::connect(server.local_addr()).unwrap();
    assert!(
        closed_after(&mut again, Duration::from_millis(300)).is_none(),
        "the address is still refused after its connections closed"
    );
}

#[cfg(unix)]
#[test]
fn the_pki_folder_and_key_are_private() {
    use std::os::unix::fs::PermissionsExt;

    let pki = tempfile::tempdir().unwrap();
    let dir = pki.path().join("pki");
    // A folder left readable by an earlier version is tightened too.
    std::fs::create_dir_all(dir.join("trusted")).unwrap();
    std::fs::set_permissions(dir.join("trusted"), std::fs::Permissions::from_mode(0o755)).unwrap();
    drop(LineServer::start(config(&dir)).unwrap());
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let key = dir.join("private/private.pem");
    assert_eq!(mode(&key), 0o600, "{}", key.display());
    for folder in ["", "own", "private", "trusted", "rejected"] {
        let path = dir.join(folder);
        assert_eq!(mode(&path), 0o700, "{}", path.display());
    }
}
