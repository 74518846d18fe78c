//! `conduit version`: this binary's version and the public API's.

use super::{ApiArgs, ApiClient};
use crate::proto::http_api::VERSION_PATH;
use crate::proto::public::{Empty, VersionInfo};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub api: ApiArgs,
}

impl Args {
    /// Prints both versions; an unreachable server is reported on the
    /// `Server version` line and fails the command.
    pub async fn run(self) -> anyhow::Result<()> {
        println!("Client version: {}", crate::core::RELEASE_VERSION);
        let server = match ApiClient::new(&self.api.api_addr) {
            Ok(client) => client.call::<_, VersionInfo>(VERSION_PATH, &Empty {}).await,
            Err(error) => Err(error),
        };
        match server {
            Ok(v) => {
                println!("Server version: {}", v.release_version);
                Ok(())
            }
            Err(error) => {
                println!("Server version: unavailable ({error})");
                Err(error.into())
            }
        }
    }
}
