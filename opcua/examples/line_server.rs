//! A test driver for the OPC UA server, not a product binary: the Python
//! tests (tests/test_opcua_line.py) start it, play the kiosk's part through
//! stdin and read its stdout.
//!
//! ```text
//! line_server --port 0 --pki-dir DIR [--allow-none] [--user NAME:PASSWORD]...
//! stdout: READY port=<port> ns=<namespace index>
//! stdin:  sign_in <access level>  | sign_out | quit
//! stdout: PUBLISHED signed_in|signed_out, and SIGN_OUT_REQUESTED per SignOut() call
//! ```
//!
//! Like the kiosk will, it answers a SignOut() call by publishing the
//! signed-out state itself.

use std::io::{BufRead, Write};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use kubevision_opcua::{Config, Line, LineServer, SessionState, User};

fn main() {
    let mut config = Config::new(
        Line {
            line_id: "L7".into(),
            kiosk_name: "kiosk-7a".into(),
        },
        std::env::temp_dir().join("kubevision-opcua-pki"),
    );
    config.host = "127.0.0.1".into();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--port" => config.port = value().parse().expect("--port takes a number"),
            "--pki-dir" => config.pki_dir = value().into(),
            "--allow-none" => config.allow_security_none = true,
            "--user" => {
                let v = value();
                let (name, password) = v.split_once(':').expect("--user takes NAME:PASSWORD");
                config.users.push(User {
                    name: name.into(),
                    password: password.into(),
                });
            }
            other => panic!("unknown argument {other}"),
        }
    }
    let server = match LineServer::start(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("line_server: {e}");
            std::process::exit(1);
        }
    };
    say(&format!(
        "READY port={} ns={}",
        server.local_addr().port(),
        server.namespace_index()
    ));

    let (lines_tx, lines_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    loop {
        while server.sign_out_requests().try_recv().is_ok() {
            say("SIGN_OUT_REQUESTED");
            server
                .publish(&SessionState::signed_out())
                .expect("server stopped");
            say("PUBLISHED signed_out");
        }
        let line = match lines_rx.recv_timeout(Duration::from_millis(20)) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut words = line.split_whitespace();
        match words.next() {
            Some("sign_in") => {
                let level = words.next().and_then(|w| w.parse().ok()).unwrap_or(3);
                let now = SystemTime::now();
                let state = SessionState {
                    signed_in: true,
                    personnel_number: "P-1042".into(),
                    display_name: "Ada Lovelace".into(),
                    role: "shift lead".into(),
                    access_level: level,
                    signed_in_at: Some(now),
                    factors: "face+pin".into(),
                    expires_at: Some(now + Duration::from_secs(900)),
                };
                server.publish(&state).expect("server stopped");
                say("PUBLISHED signed_in");
            }
            Some("sign_out") => {
                server
                    .publish(&SessionState::signed_out())
                    .expect("server stopped");
                say("PUBLISHED signed_out");
            }
            Some("quit") => break,
            _ => say(&format!("UNKNOWN {line}")),
        }
    }
    drop(server);
    say("STOPPED");
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
