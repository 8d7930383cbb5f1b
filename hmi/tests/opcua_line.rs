//! The line hears who is signed in (issue 14), end to end: the real kiosk
//! (egui_kittest, ORL photos as the camera) serves OPC UA, and an independent
//! client, Python asyncua (tests/opcua/line_client.py), subscribes, sees a
//! face + PIN sign-in as data changes and a SignedIn event, and calls
//! `SignOut()`, which puts the kiosk back on the sign-in screen with an
//! audit row; a wrong `SignOut()` password is a failed sign-in in the
//! kiosk's audit trail (issue 22, finding 4). A second test trusts a refused client certificate with a tap
//! on the administrator's line screen, throws garbage at the port, and sees
//! the line told "signed out" when the kiosk closes.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::*;
use egui_kittest::Harness;
use kubevision_hmi::app::KioskApp;
use kubevision_hmi::line_link::LineStatus;
use kubevision_hmi::screens::Screen;
use kubevision_hmi::settings::LineSettings;
use kubevision_hmi::store::{AuditAction, Store};

const USER: &str = "line-hmi";
const PASSWORD: &str = "line-7-signout";

/// Turns the OPC UA server on (loopback, a free port) with a `SignOut()`
/// account, as an administrator would on the line screen.
fn serve_opcua(data: &Path) {
    let mut store = Store::open_in_dir(data).unwrap();
    let mut line = LineSettings {
        enabled: true,
        listen: "127.0.0.1:0".into(),
        line_id: "L7".into(),
        ..LineSettings::default()
    };
    line.access_levels.operator = 10;
    line.access_levels.administrator = 30;
    line.set_sign_out_account(USER, PASSWORD, store.secrets())
        .unwrap();
    let json = serde_json::to_string(&line).unwrap();
    store.put_setting("line", &json, None, 0).unwrap();
}

/// The endpoint URL once the kiosk's server listens.
fn endpoint(h: &mut Harness<'_, KioskApp>) -> String {
    wait(h, "the OPC UA server", |app| {
        !matches!(app.kiosk().line, LineStatus::Off | LineStatus::Starting)
    });
    match &h.state().kiosk().line {
        LineStatus::Listening(url) => url.clone(),
        other => panic!("the OPC UA server did not start: {other:?}"),
    }
}

fn python() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: scripts/setup-test-tools installs asyncua there",
        venv.display()
    );
    venv
}

/// The asyncua client process, its stdout lines on a channel.
struct LineClient {
    /// Its stderr.
    log: PathBuf,
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    /// Lines not matched yet, in order (a notification's changes arrive in
    /// any order).
    pending: Vec<String>,
    /// Everything it printed, for failure messages.
    seen: Vec<String>,
}

impl LineClient {
    fn start(url: &str, dir: &Path) -> Self {
        Self::start_with(url, dir, PASSWORD)
    }

