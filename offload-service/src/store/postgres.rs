//! The gallery in PostgreSQL: the store of record when the service runs as
//! several replicas (`--store postgres://…`).
//!
//! - **One gallery, one history.** The `gallery` row holds the one
//!   `gallery_id` and the version sequence. A change's transaction starts by
//!   taking the next version (`UPDATE … RETURNING`), which row-locks the
//!   counter until commit: changes are serialised, versions are handed out in
//!   commit order, and a replica that has read version N knows no change
//!   below N can still appear. The change itself, its change-log row and a
//!   `pg_notify` go in the same transaction; the notification is delivered
//!   only if it commits.
//! - **Concurrency.** The same operator enrolled at two replicas at once: the
//!   second transaction waits on the counter, then sees the first one's row
//!   and fails with "already enrolled" (the unique constraint backs this up).
//!   An update of a removed operator finds no row, so a stale update never
//!   undoes a removal.
//! - **Schema.** Versioned migrations run at the first connection, in one
//!   transaction under an advisory lock, so replicas that start together
//!   migrate once.
//! - **TLS.** `sslmode` in the URL (`disable`, `prefer` (the default),
//!   `require`, `verify-ca`, `verify-full`), and the CA from `sslrootcert` in
//!   the URL or `--store-ca-file`. Whenever TLS is used the server's
//!   certificate is verified, chain and host name (libpq's `verify-full`):
//!   a plant network is exactly where a man in the middle would sit. With a
//!   CA file and no `sslmode`, TLS is required.
//! - **Outages.** A connection that cannot be had within
//!   [`PostgresSettings::connect_timeout`] is [`StoreError::Unavailable`]:
//!   the RPC layer answers UNAVAILABLE, the pool reconnects by itself.
//! - **Durability and identity.** The database is the store of record: its
//!   durability (fsync, replication, backups) is the database's, and the
//!   service keeps nothing of the gallery outside it. Replicas are stateless,
//!   so an emptied database (tables dropped, restored from the wrong dump)
//!   makes the next replica to start migrate a new, empty gallery under a
//!   new `gallery_id`. A replica that has already served a gallery notices
//!   the changed `gallery_id` at its next catch-up and stops applying
//!   ([`crate::gallery::GalleryError::GalleryReplaced`]: an error in the log,
//!   `kubevision_store_connected` 0), keeping the operators it had; restore
//!   the database, or restart the replicas to serve the new gallery.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, Config, IsolationLevel, Transaction};
use r2d2::{ManageConnection, Pool, PooledConnection};
use tokio_postgres_rustls::MakeRustlsConnect;

use kubevision_proto::lockout::LockoutPolicy;

use super::{
    check_count, checked_templates, checked_upsert, checksum, count_sign_in, to_sql_version,
    Change, ChangeFeed, ChangeKind, Committed, GalleryStore, SignIn, Standing, StoreError,
    StoreStatus, Unreachable, UpdateMode,
};

/// The channel every change is announced on; the payload is its version.
pub const CHANNEL: &str = "kubevision_gallery";

/// The database's clock in Unix milliseconds: one clock for every replica.
const NOW_MS: &str = "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS ms";

/// Held (per transaction) while migrating: "kubevisi" in ASCII.
const MIGRATION_LOCK: i64 = 0x6b75_6265_7669_7369;

/// The schema, one step per entry; never edit a step once released, add one.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE gallery (
         id INTEGER PRIMARY KEY CHECK (id = 1),
         gallery_id TEXT NOT NULL,
         version BIGINT NOT NULL
     );
     INSERT INTO gallery (id, gallery_id, version)
         VALUES (1, replace(gen_random_uuid()::text, '-', ''), 0);
     CREATE TABLE operators (
         label INTEGER GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
         operator_id TEXT NOT NULL UNIQUE,
         version BIGINT NOT NULL,
         profile BYTEA
     );
     CREATE INDEX operators_by_version ON operators (version);
     CREATE TABLE templates (
         id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
         label INTEGER NOT NULL REFERENCES operators (label) ON DELETE CASCADE,
         data BYTEA NOT NULL,
         checksum BYTEA NOT NULL
     );
     CREATE INDEX templates_by_label ON templates (label);
     CREATE TABLE removals (
         operator_id TEXT PRIMARY KEY,
         version BIGINT NOT NULL
     );
     CREATE INDEX removals_by_version ON removals (version);
     CREATE TABLE change_log (
         version BIGINT PRIMARY KEY,
         operator_id TEXT NOT NULL,
         action TEXT NOT NULL CHECK (action IN ('enroll', 'update', 'remove')),
         committed_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
         actor TEXT NOT NULL
     );",
    // Plant-wide sign-in failures per operator (`record_sign_in`); removed
    // with the operator.
    "CREATE TABLE sign_in_failures (
         label INTEGER PRIMARY KEY REFERENCES operators (label) ON DELETE CASCADE,
         failures INTEGER NOT NULL,
         locked_until_ms BIGINT NOT NULL
     );",
];

