//! The agent's record of the files it created in its directory
//! (`.tessera-agent.json`, mode 0600). Only files listed here are ever
//! rewritten or removed, across restarts too; everything else in the
//! directory belongs to someone else. It holds names and versions, never a
//! value.

use super::files::{is_safe_file_name, SecretsDir};
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The manifest's file name inside the agent's directory.
pub const FILE_NAME: &str = ".tessera-agent.json";

const FORMAT: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// File name → what it holds.
    pub files: BTreeMap<String, Entry>,
}

/// What one of the agent's files holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The secret's stored spelling.
    pub secret: String,
    pub version: i64,
}

impl Manifest {
    /// Reads the manifest; an empty one when there is none yet. A damaged
    /// manifest stops the agent: guessing would mean touching files it may
    /// not own, or leaving its own stale.
    pub fn load(dir: &SecretsDir) -> anyhow::Result<Self> {
        let path = dir.path().join(FILE_NAME);
        let Some(bytes) = dir
            .read(FILE_NAME)
            .with_context(|| format!("cannot read {}", path.display()))?
        else {
            if dir.exists(FILE_NAME)? {
                bail!("{} is not a regular file", path.display());
            }
            return Ok(Self {
                format: FORMAT,
                files: BTreeMap::new(),
            });
        };
        let mut m: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
            anyhow::anyhow!(
                "{} is damaged ({e}); the agent cannot tell which files it created. \
                 Remove the files it wrote and the manifest, then start again",
                path.display()
            )
        })?;
        if m.format != FORMAT {
            bail!(
                "{} has format {}; this agent understands format {FORMAT}",
                path.display(),
                m.format
            );
        }
        // A name that is not a plain file name was not written by an agent.
        m.files.retain(|name, _| {
            let ok = is_safe_file_name(name);
            if !ok {
                tracing::warn!(file = ?name, "ignoring an invalid file name in the manifest");
            }
            ok
        });
        Ok(m)
    }

    pub fn save(&self, dir: &SecretsDir) -> anyhow::Result<()> {
        let bytes = serde_json::to_vec_pretty(self)?;
        dir.write_private(FILE_NAME, &bytes)
            .with_context(|| format!("cannot write {}", dir.path().join(FILE_NAME).display()))
    }

    pub fn owns(&self, file: &str) -> bool {
        self.files.contains_key(file)
    }
}

#[cfg(test)]
mod tests {
    use super::super::files::Access;
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn round_trip_private_and_damage_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = SecretsDir::open(tmp.path(), Access::private()).unwrap();
        let mut m = Manifest::load(&dir).unwrap();
        assert!(m.files.is_empty());
        m.files.insert(
            "hf-token".into(),
            Entry {
                secret: "hf-token".into(),
                version: 2,
            },
        );
        m.save(&dir).unwrap();
        assert_eq!(Manifest::load(&dir).unwrap(), m);
        let meta = std::fs::metadata(tmp.path().join(FILE_NAME)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);

        std::fs::write(
            tmp.path().join(FILE_NAME),
            r#"{"format":1,"files":{"../x":{"secret":"x","version":1},"ok":{"secret":"ok","version":1}}}"#,
        )
        .unwrap();
        let m = Manifest::load(&dir).unwrap();
        assert_eq!(m.files.keys().collect::<Vec<_>>(), vec!["ok"]);

        std::fs::write(tmp.path().join(FILE_NAME), b"{not json").unwrap();
        let e = Manifest::load(&dir).unwrap_err().to_string();
        assert!(e.contains("damaged"), "{e}");
    }
}
