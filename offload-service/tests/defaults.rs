//! Secure defaults of the service binary (issue 22, finding 7): started
//! without credentials it listened on 0.0.0.0:50051 and accepted an
//! anonymous `Enroll`, with no warning. Now it refuses to start unless
//! `--allow-unauthenticated` is given (then it warns), and it listens on
//! loopback unless told otherwise.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::process::free_port;

fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kubevision-offload"));
    command.env("RUST_LOG", "info");
    command
}

#[test]
fn without_credentials_the_service_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let out = binary()
        .arg(format!("--listen=127.0.0.1:{port}"))
        .arg("--metrics-listen=127.0.0.1:0")
        .arg(format!("--data-dir={}", dir.path().display()))
        .output()
        .unwrap();
    assert!(!out.status.success(), "it started without credentials");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no credentials") && stderr.contains("--allow-unauthenticated"),
        "{stderr}"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing listens"
    );
    assert!(
        !dir.path().join("gallery.sqlite3").exists(),
        "nothing was opened"
    );
}

/// With the opt-in it starts, on loopback by default, and says loudly that
/// nothing is checked.
#[test]
fn the_opt_in_is_logged_loudly_and_the_default_address_is_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = binary()
        .arg("--allow-unauthenticated")
        .arg("--metrics-listen=127.0.0.1:0")
        .arg(format!("--data-dir={}", dir.path().display()))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = BufReader::new(child.stderr.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    let mut warned = false;
    // The default gRPC address shows in the "listening" line, or in the
    // error if another process holds the port: either way it is named.
    let mut address = None;
    for line in log.lines() {
        let line = line.unwrap();
        warned |= line.contains("WARN") && line.contains("NO CREDENTIALS ARE CHECKED");
        if line.contains("listening") || line.contains("cannot listen") {
            address = Some(line.clone());
        }
        seen.push(line);
        if address.is_some() || Instant::now() > deadline {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let seen = seen.join("\n");
    assert!(warned, "no warning at start:\n{seen}");
    let address = address.unwrap_or_else(|| panic!("no address in the log:\n{seen}"));
    assert!(address.contains("127.0.0.1:50051"), "{address}");
    assert!(!seen.contains("0.0.0.0"), "{seen}");
}
