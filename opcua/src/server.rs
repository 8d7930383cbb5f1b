//! The server's lifetime: [`LineServer::start`] runs it on a thread and tokio
//! runtime of its own and hands back a [`Handle`]; dropping the handle tells
//! the line that nobody is signed in any more, then stops the server.
//!
//! Why a thread of its own: the kiosk's UI thread must never wait on a
//! client, a socket or a lock held by a slow browse. So [`Handle::publish`]
//! only queues the new state (the server thread writes it into the address
//! space, raises the SignedIn/SignedOut events and notifies subscribers), and
//! `SignOut()` calls come back on a plain channel that the UI polls once a
//! frame ([`Handle::sign_out_requests`]), and so do refused `SignOut()`
//! passwords, for the kiosk's audit trail ([`Handle::password_refusals`]).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ::opcua::crypto::SecurityPolicy;
use ::opcua::nodes::Event;
use ::opcua::server::address_space::AddressSpace;
use ::opcua::server::diagnostics::NamespaceMetadata;
use ::opcua::server::node_manager::memory::InMemoryNodeManagerBuilder;
use ::opcua::server::node_manager::ServerContext;
use ::opcua::server::{
    ServerBuilder, ServerEndpoint, ServerHandle, SubscriptionCache, ANONYMOUS_USER_TOKEN_ID,
};
use ::opcua::types::{BuildInfo, DataValue, DateTime, MessageSecurityMode, NodeId};
use tokio::sync::mpsc as tokio_mpsc;

use crate::auth::{Credentials, Guesses, KioskAuth, PasswordRefused, Refusals};
use crate::events;
use crate::gate;
use crate::node_manager::{KioskNodeManager, KioskNodes, SessionTracker};
use crate::nodes::{self, NAMESPACE_URI};
use crate::pki;
use crate::state::{Line, SessionState};

/// The default OPC UA port (IANA-registered for opc.tcp).
pub const DEFAULT_PORT: u16 = 4840;

/// How often the stack looks for subscriptions whose publishing interval has
/// elapsed. async-opcua's default is 100 ms, which alone puts a sign-in up
/// to 100 ms late on the line; 10 ms costs a few wake-ups a second per
/// subscription and nothing when none exist.
const SUBSCRIPTION_TICK_MS: u64 = 10;
/// The shortest publishing interval a client is granted (a client that asks
/// for less gets this). The default is 100 ms; see README, "Latency".
pub const MIN_PUBLISHING_INTERVAL_MS: f64 = 20.0;
/// The shortest sampling interval granted: zero, "every change as it
/// happens". Our values are pushed, not sampled, and a positive interval does
/// not just delay a change that comes sooner than the interval after the
/// previous one: async-opcua 0.19 loses it (see
/// `KioskNodes::create_value_monitored_items`, which also revises positive
/// requests down, and README, "Known limitations").
const MIN_SAMPLING_INTERVAL_MS: f64 = 0.0;

/// The longest a closing [`Handle`] waits for subscribers to receive the
/// signed-out state.
pub const CLOSE_FLUSH_LIMIT: Duration = Duration::from_secs(1);
/// How long after the last notification has left the subscriptions the
/// close still waits, for the response to reach the socket.
const SEND_GRACE: Duration = Duration::from_millis(50);
/// How long an event waits, at most, for every subscriber's event item to
/// pass on the previous one, beyond twice the longest publishing interval.
const EVENT_HOLD_SLACK: Duration = Duration::from_millis(100);
/// The longest an event waits for a subscriber that collects nothing.
const EVENT_HOLD_CAP: Duration = Duration::from_secs(2);
/// How often held events are looked at.
const EVENT_POLL: Duration = Duration::from_millis(5);

