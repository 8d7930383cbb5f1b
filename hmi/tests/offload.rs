//! The Offload and fallback backends and the store worker's plant sync
//! against the real offload service (the `kubevision-offload` binary on
//! loopback, with its own SQLite gallery), with ORL faces cut by the
//! kiosk's own pipeline: the service decides a burst while it is up, local
//! decides with the same rule when it is gone, enrollments made offline
//! reach the service once it is back, and people enrolled at another line
//! reach this kiosk with their name, role and PIN, and sign in here with
//! the cluster down.

use std::cell::RefCell;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::*;
use egui_kittest::Harness;
use kubevision_hmi::app::KioskApp;
use kubevision_hmi::auth::AuthState;
use kubevision_hmi::i18n::T;
use kubevision_hmi::recognition::{
    Backend, FallbackBackend, GalleryFeed, OffloadBackend, LOCAL, OFFLOAD,
};
use kubevision_hmi::screens::Action;
use kubevision_hmi::settings::BackendChoice;
use kubevision_hmi::store::{
    now_millis, AuditAction, AuditEvent, NewOperator, Operator, Role, SecretCheck, SecretKind,
    Secrets, Store, Subject, DB_FILE, PEPPER_FILE,
};
use kubevision_hmi::store_worker::{self, plant_sync, PlantStatus, StoreWorker, SyncPolicy};
use kubevision_offload_client::{ClientConfig, OffloadClient};
use tempfile::TempDir;
use vision::burst::BurstRule;
use vision::lbph::LbphParams;
use vision::recogniser::Kind;

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
            // The kiosk's offload link is tested here, not credentials.
            .arg("--allow-unauthenticated")
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

/// Generous for a debug server on a shared two-core machine.
const DEADLINE: Duration = Duration::from_secs(2);

/// A service, and a kiosk with its administrator (ORL s35) enrolled both
/// locally and on the service: the kiosk's store worker syncs with the
/// plant gallery and feeds the recogniser's gallery, as in the app.
struct Line {
    root: TempDir,
    service: Service,
    data: PathBuf,
    admin: Operator,
    feed: Arc<GalleryFeed>,
    worker: StoreWorker,
    backend: FallbackBackend,
}

impl Line {
    /// What the recognition worker does between frames: take the newest gallery.
    fn refresh(&mut self) {
        if let Some((_, g)) = self.feed.newer_than(0) {
            self.backend.set_gallery(&g).unwrap();
        }
    }

    /// After a change made through another connection (as the CLI would):
    /// the worker reads the store again and republishes the gallery.
    fn reload(&mut self) {
        // The start's own Loaded is long handled (the sync ran after it).
        while self.worker.recv_timeout(Duration::ZERO).is_some() {}
        self.worker.send(store_worker::Command::Load);
        self.next_event("the reload", |e| {
            matches!(e, store_worker::Event::Loaded { .. })
        });
    }

    fn next_event(&self, what: &str, wanted: impl Fn(&store_worker::Event) -> bool) {
        let started = Instant::now();
        loop {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "timed out waiting for {what}"
            );
            if let Some(e) = self.worker.recv_timeout(Duration::from_millis(100)) {
                if wanted(&e) {
                    return;
                }
            }
        }
    }
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
    let mut store = Store::open_in_dir(&data).unwrap();
    store
        .put_setting("backend", "\"offload-with-fallback\"", None, 0)
        .unwrap();
    let endpoint = format!("\"{}\"", service.url());
    store
        .put_setting("offload_endpoint", &endpoint, None, 0)
        .unwrap();
    let feed = GalleryFeed::new();
    let worker = StoreWorker::start(store, Arc::clone(&feed), sync, || {});
    worker.send(store_worker::Command::Load);
    let backend = FallbackBackend::start(
        ClientConfig::new(service.url()),
        Kind::Lbph,
        LbphParams::default(),
        DEADLINE,
    )
    .unwrap();
    let mut l = Line {
        root,
        service,
        data,
        admin,
        feed,
        worker,
        backend,
    };
    let admin_no = l.admin.personnel_no.clone();
    wait_until("the store worker's sync to push the administrator", || {
        l.service.operators().contains(&admin_no)
    });
    // The service has it before the kiosk has cleared its queue: the round
    // ends with that write, and a test that stops the service next must not
    // find the administrator still queued.
    wait_until("the store worker's round to clear its queue", || {
        pending(&l.data) == 0
    });
    l.refresh();
    l
}

