//! `--plain VAR=SECRET` and `--plain-file FILE`: the bare variables the
//! person running the workload names, each with the secret it takes.
//!
//! This is the allow rule: a secret's name never chooses a variable (whoever
//! may write secrets would then choose what the program obeys). Every pair is
//! checked here, before anything is fetched.

use super::refused::refusal;
use crate::domain::secret_name::SecretName;
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// A variable and the secret it takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub var: String,
    /// The secret as written (any spelling of its name).
    pub secret: String,
    /// Its canonical name, which is what is matched.
    pub canonical: String,
    /// Where it was named (`--plain` or `FILE:LINE`), for messages.
    pub origin: String,
}

/// Whether `var` is a portable environment variable name (POSIX: letters,
/// digits and `_`, not starting with a digit).
pub fn valid_var(var: &str) -> bool {
    let mut chars = var.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// One `VAR=SECRET`.
pub fn parse_pair(text: &str, origin: &str) -> Result<Pair, String> {
    let Some((var, secret)) = text.split_once('=') else {
        return Err(format!(
            "{origin}: {text:?} is not VAR=SECRET: name the variable and the secret it takes \
             (e.g. HF_TOKEN=hf_token)"
        ));
    };
    let (var, secret) = (var.trim(), secret.trim());
    if !valid_var(var) {
        return Err(format!(
            "{origin}: {var:?} is not a variable name (letters, digits and _, not starting with a digit)"
        ));
    }
    if let Some(why) = refusal(var) {
        return Err(format!("{origin}: {var} is refused: {why}"));
    }
    let name = SecretName::parse(secret)
        .map_err(|e| format!("{origin}: {secret:?} is not a secret name: {e}"))?;
    Ok(Pair {
        var: var.to_owned(),
        secret: secret.to_owned(),
        canonical: name.canonical().to_owned(),
        origin: origin.to_owned(),
    })
}

/// Reads `VAR=SECRET` lines from `path` (blank lines and `#` comments are
/// skipped). The file decides what reaches the program's environment, so it
/// must be a regular file owned by the running user (or root) that neither
/// group nor others may write; it is checked through the handle it is read
/// from.
pub fn read_file(path: &Path) -> Result<Vec<Pair>, String> {
    let shown = path.display();
    let mut file =
        std::fs::File::open(path).map_err(|e| format!("cannot open --plain-file {shown}: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read --plain-file {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("--plain-file {shown} is not a regular file"));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(format!(
            "--plain-file {shown} belongs to another user (uid {}); it decides which variables \
             your program gets, so it must be yours or root's",
            meta.uid()
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(format!(
            "--plain-file {shown} may be written by group or others (mode {mode:04o}); it decides \
             which variables your program gets: restrict it with `chmod go-w {shown}`"
        ));
    }
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| format!("cannot read --plain-file {shown}: {e}"))?;
    let mut pairs = Vec::new();
    let mut problems = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_pair(line, &format!("{shown}:{}", i + 1)) {
            Ok(p) => pairs.push(p),
            Err(e) => problems.push(e),
        }
    }
    if problems.is_empty() {
        Ok(pairs)
    } else {
        Err(problems.join("\n  "))
    }
}

/// Every pair from the flags and the file; each variable named once.
/// `None` when none was asked for (the default `TRUSS_SECRET_` naming).
pub fn collect(flags: &[String], file: Option<&Path>) -> Result<Option<Vec<Pair>>, String> {
    if flags.is_empty() && file.is_none() {
        return Ok(None);
    }
    let mut problems = Vec::new();
    let mut pairs = Vec::new();
    for f in flags {
        if f.is_empty() {
            problems.push(
                "--plain needs VAR=SECRET pairs (e.g. --plain HF_TOKEN=hf_token), or \
                 --plain-file FILE: a secret's name alone no longer sets a variable, since \
                 whoever may write secrets would then choose what your program obeys"
                    .to_owned(),
            );
            continue;
        }
        match parse_pair(f, "--plain") {
            Ok(p) => pairs.push(p),
            Err(e) => problems.push(e),
        }
    }
    if let Some(path) = file {
        match read_file(path) {
            Ok(p) => pairs.extend(p),
            Err(e) => problems.push(e),
        }
    }
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for p in &pairs {
        if let Some(first) = seen.insert(&p.var, &p.origin) {
            problems.push(format!(
                "{} is named twice ({first} and {})",
                p.var, p.origin
            ));
        }
    }
    if !problems.is_empty() {
        return Err(problems.join("\n  "));
    }
    if pairs.is_empty() {
        return Err(format!(
            "--plain-file {} names no variable; add VAR=SECRET lines",
            file.map(|p| p.display().to_string()).unwrap_or_default()
        ));
    }
    Ok(Some(pairs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn pairs_name_a_variable_and_a_secret() {
        let p = parse_pair("HF_TOKEN=hf-token", "--plain").unwrap();
        assert_eq!(
            (p.var.as_str(), p.canonical.as_str()),
            ("HF_TOKEN", "hf_token")
        );
        for bad in [
            "HF_TOKEN",
            "=x",
            "1X=x",
            "A-B=x",
            "A=",
            "A=../x",
            "LD_PRELOAD=x",
        ] {
            assert!(parse_pair(bad, "--plain").is_err(), "{bad}");
        }
        let e = parse_pair("bash_env=x", "--plain").unwrap_err();
        assert!(e.contains("bash_env is refused: shells run code"), "{e}");
    }

    #[test]
    fn bare_plain_duplicates_and_empty_files_are_refused() {
        assert_eq!(collect(&[], None).unwrap(), None);
        let e = collect(&[String::new()], None).unwrap_err();
        assert!(e.contains("--plain needs VAR=SECRET pairs"), "{e}");
        let e = collect(&["A=x".into(), "A=y".into()], None).unwrap_err();
        assert!(e.contains("A is named twice"), "{e}");

        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("vars");
        std::fs::write(&f, "# comment\n\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(collect(&[], Some(&f))
            .unwrap_err()
            .contains("names no variable"));
        std::fs::write(&f, "HF_TOKEN = hf-token\nDB=db_url\n").unwrap();
        let pairs = collect(&["X=x".into()], Some(&f)).unwrap().unwrap();
        let origins: Vec<&str> = pairs.iter().map(|p| p.origin.as_str()).collect();
        assert_eq!(origins[0], "--plain");
        assert!(origins[2].ends_with("vars:2"), "{origins:?}");
        std::fs::write(&f, "GIT_CONFIG_COUNT=n\nok=x\n").unwrap();
        let e = collect(&[], Some(&f)).unwrap_err();
        assert!(e.contains("vars:1: GIT_CONFIG_COUNT is refused"), "{e}");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o620)).unwrap();
        let e = collect(&[], Some(&f)).unwrap_err();
        assert!(e.contains("chmod go-w"), "{e}");
    }
}
