//! KubeVision's sign-in kiosk: store, sign-in logic, workers and the eframe UI.

pub mod app;
pub mod auth;
pub mod camera;
pub mod cluster_worker;
pub mod i18n;
pub mod recognition;
pub mod screens;
pub mod settings;
pub mod store_worker;
pub use kubevision_kiosk_store as store;
pub mod theme;
pub mod widgets;