/// How the server listens and whom it lets in.
#[derive(Clone)]
pub struct Config {
    /// The address to listen on. Default `0.0.0.0` (every interface: the line
    /// is on the network).
    pub host: String,
    /// Default [`DEFAULT_PORT`]; 0 picks a free port (see [`Handle::local_addr`]).
    pub port: u16,
    /// The host name in the endpoint URLs the server hands out (GetEndpoints,
    /// discovery). `None`: `host`, unless `host` is a wildcard (`0.0.0.0`,
    /// `::` or empty), which no client can connect to; then the machine's
    /// host name. Set it where the line knows the kiosk by another name or an
    /// IP address.
    pub advertised_host: Option<String>,
    /// The PKI folder: `own/cert.der` and `private/private.pem` are made here
    /// (self-signed) at first start; client certificates land in `rejected/`
    /// and are trusted by moving them to `trusted/` ([`crate::pki`]).
    pub pki_dir: PathBuf,
    pub line: Line,
    /// Offer the unsecured `None` endpoint (anonymous, read-only: user names
    /// and passwords are only accepted on SignAndEncrypt endpoints). Off by
    /// default; tests turn it on.
    pub allow_security_none: bool,
    /// Let clients connect without credentials (read-only). Default on.
    pub anonymous_read: bool,
    /// Who may call `SignOut()`: user names and passwords, checked by the
    /// kiosk. `None` (the default): no UserName token is offered, and nobody
    /// can call `SignOut()`.
    pub credentials: Option<Arc<dyn Credentials>>,
    /// Trust every client certificate. Only for tests: it defeats the point of
    /// a trust folder.
    pub trust_all_client_certs: bool,
    /// The most certificates kept in `rejected/` (the newest; checked every
    /// [`PRUNE_INTERVAL`]). Default [`DEFAULT_MAX_REJECTED`].
    pub max_rejected_certificates: usize,
}

/// How many refused client certificates `rejected/` keeps by default.
pub const DEFAULT_MAX_REJECTED: usize = 64;
/// How often `rejected/` is cut back to [`Config::max_rejected_certificates`].
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(1);

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("advertised_host", &self.advertised_host)
            .field("pki_dir", &self.pki_dir)
            .field("line", &self.line)
            .field("allow_security_none", &self.allow_security_none)
            .field("anonymous_read", &self.anonymous_read)
            .field("credentials", &self.credentials.as_ref().map(|_| ".."))
            .field("trust_all_client_certs", &self.trust_all_client_certs)
            .field("max_rejected_certificates", &self.max_rejected_certificates)
            .finish()
    }
}

impl Config {
    /// Defaults for a line and a PKI folder.
    pub fn new(line: Line, pki_dir: impl Into<PathBuf>) -> Self {
        Self {
            host: "0.0.0.0".into(),
            port: DEFAULT_PORT,
            advertised_host: None,
            pki_dir: pki_dir.into(),
            line,
            allow_security_none: false,
            anonymous_read: true,
            credentials: None,
            trust_all_client_certs: false,
            max_rejected_certificates: DEFAULT_MAX_REJECTED,
        }
    }

    /// The host in the endpoint URLs (see [`Config::advertised_host`]); an
    /// IPv6 literal in brackets, as URLs write it.
    pub fn endpoint_host(&self) -> String {
        let host = match self.advertised_host.as_deref().map(str::trim) {
            Some(h) if !h.is_empty() => h.to_owned(),
            _ if is_wildcard(&self.host) => host_name(),
            _ => self.host.trim().to_owned(),
        };
        if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host
        }
    }
}

/// An address that means "every interface" when listening and nothing when
/// connecting.
fn is_wildcard(host: &str) -> bool {
    matches!(host.trim(), "" | "0.0.0.0" | "::" | "[::]")
}

/// The machine's host name; `localhost` only if it has none.
fn host_name() -> String {
    let name = gethostname::gethostname()
        .to_string_lossy()
        .trim()
        .to_owned();
    if name.is_empty() {
        tracing::warn!("OPC UA: the machine has no host name; advertising localhost");
        "localhost".into()
    } else {
        name
    }
}