/// How to reach the database.
#[derive(Clone)]
pub struct PostgresSettings {
    /// The connection string (`postgres://user:password@host:5432/db?sslmode=…`).
    pub url: String,
    /// A PEM CA bundle for the server's certificate (else `sslrootcert`, else
    /// the system's roots).
    pub ca_file: Option<PathBuf>,
    /// Connections in the pool (changes, status, syncs).
    pub pool_size: u32,
    /// How long a change waits for a connection before it is UNAVAILABLE.
    pub connect_timeout: Duration,
    pub max_templates_per_operator: usize,
}

type Tls = MakeRustlsConnect;
type Connection = PooledConnection<Manager>;

pub struct PostgresStore {
    /// Always Some but while dropping (see the Drop impl).
    pool: Option<Pool<Manager>>,
    /// For the change feed's own connection (LISTEN needs one that stays).
    config: Config,
    tls: Tls,
    migrated: AtomicBool,
    max_templates_per_operator: usize,
}

impl PostgresStore {
    /// Sets up the pool without connecting: a replica starts (and reports
    /// NOT_SERVING) while its database is down, and connects when it can.
    pub fn open(settings: &PostgresSettings) -> Result<Self, StoreError> {
        let (mut config, tls) = connection_config(settings)?;
        config
            .connect_timeout(settings.connect_timeout)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .application_name("kubevision-offload");
        let manager = Manager {
            config: config.clone(),
            tls: tls.clone(),
        };
        let pool = Pool::builder()
            .max_size(settings.pool_size.max(1))
            .min_idle(Some(0))
            .connection_timeout(settings.connect_timeout)
            .test_on_check_out(true)
            .build_unchecked(manager);
        Ok(Self {
            pool: Some(pool),
            config,
            tls,
            migrated: AtomicBool::new(false),
            max_templates_per_operator: settings.max_templates_per_operator,
        })
    }

    /// A pooled connection, the schema brought up to date on first use.
    fn conn(&self) -> Result<Connection, StoreError> {
        let mut conn = self
            .pool
            .as_ref()
            .expect("the pool lives as long as the store")
            .get()
            .map_err(|e| StoreError::Unavailable(Unreachable::Pool(e)))?;
        if !self.migrated.load(Ordering::Acquire) {
            migrate(&mut conn)?;
            self.migrated.store(true, Ordering::Release);
        }
        Ok(conn)
    }

    /// Runs `f` in one transaction holding the next gallery version, logs and
    /// announces the change in it, and commits.
    fn change(
        &self,
        actor: &str,
        operator_id: &str,
        action: &str,
        f: impl FnOnce(&mut Transaction<'_>, i64) -> Result<Committed, StoreError>,
    ) -> Result<Committed, StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(pg)?;
        let version: i64 = tx
            .query_one(
                "UPDATE gallery SET version = version + 1 WHERE id = 1 RETURNING version",
                &[],
            )
            .map_err(pg)?
            .get(0);
        let out = f(&mut tx, version)?;
        tx.execute(
            "INSERT INTO change_log (version, operator_id, action, actor) VALUES ($1, $2, $3, $4)",
            &[&version, &operator_id, &action, &actor],
        )
        .map_err(pg)?;
        tx.execute(
            "SELECT pg_notify($1, $2)",
            &[&CHANNEL, &version.to_string()],
        )
        .map_err(pg)?;
        tx.commit().map_err(pg)?;
        Ok(out)
    }
}

