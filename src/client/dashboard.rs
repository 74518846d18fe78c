//! `conduit dashboard`: the web dashboard's address, opened in a browser
//! when one can be started (`--show url` only prints it).

use std::time::Duration;

/// How long the dashboard's address may take to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where `conduit run` serves the dashboard (its `--web-addr` default).
pub const DEFAULT_WEB_ADDR: &str = "127.0.0.1:8084";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Show {
    /// Print the address and open it in a browser when one is available.
    Browser,
    /// Only print the address.
    Url,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address of the dashboard (HOST:PORT): `conduit run`'s, or a
    /// `kubectl port-forward` to the web deployment.
    #[arg(long, default_value = DEFAULT_WEB_ADDR)]
    pub web_addr: String,
    /// What to do with the address.
    #[arg(long, default_value = "browser")]
    pub show: Show,
}

/// The programs that open a URL in the desktop's browser, tried in order.
const OPENERS: &[&str] = &["xdg-open", "open"];

impl Args {
    pub async fn run(self) -> anyhow::Result<()> {
        let url = format!("http://{}/", self.web_addr.trim_end_matches('/'));
        match tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio::net::TcpStream::connect(&self.web_addr),
        )
        .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => anyhow::bail!(
                "the dashboard at {url} is not reachable: {error}: start it (conduit run) or give \
                 its address with --web-addr"
            ),
            Err(_) => anyhow::bail!(
                "the dashboard at {url} did not accept a connection within {} s",
                CONNECT_TIMEOUT.as_secs()
            ),
        }
        println!("Dashboard available at:\n{url}");
        if self.show == Show::Url {
            return Ok(());
        }
        let opened = OPENERS.iter().any(|program| {
            std::process::Command::new(program)
                .arg(&url)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        if !opened {
            eprintln!("No browser could be opened: visit {url}");
        }
        Ok(())
    }
}
