//! The agent's directory: private modes, atomic writes, and nothing outside
//! it. Every file name used here has passed [`is_safe_file_name`].

use crate::domain::secret_name::SecretName;
use anyhow::{bail, Context};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Prefix of the agent's temporary files (leftovers from a crash are
/// removed at the next start).
pub const TEMP_PREFIX: &str = ".tessera-agent.tmp-";

/// A name the agent may create in its directory: a valid secret name (so
/// `[A-Za-z0-9._-]`, first character a letter, a digit or `_`: never `/`,
/// `.`, `..` or a hidden file).
pub fn is_safe_file_name(name: &str) -> bool {
    SecretName::parse(name).is_ok()
}

/// Modes and ownership of the directory and of the value files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    pub dir_mode: u32,
    pub file_mode: u32,
    /// Group given to the directory and the value files (`--group`).
    pub gid: Option<u32>,
}

impl Access {
    pub fn private() -> Self {
        Self {
            dir_mode: 0o700,
            file_mode: 0o600,
            gid: None,
        }
    }

    pub fn shared_with_group(gid: u32) -> Self {
        Self {
            dir_mode: 0o750,
            file_mode: 0o640,
            gid: Some(gid),
        }
    }
}

/// Resolves `--group`: a group name (through the system's group database)
/// or a numeric id.
pub fn resolve_group(group: &str) -> anyhow::Result<u32> {
    if let Some(g) = nix::unistd::Group::from_name(group)
        .with_context(|| format!("cannot look up group {group:?}"))?
    {
        return Ok(g.gid.as_raw());
    }
    match group.parse::<u32>() {
        Ok(gid) => Ok(gid),
        Err(_) => bail!("no group named {group:?}"),
    }
}

/// The agent's directory, created and locked.
pub struct SecretsDir {
    path: PathBuf,
    access: Access,
    /// Held for the agent's lifetime: a second agent on the same directory
    /// is refused.
    _lock: nix::fcntl::Flock<File>,
}

impl SecretsDir {
    /// Creates the directory if needed, sets its mode and group, and takes
    /// an exclusive lock on it.
    pub fn open(path: &Path, access: Access) -> anyhow::Result<Self> {
        let shown = path.display();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(access.dir_mode)
            .create(path)
            .with_context(|| format!("cannot create {shown}"))?;
        let meta = fs::metadata(path).with_context(|| format!("cannot read {shown}"))?;
        if !meta.is_dir() {
            bail!("{shown} is not a directory");
        }
        if let Some(gid) = access.gid {
            if meta.gid() != gid {
                std::os::unix::fs::chown(path, None, Some(gid)).with_context(|| {
                    format!("cannot give {shown} to group {gid} (the agent must own it and belong to the group)")
                })?;
            }
        }
        if meta.permissions().mode() & 0o7777 != access.dir_mode {
            fs::set_permissions(path, fs::Permissions::from_mode(access.dir_mode))
                .with_context(|| format!("cannot set the mode of {shown}"))?;
        }
        let handle = File::open(path).with_context(|| format!("cannot open {shown}"))?;
        let lock = nix::fcntl::Flock::lock(handle, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|(_, errno)| match errno {
                nix::errno::Errno::EWOULDBLOCK => {
                    anyhow::anyhow!("another tessera agent is already keeping {shown}")
                }
                e => anyhow::anyhow!("cannot lock {shown}: {e}"),
            })?;
        Ok(Self {
            path: path.to_owned(),
            access,
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn file(&self, name: &str) -> io::Result<PathBuf> {
        // Never anything but a plain name directly inside the directory.
        if !is_safe_file_name(name) && name != super::manifest::FILE_NAME {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("refusing the file name {name:?}"),
            ));
        }
        Ok(self.path.join(name))
    }

    /// When the directory is not on a memory file system, why that matters.
    pub fn memory_fs_warning(&self) -> Option<String> {
        match on_memory_fs(&self.path) {
            Ok(true) => None,
            Ok(false) => Some(format!(
                "{} is not on a memory file system (tmpfs or ramfs): secret values will rest \
                 unencrypted on disk there; prefer a tmpfs mount",
                self.path.display()
            )),
            Err(e) => Some(format!(
                "cannot tell which file system holds {}: {e}",
                self.path.display()
            )),
        }
    }

    /// The bytes of `name` if it is a regular file in the directory.
    pub fn read(&self, name: &str) -> io::Result<Option<Zeroizing<Vec<u8>>>> {
        let path = self.file(name)?;
        match fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_file() => {}
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        }
        let mut f = match OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let len = f.metadata()?.len().min(1 << 24) as usize;
        let mut buf = Zeroizing::new(Vec::with_capacity(len + 1));
        f.read_to_end(&mut buf)?;
        Ok(Some(buf))
    }