/// Each of the pool's clients runs a tokio runtime of its own, which
/// panics when it is shut down on one of the service's async threads ("Cannot
/// start a runtime from within a runtime", exit 101 at every SIGTERM of a
/// replica, issue 22): the last owner of the store may well be one. So the
/// pool is dropped on a thread of its own, and waited for, so that every
/// connection is closed (a Terminate sent) before the process exits.
impl Drop for PostgresStore {
    fn drop(&mut self) {
        let Some(pool) = self.pool.take() else { return };
        let closing = std::thread::Builder::new()
            .name("postgres-close".into())
            .spawn(move || drop(pool));
        match closing {
            Ok(thread) => {
                if thread.join().is_err() {
                    tracing::warn!("closing the PostgreSQL connections failed");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot close the PostgreSQL connections"),
        }
    }
}

impl GalleryStore for PostgresStore {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn status(&self) -> Result<StoreStatus, StoreError> {
        status_of(&mut *self.conn()?)
    }

    fn templates_of(&self, operator_id: &str) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(pg)?;
        let Some(label) = label_of(&mut tx, operator_id)? else {
            return Ok(None);
        };
        let rows = tx
            .query(
                "SELECT data, checksum FROM templates WHERE label = $1 ORDER BY id",
                &[&label],
            )
            .map_err(pg)?
            .into_iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        tx.commit().map_err(pg)?;
        checked_templates(operator_id, rows).map(Some)
    }

    fn enroll(
        &self,
        actor: &str,
        operator_id: &str,
        templates: &[Vec<u8>],
        profile: Option<&[u8]>,
    ) -> Result<Committed, StoreError> {
        self.change(actor, operator_id, "enroll", |tx, version| {
            if label_of(tx, operator_id)?.is_some() {
                return Err(StoreError::AlreadyEnrolled(operator_id.to_owned()));
            }
            check_count(
                operator_id,
                templates.len(),
                self.max_templates_per_operator,
            )?;
            let label: i32 = tx
                .query_one(
                    "INSERT INTO operators (operator_id, version, profile) VALUES ($1, $2, $3)
                     RETURNING label",
                    &[&operator_id, &version, &profile],
                )
                .map_err(|e| match e.code() {
                    Some(&postgres::error::SqlState::UNIQUE_VIOLATION) => {
                        StoreError::AlreadyEnrolled(operator_id.to_owned())
                    }
                    _ => pg(e),
                })?
                .get(0);
            tx.execute(
                "DELETE FROM removals WHERE operator_id = $1",
                &[&operator_id],
            )
            .map_err(pg)?;
            insert_templates(tx, label, templates)?;
            Ok(Committed {
                label,
                version: version as u64,
                template_count: templates.len(),
            })
        })
    }

    fn update(
        &self,
        actor: &str,
        operator_id: &str,
        templates: &[Vec<u8>],
        mode: UpdateMode,
        profile: Option<&[u8]>,
    ) -> Result<Committed, StoreError> {
        self.change(actor, operator_id, "update", |tx, version| {
            let label = label_of(tx, operator_id)?
                .ok_or_else(|| StoreError::UnknownOperator(operator_id.to_owned()))?;
            let kept = match mode {
                UpdateMode::Replace => {
                    tx.execute("DELETE FROM templates WHERE label = $1", &[&label])
                        .map_err(pg)?;
                    0
                }
                UpdateMode::Append => {
                    let n: i64 = tx
                        .query_one("SELECT count(*) FROM templates WHERE label = $1", &[&label])
                        .map_err(pg)?
                        .get(0);
                    n as usize
                }
            };
            check_count(
                operator_id,
                kept + templates.len(),
                self.max_templates_per_operator,
            )?;
            tx.execute(
                "UPDATE operators SET version = $1, profile = coalesce($3, profile) WHERE label = $2",
                &[&version, &label, &profile],
            )
            .map_err(pg)?;
            insert_templates(tx, label, templates)?;
            Ok(Committed {
                label,
                version: version as u64,
                template_count: kept + templates.len(),
            })
        })
    }

    fn remove(&self, actor: &str, operator_id: &str) -> Result<Committed, StoreError> {
        self.change(actor, operator_id, "remove", |tx, version| {
            let label = label_of(tx, operator_id)?
                .ok_or_else(|| StoreError::UnknownOperator(operator_id.to_owned()))?;
            tx.execute("DELETE FROM operators WHERE label = $1", &[&label])
                .map_err(pg)?;
            tx.execute(
                "INSERT INTO removals (operator_id, version) VALUES ($1, $2)
                 ON CONFLICT (operator_id) DO UPDATE SET version = excluded.version",
                &[&operator_id, &version],
            )
            .map_err(pg)?;
            Ok(Committed {
                label,
                version: version as u64,
                template_count: 0,
            })
        })
    }

    /// One REPEATABLE READ snapshot; rows stream from the server one operator
    /// (with all their templates) at a time.
    fn changes_since(
        &self,
        since: u64,
        emit: &mut dyn FnMut(Change) -> bool,
    ) -> Result<StoreStatus, StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .map_err(pg)?;
        let status = status_of(&mut tx)?;
        let since = to_sql_version(since);
        let mut rows = tx
            .query_raw(
                "SELECT c.version, c.operator_id, c.label, c.removed, c.profile,
                        (extract(epoch FROM l.committed_at) * 1000)::bigint, c.templates, c.sums
                 FROM (SELECT o.version, o.operator_id, o.label, false AS removed, o.profile,
                              ARRAY(SELECT t.data FROM templates t
                                    WHERE t.label = o.label ORDER BY t.id) AS templates,
                              ARRAY(SELECT t.checksum FROM templates t
                                    WHERE t.label = o.label ORDER BY t.id) AS sums
                       FROM operators o WHERE o.version > $1
                       UNION ALL
                       SELECT r.version, r.operator_id, 0, true, NULL, NULL, NULL
                       FROM removals r WHERE r.version > $1) c
                 LEFT JOIN change_log l ON l.version = c.version
                 ORDER BY c.version",
                [&since],
            )
            .map_err(pg)?;
        while let Some(row) = rows.next().map_err(pg)? {
            let version: i64 = row.try_get(0).map_err(pg)?;
            let removed: bool = row.try_get(3).map_err(pg)?;
            let operator_id: String = row.try_get(1).map_err(pg)?;
            let kind = if removed {
                ChangeKind::Removal
            } else {
                let templates: Vec<Vec<u8>> = row.try_get(6).map_err(pg)?;
                let sums: Vec<Option<Vec<u8>>> = row.try_get(7).map_err(pg)?;
                checked_upsert(
                    row.try_get(2).map_err(pg)?,
                    templates,
                    &sums,
                    row.try_get(4).map_err(pg)?,
                )
            };
            let committed_ms: Option<i64> = row.try_get(5).map_err(pg)?;
            let change = Change {
                operator_id,
                version: version as u64,
                committed_at: committed_ms
                    .map(|ms| UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)),
                kind,
            };
            if !emit(change) {
                break;
            }
        }
        drop(rows);
        tx.commit().map_err(pg)?;
        Ok(status)
    }

    /// A connection of its own that LISTENs for committed changes.
    fn watch(&self) -> Result<Box<dyn ChangeFeed>, StoreError> {
        let mut client = self.config.connect(self.tls.clone()).map_err(pg)?;
        client
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .map_err(pg)?;
        Ok(Box::new(Listener { client }))
    }

    /// The count is incremented in the database (an upsert), so that two
    /// replicas counting at once both count; time is the database's.
    fn record_sign_in(
        &self,
        operator_id: &str,
        outcome: SignIn,
        policy: &LockoutPolicy,
    ) -> Result<Standing, StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(pg)?;
        let label = label_of(&mut tx, operator_id)?
            .ok_or_else(|| StoreError::UnknownOperator(operator_id.to_owned()))?;
        let now: i64 = tx.query_one(NOW_MS, &[]).map_err(pg)?.get(0);
        let (failures, until) = match outcome {
            SignIn::Succeeded => {
                let (before, until_before) = tx
                    .query_opt(
                        "SELECT failures, locked_until_ms FROM sign_in_failures
                         WHERE label = $1 FOR UPDATE",
                        &[&label],
                    )
                    .map_err(pg)?
                    .map_or((0, now), |r| (r.get::<_, i32>(0).max(0) as u32, r.get(1)));
                let (failures, until) = count_sign_in(before, until_before, outcome, policy, now);
                if failures == 0 {
                    tx.execute("DELETE FROM sign_in_failures WHERE label = $1", &[&label])
                        .map_err(pg)?;
                }
                (failures, until)
            }
            SignIn::Failed => {
                // Counted in one statement, so that replicas reporting at
                // once lose no failure; the lock that stood comes back with it.
                let row = tx
                    .query_one(
                        "INSERT INTO sign_in_failures (label, failures, locked_until_ms)
                         VALUES ($1, 1, 0)
                         ON CONFLICT (label) DO UPDATE
                         SET failures = sign_in_failures.failures + 1
                         RETURNING failures, locked_until_ms",
                        &[&label],
                    )
                    .map_err(pg)?;
                let (counted, until_before): (i32, i64) = (row.get(0), row.get(1));
                let (failures, until) = count_sign_in(
                    counted.max(1) as u32 - 1,
                    until_before,
                    outcome,
                    policy,
                    now,
                );
                tx.execute(
                    "UPDATE sign_in_failures SET locked_until_ms = greatest(locked_until_ms, $2)
                     WHERE label = $1",
                    &[&label, &until],
                )
                .map_err(pg)?;
                (failures, until)
            }
        };
        tx.commit().map_err(pg)?;
        Ok(Standing {
            operator_id: operator_id.to_owned(),
            failures,
            locked_for_ms: (until - now).max(0) as u64,
        })
    }

    fn profile(&self, operator_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.conn()?
            .query_opt(
                "SELECT profile FROM operators WHERE operator_id = $1",
                &[&operator_id],
            )
            .map_err(pg)?
            .map(|r| r.get(0))
            .ok_or_else(|| StoreError::UnknownOperator(operator_id.to_owned()))
    }

    fn lockouts(&self) -> Result<Vec<Standing>, StoreError> {
        let rows = self
            .conn()?
            .query(
                &format!(
                    "WITH now AS ({NOW_MS})
                     SELECT o.operator_id, f.failures, f.locked_until_ms - now.ms
                     FROM sign_in_failures f JOIN operators o USING (label), now
                     WHERE f.locked_until_ms > now.ms ORDER BY o.operator_id"
                ),
                &[],
            )
            .map_err(pg)?;
        Ok(rows
            .iter()
            .map(|r| Standing {
                operator_id: r.get(0),
                failures: r.get::<_, i32>(1) as u32,
                locked_for_ms: r.get::<_, i64>(2) as u64,
            })
            .collect())
    }
}

