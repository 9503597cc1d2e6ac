//! Loading (or creating) the master key from its configured source.

use super::key_command::KeyCommand;
use super::keyring::KEK_LEN;
use anyhow::{bail, Context};
use base64::Engine;
use rand::{rngs::OsRng, RngCore};
use std::io::Write;
use std::path::Path;
use zeroize::Zeroizing;

/// The master key, wiped from memory when dropped.
pub type MasterKey = Zeroizing<[u8; KEK_LEN]>;

/// Where the master key comes from, in order of precedence.
#[derive(Clone)]
pub enum MasterKeySource {
    /// Base64 of 32 bytes, from `TESSERA_MASTER_KEY`.
    Inline(Zeroizing<String>),
    /// A file holding 32 raw bytes or their base64. `create`: the default
    /// location, where a new store gets a new key.
    File {
        path: std::path::PathBuf,
        create: bool,
    },
    /// A command whose standard output is the key.
    Command(KeyCommand),
}

impl std::fmt::Debug for MasterKeySource {
    // Never the inline key itself.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Inline(_) => f.write_str("Inline(<redacted>)"),
            Self::File { path, create } => f
                .debug_struct("File")
                .field("path", path)
                .field("create", create)
                .finish(),
            Self::Command(c) => f.debug_tuple("Command").field(c).finish(),
        }
    }
}

/// Loads the key. A key file must exist (see [`create_key_file`]) and be
/// private: readable by its owner only, as ssh insists for its keys.
pub fn load(source: &MasterKeySource) -> anyhow::Result<Zeroizing<[u8; KEK_LEN]>> {
    match source {
        MasterKeySource::Command(command) => command.run(),
        MasterKeySource::Inline(b64) => decode(b64.trim().as_bytes())
            .context("TESSERA_MASTER_KEY must be the base64 encoding of 32 bytes"),
        MasterKeySource::File { path, create } => {
            if !path.exists() {
                if *create {
                    bail!("the master key file {} is missing", path.display());
                }
                bail!(
                    "the master key file {} (--master-key-file / TESSERA_MASTER_KEY_FILE) does not exist",
                    path.display()
                );
            }
            check_private(path)?;
            let bytes = Zeroizing::new(
                std::fs::read(path)
                    .with_context(|| format!("reading master key file {}", path.display()))?,
            );
            decode(&bytes).with_context(|| {
                format!(
                    "master key file {} must hold 32 raw bytes or their base64 encoding",
                    path.display()
                )
            })
        }
    }
}

/// Refuses a key file that its group or other users can read, write or
/// execute, with the command that fixes it.
fn check_private(path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path)
            .with_context(|| format!("reading master key file {}", path.display()))?;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            bail!(
                "the master key file {path} is accessible by its group or other users (mode {mode:04o}); \
                 make it private with `chmod 600 {path}` (or 400)",
                path = path.display()
            );
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// 32 raw bytes, or their base64 with surrounding whitespace trimmed.
pub(super) fn decode(bytes: &[u8]) -> anyhow::Result<Zeroizing<[u8; KEK_LEN]>> {
    let mut key = Zeroizing::new([0u8; KEK_LEN]);
    if bytes.len() == KEK_LEN {
        key.copy_from_slice(bytes);
        return Ok(key);
    }
    let text = std::str::from_utf8(bytes).context("not base64")?.trim();
    let decoded = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(text)
            // Not the decoder's error: it quotes the offending byte.
            .map_err(|_| anyhow::anyhow!("not base64"))?,
    );
    if decoded.len() != KEK_LEN {
        bail!("decoded key is {} bytes, expected {KEK_LEN}", decoded.len());
    }
    key.copy_from_slice(&decoded);
    Ok(key)
}

/// Creates a new random key file, readable only by its owner (mode 0400).
/// The caller decides that a new key is wanted (a new, empty store) and that
/// its directory exists.
pub fn create_key_file(path: &Path) -> anyhow::Result<Zeroizing<[u8; KEK_LEN]>> {
    let mut key = Zeroizing::new([0u8; KEK_LEN]);
    OsRng.fill_bytes(key.as_mut());
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o400);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating master key file {}", path.display()))?;
    f.write_all(key.as_ref())?;
    f.sync_all()?;
    if let Some(dir) = path.parent() {
        // Make the new directory entry durable too.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(key)
}
