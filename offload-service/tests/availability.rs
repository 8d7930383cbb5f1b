//! Availability of the service as its own process over loopback (issue 22,
//! findings 9, 10 and part of 12), on both stores:
//! - SIGTERM drains and exits 0: every PostgreSQL-backed replica used to
//!   exit 101 ("Cannot start a runtime from within a runtime": the blocking
//!   PostgreSQL client dropped on an async thread) or abort;
//! - one damaged template quarantines its operator (named in the log, a
//!   metric and GalleryStatus) while everyone else is served: it used to stop
//!   the whole service at start;
//! - the SQLite store's files are 0600 whatever the umask.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::postgres::PgServer;
use crate::common::process::free_port;
use crate::common::*;
use kubevision_offload_client::proto::{EnrollRequest, IdentifyRequest};
use kubevision_offload_client::{ClientConfig, OffloadClient};

/// The service binary with its log in a file, started under `umask`.
struct Service {
    child: Child,
    url: String,
    metrics: std::net::SocketAddr,
    log: PathBuf,
}

impl Service {
    async fn start(dir: &Path, umask: &str, extra: &[String]) -> Self {
        let (port, metrics) = (free_port(), free_port());
        let log = dir.join(format!("server-{port}.log"));
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_kubevision-offload"))
            .arg(format!("--listen=127.0.0.1:{port}"))
            .arg(format!("--metrics-listen=127.0.0.1:{metrics}"))
            .arg(format!("--data-dir={}", dir.join("data").display()))
            .arg(format!("--threshold={ACCEPT_ALL}"))
            .arg("--allow-unauthenticated")
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("the server binary starts");
        let service = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            metrics: format!("127.0.0.1:{metrics}").parse().unwrap(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while service.client().gallery_status().await.is_err() {
            assert!(
                Instant::now() < deadline,
                "the server did not come up:\n{}",
                service.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        service
    }

    fn client(&self) -> OffloadClient {
        let mut config = ClientConfig::new(self.url.clone());
        config.retry.max_attempts = 1;
        config.breaker.failure_threshold = u32::MAX;
        config.request_timeout = Duration::from_secs(10);
        OffloadClient::new(config).unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then the exit status (within 30 s) and the whole log.
    fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "no exit 30 s after SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        (status, self.log())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn enroll(client: &OffloadClient, person: u32) {
    client
        .enroll(EnrollRequest {
            operator_id: operator(person),
            frames: (1..=5).map(|photo| orl_raw(person, photo)).collect(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("enrolling {}: {e}", operator(person)));
}

fn burst(person: u32) -> IdentifyRequest {
    IdentifyRequest {
        frames: (6..=10).map(|photo| orl_raw(person, photo)).collect(),
        max_candidates: 1,
        threshold: None,
        min_usable_frames: 1,
        min_agreement: None,
    }
}

/// Enrolls a few people, then sends SIGTERM while identifications and
/// enrollments are running: the process must drain and exit 0, with no
/// panic in its log.
async fn sigterm_under_load_exits_0(extra: &[String]) {
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), "022", extra).await;
    let client = service.client();
    for person in 1..=3 {
        enroll(&client, person).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let load: Vec<_> = (0..4)
        .map(|w| {
            let (client, stop, answered) = (client.clone(), stop.clone(), answered.clone());
            tokio::spawn(async move {
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let ok = if w == 0 {
                        client
                            .enroll(EnrollRequest {
                                operator_id: format!("load-{i}"),
                                frames: vec![orl_raw(4 + i % 30, 1)],
                                ..Default::default()
                            })
                            .await
                            .is_ok()
                    } else {
                        client.identify(burst(1 + w % 3)).await.is_ok()
                    };
                    if !ok {
                        return; // shutting down
                    }
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    while answered.load(Ordering::Relaxed) < 20 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (status, log) = tokio::task::spawn_blocking(move || service.terminate())
        .await
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    assert!(
        status.success(),
        "exit status {status} after SIGTERM:\n{log}"
    );
    assert!(!log.contains("panicked"), "a panic at shutdown:\n{log}");
    assert!(log.contains("stopped"), "no clean stop in the log:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_sigterm_under_load_drains_and_exits_0() {
    sigterm_under_load_exits_0(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sigterm_under_load_drains_and_exits_0() {
    let pg = PgServer::start();
    sigterm_under_load_exits_0(&[format!("--store={}", pg.url())]).await;
}

/// Enrolls three people, damages one template of `orl-02` in the store of
/// record (`damage`), starts again: orl-01 is identified, orl-02 is reported
/// quarantined in GalleryStatus, the metric and the log.
async fn a_damaged_operator_is_quarantined(extra: &[String], damage: impl FnOnce(&Path)) {
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), "022", extra).await;
    let client = service.client();
    for person in 1..=3 {
        enroll(&client, person).await;
    }
    let (status, log) = service.terminate();
    assert!(status.success(), "{status}:\n{log}");

    damage(&dir.path().join("data"));

    let service = Service::start(dir.path(), "022", extra).await;
    let client = service.client();
    let answer = client.identify(burst(1)).await.unwrap();
    assert!(answer.identified, "{answer:?}");
    assert_eq!(answer.operator_id, operator(1), "everyone else is served");
    let answer = client.identify(burst(2)).await.unwrap();
    assert_ne!(
        answer.operator_id,
        operator(2),
        "nothing of a damaged operator is matched"
    );
    let status = client.gallery_status().await.unwrap();
    assert_eq!(status.quarantined.len(), 1, "{status:?}");
    assert_eq!(status.quarantined[0].operator_id, operator(2));
    assert!(
        status.quarantined[0].reason.contains("checksum"),
        "{status:?}"
    );
    let metrics = http_get(service.metrics, "/metrics").await;
    assert!(
        metrics.contains("kubevision_gallery_quarantined{operator_id=\"orl-02\"} 1"),
        "{metrics}"
    );
    let log = service.log();
    assert!(
        log.lines()
            .any(|l| l.contains("ERROR") && l.contains("quarantined") && l.contains("orl-02")),
        "{log}"
    );

    // Enrolling them again (remove, enroll) lifts the quarantine.
    client.remove_operator(&operator(2)).await.unwrap();
    enroll(&client, 2).await;
    let status = client.gallery_status().await.unwrap();
    assert!(status.quarantined.is_empty(), "{status:?}");
    let answer = client.identify(burst(2)).await.unwrap();
    assert_eq!(answer.operator_id, operator(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_damaged_template_quarantines_its_operator_only() {
    a_damaged_operator_is_quarantined(&[], |data| {
        let db = rusqlite::Connection::open(data.join("gallery.sqlite3")).unwrap();
        let changed = db
            .execute(
                "UPDATE templates SET data = CAST(zeroblob(200) || substr(data, 201) AS BLOB)
                 WHERE id = (SELECT min(t.id) FROM templates t JOIN operators o USING (label)
                             WHERE o.operator_id = 'orl-02')",
                [],
            )
            .unwrap();
        assert_eq!(changed, 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_damaged_template_quarantines_its_operator_only() {
    let pg = PgServer::start();
    a_damaged_operator_is_quarantined(&[format!("--store={}", pg.url())], |_| {
        pg.psql(
            "UPDATE templates SET data = overlay(data placing decode(repeat('00', 200), 'hex') from 1)
             WHERE id = (SELECT min(t.id) FROM templates t JOIN operators o USING (label)
                         WHERE o.operator_id = 'orl-02')",
        );
    })
    .await;
}

/// Under umask 000 `gallery.sqlite3` was 0644 (world-readable templates
/// and PIN hashes): now the database and its WAL and SHM files are 0600.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_files_are_private_under_umask_000() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(dir.path(), "000", &[]).await;
    enroll(&service.client(), 1).await;
    let data = dir.path().join("data");
    let mut seen = Vec::new();
    for name in [
        "gallery.sqlite3",
        "gallery.sqlite3-wal",
        "gallery.sqlite3-shm",
    ] {
        let mode = std::fs::metadata(data.join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .permissions()
            .mode()
            & 0o777;
        seen.push(format!("{name} {mode:o}"));
    }
    assert!(seen.iter().all(|s| s.ends_with(" 600")), "{seen:?}");
}
