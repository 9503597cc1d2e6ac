//! The `tessera` command line: one module per subcommand (`agent` and
//! `run` come from `tessera_workload`).

pub mod admin;
pub mod audit;
pub mod checkpoint_export;
pub mod init;
pub mod migrate;
pub mod org;
pub mod preflight;
pub mod remote;
mod rows;
pub mod secret_history;
pub mod secrets;
pub mod serve;

// `tessera agent` and `tessera run` are the workload crate's code, the same
// the `tessera-workload` binary runs; re-exported under their old names.
pub use tessera_workload::{
    agent, backoff, health, http, link, run, runtime_client, signals, Exit,
};

use crate::config::{ServeArgs, StoreArgs};
use clap::{Parser, Subcommand};
use remote::RemoteArgs;

#[derive(Debug, Parser)]
#[command(
    name = "tessera",
    version,
    about = "Self-hosted secrets manager speaking the Baseten management API"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(Box<ServeArgs>),
    /// Initialize an empty store and print the admin API key.
    Init(StoreArgs),
    /// Apply database migrations and exit.
    Migrate(StoreArgs),
    /// Manage organizations.
    Org {
        #[command(subcommand)]
        command: OrgCommand,
    },
    /// Teams, on a running server (TESSERA_URL, TESSERA_API_KEY).
    Teams {
        #[command(flatten)]
        remote: RemoteArgs,
        #[command(subcommand)]
        command: admin::TeamCommand,
    },
    /// Users, on a running server.
    Users {
        #[command(flatten)]
        remote: RemoteArgs,
        #[command(subcommand)]
        command: admin::UserCommand,
    },
    /// Team memberships, on a running server.
    Members {
        #[command(flatten)]
        remote: RemoteArgs,
        #[command(subcommand)]
        command: admin::MemberCommand,
    },
    /// API keys, on a running server.
    Keys {
        #[command(flatten)]
        remote: RemoteArgs,
        #[command(subcommand)]
        command: admin::KeyCommand,
    },
    /// Secrets (names and metadata; values go in, never out), on a running server.
    Secrets {
        #[command(flatten)]
        remote: RemoteArgs,
        #[command(subcommand)]
        command: secrets::SecretCommand,
    },
    /// The audit log: verify its chains, export it.
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// Keep a directory equal to a workload key's secrets, one file per name.
    Agent(agent::AgentArgs),
    /// Run a command with a workload key's secrets in its environment.
    Run(run::RunArgs),
}

#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Create an organization with its default team and admin user; print its admin API key.
    Create {
        /// Organization name.
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(*args).await,
        Command::Init(args) => init::run(args).await,
        Command::Migrate(args) => migrate::run(args).await,
        Command::Org {
            command: OrgCommand::Create { name, store },
        } => org::create(name, store).await,
        Command::Teams { remote, command } => admin::teams(&remote, command).await,
        Command::Users { remote, command } => admin::users(&remote, command).await,
        Command::Members { remote, command } => admin::members(&remote, command).await,
        Command::Keys { remote, command } => admin::keys(&remote, command).await,
        Command::Secrets { remote, command } => secrets::secrets(&remote, command).await,
        Command::Audit { command } => audit::run(command).await,
        Command::Agent(args) => agent::run(args).await,
        Command::Run(args) => run::run(args).await,
    }
}
