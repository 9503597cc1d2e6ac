use clap::Parser;
use tessera::cli::{run, Cli};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tessera::telemetry::init_logging();
    tessera::telemetry::install_panic_hook();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tessera: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
