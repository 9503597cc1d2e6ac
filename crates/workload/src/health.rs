//! The health of a long-running client (`tessera agent`, `tessera run
//! --watch`) as a small status file that a supervisor checks with
//! `tessera agent status` / `tessera run status` (a Kubernetes exec probe,
//! a systemd timer).
//!
//! The client rewrites the file after every round with the server (every
//! long poll's answer, changed or not), on every change of state and when
//! it stops. A client is healthy when its last round is younger than the
//! probe's `--max-age`, it is not failing to apply what it received, and it
//! has not stopped. A process that hangs or dies stops refreshing the file,
//! so its age alone tells. The file holds names, revisions and error
//! messages, never a value.

use super::link::human;
use super::Exit;
use crate::domain::time::{now_micros, rfc3339, Micros};
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::time::Duration;

const FORMAT: u32 = 1;

/// The default `--max-age`: a long poll waits 55 s, so a healthy client
/// completes a round at least once a minute.
pub const DEFAULT_MAX_AGE: &str = "2m";

/// A problem and when it began.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub since: String,
    pub error: String,
}

/// The status file's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub format: u32,
    /// `agent` or `run --watch`.
    pub command: String,
    pub pid: u32,
    pub started_at: String,
    pub updated_at: String,
    /// The end of the last round with the server (an answer, 200 or 304).
    pub last_round_at: Option<String>,
    /// The revision last applied in full, and how many secrets it holds.
    pub revision: Option<i64>,
    pub secrets: Option<usize>,
    /// The server cannot be reached (judged by `last_round_at`'s age).
    pub unreachable: Option<Problem>,
    /// What was received cannot be applied (files that cannot be written,
    /// values the command cannot take): unhealthy at once.
    pub failing: Option<Problem>,
    pub stopped_at: Option<String>,
}

/// The client's side: the status as it changes.
#[derive(Debug)]
pub struct Health {
    status: Status,
}

impl Health {
    pub fn new(command: &str) -> Self {
        let now = rfc3339(now_micros());
        Self {
            status: Status {
                format: FORMAT,
                command: command.to_owned(),
                pid: std::process::id(),
                started_at: now.clone(),
                updated_at: now,
                last_round_at: None,
                revision: None,
                secrets: None,
                unreachable: None,
                failing: None,
                stopped_at: None,
            },
        }
    }

    pub fn status(&self) -> &Status {
        &self.status
    }

    /// A round with the server ended with an answer.
    pub fn round(&mut self) {
        self.status.last_round_at = Some(rfc3339(now_micros()));
        self.status.unreachable = None;
    }

    /// What was received was applied in full.
    pub fn applied(&mut self, revision: i64, secrets: usize) {
        self.status.revision = Some(revision);
        self.status.secrets = Some(secrets);
        self.status.failing = None;
    }

    /// What was received can be applied, and will be later (`run --watch`
    /// waiting for quiet before its restart): no longer failing, while
    /// `revision` stays what is applied.
    pub fn applicable(&mut self) {
        self.status.failing = None;
    }

    pub fn unreachable(&mut self, error: &str) {
        let since = match &self.status.unreachable {
            Some(p) => p.since.clone(),
            None => rfc3339(now_micros()),
        };
        self.status.unreachable = Some(Problem {
            since,
            error: error.to_owned(),
        });
    }

    pub fn failing(&mut self, error: &str) {
        let since = match &self.status.failing {
            Some(p) => p.since.clone(),
            None => rfc3339(now_micros()),
        };
        self.status.failing = Some(Problem {
            since,
            error: error.to_owned(),
        });
    }

    pub fn is_failing(&self) -> bool {
        self.status.failing.is_some()
    }

    pub fn stopped(&mut self) {
        self.status.stopped_at = Some(rfc3339(now_micros()));
    }

    /// The file's bytes, stamped now.
    pub fn render(&mut self) -> Vec<u8> {
        self.status.updated_at = rfc3339(now_micros());
        let mut bytes = serde_json::to_vec_pretty(&self.status).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }
}

/// Writes the status with `write`, logging a failure once per run of
/// failures (a status that cannot be written makes a probe fail by age,
/// which is what it should do).
pub fn save(
    health: &mut Health,
    failed_before: &mut bool,
    write: impl FnOnce(&[u8]) -> std::io::Result<()>,
) {
    match write(&health.render()) {
        Ok(()) => *failed_before = false,
        Err(e) => {
            if !*failed_before {
                tracing::warn!(error = %e, "cannot write the status file");
            }
            *failed_before = true;
        }
    }
}

/// Writes a status file at a path (`tessera run --watch --status-file`):
/// a new file beside it (created exclusively, never through a link), then
/// renamed over it.
pub fn write_file(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut temp = path.as_os_str().to_owned();
    temp.push(format!(".tmp-{}", crate::domain::ids::random_base62(8)));
    let temp = std::path::PathBuf::from(temp);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&temp)?;
        f.write_all(bytes)?;
        drop(f);
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Reads a status file (at most 64 KiB, never through a link, never
/// blocking on a FIFO).
pub fn read_file(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)?;
    let mut bytes = Vec::new();
    f.take(1 << 16).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// `tessera run status`: the options of the check.
#[derive(Debug, clap::Args)]
pub struct StatusFileArgs {
    /// The file `tessera run --watch --status-file FILE` writes.
    #[arg(long, value_name = "FILE")]
    pub status_file: std::path::PathBuf,

    /// The oldest last round that still counts as healthy (`90s`, `2m`).
    #[arg(long, value_name = "DURATION", default_value = DEFAULT_MAX_AGE,
          value_parser = tessera_core::duration::parse_duration)]
    pub max_age: Duration,
}

