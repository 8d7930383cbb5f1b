//! No silent empty gallery: a store that disappears or is emptied under a
//! known gallery_id is refused (SQLite, at open) or not applied (a replica
//! following PostgreSQL), unless an operator chooses a new gallery.

use crate::common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::postgres::PgServer;
use kubevision_offload::backend::CpuBackend;
use kubevision_offload::gallery::{GalleryError, OperatorGallery};
use kubevision_offload::metrics::Metrics;
use kubevision_offload::store::postgres::PostgresSettings;
use kubevision_offload::store::sqlite::{DB_FILE, ID_FILE};
use kubevision_offload::store::{GalleryStore, PostgresStore, SqliteStore, StoreError};
use kubevision_offload::Server;
use vision::lbph::{LbphParams, Template};

const LIMIT: usize = 4;

/// The one place this file commits through the store's own API.
fn enroll(store: &dyn GalleryStore, operator_id: &str, templates: &[Vec<u8>]) -> u64 {
    store
        .enroll("test", operator_id, templates, None)
        .unwrap()
        .version
}

fn recorded(dir: &Path) -> String {
    std::fs::read_to_string(dir.join(ID_FILE)).unwrap()
}

/// Opens, expecting the refusal, and returns its message.
fn refused(dir: &Path) -> String {
    match SqliteStore::open(dir, LIMIT) {
        Ok(_) => panic!("a lost gallery was opened"),
        Err(e @ StoreError::GalleryLost { .. }) => e.to_string(),
        Err(e) => panic!("refused for another reason: {e}"),
    }
}

fn lost_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".lost-"))
        .collect();
    names.sort();
    names
}

#[test]
fn new_store_records_its_identity_privately() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("data");
    let store = SqliteStore::open(&dir, LIMIT).unwrap();
    let id = store.status().unwrap().gallery_id;
    assert_eq!(recorded(&dir), format!("gallery_id={id}\nversion=0\n"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(ID_FILE)), 0o600);
    }
    // The version follows the database (at the latest when the store closes).
    enroll(&store, "A", &[vec![1]]);
    enroll(&store, "B", &[vec![2]]);
    drop(store);
    assert_eq!(recorded(&dir), format!("gallery_id={id}\nversion=2\n"));
    // An intact gallery reopens, --new-gallery or not.
    let store = SqliteStore::open_with(&dir, LIMIT, true).unwrap();
    assert_eq!(store.status().unwrap().gallery_id, id);
    assert_eq!(store.status().unwrap().operators, 2);
    assert!(lost_files(&dir).is_empty());
}

#[test]
fn database_from_an_older_release_gets_its_identity_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), LIMIT).unwrap();
    enroll(&store, "A", &[vec![1]]);
    let id = store.status().unwrap().gallery_id;
    drop(store);
    std::fs::remove_file(dir.path().join(ID_FILE)).unwrap();
    let store = SqliteStore::open(dir.path(), LIMIT).unwrap();
    assert_eq!(store.status().unwrap().gallery_id, id);
    assert_eq!(
        recorded(dir.path()),
        format!("gallery_id={id}\nversion=1\n")
    );
}

