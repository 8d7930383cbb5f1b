//! `kubevision doctor`: a headless self-test of an installed kiosk, run by
//! the installers and by plant IT. One line per check:
//!
//! - `config`: the configuration file parses (absent: defaults, skipped);
//! - `cascade`: the face detector's cascade is found and OpenCV loads it;
//! - `models`: the dlib recogniser's model files are found and are the
//!   pinned ones (absent: a warning, since lbph needs none);
//! - `camera`: a video capture device this user can open (Linux only);
//! - `store`: the kiosk's SQLite store passes SQLite's integrity check and is
//!   at the schema this version's kiosk migrates to;
//! - `offload`: the offload service answers a gallery status call;
//! - `cluster`: the Kubernetes API server lists its nodes.
//!
//! Unconfigured checks are skipped, a missing camera is only a warning unless
//! `--require-camera`; any failure makes the exit status 1.

use std::collections::BTreeSet;
use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{ensure, Context};
use clap::Args;
use kubevision_cluster::{nodes::list_nodes, Connection as ClusterConnection};
use kubevision_kiosk_store::{Store, DB_FILE};
use kubevision_offload_client::{ClientConfig, OffloadClient};
use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};

/// Longest wait for the cluster's API server (kube-rs's own timeouts are minutes).
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Args)]
pub struct DoctorArgs {
    /// Configuration file; a missing file means defaults.
    #[arg(long, default_value_os_t = kubevision_kiosk_store::install::config_file())]
    config: PathBuf,
    /// The kiosk's data directory [default: the config's data_dir, else the installers' (/var/lib/kubevision; on Windows, %ProgramData%\KubeVision\data)].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Offload service to call, e.g. http://offload.plant:50051 [default: the config's offload.endpoint].
    #[arg(long, value_name = "URL")]
    offload: Option<String>,
    /// Kubeconfig of the cluster [default: the config's cluster.kubeconfig].
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// Fail, not warn, when no camera is usable.
    #[arg(long)]
    require_camera: bool,
    /// One JSON object per check instead of text lines.
    #[arg(long)]
    json: bool,
}

/// `/etc/kubevision/kubevision.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    data_dir: Option<PathBuf>,
    require_camera: bool,
    offload: OffloadConfig,
    cluster: ClusterConfig,
    opcua: OpcUaConfig,
}