impl StatusFileArgs {
    pub fn check(&self) -> anyhow::Result<()> {
        check(
            read_file(&self.status_file),
            &self.status_file.display().to_string(),
            self.max_age,
        )
    }
}

/// The verdict on a status, as of `now`.
pub fn verdict(status: &Status, now: Micros, max_age: Duration) -> Result<String, String> {
    let age = |at: &str| -> Option<Duration> {
        let t = chrono::DateTime::parse_from_rfc3339(at).ok()?;
        let micros = t.timestamp_micros();
        Some(Duration::from_micros(
            u64::try_from(now - micros).unwrap_or(0),
        ))
    };
    let ago = |at: &str| age(at).map_or_else(|| at.to_owned(), |d| format!("{} ago", human(d)));
    if let Some(at) = &status.stopped_at {
        return Err(match &status.failing {
            Some(p) => format!("stopped {}: {}", ago(at), p.error),
            None => format!("stopped {}", ago(at)),
        });
    }
    if let Some(p) = &status.failing {
        return Err(format!(
            "cannot apply what the server sent (since {}): {}",
            ago(&p.since),
            p.error
        ));
    }
    let held = match (status.revision, status.secrets) {
        (Some(r), Some(n)) => format!(" (revision {r}, {n} secrets)"),
        _ => String::new(),
    };
    let Some(last) = &status.last_round_at else {
        return Err(format!(
            "no round with the server yet (started {})",
            ago(&status.started_at)
        ));
    };
    let Some(last_age) = age(last) else {
        return Err(format!("unreadable time {last:?} in the status"));
    };
    let mut text = format!(
        "the last round with the server ended {} ago{held}",
        human(last_age)
    );
    if let Some(p) = &status.unreachable {
        text.push_str(&format!(
            "; server unreachable since {}: {}",
            ago(&p.since),
            p.error
        ));
    }
    if last_age > max_age {
        return Err(format!("{text}, more than --max-age {}", human(max_age)));
    }
    Ok(text)
}

/// `tessera agent status` / `tessera run status`: prints the verdict;
/// exit 0 when healthy, 1 otherwise (also when there is no status file).
pub fn check(
    bytes: std::io::Result<Vec<u8>>,
    shown: &str,
    max_age: Duration,
) -> anyhow::Result<()> {
    let unhealthy = |why: String| -> anyhow::Error {
        Exit {
            code: 1,
            message: Some(format!("unhealthy: {why}")),
        }
        .into()
    };
    let bytes = match bytes {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(unhealthy(format!(
                "no status file {shown}: the client has not started (or writes elsewhere)"
            )))
        }
        Err(e) => return Err(unhealthy(format!("cannot read {shown}: {e}"))),
    };
    let status: Status = serde_json::from_slice(&bytes)
        .with_context(|| format!("{shown} is not a status file"))
        .map_err(|e| unhealthy(format!("{e:#}")))?;
    match verdict(&status, now_micros(), max_age) {
        Ok(text) => {
            println!("healthy: {text}");
            Ok(())
        }
        Err(why) => Err(unhealthy(why)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Micros = 60_000_000;

    fn status_at(now: Micros) -> Status {
        let mut h = Health::new("agent");
        h.status.started_at = rfc3339(now - 10 * MIN);
        h.status.clone()
    }

    #[test]
    fn healthy_only_while_rounds_are_recent_and_nothing_fails() {
        let now = now_micros();
        let max = Duration::from_secs(120);
        let mut s = status_at(now);
        let e = verdict(&s, now, max).unwrap_err();
        assert!(e.contains("no round with the server yet"), "{e}");

        s.last_round_at = Some(rfc3339(now - MIN));
        s.revision = Some(7);
        s.secrets = Some(2);
        let ok = verdict(&s, now, max).unwrap();
        assert!(ok.contains("60 s ago (revision 7, 2 secrets)"), "{ok}");

        // Unreachable for a little while: still healthy, and says so.
        s.unreachable = Some(Problem {
            since: rfc3339(now - MIN / 2),
            error: "cannot connect".into(),
        });
        let ok = verdict(&s, now, max).unwrap();
        assert!(
            ok.contains("unreachable since 30 s ago: cannot connect"),
            "{ok}"
        );
        // ...until the last round is older than the limit.
        s.last_round_at = Some(rfc3339(now - 3 * MIN));
        let e = verdict(&s, now, max).unwrap_err();
        assert!(
            e.contains("ended 3 min ago") && e.contains("more than --max-age 2 min"),
            "{e}"
        );

        // Failing to apply: unhealthy however recent the round.
        s.last_round_at = Some(rfc3339(now));
        s.failing = Some(Problem {
            since: rfc3339(now - MIN),
            error: "cannot write hf_token".into(),
        });
        let e = verdict(&s, now, max).unwrap_err();
        assert!(e.contains("cannot write hf_token"), "{e}");

        s.stopped_at = Some(rfc3339(now));
        let e = verdict(&s, now, max).unwrap_err();
        assert!(
            e.starts_with("stopped 0 s ago: cannot write hf_token"),
            "{e}"
        );
    }

    #[test]
    fn the_file_round_trips_and_holds_no_surprises() {
        let mut h = Health::new("run --watch");
        h.round();
        h.applied(3, 1);
        h.failing("x");
        h.failing("y");
        let bytes = h.render();
        let back: Status = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(&back, h.status());
        assert_eq!(back.failing.as_ref().unwrap().error, "y");
        h.applied(4, 1);
        assert!(!h.is_failing());
    }
}