    /// Whether a file exists under `name` (of any kind).
    pub fn exists(&self, name: &str) -> io::Result<bool> {
        match fs::symlink_metadata(self.file(name)?) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Whether `name`'s mode and group are what the value files should have.
    pub fn has_value_access(&self, name: &str) -> io::Result<bool> {
        let m = fs::symlink_metadata(self.file(name)?)?;
        Ok(m.permissions().mode() & 0o7777 == self.access.file_mode
            && self.access.gid.is_none_or(|g| m.gid() == g))
    }

    /// Writes a value file atomically: a new temporary file in the
    /// directory with the final mode and group, the bytes, fsync, rename
    /// over `name`, fsync of the directory.
    pub fn write_value(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.write_atomic(name, bytes, self.access.file_mode, self.access.gid)
    }

    /// Writes one of the agent's own files (the manifest): mode 0600 always.
    pub fn write_private(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.write_atomic(name, bytes, 0o600, None)
    }

    fn write_atomic(
        &self,
        name: &str,
        bytes: &[u8],
        mode: u32,
        gid: Option<u32>,
    ) -> io::Result<()> {
        let target = self.file(name)?;
        let temp = self.path.join(format!(
            "{TEMP_PREFIX}{}",
            crate::domain::ids::random_base62(12)
        ));
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .custom_flags(nix::libc::O_NOFOLLOW)
                .open(&temp)?;
            // The umask may have narrowed the mode; the group comes first so
            // the file is never readable by another group.
            if let Some(g) = gid {
                std::os::unix::fs::fchown(&f, None, Some(g))?;
            }
            f.set_permissions(fs::Permissions::from_mode(mode))?;
            f.write_all(bytes)?;
            f.sync_all()?;
            drop(f);
            fs::rename(&temp, &target)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result?;
        self.sync()
    }

    /// Gives an existing value file the right mode and group.
    pub fn fix_value_access(&self, name: &str) -> io::Result<()> {
        let path = self.file(name)?;
        if let Some(g) = self.access.gid {
            std::os::unix::fs::lchown(&path, None, Some(g))?;
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(self.access.file_mode))
    }

    /// Removes `name`; `false` when it was already gone.
    pub fn remove(&self, name: &str) -> io::Result<bool> {
        match fs::remove_file(self.file(name)?) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Makes renames and removals durable.
    pub fn sync(&self) -> io::Result<()> {
        File::open(&self.path)?.sync_all()
    }

    /// Removes temporary files a crashed agent left behind (they may hold
    /// values); returns how many.
    pub fn remove_stale_temporaries(&self) -> io::Result<usize> {
        let mut n = 0;
        for entry in fs::read_dir(&self.path)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(TEMP_PREFIX) && entry.file_type()?.is_file() {
                fs::remove_file(entry.path())?;
                n += 1;
            }
        }
        Ok(n)
    }
}

#[cfg(target_os = "linux")]
fn on_memory_fs(path: &Path) -> nix::Result<bool> {
    const RAMFS_MAGIC: i128 = 0x8584_58f6;
    let stat = nix::sys::statfs::statfs(path)?;
    let kind = stat.filesystem_type();
    Ok(kind == nix::sys::statfs::TMPFS_MAGIC || i128::from(kind.0) == RAMFS_MAGIC)
}

#[cfg(not(target_os = "linux"))]
fn on_memory_fs(_path: &Path) -> nix::Result<bool> {
    Err(nix::errno::Errno::ENOSYS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_are_file_names() {
        for ok in ["hf_token", "hf-token", "HF.TOKEN", "_x", "9"] {
            assert!(is_safe_file_name(ok), "{ok}");
        }
        for bad in [
            "", ".", "..", "../x", "a/b", "/etc", ".hidden", "-x", "a b", "a\0b", "ü",
        ] {
            assert!(!is_safe_file_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn writes_are_exact_private_and_stay_inside() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("secrets");
        let dir = SecretsDir::open(&path, Access::private()).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o700
        );
        dir.write_value("a", b"line\n").unwrap();
        assert_eq!(fs::read(path.join("a")).unwrap(), b"line\n");
        assert_eq!(
            fs::metadata(path.join("a")).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(dir.write_value("../escape", b"x").is_err());
        assert!(!tmp.path().join("escape").exists());
        // A second agent on the same directory is refused.
        let second = SecretsDir::open(&path, Access::private());
        assert!(second.is_err());
        assert!(dir.remove("a").unwrap());
        assert!(!dir.remove("a").unwrap());
        fs::write(path.join(format!("{TEMP_PREFIX}left")), b"x").unwrap();
        assert_eq!(dir.remove_stale_temporaries().unwrap(), 1);
    }
}
