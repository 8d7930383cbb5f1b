//! The store contract, run against both stores: SQLite in a temporary
//! folder, and PostgreSQL on a throwaway server started by the test
//! (`initdb` + `pg_ctl`). What only PostgreSQL has — several writers, a
//! change feed, migrations under a lock, outages — is tested on it alone.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use crate::common::postgres::PgServer;
use kubevision_offload::store::{
    postgres::PostgresSettings, ChangeKind, GalleryStore, PostgresStore, SignIn, SqliteStore,
    StoreError, UpdateMode,
};
use kubevision_proto::lockout::LockoutPolicy;

const LIMIT: usize = 4;

fn pg_store(server: &PgServer) -> PostgresStore {
    PostgresStore::open(&PostgresSettings {
        url: server.url(),
        ca_file: None,
        pool_size: 4,
        connect_timeout: Duration::from_secs(2),
        max_templates_per_operator: LIMIT,
    })
    .unwrap()
}

/// One change: operator, version, templates (None for a removal).
type Seen = (String, u64, Option<Vec<Vec<u8>>>);

/// Every change after `since`, and the snapshot's version.
fn changes(store: &dyn GalleryStore, since: u64) -> (u64, Vec<Seen>) {
    let mut out = Vec::new();
    let status = store
        .changes_since(since, &mut |c| {
            let templates = match c.kind {
                ChangeKind::Upsert { templates, .. } => Some(templates),
                ChangeKind::Removal => None,
                ChangeKind::Damaged { .. } => panic!("{} is damaged", c.operator_id),
            };
            out.push((c.operator_id, c.version, templates));
            true
        })
        .unwrap();
    (status.version, out)
}

fn versioned_changes(store: &dyn GalleryStore) {
    let a = store
        .enroll("test", "A-1", &[vec![1], vec![2]], None)
        .unwrap();
    let b = store
        .enroll("test", "B-2", &[vec![3]], Some(b"profile"))
        .unwrap();
    assert_eq!((a.version, b.version), (1, 2));
    assert_ne!(a.label, b.label);
    let err = store.enroll("test", "A-1", &[vec![9]], None).unwrap_err();
    assert!(matches!(err, StoreError::AlreadyEnrolled(_)), "{err}");
    let up = store
        .update("test", "A-1", &[vec![4]], UpdateMode::Append, None)
        .unwrap();
    assert_eq!((up.version, up.template_count, up.label), (3, 3, a.label));
    let status = store.status().unwrap();
    assert_eq!(
        (status.version, status.operators, status.templates),
        (3, 2, 4)
    );
    assert_eq!(status.gallery_id.len(), 32, "{}", status.gallery_id);
    let (_, all) = changes(store, 0);
    assert_eq!(
        all,
        vec![
            ("B-2".into(), 2, Some(vec![vec![3]])),
            ("A-1".into(), 3, Some(vec![vec![1], vec![2], vec![4]])),
        ]
    );
}

fn failed_changes_leave_no_trace(store: &dyn GalleryStore) {
    store
        .enroll("test", "A", &[vec![1], vec![2]], None)
        .unwrap();
    let err = store
        .update(
            "test",
            "A",
            &[vec![3], vec![4], vec![5]],
            UpdateMode::Append,
            None,
        )
        .unwrap_err();
    assert!(
        matches!(err, StoreError::TooManyTemplates { count: 5, .. }),
        "{err}"
    );
    let err = store.remove("test", "nobody").unwrap_err();
    assert!(matches!(err, StoreError::UnknownOperator(_)), "{err}");
    let status = store.status().unwrap();
    assert_eq!(
        (status.version, status.templates),
        (1, 2),
        "the failed changes must roll back the version too"
    );
}

fn sync_reports_upserts_and_tombstones(store: &dyn GalleryStore) {
    store.enroll("test", "A", &[vec![1]], None).unwrap(); // v1
    store.enroll("test", "B", &[vec![2]], None).unwrap(); // v2
    store.remove("test", "A").unwrap(); // v3
    store
        .update("test", "B", &[vec![5]], UpdateMode::Replace, None)
        .unwrap(); // v4
    let (version, since_2) = changes(store, 2);
    assert_eq!(version, 4);
    assert_eq!(
        since_2,
        vec![("A".into(), 3, None), ("B".into(), 4, Some(vec![vec![5]]))]
    );
    assert_eq!(changes(store, 4).1, vec![]);
    assert_eq!(changes(store, u64::MAX).1, vec![]);
    // A stale update never undoes the removal.
    let err = store
        .update("test", "A", &[vec![8]], UpdateMode::Append, None)
        .unwrap_err();
    assert!(matches!(err, StoreError::UnknownOperator(_)), "{err}");
    // Enrolling a removed operator again replaces the tombstone, with a new label.
    let again = store.enroll("test", "A", &[vec![7]], None).unwrap();
    let (_, all) = changes(store, 0);
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[1], ("A".into(), again.version, Some(vec![vec![7]])));
}

