//! The agent's directory: one the agent's user controls, private modes,
//! atomic writes, and nothing outside it.
//!
//! The directory is opened once, without following a link, after checking
//! who controls it; every later operation is relative to that open handle
//! (`openat`, `renameat`, `unlinkat`, `fstatat` with `O_NOFOLLOW` /
//! `AT_SYMLINK_NOFOLLOW`), so renaming or replacing the path afterwards
//! cannot redirect a write, and a link planted inside is never followed.
//! Every file name used here has passed [`is_safe_file_name`] or is one of
//! the agent's own files.

use crate::domain::secret_name::SecretName;
use anyhow::{bail, Context};
use nix::errno::Errno;
use nix::fcntl::{openat, renameat, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, mkdirat, FileStat, Mode, SFlag};
use nix::unistd::{unlinkat, Gid, Uid, UnlinkatFlags};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Prefix of the agent's temporary files (leftovers from a crash are
/// removed at the next start).
pub const TEMP_PREFIX: &str = ".tessera-agent.tmp-";

/// The status file (see [`crate::health`]).
pub const STATUS_FILE: &str = ".tessera-agent.status";

/// The agent's own files besides the values.
const OWN_FILES: [&str; 2] = [super::manifest::FILE_NAME, STATUS_FILE];

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

fn nofollow() -> OFlag {
    OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

fn mode_of(st: &FileStat) -> u32 {
    st.st_mode & 0o7777
}

fn is_kind(st: &FileStat, kind: SFlag) -> bool {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == kind
}

/// The agent's directory, checked, opened and locked.
pub struct SecretsDir {
    /// As given, for messages, the hook's environment and the check that
    /// it still names the directory held open.
    path: PathBuf,
    access: Access,
    /// The open directory every operation goes through; its lock is held
    /// for the agent's lifetime (a second agent on it is refused).
    dir: nix::fcntl::Flock<File>,
    /// Device and inode of the directory held open.
    identity: (u64, u64),
    /// Said once at start: a parent others may write to.
    parent_note: Option<String>,
}

impl SecretsDir {
    /// Checks who controls `path` and its parents, creates it if missing,
    /// opens it without following a link, sets its mode and group, and
    /// takes an exclusive lock on it.
    ///
    /// Refused: a symbolic link; an existing directory that is not owned by
    /// the agent's user or that group or others may write to; a parent owned
    /// by someone other than root or the agent's user. A parent that others
    /// may write to is accepted (a shared volume: sticky like /tmp, or an
    /// `emptyDir`); [`Self::still_in_place`] then notices a replacement.
    pub fn open(path: &Path, access: Access) -> anyhow::Result<Self> {
        let shown = path.display();
        let Some(name) = path.file_name() else {
            bail!("--dir {shown} must end with the directory's own name (not `/`, `.` or `..`)");
        };
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if std::fs::symlink_metadata(parent).is_err() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(access.dir_mode)
                .create(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let real_parent = std::fs::canonicalize(parent)
            .with_context(|| format!("cannot resolve {}", parent.display()))?;
        let me = nix::unistd::geteuid();
        let parent_note = check_ancestors(&real_parent, me, path)?;
        let parent_fd = nix::fcntl::open(
            &real_parent,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | nofollow(),
            Mode::empty(),
        )
        .with_context(|| format!("cannot open {}", real_parent.display()))?;

        match fstatat(&parent_fd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if is_kind(&st, SFlag::S_IFLNK) => {
                let target = nix::fcntl::readlinkat(&parent_fd, name)
                    .map(|t| t.to_string_lossy().into_owned())
                    .unwrap_or_else(|_| "?".to_owned());
                bail!(
                    "{shown} is a symbolic link (to {target}); the agent does not follow a link \
                     for its directory, whose target someone else may control. Pass the directory \
                     itself (--dir {target}) after checking who owns it"
                );
            }
            Ok(st) if !is_kind(&st, SFlag::S_IFDIR) => {
                bail!("{shown} exists and is not a directory")
            }
            Ok(_) => {}
            Err(Errno::ENOENT) => {
                match mkdirat(&parent_fd, name, Mode::from_bits_truncate(access.dir_mode)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(e).with_context(|| format!("cannot create {shown}")),
                }
            }
            Err(e) => return Err(e).with_context(|| format!("cannot inspect {shown}")),
        }
        let fd = openat(
            &parent_fd,
            name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | nofollow(),
            Mode::empty(),
        )
        .map_err(|e| match e {
            Errno::ELOOP => {
                anyhow::anyhow!("{shown} is a symbolic link; pass the directory itself")
            }
            e => anyhow::anyhow!("cannot open {shown}: {e}"),
        })?;
        let st = fstat(&fd).with_context(|| format!("cannot inspect {shown}"))?;
        check_own_directory(&st, me, path, access)?;
        if let Some(gid) = access.gid {
            if st.st_gid != gid {
                nix::unistd::fchown(&fd, None, Some(Gid::from_raw(gid))).with_context(|| {
                    format!("cannot give {shown} to group {gid} (the agent must belong to the group, or be root)")
                })?;
            }
        }
        if mode_of(&st) != access.dir_mode {
            nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(access.dir_mode))
                .with_context(|| format!("cannot set the mode of {shown}"))?;
        }
        let lock =
            nix::fcntl::Flock::lock(File::from(fd), nix::fcntl::FlockArg::LockExclusiveNonblock)
                .map_err(|(_, errno)| match errno {
                    Errno::EWOULDBLOCK => {
                        anyhow::anyhow!("another tessera agent is already keeping {shown}")
                    }
                    e => anyhow::anyhow!("cannot lock {shown}: {e}"),
                })?;
        Ok(Self {
            path: path.to_owned(),
            access,
            dir: lock,
            identity: (st.st_dev, st.st_ino),
            parent_note,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// At start, when a parent lets others rename entries: what that means.
    pub fn parent_note(&self) -> Option<&str> {
        self.parent_note.as_deref()
    }

    /// Whether the path still names the directory held open (someone who
    /// may write to a parent could have moved it and put another in its
    /// place, which readers going by the path would then see).
    pub fn still_in_place(&self) -> bool {
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) => m.is_dir() && (m.dev(), m.ino()) == self.identity,
            Err(_) => false,
        }
    }

    fn name<'n>(&self, name: &'n str) -> io::Result<&'n str> {
        // Never anything but a plain name directly inside the directory.
        if !is_safe_file_name(name) && !OWN_FILES.contains(&name) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("refusing the file name {name:?}"),
            ));
        }
        Ok(name)
    }

    fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.dir.as_fd()
    }

    /// When the directory is not on a memory file system, why that matters.
    pub fn memory_fs_warning(&self) -> Option<String> {
        match on_memory_fs(self.fd()) {
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

    /// Opens `name` for reading if it is a regular file (never following a
    /// link, never blocking on a FIFO).
    fn open_regular(&self, name: &str) -> io::Result<Option<File>> {
        let name = self.name(name)?;
        let fd: OwnedFd = match openat(
            self.fd(),
            name,
            OFlag::O_RDONLY | OFlag::O_NONBLOCK | nofollow(),
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::ENOENT | Errno::ELOOP) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let f = File::from(fd);
        if !f.metadata()?.is_file() {
            return Ok(None);
        }
        Ok(Some(f))
    }

    /// The bytes of `name` if it is a regular file in the directory.
    pub fn read(&self, name: &str) -> io::Result<Option<Zeroizing<Vec<u8>>>> {
        let Some(mut f) = self.open_regular(name)? else {
            return Ok(None);
        };
        let len = f.metadata()?.len().min(1 << 24) as usize;
        let mut buf = Zeroizing::new(Vec::with_capacity(len + 1));
        f.read_to_end(&mut buf)?;
        Ok(Some(buf))
    }

    fn stat(&self, name: &str) -> io::Result<Option<FileStat>> {
        match fstatat(self.fd(), self.name(name)?, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether a file exists under `name` (of any kind).
    pub fn exists(&self, name: &str) -> io::Result<bool> {
        Ok(self.stat(name)?.is_some())
    }

    /// Whether `name`'s mode and group are what the value files should have.
    pub fn has_value_access(&self, name: &str) -> io::Result<bool> {
        let Some(st) = self.stat(name)? else {
            return Ok(false);
        };
        Ok(mode_of(&st) == self.access.file_mode && self.access.gid.is_none_or(|g| st.st_gid == g))
    }

    /// Writes a value file atomically: a new temporary file in the
    /// directory with the final mode and group, the bytes, fsync, rename
    /// over `name`, fsync of the directory.
    pub fn write_value(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.write_atomic(name, bytes, self.access.file_mode, self.access.gid, true)
    }

    /// Writes one of the agent's own files (the manifest): mode 0600 always.
    pub fn write_private(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.write_atomic(name, bytes, 0o600, None, true)
    }

    /// Writes the status file (mode 0600; not synced: a status lost in a
    /// crash only looks older, which is the truth).
    pub fn write_status(&self, bytes: &[u8]) -> io::Result<()> {
        self.write_atomic(STATUS_FILE, bytes, 0o600, None, false)
    }

    fn write_atomic(
        &self,
        name: &str,
        bytes: &[u8],
        mode: u32,
        gid: Option<u32>,
        durable: bool,
    ) -> io::Result<()> {
        let target = self.name(name)?;
        let temp = format!("{TEMP_PREFIX}{}", crate::domain::ids::random_base62(12));
        let result = (|| -> io::Result<()> {
            let fd = openat(
                self.fd(),
                temp.as_str(),
                OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | nofollow(),
                Mode::from_bits_truncate(mode),
            )?;
            let mut f = File::from(fd);
            // The umask may have narrowed the mode; the group comes first so
            // the file is never readable by another group.
            if let Some(g) = gid {
                nix::unistd::fchown(&f, None, Some(Gid::from_raw(g)))?;
            }
            f.set_permissions(std::fs::Permissions::from_mode(mode))?;
            f.write_all(bytes)?;
            if durable {
                f.sync_all()?;
            }
            drop(f);
            renameat(self.fd(), temp.as_str(), self.fd(), target)?;
            Ok(())
        })();
        if result.is_err() {
            let _ = unlinkat(self.fd(), temp.as_str(), UnlinkatFlags::NoRemoveDir);
        }
        result?;
        if durable {
            self.sync()?;
        }
        Ok(())
    }

    /// Gives an existing value file the right mode and group.
    pub fn fix_value_access(&self, name: &str) -> io::Result<()> {
        let Some(f) = self.open_regular(name)? else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name} is not a regular file"),
            ));
        };
        if let Some(g) = self.access.gid {
            nix::unistd::fchown(&f, None, Some(Gid::from_raw(g)))?;
        }
        f.set_permissions(std::fs::Permissions::from_mode(self.access.file_mode))
    }

    /// Removes `name`; `false` when it was already gone.
    pub fn remove(&self, name: &str) -> io::Result<bool> {
        match unlinkat(self.fd(), self.name(name)?, UnlinkatFlags::NoRemoveDir) {
            Ok(()) => Ok(true),
            Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Makes renames and removals durable.
    pub fn sync(&self) -> io::Result<()> {
        nix::unistd::fsync(self.fd()).map_err(io::Error::from)
    }

    /// Removes temporary files a crashed agent left behind (they may hold
    /// values); returns how many.
    pub fn remove_stale_temporaries(&self) -> io::Result<usize> {
        let mut listing = nix::dir::Dir::openat(
            self.fd(),
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | nofollow(),
            Mode::empty(),
        )?;
        let stale: Vec<String> = listing
            .iter()
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str().ok().map(str::to_owned))
            .filter(|n| n.starts_with(TEMP_PREFIX))
            .collect();
        let mut n = 0;
        for name in stale {
            let st = match fstatat(self.fd(), name.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::ENOENT) => continue,
                Err(e) => return Err(e.into()),
            };
            if is_kind(&st, SFlag::S_IFREG) {
                unlinkat(self.fd(), name.as_str(), UnlinkatFlags::NoRemoveDir)?;
                n += 1;
            }
        }
        Ok(n)
    }
}

