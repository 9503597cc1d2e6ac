//! `tessera secrets list|set|delete`: operators' secrets commands over the
//! management API (an admin's or a team key). A value is read from
//! standard input or a file, never from the command line, where the process
//! list would show it.

use super::remote::{read, Remote, RemoteArgs};
use crate::wire::management::{SecretInfo, SecretList, SecretTombstoneView};
use anyhow::{bail, Context};
use clap::Subcommand;
use reqwest::Method;
use serde_json::json;
use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use zeroize::Zeroizing;

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// List secrets (names and metadata; values are never shown).
    List {
        /// Only this team's secrets (default: every team you can reach).
        #[arg(long)]
        team: Option<String>,
    },
    /// Create or update a secret. The value is read from standard input,
    /// byte for byte (a trailing newline is kept), or from --from-file. On a
    /// terminal, one line is read with echo off and its line ending dropped.
    Set {
        name: String,
        /// Team (default: your key's team, or the default team).
        #[arg(long)]
        team: Option<String>,
        /// Read the value from this file, byte for byte.
        #[arg(long, value_name = "FILE")]
        from_file: Option<PathBuf>,
        /// Destroy every previous version's value now (rotating a leaked
        /// credential).
        #[arg(long)]
        destroy_previous: bool,
    },
    /// Delete a secret (any spelling with the same canonical name).
    Delete {
        name: String,
        #[arg(long)]
        team: Option<String>,
    },
    #[command(flatten)]
    History(super::secret_history::HistoryCommand),
}

pub async fn secrets(args: &RemoteArgs, cmd: SecretCommand) -> anyhow::Result<()> {
    let r = Remote::new(args)?;
    match cmd {
        SecretCommand::List { team } => {
            let path = match team {
                Some(t) => format!("/v1/teams/{}/secrets", super::admin::seg(&t)),
                None => "/v1/secrets".to_owned(),
            };
            let v = r.call(Method::GET, &path, None).await?;
            r.print_rows(&v, &read::<SecretList>(&v)?.secrets);
        }
        SecretCommand::Set {
            name,
            team,
            from_file,
            destroy_previous,
        } => {
            let value = match from_file {
                Some(path) => read_file(&path)?,
                None => read_stdin(&name).await?,
            };
            let path = match team {
                Some(t) => format!("/v1/teams/{}/secrets", super::admin::seg(&t)),
                None => "/v1/secrets".to_owned(),
            };
            let mut body = json!({"name": name, "value": value.as_str()});
            if destroy_previous {
                body["destroy_previous"] = json!(true);
            }
            drop(value);
            let v = r.call(Method::POST, &path, Some(body)).await?;
            r.print_row(&v, &read::<SecretInfo>(&v)?);
        }
        SecretCommand::Delete { name, team } => {
            let path = match team {
                Some(t) => format!(
                    "/v1/teams/{}/secrets/{}",
                    super::admin::seg(&t),
                    super::admin::seg(&name)
                ),
                None => format!("/v1/secrets/{}", super::admin::seg(&name)),
            };
            let v = r.call(Method::DELETE, &path, None).await?;
            r.print_row(&v, &read::<SecretTombstoneView>(&v)?);
        }
        SecretCommand::History(cmd) => super::secret_history::run(&r, cmd).await?,
    }
    Ok(())
}

fn utf8(mut bytes: Zeroizing<Vec<u8>>, from: &str) -> anyhow::Result<Zeroizing<String>> {
    match String::from_utf8(std::mem::take(&mut *bytes)) {
        Ok(s) => Ok(Zeroizing::new(s)),
        Err(e) => {
            // The bytes handed back with the error are wiped too.
            let mut rejected = e.into_bytes();
            zeroize::Zeroize::zeroize(&mut rejected);
            bail!("the value from {from} is not UTF-8 text; Tessera stores text values")
        }
    }
}

fn read_file(path: &std::path::Path) -> anyhow::Result<Zeroizing<String>> {
    let bytes = Zeroizing::new(
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
    );
    utf8(bytes, &path.display().to_string())
}

async fn read_stdin(name: &str) -> anyhow::Result<Zeroizing<String>> {
    if std::io::stdin().is_terminal() {
        return read_hidden_line(name).await;
    }
    let bytes = tokio::task::spawn_blocking(|| {
        let mut buf = Zeroizing::new(Vec::new());
        std::io::stdin().lock().read_to_end(&mut buf).map(|_| buf)
    })
    .await?
    .context("cannot read the value from standard input")?;
    let value = utf8(bytes, "standard input")?;
    if value.ends_with('\n') {
        eprintln!(
            "tessera: note: the value ends with a newline, which is kept as part of it \
             (use printf '%s' rather than echo to leave it out)"
        );
    }
    Ok(value)
}

/// One line from the terminal with echo off; the line ending is not part of
/// the value. Echo is restored on every path, Ctrl-C included.
async fn read_hidden_line(name: &str) -> anyhow::Result<Zeroizing<String>> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    use tokio::signal::unix::{signal, SignalKind};
    // Catch Ctrl-C before echo goes off, so it can be turned back on.
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin).context("cannot read the terminal's settings")?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet.local_flags.insert(LocalFlags::ECHONL);
    eprint!("Value for {name} (input hidden, Enter to finish): ");
    tcsetattr(&stdin, SetArg::TCSAFLUSH, &quiet).context("cannot turn off echo")?;
    let reader = tokio::task::spawn_blocking(|| {
        let mut line = Zeroizing::new(String::new());
        std::io::stdin().read_line(&mut line).map(|_| line)
    });
    let result = tokio::select! {
        r = reader => r.map_err(anyhow::Error::from).and_then(|r| r.map_err(anyhow::Error::from)),
        _ = interrupt.recv() => Err(anyhow::anyhow!("interrupted")),
    };
    let restored = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
    let mut line = result.context("cannot read the value from the terminal")?;
    restored.context("cannot restore the terminal's echo")?;
    if line.ends_with('\n') {
        line.pop();
        if line.ends_with('\r') {
            line.pop();
        }
    }
    Ok(line)
}
