//! KubeVision's OPC UA server: tells the production line who is signed in at
//! the kiosk and at what access level (issue 14, first slice).
//!
//! A sign-in that stays inside the kiosk changes nothing on the line; the
//! machine's HMI and PLC decide what a person may do, and they speak OPC UA.
//! This crate is the kiosk's side of that: a small server, off the UI thread,
//! with one object tree in our own namespace. It knows nothing about egui or
//! the kiosk's screens, so the kiosk embeds it and the tests drive it alone.
//!
//! Contents:
//! - [`server`]: [`LineServer::start`], its [`Config`] and the [`Handle`]
//!   that publishes state, hands out `SignOut()` requests and stops the
//!   server when dropped.
//! - [`nodes`]: the namespace URI, the stable string NodeIds and the tree.
//! - [`state`]: [`SessionState`] and [`Line`], plain data, and their mapping
//!   to node values (no biometric data exists here).
//! - `auth`: anonymous clients read; named users may also call `SignOut()`.
//!
//! The namespace is also kept as a NodeSet2 file for integrators
//! (`opcua/nodeset/`), which a test checks against this server. Not in this
//! slice (see the README): SignedIn/SignedOut events, the
//! rejected-certificate screen, the role → level table.

mod auth;
pub mod nodes;
pub mod server;
pub mod state;

/// The stack, re-exported for callers that need its types.
pub use opcua;
pub use server::{Config, Error, Handle, LineServer, SignOutRequest, User, DEFAULT_PORT};
pub use state::{Line, SessionState};
