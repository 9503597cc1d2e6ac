//! The workload key: where it comes from (a file that only its owner may
//! read, or the environment), and how the process that holds it keeps it
//! from other processes and from the commands it starts.

use crate::runtime_client::RuntimeArgs;
use anyhow::{bail, Context};
use std::os::unix::fs::PermissionsExt;
use zeroize::Zeroizing;

/// The variables that say where a runtime client finds its key: a command
/// it starts (`tessera run`'s CMD, the agent's `--on-change`) gets values
/// or names, never the key or where it is.
pub const KEY_VARIABLES: &[&str] = &["TESSERA_API_KEY", "TESSERA_API_KEY_FILE"];

/// Makes this process non-dumpable: its `/proc/PID/environ` (which keeps
/// the environment as it was at exec, `TESSERA_API_KEY` included, whatever
/// is unset later), its memory and `ptrace` become closed to other processes
/// of the same user (root keeps them). For `tessera run` and `tessera
/// agent`, which hold a workload key for as long as they live. A command
/// they start is dumpable again (exec resets it) and never has the key in
/// its environment ([`KEY_VARIABLES`]).
pub fn protect_the_key() -> anyhow::Result<()> {
    nix::sys::prctl::set_dumpable(false)
        .context("cannot make the process non-dumpable (prctl PR_SET_DUMPABLE)")
}

/// The key, from the file or the environment; never printed.
pub fn load_key(args: &RuntimeArgs) -> anyhow::Result<Zeroizing<String>> {
    let key = match &args.api_key_file {
        Some(path) => {
            let shown = path.display();
            let meta = std::fs::metadata(path)
                .with_context(|| format!("cannot read the API key file {shown}"))?;
            let mode = meta.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                bail!(
                    "the API key file {shown} is accessible by group or others (mode {mode:04o}); \
                     restrict it with `chmod 600 {shown}`"
                );
            }
            let bytes = Zeroizing::new(
                std::fs::read(path)
                    .with_context(|| format!("cannot read the API key file {shown}"))?,
            );
            let text = std::str::from_utf8(&bytes)
                .map_err(|_| anyhow::anyhow!("the API key file {shown} is not text"))?;
            let key = Zeroizing::new(text.trim().to_owned());
            if key.is_empty() {
                bail!("the API key file {shown} is empty");
            }
            key
        }
        None => match &args.api_key {
            Some(k) if !k.trim().is_empty() => Zeroizing::new(k.trim().to_owned()),
            _ => bail!("no API key: set TESSERA_API_KEY or pass --api-key-file FILE"),
        },
    };
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        bail!("the API key contains characters that cannot be sent in a header");
    }
    Ok(key)
}
