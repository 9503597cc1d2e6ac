//! Making the directory equal to one snapshot of the key's secrets.

use super::files::SecretsDir;
use super::manifest::{Entry, Manifest};
use crate::runtime_client::{RuntimeSecret, Snapshot};
use anyhow::{bail, Context};
use std::collections::{BTreeMap, BTreeSet};

/// What one application of a snapshot did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Files written (new or changed content): (file, secret, version).
    pub written: Vec<(String, String, i64)>,
    /// Files removed: (file, secret it held).
    pub removed: Vec<(String, String)>,
    /// Files that could not be written because a file the agent did not
    /// create holds the name: (file, secret). The snapshot is then not
    /// applied in full: whatever that file holds is not the secret's value.
    pub blocked: Vec<(String, String)>,
}

impl Applied {
    /// Nothing written or removed.
    pub fn is_empty(&self) -> bool {
        self.written.is_empty() && self.removed.is_empty()
    }

    /// Every file of every secret holds its value.
    pub fn is_complete(&self) -> bool {
        self.blocked.is_empty()
    }

    /// Why the snapshot is not applied in full, and the fix; `None` when it is.
    pub fn blocked_message(&self, dir: &std::path::Path) -> Option<String> {
        if self.blocked.is_empty() {
            return None;
        }
        let files: Vec<String> = self
            .blocked
            .iter()
            .map(|(file, secret)| format!("{file} (secret {secret:?})"))
            .collect();
        Some(format!(
            "cannot write {} in {}: a file the agent did not create is in the way, so the workload \
             would read whatever it holds instead of the secret's value. The agent rewrites only the \
             files its manifest lists; if these are stale copies (an earlier agent's files after its \
             manifest was lost), remove them and the agent writes them at its next attempt",
            files.join(", "),
            dir.display()
        ))
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
/// longer has, and never touches a file the manifest does not list (a name
/// held by such a file is reported in [`Applied::blocked`]).
pub fn apply(
    dir: &SecretsDir,
    manifest: &mut Manifest,
    snapshot: &Snapshot,
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

    let mut applied = Applied::default();
    // Claim new names first, and record the claim before writing, so the
    // manifest always lists every file the agent may have created.
    let mut claimed = false;
    for (file, s) in &desired {
        if manifest.owns(file) {
            continue;
        }
        if dir
            .exists(file)
            .with_context(|| format!("cannot inspect {file}"))?
        {
            applied.blocked.push(((*file).to_owned(), s.name.clone()));
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

        let a = apply(
            &dir,
            &mut m,
            &snapshot(vec![secret("hf-token", "v1\n", 1), secret("b.c", "x", 1)]),
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
        // ...and the snapshot is not applied in full: the caller must not
        // report it as held.
        assert_eq!(a.blocked, vec![("b_c".to_owned(), "b.c".to_owned())]);
        assert!(!a.is_complete());
        let why = a.blocked_message(tmp.path()).unwrap();
        assert!(
            why.contains("b_c (secret \"b.c\")") && why.contains("remove them"),
            "{why}"
        );

        // Same values: nothing rewritten.
        let again = apply(
            &dir,
            &mut m,
            &snapshot(vec![secret("hf-token", "v1\n", 1), secret("b.c", "x", 1)]),
        )
        .unwrap();
        assert!(again.is_empty(), "{again:?}");
        assert!(!again.is_complete(), "still blocked");

        // A delete removes only the agent's files.
        let gone = apply(&dir, &mut m, &snapshot(vec![secret("hf-token", "v2", 2)])).unwrap();
        assert!(gone.is_complete());
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
