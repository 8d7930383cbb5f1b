//! The service's configuration: flags, each also an environment variable
//! (the names the Helm chart sets).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::Parser;
use vision::recogniser::Kind;

use crate::backend::BackendChoice;
use crate::store::StoreLocation;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "kubevision-offload",
    version,
    about = "KubeVision offload service: face identification against the plant-wide gallery over gRPC"
)]
pub struct Config {
    /// Address the gRPC server listens on. Loopback unless told otherwise:
    /// a pod (the chart) sets 0.0.0.0:50051.
    #[arg(long, env = "KUBEVISION_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,

    /// Address of the plain-HTTP endpoint with /metrics, /healthz and
    /// /readyz. Loopback unless told otherwise, as --listen.
    #[arg(
        long,
        env = "KUBEVISION_METRICS_LISTEN",
        default_value = "127.0.0.1:9090"
    )]
    pub metrics_listen: SocketAddr,

    /// Start without any credentials (no --token, --token-file,
    /// --identities or --tls-client-ca): anyone who reaches the port can
    /// read and change the gallery. For a trial only; logged as a warning
    /// at start. Without credentials and without it, the service refuses to
    /// start.
    #[arg(long, env = "KUBEVISION_ALLOW_UNAUTHENTICATED")]
    pub allow_unauthenticated: bool,

    /// Directory holding the gallery database (a persistent volume).
    #[arg(
        long,
        env = "KUBEVISION_DATA_DIR",
        default_value = "/var/lib/kubevision"
    )]
    pub data_dir: PathBuf,

    /// The gallery's store of record: "sqlite" (a file in --data-dir, for one
    /// replica) or a PostgreSQL URL (postgres://user:password@host:5432/db?sslmode=…),
    /// which several replicas share as one gallery.
    #[arg(
        long,
        env = "KUBEVISION_STORE",
        default_value = "sqlite",
        hide_env_values = true
    )]
    pub store: StoreLocation,

    /// PEM CA bundle for the PostgreSQL server's certificate; with it, TLS to
    /// the database is required (and always verified).
    #[arg(long, env = "KUBEVISION_STORE_CA_FILE")]
    pub store_ca_file: Option<PathBuf>,

    /// Connections to PostgreSQL per replica.
    #[arg(long, env = "KUBEVISION_STORE_POOL_SIZE", default_value_t = 8)]
    pub store_pool_size: u32,

    /// How long a gallery change waits for the database before it fails
    /// with UNAVAILABLE, in milliseconds.
    #[arg(long, env = "KUBEVISION_STORE_TIMEOUT_MS", default_value_t = 2000)]
    pub store_timeout_ms: u64,

    /// How often a replica catches up with the store by version even when
    /// no change was announced, in seconds (a lost notification is picked
    /// up within this period).
    #[arg(long, env = "KUBEVISION_CATCH_UP_SECS", default_value_t = 5.0)]
    pub catch_up_secs: f64,

    /// Matching backend. The CUDA backend matches lbph templates only: with
    /// --recogniser dlib, "cuda" is refused and "auto" is the CPU.
    #[arg(long, env = "KUBEVISION_BACKEND", value_enum, default_value = "auto")]
    pub backend: BackendChoice,

    /// The recogniser the gallery matches with: "lbph" (LBPH with OpenCV's
    /// semantics) or "dlib" (dlib's ResNet embeddings; needs its model
    /// files, installed by scripts/setup-models, and refuses to start
    /// without them). Either way, enrollments from camera images store a
    /// template of both kinds where dlib's models are installed, so the
    /// gallery can be switched without re-enrolling anyone.
    #[arg(long, env = "KUBEVISION_RECOGNISER", default_value = "lbph")]
    pub recogniser: Kind,

    /// PEM certificate chain of the server; with --tls-key, the server speaks TLS only.
    #[arg(long, env = "KUBEVISION_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of the server.
    #[arg(long, env = "KUBEVISION_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// PEM CA bundle; when set, clients must present a certificate it signed (mTLS).
    #[arg(long, env = "KUBEVISION_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// Bearer token clients must send as "authorization: Bearer <token>"
    /// (health and reflection stay open for probes and tools).
    #[arg(long, env = "KUBEVISION_TOKEN", hide_env_values = true)]
    pub token: Option<Secret>,

    /// Requests worked on at once (decoding, detection, templates); default: CPU cores.
    #[arg(long, env = "KUBEVISION_MAX_CONCURRENCY")]
    pub max_concurrency: Option<usize>,

    /// Requests allowed to wait for a worker; beyond it, RESOURCE_EXHAUSTED at once.
    #[arg(long, env = "KUBEVISION_MAX_QUEUE", default_value_t = 256)]
    pub max_queue: usize,

    /// Largest request message accepted, in bytes.
    #[arg(long, env = "KUBEVISION_MAX_MESSAGE_BYTES", default_value_t = 16 << 20)]
    pub max_message_bytes: usize,

    /// Largest decoded camera image accepted, in pixels (guards against decompression bombs).
    #[arg(
        long,
        env = "KUBEVISION_MAX_IMAGE_PIXELS",
        default_value_t = 16_000_000
    )]
    pub max_image_pixels: u64,

    /// Templates one operator may have, of every recogniser together (an
    /// enrollment stores a template of each kind the server can make: a
    /// kiosk's 50-frame enrollment is 100).
    #[arg(
        long,
        env = "KUBEVISION_MAX_TEMPLATES_PER_OPERATOR",
        default_value_t = 128
    )]
    pub max_templates_per_operator: usize,

    /// Accept threshold when a request names none, in the recogniser's
    /// measure (lbph: chi-square distance; dlib: Euclidean distance between
    /// embeddings); default: the recogniser's calibrated threshold
    /// (lbph 80, dlib 0.48).
    #[arg(long, env = "KUBEVISION_THRESHOLD")]
    pub threshold: Option<f64>,

    /// Usable frames a burst needs for a decision when a request names no number.
    #[arg(long, env = "KUBEVISION_BURST_MIN_FRAMES", default_value_t = vision::burst::BurstRule::default().min_frames)]
    pub burst_min_frames: usize,

    /// Share of a burst's usable frames that must agree on one operator.
    #[arg(long, env = "KUBEVISION_BURST_MIN_AGREEMENT", default_value_t = vision::burst::BurstRule::default().min_agreement)]
    pub burst_min_agreement: f64,

    /// How long the batcher waits for more probes to join a batch, in microseconds.
    #[arg(long, env = "KUBEVISION_BATCH_WINDOW_US", default_value_t = 500)]
    pub batch_window_us: u64,

    /// Most probes in one batch.
    #[arg(long, env = "KUBEVISION_MAX_BATCH", default_value_t = 64)]
    pub max_batch: usize,

    /// Longest any request may run, whatever deadline the client set, in seconds.
    #[arg(long, env = "KUBEVISION_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,

    /// Longest a gallery sync stream may run, whatever deadline the client
    /// set, in seconds: a stream nobody reads gives its slot back by then.
    /// A kiosk's first sync of a large gallery needs minutes, not the
    /// request timeout's seconds.
    #[arg(long, env = "KUBEVISION_SYNC_TIMEOUT_SECS", default_value_t = 300)]
    pub sync_timeout_secs: u64,

    /// After SIGTERM, how long in-flight requests get to finish, in seconds.
    #[arg(long, env = "KUBEVISION_SHUTDOWN_GRACE_SECS", default_value_t = 20)]
    pub shutdown_grace_secs: u64,

    /// SyncGallery streams served at once, in a pool of their own (so that
    /// unread streams cannot take the slots Identify needs); default: a
    /// quarter of --max-concurrency + --max-queue, 1 to 64.
    #[arg(long, env = "KUBEVISION_MAX_STREAMS")]
    pub max_streams: Option<usize>,

    /// Most decoded pixels one request's frames may add up to, checked from
    /// the image headers before anything is decoded.
    #[arg(
        long,
        env = "KUBEVISION_MAX_REQUEST_PIXELS",
        default_value_t = crate::frames::DEFAULT_MAX_REQUEST_PIXELS
    )]
    pub max_request_pixels: u64,

    /// Request bytes all authenticated calls together may have in flight
    /// while they are read and decoded; beyond it, RESOURCE_EXHAUSTED.
    #[arg(long, env = "KUBEVISION_MAX_DECODING_BYTES", default_value_t = 128 << 20)]
    pub max_decoding_bytes: usize,

    /// Most other operators one enrolled template may lie within the accept
    /// threshold (--threshold) of; a template nearer to more is refused as
    /// a "wolf" (it would be the nearest match of their sign-ins). An honest
    /// ORL face is within the threshold of at most 1 other person.
    #[arg(
        long,
        env = "KUBEVISION_MAX_WOLF_MATCHES",
        default_value_t = DEFAULT_MAX_WOLF_MATCHES
    )]
    pub max_wolf_matches: usize,

    /// JSON file of caller identities: each a name, its scopes (identify,
    /// enrol, sync, admin) and its client certificate name (CN or SAN DNS,
    /// signed by --tls-client-ca) and/or the SHA-256 hex of its token; or a
    /// directory of such files (e.g. a mounted Secret, one key per file).
    /// With it, only the identities it names get in, even while it names
    /// none. See the README, "Identities and scopes".
    #[arg(long, env = "KUBEVISION_IDENTITIES")]
    pub identities: Option<PathBuf>,

    /// How often (seconds) --identities is read again: a changed file
    /// (e.g. a Secret Kubernetes updated) takes effect without a restart;
    /// one that does not parse is logged and the identities read before
    /// stay. 0: read once, at start.
    #[arg(long, env = "KUBEVISION_IDENTITIES_RELOAD_SECS", default_value_t = 5.0)]
    pub identities_reload_secs: f64,

    /// File holding the legacy shared bearer token (one line, 32+
    /// characters): the --token without putting it in the process list.
    #[arg(long, env = "KUBEVISION_TOKEN_FILE", conflicts_with = "token")]
    pub token_file: Option<PathBuf>,

    /// SQLite store: when the data directory's `gallery.id` names a gallery
    /// that the database lost (missing, emptied, another gallery's, older
    /// than recorded), start a new, empty gallery instead of refusing to
    /// start; the old files are renamed `*.lost-<unix time>`, never deleted.
    /// Does nothing to an intact gallery.
    #[arg(long, env = "KUBEVISION_NEW_GALLERY")]
    pub new_gallery: bool,

    /// Plant-wide lockout (SignInService): failed sign-ins of one operator,
    /// counted across every kiosk, that cost nothing.
    #[arg(long, env = "KUBEVISION_LOCKOUT_FREE_ATTEMPTS", default_value_t = 3)]
    pub lockout_free_attempts: u32,

    /// The delay after the first failure beyond the free ones, in seconds;
    /// it doubles with each further failure.
    #[arg(long, env = "KUBEVISION_LOCKOUT_BASE_SECS", default_value_t = 30)]
    pub lockout_base_secs: u32,

    /// The longest plant-wide delay, in seconds.
    #[arg(long, env = "KUBEVISION_LOCKOUT_MAX_SECS", default_value_t = 900)]
    pub lockout_max_secs: u32,

    /// The plant PIN pepper's public key id (16 hex digits, as `kubevision
    /// cluster register-kiosk` prints it): every PIN or password hash in a
    /// profile must be keyed with it. Without it, hashes must still carry a
    /// key id (none is refused), but whose is not checked.
    #[arg(long, env = "KUBEVISION_PLANT_PEPPER_ID", value_parser = parse_pepper_id)]
    pub plant_pepper_id: Option<[u8; kubevision_proto::credential::KEYID_BYTES]>,
}

