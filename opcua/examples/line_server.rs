//! A test driver for the OPC UA server, not a product binary: the Python
//! tests (tests/opcua/) start it, play the kiosk's part through stdin and
//! read its stdout.
//!
//! ```text
//! line_server --port 0 --pki-dir DIR [--host ADDR] [--advertised-host NAME]
//!             [--allow-none] [--user NAME:PASSWORD]... [--max-rejected N]
//! stdout: READY port=<port> ns=<namespace index> url=<advertised endpoint URL>
//! stdin:  sign_in [<access level>] | sign_out | rejected | trust <file name> | stats | quit
//! stdout: PUBLISHED signed_in|signed_out
//!         SIGN_OUT_REQUESTED user=<name>   per SignOut() call
//!         PASSWORD_REFUSED user=<name> reason=wrong_password|locked|busy unreported_before=<n>
//!                              per refused password, as the kiosk audits it
//!         REJECTED <file name> <thumbprint> ... REJECTED_END
//!         TRUSTED <file name>  |  TRUST_FAILED <reason>
//!         STATS verifications=<n> max_concurrent=<n>   password checks so far
//!         STOPPED              (after quit, once the server is down)
//! ```
//!
//! Like the kiosk, it keeps no password: `--user` passwords are hashed with
//! Argon2id at start and checked with a constant-time verification, and an
//! unknown user name costs one verification too, so timing does not tell
//! which names exist. It answers a SignOut() call by publishing the
//! signed-out state itself, as the kiosk will.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, SystemTime};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use kubevision_opcua::{pki, Config, Credentials, Line, LineServer, SessionState};

/// User names with the Argon2id PHC string of their password.
struct HashedUsers {
    users: Vec<(String, String)>,
    /// A hash of a random password, verified for unknown user names.
    decoy: String,
    /// Password checks so far, running now, and the most at once.
    verifications: AtomicUsize,
    running: AtomicUsize,
    max_concurrent: AtomicUsize,
}

fn hash(password: &str) -> String {
    Argon2::default()
        .hash_password(password.as_bytes(), &SaltString::generate(&mut OsRng))
        .expect("argon2 hashes any password")
        .to_string()
}

impl Credentials for HashedUsers {
    fn any_users(&self) -> bool {
        !self.users.is_empty()
    }

    fn verify(&self, user: &str, password: &str) -> bool {
        self.verifications.fetch_add(1, Ordering::SeqCst);
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_concurrent.fetch_max(now, Ordering::SeqCst);
        let right = self.check(user, password);
        self.running.fetch_sub(1, Ordering::SeqCst);
        right
    }
}

impl HashedUsers {
    fn check(&self, user: &str, password: &str) -> bool {
        let (phc, known) = match self.users.iter().find(|(name, _)| name == user) {
            Some((_, phc)) => (phc.as_str(), true),
            None => (self.decoy.as_str(), false),
        };
        let Ok(parsed) = PasswordHash::new(phc) else {
            return false;
        };
        let matches = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        matches && known
    }
}

fn main() {
    let mut config = Config::new(
        Line {
            line_id: "L7".into(),
            kiosk_name: "kiosk-7a".into(),
        },
        std::env::temp_dir().join("kubevision-opcua-pki"),
    );
    config.host = "127.0.0.1".into();
    let mut users = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--port" => config.port = value().parse().expect("--port takes a number"),
            "--pki-dir" => config.pki_dir = value().into(),
            "--host" => config.host = value(),
            "--advertised-host" => config.advertised_host = Some(value()),
            "--allow-none" => config.allow_security_none = true,
            "--max-rejected" => {
                config.max_rejected_certificates =
                    value().parse().expect("--max-rejected takes a number")
            }
            "--user" => {
                let v = value();
                let (name, password) = v.split_once(':').expect("--user takes NAME:PASSWORD");
                users.push((name.to_owned(), hash(password)));
            }
            other => panic!("unknown argument {other}"),
        }
    }
    let decoy = hash(SaltString::generate(&mut OsRng).as_str());
    let users = Arc::new(HashedUsers {
        users,
        decoy,
        verifications: AtomicUsize::new(0),
        running: AtomicUsize::new(0),
        max_concurrent: AtomicUsize::new(0),
    });
    config.credentials = Some(users.clone());
    let pki_dir: PathBuf = config.pki_dir.clone();
    let server = match LineServer::start(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("line_server: {e}");
            std::process::exit(1);
        }
    };
    say(&format!(
        "READY port={} ns={} url={}",
        server.local_addr().port(),
        server.namespace_index(),
        server.endpoint_url()
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
        while let Ok(request) = server.sign_out_requests().try_recv() {
            say(&format!("SIGN_OUT_REQUESTED user={}", request.user));
            server
                .publish(&SessionState::signed_out())
                .expect("server stopped");
            say("PUBLISHED signed_out");
        }
        while let Ok(r) = server.password_refusals().try_recv() {
            say(&format!(
                "PASSWORD_REFUSED user={} reason={} unreported_before={}",
                r.user,
                r.cause.as_str(),
                r.unreported_before
            ));
        }
        let line = match lines_rx.recv_timeout(Duration::from_millis(5)) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let (command, rest) = line.trim().split_once(' ').unwrap_or((line.trim(), ""));
        match command {
            "sign_in" => {
                let level = rest.trim().parse().unwrap_or(3);
                // The moment of the decision, as the kiosk stamps it; the
                // latency benchmark measures from here.
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
            "sign_out" => {
                server
                    .publish(&SessionState::signed_out())
                    .expect("server stopped");
                say("PUBLISHED signed_out");
            }
            "rejected" => {
                match pki::rejected(&pki_dir) {
                    Ok(list) => {
                        for c in list {
                            say(&format!("REJECTED {} {}", c.file_name, c.thumbprint));
                        }
                    }
                    Err(e) => say(&format!("REJECTED_FAILED {e}")),
                }
                say("REJECTED_END");
            }
            "trust" => match pki::trust(&pki_dir, rest) {
                Ok(()) => say(&format!("TRUSTED {rest}")),
                Err(e) => say(&format!("TRUST_FAILED {e}")),
            },
            "stats" => say(&format!(
                "STATS verifications={} max_concurrent={}",
                users.verifications.load(Ordering::SeqCst),
                users.max_concurrent.load(Ordering::SeqCst)
            )),
            "quit" => break,
            _ => say(&format!("UNKNOWN {line}")),
        }
    }
    // As the kiosk closing: the server publishes the signed-out state and
    // gives subscribers a moment to receive it before it stops.
    drop(server);
    say("STOPPED");
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
