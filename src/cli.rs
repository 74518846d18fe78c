//! The `conduit` command line: clap definitions, the original's single-dash
//! flag spelling, and the wiring of each subcommand to its component.

use clap::{CommandFactory, Parser, Subcommand};

use crate::core::ShutdownHandle;

#[derive(Debug, Parser)]
#[command(
    name = "conduit",
    version,
    about = "Conduit service mesh control plane"
)]
pub struct Cli {
    /// Log level or tracing filter (also read from RUST_LOG).
    #[arg(long, global = true, default_value = "info")]
    pub log_level: String,

    /// Log lines as text (coloured only on a terminal) or as one JSON
    /// object per line, for log pipelines.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// How long servers drain after SIGTERM before open connections are
    /// cut (then telemetry's last remote-write flush runs).
    #[arg(long, global = true, default_value = "15s", value_parser = crate::core::units::parse_duration)]
    pub shutdown_grace: std::time::Duration,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one server component of the control plane.
    #[command(subcommand)]
    Controller(Controller),
    /// Simulated proxies that report to the telemetry service over real gRPC.
    SimulateProxy(crate::simulate::Args),
    /// The control plane in one process (`--demo`: with simulated traffic).
    Run(crate::run::Args),
    /// Request rate, success rate and latency of namespaces, deployments or pods.
    Stat(crate::client::stat::Args),
    /// Who calls whom: source → destination pairs with their traffic.
    Edges(crate::client::edges::Args),
    /// One deployment's traffic per route (`routes deploy NAME`).
    Routes(crate::client::routes::Args),
    /// Whether the control plane is up and healthy, one line per check.
    Check(crate::client::check::Args),
    /// The web dashboard's address, opened in a browser.
    Dashboard(crate::client::dashboard::Args),
    /// List resources of the mesh (`get pods`, `get deployments`).
    Get(crate::client::get::Args),
    /// The versions of this client and of the public API.
    Version(crate::client::version::Args),
    /// The web dashboard, served over HTTP; it talks to the public API.
    Web(crate::web::Args),
    /// Live requests of a deployment or a pod, one line per event.
    Tap(crate::client::tap::Args),
    /// The most frequent requests of a deployment or a pod, live.
    Top(crate::client::top::Args),
    /// Print the Kubernetes manifests of the control plane (pipe to `kubectl apply -f -`).
    Install(crate::install::Args),
}

// Parsed once per process: boxing the larger variants would save nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Controller {
    /// The telemetry ingester: proxies' Report, ListPods and the mesh metrics.
    Telemetry(crate::telemetry::Args),
    /// The public HTTP API of the CLI and dashboard: Stat, ListPods, Version, Tap.
    PublicApi(crate::public_api::Args),
    /// Service discovery for the proxies: Destination.Get streams.
    Destination(crate::destination::Args),
    /// The proxies' single address: forwards Report and Get.
    ProxyApi(crate::proxy_api::Args),
    /// Live requests from the proxies: Tap, on the proxies' Observe.
    Tap(crate::tap::Args),
}

/// Rewrites the original's single-dash long flags (`-addr=:8087`,
/// `-metrics-addr :9997`) to clap's `--addr=:8087`. Only names that are long
/// flags somewhere in the command tree are rewritten, so short flags such as
/// `-n conduit` keep their meaning.
pub fn normalize_args<I: IntoIterator<Item = String>>(args: I) -> Vec<String> {
    let mut longs = std::collections::HashSet::new();
    collect_longs(&Cli::command(), &mut longs);
    let mut out = Vec::new();
    let mut rest_verbatim = false;
    for arg in args {
        if rest_verbatim || arg == "--" {
            rest_verbatim = true;
            out.push(arg);
            continue;
        }
        let rewritten = arg
            .strip_prefix('-')
            .filter(|rest| !rest.starts_with('-'))
            .map(|rest| rest.split_once('=').map_or(rest, |(name, _)| name))
            .filter(|name| name.len() > 1 && longs.contains(*name))
            .map(|_| format!("-{arg}"));
        out.push(rewritten.unwrap_or(arg));
    }
    out
}

