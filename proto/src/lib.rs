//! KubeVision's versioned gRPC contract.
//!
//! The `.proto` files under `proto/kubevision/v1/` are the source of truth;
//! this crate holds the Rust code generated from them, for the offload service,
//! its Rust client and anything else that speaks to it. Other languages
//! generate their own stubs from the same files.
//!
//! Beside the generated code, the rules both ends of the contract apply to
//! what it carries, so that the kiosk and the service accept the same
//! things: [`text`] (operator ids and display names), [`profile`] (an
//! operator's profile), [`credential`] (its Argon2id hashes) and
//! [`lockout`] (the sign-in lockout policy).

pub mod credential;
pub mod lockout;
pub mod profile;
pub mod text;

/// Package `kubevision.v1`: messages, `*_client` and `*_server` modules.
pub mod v1 {
    tonic::include_proto!("kubevision.v1");
}

/// The encoded `FileDescriptorSet` of `kubevision.v1`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("kubevision_v1_descriptor");
