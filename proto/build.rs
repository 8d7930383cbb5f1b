//! Generates the kubevision.v1 messages, clients and servers, and the encoded
//! descriptor set that the service's reflection endpoint serves.
//!
//! protoc comes from the system (`scripts/setup-deps` installs Debian's
//! protobuf-compiler); `PROTOC` may point at another one.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "kubevision/v1/frames.proto",
    "kubevision/v1/recognition.proto",
    "kubevision/v1/gallery.proto",
    "kubevision/v1/sign_in.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        // Bytes, not Vec<u8>: frames and templates are cloned for retries and
        // handed between tasks without copying.
        .bytes(".")
        .file_descriptor_set_path(out_dir.join("kubevision_v1_descriptor.bin"))
        .compile_protos(PROTOS, &["."])?;
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