/// The kiosk reads this section too (`kubevision-hmi --config`).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct OpcUaConfig {
    /// The OPC UA server's address, over the kiosk's settings.
    listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct OffloadConfig {
    endpoint: Option<String>,
    /// PEM certificate of the CA that signed the service's (required for https).
    ca: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ClusterConfig {
    kubeconfig: Option<PathBuf>,
    context: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Pass,
    Warn,
    Skip,
    Fail,
}

#[derive(Debug, Serialize)]
struct Check {
    check: &'static str,
    status: Status,
    detail: String,
}

impl Check {
    fn new(check: &'static str, status: Status, detail: impl Into<String>) -> Self {
        Check {
            check,
            status,
            detail: detail.into(),
        }
    }

    /// PASS with `Ok`'s detail, FAIL with the error and its causes on one line
    /// (OpenCV's messages span several).
    fn from_result(check: &'static str, result: anyhow::Result<String>) -> Self {
        match result {
            Ok(detail) => Check::new(check, Status::Pass, detail),
            Err(e) => Check::new(
                check,
                Status::Fail,
                format!("{e:#}")
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
        }
    }

    fn line(&self) -> String {
        let label = match self.status {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Skip => "SKIP",
            Status::Fail => "FAIL",
        };
        format!("{label} {:<8} {}", self.check, self.detail)
    }
}

pub fn run(args: &DoctorArgs) -> anyhow::Result<ExitCode> {
    let (config_check, config) = load_config(&args.config);
    let data_dir = args
        .data_dir
        .clone()
        .or(config.data_dir)
        .unwrap_or_else(kubevision_kiosk_store::install::data_dir);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // The kiosk's own settings first: the doctor checks what the kiosk uses.
    let offload = match (
        &args.offload,
        kiosk_offload(&data_dir),
        config.offload.endpoint,
    ) {
        (Some(endpoint), _, _) => Some(plain_target(endpoint, config.offload.ca.as_deref())),
        (None, Some(kiosk), _) => Some(kiosk),
        (None, None, Some(endpoint)) => Some(plain_target(&endpoint, config.offload.ca.as_deref())),
        (None, None, None) => None,
    };
    let kubeconfig = args.kubeconfig.clone().or(config.cluster.kubeconfig);
    let checks = [
        config_check,
        Check::from_result("cascade", cascade()),
        dlib_models(),
        cameras(args.require_camera || config.require_camera),
        store(&data_dir),
        match offload {
            Some(target) => Check::from_result(
                "offload",
                target.and_then(|(config, from)| runtime.block_on(offload_status(config, from))),
            ),
            None => Check::new(
                "offload",
                Status::Skip,
                "not configured (the kiosk's settings, --offload or offload.endpoint)",
            ),
        },
        opcua(&data_dir, config.opcua.listen.as_deref()),
        match kubeconfig {
            Some(path) => Check::from_result(
                "cluster",
                runtime.block_on(cluster_nodes(&path, config.cluster.context.as_deref())),
            ),
            None => Check::new(
                "cluster",
                Status::Skip,
                "not configured (--kubeconfig or cluster.kubeconfig)",
            ),
        },
    ];
    for check in &checks {
        if args.json {
            println!("{}", serde_json::to_string(check)?);
        } else {
            println!("{}", check.line());
        }
    }
    let failed = checks.iter().any(|c| c.status == Status::Fail);
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn load_config(path: &Path) -> (Check, Config) {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return (
                Check::new(
                    "config",
                    Status::Skip,
                    format!("{} not found: defaults", path.display()),
                ),
                Config::default(),
            )
        }
        Err(e) => {
            return (
                Check::new("config", Status::Fail, format!("{}: {e}", path.display())),
                Config::default(),
            )
        }
    };
    match toml::from_str(&text) {
        Ok(config) => (
            Check::new("config", Status::Pass, path.display().to_string()),
            config,
        ),
        Err(e) => (
            Check::new(
                "config",
                Status::Fail,
                format!("{}: {}", path.display(), e.message()),
            ),
            Config::default(),
        ),
    }
}

fn cascade() -> anyhow::Result<String> {
    let path = vision::detect::find_cascade()?;
    vision::detect::FaceDetector::new(&path, Default::default())
        .with_context(|| format!("{} does not load as a cascade", path.display()))?;
    Ok(path.display().to_string())
}

/// Both model files found along the search path, each with its pinned
/// SHA-256. Missing files are a warning: the lbph recogniser needs none,
/// but the dlib recogniser and the head-turn challenge are then off.
fn dlib_models() -> Check {
    use vision::embedding::models::{locate, ModelFile, INSTALL_HINT};
    let mut dirs = BTreeSet::new();
    for file in ModelFile::ALL {
        match locate(file) {
            Ok(path) => {
                dirs.insert(path.parent().unwrap_or(&path).display().to_string());
            }
            Err(vision::Error::ModelNotFound { file, .. }) => {
                return Check::new(
                    "models",
                    Status::Warn,
                    format!("{file} not found: the dlib recogniser and the head-turn challenge are unavailable; {INSTALL_HINT}"),
                )
            }
            Err(e) => return Check::from_result("models", Err(e.into())),
        }
    }
    Check::new(
        "models",
        Status::Pass,
        dirs.into_iter().collect::<Vec<_>>().join(", "),
    )
}

/// A `/dev/video*` node as sysfs names it.
#[cfg(target_os = "linux")]
struct VideoNode {
    device: PathBuf,
    name: String,
    /// Whether it captures video (UVC cameras add a metadata node that does not).
    capture: std::io::Result<bool>,
}

#[cfg(not(target_os = "linux"))]
fn cameras(_required: bool) -> Check {
    Check::new(
        "camera",
        Status::Skip,
        "not checked on this operating system",
    )
}

#[cfg(target_os = "linux")]
fn cameras(required: bool) -> Check {
    let missing = if required { Status::Fail } else { Status::Warn };
    let nodes = match video_nodes(Path::new("/sys/class/video4linux")) {
        Ok(nodes) => nodes,
        // No video4linux driver is loaded: no camera was ever plugged in.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Check::new(
                "camera",
                missing,
                format!("cannot list video devices: /sys/class/video4linux: {e}"),
            )
        }
    };
    let describe = |n: &VideoNode| format!("{} ({})", n.device.display(), n.name);
    let usable: Vec<String> = nodes
        .iter()
        .filter(|n| matches!(n.capture, Ok(true)))
        .map(describe)
        .collect();
    if !usable.is_empty() {
        return Check::new("camera", Status::Pass, usable.join(", "));
    }
    let unopenable: Vec<String> = nodes
        .iter()
        .filter_map(|n| {
            n.capture
                .as_ref()
                .err()
                .map(|e| format!("cannot open {}: {e}", describe(n)))
        })
        .collect();
    if unopenable.is_empty() {
        Check::new("camera", missing, "no video capture device")
    } else {
        Check::new("camera", missing, unopenable.join("; "))
    }
}

