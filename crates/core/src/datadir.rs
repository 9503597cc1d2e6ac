//! The data directory and Tessera's files in it.
//!
//! Whatever the umask, the directory is created 0700 and every file Tessera
//! writes in it is 0600 or stricter (`master.key` 0400): the SQLite database
//! with its `-wal` and `-shm` files, `admin.key`, and the lock file that keeps
//! a second server off a SQLite database. An existing directory that other
//! users can reach is made private when it holds nothing but Tessera's files
//! (a data directory made by an older version, an empty volume); holding
//! anything else, it is refused, with the `chmod` that fixes it.

use anyhow::{bail, Context};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Names of the files Tessera keeps in a data directory.
pub const OWN_FILES: &[&str] = &[
    "tessera.db",
    "tessera.db-wal",
    "tessera.db-shm",
    "tessera.db-journal",
    "tessera.db.lock",
    "master.key",
    "admin.key",
];

#[cfg(unix)]
fn mode_of(meta: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o7777
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {} to {mode:04o}", path.display()))
}

/// Creates `dir` (and missing parents) with mode 0700.
pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .with_context(|| format!("creating directory {}", dir.display()))?;
    // The umask can only have removed bits; make it exactly 0700.
    #[cfg(unix)]
    set_mode(dir, 0o700)?;
    Ok(())
}

/// What [`ensure_data_dir`] will find: refuses, changing nothing, a data
/// directory it would refuse (not a directory; reachable by others and
/// holding files that are not Tessera's). Start-up checks this before it
/// changes anything (`cli::preflight`).
pub fn check_data_dir(dir: &Path) -> anyhow::Result<()> {
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(e).with_context(|| format!("reading data directory {}", dir.display()))
        }
    };
    if !meta.is_dir() {
        bail!("the data directory {} is not a directory", dir.display());
    }
    #[cfg(unix)]
    {
        let mode = mode_of(&meta);
        if mode & 0o077 != 0 {
            let foreign = foreign_entries(dir)?;
            if !foreign.is_empty() {
                bail!(
                    "the data directory {dir} can be reached by other users (mode {mode:04o}) and holds \
                     files Tessera did not create ({names}); make it private with `chmod 700 {dir}`, \
                     or choose another --data-dir",
                    dir = dir.display(),
                    names = foreign.join(", ")
                );
            }
        }
    }
    Ok(())
}

/// Makes sure the data directory exists and only its owner can reach it.
pub fn ensure_data_dir(dir: &Path) -> anyhow::Result<()> {
    check_data_dir(dir)?;
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return create_private_dir(dir),
        Err(e) => {
            return Err(e).with_context(|| format!("reading data directory {}", dir.display()))
        }
    };
    #[cfg(unix)]
    {
        let mode = mode_of(&meta);
        if mode & 0o077 != 0 {
            set_mode(dir, 0o700).with_context(|| {
                format!(
                    "the data directory {} can be reached by other users (mode {mode:04o}) and could not be made private",
                    dir.display()
                )
            })?;
            tracing::warn!(
                dir = %dir.display(),
                was = format!("{mode:04o}"),
                "made the data directory private (0700)"
            );
        }
    }
    Ok(())
}

/// Entries of `dir` that are not Tessera's.
fn foreign_entries(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if !OWN_FILES.contains(&name.as_str()) {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

/// Creates an empty file readable and writable by its owner only (0600). An
/// existing file is left as it is.
pub fn create_private_file(path: &Path) -> anyhow::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    match opts.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}

/// Takes group and other access away from one of Tessera's files, if it
/// exists (a file made by an older version); its owner's bits stay.
pub fn restrict_file(path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = mode_of(&meta);
        if mode & 0o077 != 0 {
            set_mode(path, mode & 0o700)?;
            tracing::warn!(
                file = %path.display(),
                was = format!("{mode:04o}"),
                "took group and other access away from a data file"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Writes `contents` and a newline to `path`, readable and writable by its
/// owner only (0600), replacing what was there.
pub fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    // An existing file keeps its mode when opened; make it private too.
    restrict_file(path)?;
    writeln!(f, "{contents}")?;
    f.sync_all()?;
    Ok(())
}

/// An exclusive lock on a SQLite database, held for the life of the server:
/// a second server on the same database is refused instead of running with
/// its own caches beside the first. The lock is `<database>.lock` (in the
/// data directory by default) and is released when the process exits,
/// however it exits.
#[derive(Debug)]
pub struct DatabaseLock {
    _file: std::fs::File,
    path: PathBuf,
}

impl DatabaseLock {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The lock file of the SQLite database at `db`.
pub fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Refuses, changing nothing, a SQLite database that another server holds
/// (its lock file exists and is locked) or whose files this process cannot
/// write (a read-only mount, an immutable file, another owner). Start-up
/// checks this before it changes anything (`cli::preflight`); taking the
/// lock ([`lock_database`]) and a test write still decide in the end.
pub fn check_database(db: &Path) -> anyhow::Result<()> {
    let path = lock_path(db);
    if let Ok(file) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
    {
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => {
                let _ = fs4::FileExt::unlock(&file);
            }
            Err(fs4::TryLockError::WouldBlock) => return Err(held_by_another(db, &path)),
            Err(fs4::TryLockError::Error(_)) => {}
        }
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        let file = PathBuf::from(name);
        if !file.exists() {
            continue;
        }
        // Opening for writing, without creating or truncating, changes
        // nothing; it fails where a write would.
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&file)
            .with_context(|| {
                format!(
                    "cannot write the SQLite database {} (is its file system read-only, or {} immutable or another user's?)",
                    db.display(),
                    file.display()
                )
            })?;
    }
    Ok(())
}

/// The refusal when another server holds the database's lock.
fn held_by_another(db: &Path, lock: &Path) -> anyhow::Error {
    let holder = std::fs::read_to_string(lock).unwrap_or_default();
    let holder = holder.trim();
    let by = if holder.is_empty() {
        String::new()
    } else {
        format!(" (process {holder})")
    };
    anyhow::anyhow!(
        "another Tessera server{by} is already using the SQLite database {db}: it holds the lock {lock}. \
         Stop it first, or give this server its own --data-dir",
        db = db.display(),
        lock = lock.display()
    )
}

/// Takes the lock of the SQLite database at `db`, or explains who holds it.
pub fn lock_database(db: &Path) -> anyhow::Result<DatabaseLock> {
    let path = lock_path(db);
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut file = opts.open(&path).with_context(|| {
        format!(
            "cannot create the lock file {} (is the directory writable?)",
            path.display()
        )
    })?;
    restrict_file(&path)?;
    match fs4::FileExt::try_lock(&file) {
        Ok(()) => {}
        Err(fs4::TryLockError::WouldBlock) => return Err(held_by_another(db, &path)),
        Err(fs4::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
    // Say who holds it, for the message above.
    file.set_len(0)?;
    writeln!(file, "{}", std::process::id())?;
    Ok(DatabaseLock { _file: file, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_database_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("tessera.db");
        let first = lock_database(&db).unwrap();
        let err = lock_database(&db).unwrap_err().to_string();
        assert!(err.contains("already using"), "{err}");
        assert!(err.contains(&std::process::id().to_string()), "{err}");
        drop(first);
        lock_database(&db).unwrap();
    }
}
