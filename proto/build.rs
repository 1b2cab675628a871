//! Compiles the .proto files with protox (pure Rust, no system protoc) and keeps the
//! encoded descriptor set for gRPC server reflection.
use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "sts/daemon/v1/status.proto",
    "sts/daemon/v1/relay.proto",
    "sts/receiver/v1/trace.proto",
    "sts/processagent/v1/agent.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(PROTOS, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("sts_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_build::configure().compile_fds(fds)?;
    Ok(())
}
