//! The server's lifetime: [`LineServer::start`] runs it on a thread and tokio
//! runtime of its own and hands back a [`Handle`]; dropping the handle stops
//! it.
//!
//! Why a thread of its own: the kiosk's UI thread must never wait on a
//! client, a socket or a lock held by a slow browse. So [`Handle::publish`]
//! only queues the new state (the server thread writes it into the address
//! space and notifies subscribers), and `SignOut()` calls come back on a
//! plain channel that the UI polls once a frame ([`Handle::sign_out_requests`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use ::opcua::crypto::SecurityPolicy;
use ::opcua::server::authenticator::DefaultAuthenticator;
use ::opcua::server::diagnostics::NamespaceMetadata;
use ::opcua::server::node_manager::memory::{simple_node_manager, SimpleNodeManager};
use ::opcua::server::{
    ServerBuilder, ServerEndpoint, ServerHandle, ServerUserToken, ANONYMOUS_USER_TOKEN_ID,
};
use ::opcua::types::{BuildInfo, DataValue, DateTime, MessageSecurityMode, NodeId};
use tokio::sync::mpsc as tokio_mpsc;

use crate::nodes::{self, NAMESPACE_URI, SIGN_OUT};
use crate::state::{Line, SessionState};

/// The default OPC UA port (IANA-registered for opc.tcp).
pub const DEFAULT_PORT: u16 = 4840;

/// A user name and password that may call `SignOut()`.
#[derive(Clone)]
pub struct User {
    pub name: String,
    pub password: String,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// How the server listens and whom it lets in.
#[derive(Debug, Clone)]
pub struct Config {
    /// The address to listen on, also the host in the advertised endpoint
    /// URLs. Default `0.0.0.0` (every interface: the line is on the network).
    pub host: String,
    /// Default [`DEFAULT_PORT`]; 0 picks a free port (see [`Handle::local_addr`]).
    pub port: u16,
    /// The PKI folder: `own/cert.der` and `private/private.pem` are made here
    /// (self-signed) at first start; client certificates land in `rejected/`
    /// and are trusted by moving them to `trusted/`.
    pub pki_dir: PathBuf,
    pub line: Line,
    /// Offer the unsecured `None` endpoint (anonymous, read-only: user names
    /// and passwords are only accepted on SignAndEncrypt endpoints). Off by
    /// default; tests turn it on.
    pub allow_security_none: bool,
    /// Let clients connect without credentials (read-only). Default on.
    pub anonymous_read: bool,
    /// The users who may call `SignOut()`.
    pub users: Vec<User>,
    /// Trust every client certificate. Only for tests: it defeats the point of
    /// a trust folder.
    pub trust_all_client_certs: bool,
}

impl Config {
    /// Defaults for a line and a PKI folder.
    pub fn new(line: Line, pki_dir: impl Into<PathBuf>) -> Self {
        Self {
            host: "0.0.0.0".into(),
            port: DEFAULT_PORT,
            pki_dir: pki_dir.into(),
            line,
            allow_security_none: false,
            anonymous_read: true,
            users: Vec::new(),
            trust_all_client_certs: false,
        }
    }
}

/// Why the server did not start, or no longer runs.
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
}

/// A client called `SignOut()` (with credentials that allow it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignOutRequest;

/// Starts the server.
pub struct LineServer;

