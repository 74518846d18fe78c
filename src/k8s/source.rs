//! Where a component's cluster metadata comes from: a static cluster file
//! (`--cluster`), a Kubernetes API server (`-kubeconfig`, or the in-cluster
//! service account when running in a pod), or nothing at all.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::task::JoinHandle;

use super::watch::{self, WatchConfig};
use super::{Index, Kind, cluster_file};
use crate::core::Shutdown;

/// The flags every component that reads cluster metadata takes.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct MetadataArgs {
    /// Cluster metadata from a file of Kubernetes YAML instead of an API server.
    #[arg(long, conflicts_with = "kubeconfig")]
    pub cluster: Option<PathBuf>,
    /// A kubeconfig file (its current context) for the Kubernetes API server;
    /// without it, the in-cluster service account is used when running in a pod.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    File(#[from] cluster_file::ClusterFileError),
    #[error(transparent)]
    Watch(#[from] watch::Error),
}

/// An opened source, to be started once the component serves.
pub enum Source {
    /// Already applied (a file) or nothing to apply: the index is final.
    Static,
    /// Watchers to start against this API server.
    Watch(kube::Client, WatchConfig),
}

impl MetadataArgs {
    /// Opens the source: a file is loaded into `index` now; an API server
    /// client is built (no request yet); with neither, and outside a
    /// cluster, every kind is marked synced and addresses stay unknown.
    pub async fn open(&self, index: &Index, kinds: &[Kind]) -> Result<Source, SourceError> {
        if let Some(path) = &self.cluster {
            let summary = cluster_file::load(path, index)?;
            tracing::info!(file = %path.display(), %summary, "cluster metadata loaded");
            return Ok(Source::Static);
        }
        let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
        if self.kubeconfig.is_none() && !in_cluster {
            tracing::warn!(
                "no cluster metadata (--cluster, -kubeconfig, or running in a pod): every address is unknown"
            );
            for kind in kinds {
                index.mark_synced(*kind);
            }
            return Ok(Source::Static);
        }
        let config = WatchConfig {
            kubeconfig: self.kubeconfig.clone(),
            ..WatchConfig::default()
        };
        let client = config.client().await?;
        Ok(Source::Watch(client, config))
    }
}

impl MetadataArgs {
    /// A new index opened on this source: what a component's `bind` starts
    /// from.
    pub async fn open_index(&self, kinds: &[Kind]) -> Result<(Arc<Index>, Source), SourceError> {
        let index = Arc::new(Index::new());
        let source = self.open(&index, kinds).await?;
        Ok((index, source))
    }
}

impl Source {
    /// Starts the watchers, if any; they end when `shutdown` fires.
    pub fn start(
        self,
        index: Arc<Index>,
        kinds: &[Kind],
        shutdown: Shutdown,
    ) -> Vec<JoinHandle<()>> {
        match self {
            Source::Static => Vec::new(),
            Source::Watch(client, config) => config.spawn(client, index, kinds, shutdown),
        }
    }
}
