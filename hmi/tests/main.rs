//! The kiosk's integration tests, in one test binary: each file once linked
//! the whole kiosk (egui, the store, the pipeline, OPC UA, the offload
//! client) on its own, which cost minutes of every cold CI run. Run one
//! file's tests with `cargo test -p kubevision-hmi --test integration screens::`.

mod support;

// cluster/tests' in-test Kubernetes API server, which the cluster panel's
// tests drive (at the crate root, where its fixtures look for it).
#[path = "../../cluster/tests/cluster/fake_api.rs"]
#[allow(dead_code)] // the cluster crate's tests use the rest
mod fake_api;
#[path = "../../cluster/tests/cluster/fixtures.rs"]
#[allow(dead_code)]
mod fixtures;

mod cli;
mod cluster_panel;
mod dlib_kiosk;
mod kiosk;
mod offload;
mod opcua_line;
mod orl_camera;
mod screens;
mod video_camera;
