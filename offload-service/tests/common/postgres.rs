//! A real PostgreSQL server for the store tests: a throwaway cluster made by
//! `initdb` in a temporary folder and run by `pg_ctl` on a free loopback port.
//! No system service is used or needed.
//!
//! The binaries come from `KUBEVISION_PG_BINDIR` if set, else from the highest
//! `/usr/lib/postgresql/<major>/bin` (Debian's `postgresql` package, which
//! `scripts/setup-test-tools` installs), else from `PATH`. Without them the
//! harness panics: the store tests need the real server and never skip.
//!
//! `initdb` and `postgres` refuse to run as root, and CI runs as root: when
//! the effective uid is 0 the folder is handed to the `postgres` system user
//! (made by the Debian package) and every PostgreSQL binary runs as that user
//! through `setpriv` (util-linux; no PAM session, so it works in any
//! container). The folder is made under a parent that user can traverse.
//!
//! The methods block (they wait for `pg_ctl -w`): from a tokio test under
//! load, call `restart_fast`, `stop` and `start_again` through
//! `tokio::task::spawn_blocking` with the server in an `Arc` (all methods take
//! `&self`, and the type is `Send + Sync`).

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

/// The database every server is given (besides `postgres`).
pub const DATABASE: &str = "kubevision";

/// A throwaway PostgreSQL cluster; stopped (`-m immediate`) and deleted on drop.
pub struct PgServer {
    bin: PathBuf,
    /// `Some((uid, gid))` of the `postgres` user when the tests run as root.
    run_as: Option<(u32, u32)>,
    port: u16,
    tls: bool,
    running: AtomicBool,
    // Last, so that it is removed after `Drop::drop` has stopped the server.
    dir: tempfile::TempDir,
}

impl PgServer {
    /// A plain cluster: trust authentication for the Unix socket and for
    /// 127.0.0.1, database `kubevision` created.
    pub fn start() -> Self {
        Self::start_inner(None)
    }

    /// A cluster with `ssl = on`, serving `server_cert_pem` with
    /// `server_key_pem` (written 0600 and owned by the server's user, as
    /// PostgreSQL demands). TCP connections are accepted only over TLS
    /// (`hostssl` in pg_hba.conf, no `host` line), so `url()` then carries
    /// `?sslmode=require`; to verify the certificate instead, use
    /// `base_url()` + `?sslmode=verify-full&sslrootcert=<CA file>` with a
    /// certificate for `127.0.0.1` (an IP SAN). The Unix socket (`psql`) stays
    /// plain.
    pub fn start_with_tls(server_cert_pem: &str, server_key_pem: &str) -> Self {
        Self::start_inner(Some((server_cert_pem, server_key_pem)))
    }

    fn start_inner(tls: Option<(&str, &str)>) -> Self {
        let bin = bindir().to_path_buf();
        let run_as = (effective_uid() == 0).then(postgres_user);
        let dir = tempfile::Builder::new()
            .prefix("kv-pg-")
            .tempdir_in(temp_parent(run_as.is_some()))
            .expect("a temporary folder for the PostgreSQL cluster");
        let mut server = Self {
            bin,
            run_as,
            port: 0,
            tls: tls.is_some(),
            running: AtomicBool::new(false),
            dir,
        };
        server.give(server.dir.path());
        std::fs::create_dir(server.socket_dir()).unwrap();
        server.give(&server.socket_dir());

        let initdb = server
            .command("initdb")
            .arg("-D")
            .arg(server.data_dir())
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .output()
            .expect("initdb runs");
        check("initdb", &initdb);

        let host = if tls.is_some() { "hostssl" } else { "host" };
        server.write_owned(
            &server.data_dir().join("pg_hba.conf"),
            &format!(
                "# kubevision tests: trust on the socket and on loopback\n\
                 local all all trust\n\
                 {host} all all 127.0.0.1/32 trust\n"
            ),
            0o600,
        );
        let mut conf = format!(
            "\n# kubevision tests\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\n\
             max_connections = 200\n\
             shared_buffers = 32MB\n\
             include 'kubevision-port.conf'\n",
            server.socket_dir().display()
        );
        if let Some((cert, key)) = tls {
            let (cert_file, key_file) = (
                server.root().join("server.crt"),
                server.root().join("server.key"),
            );
            server.write_owned(&cert_file, cert, 0o644);
            server.write_owned(&key_file, key, 0o600);
            conf += &format!(
                "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
                cert_file.display(),
                key_file.display()
            );
        }
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(server.data_dir().join("postgresql.conf"))
            .unwrap();
        file.write_all(conf.as_bytes()).unwrap();

        // A free port can be taken between finding it and the bind: try others.
        for attempt in 1.. {
            server.port = free_port();
            server.write_owned(
                &server.data_dir().join("kubevision-port.conf"),
                &format!("port = {}\n", server.port),
                0o600,
            );
            let start = server.pg_ctl(&["-t", "60", "start"]);
            if start.status.success() {
                break;
            }
            let log = server.log();
            if attempt < 5 && log.contains("could not bind") {
                continue;
            }
            panic!(
                "pg_ctl start failed ({}):\n{}{}\nserver log:\n{log}",
                start.status,
                String::from_utf8_lossy(&start.stdout),
                String::from_utf8_lossy(&start.stderr),
            );
        }
        server.running.store(true, Ordering::SeqCst);
        server.psql_db("postgres", &format!("CREATE DATABASE {DATABASE}"));
        server
    }