fn parse_pepper_id(text: &str) -> Result<[u8; kubevision_proto::credential::KEYID_BYTES], String> {
    kubevision_proto::credential::parse_keyid(text)
        .ok_or_else(|| format!("{text:?} is not a key id: 16 hex digits are expected"))
}

/// Why a service without credentials does not start.
pub const NO_CREDENTIALS: &str = "no credentials: set --identities, --token-file (or --token) or --tls-client-ca, or --allow-unauthenticated (KUBEVISION_ALLOW_UNAUTHENTICATED=true) for a trial in which anyone who reaches the port can read and change the gallery";

/// See [`Config::max_wolf_matches`].
pub const DEFAULT_MAX_WOLF_MATCHES: usize = 3;

impl Config {
    /// The plant-wide lockout rule (the kiosks' rule, with these settings).
    pub fn lockout_policy(&self) -> kubevision_proto::lockout::LockoutPolicy {
        kubevision_proto::lockout::LockoutPolicy {
            free_attempts: self.lockout_free_attempts,
            base_delay_ms: i64::from(self.lockout_base_secs) * 1000,
            max_delay_ms: i64::from(self.lockout_max_secs.max(self.lockout_base_secs)) * 1000,
        }
    }

    pub fn max_concurrency(&self) -> usize {
        self.max_concurrency
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
            .max(1)
    }

