//! The `tessera` command line: one module per subcommand.

pub mod admin;
pub mod agent;
pub mod audit;
pub mod backoff;
pub mod checkpoint_export;
pub mod health;
pub mod init;
pub mod link;
pub mod migrate;
pub mod org;
pub mod preflight;
pub mod remote;
pub mod run;
pub mod runtime_client;
pub mod secret_history;
pub mod secrets;
pub mod serve;
pub mod signals;

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

/// An exit status a command chose (`tessera run --watch` exits with its
/// child's), with an optional message for standard error.
#[derive(Debug)]
pub struct Exit {
    pub code: u8,
    pub message: Option<String>,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.message {
            Some(m) => f.write_str(m),
            None => write!(f, "exit status {}", self.code),
        }
    }
}

impl std::error::Error for Exit {}

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