/// The pool's connections. Ours rather than r2d2-postgres's so that a
/// failed connection keeps its cause ("invalid peer certificate:
/// UnknownIssuer", "password authentication failed"), which is what the
/// person reading the log needs.
struct Manager {
    config: Config,
    tls: Tls,
}

/// A connection failure in words, cause included.
#[derive(Debug)]
struct Described(String);

impl std::fmt::Display for Described {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Described {}

impl ManageConnection for Manager {
    type Connection = Client;
    type Error = Described;

    fn connect(&self) -> Result<Client, Described> {
        self.config
            .connect(self.tls.clone())
            .map_err(|e| Described(describe(&e)))
    }

    fn is_valid(&self, client: &mut Client) -> Result<(), Described> {
        client
            .simple_query("")
            .map(drop)
            .map_err(|e| Described(describe(&e)))
    }

    fn has_broken(&self, client: &mut Client) -> bool {
        client.is_closed()
    }
}

struct Listener {
    client: Client,
}

impl ChangeFeed for Listener {
    fn wait(&mut self, timeout: Duration) -> Result<Option<u64>, StoreError> {
        let first = self
            .client
            .notifications()
            .timeout_iter(timeout)
            .next()
            .map_err(pg)?;
        let Some(first) = first else {
            // The iterator ends at once on a closed connection: say so, or
            // the caller would spin.
            if self.client.is_closed() {
                return Err(StoreError::Unavailable(Unreachable::NotificationsClosed));
            }
            return Ok(None);
        };
        let mut newest = first.payload().parse::<u64>().ok().or(Some(0));
        // Take whatever else already arrived, without waiting again.
        let mut notifications = self.client.notifications();
        let mut more = notifications.iter();
        while let Some(n) = more.next().map_err(pg)? {
            newest = newest.max(n.payload().parse().ok());
        }
        Ok(newest)
    }
}

/// Applies the migrations not yet applied, once, under the advisory lock.
fn migrate(conn: &mut Client) -> Result<(), StoreError> {
    let mut tx = conn.transaction().map_err(pg)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(pg)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS kubevision_migrations (
             version INTEGER PRIMARY KEY,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )
    .map_err(pg)?;
    let applied: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM kubevision_migrations",
            &[],
        )
        .map_err(pg)?
        .get(0);
    if applied as usize > MIGRATIONS.len() {
        return Err(StoreError::NewerSchema {
            found: applied,
            known: MIGRATIONS.len(),
        });
    }
    for (step, sql) in MIGRATIONS.iter().enumerate().skip(applied as usize) {
        tx.batch_execute(sql).map_err(pg)?;
        tx.execute(
            "INSERT INTO kubevision_migrations (version) VALUES ($1)",
            &[&(step as i32 + 1)],
        )
        .map_err(pg)?;
        tracing::info!(step = step + 1, "gallery schema migrated");
    }
    tx.commit().map_err(pg)
}

