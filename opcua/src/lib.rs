//! KubeVision's OPC UA server: tells the production line who is signed in at
//! the kiosk and at what access level (issue 14).
//!
//! A sign-in that stays inside the kiosk changes nothing on the line; the
//! machine's HMI and PLC decide what a person may do, and they speak OPC UA.
//! This crate is the kiosk's side of that: a small server, off the UI thread,
//! with one object tree in our own namespace. It knows nothing about egui or
//! the kiosk's screens, so the kiosk embeds it and the tests drive it alone.
//!
//! Contents:
//! - [`server`]: [`LineServer::start`], its [`Config`] and the [`Handle`]
//!   that publishes state, hands out `SignOut()` requests (with the caller's
//!   user name) and, when dropped, publishes the signed-out state, gives
//!   subscribers a bounded moment to receive it and stops the server.
//! - [`nodes`]: the namespace URI, the stable string NodeIds, the tree and
//!   the two event types.
//! - [`state`]: [`SessionState`] and [`Line`], plain data, and their mapping
//!   to node values (no biometric data exists here).
//! - `events`: which `SignedIn`/`SignedOut` events a new state raises, and
//!   their fields.
//! - [`Credentials`]: the kiosk's check of user names and passwords for
//!   `SignOut()`; the server never holds a password. Anonymous clients read;
//!   user names are only taken on SignAndEncrypt endpoints (`auth`).
//! - [`gate`]: the door in front of the stack, on the public port: caps on
//!   connections and certificate-less sessions, a reserve of sessions for
//!   clients with a trusted certificate, deadlines for a Hello, a message
//!   chunk and an unactivated session (issue 22).
//! - [`pki`]: the rejected client certificates and trusting one, for an
//!   administrator's screen; a trusted certificate counts from the client's
//!   next connection, without a restart.
//!
//! The namespace is also kept as a NodeSet2 file for integrators
//! (`opcua/nodeset/`), which a test checks against this server both ways.
//! How to connect a WinCC Unified HMI or an S7-1500 to it, and the latency
//! measured from a sign-in to a subscriber: `opcua/README.md`. The role →
//! access-level table is the kiosk's, not this crate's.

mod auth;
mod events;
pub mod gate;
mod node_manager;
pub mod nodes;
pub mod pki;
pub mod server;
pub mod state;

pub use auth::{Credentials, PasswordRefused, RefusalCause};
/// The stack, re-exported for callers that need its types.
pub use opcua;
pub use pki::ClientCertificate;
pub use server::{Config, Error, Handle, LineServer, SignOutRequest, DEFAULT_PORT};
pub use state::{Line, SessionState};
