//! A warning before the data directory's disk is full. When it fills,
//! writes fail and, since no value is sent unrecorded, so do deliveries
//! (fail closed, for every organization): the operator hears of it first,
//! as a metric and a log line, while there is still room.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// How often the disk is looked at.
pub const CHECK_EVERY: Duration = Duration::from_secs(10);

/// While the disk stays low, the warning is repeated this often.
const WARN_AGAIN_EVERY: Duration = Duration::from_secs(600);

/// `--disk-free-warning`: warn when less than this share of the data
/// directory's file system is free (`N%`, 0 to 100; `0%` never warns).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FreeShare(pub f64);

pub const DEFAULT_FREE_WARNING: &str = "10%";

impl FromStr for FreeShare {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a share of the disk: expected N% (0 to 100), e.g. 10%");
        let n: f64 = s
            .trim()
            .strip_suffix('%')
            .ok_or_else(bad)?
            .trim()
            .parse()
            .map_err(|_| bad())?;
        if !(0.0..=100.0).contains(&n) {
            return Err(bad());
        }
        Ok(FreeShare(n / 100.0))
    }
}

/// Free and total bytes of the file system holding `dir` (as an
/// unprivileged process may use them).
pub fn free_space(dir: &Path) -> std::io::Result<(u64, u64)> {
    let s = nix::sys::statvfs::statvfs(dir).map_err(std::io::Error::from)?;
    let block = s.fragment_size() as u64;
    Ok((
        (s.blocks_available() as u64).saturating_mul(block),
        (s.blocks() as u64).saturating_mul(block),
    ))
}

/// Looks at `dir` every [`CHECK_EVERY`] until the process ends: sets
/// `tessera_data_disk_free_bytes` and `tessera_data_disk_free_ratio`, and
/// logs a warning when the free share is below `warn_below`.
pub fn spawn_watch(dir: PathBuf, warn_below: FreeShare) {
    tokio::spawn(async move {
        let mut last_warning: Option<tokio::time::Instant> = None;
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let (free, total) = match free_space(&dir) {
                Ok(v) => v,
                Err(e) => {
                    tracing::debug!(error = %e, "could not read the data directory's free space");
                    continue;
                }
            };
            let ratio = if total == 0 {
                1.0
            } else {
                free as f64 / total as f64
            };
            metrics::gauge!("tessera_data_disk_free_bytes").set(free as f64);
            metrics::gauge!("tessera_data_disk_free_ratio").set(ratio);
            if ratio >= warn_below.0 {
                last_warning = None;
                continue;
            }
            let due = last_warning.is_none_or(|at| at.elapsed() >= WARN_AGAIN_EVERY);
            if due {
                last_warning = Some(tokio::time::Instant::now());
                tracing::warn!(
                    free_bytes = free,
                    free_percent = format!("{:.1}", ratio * 100.0),
                    warn_below_percent = format!("{:.1}", warn_below.0 * 100.0),
                    "DATA DISK NEARLY FULL: when it fills, every write and every delivery fails \
                     (no value is sent unrecorded); free space or grow the volume"
                );
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_parse() {
        assert_eq!("10%".parse::<FreeShare>().unwrap(), FreeShare(0.1));
        assert_eq!(" 0% ".parse::<FreeShare>().unwrap(), FreeShare(0.0));
        assert_eq!("100%".parse::<FreeShare>().unwrap(), FreeShare(1.0));
        for bad in ["10", "101%", "-1%", "x%", ""] {
            assert!(bad.parse::<FreeShare>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_free_space_of_a_directory_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let (free, total) = free_space(dir.path()).unwrap();
        assert!(total > 0 && free <= total);
    }
}