/// Why the server did not start, or no longer runs, or why a certificate
/// could not be listed or trusted ([`crate::pki`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("could not listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("could not start the OPC UA server thread: {0}")]
    Thread(std::io::Error),
    #[error("the OPC UA server is misconfigured: {0}")]
    Config(String),
    #[error("the OPC UA server has stopped")]
    Stopped,
    #[error(
        "{0:?} is not a certificate file name: it may not be empty, `.` or `..`, or contain a path separator"
    )]
    CertificateName(String),
    #[error("there is no rejected certificate {name:?} in {dir}")]
    NoSuchCertificate { name: String, dir: PathBuf },
    #[error("could not {action} {path}: {source}")]
    Pki {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A client called `SignOut()`, signed in to the server as `user` (a user
/// name [`Credentials`] accepted). The kiosk writes it into the audit row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignOutRequest {
    pub user: String,
}

/// Starts the server.
pub struct LineServer;

impl LineServer {
    /// Starts the server on its own thread and returns once it listens, or
    /// with the reason it could not. The address space starts signed out.
    pub fn start(config: Config) -> Result<Handle, Error> {
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let (sign_out_tx, sign_out_rx) = mpsc::channel();
        let (refusals, refusals_rx) = Refusals::new();
        let (command_tx, command_rx) = tokio_mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name("opcua-server".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("opcua-worker")
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(Error::Thread(e)));
                        return;
                    }
                };
                runtime.block_on(serve(config, ready_tx, sign_out_tx, refusals, command_rx));
            })
            .map_err(Error::Thread)?;
        match ready_rx.recv() {
            Ok(Ok(ready)) => Ok(Handle {
                local_addr: ready.local_addr,
                namespace_index: ready.namespace_index,
                endpoint_url: ready.endpoint_url,
                server: ready.server,
                commands: command_tx,
                sign_out_rx,
                refusals_rx,
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(Error::Stopped)
            }
        }
    }
}

struct Ready {
    local_addr: SocketAddr,
    namespace_index: u16,
    endpoint_url: String,
    server: ServerHandle,
}

/// What the handle asks of the server thread, in order.
enum Command {
    Publish(SessionState),
    /// Publish the signed-out state, wait (bounded) until subscribers have
    /// it, then answer.
    Close(mpsc::Sender<()>),
}

/// The running server. Dropping it publishes the signed-out state, gives
/// subscribers up to [`CLOSE_FLUSH_LIMIT`] to receive it, then stops the
/// server and joins its thread.
pub struct Handle {
    local_addr: SocketAddr,
    namespace_index: u16,
    endpoint_url: String,
    server: ServerHandle,
    commands: tokio_mpsc::UnboundedSender<Command>,
    sign_out_rx: mpsc::Receiver<SignOutRequest>,
    refusals_rx: mpsc::Receiver<PasswordRefused>,
    thread: Option<JoinHandle<()>>,
}

impl Handle {
    /// The address the server listens on (the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The index the server gave [`NAMESPACE_URI`].
    pub fn namespace_index(&self) -> u16 {
        self.namespace_index
    }

    /// The URL the server hands out in its endpoint descriptions and
    /// discovery URLs, e.g. `opc.tcp://kiosk-7a:4840/`, for showing to the
    /// person who configures the line.
    pub fn endpoint_url(&self) -> &str {
        &self.endpoint_url
    }

    /// Queues a new session state; the server thread writes it into the
    /// address space, raises SignedIn/SignedOut events as the change demands
    /// (see the `events` module) and notifies subscribers. Never blocks.
    pub fn publish(&self, state: &SessionState) -> Result<(), Error> {
        self.commands
            .send(Command::Publish(state.clone()))
            .map_err(|_| Error::Stopped)
    }

    /// `SignOut()` calls, to poll with `try_recv` (or wait on with `recv`).
    /// The owner signs the operator out and then [`publish`](Self::publish)es
    /// the signed-out state: the server itself changes nothing.
    pub fn sign_out_requests(&self) -> &mpsc::Receiver<SignOutRequest> {
        &self.sign_out_rx
    }

    /// Refused `SignOut()` passwords (wrong, locked out, or another check
    /// under way), to poll like [`sign_out_requests`](Self::sign_out_requests)
    /// and write into the audit trail. Bounded: what the owner does not
    /// collect in time is counted in the next one's
    /// [`PasswordRefused::unreported_before`].
    pub fn password_refusals(&self) -> &mpsc::Receiver<PasswordRefused> {
        &self.refusals_rx
    }
}

