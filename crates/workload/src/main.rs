//! `tessera-workload`: `tessera agent` and `tessera run` without the server
//! (no database driver inside), for images that only consume secrets.

use clap::{Parser, Subcommand};
use tessera_workload::{agent, run};

#[derive(Debug, Parser)]
#[command(
    name = "tessera-workload",
    version,
    about = "Tessera's workload side: the agent and `run`, without the server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Keep a directory equal to a workload key's secrets, one file per name.
    Agent(agent::AgentArgs),
    /// Run a command with a workload key's secrets in its environment.
    Run(run::RunArgs),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tessera_core::telemetry::init_logging();
    tessera_core::telemetry::install_panic_hook();
    let result = match Cli::parse().command {
        Command::Agent(args) => agent::run(args).await,
        Command::Run(args) => run::run(args).await,
    };
    tessera_workload::exit_status("tessera-workload", result)
}
