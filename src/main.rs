use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = conduit::cli::normalize_args(std::env::args());
    let cli = conduit::cli::Cli::parse_from(args);
    conduit::cli::init_tracing(&cli.log_level, cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("conduit: cannot start the runtime: {error}");
            return std::process::ExitCode::from(1);
        }
    };
    match runtime.block_on(conduit::cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("conduit: {error:#}");
            std::process::ExitCode::from(1)
        }
    }
}