impl Drop for Handle {
    /// Blocks for up to about [`CLOSE_FLUSH_LIMIT`]: a line that is told
    /// nothing when the kiosk closes would keep the last operator's level
    /// until its connection times out.
    fn drop(&mut self) {
        let (done_tx, done_rx) = mpsc::channel();
        if self.commands.send(Command::Close(done_tx)).is_ok() {
            // The server thread bounds its own wait; this bound only guards
            // against a runtime that no longer runs at all.
            let _ = done_rx.recv_timeout(CLOSE_FLUSH_LIMIT + Duration::from_secs(2));
        }
        self.server.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    config: Config,
    ready_tx: mpsc::SyncSender<Result<Ready, Error>>,
    sign_out_tx: mpsc::Sender<SignOutRequest>,
    refusals: Refusals,
    commands: tokio_mpsc::UnboundedReceiver<Command>,
) {
    // An empty host listens everywhere too; an IPv6 literal may come in
    // URL brackets.
    let bind_host = match config.host.trim() {
        "" => "0.0.0.0",
        h => h.trim_start_matches('[').trim_end_matches(']'),
    };
    let addr = format!("{}:{}", config.host, config.port);
    let listener = match tokio::net::TcpListener::bind((bind_host, config.port)).await {
        Ok(l) => l,
        Err(source) => {
            let _ = ready_tx.send(Err(Error::Bind { addr, source }));
            return;
        }
    };
    let local_addr = match listener.local_addr() {
        Ok(a) => a,
        Err(source) => {
            let _ = ready_tx.send(Err(Error::Bind { addr, source }));
            return;
        }
    };
    // The key is written into folders no one else can read, and stays so.
    if let Err(e) = pki::protect(&config.pki_dir) {
        let _ = ready_tx.send(Err(e));
        return;
    }
    let host = config.endpoint_host();
    let endpoint_url = format!("opc.tcp://{host}:{}/", local_addr.port());
    let tracker = Arc::new(SessionTracker::default());
    let mut builder = builder(&config, &host, local_addr.port(), sign_out_tx, refusals)
        .with_type_tree_getter(tracker.clone());
    let max_frame = builder.limits_mut().receive_buffer_size;
    let (server, handle) = match builder.build() {
        Ok(pair) => pair,
        Err(e) => {
            let _ = ready_tx.send(Err(Error::Config(e)));
            return;
        }
    };
    if let Err(e) = pki::protect(&config.pki_dir) {
        let _ = ready_tx.send(Err(e));
        return;
    }
    let (Some(manager), Some(ns)) = (
        handle.node_managers().get_of_type::<KioskNodeManager>(),
        handle.get_namespace_index(NAMESPACE_URI),
    ) else {
        let _ = ready_tx.send(Err(Error::Config("our node manager is missing".into())));
        return;
    };

    let publisher = Publisher {
        manager,
        subscriptions: handle.subscriptions().clone(),
        tracker,
        ns,
        current: SessionState::signed_out(),
        held: VecDeque::new(),
        held_since: None,
    };
    tokio::spawn(publisher.run(commands));

    // The stack listens on loopback only; clients reach it through the gate
    // on the public port (gate.rs).
    let inner = match tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await {
        Ok(l) => l,
        Err(source) => {
            let _ = ready_tx.send(Err(Error::Bind {
                addr: "127.0.0.1:0".into(),
                source,
            }));
            return;
        }
    };
    let inner_addr = match inner.local_addr() {
        Ok(a) => a,
        Err(source) => {
            let _ = ready_tx.send(Err(Error::Bind {
                addr: "127.0.0.1:0".into(),
                source,
            }));
            return;
        }
    };
    let info = handle.info().clone();
    let mut running = tokio::spawn(server.run_with(inner));
    // Ready once the stack has set up its node managers (our types are then
    // in its type tree) and knows its port: clients may connect right away.
    while info.port.load(std::sync::atomic::Ordering::Relaxed) == 0 && !running.is_finished() {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // The stack matches endpoint URLs against the port it listens on; the
    // clients' URLs name the public one.
    info.port
        .store(local_addr.port(), std::sync::atomic::Ordering::Relaxed);
    if running.is_finished() {
        let e = match (&mut running).await {
            Ok(Err(e)) => e,
            Ok(Ok(())) => "stopped at start".into(),
            Err(e) => e.to_string(),
        };
        let _ = ready_tx.send(Err(Error::Config(e)));
        return;
    }
    let _ = ready_tx.send(Ok(Ready {
        local_addr,
        namespace_index: ns,
        endpoint_url: endpoint_url.clone(),
        server: handle.clone(),
    }));
    tracing::info!(%local_addr, %endpoint_url, "OPC UA server listening");
    let gate = tokio::spawn(gate::serve(
        listener,
        inner_addr,
        config.allow_security_none,
        max_frame,
    ));
    let pki_dir = config.pki_dir.clone();
    let keep = config.max_rejected_certificates;
    let pruner = tokio::spawn(async move {
        let mut tick = tokio::time::interval(PRUNE_INTERVAL);
        loop {
            tick.tick().await;
            let dir = pki_dir.clone();
            match tokio::task::spawn_blocking(move || pki::prune_rejected(&dir, keep)).await {
                Ok(Err(e)) => tracing::warn!(error = %e, "OPC UA: could not cut back rejected/"),
                Ok(Ok(_)) | Err(_) => {}
            }
        }
    });
    let stopped = running.await;
    // No new connections once the stack has stopped.
    gate.abort();
    pruner.abort();
    match stopped {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "OPC UA server stopped"),
        Err(e) => tracing::error!(error = %e, "OPC UA server failed"),
    }
}

/// Writes published states into the address space, on the server's runtime.
struct Publisher {
    manager: Arc<KioskNodeManager>,
    subscriptions: Arc<SubscriptionCache>,
    tracker: Arc<SessionTracker>,
    ns: u16,
    /// What the address space says now (a signed-out state has every field
    /// empty).
    current: SessionState,
    /// Events raised but not yet handed to the stack, oldest first (see
    /// [`Publisher::release_events`]).
    held: VecDeque<Box<dyn Event + Send>>,
    /// Since when the oldest held event waits for a subscriber.
    held_since: Option<Instant>,
}

impl Publisher {
    async fn run(mut self, mut commands: tokio_mpsc::UnboundedReceiver<Command>) {
        loop {
            let command = if self.held.is_empty() {
                commands.recv().await
            } else {
                tokio::select! {
                    command = commands.recv() => command,
                    _ = tokio::time::sleep(EVENT_POLL) => {
                        self.release_events(false);
                        continue;
                    }
                }
            };
            let Some(command) = command else { return };
            match command {
                Command::Publish(state) => self.apply(state),
                Command::Close(done) => {
                    self.apply(SessionState::signed_out());
                    self.flush().await;
                    let _ = done.send(());
                    return;
                }
            }
        }
    }

