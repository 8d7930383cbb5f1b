//! KubeVision's versioned gRPC contract.
//!
//! The `.proto` files under `proto/kubevision/v1/` are the source of truth;
//! this crate holds the Rust code generated from them, for the offload service,
//! its Rust client and anything else that speaks to it. Other languages
//! generate their own stubs from the same files.

pub mod credential;
pub mod lockout;

/// Package `kubevision.v1`: messages, `*_client` and `*_server` modules.
pub mod v1 {
    tonic::include_proto!("kubevision.v1");
}

/// The encoded `FileDescriptorSet` of `kubevision.v1`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("kubevision_v1_descriptor");