    fn start_with(url: &str, dir: &Path, password: &str) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/opcua/line_client.py");
        let mut child = Command::new(python())
            .arg(script)
            .args(["--url", url, "--user", USER, "--password", password])
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // asyncua logs the server going away at the end; kept for failures.
            .stderr(std::fs::File::create(dir.with_extension("log")).unwrap())
            .spawn()
            .expect("start the asyncua client");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        LineClient {
            log: dir.with_extension("log"),
            child,
            stdin,
            lines,
            pending: Vec::new(),
            seen: Vec::new(),
        }
    }

    fn send(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// Steps the kiosk until the client has printed a line starting with
    /// `prefix` that no earlier `expect` took, and takes it.
    fn expect(&mut self, h: &mut Harness<'_, KioskApp>, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            while let Ok(line) = self.lines.try_recv() {
                self.seen.push(line.clone());
                self.pending.push(line);
            }
            if let Some(i) = self.pending.iter().position(|l| l.starts_with(prefix)) {
                return self.pending.remove(i);
            }
            assert!(
                Instant::now() < deadline,
                "the asyncua client printed no {prefix:?} line; it printed {:#?}\nand logged:\n{}",
                self.seen,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            h.step();
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for LineClient {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.stdin.flush();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends random and truncated binary messages to the server, each on a
/// connection of its own, reading whatever comes back.
fn garbage(url: &str) {
    use std::io::Read;
    let addr = url.trim_start_matches("opc.tcp://").trim_end_matches('/');
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut random = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect()
    };
    let mut payloads = vec![
        random(4096),
        b"HELF".to_vec(),
        [&b"HELF"[..], &0xFFFF_FFF0u32.to_le_bytes(), &[0; 8]].concat(),
        [&b"HELF"[..], &32u32.to_le_bytes(), &[0; 4]].concat(),
        [&b"MSGF"[..], &24u32.to_le_bytes(), &[0xff; 16]].concat(),
    ];
    for n in [1, 7, 64, 199] {
        payloads.push(random(n));
    }
    for payload in payloads {
        let mut s = std::net::TcpStream::connect(addr).expect("the server still accepts");
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let _ = s.write_all(&payload);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let _ = s.read(&mut [0; 1024]);
    }
}

/// The server's PKI folder (in the secrets folder: its private key is one).
fn pki(data: &Path) -> PathBuf {
    data.join("secrets").join("opcua-pki")
}

#[test]
fn the_line_sees_a_face_and_pin_sign_in_and_signs_the_operator_out() {
    let root = tempfile::tempdir().unwrap();
    let (data, _, _) = seeded(&root);
    serve_opcua(&data);
    let mut h = start(&data, &camera(&root, "live", &photos(WORKER, 6..=10)));
    let url = endpoint(&mut h);
    assert!(url.starts_with("opc.tcp://127.0.0.1:"), "{url}");

    // An unknown client certificate is refused and kept for an
    // administrator, who trusts it (here without the screen: the second
    // test taps).
    let mut client = LineClient::start(&url, &root.path().join("client"));
    client.expect(&mut h, "CERT");
    client.send("connect");
    client.expect(&mut h, "REFUSED");
    let rejected = kubevision_opcua::pki::rejected(&pki(&data)).unwrap();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    kubevision_opcua::pki::trust(&pki(&data), &rejected[0].file_name).unwrap();
    client.send("connect");
    client.expect(&mut h, "CONNECTED");
    client.expect(&mut h, "DATA KubeVision.Session.SignedIn False");

    // Face, then PIN.
    wait(&mut h, "the PIN pad", awaiting_pin);
    keys(&mut h, "1357");
    tap(&mut h, "OK");
    wait(&mut h, "the sign-in", signed_in);
    client.expect(&mut h, "DATA KubeVision.Session.AccessLevel 10");
    client.expect(&mut h, "DATA KubeVision.Session.SignedIn True");
    let event = client.expect(&mut h, "EVENT KubeVision.SignedInEventType");
    for field in [
        "PersonnelNumber=w7",
        "AccessLevel=10",
        "Factors=face+pin",
        "Role=operator",
    ] {
        assert!(event.contains(field), "{field} missing from {event}");
    }
    let seen = client.seen.join("\n");
    assert!(
        client
            .seen
            .iter()
            .any(|l| l == "DATA KubeVision.Session.PersonnelNumber w7"),
        "{seen}"
    );

    // The line signs the operator out.
    client.send("signout");
    client.expect(&mut h, "CALLED SignOut");
    wait(&mut h, "the sign-in screen after SignOut()", |app| {
        matches!(app.screen(), Screen::SignIn(_)) && app.kiosk().auth.session().is_none()
    });
    client.expect(&mut h, "DATA KubeVision.Session.SignedIn False");
    client.expect(&mut h, "DATA KubeVision.Session.AccessLevel 0");
    let event = client.expect(&mut h, "EVENT KubeVision.SignedOutEventType");
    assert!(event.contains("PersonnelNumber=w7"), "{event}");
    drop(client);

    // A guess at the line account's password, with the same trusted
    // certificate: refused, and the refusal is in the keyed audit trail,
    // not only in the log.
    let mut guesser = LineClient::start_with(&url, &root.path().join("client"), "a-guess");
    guesser.expect(&mut h, "CERT");
    guesser.send("connect");
    let refused = guesser.expect(&mut h, "REFUSED");
    assert!(refused.contains("BadUserAccessDenied"), "{refused}");
    for _ in 0..5 {
        h.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(guesser);
    drop(h);
    let rows = audit(&data, AuditAction::SignOut);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].actor.as_deref(), Some("w7"));
    assert!(rows[0].detail.contains(&format!("as {USER}")), "{rows:?}");
    let failed = audit(&data, AuditAction::SignInFailed);
    let guesses: Vec<_> = failed
        .iter()
        .filter(|r| r.detail.contains("OPC UA SignOut() password refused"))
        .collect();
    assert_eq!(guesses.len(), 1, "{failed:?}");
    assert_eq!(
        guesses[0].detail,
        format!("OPC UA SignOut() password refused for {USER:?}: wrong user name or password")
    );
}

#[test]
fn an_administrator_trusts_a_refused_client_with_a_tap() {
    let root = tempfile::tempdir().unwrap();
    let (data, _, _) = seeded(&root);
    serve_opcua(&data);
    let mut h = sign_in_admin(&root, &data);
    let url = endpoint(&mut h);
    let mut client = LineClient::start(&url, &root.path().join("client"));
    client.expect(&mut h, "CERT");
    client.send("connect");
    client.expect(&mut h, "REFUSED");

    // Garbage on the socket (random bytes, OPC UA headers that lie or stop
    // short) leaves the kiosk and its server running.
    garbage(&url);
    h.step();

    tap(&mut h, "Line (OPC UA)");
    assert_eq!(h.state().screen().name(), "line");
    wait_for_text(&mut h, "urn:kubevision:test-line-client");
    tap(&mut h, "Trust");
    wait_for_text(&mut h, "None");
    assert!(kubevision_opcua::pki::rejected(&pki(&data))
        .unwrap()
        .is_empty());

    // Trusted: the same client now connects and sees the administrator.
    client.send("connect");
    client.expect(&mut h, "CONNECTED");
    client.expect(&mut h, "DATA KubeVision.Session.AccessLevel 30");
    client.expect(&mut h, "DATA KubeVision.Session.PersonnelNumber a1");

    // The kiosk closing signs the line out before the server goes.
    drop(h);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !client
        .pending
        .iter()
        .any(|l| l == "DATA KubeVision.Session.SignedIn False")
    {
        assert!(
            Instant::now() < deadline,
            "no SignedIn=false after the kiosk closed: {:#?}",
            client.seen
        );
        if let Ok(line) = client.lines.recv_timeout(Duration::from_millis(100)) {
            client.seen.push(line.clone());
            client.pending.push(line);
        }
    }
}
