//! Generates the ONNX protobuf message types from the vendored `proto/onnx.proto` (Apache-2.0, from the
//! ONNX project): protox parses it in pure Rust (no system `protoc`), prost-build writes the Rust types.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/onnx.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
