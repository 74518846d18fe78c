//! `conduit install`: the Kubernetes manifests of a control plane, printed
//! as multi-document YAML for `conduit install | kubectl apply -f -`.
//!
//! How the pieces link: [`Args`] (the original's flags) are checked into a
//! [`Config`]; [`manifests`] turns a `Config` into the documents — the
//! Namespace, the controller's ServiceAccount and RBAC, the `api` and
//! `proxy-api` Services, the controller Deployment (five containers, one
//! per component; with several replicas a StatefulSet, its headless
//! Service and a PodDisruptionBudget), the web Service and Deployment, and
//! Prometheus with the scrape config of [`prometheus_config`] — and
//! [`yaml`] writes them, the same bytes for the same flags.
//! `deploy/conduit.yaml` and `prometheus/prometheus.yml` in the repository
//! are this output for the default flags, pinned by `tests/install.rs`
//! (and `tests/fixtures/install-controller-replicas-3.yaml` the output for
//! three controller replicas).

mod manifests;
pub mod yaml;

use std::io::Write as _;

pub use manifests::{PROMETHEUS_IMAGE, controller_cluster_role_name, prometheus_config, render};

/// Where the original published its images; `-r` points elsewhere.
pub const DEFAULT_REGISTRY: &str = "gcr.io/runconduit";

/// Images are tagged with the release they were built from, so by default
/// a client installs the control plane of its own version.
pub const DEFAULT_VERSION: &str = crate::core::RELEASE_VERSION;

/// The original's namespace: proxies injected by its CLI look for the
/// control plane there.
pub const DEFAULT_NAMESPACE: &str = "conduit";

/// A namespace name is a DNS-1123 label: at most this long.
const MAX_NAMESPACE_LEN: usize = 63;

/// Kubernetes stores `spec.replicas` as an int32.
const MAX_REPLICAS: i64 = i32::MAX as i64;

/// A container image tag: Docker's limit.
const MAX_TAG_LEN: usize = 128;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Replicas of the controller (a Deployment of one, or a StatefulSet).
    #[arg(
        long,
        value_name = "N",
        default_value = "1",
        allow_negative_numbers = true
    )]
    pub controller_replicas: String,
    /// Image pull policy of every container: Always, IfNotPresent or Never.
    #[arg(long, value_name = "POLICY", default_value = "IfNotPresent")]
    pub image_pull_policy: String,
    /// Replicas of the Prometheus Deployment.
    #[arg(
        long,
        value_name = "N",
        default_value = "1",
        allow_negative_numbers = true
    )]
    pub prometheus_replicas: String,
    /// Registry of the controller and web images.
    #[arg(short = 'r', long, default_value = DEFAULT_REGISTRY)]
    pub registry: String,
    /// Tag of the controller and web images.
    #[arg(short = 'v', long = "version", value_name = "VERSION", default_value = DEFAULT_VERSION)]
    pub image_version: String,
    /// Replicas of the web Deployment.
    #[arg(
        long,
        value_name = "N",
        default_value = "1",
        allow_negative_numbers = true
    )]
    pub web_replicas: String,
    /// Namespace of the control plane.
    #[arg(short = 'n', long, value_name = "NAMESPACE", default_value = DEFAULT_NAMESPACE)]
    pub conduit_namespace: String,
    /// The dashboard's install id (default: a new random one). Fixing it
    /// makes the output reproducible, which the golden file needs.
    #[arg(long, hide = true)]
    pub uuid: Option<String>,
    /// Emit the NetworkPolicy that lets only the dashboard (and
    /// `--api-server-cidr`) reach the public API; `false` for clusters
    /// without a policy controller.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub network_policy: bool,
    /// Where the Kubernetes API server's service proxy connects from
    /// (repeatable), allowed to reach the public API too.
    #[arg(long, value_name = "CIDR")]
    pub api_server_cidr: Vec<String>,
}