fn every_change_is_logged_with_its_time(store: &dyn GalleryStore) {
    let before = std::time::SystemTime::now() - Duration::from_secs(60);
    store.enroll("test", "A", &[vec![1]], None).unwrap();
    let mut times = Vec::new();
    store
        .changes_since(0, &mut |c| {
            times.push(c.committed_at);
            true
        })
        .unwrap();
    assert_eq!(times.len(), 1);
    let at = times[0].expect("a change made now is in the change log");
    assert!(at > before, "{at:?}");
}

/// Two free attempts, then 60 s doubling up to 240 s.
const PLANT: LockoutPolicy = LockoutPolicy {
    free_attempts: 2,
    base_delay_ms: 60_000,
    max_delay_ms: 240_000,
};

fn sign_in_failures_are_counted_until_a_success(store: &dyn GalleryStore) {
    store.enroll("test", "A", &[vec![1]], None).unwrap();
    store.enroll("test", "B", &[vec![2]], None).unwrap();
    let version = store.status().unwrap().version;
    let mut locked = Vec::new();
    for _ in 0..5 {
        let s = store.record_sign_in("A", SignIn::Failed, &PLANT).unwrap();
        locked.push((s.failures, s.locked_for_ms.div_ceil(60_000)));
    }
    // Free, free, then 1, 2, 4 minutes (rounded up: the store's clock ran).
    assert_eq!(locked, [(1, 0), (2, 0), (3, 1), (4, 2), (5, 4)]);
    let b = store.record_sign_in("B", SignIn::Failed, &PLANT).unwrap();
    assert_eq!(
        (b.failures, b.locked_for_ms),
        (1, 0),
        "counts are per operator"
    );
    let now = store.lockouts().unwrap();
    assert_eq!(now.len(), 1, "only A is locked: {now:?}");
    assert_eq!((now[0].operator_id.as_str(), now[0].failures), ("A", 5));
    assert!(now[0].locked_for_ms > 3 * 60_000, "{now:?}");
    assert_eq!(
        store.status().unwrap().version,
        version,
        "counting sign-ins is not a gallery change"
    );
    // A success reported during the lock does not lift it (issue 22,
    // finding 5: one forged report cleared a plant-wide lock).
    let ok = store
        .record_sign_in("A", SignIn::Succeeded, &PLANT)
        .unwrap();
    assert_eq!(ok.failures, 5);
    assert!(ok.locked_for_ms > 3 * 60_000, "{ok:?}");
    assert_eq!(store.lockouts().unwrap().len(), 1);
    // B is not locked: a success clears B's count.
    let ok = store
        .record_sign_in("B", SignIn::Succeeded, &PLANT)
        .unwrap();
    assert_eq!((ok.failures, ok.locked_for_ms), (0, 0));
    let err = store
        .record_sign_in("nobody", SignIn::Failed, &PLANT)
        .unwrap_err();
    assert!(matches!(err, StoreError::UnknownOperator(_)), "{err}");
}

/// Issue 22, finding 5: a SUCCEEDED report cleared a lock at once; now it
/// clears the count only once the lock has run out.
fn a_success_clears_the_count_only_after_the_lock(store: &dyn GalleryStore) {
    let brief = LockoutPolicy {
        free_attempts: 0,
        base_delay_ms: 400,
        max_delay_ms: 400,
    };
    store.enroll("test", "A", &[vec![1]], None).unwrap();
    let failed = store.record_sign_in("A", SignIn::Failed, &brief).unwrap();
    assert_eq!(failed.failures, 1);
    assert!(failed.locked_for_ms > 0, "{failed:?}");
    let early = store
        .record_sign_in("A", SignIn::Succeeded, &brief)
        .unwrap();
    assert_eq!(early.failures, 1, "the lock stands: {early:?}");
    assert!(early.locked_for_ms > 0, "{early:?}");
    assert_eq!(store.lockouts().unwrap().len(), 1);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let later = store
        .record_sign_in("A", SignIn::Succeeded, &brief)
        .unwrap();
    assert_eq!((later.failures, later.locked_for_ms), (0, 0));
    let next = store.record_sign_in("A", SignIn::Failed, &brief).unwrap();
    assert_eq!(next.failures, 1, "counted afresh after the success");
}

