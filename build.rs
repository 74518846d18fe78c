//! Compiles `proto/` with the pure-Rust `protox` compiler (no system `protoc`)
//! and generates prost messages plus tonic clients and servers into OUT_DIR.
//! `prometheus/remote.proto` (the remote-write body) is compiled the same
//! way, messages only.

const PROTOS: &[&str] = &[
    "proto/common/common.proto",
    "proto/proxy/destination/destination.proto",
    "proto/proxy/tap/tap.proto",
    "proto/public/api.proto",
    "proto/controller/telemetry/telemetry.proto",
    "proto/controller/tap/tap.proto",
    "proto/controller/stat/stat.proto",
    "proto/controller/ingest/ingest.proto",
];

/// The proxies' Report, generated with the telemetry component's codec
/// (`crate::proto::codec::SliceCodec`: decodes from one contiguous
/// slice, and calls an undecodable body INVALID_ARGUMENT).
const REPORT_PROTOS: &[&str] = &["proto/proxy/telemetry/telemetry.proto"];

/// Prometheus remote write 1.0: messages only, no service.
const PROMETHEUS_PROTOS: &[&str] = &["prometheus/remote.proto"];

/// The Prometheus client data model (the protobuf exposition): messages only.
const CLIENT_MODEL_PROTOS: &[&str] = &["proto/io/prometheus/client/metrics.proto"];

/// The public API's messages (and the `TapEvent` it streams) get a second,
/// JSON-capable copy in `OUT_DIR/json`: prost messages whose
/// `google.protobuf.Duration` is `pbjson_types::Duration`, plus pbjson's
/// proto3-JSON serde impls. A copy, because those impls need a Duration with
/// serde support while the rest of the crate uses prost-types'; both copies
/// share the wire, so converting is a protobuf round trip.
const JSON_PROTOS: &[&str] = &["proto/public/api.proto"];
const JSON_PACKAGES: &[&str] = &[".conduit.public", ".conduit.common"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=prometheus/remote.proto");
    let fds = protox::compile(PROTOS, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // A forwarded report stays the bytes it arrived as: decoded from
        // tonic's receive buffer without a copy, handed to the ingester whole.
        .bytes(".conduit.controller.ingest.ForwardedReport.report")
        .compile_fds(fds)?;
    // Also writes conduit.common again, identically.
    let fds = protox::compile(REPORT_PROTOS, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .codec_path("crate::proto::codec::SliceCodec")
        .compile_fds(fds)?;
    let fds = protox::compile(PROMETHEUS_PROTOS, ["prometheus"])?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(false)
        .compile_fds(fds)?;
    let fds = protox::compile(CLIENT_MODEL_PROTOS, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(false)
        .compile_fds(fds)?;
    json_copy()?;
    version_env();
    Ok(())
}

fn json_copy() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("json");
    std::fs::create_dir_all(&out)?;
    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler.include_imports(true).open_files(JSON_PROTOS)?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(false)
        .out_dir(&out)
        // Replaces prost-build's own `.google.protobuf` → `::prost_types`.
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_fds(compiler.file_descriptor_set())?;
    pbjson_build::Builder::new()
        .register_descriptors(&compiler.encode_file_descriptor_set())?
        .out_dir(&out)
        .emit_fields()
        .build(JSON_PACKAGES)?;
    Ok(())
}

/// The public API's `VersionInfo`: the rustc that builds the crate
/// (`CONDUIT_RUSTC_VERSION`) and the time of the build (`CONDUIT_BUILD_DATE`,
/// RFC 3339; `SOURCE_DATE_EPOCH` wins for reproducible builds).
fn version_env() {
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let version = std::process::Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| "rustc (version unknown)".to_string());
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        });
    println!("cargo:rustc-env=CONDUIT_RUSTC_VERSION={version}");
    println!("cargo:rustc-env=CONDUIT_BUILD_DATE={}", rfc3339(secs));
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (days to a civil date
/// by Howard Hinnant's algorithm, so the build needs no date crate).
fn rfc3339(secs: u64) -> String {
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