    /// `postgres://postgres@127.0.0.1:PORT/kubevision`, with
    /// `?sslmode=require` for a server made by `start_with_tls`.
    pub fn url(&self) -> String {
        if self.tls {
            format!("{}?sslmode=require", self.base_url())
        } else {
            self.base_url()
        }
    }

    /// `postgres://postgres@127.0.0.1:PORT/kubevision`, without parameters.
    pub fn base_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{DATABASE}", self.port)
    }

    /// Whether the server is up (not between `stop` and `start_again`).
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's data directory (owned by `postgres` when run as root).
    pub fn data_dir(&self) -> PathBuf {
        self.root().join("data")
    }

    /// The server's log (`pg_ctl -l`), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root().join("server.log")).unwrap_or_default()
    }

    /// Runs `sql` (one or more statements) in database `kubevision` through
    /// `psql -X -q -A -t` over the Unix socket and returns its stdout: one line
    /// per row, columns separated by `|`. Panics with psql's stderr on failure.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_db(DATABASE, sql)
    }

    /// Runs `sql` through `psql -X -q -A -t` connected with `conninfo` (a
    /// libpq connection string or URL, e.g. `self.url()`, so over TCP and,
    /// with TLS, encrypted). Err holds psql's stderr.
    pub fn try_psql(&self, conninfo: &str, sql: &str) -> Result<String, String> {
        self.run_psql(&[conninfo], sql)
    }

    /// `pg_ctl restart -m fast -w`: connections are cut, committed data stays.
    pub fn restart_fast(&self) {
        let out = self.pg_ctl(&["-m", "fast", "-t", "60", "restart"]);
        self.check_ctl("pg_ctl restart", &out);
        self.running.store(true, Ordering::SeqCst);
    }

    /// `pg_ctl stop -m fast -w`: the server is down until `start_again`.
    pub fn stop(&self) {
        let out = self.pg_ctl(&["-m", "fast", "-t", "60", "stop"]);
        self.check_ctl("pg_ctl stop", &out);
        self.running.store(false, Ordering::SeqCst);
    }

    /// Starts the stopped server again, on the same port and data.
    pub fn start_again(&self) {
        let out = self.pg_ctl(&["-t", "60", "start"]);
        self.check_ctl("pg_ctl start", &out);
        self.running.store(true, Ordering::SeqCst);
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn socket_dir(&self) -> PathBuf {
        self.root().join("sock")
    }

    fn psql_db(&self, database: &str, sql: &str) -> String {
        let socket = self.socket_dir();
        let port = self.port.to_string();
        let args = [
            OsStr::new("-h"),
            socket.as_os_str(),
            OsStr::new("-p"),
            OsStr::new(&port),
            OsStr::new("-U"),
            OsStr::new("postgres"),
            OsStr::new("-d"),
            OsStr::new(database),
        ];
        self.run_psql(&args, sql)
            .unwrap_or_else(|stderr| panic!("psql failed on {sql:?}:\n{stderr}"))
    }

    fn run_psql<S: AsRef<OsStr>>(&self, connection: &[S], sql: &str) -> Result<String, String> {
        let mut child = self
            .command("psql")
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-f", "-"])
            .args(connection)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("psql runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(sql.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        if out.status.success() {
            Ok(String::from_utf8(out.stdout).unwrap())
        } else {
            Err(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            ))
        }
    }

    /// `pg_ctl -D data -l server.log -w ARGS`. The log file matters: without
    /// it the server would inherit pg_ctl's stdout pipe and `output()` would
    /// never see its end.
    fn pg_ctl(&self, args: &[&str]) -> Output {
        self.pg_ctl_command(args).output().expect("pg_ctl runs")
    }

    fn pg_ctl_command(&self, args: &[&str]) -> Command {
        let mut command = self.command("pg_ctl");
        command
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.root().join("server.log"))
            .arg("-w")
            .args(args)
            .stdin(Stdio::null());
        command
    }

    fn check_ctl(&self, what: &str, out: &Output) {
        if !out.status.success() {
            panic!(
                "{what} failed ({}):\n{}{}\nserver log:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log()
            );
        }
    }

    /// A PostgreSQL binary, run as `postgres` when the tests run as root, in
    /// the cluster's folder, with a clean libpq environment.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        let mut command = match self.run_as {
            Some((uid, gid)) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .arg("--init-groups")
                    .arg("--")
                    .arg(path);
                c
            }
            None => Command::new(path),
        };
        for var in [
            "PGHOST",
            "PGHOSTADDR",
            "PGPORT",
            "PGUSER",
            "PGDATABASE",
            "PGPASSWORD",
            "PGSERVICE",
            "PGSSLMODE",
            "PGSSLROOTCERT",
            "PGOPTIONS",
            "PGDATA",
        ] {
            command.env_remove(var);
        }
        // HOME matters to libpq (~/.postgresql/root.crt turns sslmode=require
        // into verify-ca) and must be readable by the `postgres` user.
        command
            .env("HOME", self.root())
            .env("LC_ALL", "C")
            .current_dir(self.root());
        command
    }

    /// Hands `path` to the `postgres` user when running as root.
    fn give(&self, path: &Path) {
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
        }
    }

    fn write_owned(&self, path: &Path, contents: &str, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, contents).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        self.give(path);
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // Unconditionally: a panic may have come between a start and its
        // bookkeeping. Failure (already stopped) is fine.
        let _ = self
            .pg_ctl_command(&["-m", "immediate", "-t", "30", "stop"])
            .output();
        // `dir` is removed when the fields drop, after this.
    }
}