/// A failure counted under a shorter policy (a plant that shortened its
/// delays, or a replica started with other flags) keeps the lock that
/// stands: both stores keep the later end. SQLite used to overwrite it with
/// the shorter one, PostgreSQL kept it (issue 24).
fn a_failure_never_shortens_a_standing_lock(store: &dyn GalleryStore) {
    let long = LockoutPolicy {
        free_attempts: 0,
        base_delay_ms: 3_600_000,
        max_delay_ms: 3_600_000,
    };
    let short = LockoutPolicy {
        free_attempts: 0,
        base_delay_ms: 1_000,
        max_delay_ms: 1_000,
    };
    store.enroll("test", "A", &[vec![1]], None).unwrap();
    let first = store.record_sign_in("A", SignIn::Failed, &long).unwrap();
    assert!(first.locked_for_ms > 3_500_000, "{first:?}");
    let second = store.record_sign_in("A", SignIn::Failed, &short).unwrap();
    assert_eq!(second.failures, 2);
    assert!(
        second.locked_for_ms > 3_500_000,
        "the hour's lock stands: {second:?}"
    );
    let standing = store.lockouts().unwrap();
    assert_eq!(standing.len(), 1);
    assert!(standing[0].locked_for_ms > 3_500_000, "{standing:?}");
}

/// The stored profile, for the service's scope rule: as enrolled, as
/// replaced, none, or NOT_FOUND.
fn profiles_are_read_back(store: &dyn GalleryStore) {
    store
        .enroll("test", "A", &[vec![1]], Some(b"first"))
        .unwrap();
    store.enroll("test", "B", &[vec![2]], None).unwrap();
    assert_eq!(store.profile("A").unwrap().as_deref(), Some(&b"first"[..]));
    assert_eq!(store.profile("B").unwrap(), None);
    store
        .update("test", "A", &[], UpdateMode::Append, Some(b"second"))
        .unwrap();
    assert_eq!(store.profile("A").unwrap().as_deref(), Some(&b"second"[..]));
    let err = store.profile("nobody").unwrap_err();
    assert!(matches!(err, StoreError::UnknownOperator(_)), "{err}");
}

fn a_removed_operator_takes_their_count_along(store: &dyn GalleryStore) {
    store.enroll("test", "A", &[vec![1]], None).unwrap();
    for _ in 0..4 {
        store.record_sign_in("A", SignIn::Failed, &PLANT).unwrap();
    }
    assert_eq!(store.lockouts().unwrap().len(), 1);
    store.remove("test", "A").unwrap();
    assert!(store.lockouts().unwrap().is_empty());
    store.enroll("test", "A", &[vec![1]], None).unwrap();
    let again = store.record_sign_in("A", SignIn::Failed, &PLANT).unwrap();
    assert_eq!(again.failures, 1, "a re-enrolled operator starts afresh");
}

macro_rules! contract {
    ($($name:ident),*) => {
        mod sqlite {
            $(#[test]
            fn $name() {
                let dir = tempfile::tempdir().unwrap();
                let store = super::SqliteStore::open(dir.path(), super::LIMIT).unwrap();
                super::$name(&store);
            })*
        }
        mod postgres {
            $(#[test]
            fn $name() {
                let server = super::PgServer::start();
                super::$name(&super::pg_store(&server));
            })*
        }
    };
}

contract!(
    versioned_changes,
    failed_changes_leave_no_trace,
    sync_reports_upserts_and_tombstones,
    every_change_is_logged_with_its_time,
    sign_in_failures_are_counted_until_a_success,
    a_success_clears_the_count_only_after_the_lock,
    a_failure_never_shortens_a_standing_lock,
    profiles_are_read_back,
    a_removed_operator_takes_their_count_along
);

#[test]
fn postgres_replicas_count_one_operators_failures_together() {
    // Two replicas (two stores on one database), failures reported to both
    // at once: every failure counts, none is lost to a race.
    let server = PgServer::start();
    let (a, b) = (pg_store(&server), pg_store(&server));
    a.enroll("test", "A", &[vec![1]], None).unwrap();
    let policy = LockoutPolicy {
        free_attempts: 1000,
        ..PLANT
    };
    std::thread::scope(|s| {
        for store in [&a, &b] {
            s.spawn(move || {
                for _ in 0..25 {
                    store.record_sign_in("A", SignIn::Failed, &policy).unwrap();
                }
            });
        }
    });
    let last = b.record_sign_in("A", SignIn::Failed, &PLANT).unwrap();
    assert_eq!(last.failures, 51);
    assert_eq!(a.lockouts().unwrap()[0].failures, 51);
}