#[test]
fn emptied_database_is_refused_until_a_new_gallery_is_chosen() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), LIMIT).unwrap();
    enroll(&store, "A", &[vec![1]]);
    let id = store.status().unwrap().gallery_id;
    drop(store);
    let db = dir.path().join(DB_FILE);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&db)
        .unwrap()
        .set_len(0)
        .unwrap();
    let message = refused(dir.path());
    for part in [
        &dir.path().display().to_string(),
        &id,
        "empty (0 bytes)",
        "--new-gallery",
        "KUBEVISION_NEW_GALLERY",
    ] {
        assert!(message.contains(part), "{part:?} missing in: {message}");
    }
    // Refused again: a refusal changes nothing.
    refused(dir.path());
    assert_eq!(std::fs::metadata(&db).unwrap().len(), 0);

    // The explicit choice: a new gallery, the old files kept aside.
    let store = SqliteStore::open_with(dir.path(), LIMIT, true).unwrap();
    let status = store.status().unwrap();
    assert_ne!(status.gallery_id, id);
    assert_eq!((status.version, status.operators), (0, 0));
    let lost = lost_files(dir.path());
    assert!(
        lost.iter().any(|n| n.starts_with("gallery.sqlite3.lost-")),
        "{lost:?}"
    );
    let old_id = lost
        .iter()
        .find(|n| n.starts_with("gallery.id.lost-"))
        .unwrap_or_else(|| panic!("{lost:?}"));
    assert!(std::fs::read_to_string(dir.path().join(old_id))
        .unwrap()
        .contains(&id));
    assert!(recorded(dir.path()).contains(&status.gallery_id));
    drop(store);
    // …which is from now on the gallery the folder remembers.
    let store = SqliteStore::open(dir.path(), LIMIT).unwrap();
    assert_eq!(store.status().unwrap().gallery_id, status.gallery_id);
}

#[test]
fn deleted_or_replaced_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), LIMIT).unwrap();
    enroll(&store, "A", &[vec![1]]);
    let id = store.status().unwrap().gallery_id;
    drop(store);
    let db = dir.path().join(DB_FILE);
    let kept = dir.path().join("kept");
    std::fs::rename(&db, &kept).unwrap();
    assert!(refused(dir.path()).contains("is missing"));
    assert!(!db.exists(), "a refused open creates nothing");

    // Another gallery's database put in its place.
    let other = tempfile::tempdir().unwrap();
    drop(SqliteStore::open(other.path(), LIMIT).unwrap());
    std::fs::copy(other.path().join(DB_FILE), &db).unwrap();
    let message = refused(dir.path());
    assert!(message.contains("another gallery"), "{message}");
    assert!(message.contains(&id), "{message}");

    // A database without its gallery row.
    std::fs::rename(&kept, &db).unwrap();
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute("DELETE FROM gallery", []).unwrap();
    drop(conn);
    assert!(refused(dir.path()).contains("holds no gallery"));
}

/// After kill -9 with the write-ahead log deleted, the database file holds
/// what was checkpointed, not what was committed since. Reproduced without
/// killing anything: the main file copied while the store runs (its WAL
/// holds the newer commits), once gallery.id has recorded them.
#[test]
fn lost_write_ahead_log_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), LIMIT).unwrap();
    let id = store.status().unwrap().gallery_id;
    enroll(&store, "A", &[vec![1]]);
    enroll(&store, "B", &[vec![2]]);
    let head = enroll(&store, "C", &[vec![3]]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !recorded(dir.path()).contains(&format!("version={head}\n")) {
        assert!(Instant::now() < deadline, "gallery.id never caught up");
        std::thread::sleep(Duration::from_millis(100));
    }
    let crashed = tempfile::tempdir().unwrap();
    for name in [DB_FILE, ID_FILE] {
        std::fs::copy(dir.path().join(name), crashed.path().join(name)).unwrap();
    }
    drop(store);
    let message = refused(crashed.path());
    assert!(message.contains(&id), "{message}");
    assert!(
        message.contains(&format!("older than the version {head}")),
        "{message}"
    );
    assert!(message.contains("-wal"), "{message}");

    // The same with an older copy of the database put back.
    let older = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(older.path(), LIMIT).unwrap();
    enroll(&store, "A", &[vec![1]]);
    drop(store);
    std::fs::copy(older.path().join(DB_FILE), older.path().join("backup")).unwrap();
    let store = SqliteStore::open(older.path(), LIMIT).unwrap();
    enroll(&store, "B", &[vec![2]]);
    drop(store);
    std::fs::copy(older.path().join("backup"), older.path().join(DB_FILE)).unwrap();
    assert!(refused(older.path()).contains("version 1, older than the version 2"));
}

