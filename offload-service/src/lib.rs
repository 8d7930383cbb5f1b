//! The KubeVision offload service: identification, verification and the
//! plant-wide gallery over versioned gRPC (`kubevision.v1`).
//!
//! A request flows: [`service`] (token check, admission, metrics) →
//! [`frames`] (decode, detect, crop) → [`recogniser`] (templates) →
//! [`batcher`] → [`backend`] (matching),
//! with [`gallery`] keeping the backend in step with the [`store`] of record
//! (SQLite for one replica, PostgreSQL for several).

pub mod admission;
pub mod auth;
pub mod backend;
pub mod batcher;
pub mod config;
pub mod error;
pub mod frames;
pub mod gallery;
pub mod identity;
pub mod metrics;
pub mod recogniser;
pub mod server;
pub mod service;
pub mod shutdown;
pub mod store;
pub mod tls;
pub mod wolf;

pub use config::Config;
pub use server::{Server, ServerError};