fn check(what: &str, out: &Output) {
    if !out.status.success() {
        panic!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The folder holding the PostgreSQL binaries (initdb, pg_ctl, postgres, psql).
pub fn bindir() -> &'static Path {
    static BINDIR: OnceLock<PathBuf> = OnceLock::new();
    BINDIR.get_or_init(|| {
        let has_tools = |dir: &Path| {
            ["initdb", "pg_ctl", "postgres", "psql"]
                .iter()
                .all(|b| dir.join(b).is_file())
        };
        if let Some(dir) = std::env::var_os("KUBEVISION_PG_BINDIR") {
            let dir = PathBuf::from(dir);
            assert!(
                has_tools(&dir),
                "KUBEVISION_PG_BINDIR={} lacks initdb, pg_ctl, postgres or psql",
                dir.display()
            );
            return dir;
        }
        let debian = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let major: u32 = entry.file_name().to_str()?.parse().ok()?;
                let bin = entry.path().join("bin");
                has_tools(&bin).then_some((major, bin))
            })
            .max_by_key(|(major, _)| *major);
        if let Some((_, bin)) = debian {
            return bin;
        }
        std::env::var_os("PATH")
            .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .find(|dir| has_tools(dir))
            .unwrap_or_else(|| {
                panic!(
                    "no PostgreSQL server binaries (initdb, pg_ctl, postgres, psql) in \
                     /usr/lib/postgresql/<major>/bin or on PATH: the store tests need a real \
                     server; install Debian's `postgresql` package (scripts/setup-test-tools \
                     does) or set KUBEVISION_PG_BINDIR"
                )
            })
    })
}

/// The effective uid, from /proc/self/status (std has no geteuid).
fn effective_uid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|euid| euid.parse().ok())
        .expect("an effective uid in /proc/self/status")
}

/// (uid, gid) of the `postgres` system user.
fn postgres_user() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.len() > 3 && fields[0] == "postgres")
                .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
                .flatten()
        })
        .unwrap_or_else(|| {
            panic!(
                "running as root, the PostgreSQL tests run the server as the `postgres` user, \
                 and there is none: install Debian's `postgresql` package (scripts/setup-test-tools does)"
            )
        })
}

/// Where to make the cluster's folder: the usual temporary folder, unless (as
/// root) the `postgres` user could not reach it, or its path would make the
/// Unix socket's path too long; then /tmp.
fn temp_parent(as_postgres: bool) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let tmp = std::env::temp_dir();
    let reachable = !as_postgres
        || tmp
            .ancestors()
            .all(|dir| std::fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o001 != 0));
    // sun_path holds 107 bytes: "<tmp>/kv-pg-XXXXXX/sock/.s.PGSQL.65535".
    if reachable && tmp.as_os_str().len() <= 60 {
        tmp
    } else {
        PathBuf::from("/tmp")
    }
}