#[tokio::test]
async fn the_server_refuses_a_lost_gallery_unless_told_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), LIMIT).unwrap();
    let id = store.status().unwrap().gallery_id;
    drop(store);
    std::fs::remove_file(dir.path().join(DB_FILE)).unwrap();
    let message = match Server::bind(common::config(dir.path(), &[])).await {
        Ok(_) => panic!("the server started on a lost gallery"),
        Err(e) => e.to_string(),
    };
    assert!(message.contains(&id), "{message}");
    assert!(message.contains("--new-gallery"), "{message}");
    let server = Server::bind(common::config(dir.path(), &["--new-gallery"]))
        .await
        .expect("--new-gallery starts a new gallery");
    drop(server);
    assert!(!recorded(dir.path()).contains(&id));
    assert!(lost_files(dir.path())
        .iter()
        .any(|n| n.starts_with("gallery.id.lost-")));
}

fn pg_store(server: &PgServer) -> Arc<PostgresStore> {
    Arc::new(
        PostgresStore::open(&PostgresSettings {
            url: server.url(),
            ca_file: None,
            pool_size: 2,
            connect_timeout: Duration::from_secs(2),
            max_templates_per_operator: LIMIT,
        })
        .unwrap(),
    )
}

fn face(person: u32, photo: u32) -> Vec<u8> {
    let image = vision::imageio::decode_gray(&common::orl_bytes(person, photo)).unwrap();
    Template::extract(&LbphParams::default(), &image)
        .unwrap()
        .to_bytes()
}

#[test]
fn a_replica_does_not_load_a_replaced_postgres_gallery() {
    let server = PgServer::start();
    let store = pg_store(&server);
    enroll(store.as_ref(), "alice", &[face(1, 1)]);
    enroll(store.as_ref(), "bob", &[face(2, 1)]);
    let was = store.status().unwrap().gallery_id;
    let params = LbphParams::default();
    let gallery = OperatorGallery::new(
        store.clone(),
        Arc::new(CpuBackend::new(params)),
        params,
        Metrics::new(),
    );
    assert_eq!(gallery.catch_up().unwrap(), 2);
    let (alice, bob) = (gallery.label_of("alice"), gallery.label_of("bob"));
    assert!(alice.is_some() && bob.is_some());

    // The gallery row rewritten under the replica.
    server.psql("UPDATE gallery SET gallery_id = 'other'");
    match gallery.catch_up() {
        Err(GalleryError::GalleryReplaced { was: w, now }) => {
            assert_eq!((w.as_str(), now.as_str()), (was.as_str(), "other"))
        }
        other => panic!("expected GalleryReplaced, got {other:?}"),
    }
    assert_eq!(gallery.label_of("alice"), alice);
    server.psql(&format!("UPDATE gallery SET gallery_id = '{was}'"));
    gallery.catch_up().unwrap();

    // Every table dropped; a replica starting meanwhile makes a new, empty
    // gallery, and someone enrols in it past the old version.
    server.psql(
        "DROP TABLE gallery, operators, templates, removals, change_log, sign_in_failures, \
         kubevision_migrations CASCADE",
    );
    let fresh = pg_store(&server);
    let now = fresh.status().unwrap().gallery_id;
    assert_ne!(now, was);
    for (i, who) in ["carol", "dave", "erin"].iter().enumerate() {
        enroll(fresh.as_ref(), who, &[face(3 + i as u32, 1)]);
    }
    match gallery.catch_up() {
        Err(e @ GalleryError::GalleryReplaced { .. }) => {
            let message = e.to_string();
            assert!(
                message.contains(&was) && message.contains(&now),
                "{message}"
            );
        }
        other => panic!("expected GalleryReplaced, got {other:?}"),
    }
    // Nothing of the new gallery applied; the old operators still match.
    assert_eq!(gallery.version(), 2);
    assert_eq!(gallery.label_of("carol"), None);
    assert_eq!(gallery.label_of("alice"), alice);
    assert_eq!(gallery.label_of("bob"), bob);
    assert_eq!(gallery.backend().template_count(), 2);
}
