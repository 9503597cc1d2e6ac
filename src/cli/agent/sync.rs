//! Making the directory equal to one snapshot of the key's secrets.

use super::files::SecretsDir;
use super::manifest::{Entry, Manifest};
use crate::cli::runtime_client::{RuntimeSecret, Snapshot};
use anyhow::{bail, Context};
use std::collections::{BTreeMap, BTreeSet};

/// What one application of a snapshot did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Files written (new or changed content): (file, secret, version).
    pub written: Vec<(String, String, i64)>,
    /// Files removed: (file, secret it held).
    pub removed: Vec<(String, String)>,
}

impl Applied {
    pub fn is_empty(&self) -> bool {
        self.written.is_empty() && self.removed.is_empty()
    }

    /// The secrets (stored spellings) whose files changed, each once.
    pub fn secrets(&self) -> Vec<&str> {
        let set: BTreeSet<&str> = self
            .written
            .iter()
            .map(|(_, s, _)| s.as_str())
            .chain(self.removed.iter().map(|(_, s)| s.as_str()))
            .collect();
        set.into_iter().collect()
    }
}

/// The file names a secret appears under: its stored spelling and, when
/// different, its canonical name.
pub fn file_names(s: &RuntimeSecret) -> Vec<&str> {
    if s.name == s.canonical_name {
        vec![s.name.as_str()]
    } else {
        vec![s.name.as_str(), s.canonical_name.as_str()]
    }
}

/// Writes what changed, removes what the agent wrote and the snapshot no
/// longer has, and never touches a file the manifest does not list.
/// `foreign` collects names held by someone else's file (each reported once
/// by the caller).
pub fn apply(
    dir: &SecretsDir,
    manifest: &mut Manifest,
    snapshot: &Snapshot,
    foreign: &mut BTreeSet<String>,
) -> anyhow::Result<Applied> {
    let mut desired: BTreeMap<&str, &RuntimeSecret> = BTreeMap::new();
    for s in &snapshot.secrets {
        for file in file_names(s) {
            if let Some(other) = desired.insert(file, s) {
                // Canonical names are unique in a team, so this cannot
                // happen with a correct server; refuse rather than choose.
                bail!(
                    "secrets {:?} and {:?} both map to the file {file:?}; nothing was changed",
                    other.name,
                    s.name
                );
            }
        }
    }

    // Claim new names first, and record the claim before writing, so the
    // manifest always lists every file the agent may have created.
    let mut claimed = false;
    for file in desired.keys() {
        if manifest.owns(file) {
            continue;
        }
        if dir
            .exists(file)
            .with_context(|| format!("cannot inspect {file}"))?
        {
            if foreign.insert((*file).to_owned()) {
                tracing::warn!(
                    file,
                    "not writing this secret file: a file of that name exists and was not created by the agent"
                );
            }
            continue;
        }
        manifest.files.insert(
            (*file).to_owned(),
            Entry {
                secret: String::new(),
                version: 0,
            },
        );
        claimed = true;
    }
    if claimed {
        manifest.save(dir)?;
    }

    let mut applied = Applied::default();
    let mut manifest_changed = false;
    for (file, s) in &desired {
        let Some(entry) = manifest.files.get_mut(*file) else {
            continue; // someone else's file
        };
        let value = s.value.expose().as_bytes();
        let current = dir
            .read(file)
            .with_context(|| format!("cannot read {file}"))?;
        if current.as_deref().map(Vec::as_slice) == Some(value) {
            if !dir.has_value_access(file)? {
                dir.fix_value_access(file)
                    .with_context(|| format!("cannot set the mode of {file}"))?;
            }
        } else {
            dir.write_value(file, value)
                .with_context(|| format!("cannot write {file}"))?;
            applied
                .written
                .push(((*file).to_owned(), s.name.clone(), s.version));
        }
        let now = Entry {
            secret: s.name.clone(),
            version: s.version,
        };
        if *entry != now {
            *entry = now;
            manifest_changed = true;
        }
    }

    let gone: Vec<String> = manifest
        .files
        .keys()
        .filter(|f| !desired.contains_key(f.as_str()))
        .cloned()
        .collect();
    for file in gone {
        let existed = dir
            .remove(&file)
            .with_context(|| format!("cannot remove {file}"))?;
        if let Some(entry) = manifest.files.remove(&file) {
            if existed {
                applied.removed.push((file, entry.secret));
            }
        }
        manifest_changed = true;
    }
    if !applied.removed.is_empty() {
        dir.sync().context("cannot sync the directory")?;
    }
    if manifest_changed {
        manifest.save(dir)?;
    }
    Ok(applied)
}

