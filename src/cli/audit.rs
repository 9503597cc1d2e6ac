//! `tessera audit verify|export`: operator commands run beside the store
//! (with its data directory or database URL and the master key, which
//! unwraps the chain key), not over the API.

use crate::config::StoreArgs;
use crate::service::audit::Verified;
use clap::Subcommand;
use std::io::Write;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check every chain of the audit log, link by link; exit 1 naming the
    /// first broken link.
    Verify {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Write the audit log as JSON Lines (one event per line, chain by
    /// chain in order) to standard output, for a SIEM.
    Export {
        /// Only events at or after this time (RFC 3339, e.g.
        /// 2026-12-01T00:00:00Z).
        #[arg(long)]
        since: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
}

pub async fn run(cmd: AuditCommand) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::Verify { store } => {
            let service = crate::app::open_service(&store).await?;
            match service.verify_audit().await? {
                Verified::Intact { chains, events } => {
                    println!("audit log intact: {events} events in {chains} chains");
                    Ok(())
                }
                Verified::Broken(broken) => Err(super::Exit {
                    code: 1,
                    message: Some(format!("audit log broken: {broken}")),
                }
                .into()),
            }
        }
        AuditCommand::Export { since, store } => {
            let since = match since {
                Some(t) => chrono::DateTime::parse_from_rfc3339(&t)
                    .map_err(|e| anyhow::anyhow!("--since {t:?} is not an RFC 3339 time: {e}"))?
                    .timestamp_micros(),
                None => i64::MIN,
            };
            let service = crate::app::open_service(&store).await?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let n = service
                .export_audit(since, |e| {
                    let line = serde_json::json!({
                        "event": e.event,
                        "mac": hex::encode(e.mac),
                    });
                    writeln!(out, "{line}")
                })
                .await?;
            out.flush()?;
            eprintln!("exported {n} events");
            Ok(())
        }
    }
}
