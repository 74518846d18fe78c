//! Domain types shared by every component: addresses, listen addresses and
//! the process-wide shutdown signal. Imports neither tonic nor kube.

pub mod addr;
pub mod shutdown;
pub mod units;

pub use addr::{ListenAddr, ip_from_proto, ip_to_proto};
pub use shutdown::{Shutdown, ShutdownHandle};