#[cfg(target_os = "linux")]
fn video_nodes(sysfs: &Path) -> std::io::Result<Vec<VideoNode>> {
    let mut nodes = Vec::new();
    for entry in std::fs::read_dir(sysfs)? {
        let entry = entry?;
        let node = entry.file_name().to_string_lossy().into_owned();
        if !node.starts_with("video") {
            continue;
        }
        let name = std::fs::read_to_string(entry.path().join("name"))
            .map_or_else(|_| "unnamed".into(), |n| n.trim().to_owned());
        let device = Path::new("/dev").join(&node);
        let capture = v4l2::is_capture_device(&device);
        nodes.push(VideoNode {
            device,
            name,
            capture,
        });
    }
    nodes.sort_by(|a, b| a.device.cmp(&b.device));
    Ok(nodes)
}

#[cfg(target_os = "linux")]
mod v4l2 {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::Path;

    /// `struct v4l2_capability` from linux/videodev2.h.
    #[repr(C)]
    struct Capability {
        driver: [u8; 16],
        card: [u8; 32],
        bus_info: [u8; 32],
        version: u32,
        capabilities: u32,
        device_caps: u32,
        reserved: [u32; 3],
    }

    /// `_IOR('V', 0, struct v4l2_capability)`.
    const VIDIOC_QUERYCAP: libc::c_ulong = (2 << 30)
        | ((size_of::<Capability>() as libc::c_ulong) << 16)
        | ((b'V' as libc::c_ulong) << 8);
    const CAP_VIDEO_CAPTURE: u32 = 0x1;
    const CAP_VIDEO_CAPTURE_MPLANE: u32 = 0x1000;
    const CAP_DEVICE_CAPS: u32 = 0x8000_0000;

    /// Opens the device as the kiosk does (read-write) and asks the driver
    /// whether this node captures video. Does not start streaming, so it is
    /// harmless while the kiosk uses the camera.
    pub fn is_capture_device(device: &Path) -> std::io::Result<bool> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(device)?;
        let mut cap = std::mem::MaybeUninit::<Capability>::zeroed();
        // SAFETY: QUERYCAP fills exactly one v4l2_capability, which `cap` holds.
        if unsafe { libc::ioctl(file.as_raw_fd(), VIDIOC_QUERYCAP, cap.as_mut_ptr()) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: zero-initialised plain integers, filled by the driver.
        let cap = unsafe { cap.assume_init() };
        let caps = if cap.capabilities & CAP_DEVICE_CAPS != 0 {
            cap.device_caps
        } else {
            cap.capabilities
        };
        Ok(caps & (CAP_VIDEO_CAPTURE | CAP_VIDEO_CAPTURE_MPLANE) != 0)
    }
}

fn store(data_dir: &Path) -> Check {
    let file = data_dir.join(DB_FILE);
    if !data_dir.is_dir() {
        return Check::new(
            "store",
            Status::Fail,
            format!("the data directory {} does not exist", data_dir.display()),
        );
    }
    if !file.exists() {
        return Check::new(
            "store",
            Status::Warn,
            format!(
                "{} not created yet: the kiosk creates it at its first start",
                file.display()
            ),
        );
    }
    Check::from_result(
        "store",
        inspect_store(&file).with_context(|| file.display().to_string()),
    )
}