/// Line 2's data folder and store, beside this line's: the kiosks of a
/// plant share the PIN pepper (each has its own audit key). Line 2 has no
/// store worker: it syncs when told, as `kubevision` on the command line.
fn second_line(l: &Line) -> RefCell<Store> {
    let line2 = l.root.path().join("line2");
    let secrets2 = Secrets::default_dir(&line2);
    std::fs::create_dir_all(&secrets2).unwrap();
    std::fs::copy(
        Secrets::default_dir(&l.data).join(PEPPER_FILE),
        secrets2.join(PEPPER_FILE),
    )
    .unwrap();
    RefCell::new(Store::open_in_dir(&line2).unwrap())
}

/// One sync of line 2, now.
fn sync_line2(l: &Line, store2: &RefCell<Store>) {
    plant_sync::sync_now(store2, ClientConfig::new(l.service.url())).unwrap();
}

fn pending(data: &Path) -> i64 {
    rusqlite::Connection::open(data.join(DB_FILE))
        .unwrap()
        .query_row("SELECT count(*) FROM pending_sync", [], |r| r.get(0))
        .unwrap()
}

/// Which backend decided the face the PIN pad is waiting on.
fn backend_of_face(h: &Harness<'_, KioskApp>) -> &'static str {
    match h.state().kiosk().auth.state() {
        AuthState::AwaitingPin { face, .. } => face.backend,
        other => panic!("{other:?}"),
    }
}

fn wait_until(what: &str, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A burst of `person`'s photos 6–10 is accepted for `personnel_no`, decided by `by`.
fn assert_signs_in(backend: &mut dyn Backend, person: u32, personnel_no: &str, by: &str) {
    let decision = backend.identify(&probes(person, 6..=10), &rule()).unwrap();
    assert_eq!(
        decision.accepted.as_deref(),
        Some(personnel_no),
        "s{person}: {decision:?}"
    );
    assert_eq!(backend.name(), by);
}

#[test]
fn the_service_decides_the_burst_and_says_so() {
    let mut l = line();
    let worker = seed_worker(&l.data);
    l.reload();
    wait_until("the worker on the service", || {
        l.service.operators().contains(&worker.personnel_no)
    });

    assert_signs_in(&mut l.backend, ADMIN, &l.admin.personnel_no, OFFLOAD);
    assert_signs_in(&mut l.backend, WORKER, &worker.personnel_no, OFFLOAD);

    // 1:1: the claimed operator's own face is accepted, and nearer than another's.
    let own = l
        .backend
        .verify(&probes(ADMIN, 6..=10), &l.admin.personnel_no, &rule())
        .unwrap();
    let other = l
        .backend
        .verify(&probes(WORKER, 6..=10), &l.admin.personnel_no, &rule())
        .unwrap();
    assert_eq!(l.backend.name(), OFFLOAD);
    assert_eq!(own.accepted.as_deref(), Some(l.admin.personnel_no.as_str()));
    assert_eq!(other.accepted, None);
    assert!(
        own.distance < other.distance,
        "own {own:?}, other {other:?}"
    );

    // The service applies the kiosk's threshold: a strict one turns the
    // same burst down.
    let strict = BurstRule {
        threshold: 1.0,
        ..rule()
    };
    let refused = l
        .backend
        .identify(&probes(WORKER, 6..=10), &strict)
        .unwrap();
    assert_eq!((refused.accepted, l.backend.name()), (None, OFFLOAD));

    // The pure Offload backend gives the same answer; someone the plant
    // does not know is nobody, not an error.
    let mut offload =
        OffloadBackend::connect(ClientConfig::new(l.service.url()), None, Kind::Lbph).unwrap();
    assert_signs_in(&mut offload, WORKER, &worker.personnel_no, OFFLOAD);
    let unknown = offload
        .verify(&probes(WORKER, 6..=10), "NOBODY-1", &rule())
        .unwrap();
    assert_eq!(unknown.accepted, None);
}

#[test]
fn the_burst_is_decided_locally_by_the_same_rule_when_the_service_is_gone() {
    let mut l = line();
    let worker = seed_worker(&l.data);
    l.reload();
    l.refresh();
    assert_signs_in(&mut l.backend, ADMIN, &l.admin.personnel_no, OFFLOAD);

    l.service.kill();
    let started = Instant::now();
    assert_signs_in(&mut l.backend, ADMIN, &l.admin.personnel_no, LOCAL);
    // At most the deadline (plus the burst's own work).
    assert!(
        started.elapsed() < DEADLINE + Duration::from_secs(2),
        "the burst took {:?}",
        started.elapsed()
    );
    assert_signs_in(&mut l.backend, WORKER, &worker.personnel_no, LOCAL);
    let verified = l
        .backend
        .verify(&probes(WORKER, 6..=10), &worker.personnel_no, &rule())
        .unwrap();
    assert_eq!(
        verified.accepted.as_deref(),
        Some(worker.personnel_no.as_str())
    );
    assert_eq!(l.backend.name(), LOCAL);
    // The same strict threshold turns it down locally too.
    let strict = BurstRule {
        threshold: 1.0,
        ..rule()
    };
    assert_eq!(
        l.backend
            .identify(&probes(WORKER, 6..=10), &strict)
            .unwrap()
            .accepted,
        None
    );
}

#[test]
fn an_enrollment_made_offline_reaches_the_service_when_it_is_back() {
    let mut l = line();
    l.service.kill();

    let worker = seed_worker(&l.data);
    l.next_event("the sync to find the plant unreachable", |e| {
        matches!(e, store_worker::Event::Plant(PlantStatus::Unreachable(_)))
    });
    assert_eq!(pending(&l.data), 1, "queued in the kiosk's store");

    l.service.resume();
    // The store worker's sync, backing off meanwhile, pushes it by itself.
    wait_until("the queued enrollment to be pushed", || {
        pending(&l.data) == 0
    });
    let mut on_service = l.service.operators();
    on_service.sort();
    assert_eq!(
        on_service,
        [l.admin.personnel_no.clone(), worker.personnel_no.clone()]
    );

    assert_signs_in(&mut l.backend, WORKER, &worker.personnel_no, OFFLOAD);
}

#[test]
fn after_a_plant_gallery_reset_the_kiosk_pushes_its_operators_back() {
    // The worker's sync only at start: the empty new gallery must be seen
    // before the kiosk restores it (the round run below, on a second
    // connection as the command line would, does what every round does).
    let mut l = line_syncing(SyncPolicy {
        every: Duration::from_secs(3600),
        max_backoff: Duration::from_secs(3600),
        sign_ins_every: Duration::from_secs(3600),
    });
    let worker = seed_worker(&l.data);
    let kiosk = RefCell::new(Store::open_in_dir(&l.data).unwrap());
    plant_sync::sync_now(&kiosk, ClientConfig::new(l.service.url())).unwrap();
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
    plant_sync::sync_now(&kiosk, ClientConfig::new(l.service.url())).unwrap();
    wait_until("the kiosk's operators back in the plant gallery", || {
        let mut now = l.service.operators();
        now.sort();
        now == expected
    });
    // And it still knows them itself: nothing was removed locally.
    assert_signs_in(&mut l.backend, WORKER, &worker.personnel_no, OFFLOAD);
}

#[test]
fn someone_enrolled_at_another_line_signs_in_here_with_the_cluster_down() {
    // This kiosk knows only its administrator.
    let mut l = line();

    // Line 2 enrolls a maintenance technician (ORL s7) with a PIN, and an
    // administrator of its own (ORL s12); its sync pushes both. The kiosks
    // of a plant share the PIN pepper (each has its own audit key).
    let store2 = second_line(&l);
    let technician = NewOperator {
        name: "Max Brenner",
        personnel_no: "M-7",
        role: Role::Maintenance,
        pin: Some("8642"),
        password: None,
    };
    store2
        .borrow_mut()
        .create_enrolled_operator(&technician, &templates(WORKER), None, now_millis())
        .unwrap();
    let admin2 = NewOperator {
        name: "Line 2 admin",
        personnel_no: "A-12",
        role: Role::Administrator,
        ..technician.clone()
    };
    store2
        .borrow_mut()
        .create_enrolled_operator(&admin2, &templates(12), None, now_millis())
        .unwrap();
    sync_line2(&l, &store2);

    let data = l.data.clone();
    let here = |no: &str| {
        Store::open_in_dir(&data)
            .unwrap()
            .operator_by_personnel_no(no)
            .unwrap()
    };
    wait_until("the store worker's sync to bring M-7 and A-12", || {
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
    // The worker published the new gallery; the recogniser takes it.
    wait_until("the gallery feed to carry M-7", || {
        l.feed
            .newer_than(0)
            .is_some_and(|(_, g)| g.iter().any(|(no, _)| no == "M-7"))
    });
    l.refresh();
    l.service.kill();

    // Face and PIN, with the cluster down.
    assert_signs_in(&mut l.backend, WORKER, "M-7", LOCAL);
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
    let gone = store2
        .borrow()
        .operator_by_personnel_no("M-7")
        .unwrap()
        .unwrap();
    store2
        .borrow_mut()
        .delete_operator(gone.id, None, now_millis())
        .unwrap();
    sync_line2(&l, &store2);
    wait_until("the store worker's sync to remove M-7", || {
        here("M-7").is_none()
    });
    wait_until("the gallery feed to drop M-7", || {
        l.feed
            .newer_than(0)
            .is_some_and(|(_, g)| g.iter().all(|(no, _)| no != "M-7"))
    });
}

/// A PIN guesser who moves from line 2 to this line finds the operator
/// locked here too: line 2 reports its failures to the plant-wide count,
/// this kiosk adopts the plant's lock at its next round, and a success
/// reported during the lock does not lift it.
#[test]
fn failures_at_another_line_lock_the_operator_here_too() {
    let l = line();
    let store2 = second_line(&l);
    let worker = NewOperator {
        name: "Jana Keller",
        personnel_no: "W-7",
        role: Role::Operator,
        pin: Some("8642"),
        password: None,
    };
    let there = store2
        .borrow_mut()
        .create_enrolled_operator(&worker, &templates(WORKER), None, now_millis())
        .unwrap();
    sync_line2(&l, &store2);
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
            .borrow_mut()
            .record_failure(Subject::Operator(there.id), &wrong, now_millis())
            .unwrap();
    }
    sync_line2(&l, &store2);

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

    // A success at line 2 during the lock lifts nothing: the plant's lock
    // runs its time (a success report cannot lift a lock early, issue 22).
    store2
        .borrow_mut()
        .record_success(
            Subject::Operator(there.id),
            &AuditEvent::new(AuditAction::SignIn).actor("W-7"),
            now_millis(),
        )
        .unwrap();
    sync_line2(&l, &store2);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _inside = runtime.enter();
    let client = OffloadClient::new(ClientConfig::new(l.service.url())).unwrap();
    assert!(
        !runtime.block_on(client.lockouts()).unwrap().is_empty(),
        "a success during the lock must not lift it"
    );
}

/// The whole kiosk (egui_kittest) set to offload with local fallback
/// (stored as "auto", the name before 0.2, which still reads): a sign-in is decided by the
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

/// Settings take effect live: a kiosk started with local recognition is
/// switched to the offload service, as the settings screen saves it. The
/// plant sync starts by itself (the kiosk's operators reach the plant
/// gallery) and the next sign-in is decided by the service, without a
/// restart; the status bar says the recognition settings were applied.
#[test]
fn a_new_backend_takes_effect_without_a_restart() {
    let root = tempfile::tempdir().unwrap();
    let service = Service::start(&root);
    let (data, _, worker) = seeded(&root);
    let mut h = start(&data, &camera(&root, "live", &photos(WORKER, 6..=10)));
    wait(&mut h, "the PIN pad", awaiting_pin);
    assert_eq!(backend_of_face(&h), LOCAL);
    assert!(
        service.operators().is_empty(),
        "no sync while recognition is local"
    );
    keys(&mut h, "1357");
    tap(&mut h, "OK");
    wait(&mut h, "the sign-in", signed_in);
    tap(&mut h, "Sign out");

    let mut settings = h.state().kiosk().settings.clone();
    settings.backend = BackendChoice::Offload;
    settings.offload_endpoint = service.url();
    // As the settings screen asks for it.
    h.state_mut()
        .apply(vec![Action::Store(store_worker::Command::SaveSettings {
            settings,
            actor: None,
        })]);
    wait(&mut h, "the new settings to be applied", |a| {
        a.kiosk().applied.map(|(t, _)| t) == Some(T::RecognitionRestarted)
    });
    wait_until("the plant sync to push the kiosk's operators", || {
        service.operators().contains(&worker.personnel_no)
    });
    wait(&mut h, "the PIN pad", awaiting_pin);
    assert_eq!(backend_of_face(&h), OFFLOAD);
    assert_eq!(
        h.state().kiosk().plant,
        Some(PlantStatus::Synced),
        "the status bar's plant state"
    );
}
