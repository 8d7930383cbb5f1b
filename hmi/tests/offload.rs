//! The Offload and Auto backends against the real offload service (the
//! `kubevision-offload` binary on loopback, with its own SQLite gallery),
//! with ORL faces cut by the kiosk's own pipeline: offload answers while
//! the service is up, local answers when it stops (even mid-burst),
//! enrollments made offline reach the service once it is back, and people
//! enrolled at another line reach this kiosk with their name, role and PIN,
//! and sign in here with the cluster down.

mod support;

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use egui_kittest::Harness;
use kubevision_hmi::app::KioskApp;
use kubevision_hmi::auth::AuthState;
use kubevision_hmi::recognition::{
    Backend, FallbackBackend, FallbackConfig, OffloadBackend, SyncPolicy, LOCAL, OFFLOAD,
};
use kubevision_hmi::store::{
    now_millis, AuditAction, AuditEvent, NewOperator, Operator, Role, SecretCheck, SecretKind,
    Secrets, Store, Subject, DB_FILE, PEPPER_FILE,
};
use kubevision_hmi::store_worker::label_of;
use kubevision_offload_client::{ClientConfig, OffloadClient};
use support::*;
use tempfile::TempDir;
use vision::burst::{decide, BurstDecision, BurstRule};
use vision::lbph::{LbphParams, Match};
use vision::GrayImage;