fn collect_longs(cmd: &clap::Command, longs: &mut std::collections::HashSet<String>) {
    for arg in cmd.get_arguments() {
        if let Some(long) = arg.get_long() {
            longs.insert(long.to_string());
        }
        if let Some(aliases) = arg.get_all_aliases() {
            longs.extend(aliases.into_iter().map(str::to_string));
        }
    }
    for sub in cmd.get_subcommands() {
        collect_longs(sub, longs);
    }
}

/// Parses the process arguments, runs the chosen command until it finishes
/// or SIGINT/SIGTERM arrives.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let (handle, shutdown) = ShutdownHandle::with_grace(cli.shutdown_grace);
    let signal = tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        handle.signal();
        // A second signal during the drain exits at once.
        wait_for_signal().await;
        std::process::exit(130);
    });
    let result = match cli.command {
        Command::Controller(Controller::Telemetry(args)) => args.run(shutdown).await,
        Command::SimulateProxy(args) => args.run(shutdown).await,
        Command::Run(args) => args.run(shutdown).await,
        Command::Controller(Controller::PublicApi(args)) => args.run(shutdown).await,
        Command::Controller(Controller::Destination(args)) => args.run(shutdown).await,
        Command::Controller(Controller::ProxyApi(args)) => args.run(shutdown).await,
        Command::Controller(Controller::Tap(args)) => args.run(shutdown).await,
        Command::Tap(args) => args.run(shutdown).await,
        Command::Top(args) => args.run(shutdown).await,
        Command::Stat(args) => args.run().await,
        Command::Edges(args) => args.run().await,
        Command::Routes(args) => args.run().await,
        Command::Check(args) => args.run().await,
        Command::Dashboard(args) => args.run().await,
        Command::Get(args) => args.run().await,
        Command::Version(args) => args.run().await,
        Command::Web(args) => args.run(shutdown).await,
        Command::Install(args) => args.run(),
    };
    signal.abort();
    result
}

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler needs only a running tokio runtime");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the tracing subscriber on stderr: one line per event, RUST_LOG
/// wins over `-log-level`. Text is coloured only when stderr is a terminal
/// and `NO_COLOR` is unset, so `kubectl logs` and files get plain lines.
pub fn init_tracing(level: &str, format: LogFormat) {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => {
            let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            builder.with_ansi(colour).try_init()
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_originals_destination_and_proxy_api_arguments_parse() {
        let cli = Cli::try_parse_from(norm(&[
            "conduit",
            "controller",
            "destination",
            "-addr=:8089",
            "-metrics-addr=:9999",
            "-cluster-domain=example.com",
            "-heartbeat=2s",
        ]))
        .unwrap();
        let Command::Controller(Controller::Destination(d)) = cli.command else {
            panic!("expected the destination component");
        };
        assert_eq!((d.addr.0.port(), d.metrics_addr.0.port()), (8089, 9999));
        assert_eq!(d.cluster_domain, "example.com");
        assert_eq!(d.heartbeat, std::time::Duration::from_secs(2));
        let cli = Cli::try_parse_from(norm(&[
            "conduit",
            "controller",
            "proxy-api",
            "-addr=:8086",
            "-metrics-addr=:9996",
            "-destination-addr=127.0.0.1:8089",
            "-telemetry-addr=127.0.0.1:8087",
        ]))
        .unwrap();
        let Command::Controller(Controller::ProxyApi(p)) = cli.command else {
            panic!("expected the proxy-api component");
        };
        assert_eq!((p.addr.0.port(), p.metrics_addr.0.port()), (8086, 9996));
        assert_eq!(p.destination_addr, "127.0.0.1:8089");
        assert_eq!(p.telemetry_addr, "127.0.0.1:8087");
    }

    fn norm(args: &[&str]) -> Vec<String> {
        normalize_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn single_dash_long_flags_become_double_dash() {
        assert_eq!(
            norm(&[
                "conduit",
                "controller",
                "telemetry",
                "-addr=:8087",
                "-metrics-addr",
                ":9997"
            ]),
            [
                "conduit",
                "controller",
                "telemetry",
                "--addr=:8087",
                "--metrics-addr",
                ":9997"
            ]
        );
    }

    #[test]
    fn short_flags_and_values_are_left_alone() {
        assert_eq!(
            norm(&["x", "-h", "--addr", "-x"]),
            ["x", "-h", "--addr", "-x"]
        );
        assert_eq!(norm(&["x", "--", "-addr=1"]), ["x", "--", "-addr=1"]);
    }

    #[test]
    fn the_originals_manifest_arguments_parse() {
        let args = norm(&[
            "conduit",
            "controller",
            "telemetry",
            "-addr=:8087",
            "-metrics-addr=:9997",
            "-ignore-namespaces=kube-system",
            "-prometheus-url=http://prometheus:9090",
        ]);
        let cli = Cli::try_parse_from(args).unwrap();
        let Command::Controller(Controller::Telemetry(t)) = cli.command else {
            panic!("expected the telemetry component");
        };
        assert_eq!(t.addr.0.port(), 8087);
        assert_eq!(t.metrics_addr.0.port(), 9997);
        assert_eq!(t.ignore_namespaces, ["kube-system"]);
    }

    #[test]
    fn the_originals_web_arguments_parse() {
        let cli = Cli::try_parse_from(norm(&[
            "conduit",
            "web",
            "-addr=:8084",
            "-metrics-addr=:9994",
            "-api-addr=api.conduit.svc.cluster.local:8085",
            "-static-dir=/dist",
            "-template-dir=/templates",
            "-uuid=5bbd3b8b-2b5b-4b8f-9e0a-0123456789ab",
            "-namespace=conduit",
        ]))
        .unwrap();
        let Command::Web(w) = cli.command else {
            panic!("expected the web dashboard");
        };
        assert_eq!((w.addr.0.port(), w.metrics_addr.0.port()), (8084, 9994));
        assert_eq!(w.api_addr, "api.conduit.svc.cluster.local:8085");
        assert_eq!(w.static_dir.as_deref(), Some(std::path::Path::new("/dist")));
        assert_eq!(
            w.template_dir.as_deref(),
            Some(std::path::Path::new("/templates"))
        );
        assert_eq!(w.uuid, "5bbd3b8b-2b5b-4b8f-9e0a-0123456789ab");
        assert_eq!(w.namespace, "conduit");
    }

    #[test]
    fn the_originals_public_api_arguments_parse() {
        let args = norm(&[
            "conduit",
            "controller",
            "public-api",
            "-addr=:8085",
            "-metrics-addr=:9995",
            "-telemetry-addr=127.0.0.1:8087",
            "-tap-addr=127.0.0.1:8088",
        ]);
        let cli = Cli::try_parse_from(args).unwrap();
        let Command::Controller(Controller::PublicApi(p)) = cli.command else {
            panic!("expected the public-api component");
        };
        assert_eq!(p.addr.0.port(), 8085);
        assert_eq!(p.metrics_addr.0.port(), 9995);
        assert_eq!(p.telemetry_addr, "127.0.0.1:8087");
        assert_eq!(p.tap_addr, "127.0.0.1:8088");
        let defaults = Cli::try_parse_from(["conduit", "controller", "public-api"]).unwrap();
        let Command::Controller(Controller::PublicApi(d)) = defaults.command else {
            panic!("expected the public-api component");
        };
        assert_eq!((d.addr.0.port(), d.metrics_addr.0.port()), (8085, 9995));
        assert_eq!(
            (d.telemetry_addr.as_str(), d.tap_addr.as_str()),
            ("127.0.0.1:8087", "127.0.0.1:8088")
        );
    }

    #[test]
    fn the_shutdown_grace_defaults_to_the_drain_grace() {
        let cli = Cli::try_parse_from(norm(&["conduit", "controller", "tap"])).unwrap();
        assert_eq!(cli.shutdown_grace, crate::core::DRAIN_GRACE);
        let cli = Cli::try_parse_from(norm(&["conduit", "run", "-shutdown-grace=2s"])).unwrap();
        assert_eq!(cli.shutdown_grace, std::time::Duration::from_secs(2));
    }

    /// `conduit install`'s flags as the command line spells them (the
    /// install module checks what they say; this is how they arrive).
    mod install_flags {
        use super::*;
        use crate::install::{Args, Config, DEFAULT_VERSION, InvalidFlag, PullPolicy};

        fn parse(args: &[&str]) -> Result<Args, clap::Error> {
            let cli = Cli::try_parse_from(normalize_args(args.iter().map(|s| s.to_string())))?;
            match cli.command {
                Command::Install(args) => Ok(args),
                other => panic!("expected install, got {other:?}"),
            }
        }

        #[test]
        fn cli_short_long_and_single_dash_flags_of_install() {
            let short = parse(&[
                "conduit",
                "install",
                "-v",
                "v9.9.9",
                "-r",
                "example.com/mesh",
                "-n",
                "mesh",
            ])
            .unwrap();
            let long = parse(&[
                "conduit",
                "install",
                "--version",
                "v9.9.9",
                "--registry=example.com/mesh",
                "--conduit-namespace",
                "mesh",
            ])
            .unwrap();
            let single_dash = parse(&[
                "conduit",
                "install",
                "-version=v9.9.9",
                "-registry",
                "example.com/mesh",
                "-conduit-namespace=mesh",
                "-controller-replicas=3",
                "-web-replicas=2",
                "-prometheus-replicas=4",
                "-image-pull-policy=Always",
            ])
            .unwrap();
            for args in [&short, &long, &single_dash] {
                assert_eq!(args.image_version, "v9.9.9");
                assert_eq!(args.registry, "example.com/mesh");
                assert_eq!(args.conduit_namespace, "mesh");
            }
            let config = single_dash.config().unwrap();
            assert_eq!(
                (
                    config.controller_replicas,
                    config.web_replicas,
                    config.prometheus_replicas,
                    config.image_pull_policy
                ),
                (3, 2, 4, PullPolicy::Always)
            );
        }

        #[test]
        fn cli_version_of_the_binary_is_still_capital_v_and_top_level() {
            for flag in ["-V", "--version"] {
                let error = Cli::try_parse_from(["conduit", flag]).unwrap_err();
                assert_eq!(error.kind(), clap::error::ErrorKind::DisplayVersion);
            }
            // Under `install`, `-v`/`--version` is the image tag, and `-V` is
            // not a flag at all.
            assert_eq!(
                parse(&["conduit", "install", "-v", "v1"])
                    .unwrap()
                    .image_version,
                "v1"
            );
            assert!(parse(&["conduit", "install", "-V"]).is_err());
        }

        #[test]
        fn cli_defaults_of_install() {
            let args = parse(&["conduit", "install"]).unwrap();
            let config = args.config().unwrap();
            assert_eq!(
                Config {
                    uuid: Config::default().uuid,
                    ..config
                },
                Config::default()
            );
            assert_eq!(DEFAULT_VERSION, format!("v{}", env!("CARGO_PKG_VERSION")));
        }

        #[test]
        fn cli_negative_replicas_reach_the_check() {
            let args = parse(&["conduit", "install", "--web-replicas", "-1"]).unwrap();
            assert_eq!(
                args.config().unwrap_err().to_string(),
                "--web-replicas must be a whole number from 1 to 2147483647, got \"-1\""
            );
        }

        #[test]
        fn bad_flags_are_named() {
            let args = |f: &dyn Fn(&mut Args)| {
                let mut args = parse(&["conduit", "install"]).unwrap();
                f(&mut args);
                args.config().unwrap_err()
            };
            for bad in ["0", "-3", "two", "", "2147483648", "1.5"] {
                let error = args(&|a| a.controller_replicas = bad.to_string());
                assert!(
                    matches!(
                        error,
                        InvalidFlag::Replicas {
                            flag: "controller-replicas",
                            ..
                        }
                    ),
                    "{bad:?}: {error}"
                );
            }
            assert!(matches!(
                args(&|a| a.image_pull_policy = "ifnotpresent".into()),
                InvalidFlag::PullPolicy(_)
            ));
            for bad in ["", "Bad_NS", "-a", "a-", "a.b", &"a".repeat(64)] {
                assert!(
                    matches!(
                        args(&|a| a.conduit_namespace = bad.into()),
                        InvalidFlag::Namespace { .. }
                    ),
                    "{bad:?}"
                );
            }
            assert!(matches!(
                args(&|a| a.registry = "".into()),
                InvalidFlag::Registry(_)
            ));
            assert!(matches!(
                args(&|a| a.registry = "a b".into()),
                InvalidFlag::Registry(_)
            ));
            for bad in ["", "-x", ".x", "v1:2", "v 1"] {
                assert!(matches!(
                    args(&|a| a.image_version = bad.into()),
                    InvalidFlag::Version(_)
                ));
            }
            assert!(matches!(
                args(&|a| a.uuid = Some("x".into())),
                InvalidFlag::Uuid(_)
            ));
        }
    }
}