fn status_of(conn: &mut impl postgres::GenericClient) -> Result<StoreStatus, StoreError> {
    let row = conn
        .query_one(
            "SELECT gallery_id, version,
                    (SELECT count(*) FROM operators), (SELECT count(*) FROM templates)
             FROM gallery WHERE id = 1",
            &[],
        )
        .map_err(pg)?;
    Ok(StoreStatus {
        gallery_id: row.get(0),
        version: row.get::<_, i64>(1) as u64,
        operators: row.get::<_, i64>(2) as usize,
        templates: row.get::<_, i64>(3) as usize,
    })
}

fn label_of(tx: &mut Transaction<'_>, operator_id: &str) -> Result<Option<i32>, StoreError> {
    Ok(tx
        .query_opt(
            "SELECT label FROM operators WHERE operator_id = $1",
            &[&operator_id],
        )
        .map_err(pg)?
        .map(|r| r.get(0)))
}

fn insert_templates(
    tx: &mut Transaction<'_>,
    label: i32,
    templates: &[Vec<u8>],
) -> Result<(), StoreError> {
    if templates.is_empty() {
        return Ok(());
    }
    // One statement for the whole batch: an enrolment is 50 templates.
    let sums: Vec<Vec<u8>> = templates.iter().map(|t| checksum(t)).collect();
    tx.execute(
        "INSERT INTO templates (label, data, checksum)
         SELECT $1, t.data, t.sum FROM unnest($2::bytea[], $3::bytea[]) AS t (data, sum)",
        &[&label, &templates, &sums],
    )
    .map_err(pg)?;
    Ok(())
}

