//! Several replicas of the service, each its own process, sharing one
//! PostgreSQL database started by the test: they are one gallery.

use crate::common;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::postgres::PgServer;
use crate::common::process::Process;
use crate::common::*;
use kubevision_offload_client::proto::update_operator_request::Mode;
use kubevision_offload_client::proto::{
    sync_event::Event, EnrollRequest, IdentifyRequest, UpdateOperatorRequest,
};
use kubevision_offload_client::{ClientError, GallerySync, OffloadClient};
use tonic::Code;

/// A short catch-up period, so the tests of "no notification" stay short.
const NO_WOLF_CHECK: &str = "--max-wolf-matches=1000000";
const CATCH_UP: &str = "--catch-up-secs=1";

async fn replicas(pg: &PgServer, n: usize) -> (Vec<tempfile::TempDir>, Vec<Process>) {
    let mut dirs = Vec::new();
    let mut processes = Vec::new();
    for _ in 0..n {
        let dir = tempfile::tempdir().unwrap();
        let store = format!("--store={}", pg.url());
        // The tests enrol one face under several ids (which the wolf check
        // would rightly flag): durability is tested here, not wolves.
        processes.push(Process::start(dir.path(), &[&store, CATCH_UP, NO_WOLF_CHECK]).await);
        dirs.push(dir);
    }
    (dirs, processes)
}

fn enroll_request(id: &str, person: u32) -> EnrollRequest {
    EnrollRequest {
        operator_id: id.into(),
        frames: (1..=3).map(|photo| orl_raw(person, photo)).collect(),
        ..Default::default()
    }
}

fn probe(person: u32) -> IdentifyRequest {
    IdentifyRequest {
        frames: vec![orl_raw(person, 8)],
        max_candidates: 1,
        threshold: None,
        min_usable_frames: 1,
        min_agreement: None,
    }
}

/// Who the replica says this person is (None: nobody).
async fn who(client: &OffloadClient, person: u32) -> Option<String> {
    let answer = client.identify(probe(person)).await.unwrap();
    answer.identified.then_some(answer.operator_id)
}

