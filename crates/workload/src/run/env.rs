//! Which environment variables `tessera run` sets, and the rules that make a
//! bad mapping an error rather than a silent choice.

use super::named::Pair;
use crate::domain::secret_value::SecretValue;
use crate::runtime_client::RuntimeSecret;
use std::collections::BTreeMap;

/// Prefix of the variables Truss's secrets resolver reads.
pub const TRUSS_PREFIX: &str = "TRUSS_SECRET_";

/// How secrets become variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Naming {
    /// Every secret, as `TRUSS_SECRET_<name>` for the stored spelling and,
    /// when different, the canonical name. No program but Truss's resolver
    /// reads that namespace, so a secret's name chooses nothing else.
    Truss,
    /// Exactly the bare variables the person running the workload named,
    /// each from the secret named with it; no other secret is passed.
    Named(Vec<Pair>),
}

/// The `TRUSS_SECRET_` variables one secret sets.
fn truss_variables(s: &RuntimeSecret) -> Vec<String> {
    if s.name == s.canonical_name {
        vec![format!("{TRUSS_PREFIX}{}", s.name)]
    } else {
        vec![
            format!("{TRUSS_PREFIX}{}", s.name),
            format!("{TRUSS_PREFIX}{}", s.canonical_name),
        ]
    }
}

/// (variable, secret) in the order they are set.
fn assignments<'s>(
    secrets: &'s [RuntimeSecret],
    naming: &Naming,
    problems: &mut Vec<String>,
) -> Vec<(String, &'s RuntimeSecret)> {
    match naming {
        Naming::Truss => secrets
            .iter()
            .flat_map(|s| truss_variables(s).into_iter().map(move |v| (v, s)))
            .collect(),
        Naming::Named(pairs) => pairs
            .iter()
            .filter_map(|p| {
                let found = secrets.iter().find(|s| s.canonical_name == p.canonical);
                if found.is_none() {
                    problems.push(format!(
                        "{} ({}) names the secret {:?}, which does not exist or is outside this key's scope",
                        p.var, p.origin, p.secret
                    ));
                }
                found.map(|s| (p.var.clone(), s))
            })
            .collect(),
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
/// - a named secret that is not in the key's scope;
/// - two secrets mapping to one variable;
/// - a variable that is already set (`already_set`) unless `replace`;
/// - a value holding a NUL byte, which no environment can carry.
///
/// (Named variables were checked against the refused families when they
/// were parsed.)
pub fn plan(
    secrets: &[RuntimeSecret],
    naming: &Naming,
    replace: bool,
    already_set: impl Fn(&str) -> bool,
) -> Result<Plan, Vec<String>> {
    let mut problems = Vec::new();
    let mut owner: BTreeMap<String, &str> = BTreeMap::new();
    let mut vars = BTreeMap::new();
    for (var, s) in assignments(secrets, naming, &mut problems) {
        if s.value.expose().contains('\0') {
            let problem = format!(
                "secret {:?} contains a NUL byte, which an environment variable cannot hold",
                s.name
            );
            if !problems.contains(&problem) {
                problems.push(problem);
            }
            continue;
        }
        if let Some(other) = owner.get(&var) {
            problems.push(format!(
                "secrets {other:?} and {:?} both map to the variable {var}",
                s.name
            ));
            continue;
        }
        owner.insert(var.clone(), &s.name);
        if already_set(&var) && !replace {
            problems.push(format!(
                "{var} (from secret {:?}) is already set in the environment; pass --override to replace it",
                s.name
            ));
        } else {
            vars.insert(var, SecretValue::new(s.value.expose().to_owned()));
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
    use super::super::named::parse_pair;
    use super::*;

    fn secret(name: &str, value: &str) -> RuntimeSecret {
        RuntimeSecret {
            name: name.into(),
            canonical_name: crate::domain::secret_name::canonicalize(name),
            value: SecretValue::new(value.into()),
            version: 1,
        }
    }

    fn named(pairs: &[&str]) -> Naming {
        Naming::Named(
            pairs
                .iter()
                .map(|p| parse_pair(p, "--plain").unwrap())
                .collect(),
        )
    }

    #[test]
    fn truss_names_cover_both_spellings_whatever_the_name() {
        let p = plan(
            &[
                secret("hf-token", "v"),
                secret("x", "w"),
                secret("LD_PRELOAD", "z"),
            ],
            &Naming::Truss,
            false,
            |_| false,
        )
        .unwrap();
        let names: Vec<&str> = p.vars.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            vec![
                "TRUSS_SECRET_LD_PRELOAD",
                "TRUSS_SECRET_hf-token",
                "TRUSS_SECRET_hf_token",
                "TRUSS_SECRET_x"
            ]
        );
    }

    #[test]
    fn named_sets_exactly_the_pairs_and_nothing_else() {
        let secrets = [
            secret("hf-token", "v"),
            secret("GIT_CONFIG_COUNT", "1"),
            secret("db", "d"),
        ];
        let p = plan(
            &secrets,
            &named(&["HF_TOKEN=hf.token", "ALSO=hf_token"]),
            false,
            |_| false,
        )
        .unwrap();
        let names: Vec<&str> = p.vars.keys().map(String::as_str).collect();
        assert_eq!(names, vec!["ALSO", "HF_TOKEN"]);
        assert_eq!(p.vars["HF_TOKEN"].expose(), "v");

        let e = plan(&secrets, &named(&["X=missing"]), false, |_| false).unwrap_err();
        assert!(e[0].contains("\"missing\", which does not exist"), "{e:?}");
        let e = plan(&secrets, &named(&["USER=db"]), false, |v| v == "USER").unwrap_err();
        assert!(e[0].contains("--override"), "{e:?}");
        assert!(plan(&secrets, &named(&["USER=db"]), true, |v| v == "USER").is_ok());
    }

    #[test]
    fn collisions_and_nul_bytes_are_errors_that_show_no_value() {
        let e = plan(
            &[secret("HF_TOKEN", "a"), secret("HF-TOKEN", "b")],
            &Naming::Truss,
            false,
            |_| false,
        )
        .unwrap_err();
        assert!(
            e[0].contains("both map to the variable TRUSS_SECRET_HF_TOKEN"),
            "{e:?}"
        );
        let e = plan(&[secret("n-x", "a\0b")], &Naming::Truss, false, |_| false).unwrap_err();
        assert_eq!(e.len(), 1, "one problem per secret: {e:?}");
        assert!(e[0].contains("NUL") && !e[0].contains("a\0b"), "{e:?}");
    }
}