/// Removes every file the agent wrote, and the manifest (`--wipe-on-revoke`).
/// Returns how many value files were removed.
pub fn wipe(dir: &SecretsDir, manifest: &mut Manifest) -> anyhow::Result<usize> {
    let mut n = 0;
    let files: Vec<String> = manifest.files.keys().cloned().collect();
    for file in files {
        if dir
            .remove(&file)
            .with_context(|| format!("cannot remove {file}"))?
        {
            n += 1;
        }
        manifest.files.remove(&file);
    }
    dir.remove(super::manifest::FILE_NAME)
        .context("cannot remove the manifest")?;
    dir.sync().context("cannot sync the directory")?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::super::files::Access;
    use super::*;
    use crate::domain::secret_value::SecretValue;

    fn secret(name: &str, value: &str, version: i64) -> RuntimeSecret {
        RuntimeSecret {
            name: name.into(),
            canonical_name: crate::domain::secret_name::canonicalize(name),
            value: SecretValue::new(value.into()),
            version,
        }
    }

    fn snapshot(secrets: Vec<RuntimeSecret>) -> Snapshot {
        Snapshot {
            etag: None,
            revision: 1,
            secrets,
            refused: vec![],
        }
    }

    #[test]
    fn applies_writes_only_changes_and_leaves_foreign_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = SecretsDir::open(tmp.path(), Access::private()).unwrap();
        std::fs::write(tmp.path().join("mine_not"), b"foreign").unwrap();
        std::fs::write(tmp.path().join("b_c"), b"foreign too").unwrap();
        let mut m = Manifest::load(&dir).unwrap();
        let mut foreign = BTreeSet::new();

        let a = apply(
            &dir,
            &mut m,
            &snapshot(vec![secret("hf-token", "v1\n", 1), secret("b.c", "x", 1)]),
            &mut foreign,
        )
        .unwrap();
        assert_eq!(a.written.len(), 3, "{a:?}");
        assert_eq!(std::fs::read(tmp.path().join("hf-token")).unwrap(), b"v1\n");
        assert_eq!(std::fs::read(tmp.path().join("hf_token")).unwrap(), b"v1\n");
        assert_eq!(std::fs::read(tmp.path().join("b.c")).unwrap(), b"x");
        // The canonical spelling of b.c belongs to someone else: untouched.
        assert_eq!(
            std::fs::read(tmp.path().join("b_c")).unwrap(),
            b"foreign too"
        );
        assert!(foreign.contains("b_c"));

        // Same values: nothing rewritten.
        let again = apply(
            &dir,
            &mut m,
            &snapshot(vec![secret("hf-token", "v1\n", 1), secret("b.c", "x", 1)]),
            &mut foreign,
        )
        .unwrap();
        assert!(again.is_empty(), "{again:?}");

        // A delete removes only the agent's files.
        let gone = apply(
            &dir,
            &mut m,
            &snapshot(vec![secret("hf-token", "v2", 2)]),
            &mut foreign,
        )
        .unwrap();
        assert_eq!(gone.removed, vec![("b.c".to_owned(), "b.c".to_owned())]);
        assert_eq!(gone.secrets(), vec!["b.c", "hf-token"]);
        assert!(!tmp.path().join("b.c").exists());
        assert!(tmp.path().join("b_c").exists());
        assert!(tmp.path().join("mine_not").exists());

        // A restart reads the manifest and still knows what it owns.
        let mut m2 = Manifest::load(&dir).unwrap();
        assert_eq!(m2, m);
        assert_eq!(wipe(&dir, &mut m2).unwrap(), 2);
        assert!(tmp.path().join("mine_not").exists());
        assert!(tmp.path().join("b_c").exists());
        assert!(!tmp.path().join(super::super::manifest::FILE_NAME).exists());
    }
}