/// Polls until `check` holds at the replica, or fails after 10 s.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The gallery as a sync reads it: operator → (version, template count).
fn gallery_of(sync: &GallerySync) -> BTreeMap<String, (u64, usize)> {
    let mut gallery = BTreeMap::new();
    for change in &sync.changes {
        match change {
            Event::Upsert(u) => {
                gallery.insert(u.operator_id.clone(), (u.version, u.templates.len()));
            }
            Event::Removal(r) => {
                gallery.remove(&r.operator_id);
            }
            _ => {}
        }
    }
    gallery
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_are_one_gallery() {
    let pg = PgServer::start();
    let (_dirs, r) = replicas(&pg, 3).await;
    let (a, b, c) = (r[0].client(), r[1].client(), r[2].client());

    // Enrol at A, identify at B and C.
    a.enroll(enroll_request("alice", 1)).await.unwrap();
    assert_eq!(
        who(&a, 1).await.as_deref(),
        Some("alice"),
        "read-your-writes at A"
    );
    for (name, replica) in [("B", &b), ("C", &c)] {
        eventually(&format!("alice identified at {name}"), || async {
            who(replica, 1).await.as_deref() == Some("alice")
        })
        .await;
    }

    // Update at B (replace alice's face with person 2's), see it at A.
    b.update_operator(UpdateOperatorRequest {
        operator_id: "alice".into(),
        frames: (1..=3).map(|photo| orl_raw(2, photo)).collect(),
        mode: Mode::Replace.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    eventually("the update seen at A", || async {
        let answer = a.identify(probe(2)).await.unwrap();
        answer.operator_id == "alice" && answer.gallery_version == 2
    })
    .await;

    // Remove at C, gone at A and B.
    c.remove_operator("alice").await.unwrap();
    for (name, replica) in [("A", &a), ("B", &b)] {
        eventually(&format!("alice gone at {name}"), || async {
            who(replica, 2).await.is_none()
        })
        .await;
    }

    // The same operator enrolled at two replicas at once: one wins.
    for round in 0..5 {
        let id = format!("twin-{round}");
        let (x, y) = tokio::join!(
            a.enroll(enroll_request(&id, 3)),
            b.enroll(enroll_request(&id, 3))
        );
        let codes: Vec<Option<Code>> = [&x, &y]
            .iter()
            .map(|r| r.as_ref().err().and_then(ClientError::code))
            .collect();
        assert!(
            codes.contains(&None) && codes.contains(&Some(Code::AlreadyExists)),
            "round {round}: {x:?} / {y:?}"
        );
    }

    // A kiosk syncing from A, B and C in turn ends with the database's gallery.
    let from_a = a.sync_gallery(0).await.unwrap();
    let version = from_a.version;
    let mut kiosk = gallery_of(&from_a);
    let from_b = b.sync_gallery(version).await.unwrap();
    assert_eq!(from_b.header.gallery_id, from_a.header.gallery_id);
    c.enroll(enroll_request("carol", 4)).await.unwrap();
    let from_c = c.sync_gallery(from_b.version).await.unwrap();
    assert_eq!(from_c.header.gallery_id, from_a.header.gallery_id);
    for sync in [&from_b, &from_c] {
        for (id, entry) in gallery_of(sync) {
            kiosk.insert(id, entry);
        }
        for change in &sync.changes {
            if let Event::Removal(r) = change {
                kiosk.remove(&r.operator_id);
            }
        }
    }
    let rows = pg.psql(
        "SELECT o.operator_id || ':' || o.version || ':' || count(t.id)
         FROM operators o JOIN templates t USING (label)
         GROUP BY o.operator_id, o.version ORDER BY o.operator_id",
    );
    let database: Vec<String> = rows.lines().map(str::to_owned).collect();
    let synced: Vec<String> = kiosk
        .iter()
        .map(|(id, (v, n))| format!("{id}:{v}:{n}"))
        .collect();
    assert_eq!(synced, database);
    // The same question gets the same answer from every replica.
    let mut full = Vec::new();
    for client in [&a, &b, &c] {
        full.push(gallery_of(&client.sync_gallery(0).await.unwrap()));
    }
    assert!(full.iter().all(|g| *g == full[0]), "{full:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_written_by_sql_without_notification_is_picked_up() {
    let pg = PgServer::start();
    let (_dirs, r) = replicas(&pg, 2).await;
    let (a, b) = (r[0].client(), r[1].client());
    a.enroll(enroll_request("alice", 1)).await.unwrap();
    eventually("alice at B", || async { who(&b, 1).await.is_some() }).await;
    // Remove her behind the service's back: the same rows a removal writes,
    // but no pg_notify.
    pg.psql(
        "BEGIN;
         UPDATE gallery SET version = version + 1;
         DELETE FROM operators WHERE operator_id = 'alice';
         INSERT INTO removals (operator_id, version) SELECT 'alice', version FROM gallery;
         INSERT INTO change_log (version, operator_id, action, actor)
             SELECT version, 'alice', 'remove', 'dba' FROM gallery;
         COMMIT;",
    );
    let started = Instant::now();
    for replica in [&a, &b] {
        eventually("the silent removal applied", || async {
            who(replica, 1).await.is_none()
        })
        .await;
    }
    // The catch-up period is 1 s; allow for a loaded machine.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_one_replica_loses_no_acknowledged_enrolment() {
    let pg = PgServer::start();
    let (dirs, mut r) = replicas(&pg, 3).await;
    let clients: Vec<OffloadClient> = r.iter().map(Process::client).collect();
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    // Four streams of enrolments, each going round all three replicas.
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (clients, acknowledged) = (clients.clone(), acknowledged.clone());
            tokio::spawn(async move {
                for i in 0..60u32 {
                    let id = format!("op-{w}-{i}");
                    let client = &clients[(w + i as usize) % 3];
                    let request = EnrollRequest {
                        operator_id: id.clone(),
                        frames: vec![orl_raw(1 + (i % 40), 1 + (w as u32 % 10))],
                        ..Default::default()
                    };
                    if client.enroll(request).await.is_ok() {
                        acknowledged.lock().unwrap().push(id);
                    }
                }
            })
        })
        .collect();
    eventually("40 acknowledged enrolments", || async {
        acknowledged.lock().unwrap().len() >= 40
    })
    .await;
    r[1].child.kill().unwrap(); // SIGKILL, mid-stream
    r[1].child.wait().unwrap();
    for w in writers {
        w.await.unwrap();
    }
    let acknowledged: HashSet<String> = acknowledged.lock().unwrap().iter().cloned().collect();
    assert!(
        acknowledged.len() >= 120,
        "only {} acknowledged",
        acknowledged.len()
    );
    r[1] = Process::start(
        dirs[1].path(),
        &[&format!("--store={}", pg.url()), CATCH_UP, NO_WOLF_CHECK],
    )
    .await;
    for (i, replica) in r.iter().enumerate() {
        let sync = replica.client().sync_gallery(0).await.unwrap();
        let stored: HashSet<String> = gallery_of(&sync).into_keys().collect();
        let lost: Vec<&String> = acknowledged.difference(&stored).collect();
        assert!(lost.is_empty(), "replica {i} lost {lost:?}");
        // And each replica's matcher has them: its metrics count operators.
        let metrics = http_get(replica.metrics, "/metrics").await;
        let operators = metric(&metrics, "kubevision_gallery_operators");
        assert_eq!(operators as usize, stored.len(), "replica {i}'s matcher");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_under_load_loses_nothing() {
    let pg = PgServer::start();
    let (_dirs, r) = replicas(&pg, 3).await;
    let clients: Vec<OffloadClient> = r.iter().map(Process::client).collect();
    clients[0].enroll(enroll_request("alice", 1)).await.unwrap();
    for c in &clients {
        eventually("alice everywhere", || async { who(c, 1).await.is_some() }).await;
    }
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let unavailable = Arc::new(Mutex::new(0u32));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (clients, acknowledged, unavailable, stop) = (
            clients.clone(),
            acknowledged.clone(),
            unavailable.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let mut i = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let id = format!("op-{i}");
                match clients[i as usize % 3]
                    .enroll(EnrollRequest {
                        operator_id: id.clone(),
                        frames: vec![orl_raw(2 + (i % 39), 1)],
                        ..Default::default()
                    })
                    .await
                {
                    Ok(_) => acknowledged.lock().unwrap().push(id),
                    Err(e) => {
                        assert_eq!(e.code(), Some(Code::Unavailable), "{e}");
                        *unavailable.lock().unwrap() += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                i += 1;
            }
        })
    };
    // Identification keeps answering from memory while the database is down.
    let reader = {
        let (clients, stop) = (clients.clone(), stop.clone());
        tokio::spawn(async move {
            let mut answered = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for c in &clients {
                    let answer = c
                        .identify(probe(1))
                        .await
                        .expect("identify while the database restarts");
                    assert_eq!(answer.operator_id, "alice");
                    answered += 1;
                }
            }
            answered
        })
    };
    // Down for 4.5 s, more than twice the store timeout (2 s), so that
    // some change must run out of time against the stopped database
    // however slowly the writer gets to it; back; then a fast restart that
    // cuts every connection. The harness blocks, so off the runtime's threads.
    let pg = Arc::new(pg);
    for (pause, step) in [
        (500, "stop"),
        (4500, "start"),
        (3000, "restart"),
        (3000, ""),
    ] {
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let pg = pg.clone();
        tokio::task::spawn_blocking(move || match step {
            "stop" => pg.stop(),
            "start" => pg.start_again(),
            "restart" => pg.restart_fast(),
            _ => {}
        })
        .await
        .unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.await.unwrap();
    let answered = reader.await.unwrap();
    assert!(answered > 10, "identifications answered: {answered}");
    assert!(
        *unavailable.lock().unwrap() > 0,
        "changes while the database was down must get UNAVAILABLE"
    );
    let acknowledged: HashSet<String> = acknowledged.lock().unwrap().iter().cloned().collect();
    // The replicas catch up by themselves: every acknowledged change, everywhere.
    for (i, c) in clients.iter().enumerate() {
        let stored: HashSet<String> = gallery_of(&c.sync_gallery(0).await.unwrap())
            .into_keys()
            .collect();
        let lost: Vec<&String> = acknowledged.difference(&stored).collect();
        assert!(lost.is_empty(), "lost at replica {i}: {lost:?}");
        let expected = stored.len() as f64;
        eventually(&format!("replica {i}'s matcher caught up"), || async {
            metric(
                &http_get(r[i].metrics, "/metrics").await,
                "kubevision_gallery_operators",
            ) == expected
        })
        .await;
    }
}

/// A replica whose database cannot be reached is not ready, and becomes
/// ready by itself once it can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_is_not_ready_until_it_has_caught_up() {
    let pg = PgServer::start();
    let url = pg.url();
    pg.stop();
    let dir = tempfile::tempdir().unwrap();
    let (port, metrics_port) = (common::process::free_port(), common::process::free_port());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kubevision-offload"))
        .args([
            format!("--listen=127.0.0.1:{port}"),
            format!("--metrics-listen=127.0.0.1:{metrics_port}"),
            format!("--data-dir={}", dir.path().display()),
            format!("--store={url}"),
            CATCH_UP.into(),
            "--allow-unauthenticated".into(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let metrics: std::net::SocketAddr = format!("127.0.0.1:{metrics_port}").parse().unwrap();
    let readyz = || async move {
        match tokio::net::TcpStream::connect(metrics).await {
            Ok(_) => Some(http_get(metrics, "/readyz").await),
            Err(_) => None,
        }
    };
    eventually("the metrics port answers", || async {
        readyz().await.is_some()
    })
    .await;
    assert!(
        readyz().await.unwrap().contains("503"),
        "ready with no gallery"
    );
    let client = kubevision_offload_client::OffloadClient::new({
        let mut c =
            kubevision_offload_client::ClientConfig::new(format!("http://127.0.0.1:{port}"));
        c.retry.max_attempts = 1;
        c.breaker.failure_threshold = u32::MAX;
        c
    })
    .unwrap();
    let err = client.identify(probe(1)).await.unwrap_err();
    assert_eq!(err.code(), Some(Code::Unavailable), "{err}");
    pg.start_again();
    eventually("ready once the database is back", || async {
        readyz().await.unwrap().contains("200 OK")
    })
    .await;
    client.identify(probe(1)).await.unwrap();
    let _ = child.kill();
    let _ = child.wait();
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name}"))
}