    /// Writes `state` and raises the events the change calls for, values
    /// first: a client that reacts to an event and reads the variables finds
    /// them already changed.
    fn apply(&mut self, state: SessionState) {
        let next = if state.signed_in {
            state
        } else {
            SessionState::signed_out()
        };
        let now = DateTime::now();
        let values: Vec<(NodeId, DataValue)> = next
            .values()
            .into_iter()
            .map(|(var, value)| (var.node_id(self.ns), DataValue::new_at(value, now)))
            .collect();
        if let Err(status) = self.manager.set_values(
            &self.subscriptions,
            values.iter().map(|(id, v)| (id, None, v.clone())),
        ) {
            tracing::error!(%status, "OPC UA: could not publish the session state");
        }
        self.held.extend(
            events::changes(&self.current, &next)
                .iter()
                .map(|change| events::event(self.ns, change, now)),
        );
        self.current = next;
        self.release_events(false);
    }

    /// Hands held events to the stack, one at a time: the next only once no
    /// subscriber's event item still holds the previous one (or once it has
    /// waited [`event_hold_limit`]; `force`: all of them now).
    ///
    /// Why: async-opcua 0.19 grants an event item the queue size a client
    /// asks for, and clients ask for 0 or 1 (asyncua does), which the stack
    /// makes 1, and a node manager may only lower it. Two events raised
    /// within one publishing interval (a new sign-in that ends the running
    /// session raises SignedOut and SignedIn at once; a sign-in and a quick
    /// sign-out) would leave only the second in the queue. The variables are
    /// written at once, never held: they are the current state, the events
    /// the history.
    fn release_events(&mut self, force: bool) {
        let source = NodeId::new(self.ns, nodes::SESSION);
        while !self.held.is_empty() {
            if !force {
                let delivery = self.tracker.delivery(&self.subscriptions);
                if delivery.events_pending {
                    let since = *self.held_since.get_or_insert_with(Instant::now);
                    if since.elapsed() < event_hold_limit(delivery.longest_interval) {
                        return;
                    }
                    tracing::warn!(
                        longest_publishing_interval = ?delivery.longest_interval,
                        "OPC UA: a subscriber has not collected the last event; raising the next one anyway"
                    );
                }
            }
            if let Some(event) = self.held.pop_front() {
                self.subscriptions
                    .notify_events(std::iter::once((&*event as _, &source)));
            }
            self.held_since = None;
        }
    }

