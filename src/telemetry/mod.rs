//! The telemetry component.

use crate::core::{ListenAddr, Shutdown};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// gRPC address for the proxies' Report and the controller's ListPods.
    #[arg(long, default_value = ":8087")]
    pub addr: ListenAddr,
    /// Admin HTTP address: /metrics, /ping, /ready.
    #[arg(long, default_value = ":9997")]
    pub metrics_addr: ListenAddr,
    /// Namespaces left out of ListPods (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub ignore_namespaces: Vec<String>,
    /// Prometheus to run Stat queries against (the embedded store otherwise).
    #[arg(long)]
    pub prometheus_url: Option<String>,
}

impl Args {
    pub async fn run(self, _shutdown: Shutdown) -> anyhow::Result<()> {
        anyhow::bail!("telemetry is not built yet")
    }
}
