//! Domain types shared by every component: listen addresses and
//! the process-wide shutdown signal. Imports neither tonic nor kube.

pub mod addr;
pub mod shutdown;
pub mod units;

pub use addr::ListenAddr;
pub use shutdown::{DRAIN_GRACE, Shutdown, ShutdownHandle};

/// The release as the original spelled it (`v0.1.0`): what `Version`
/// answers, what the CLI prints as its own version, the dashboard's footer
/// and the default image tag of `conduit install`, so all of them compare
/// equal.
pub const RELEASE_VERSION: &str = concat!("v", env!("CARGO_PKG_VERSION"));

/// An error and its sources, `: `-separated (tonic's transport error alone
/// says only "transport error").
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}