/// Read-only: the doctor never migrates or repairs a store.
fn inspect_store(file: &Path) -> anyhow::Result<String> {
    let expected = Schema::current().context("creating a reference store")?;
    let conn = Connection::open_with_flags(
        file,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let integrity: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .context("integrity check")?;
    ensure!(integrity == "ok", "integrity check failed: {integrity}");
    let found = Schema::read(&conn)?;
    ensure!(
        found.version <= expected.version,
        "schema version {} is newer than this KubeVision's {} (a downgrade?)",
        found.version,
        expected.version
    );
    ensure!(
        found.version == expected.version,
        "schema version {}, this KubeVision migrates to {}: start the kiosk once to migrate it",
        found.version,
        expected.version
    );
    let missing: Vec<&str> = expected
        .objects
        .difference(&found.objects)
        .map(String::as_str)
        .collect();
    ensure!(
        missing.is_empty(),
        "schema version {} but missing: {}",
        found.version,
        missing.join(", ")
    );
    Ok(format!(
        "{} (schema version {})",
        file.display(),
        found.version
    ))
}

/// What a migrated store holds: rusqlite_migration's version and the schema's objects.
struct Schema {
    version: i64,
    /// "table operators", "trigger audit_log_no_update", …
    objects: BTreeSet<String>,
}

impl Schema {
    fn read(conn: &Connection) -> rusqlite::Result<Schema> {
        let version = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let mut query = conn.prepare(
            "SELECT type || ' ' || name FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%'",
        )?;
        let objects = query
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(Schema { version, objects })
    }

    /// The schema of a new store, which the kiosk's migrations bring to the latest version.
    fn current() -> anyhow::Result<Schema> {
        let dir = tempfile::tempdir()?;
        drop(Store::open_in_dir(dir.path())?);
        Ok(Schema::read(&Connection::open(dir.path().join(DB_FILE))?)?)
    }
}

/// The offload service to check, and where that came from (for the
/// check's line); an error where the configuration cannot be used.
type OffloadTarget = anyhow::Result<(ClientConfig, &'static str)>;

/// The kiosk's OPC UA server, as its settings describe it: SKIP while it
/// is off, FAIL where the settings could not start it, WARN where nothing
/// listens (the kiosk is not running, or its server failed: its status bar
/// says why), PASS where the port answers.
fn opcua(data_dir: &Path, fixed_listen: Option<&str>) -> Check {
    use kubevision_kiosk_store::settings::Settings;
    let db = data_dir.join(DB_FILE);
    let Some(mut line) = Settings::read_only(&db)
        .ok()
        .filter(|_| db.exists())
        .map(|s| s.line)
        .filter(|l| l.enabled)
    else {
        return Check::new("opcua", Status::Skip, "off in the kiosk's settings");
    };
    if let Some(listen) = fixed_listen {
        line.listen = listen.to_owned();
    }
    let (host, port) = match line.check() {
        Ok(hp) => hp,
        Err(e) => return Check::new("opcua", Status::Fail, e.to_string()),
    };
    let account = if line.sign_out_user.is_empty() {
        "no SignOut() account".to_owned()
    } else {
        format!("SignOut() account {}", line.sign_out_user)
    };
    let probe = match host.as_str() {
        "0.0.0.0" => "127.0.0.1".to_owned(),
        "::" => "::1".to_owned(),
        h => h.to_owned(),
    };
    let reachable = (probe.as_str(), port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok());
    if reachable {
        Check::new(
            "opcua",
            Status::Pass,
            format!("listening on {}, {account}", line.listen),
        )
    } else {
        Check::new(
            "opcua",
            Status::Warn,
            format!(
                "nothing listens on {} (is the kiosk running?), {account}",
                line.listen
            ),
        )
    }
}

/// An endpoint from the command line or the configuration file.
fn plain_target(endpoint: &str, ca: Option<&Path>) -> OffloadTarget {
    use kubevision_kiosk_store::settings::{BackendChoice, Settings};
    // Read as the kiosk reads its own settings: one reading of TLS files.
    let settings = Settings {
        backend: BackendChoice::Offload,
        offload_endpoint: endpoint.to_owned(),
        tls_ca: ca.map(|p| p.display().to_string()).unwrap_or_default(),
        ..Settings::default()
    };
    let config = settings
        .offload_client()
        .context("the CA certificate (offload.ca)")?
        .context("an offload endpoint")?;
    Ok((config, ""))
}

/// The offload service in the kiosk's own settings (its store, opened
/// read-only), read as the kiosk reads it, TLS files included; `None`
/// where the kiosk recognises locally, names no endpoint or has no store.
fn kiosk_offload(data_dir: &Path) -> Option<OffloadTarget> {
    use kubevision_kiosk_store::settings::Settings;
    let db = data_dir.join(DB_FILE);
    let settings = Settings::read_only(&db).ok().filter(|_| db.exists())?;
    if settings.offload_endpoint.trim().is_empty() {
        return None;
    }
    let config = settings
        .offload_client()
        .context("the kiosk's offload settings")
        .transpose()?;
    Some(config.map(|c| (c, " (the kiosk's settings)")))
}

async fn offload_status(config: ClientConfig, from: &str) -> anyhow::Result<String> {
    let endpoint = config.endpoint.clone();
    // The client trusts no built-in roots, only the plant's CA.
    ensure!(
        config.tls.is_some() || !endpoint.starts_with("https:"),
        "{endpoint}: https needs offload.ca, the CA that signed the service's certificate"
    );
    let status = OffloadClient::new(config)?
        .gallery_status()
        .await
        .with_context(|| format!("{endpoint}{from}"))?;
    Ok(format!(
        "{endpoint}{from}: gallery version {}, {} operators, {} backend",
        status.version, status.operator_count, status.backend
    ))
}

async fn cluster_nodes(kubeconfig: &Path, context: Option<&str>) -> anyhow::Result<String> {
    let nodes = tokio::time::timeout(CLUSTER_TIMEOUT, async {
        let conn = ClusterConnection::from_kubeconfig(kubeconfig, context).await?;
        list_nodes(&conn).await
    })
    .await
    .with_context(|| format!("no answer within {CLUSTER_TIMEOUT:?}"))??;
    let ready = nodes.iter().filter(|n| n.ready).count();
    Ok(format!(
        "{}: {} nodes, {ready} ready",
        kubeconfig.display(),
        nodes.len()
    ))
}
