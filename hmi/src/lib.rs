//! KubeVision's sign-in kiosk. Each worker owns one thing and talks by
//! messages; the UI thread owns none of them (README: "How the kiosk is
//! built").

/// The eframe app: polls the workers, runs the sign-in machine, draws the current screen.
pub mod app;
/// The pure sign-in state machine: factor orders, timeouts, effects to record.
pub mod auth;
/// The capture thread: USB cameras, image folders and video files.
pub mod camera;
/// The cluster panel's worker: kube-rs calls off the UI thread.
pub mod cluster_worker;
/// Every text in English and German.
pub mod i18n;
/// Tells the production line who is signed in: the OPC UA server's link.
pub mod line_link;
/// The recognition worker: faces, hints, bursts and their backends.
pub mod recognition;
/// One module per screen.
pub mod screens;
/// The SQLite store (the `kiosk-store` crate).
pub use kubevision_kiosk_store as store;
/// Settings, kept in the store (the `kiosk-store` crate's).
pub use kubevision_kiosk_store::settings;
/// The store worker: the one owner of the SQLite file, and the plant sync.
pub mod store_worker;
/// Colours, type and sizes.
pub mod theme;
/// Touch widgets: keyboard, PIN pad, fields.
pub mod widgets;