    /// Releases the held events and waits until no subscription of a known
    /// session holds an unsent notification, then [`SEND_GRACE`] for the
    /// last responses to be written; at most [`CLOSE_FLUSH_LIMIT`] (events
    /// still held then are raised at once). The stack packs notifications
    /// into a message once a subscription's publishing interval has elapsed
    /// and sends it on a waiting Publish request, so this is about one
    /// publishing interval per held event for a client that keeps requests
    /// outstanding (as clients do).
    async fn flush(&mut self) {
        let start = Instant::now();
        let mut settled_since: Option<Instant> = None;
        loop {
            self.release_events(false);
            let delivery = self.tracker.delivery(&self.subscriptions);
            let now = Instant::now();
            if delivery.pending || !self.held.is_empty() {
                settled_since = None;
            } else if now - *settled_since.get_or_insert(now) >= SEND_GRACE {
                return;
            }
            if now - start >= CLOSE_FLUSH_LIMIT {
                self.release_events(true);
                tracing::warn!(
                    longest_publishing_interval = ?delivery.longest_interval,
                    "OPC UA: closing before every subscriber had the signed-out state"
                );
                return;
            }
            tokio::time::sleep(EVENT_POLL).await;
        }
    }
}

/// How long an event waits for subscribers to collect the previous one:
/// two of the longest publishing intervals and a little, at most
/// [`EVENT_HOLD_CAP`].
fn event_hold_limit(longest_publishing_interval: Duration) -> Duration {
    (longest_publishing_interval * 2 + EVENT_HOLD_SLACK).min(EVENT_HOLD_CAP)
}

/// The async-opcua configuration for `config`, advertising `host:port`.
fn builder(
    config: &Config,
    host: &str,
    port: u16,
    sign_out_tx: mpsc::Sender<SignOutRequest>,
    refusals: Refusals,
) -> ServerBuilder {
    let kiosk = if config.line.kiosk_name.is_empty() {
        "kiosk"
    } else {
        &config.line.kiosk_name
    };
    let line = config.line.clone();
    let our_nodes =
        InMemoryNodeManagerBuilder::new(move |context: ServerContext, space: &mut AddressSpace| {
            let ns = context
                .type_tree
                .write()
                .namespaces_mut()
                .add_namespace(NAMESPACE_URI);
            space.add_namespace(NAMESPACE_URI, ns);
            // Built here, not in `init`: the stack loads our event types
            // into its type tree right after `init`, from this address space.
            nodes::build(space, ns, &line);
            KioskNodes {
                namespace: NamespaceMetadata {
                    namespace_uri: NAMESPACE_URI.to_owned(),
                    namespace_index: ns,
                    ..Default::default()
                },
                sign_out_tx,
            }
        });
    let mut b = ServerBuilder::new()
        .application_name(format!("KubeVision {kiosk}"))
        .application_uri(format!("urn:kubevision:kiosk:{kiosk}"))
        .product_uri("urn:kubevision")
        .build_info(BuildInfo {
            product_uri: "urn:kubevision".into(),
            manufacturer_name: "KubeVision".into(),
            product_name: "KubeVision kiosk".into(),
            software_version: env!("CARGO_PKG_VERSION").into(),
            build_number: "0".into(),
            build_date: DateTime::null(),
        })
        .host(host)
        .port(port)
        .pki_dir(config.pki_dir.clone())
        .create_sample_keypair(true)
        .trust_client_certs(config.trust_all_client_certs)
        .discovery_urls(vec![format!("opc.tcp://{host}:{port}/")])
        .subscription_poll_interval_ms(SUBSCRIPTION_TICK_MS)
        // Session limits, enforced with the gate's (gate.rs).
        .max_sessions(gate::MAX_SESSIONS)
        .max_session_timeout_ms(gate::SESSION_TIMEOUT.as_millis() as u64)
        .hello_timeout(gate::HELLO_TIMEOUT.as_secs() as u32)
        .with_node_manager(our_nodes)
        .with_authenticator(Arc::new(KioskAuth {
            credentials: config.credentials.clone(),
            guesses: Guesses::new(refusals),
        }));
    let limits = &mut b.limits_mut().subscriptions;
    limits.min_publishing_interval_ms = MIN_PUBLISHING_INTERVAL_MS;
    limits.min_sampling_interval_ms = MIN_SAMPLING_INTERVAL_MS;

    // Endpoints name the anonymous token only; whether a UserName token is
    // offered is KioskAuth's decision (SignAndEncrypt endpoints, and only
    // when there are users), so the stack holds no user list at all.
    let anonymous: Vec<String> = if config.anonymous_read {
        vec![ANONYMOUS_USER_TOKEN_ID.to_string()]
    } else {
        Vec::new()
    };
    if config.allow_security_none {
        b = b.add_endpoint("none", ServerEndpoint::new_none("/", &anonymous));
    }
    for (id, policy, mode) in [
        (
            "basic256sha256_sign",
            SecurityPolicy::Basic256Sha256,
            MessageSecurityMode::Sign,
        ),
        (
            "basic256sha256_sign_encrypt",
            SecurityPolicy::Basic256Sha256,
            MessageSecurityMode::SignAndEncrypt,
        ),
        (
            "aes128sha256rsaoaep_sign",
            SecurityPolicy::Aes128Sha256RsaOaep,
            MessageSecurityMode::Sign,
        ),
        (
            "aes128sha256rsaoaep_sign_encrypt",
            SecurityPolicy::Aes128Sha256RsaOaep,
            MessageSecurityMode::SignAndEncrypt,
        ),
    ] {
        b = b.add_endpoint(id, ServerEndpoint::new("/", policy, mode, &anonymous));
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(host: &str, advertised: Option<&str>) -> Config {
        let mut c = Config::new(Line::default(), "/nonexistent");
        c.host = host.into();
        c.advertised_host = advertised.map(Into::into);
        c
    }

    #[test]
    fn wildcards_advertise_the_host_name() {
        for wildcard in ["0.0.0.0", "::", "", "[::]"] {
            let host = config(wildcard, None).endpoint_host();
            assert_eq!(host, host_name(), "{wildcard:?}");
            assert!(!host.is_empty() && host != "0.0.0.0" && host != "[::]");
        }
    }

    #[test]
    fn a_named_host_or_an_explicit_one_is_advertised_as_it_is() {
        assert_eq!(config("192.168.7.20", None).endpoint_host(), "192.168.7.20");
        assert_eq!(
            config("0.0.0.0", Some("kiosk-7a.line.example")).endpoint_host(),
            "kiosk-7a.line.example"
        );
        assert_eq!(
            config("127.0.0.1", Some("10.0.0.5")).endpoint_host(),
            "10.0.0.5"
        );
        // An empty override is no override.
        assert_eq!(config("127.0.0.1", Some(" ")).endpoint_host(), "127.0.0.1");
        // IPv6 literals go in brackets, as in any URL.
        assert_eq!(config("::1", None).endpoint_host(), "[::1]");
    }

    #[test]
    fn events_wait_for_two_publishing_intervals_at_most_and_never_long() {
        assert_eq!(event_hold_limit(Duration::ZERO), EVENT_HOLD_SLACK);
        assert_eq!(
            event_hold_limit(Duration::from_millis(20)),
            Duration::from_millis(140)
        );
        assert_eq!(event_hold_limit(Duration::from_secs(30)), EVENT_HOLD_CAP);
    }

    #[test]
    fn config_debug_does_not_print_credentials() {
        struct Nobody;
        impl Credentials for Nobody {
            fn any_users(&self) -> bool {
                false
            }
            fn verify(&self, _: &str, _: &str) -> bool {
                false
            }
        }
        let mut c = config("0.0.0.0", None);
        c.credentials = Some(Arc::new(Nobody));
        assert!(format!("{c:?}").contains("credentials: Some(\"..\")"));
    }
}
