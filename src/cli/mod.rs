//! The `tessera` command line: one module per subcommand.

pub mod admin;
pub mod init;
pub mod migrate;
pub mod org;
pub mod remote;
pub mod serve;

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
    }
}