#[test]
fn sqlite_changes_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), LIMIT).unwrap();
    store.enroll("kiosk-line-3", "A", &[vec![1]], None).unwrap();
    let id = store.status().unwrap().gallery_id;
    let db = rusqlite::Connection::open(dir.path().join("gallery.sqlite3")).unwrap();
    let logged: String = db
        .query_row(
            "SELECT action || ' by ' || actor FROM change_log",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        logged, "enroll by kiosk-line-3",
        "the change log names who made the change"
    );
    drop(store);
    let store = SqliteStore::open(dir.path(), LIMIT).unwrap();
    let status = store.status().unwrap();
    assert_eq!((status.gallery_id, status.version), (id, 1));
}

#[test]
fn postgres_replicas_share_one_gallery_and_migrate_once() {
    let server = PgServer::start();
    // Three replicas connecting to a fresh database at the same moment.
    let barrier = Arc::new(Barrier::new(3));
    let ids: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let (barrier, server) = (barrier.clone(), &server);
                s.spawn(move || {
                    let store = pg_store(server);
                    barrier.wait();
                    store.status().unwrap().gallery_id
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert_eq!(
        server
            .psql("SELECT count(*), max(version) FROM kubevision_migrations")
            .trim(),
        "2|2",
        "each of the two schema steps (the gallery, the sign-in counts) ran once"
    );
    let (a, b) = (pg_store(&server), pg_store(&server));
    a.enroll("kiosk-line-3", "X", &[vec![1]], None).unwrap();
    assert_eq!(
        server
            .psql("SELECT action || ' by ' || actor FROM change_log WHERE operator_id = 'X'")
            .trim(),
        "enroll by kiosk-line-3",
        "the change log names who made the change"
    );
    assert_eq!(b.status().unwrap().version, 1);
    b.enroll("test", "Y", &[vec![2]], None).unwrap();
    assert_eq!(changes(&a, 0).1.len(), 2);
}

#[test]
fn postgres_concurrent_enrolments_of_one_operator_one_wins() {
    let server = PgServer::start();
    let stores: Vec<PostgresStore> = (0..2).map(|_| pg_store(&server)).collect();
    stores[0].status().unwrap(); // migrated before the race
    for round in 0..10 {
        let id = format!("op-{round}");
        let barrier = Barrier::new(2);
        let results: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = stores
                .iter()
                .map(|store| {
                    let (barrier, id) = (&barrier, &id);
                    s.spawn(move || {
                        barrier.wait();
                        store.enroll("test", id, &[vec![round as u8]], None)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let ok = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(ok, 1, "round {round}: {results:?}");
        assert!(
            results
                .iter()
                .any(|r| matches!(r, Err(StoreError::AlreadyEnrolled(_)))),
            "{results:?}"
        );
    }
    assert_eq!(stores[1].status().unwrap().operators, 10);
}

#[test]
fn postgres_feed_announces_commits_from_other_writers() {
    let server = PgServer::start();
    let (writer, reader) = (pg_store(&server), pg_store(&server));
    reader.status().unwrap();
    let mut feed = reader.watch().unwrap();
    assert_eq!(feed.wait(Duration::from_millis(50)).unwrap(), None);
    let committed = writer.enroll("test", "A", &[vec![1]], None).unwrap();
    let heard = feed.wait(Duration::from_secs(5)).unwrap();
    assert_eq!(heard, Some(committed.version));
    // A rolled-back change announces nothing.
    writer.enroll("test", "A", &[vec![1]], None).unwrap_err();
    assert_eq!(feed.wait(Duration::from_millis(300)).unwrap(), None);
}

#[test]
fn postgres_outage_is_unavailable_and_the_pool_reconnects() {
    let server = PgServer::start();
    let store = pg_store(&server);
    store.enroll("test", "A", &[vec![1]], None).unwrap();
    let mut feed = store.watch().unwrap();
    server.stop();
    let started = Instant::now();
    let err = store.enroll("test", "B", &[vec![2]], None).unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(
        feed.wait(Duration::from_secs(2)).is_err(),
        "a feed on a closed connection must say so"
    );
    server.start_again();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match store.enroll("test", "B", &[vec![2]], None) {
            Ok(c) => {
                assert_eq!(c.version, 2);
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "no reconnect: {e}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(store.status().unwrap().operators, 2);
}

#[test]
fn postgres_newer_schema_is_refused_by_name() {
    let server = PgServer::start();
    pg_store(&server).status().unwrap();
    server.psql("INSERT INTO kubevision_migrations (version) VALUES (99)");
    let err = pg_store(&server).status().unwrap_err();
    assert!(err.to_string().contains("schema is at version 99"), "{err}");
}

/// 200 flipped bytes in a stored template: reading it (a replica loading,
/// a kiosk syncing) is an error naming the operator, never a template served.
/// The damaged operator is reported as damaged, naming the template, and
/// nothing of theirs is served; the rest of the gallery still reads.
fn assert_corrupt(store: &dyn GalleryStore) {
    let mut changes = Vec::new();
    store
        .changes_since(0, &mut |c| {
            changes.push(c);
            true
        })
        .expect("one damaged operator does not fail the read");
    let kinds: Vec<(&str, &ChangeKind)> = changes
        .iter()
        .map(|c| (c.operator_id.as_str(), &c.kind))
        .collect();
    assert!(
        matches!(
            kinds.as_slice(),
            [
                ("A", ChangeKind::Damaged { index: 1, .. }),
                ("B", ChangeKind::Upsert { .. })
            ]
        ),
        "{kinds:?}"
    );
    let err = store.templates_of("A").unwrap_err();
    match &err {
        StoreError::Corrupt { operator_id, index } => {
            assert_eq!((operator_id.as_str(), *index), ("A", 1), "{err}")
        }
        other => panic!("expected a checksum failure, got {other}"),
    }
    assert!(err.to_string().contains("checksum"), "{err}");
    assert_eq!(store.templates_of("B").unwrap(), Some(vec![vec![5; 300]]));
    assert_eq!(store.templates_of("nobody").unwrap(), None);
}

#[test]
fn sqlite_damaged_templates_are_refused_by_their_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), LIMIT).unwrap();
    store
        .enroll("test", "A", &[vec![7; 300], vec![9; 300]], None)
        .unwrap();
    store.enroll("test", "B", &[vec![5; 300]], None).unwrap();
    let db = rusqlite::Connection::open(dir.path().join("gallery.sqlite3")).unwrap();
    db.execute(
        "UPDATE templates SET data = CAST(zeroblob(200) || substr(data, 201) AS BLOB)
         WHERE id = (SELECT max(t.id) FROM templates t JOIN operators o USING (label)
                     WHERE o.operator_id = 'A')",
        [],
    )
    .unwrap();
    assert_corrupt(&store);
}

#[test]
fn postgres_damaged_templates_are_refused_by_their_checksum() {
    let server = PgServer::start();
    let store = pg_store(&server);
    store
        .enroll("test", "A", &[vec![7; 300], vec![9; 300]], None)
        .unwrap();
    store.enroll("test", "B", &[vec![5; 300]], None).unwrap();
    server.psql(
        "UPDATE templates SET data = overlay(data placing decode(repeat('00', 200), 'hex') from 1)
         WHERE id = (SELECT max(t.id) FROM templates t JOIN operators o USING (label)
                     WHERE o.operator_id = 'A')",
    );
    assert_corrupt(&store);
}

#[test]
fn postgres_over_tls_verifies_the_servers_certificate() {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let server = PgServer::start_with_tls(&cert.pem(), &signing_key.serialize_pem());
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("db-ca.pem");
    std::fs::write(&ca, cert.pem()).unwrap();
    let open = |url: String, ca_file: Option<std::path::PathBuf>| {
        PostgresStore::open(&PostgresSettings {
            url,
            ca_file,
            pool_size: 2,
            connect_timeout: Duration::from_secs(2),
            max_templates_per_operator: LIMIT,
        })
        .unwrap()
    };

    // A CA file and no sslmode: TLS is required, and the certificate checked.
    let store = open(server.base_url(), Some(ca.clone()));
    store.enroll("test", "A", &[vec![1]], None).unwrap();
    assert_eq!(
        server
            .psql(
                "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
                 WHERE a.application_name = 'kubevision-offload'"
            )
            .trim(),
        "t",
        "every connection of the store is encrypted"
    );
    // libpq's spelling works too.
    let url = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        server.base_url(),
        ca.display()
    );
    assert_eq!(open(url, None).status().unwrap().operators, 1);

    // A server whose certificate another CA signed is not trusted.
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let other_ca = dir.path().join("other-ca.pem");
    std::fs::write(&other_ca, other.cert.pem()).unwrap();
    let err = open(server.base_url(), Some(other_ca))
        .status()
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
}
