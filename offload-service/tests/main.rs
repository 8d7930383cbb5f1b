//! The offload service's integration tests, in one test binary: each file
//! once linked the whole service (tonic, both stores, the pipeline) on its
//! own, which cost minutes of every cold CI run. Run one file's tests with
//! `cargo test -p kubevision-offload --test integration scopes::`. The CUDA
//! backend's tests stay a binary of their own (`--features cuda --test cuda`).

mod common;

mod abuse;
mod availability;
mod defaults;
mod dlib;
mod gallery_identity;
mod hostile;
mod identities;
mod poisoning;
mod postgres_harness;
mod process;
mod replicas;
mod rpc;
mod scopes;
mod store_contract;
mod tls;