    /// The accept threshold: --threshold, or the recogniser's calibrated one.
    pub fn threshold(&self) -> f64 {
        self.threshold
            .unwrap_or_else(|| self.recogniser.default_threshold())
    }

    pub fn catch_up_period(&self) -> Duration {
        Duration::from_secs_f64(self.catch_up_secs)
    }

    pub fn batch_window(&self) -> Duration {
        Duration::from_micros(self.batch_window_us)
    }

    pub fn identities_reload_period(&self) -> Duration {
        Duration::from_secs_f64(self.identities_reload_secs)
    }

    /// Whether callers must prove who they are: a token, identities or
    /// client certificates.
    pub fn has_credentials(&self) -> bool {
        self.token.is_some()
            || self.token_file.is_some()
            || self.identities.is_some()
            || self.tls_client_ca.is_some()
    }

    /// Settings clap cannot check on its own.
    pub fn validate(&self) -> Result<(), String> {
        if !self.has_credentials() && !self.allow_unauthenticated {
            return Err(NO_CREDENTIALS.into());
        }
        if !(self.identities_reload_secs.is_finite()
            && (0.0..=86_400.0).contains(&self.identities_reload_secs))
        {
            return Err(format!(
                "--identities-reload-secs must be between 0 and 86400, not {}",
                self.identities_reload_secs
            ));
        }
        if !(self.threshold().is_finite() && self.threshold() > 0.0) {
            return Err(format!(
                "--threshold must be a positive number, not {}",
                self.threshold()
            ));
        }
        if self.recogniser == Kind::Dlib && self.backend == BackendChoice::Cuda {
            return Err(
                "the CUDA backend matches lbph templates only; run dlib on --backend cpu".into(),
            );
        }
        if !vision::burst::BurstRule::agreement_in_range(self.burst_min_agreement) {
            return Err(format!(
                "--burst-min-agreement must be in (0, 1], not {}",
                self.burst_min_agreement
            ));
        }
        if !(self.catch_up_secs.is_finite() && self.catch_up_secs >= 0.01) {
            return Err(format!(
                "--catch-up-secs must be at least 0.01, not {}",
                self.catch_up_secs
            ));
        }
        if self.store_ca_file.is_some() && self.store == StoreLocation::Sqlite {
            return Err("--store-ca-file is for a PostgreSQL store; --store is sqlite".into());
        }
        for (name, value) in [
            ("--max-message-bytes", self.max_message_bytes),
            ("--max-batch", self.max_batch),
            ("--store-pool-size", self.store_pool_size as usize),
            ("--burst-min-frames", self.burst_min_frames),
            (
                "--max-templates-per-operator",
                self.max_templates_per_operator,
            ),
        ] {
            if value == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        Ok(())
    }
}

/// A secret that never appears in logs: its Debug form is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl FromStr for Secret {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("the token must not be empty".into());
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_never_reaches_the_log_line() {
        let config = Config::try_parse_from([
            "kubevision-offload",
            "--token",
            "s3cret-value",
            "--data-dir",
            "/x",
        ])
        .unwrap();
        let logged = format!("{config:?}");
        assert!(!logged.contains("s3cret-value"), "{logged}");
        assert!(logged.contains("<redacted>"));
    }