/// A connection problem (the server is down, restarting, unreachable) is
/// UNAVAILABLE; anything the server answered is a database error.
fn pg(e: postgres::Error) -> StoreError {
    let unavailable = e.is_closed()
        || match e.code() {
            None => true,
            Some(code) => {
                let c = code.code();
                c.starts_with("08") // connection exception
                    || c.starts_with("57P") // admin shutdown, crash shutdown, cannot connect now
                    || c == "53300" // too many connections
            }
        };
    if unavailable {
        StoreError::Unavailable(Unreachable::Postgres(e))
    } else {
        StoreError::Database(e)
    }
}

/// The Display of a server error is only "db error", and of a TLS failure
/// only "error performing TLS handshake": their sources say what.
pub(super) fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(cause) = source {
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            text
        }
    }
}

/// The driver's configuration and TLS connector from the settings: our own
/// reading of `sslmode` and `sslrootcert`, which the driver does not know.
fn connection_config(settings: &PostgresSettings) -> Result<(Config, Tls), StoreError> {
    let (url, sslmode, rootcert) = take_tls_params(&settings.url)?;
    let mut config = Config::from_str(&url)
        .map_err(|e| StoreError::Config(format!("the PostgreSQL URL is not valid: {e}")))?;
    let ca_file = settings.ca_file.clone().or(rootcert.map(PathBuf::from));
    let mode = match (sslmode.as_deref(), &ca_file) {
        (None, Some(_)) => postgres::config::SslMode::Require,
        (None | Some("prefer"), None) => postgres::config::SslMode::Prefer,
        (Some("prefer"), Some(_)) => postgres::config::SslMode::Prefer,
        (Some("disable"), _) => postgres::config::SslMode::Disable,
        (Some("require" | "verify-ca" | "verify-full"), _) => postgres::config::SslMode::Require,
        (Some(other), _) => {
            return Err(StoreError::Config(format!(
                "sslmode={other} is not one of disable, prefer, require, verify-ca, verify-full"
            )))
        }
    };
    config.ssl_mode(mode);
    let roots = root_store(ca_file.as_deref())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Config(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok((config, MakeRustlsConnect::new(tls)))
}

/// Removes `sslmode` and `sslrootcert` from a URL's query, returning them.
fn take_tls_params(url: &str) -> Result<(String, Option<String>, Option<String>), StoreError> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), None, None));
    };
    let (mut sslmode, mut rootcert, mut kept) = (None, None, Vec::new());
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sslmode", v)) => sslmode = Some(v.to_owned()),
            Some(("sslrootcert", v)) => rootcert = Some(v.to_owned()),
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, sslmode, rootcert))
}

