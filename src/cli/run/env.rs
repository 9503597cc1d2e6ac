//! Which environment variables `tessera run` sets, and the rules that make a
//! bad mapping an error rather than a silent choice.

use crate::cli::runtime_client::RuntimeSecret;
use crate::domain::secret_value::SecretValue;
use std::collections::BTreeMap;

/// Prefix of the variables Truss's secrets resolver reads.
pub const TRUSS_PREFIX: &str = "TRUSS_SECRET_";

/// Variables a secret may never set: they change how programs are loaded,
/// which code they run, where their traffic goes or which certificates they
/// trust. Compared without regard to case. Documented in docs/delivery.md
/// ("Variables `tessera run` refuses"); keep the two in step.
pub const DENIED_NAMES: &[&str] = &[
    // Shells and the C library.
    "PATH",
    "HOME",
    "SHELL",
    "ENV",
    "BASH_ENV",
    "IFS",
    "CDPATH",
    "PS4",
    "SHELLOPTS",
    "BASHOPTS",
    "PROMPT_COMMAND",
    "GLIBC_TUNABLES",
    "GCONV_PATH",
    "LOCPATH",
    "NLSPATH",
    "HOSTALIASES",
    "RES_OPTIONS",
    "LOCALDOMAIN",
    "TMPDIR",
    "TZDIR",
    // Python.
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "PYTHONUSERBASE",
    "PYTHONEXECUTABLE",
    "PYTHONWARNINGS",
    "PYTHONBREAKPOINT",
    "PYTHONINSPECT",
    "PYTHONPLATLIBDIR",
    // Node.js.
    "NODE_OPTIONS",
    "NODE_PATH",
    "NODE_EXTRA_CA_CERTS",
    "NODE_TLS_REJECT_UNAUTHORIZED",
    // Perl and Ruby.
    "PERL5LIB",
    "PERL5OPT",
    "PERLLIB",
    "PERL5DB",
    "RUBYLIB",
    "RUBYOPT",
    "GEM_HOME",
    "GEM_PATH",
    // The JVM.
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "CLASSPATH",
    // Trust and traffic.
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
];

/// Prefixes of refused variables: the dynamic loaders (`LD_PRELOAD`,
/// `LD_LIBRARY_PATH`, `DYLD_INSERT_LIBRARIES`, …), the allocator's tuning,
/// and bash's exported functions.
pub const DENIED_PREFIXES: &[&str] = &["LD_", "DYLD_", "MALLOC_", "BASH_FUNC_"];

/// Whether a secret may not set `var`.
pub fn is_denied(var: &str) -> bool {
    let upper = var.to_ascii_uppercase();
    DENIED_NAMES.contains(&upper.as_str()) || DENIED_PREFIXES.iter().any(|p| upper.starts_with(p))
}

/// How secrets become variable names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// `TRUSS_SECRET_<name>` for the stored spelling and, when different,
    /// the canonical name.
    Truss,
    /// The canonical name upper-cased (`hf-token` → `HF_TOKEN`).
    Plain,
}

/// The variable names one secret sets.
pub fn variables(s: &RuntimeSecret, naming: Naming) -> Vec<String> {
    match naming {
        Naming::Truss if s.name == s.canonical_name => vec![format!("{TRUSS_PREFIX}{}", s.name)],
        Naming::Truss => vec![
            format!("{TRUSS_PREFIX}{}", s.name),
            format!("{TRUSS_PREFIX}{}", s.canonical_name),
        ],
        Naming::Plain => vec![s.canonical_name.to_ascii_uppercase()],
    }
}

/// The variables to set: name → value, in name order (`Debug` shows names
/// only: values print as `[redacted]`).
#[derive(Debug)]
pub struct Plan {
    pub vars: BTreeMap<String, SecretValue>,
}

impl Plan {
    /// Whether two plans would give a child the same environment.
    pub fn same_as(&self, other: &Plan) -> bool {
        self.vars.len() == other.vars.len()
            && self
                .vars
                .iter()
                .zip(&other.vars)
                .all(|((a, va), (b, vb))| a == b && va.expose() == vb.expose())
    }
}

