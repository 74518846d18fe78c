//! The floor for the telemetry benchmarks: a plain tonic server whose
//! `Telemetry/Report` lets tonic decode the `ReportRequest` and drops it.
//!
//! `bench/e2e.sh` drives it and `conduit controller telemetry` with the same
//! `conduit simulate-proxy` load; the ratio of their throughputs is what the
//! real ingester costs over decoding alone.
//!
//!     cargo run --release --example discard_server -- --addr 127.0.0.1:8087

use std::net::SocketAddr;

use clap::Parser;
use conduit::proto::proxy::telemetry::telemetry_server::{Telemetry, TelemetryServer};
use conduit::proto::proxy::telemetry::{ReportRequest, ReportResponse};
use tonic::{Request, Response, Status};

#[derive(Debug, Parser)]
struct Args {
    /// Address to serve on (loopback for benchmarks).
    #[arg(long, default_value = "127.0.0.1:8087")]
    addr: SocketAddr,
}

struct Discard;

#[tonic::async_trait]
impl Telemetry for Discard {
    async fn report(
        &self,
        request: Request<ReportRequest>,
    ) -> Result<Response<ReportResponse>, Status> {
        // Decoded by tonic before we get here; that is all the work there is.
        drop(request);
        Ok(Response::new(ReportResponse {}))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    eprintln!("discard_server: serving Telemetry/Report on {}", args.addr);
    // tonic's defaults, including the 4 MiB decoding limit.
    tonic::transport::Server::builder()
        .add_service(TelemetryServer::new(Discard))
        .serve_with_shutdown(args.addr, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