fn root_store(ca_file: Option<&Path>) -> Result<rustls::RootCertStore, StoreError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| {
                    StoreError::Config(format!(
                        "cannot read the database CA file {}: {e}",
                        path.display()
                    ))
                })?;
            if certs.is_empty() {
                return Err(StoreError::Config(format!(
                    "the database CA file {} holds no PEM certificate",
                    path.display()
                )));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| {
                    StoreError::Config(format!("the database CA file {}: {e}", path.display()))
                })?;
            }
        }
        None => {
            // The system's roots, for a managed database with a public CA.
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str) -> PostgresSettings {
        PostgresSettings {
            url: url.into(),
            ca_file: None,
            pool_size: 2,
            connect_timeout: Duration::from_secs(1),
            max_templates_per_operator: 4,
        }
    }

    #[test]
    fn tls_parameters_are_ours_to_read() {
        let (url, mode, root) = take_tls_params(
            "postgres://a@h/db?sslmode=verify-full&sslrootcert=/ca.pem&connect_timeout=3",
        )
        .unwrap();
        assert_eq!(url, "postgres://a@h/db?connect_timeout=3");
        assert_eq!(mode.as_deref(), Some("verify-full"));
        assert_eq!(root.as_deref(), Some("/ca.pem"));
        let (config, _) =
            connection_config(&settings("postgres://a@h/db?sslmode=disable")).unwrap();
        assert_eq!(config.get_ssl_mode(), postgres::config::SslMode::Disable);
        let (config, _) =
            connection_config(&settings("postgres://a@h/db?sslmode=verify-ca")).unwrap();
        assert_eq!(config.get_ssl_mode(), postgres::config::SslMode::Require);
    }

    #[test]
    fn bad_settings_are_named() {
        let err = connection_config(&settings("postgres://a@h/db?sslmode=sometimes"))
            .err()
            .unwrap();
        assert!(err.to_string().contains("sslmode=sometimes"), "{err}");
        let mut s = settings("postgres://a@h/db");
        s.ca_file = Some("/nonexistent/ca.pem".into());
        let err = connection_config(&s).err().unwrap();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn a_down_database_is_unavailable_not_a_hang() {
        // Nothing listens on port 1 of loopback.
        let store =
            PostgresStore::open(&settings("postgres://a@127.0.0.1:1/db?sslmode=disable")).unwrap();
        let started = std::time::Instant::now();
        let err = store.status().unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(matches!(
            store.watch().err().unwrap(),
            StoreError::Unavailable(_)
        ));
    }
}