/// Every directory from `real_parent` up to `/` must be owned by root or by
/// the agent's user: whoever owns one can replace what is below it. Returns
/// a note when one of them lets others rename entries (writable by group or
/// others, without the sticky bit).
fn check_ancestors(real_parent: &Path, me: Uid, dir: &Path) -> anyhow::Result<Option<String>> {
    let mut note = None;
    for a in real_parent.ancestors() {
        let m = std::fs::symlink_metadata(a)
            .with_context(|| format!("cannot inspect {}", a.display()))?;
        if m.uid() != 0 && m.uid() != me.as_raw() {
            bail!(
                "{} is owned by uid {}, neither root nor the agent's user (uid {}): whoever owns it can \
                 replace {} and the files the workload reads. Keep the agent's directory under \
                 directories owned by root or by the agent's user",
                a.display(),
                m.uid(),
                me,
                dir.display()
            );
        }
        let mode = m.mode() & 0o7777;
        if note.is_none() && mode & 0o022 != 0 && mode & 0o1000 == 0 {
            note = Some(format!(
                "{} may be written by others (mode {mode:04o}, not sticky), as a shared volume such \
                 as a Kubernetes emptyDir is: whoever can write there could move {} away and put \
                 another directory in its place. The agent checks on every round that {} is still \
                 the directory it opened, and stops if not",
                a.display(),
                dir.display(),
                dir.display()
            ));
        }
    }
    Ok(note)
}

