//! What `serve` checks before it changes anything: a refused start changes
//! nothing (issue 25, stumble 9: `serve` had made a database file private
//! and then refused to start for a missing master key).
//!
//! Start-up changes things in this order once these checks pass: the data
//! directory (created 0700, or made 0700), the SQLite lock file, the
//! database files' modes, the schema (migrations), a generated master key,
//! the first organization and `admin.key`. Every refusal that can be known
//! from what is already there is decided here first, from reads only: the
//! data directory's state, the SQLite lock and the files' writability, the
//! master key (its file's mode, its form) and whether it opens what the
//! store holds, read without creating, migrating or writing anything
//! (`store::peek`). The steps after still check for themselves (a test
//! write, the lock taken for real, the key recorded), so a race with
//! another process is still refused, though possibly after a change.

use crate::config::StoreArgs;
use crate::crypto::master_key::{self, MasterKey, MasterKeySource};
use crate::crypto::Keyring;

/// Refuses, changing nothing, a start that start-up would refuse later.
/// Returns the master key when it was loaded, so that start-up does not load
/// it again (a key command runs once per start).
pub async fn check(args: &StoreArgs) -> anyhow::Result<Option<MasterKey>> {
    let source = args.master_key_source();
    let key_in_data_dir = matches!(&source, MasterKeySource::File { create: true, .. });
    if args.sqlite_in_data_dir() || key_in_data_dir {
        crate::datadir::check_data_dir(&args.data_dir)?;
    }
    if let Some(db) = args.sqlite_path() {
        crate::datadir::check_database(&db)?;
    }
    // `None`: the default key file is missing (a new store gets one).
    let key = match &source {
        MasterKeySource::File { path, create: true } if !path.exists() => None,
        _ => Some(master_key::load(&source)?),
    };
    let peeked = match crate::store::peek(&args.database_url()).await {
        Ok(p) => p,
        Err(e) => {
            // Opening the store for real says what is wrong (and changes
            // nothing before it can).
            tracing::debug!(error = %e, "could not read the store before start-up; opening it will tell");
            return Ok(key);
        }
    };
    let Some(held) = peeked else { return Ok(key) };
    match (&key, &source) {
        (Some(key), _) => {
            // An empty store takes any key (`Ok(false)`).
            Keyring::new(key).verify_against(&held.keks)?;
        }
        (None, MasterKeySource::File { path, .. }) => {
            if !held.keks.is_empty() || held.organizations > 0 {
                let ids: Vec<&str> = held.keks.iter().map(|(id, _)| id.as_str()).collect();
                return Err(crate::app::missing_key_for_existing_data(path, &ids));
            }
        }
        (None, _) => {}
    }
    Ok(key)
}