    #[test]
    fn defaults_are_loopback_and_refuse_to_start_without_credentials() {
        let config = Config::try_parse_from(["kubevision-offload"]).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:50051");
        assert_eq!(config.metrics_listen.to_string(), "127.0.0.1:9090");
        assert_eq!(config.validate().unwrap_err(), NO_CREDENTIALS);
        for credential in [
            "--token=0123456789abcdef0123456789abcdef",
            "--token-file=/run/token",
            "--identities=/run/identities",
        ] {
            Config::try_parse_from(["kubevision-offload", credential])
                .unwrap()
                .validate()
                .unwrap_or_else(|e| panic!("{credential}: {e}"));
        }
        let config =
            Config::try_parse_from(["kubevision-offload", "--allow-unauthenticated"]).unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/kubevision"));
        assert_eq!(config.backend, BackendChoice::Auto);
        assert_eq!(config.store, StoreLocation::Sqlite);
        assert_eq!(config.recogniser, Kind::Lbph);
        assert_eq!(config.threshold(), vision::lbph::DEFAULT_THRESHOLD);
        config
            .validate()
            .expect("the defaults (vision's calibrated threshold included) are valid");
    }

    #[test]
    fn the_recogniser_sets_the_default_threshold_and_refuses_cuda_for_dlib() {
        let dlib = |args: &[&str]| {
            Config::try_parse_from(
                [
                    "kubevision-offload",
                    "--recogniser",
                    "dlib",
                    "--allow-unauthenticated",
                ]
                .iter()
                .chain(args),
            )
            .unwrap()
        };
        assert_eq!(dlib(&[]).threshold(), vision::embedding::DEFAULT_THRESHOLD);
        assert_eq!(dlib(&["--threshold", "0.6"]).threshold(), 0.6);
        dlib(&["--backend", "cpu"]).validate().unwrap();
        dlib(&["--backend", "auto"]).validate().unwrap();
        let err = dlib(&["--backend", "cuda"]).validate().unwrap_err();
        assert_eq!(
            err,
            "the CUDA backend matches lbph templates only; run dlib on --backend cpu"
        );
        let err = Config::try_parse_from(["kubevision-offload", "--recogniser", "resnet"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("lbph or dlib"), "{err}");
    }
}