impl LineServer {
    /// Starts the server on its own thread and returns once it listens, or
    /// with the reason it could not. The address space starts signed out.
    pub fn start(config: Config) -> Result<Handle, Error> {
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let (sign_out_tx, sign_out_rx) = mpsc::channel();
        let (publish_tx, publish_rx) = tokio_mpsc::unbounded_channel();
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
                runtime.block_on(serve(config, ready_tx, sign_out_tx, publish_rx));
            })
            .map_err(Error::Thread)?;
        match ready_rx.recv() {
            Ok(Ok(ready)) => Ok(Handle {
                local_addr: ready.local_addr,
                namespace_index: ready.namespace_index,
                server: ready.server,
                publish_tx,
                sign_out_rx,
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
    server: ServerHandle,
}

/// The running server. Dropping it stops the server and joins its thread.
pub struct Handle {
    local_addr: SocketAddr,
    namespace_index: u16,
    server: ServerHandle,
    publish_tx: tokio_mpsc::UnboundedSender<SessionState>,
    sign_out_rx: mpsc::Receiver<SignOutRequest>,
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

    /// Queues a new session state; the server thread writes it into the
    /// address space and notifies subscribers. Never blocks.
    pub fn publish(&self, state: &SessionState) -> Result<(), Error> {
        self.publish_tx
            .send(state.clone())
            .map_err(|_| Error::Stopped)
    }

    /// `SignOut()` calls, to poll with `try_recv` (or wait on with `recv`).
    /// The owner signs the operator out and then [`publish`](Self::publish)es
    /// the signed-out state: the server itself changes nothing.
    pub fn sign_out_requests(&self) -> &mpsc::Receiver<SignOutRequest> {
        &self.sign_out_rx
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
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
    mut publish_rx: tokio_mpsc::UnboundedReceiver<SessionState>,
) {
    let addr = format!("{}:{}", config.host, config.port);
    let listener = match tokio::net::TcpListener::bind(&addr).await {
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
    let (server, handle) = match builder(&config, local_addr.port()).build() {
        Ok(pair) => pair,
        Err(e) => {
            let _ = ready_tx.send(Err(Error::Config(e)));
            return;
        }
    };
    let (Some(manager), Some(ns)) = (
        handle.node_managers().get_of_type::<SimpleNodeManager>(),
        handle.get_namespace_index(NAMESPACE_URI),
    ) else {
        let _ = ready_tx.send(Err(Error::Config("our node manager is missing".into())));
        return;
    };
    {
        let space = manager.address_space();
        let mut space = space.write();
        nodes::build(&mut space, ns, &config.line);
    }
    manager
        .inner()
        .add_method_callback(NodeId::new(ns, SIGN_OUT), move |_args| {
            tracing::info!("OPC UA: SignOut() called");
            // The owner may have gone; the call still succeeds for the client,
            // and the next start is signed out anyway.
            let _ = sign_out_tx.send(SignOutRequest);
            Ok(Vec::new())
        });

    let subscriptions = handle.subscriptions().clone();
    let publisher = Arc::clone(&manager);
    tokio::spawn(async move {
        while let Some(state) = publish_rx.recv().await {
            let now = DateTime::now();
            let values: Vec<(NodeId, DataValue)> = state
                .values()
                .into_iter()
                .map(|(var, value)| (var.node_id(ns), DataValue::new_at(value, now)))
                .collect();
            if let Err(status) = publisher.set_values(
                &subscriptions,
                values.iter().map(|(id, v)| (id, None, v.clone())),
            ) {
                tracing::error!(%status, "OPC UA: could not publish the session state");
            }
        }
    });

    let _ = ready_tx.send(Ok(Ready {
        local_addr,
        namespace_index: ns,
        server: handle.clone(),
    }));
    tracing::info!(%local_addr, "OPC UA server listening");
    if let Err(e) = server.run_with(listener).await {
        tracing::error!(error = %e, "OPC UA server stopped");
    }
}

/// The async-opcua configuration for `config`, advertising `port`.
fn builder(config: &Config, port: u16) -> ServerBuilder {
    let kiosk = if config.line.kiosk_name.is_empty() {
        "kiosk"
    } else {
        &config.line.kiosk_name
    };
    let mut token_ids: Vec<String> = Vec::new();
    if config.anonymous_read {
        token_ids.push(ANONYMOUS_USER_TOKEN_ID.to_string());
    }
    let mut users = BTreeMap::new();
    for (i, user) in config.users.iter().enumerate() {
        let id = format!("user{i}");
        users.insert(
            id.clone(),
            ServerUserToken::user_pass(user.name.clone(), user.password.clone()),
        );
        token_ids.push(id);
    }
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
        .host(config.host.clone())
        .port(port)
        .pki_dir(config.pki_dir.clone())
        .create_sample_keypair(true)
        .trust_client_certs(config.trust_all_client_certs)
        .discovery_urls(vec!["/".to_owned()])
        .with_node_manager(simple_node_manager(
            NamespaceMetadata {
                namespace_uri: NAMESPACE_URI.to_owned(),
                ..Default::default()
            },
            "kubevision",
        ))
        .with_authenticator(Arc::new(crate::auth::KioskAuth {
            inner: DefaultAuthenticator::new(users.clone()),
        }));
    for (id, token) in users {
        b = b.add_user_token(id, token);
    }
    // User names and passwords only on SignAndEncrypt endpoints: async-opcua
    // names no separate password policy, and clients then send the password
    // as it is, which a None or Sign-only channel would carry in clear text.
    // So SignOut() needs an encrypted channel; elsewhere clients are anonymous.
    let anonymous: Vec<String> = token_ids
        .iter()
        .filter(|id| *id == ANONYMOUS_USER_TOKEN_ID)
        .cloned()
        .collect();
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
        let tokens = if mode == MessageSecurityMode::SignAndEncrypt {
            &token_ids
        } else {
            &anonymous
        };
        b = b.add_endpoint(id, ServerEndpoint::new("/", policy, mode, tokens));
    }
    b
}