/// The checked flags: everything [`render`] needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub namespace: String,
    /// Without a trailing `/`.
    pub registry: String,
    pub version: String,
    pub image_pull_policy: PullPolicy,
    pub controller_replicas: i32,
    pub web_replicas: i32,
    pub prometheus_replicas: i32,
    /// The web dashboard's install id (`-uuid=`).
    pub uuid: String,
    /// Whether the public API's NetworkPolicy is emitted.
    pub network_policy: bool,
    /// Sources besides the dashboard the public API accepts (`ipBlock`s).
    pub api_server_cidrs: Vec<String>,
}

/// A container's `imagePullPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

/// A flag `conduit install` cannot use; the message names the flag.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidFlag {
    #[error("--{flag} must be a whole number from 1 to {MAX_REPLICAS}, got {value:?}")]
    Replicas { flag: &'static str, value: String },
    #[error("--image-pull-policy must be Always, IfNotPresent or Never, got {0:?}")]
    PullPolicy(String),
    #[error("--conduit-namespace {value:?} is not a valid namespace name: {why}")]
    Namespace { value: String, why: &'static str },
    #[error("--registry {0:?} is not an image registry: it must be non-empty, without spaces")]
    Registry(String),
    #[error(
        "--version {0:?} is not an image tag: 1 to {MAX_TAG_LEN} letters, digits, '_', '.' or '-', not starting with '.' or '-'"
    )]
    Version(String),
    #[error("--uuid {0:?} is not a UUID (8-4-4-4-12 hex digits)")]
    Uuid(String),
    #[error("--api-server-cidr {0:?} is not a CIDR such as 10.0.0.1/32 or fd00::/64")]
    Cidr(String),
}

impl Args {
    /// Checks every flag; the first bad one is the error.
    pub fn config(&self) -> Result<Config, InvalidFlag> {
        Ok(Config {
            namespace: namespace(&self.conduit_namespace)?,
            registry: registry(&self.registry)?,
            version: version(&self.image_version)?,
            image_pull_policy: pull_policy(&self.image_pull_policy)?,
            controller_replicas: replicas("controller-replicas", &self.controller_replicas)?,
            web_replicas: replicas("web-replicas", &self.web_replicas)?,
            prometheus_replicas: replicas("prometheus-replicas", &self.prometheus_replicas)?,
            uuid: match &self.uuid {
                Some(uuid) => checked_uuid(uuid)?,
                None => random_uuid(),
            },
            network_policy: self.network_policy,
            api_server_cidrs: self
                .api_server_cidr
                .iter()
                .map(|c| cidr(c))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Prints the manifests on stdout; prints nothing when a flag is bad.
    pub fn run(self) -> anyhow::Result<()> {
        let text = render(&self.config()?);
        let mut stdout = std::io::stdout().lock();
        match stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
        {
            // A reader that stopped early (`| head`) took what it wanted.
            Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            result => Ok(result?),
        }
    }
}

impl Default for Config {
    /// What the default flags give, with a fixed install id where
    /// [`Args::config`] draws a random one.
    fn default() -> Self {
        Config {
            namespace: DEFAULT_NAMESPACE.to_string(),
            registry: DEFAULT_REGISTRY.to_string(),
            version: DEFAULT_VERSION.to_string(),
            image_pull_policy: PullPolicy::IfNotPresent,
            controller_replicas: 1,
            web_replicas: 1,
            prometheus_replicas: 1,
            uuid: "00000000-0000-4000-8000-000000000000".to_string(),
            network_policy: true,
            api_server_cidrs: Vec::new(),
        }
    }
}

fn replicas(flag: &'static str, value: &str) -> Result<i32, InvalidFlag> {
    value
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|n| (1..=MAX_REPLICAS).contains(n))
        .and_then(|n| i32::try_from(n).ok())
        .ok_or_else(|| InvalidFlag::Replicas {
            flag,
            value: value.to_string(),
        })
}

fn pull_policy(value: &str) -> Result<PullPolicy, InvalidFlag> {
    [
        PullPolicy::Always,
        PullPolicy::IfNotPresent,
        PullPolicy::Never,
    ]
    .into_iter()
    .find(|p| p.as_str() == value)
    .ok_or_else(|| InvalidFlag::PullPolicy(value.to_string()))
}

/// A DNS-1123 label, as Kubernetes requires of a namespace name.
/// `ADDRESS/PREFIX` with an IPv4 or IPv6 address and a prefix that fits it.
fn cidr(value: &str) -> Result<String, InvalidFlag> {
    let bad = || InvalidFlag::Cidr(value.to_string());
    let (ip, prefix) = value.split_once('/').ok_or_else(bad)?;
    let ip: std::net::IpAddr = ip.parse().map_err(|_| bad())?;
    let prefix: u8 = prefix.parse().map_err(|_| bad())?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if prefix > max {
        return Err(bad());
    }
    Ok(value.to_string())
}

fn namespace(value: &str) -> Result<String, InvalidFlag> {
    let why = if value.is_empty() {
        Some("it is empty")
    } else if value.len() > MAX_NAMESPACE_LEN {
        Some("it is longer than 63 characters")
    } else if !value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        Some("only lowercase letters, digits and '-' are allowed")
    } else if value.starts_with('-') || value.ends_with('-') {
        Some("it must start and end with a letter or digit")
    } else {
        None
    };
    match why {
        Some(why) => Err(InvalidFlag::Namespace {
            value: value.to_string(),
            why,
        }),
        None => Ok(value.to_string()),
    }
}

fn registry(value: &str) -> Result<String, InvalidFlag> {
    let trimmed = value.trim_end_matches('/');
    if trimmed.is_empty() || trimmed.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(InvalidFlag::Registry(value.to_string()));
    }
    Ok(trimmed.to_string())
}