/// The directory itself must be the agent's user's and writable by that
/// user alone (as ssh requires of `~/.ssh`): anyone else who can write to it
/// can swap a value under the workload.
fn check_own_directory(st: &FileStat, me: Uid, dir: &Path, access: Access) -> anyhow::Result<()> {
    let shown = dir.display();
    if st.st_uid != me.as_raw() {
        bail!(
            "{shown} is owned by uid {}, not by the agent's user (uid {me}): its owner could change \
             the files the workload reads. Remove it and let the agent create it, or give it to the \
             agent's user (`chown {me} {shown}`)",
            st.st_uid
        );
    }
    let mode = mode_of(st);
    if mode & 0o022 != 0 {
        bail!(
            "{shown} may be written by group or others (mode {mode:04o}): they could swap a value \
             under the workload. Restrict it (`chmod go-w {shown}`; the agent then sets {:04o} \
             itself), or remove it and let the agent create it",
            access.dir_mode
        );
    }
    Ok(())
}

#[cfg(target_os = "linux")]
fn on_memory_fs(fd: std::os::fd::BorrowedFd<'_>) -> nix::Result<bool> {
    const RAMFS_MAGIC: i128 = 0x8584_58f6;
    let stat = nix::sys::statfs::fstatfs(fd)?;
    let kind = stat.filesystem_type();
    Ok(kind == nix::sys::statfs::TMPFS_MAGIC || i128::from(kind.0) == RAMFS_MAGIC)
}

