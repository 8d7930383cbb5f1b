//! The PostgreSQL test harness itself: a throwaway cluster starts, keeps its
//! data across a fast restart and a down period, runs beside a second one,
//! leaves nothing behind, and serves TLS when asked.

use crate::common::postgres::PgServer;

#[test]
fn a_cluster_keeps_its_data_across_a_fast_restart_and_a_down_period() {
    let pg = PgServer::start();
    assert_eq!(pg.psql("SELECT 1"), "1\n");
    assert_eq!(
        pg.url(),
        format!("postgres://postgres@127.0.0.1:{}/kubevision", pg.port())
    );
    // Over TCP with the URL the service gets, not just the socket.
    assert_eq!(
        pg.try_psql(&pg.url(), "SELECT current_database(), current_user")
            .unwrap(),
        "kubevision|postgres\n"
    );
    assert_eq!(pg.psql("SHOW server_encoding"), "UTF8\n");

    pg.psql(
        "CREATE TABLE operators (id text PRIMARY KEY, version bigint NOT NULL);
         INSERT INTO operators VALUES ('orl-01', 1), ('orl-02', 2);",
    );
    pg.restart_fast();
    assert!(pg.is_running());
    assert_eq!(
        pg.psql("SELECT id, version FROM operators ORDER BY id"),
        "orl-01|1\norl-02|2\n"
    );

    pg.stop();
    assert!(!pg.is_running());
    let refused = pg.try_psql(&pg.url(), "SELECT 1").unwrap_err();
    assert!(refused.contains("127.0.0.1"), "{refused}");
    pg.start_again();
    pg.psql("INSERT INTO operators VALUES ('orl-03', 3)");
    assert_eq!(
        pg.psql("SELECT count(*), max(version) FROM operators"),
        "3|3\n"
    );
}

#[test]
fn psql_failures_panic_with_the_servers_message() {
    let pg = PgServer::start();
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pg.psql("SELECT * FROM no_such_table")
    }))
    .unwrap_err();
    let message = panic.downcast_ref::<String>().unwrap();
    assert!(message.contains("no_such_table"), "{message}");
}

#[test]
fn two_clusters_run_side_by_side_and_leave_nothing_behind() {
    let (a, b) = (PgServer::start(), PgServer::start());
    assert_ne!(a.port(), b.port());
    a.psql("CREATE TABLE only_in_a (x int)");
    assert_eq!(
        b.psql("SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'"),
        "0\n"
    );
    assert_eq!(
        a.psql("SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'"),
        "1\n"
    );

    let (data, port) = (a.data_dir(), a.port());
    assert!(data.join("PG_VERSION").is_file());
    drop(a);
    assert!(!data.exists(), "{} is left behind", data.display());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the dropped server still listens"
    );
    assert_eq!(b.psql("SELECT 1"), "1\n");
}

#[test]
fn a_tls_cluster_takes_tcp_connections_only_over_tls() {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let pg = PgServer::start_with_tls(&cert.pem(), &signing_key.serialize_pem());
    assert_eq!(
        pg.url(),
        format!(
            "postgres://postgres@127.0.0.1:{}/kubevision?sslmode=require",
            pg.port()
        )
    );
    let conninfo = format!(
        "host=127.0.0.1 port={} user=postgres dbname=kubevision sslmode=require",
        pg.port()
    );
    assert_eq!(pg.try_psql(&conninfo, "SHOW ssl").unwrap(), "on\n");
    assert_eq!(
        pg.try_psql(
            &pg.url(),
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        )
        .unwrap(),
        "t\n"
    );
    // The certificate verifies against itself as the CA, for 127.0.0.1.
    let ca = pg.data_dir().with_file_name("ca.pem");
    std::fs::write(&ca, cert.pem()).unwrap();
    let verified = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        pg.base_url(),
        ca.display()
    );
    assert_eq!(pg.try_psql(&verified, "SELECT 1").unwrap(), "1\n");
    // Plaintext over TCP is refused by pg_hba.conf.
    let plain = pg
        .try_psql(&format!("{}?sslmode=disable", pg.base_url()), "SELECT 1")
        .unwrap_err();
    assert!(plain.contains("no pg_hba.conf entry"), "{plain}");
    // The socket stays plain, for psql().
    assert_eq!(pg.psql("SELECT 1"), "1\n");
}