/// A Docker image tag.
fn version(value: &str) -> Result<String, InvalidFlag> {
    let ok = !value.is_empty()
        && value.len() <= MAX_TAG_LEN
        && !value.starts_with(['.', '-'])
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(value.to_string())
    } else {
        Err(InvalidFlag::Version(value.to_string()))
    }
}

fn checked_uuid(value: &str) -> Result<String, InvalidFlag> {
    let groups: Vec<&str> = value.split('-').collect();
    let lengths: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    let hex = groups
        .iter()
        .all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()));
    if lengths == [8, 4, 4, 4, 12] && hex {
        Ok(value.to_ascii_lowercase())
    } else {
        Err(InvalidFlag::Uuid(value.to_string()))
    }
}

/// A random (version 4) UUID, the dashboard's id for this install.
pub fn random_uuid() -> String {
    let mut bytes = fastrand::u128(..).to_be_bytes();
    bytes[6] = 0x40 | (bytes[6] & 0x0f); // version 4: random
    bytes[8] = 0x80 | (bytes[8] & 0x3f); // the RFC 4122 variant
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_edge_values_pass() {
        assert_eq!(namespace(&"a".repeat(63)).unwrap().len(), 63);
        assert_eq!(namespace("0-a").unwrap(), "0-a");
        assert_eq!(registry("localhost:5000/x/").unwrap(), "localhost:5000/x");
        assert_eq!(version("latest").unwrap(), "latest");
        assert_eq!(replicas("web-replicas", "2147483647").unwrap(), i32::MAX);
        assert_eq!(
            checked_uuid("0123ABCD-0000-4000-8000-00000000000F").unwrap(),
            "0123abcd-0000-4000-8000-00000000000f"
        );
    }

    #[test]
    fn random_uuids_are_version_4_and_differ() {
        let a = random_uuid();
        let b = random_uuid();
        assert_ne!(a, b);
        for uuid in [a, b] {
            assert_eq!(checked_uuid(&uuid).unwrap(), uuid);
            assert_eq!(&uuid[14..15], "4");
            assert!("89ab".contains(&uuid[19..20]), "{uuid}");
        }
    }
}
