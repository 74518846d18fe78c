//! Compiles `proto/` with the pure-Rust `protox` compiler (no system `protoc`)
//! and generates prost messages plus tonic clients and servers into OUT_DIR.

const PROTOS: &[&str] = &[
    "proto/common/common.proto",
    "proto/proxy/telemetry/telemetry.proto",
    "proto/proxy/destination/destination.proto",
    "proto/proxy/tap/tap.proto",
    "proto/public/api.proto",
    "proto/controller/telemetry/telemetry.proto",
    "proto/controller/tap/tap.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(PROTOS, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