#[cfg(not(target_os = "linux"))]
fn on_memory_fs(_fd: std::os::fd::BorrowedFd<'_>) -> nix::Result<bool> {
    Err(nix::errno::Errno::ENOSYS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

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

    #[test]
    fn links_inside_are_never_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("secrets");
        let outside = tmp.path().join("outside");
        fs::write(&outside, b"theirs").unwrap();
        let dir = SecretsDir::open(&path, Access::private()).unwrap();
        std::os::unix::fs::symlink(&outside, path.join("link")).unwrap();
        assert_eq!(dir.read("link").unwrap(), None);
        assert!(dir.exists("link").unwrap());
        assert!(dir.fix_value_access("link").is_err());
        fs::set_permissions(&outside, fs::Permissions::from_mode(0o644)).unwrap();
        // Writing replaces the link itself; the target is untouched.
        dir.write_value("link", b"mine").unwrap();
        assert_eq!(fs::read(&outside).unwrap(), b"theirs");
        assert_eq!(
            fs::metadata(&outside).unwrap().permissions().mode() & 0o777,
            0o644
        );
        assert!(!fs::symlink_metadata(path.join("link"))
            .unwrap()
            .file_type()
            .is_symlink());
        // A FIFO is not read (and does not block the agent).
        nix::unistd::mkfifo(&path.join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
        assert_eq!(dir.read("fifo").unwrap(), None);
    }

    #[test]
    fn a_directory_moved_away_is_noticed_and_writes_stay_in_it() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("secrets");
        let dir = SecretsDir::open(&path, Access::private()).unwrap();
        assert!(dir.still_in_place());
        let moved = tmp.path().join("moved");
        fs::rename(&path, &moved).unwrap();
        let decoy = tmp.path().join("decoy");
        fs::create_dir(&decoy).unwrap();
        std::os::unix::fs::symlink(&decoy, &path).unwrap();
        assert!(!dir.still_in_place());
        dir.write_value("a", b"v").unwrap();
        assert_eq!(fs::read(moved.join("a")).unwrap(), b"v");
        assert!(!decoy.join("a").exists());
    }

    /// Tests run as root: another user's directory is simulated by giving
    /// it to another uid.
    const OTHER_UID: u32 = 4242;

    fn refused(path: &Path) -> String {
        match SecretsDir::open(path, Access::private()) {
            Ok(_) => panic!("{} was accepted", path.display()),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn a_directory_someone_else_controls_is_refused_with_the_fix() {
        let tmp = tempfile::tempdir().unwrap();
        let me = nix::unistd::geteuid();

        // A link, even to a good directory.
        let real = tmp.path().join("real");
        fs::create_dir(&real).unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let e = refused(&link);
        assert!(
            e.contains("symbolic link") && e.contains(&format!("--dir {}", real.display())),
            "{e}"
        );
        assert_eq!(
            fs::metadata(&real).unwrap().permissions().mode() & 0o777,
            0o755,
            "target untouched"
        );

        // Another user's.
        let theirs = tmp.path().join("theirs");
        fs::create_dir(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(OTHER_UID), None).unwrap();
        let e = refused(&theirs);
        assert!(
            e.contains(&format!("owned by uid {OTHER_UID}")) && e.contains(&format!("chown {me}")),
            "{e}"
        );

        // Ours, but others may write to it.
        let open = tmp.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let e = refused(&open);
        assert!(e.contains("mode 0777") && e.contains("chmod go-w"), "{e}");
        assert_eq!(
            fs::metadata(&open).unwrap().permissions().mode() & 0o777,
            0o777,
            "left as it was"
        );

        // Inside a directory another user owns.
        let parent = tmp.path().join("their-parent");
        fs::create_dir(&parent).unwrap();
        std::os::unix::fs::chown(&parent, Some(OTHER_UID), None).unwrap();
        let e = refused(&parent.join("secrets"));
        assert!(
            e.contains(&format!("owned by uid {OTHER_UID}, neither root")),
            "{e}"
        );
        assert!(!parent.join("secrets").exists(), "nothing created");

        // Not a directory.
        fs::write(tmp.path().join("file"), b"x").unwrap();
        assert!(refused(&tmp.path().join("file")).contains("not a directory"));
    }

    #[test]
    fn shared_parents_are_fine_and_the_directory_is_created_in_them() {
        let tmp = tempfile::tempdir().unwrap();
        // Like /tmp: world-writable and sticky.
        let sticky = tmp.path().join("sticky");
        fs::create_dir(&sticky).unwrap();
        fs::set_permissions(&sticky, fs::Permissions::from_mode(0o1777)).unwrap();
        let dir = SecretsDir::open(&sticky.join("a"), Access::private()).unwrap();
        assert!(dir.parent_note().is_none());
        drop(dir);
        // Like a Kubernetes emptyDir: root's, 0777, not sticky.
        let volume = tmp.path().join("volume");
        fs::create_dir(&volume).unwrap();
        std::os::unix::fs::chown(&volume, Some(0), Some(0)).unwrap();
        fs::set_permissions(&volume, fs::Permissions::from_mode(0o777)).unwrap();
        let path = volume.join("model");
        let dir = SecretsDir::open(&path, Access::private()).unwrap();
        let note = dir.parent_note().unwrap();
        assert!(
            note.contains("mode 0777") && note.contains("emptyDir"),
            "{note}"
        );
        let m = fs::metadata(&path).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o700);
        assert_eq!(m.uid(), nix::unistd::geteuid().as_raw());
        drop(dir);
        // Again, now that it exists and is the agent's.
        SecretsDir::open(&path, Access::private()).unwrap();
        // Missing parents are created.
        SecretsDir::open(&tmp.path().join("x/y/z"), Access::private()).unwrap();
    }
}
