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

/// A component's flags, every one at its default, as its command line
/// would give them with none set: one definition of each default (the clap
/// attributes) for the standalone components and for `conduit run`, which
/// sets the rest as typed values. Panics if a flag has no default; every
/// component's flags have one.
pub fn flag_defaults<T: clap::Args + clap::FromArgMatches>() -> T {
    let command = T::augment_args(clap::Command::new("conduit"));
    let matches = command
        .try_get_matches_from(["conduit"])
        .expect("every flag of a component has a default");
    T::from_arg_matches(&matches).expect("the defaults parse as the flags' types")
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, clap::Args)]
    struct Flags {
        #[arg(long, default_value = ":8087")]
        addr: ListenAddr,
        #[arg(long, default_value = "10s", value_parser = units::parse_duration)]
        every: std::time::Duration,
        #[arg(long)]
        url: Option<String>,
        #[arg(long, value_delimiter = ',')]
        names: Vec<String>,
    }

    #[test]
    fn flag_defaults_are_the_command_lines_defaults() {
        let flags: Flags = flag_defaults();
        assert_eq!(
            flags,
            Flags {
                addr: ":8087".parse().unwrap(),
                every: std::time::Duration::from_secs(10),
                url: None,
                names: Vec::new(),
            }
        );
    }
}
