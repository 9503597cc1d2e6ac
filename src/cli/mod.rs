//! The `tessera` command line: one module per subcommand.

pub mod init;
pub mod migrate;
pub mod org;
pub mod serve;

use crate::config::{ServeArgs, StoreArgs};
use clap::{Parser, Subcommand};

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
    Serve(ServeArgs),
    /// Initialize an empty store and print the admin API key.
    Init(StoreArgs),
    /// Apply database migrations and exit.
    Migrate(StoreArgs),
    /// Manage organizations.
    Org {
        #[command(subcommand)]
        command: OrgCommand,
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
        Command::Serve(args) => serve::run(args).await,
        Command::Init(args) => init::run(args).await,
        Command::Migrate(args) => migrate::run(args).await,
        Command::Org {
            command: OrgCommand::Create { name, store },
        } => org::create(name, store).await,
    }
}