/// The service binary, built by `cargo build --workspace --bins` (hmi does
/// not depend on it, so cargo does not build it for this test).
fn service_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = target.join("debug/kubevision-offload");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p kubevision-offload --bins` first",
        path.display()
    );
    path
}

/// One offload service process; it keeps its port and gallery across restarts.
struct Service {
    port: u16,
    data: PathBuf,
    process: Option<Child>,
}

impl Service {
    fn start(root: &TempDir) -> Service {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut service = Service {
            port,
            data: root.path().join("service"),
            process: None,
        };
        service.resume();
        service
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn resume(&mut self) {
        let mut child = Command::new(service_binary())
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--metrics-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(&self.data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_err() {
            assert!(
                child.try_wait().unwrap().is_none(),
                "the offload service exited at start"
            );
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the offload service did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.process = Some(child);
    }

    /// As a crash or a pulled cable: no goodbye.
    fn kill(&mut self) {
        if let Some(mut child) = self.process.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Operators in the service's gallery, as any client sees them.
    fn operators(&self) -> Vec<String> {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let _inside = runtime.enter();
        let client = OffloadClient::new(ClientConfig::new(self.url())).unwrap();
        let sync = runtime.block_on(client.sync_gallery(0)).unwrap();
        sync.changes
            .into_iter()
            .filter_map(|c| match c {
                kubevision_offload_client::proto::sync_event::Event::Upsert(u) => {
                    Some(u.operator_id)
                }
                _ => None,
            })
            .collect()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}

fn rule() -> BurstRule {
    BurstRule {
        threshold: THRESHOLD.parse().unwrap(),
        ..Default::default()
    }
}

/// Sync timings short enough for a test.
const SYNC: SyncPolicy = SyncPolicy {
    every: Duration::from_millis(200),
    max_backoff: Duration::from_millis(500),
    sign_ins_every: Duration::from_millis(100),
};

fn auto_syncing(data: &Path, service: &Service, sync: SyncPolicy) -> FallbackBackend {
    let config = FallbackConfig {
        // Generous for a debug server on a shared two-core machine.
        deadline: Duration::from_secs(1),
        sync,
    };
    FallbackBackend::start(
        ClientConfig::new(service.url()),
        &data.join(DB_FILE),
        &Secrets::load(&Secrets::default_dir(data)).unwrap(),
        LbphParams::default(),
        config,
    )
    .unwrap()
}

/// A service, and a kiosk with its administrator (ORL s35) enrolled both
/// locally and on the service.
struct Line {
    root: TempDir,
    service: Service,
    data: PathBuf,
    admin: Operator,
    backend: FallbackBackend,
}

fn line() -> Line {
    line_syncing(SYNC)
}

fn line_syncing(sync: SyncPolicy) -> Line {
    let root = tempfile::tempdir().unwrap();
    let service = Service::start(&root);
    let data = data_dir(&root);
    // The store queues the enrollment for the plant gallery; the sync pushes it.
    let admin = seed_admin(&data);
    let mut backend = auto_syncing(&data, &service, sync);
    backend.sync_now().unwrap();
    Line {
        root,
        service,
        data,
        admin,
        backend,
    }
}

/// Line 2's data folder and store, beside this line's: the kiosks of a
/// plant share the PIN pepper (each has its own audit key).
fn second_line(l: &Line) -> (PathBuf, Store) {
    let line2 = l.root.path().join("line2");
    let secrets2 = Secrets::default_dir(&line2);
    std::fs::create_dir_all(&secrets2).unwrap();
    std::fs::copy(
        Secrets::default_dir(&l.data).join(PEPPER_FILE),
        secrets2.join(PEPPER_FILE),
    )
    .unwrap();
    (line2.clone(), Store::open_in_dir(&line2).unwrap())
}

/// Line 2's offload backend. Its own circuit breaker is not what these
/// tests are about: while the service is down its background sync may
/// open it, and a push must not wait that out.
fn second_line_backend(l: &Line, line2: &Path, store2: &Store) -> OffloadBackend {
    let mut config2 = ClientConfig::new(l.service.url());
    config2.breaker.failure_threshold = u32::MAX;
    OffloadBackend::connect(config2, &line2.join(DB_FILE), store2.secrets(), None, SYNC).unwrap()
}

fn pending(data: &Path) -> i64 {
    rusqlite::Connection::open(data.join(DB_FILE))
        .unwrap()
        .query_row("SELECT count(*) FROM pending_sync", [], |r| r.get(0))
        .unwrap()
}

fn wait_until(what: &str, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One frame at a time, as the worker does; returns the burst's decision
/// and which backend answered each frame.
fn burst(
    backend: &mut dyn Backend,
    frames: &[GrayImage],
    mut between: impl FnMut(usize),
) -> (BurstDecision, Vec<&'static str>) {
    let mut matches: Vec<Option<Match>> = Vec::new();
    let mut answered = Vec::new();
    for (i, crop) in frames.iter().enumerate() {
        between(i);
        matches.push(backend.identify(crop).unwrap());
        answered.push(backend.name());
    }
    (decide(&rule(), &matches), answered)
}

/// A burst of `person`'s photos 6–10 picks `label`, every frame answered by `by`.
fn assert_signs_in(backend: &mut dyn Backend, person: u32, label: i32, by: &str) {
    let (decision, answered) = burst(backend, &crops(person, 6..=10), |_| {});
    assert_eq!(accepted(&decision), Some(label), "s{person}: {decision:?}");
    assert!(answered.iter().all(|a| *a == by), "{answered:?}");
}

fn accepted(decision: &BurstDecision) -> Option<i32> {
    match decision {
        BurstDecision::Accepted { label, .. } => Some(*label),
        _ => None,
    }
}

#[test]
fn offload_identifies_and_verifies_and_says_so() {
    let mut l = line();
    let worker = seed_worker(&l.data);
    l.backend.sync_now().unwrap();

    assert_signs_in(&mut l.backend, ADMIN, label_of(l.admin.id), OFFLOAD);
    assert_signs_in(&mut l.backend, WORKER, label_of(worker.id), OFFLOAD);

    // 1:1 with the claimed operator's own face is closer than with another's.
    let own = l
        .backend
        .verify(&crops(ADMIN, 6..=6)[0], label_of(l.admin.id))
        .unwrap();
    let other = l
        .backend
        .verify(&crops(WORKER, 6..=6)[0], label_of(l.admin.id))
        .unwrap();
    assert_eq!(l.backend.name(), OFFLOAD);
    assert!(
        own.unwrap() < other.unwrap(),
        "own {own:?}, other {other:?}"
    );

    // The pure Offload backend gives the same answer.
    let mut offload = OffloadBackend::connect(
        ClientConfig::new(l.service.url()),
        &l.data.join(DB_FILE),
        &Secrets::load(&Secrets::default_dir(&l.data)).unwrap(),
        None,
        SYNC,
    )
    .unwrap();
    assert_signs_in(&mut offload, WORKER, label_of(worker.id), OFFLOAD);
}

#[test]
fn a_burst_completes_locally_when_the_service_stops_in_the_middle() {
    let mut l = line();
    let worker = seed_worker(&l.data);
    l.backend.sync_now().unwrap();

    let mut slowest = Duration::ZERO;
    let mut last = Instant::now();
    let (decision, answered) = burst(&mut l.backend, &crops(ADMIN, 6..=10), |i| {
        if i == 2 {
            l.service.kill();
        }
        slowest = slowest.max(last.elapsed());
        last = Instant::now();
    });
    assert_eq!(
        accepted(&decision),
        Some(label_of(l.admin.id)),
        "{decision:?}"
    );
    assert_eq!(&answered[..2], &[OFFLOAD, OFFLOAD]);
    assert!(answered[2..].iter().all(|a| *a == LOCAL), "{answered:?}");
    // Each frame waits at most the deadline (plus a frame's own work).
    assert!(slowest < Duration::from_secs(3), "a frame took {slowest:?}");

    // The next burst is local from the start; verification too.
    assert_signs_in(&mut l.backend, WORKER, label_of(worker.id), LOCAL);
    assert!(l
        .backend
        .verify(&crops(WORKER, 6..=6)[0], label_of(worker.id))
        .unwrap()
        .is_some());
    assert_eq!(l.backend.name(), LOCAL);
}

#[test]
fn an_enrollment_made_offline_reaches_the_service_when_it_is_back() {
    let mut l = line();
    l.service.kill();

    let worker = seed_worker(&l.data);
    assert!(l.backend.sync_now().unwrap_err().should_fall_back());
    assert_eq!(pending(&l.data), 1, "queued in the kiosk's store");

    l.service.resume();
    // The background sync, backing off meanwhile, pushes it by itself.
    wait_until("the queued enrollment to be pushed", || {
        pending(&l.data) == 0
    });
    let mut on_service = l.service.operators();
    on_service.sort();
    assert_eq!(
        on_service,
        [l.admin.personnel_no.clone(), worker.personnel_no.clone()]
    );

    assert_signs_in(&mut l.backend, WORKER, label_of(worker.id), OFFLOAD);
}

#[test]
fn after_a_plant_gallery_reset_the_kiosk_pushes_its_operators_back() {
    // The background sync only at start: the empty new gallery must be seen
    // before the kiosk restores it (its next round, run below, does what
    // every background round does).
    let mut l = line_syncing(SyncPolicy {
        every: Duration::from_secs(3600),
        max_backoff: Duration::from_secs(3600),
        sign_ins_every: Duration::from_secs(3600),
    });
    let worker = seed_worker(&l.data);
    l.backend.sync_now().unwrap();
    let mut expected = vec![l.admin.personnel_no.clone(), worker.personnel_no.clone()];
    expected.sort();
    let mut on_service = l.service.operators();
    on_service.sort();
    assert_eq!(on_service, expected);

    // The service comes back with a new, empty gallery (a lost volume, or
    // `--new-gallery` after a damaged one).
    l.service.kill();
    l.service.data = l.root.path().join("service-after-reset");
    l.service.resume();
    assert!(
        l.service.operators().is_empty(),
        "a new gallery starts empty"
    );

    // The kiosk's next sync sees another gallery_id and restores it.
    l.backend.sync_now().unwrap();
    wait_until("the kiosk's operators back in the plant gallery", || {
        let mut now = l.service.operators();
        now.sort();
        now == expected
    });
    // And it still knows them itself: nothing was removed locally.
    assert_signs_in(&mut l.backend, WORKER, label_of(worker.id), OFFLOAD);
}

#[test]
fn someone_enrolled_at_another_line_signs_in_here_with_the_cluster_down() {
    // This kiosk knows only its administrator.
    let mut l = line();

    // Line 2 enrolls a maintenance technician (ORL s7) with a PIN, and an
    // administrator of its own (ORL s12); its sync pushes both. The kiosks
    // of a plant share the PIN pepper (each has its own audit key).
    let (line2, mut store2) = second_line(&l);
    let technician = NewOperator {
        name: "Max Brenner",
        personnel_no: "M-7",
        role: Role::Maintenance,
        pin: Some("8642"),
        password: None,
    };
    store2
        .create_enrolled_operator(&technician, &templates(WORKER), None, now_millis())
        .unwrap();
    let admin2 = NewOperator {
        name: "Line 2 admin",
        personnel_no: "A-12",
        role: Role::Administrator,
        ..technician.clone()
    };
    store2
        .create_enrolled_operator(&admin2, &templates(12), None, now_millis())
        .unwrap();
    let mut backend2 = second_line_backend(&l, &line2, &store2);
    backend2.sync_now().unwrap();

    let here = |no: &str| {
        Store::open_in_dir(&l.data)
            .unwrap()
            .operator_by_personnel_no(no)
            .unwrap()
    };
    wait_until("the background sync to bring M-7 and A-12", || {
        here("M-7").is_some() && here("A-12").is_some()
    });
    let m7 = here("M-7").unwrap();
    assert_eq!(
        (m7.name.as_str(), m7.role),
        ("Max Brenner", Role::Maintenance)
    );
    assert_eq!(
        here("A-12").unwrap().role,
        Role::Maintenance,
        "administration is never granted by a sync"
    );
    let synced = audit(&l.data, AuditAction::Enrolled);
    assert!(
        synced
            .iter()
            .any(|r| r.detail.starts_with("M-7") && r.backend.as_deref() == Some("plant gallery")),
        "the sync is in the audit log: {synced:?}"
    );
    l.service.kill();

    // Face and PIN, with the cluster down.
    assert_signs_in(&mut l.backend, WORKER, label_of(m7.id), LOCAL);
    let mut store = Store::open_in_dir(&l.data).unwrap();
    assert_eq!(
        store
            .check_secret(m7.id, SecretKind::Pin, "8642", now_millis())
            .unwrap(),
        SecretCheck::Accepted,
        "the PIN set at line 2 works here"
    );

    // Deleting the technician at line 2 removes them here too.
    l.service.resume();
    let gone = store2.operator_by_personnel_no("M-7").unwrap().unwrap();
    store2.delete_operator(gone.id, None, now_millis()).unwrap();
    backend2.sync_now().unwrap();
    wait_until("the background sync to remove M-7", || {
        here("M-7").is_none()
    });
}

/// A PIN guesser who moves from line 2 to this line finds the operator
/// locked here too: line 2 reports its failures to the plant-wide count,
/// this kiosk adopts the plant's lock at its next round, and a success
/// clears the plant's count again.
#[test]
fn failures_at_another_line_lock_the_operator_here_too() {
    let l = line();
    let (line2, mut store2) = second_line(&l);
    let worker = NewOperator {
        name: "Jana Keller",
        personnel_no: "W-7",
        role: Role::Operator,
        pin: Some("8642"),
        password: None,
    };
    let there = store2
        .create_enrolled_operator(&worker, &templates(WORKER), None, now_millis())
        .unwrap();
    let mut backend2 = second_line_backend(&l, &line2, &store2);
    backend2.sync_now().unwrap();
    let here = |no: &str| {
        Store::open_in_dir(&l.data)
            .unwrap()
            .operator_by_personnel_no(no)
            .unwrap()
    };
    wait_until("the sync to bring W-7 here", || here("W-7").is_some());
    let w7 = here("W-7").unwrap();

    // Four wrong PINs at line 2: three are free there, the fourth locks
    // there (30 s, the kiosk's default) and plant-wide (the service's).
    let wrong = AuditEvent::new(AuditAction::SignInFailed).actor("W-7");
    for _ in 0..4 {
        store2
            .record_failure(Subject::Operator(there.id), &wrong, now_millis())
            .unwrap();
    }
    backend2.sync_now().unwrap();

    // This kiosk has seen no failure of W-7, yet locks them.
    let locked_here = || {
        Store::open_in_dir(&l.data)
            .unwrap()
            .locked_until(Subject::Operator(w7.id), now_millis())
            .unwrap()
    };
    wait_until("this kiosk to adopt the plant's lock", || {
        locked_here().is_some()
    });
    let until = locked_here().unwrap();
    assert!(
        until > now_millis() + 20_000,
        "locked for about 30 s: {}",
        until - now_millis()
    );
    let plant = audit(&l.data, AuditAction::LockedOut);
    assert!(
        plant
            .iter()
            .any(|r| r.detail.starts_with("plant-wide: 4 failed sign-ins")
                && r.actor.as_deref() == Some("W-7")),
        "the adopted lock is audited: {plant:?}"
    );

    // A success at line 2 clears the plant's count.
    store2
        .record_success(
            Subject::Operator(there.id),
            &AuditEvent::new(AuditAction::SignIn).actor("W-7"),
            now_millis(),
        )
        .unwrap();
    backend2.sync_now().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _inside = runtime.enter();
    let client = OffloadClient::new(ClientConfig::new(l.service.url())).unwrap();
    assert!(runtime.block_on(client.lockouts()).unwrap().is_empty());
    drop(l.backend);
}

/// The whole kiosk (egui_kittest) set to Auto: a sign-in is decided by the
/// service; the service then dies while the kiosk is identifying the next
/// person in front of it, and that sign-in completes locally. The audit
/// log records which backend decided each.
#[test]
fn the_kiosk_signs_in_through_the_cluster_and_locally_once_it_is_gone() {
    let root = tempfile::tempdir().unwrap();
    let mut service = Service::start(&root);
    let (data, _, worker) = seeded(&root);
    let mut store = Store::open_in_dir(&data).unwrap();
    store.put_setting("backend", "\"auto\"", None, 0).unwrap();
    let endpoint = format!("\"{}\"", service.url());
    store
        .put_setting("offload_endpoint", &endpoint, None, 0)
        .unwrap();
    drop(store);

    let mut h = start(&data, &camera(&root, "live", &photos(WORKER, 6..=10)));
    // The kiosk's own sync pushes the seeded operators at start.
    wait(&mut h, "the PIN pad", awaiting_pin);
    let backend_of_face = |h: &Harness<'_, KioskApp>| match h.state().kiosk().auth.state() {
        AuthState::AwaitingPin { face, .. } => face.backend,
        other => panic!("{other:?}"),
    };
    // Until the push lands, the service knows nobody and local answers;
    // sign in and out until the service has decided one.
    let mut decided_by_offload = false;
    for _ in 0..5 {
        decided_by_offload = backend_of_face(&h) == OFFLOAD;
        keys(&mut h, "1357");
        tap(&mut h, "OK");
        wait(&mut h, "the sign-in", signed_in);
        tap(&mut h, "Sign out");
        if decided_by_offload {
            break;
        }
        wait(&mut h, "the PIN pad", awaiting_pin);
    }
    assert!(decided_by_offload, "the service never decided a sign-in");

    service.kill();
    wait(&mut h, "the PIN pad", awaiting_pin);
    assert_eq!(backend_of_face(&h), LOCAL);
    keys(&mut h, "1357");
    tap(&mut h, "OK");
    wait(&mut h, "the sign-in", signed_in);
    assert_eq!(
        h.state().kiosk().auth.session().unwrap().operator.id,
        worker.id
    );
    drop(h);

    // Newest first.
    let backends: Vec<Option<String>> = audit(&data, AuditAction::SignIn)
        .into_iter()
        .map(|r| r.backend)
        .collect();
    assert_eq!(backends[0].as_deref(), Some(LOCAL));
    assert!(
        backends.iter().any(|b| b.as_deref() == Some(OFFLOAD)),
        "{backends:?}"
    );
}