/// Maps secrets to variables. Every problem is reported (by name, never
/// by value), and any problem is an error:
/// - two secrets mapping to one variable;
/// - a variable that is already set (`already_set`) unless `replace`;
/// - a variable in [`DENIED_NAMES`] or under [`DENIED_PREFIXES`];
/// - a value holding a NUL byte, which no environment can carry.
pub fn plan(
    secrets: &[RuntimeSecret],
    naming: Naming,
    replace: bool,
    already_set: impl Fn(&str) -> bool,
) -> Result<Plan, Vec<String>> {
    let mut problems = Vec::new();
    let mut owner: BTreeMap<String, &str> = BTreeMap::new();
    let mut vars = BTreeMap::new();
    for s in secrets {
        if s.value.expose().contains('\0') {
            problems.push(format!(
                "secret {:?} contains a NUL byte, which an environment variable cannot hold",
                s.name
            ));
            continue;
        }
        for var in variables(s, naming) {
            if let Some(other) = owner.get(&var) {
                problems.push(format!(
                    "secrets {other:?} and {:?} both map to the variable {var}",
                    s.name
                ));
                continue;
            }
            owner.insert(var.clone(), &s.name);
            if is_denied(&var) {
                problems.push(format!(
                    "secret {:?} would set {var}, which changes how programs load or run; refused",
                    s.name
                ));
            } else if already_set(&var) && !replace {
                problems.push(format!(
                    "{var} (from secret {:?}) is already set in the environment; pass --override to replace it",
                    s.name
                ));
            } else {
                vars.insert(var, SecretValue::new(s.value.expose().to_owned()));
            }
        }
    }
    if problems.is_empty() {
        Ok(Plan { vars })
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(name: &str, value: &str) -> RuntimeSecret {
        RuntimeSecret {
            name: name.into(),
            canonical_name: crate::domain::secret_name::canonicalize(name),
            value: SecretValue::new(value.into()),
            version: 1,
        }
    }

    #[test]
    fn truss_names_cover_both_spellings() {
        let p = plan(
            &[secret("hf-token", "v"), secret("x", "w")],
            Naming::Truss,
            false,
            |_| false,
        )
        .unwrap();
        let names: Vec<&str> = p.vars.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            vec![
                "TRUSS_SECRET_hf-token",
                "TRUSS_SECRET_hf_token",
                "TRUSS_SECRET_x"
            ]
        );
    }

    #[test]
    fn plain_refuses_loader_variables_collisions_and_existing_ones() {
        let e = plan(&[secret("ld_preload", "v")], Naming::Plain, true, |_| false).unwrap_err();
        assert!(e[0].contains("LD_PRELOAD"), "{e:?}");
        for name in [
            "path",
            "pythonpath",
            "node-options",
            "ld.library.path",
            "dyld_x",
            "malloc_arena_max",
        ] {
            assert!(
                plan(&[secret(name, "v")], Naming::Plain, true, |_| false).is_err(),
                "{name}"
            );
        }
        let e = plan(
            &[secret("HF_TOKEN", "a"), secret("hf-token", "b")],
            Naming::Plain,
            false,
            |_| false,
        )
        .unwrap_err();
        assert!(e[0].contains("both map to the variable HF_TOKEN"), "{e:?}");
        let e = plan(&[secret("user", "a")], Naming::Plain, false, |v| {
            v == "USER"
        })
        .unwrap_err();
        assert!(e[0].contains("--override"), "{e:?}");
        assert!(plan(&[secret("user", "a")], Naming::Plain, true, |v| v == "USER").is_ok());
        let e = plan(&[secret("n", "a\0b")], Naming::Truss, false, |_| false).unwrap_err();
        assert!(e[0].contains("NUL") && !e[0].contains("a\0b"), "{e:?}");
    }

    #[test]
    fn denial_ignores_case() {
        assert!(is_denied("ld_preload") && is_denied("Path") && is_denied("LD_AUDIT"));
        assert!(!is_denied("TRUSS_SECRET_PATH") && !is_denied("HF_TOKEN"));
    }
}
