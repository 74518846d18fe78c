//! `conduit simulate-proxy`: simulated proxies reporting over real gRPC.

use crate::core::Shutdown;

#[derive(Debug, clap::Args)]
pub struct Args {}

impl Args {
    pub async fn run(self, _shutdown: Shutdown) -> anyhow::Result<()> {
        anyhow::bail!("simulate-proxy is not built yet")
    }
}
