//! `conduit check`: one line per check with a mark, exit 0 only when none
//! failed. It needs nothing but `--api-addr`: the public API is reached,
//! then asked (Health) how the components it talks to fare, its version
//! compared with this client's, and its pods (ListPods) counted.

use super::{ApiArgs, ApiClient};
use crate::proto::http_api::{HEALTH_PATH, LIST_PODS_PATH};
use crate::proto::public::{Empty, HealthRequest, HealthResponse, ListPodsResponse};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub api: ApiArgs,
}

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    Ok,
    Warn,
    Fail,
}

impl Mark {
    fn symbol(self) -> &'static str {
        match self {
            Self::Ok => "√",
            Self::Warn => "‼",
            Self::Fail => "×",
        }
    }
}

/// One line of the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub mark: Mark,
    pub text: String,
}

fn line(mark: Mark, text: impl Into<String>) -> Line {
    Line {
        mark,
        text: text.into(),
    }
}

/// Why `check` exits non-zero (its lines are already printed).
#[derive(Debug, thiserror::Error)]
#[error("{0} of the checks failed")]
pub struct Failed(pub usize);

impl Args {
    pub async fn run(self) -> anyhow::Result<()> {
        let lines = checks(&self.api.api_addr).await;
        for l in &lines {
            println!("{} {}", l.mark.symbol(), l.text);
        }
        let failed = lines.iter().filter(|l| l.mark == Mark::Fail).count();
        if failed > 0 {
            return Err(Failed(failed).into());
        }
        println!("Status check results are √");
        Ok(())
    }
}

/// Every check, in order; later ones are skipped when the API cannot be
/// reached (the one failure says so).
pub async fn checks(addr: &str) -> Vec<Line> {
    let mut lines = Vec::new();
    let client = match ApiClient::new(addr) {
        Ok(client) => client,
        Err(error) => {
            lines.push(line(Mark::Fail, format!("public API: {error}")));
            return lines;
        }
    };
    let health: HealthResponse = match client.call(HEALTH_PATH, &HealthRequest {}).await {
        Ok(health) => health,
        Err(error) => {
            lines.push(line(
                Mark::Fail,
                format!(
                    "public API reachable: {error}: start the control plane (conduit run, or \
                     conduit install | kubectl apply -f -) or give its address with --api-addr"
                ),
            ));
            return lines;
        }
    };
    lines.push(line(Mark::Ok, format!("public API reachable at {addr}")));
    for c in &health.components {
        let mark = if c.healthy { Mark::Ok } else { Mark::Fail };
        lines.push(line(mark, format!("{} healthy: {}", c.name, c.message)));
    }
    let client_version = crate::core::RELEASE_VERSION;
    if health.server_version == client_version {
        lines.push(line(
            Mark::Ok,
            format!("client and server versions match ({client_version})"),
        ));
    } else {
        lines.push(line(
            Mark::Fail,
            format!(
                "client and server versions match: client {client_version}, server {}: use \
                 the conduit binary of the server's release",
                health.server_version
            ),
        ));
    }
    match client
        .call::<_, ListPodsResponse>(LIST_PODS_PATH, &Empty {})
        .await
    {
        Ok(pods) => {
            let added = pods.pods.iter().filter(|p| p.added).count();
            if added > 0 {
                lines.push(line(
                    Mark::Ok,
                    format!("pods reporting: {added} of {}", pods.pods.len()),
                ));
            } else {
                lines.push(line(
                    Mark::Warn,
                    format!(
                        "pods reporting: none of {} has reported yet: inject the proxy into a \
                         deployment, or wait for its first report (every 10 s)",
                        pods.pods.len()
                    ),
                ));
            }
        }
        Err(error) => lines.push(line(Mark::Fail, format!("pods reporting: {error}"))),
    }
    lines
}
