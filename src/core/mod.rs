//! Domain types shared by every component: addresses, listen addresses and
//! the process-wide shutdown signal. Imports neither tonic nor kube.

pub mod addr;
pub mod shutdown;
pub mod units;

pub use addr::{ListenAddr, ip_from_proto, ip_to_proto};
pub use shutdown::{Shutdown, ShutdownHandle};

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
