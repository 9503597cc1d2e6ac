//! Secret names: validation and the canonical form that decides identity.
//!
//! Names become file names under a workload's secrets directory, so the
//! alphabet is deliberately small: `/`, `..`, spaces and control characters can
//! never appear. Identity uses a canonical form in which every
//! non-alphanumeric character is `_` (case is kept), so `hf-access-token`,
//! `hf.access.token` and `hf_access_token` name one secret.

use std::fmt;

/// Longest accepted name, in characters (the DNS label-ish limit Baseten uses).
pub const MAX_NAME_LEN: usize = 253;

/// A validated secret name: the spelling as given plus its canonical form.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretName {
    spelling: String,
    canonical: String,
}

/// Why a name was refused; the message names the rule that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretNameError {
    #[error("secret name must not be empty")]
    Empty,
    #[error("secret name is {0} characters long; the limit is {MAX_NAME_LEN}")]
    TooLong(usize),
    #[error("secret name must start with a letter, a digit or '_'")]
    BadFirstCharacter,
    #[error(
        "secret name may only contain letters, digits, '.', '_' and '-' (found a disallowed character at position {0})"
    )]
    BadCharacter(usize),
}

impl SecretName {
    pub fn parse(input: &str) -> Result<Self, SecretNameError> {
        if input.is_empty() {
            return Err(SecretNameError::Empty);
        }
        let len = input.chars().count();
        if len > MAX_NAME_LEN {
            return Err(SecretNameError::TooLong(len));
        }
        for (i, c) in input.chars().enumerate() {
            let allowed = c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
            if !allowed {
                return Err(SecretNameError::BadCharacter(i + 1));
            }
        }
        let first = input.as_bytes()[0];
        if !(first.is_ascii_alphanumeric() || first == b'_') {
            return Err(SecretNameError::BadFirstCharacter);
        }
        Ok(Self {
            spelling: input.to_owned(),
            canonical: canonicalize(input),
        })
    }

    /// The spelling as the caller gave it.
    pub fn as_str(&self) -> &str {
        &self.spelling
    }

    /// The identity key: every non-alphanumeric character replaced by `_`.
    pub fn canonical(&self) -> &str {
        &self.canonical
    }
}

/// Canonical form of a (valid) name.
pub fn canonicalize(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

impl fmt::Debug for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretName({:?})", self.spelling)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn aliases_share_a_canonical_form() {
        let a = SecretName::parse("hf-access-token").unwrap();
        let b = SecretName::parse("hf.access.token").unwrap();
        let c = SecretName::parse("hf_access_token").unwrap();
        assert_eq!(a.canonical(), "hf_access_token");
        assert_eq!(a.canonical(), b.canonical());
        assert_eq!(b.canonical(), c.canonical());
        assert_eq!(a.as_str(), "hf-access-token");
    }

    #[test]
    fn case_is_significant() {
        let a = SecretName::parse("HF_TOKEN").unwrap();
        let b = SecretName::parse("hf_token").unwrap();
        assert_ne!(a.canonical(), b.canonical());
    }

    #[test]
    fn each_rule_has_its_own_error() {
        assert_eq!(SecretName::parse(""), Err(SecretNameError::Empty));
        assert_eq!(
            SecretName::parse(&"a".repeat(254)),
            Err(SecretNameError::TooLong(254))
        );
        assert!(SecretName::parse(&"a".repeat(253)).is_ok());
        assert_eq!(
            SecretName::parse("-leading"),
            Err(SecretNameError::BadFirstCharacter)
        );
        assert_eq!(
            SecretName::parse(".hidden"),
            Err(SecretNameError::BadFirstCharacter)
        );
        assert_eq!(
            SecretName::parse("a/b"),
            Err(SecretNameError::BadCharacter(2))
        );
        assert_eq!(
            SecretName::parse(".."),
            Err(SecretNameError::BadFirstCharacter)
        );
        assert_eq!(
            SecretName::parse("a b"),
            Err(SecretNameError::BadCharacter(2))
        );
        assert_eq!(
            SecretName::parse("a\nb"),
            Err(SecretNameError::BadCharacter(2))
        );
        assert_eq!(
            SecretName::parse("é"),
            Err(SecretNameError::BadCharacter(1))
        );
        assert!(SecretName::parse("_x").is_ok());
        assert!(SecretName::parse("9lives").is_ok());
    }

    proptest! {
        #[test]
        fn valid_names_are_accepted_and_canonical_is_safe(
            name in "[A-Za-z0-9_][A-Za-z0-9._-]{0,252}"
        ) {
            let parsed = SecretName::parse(&name).unwrap();
            prop_assert_eq!(parsed.as_str(), name.as_str());
            prop_assert_eq!(parsed.canonical().len(), name.len());
            prop_assert!(parsed.canonical().chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
            // Canonicalization is idempotent and the canonical form is itself valid.
            let again = SecretName::parse(parsed.canonical()).unwrap();
            prop_assert_eq!(again.canonical(), parsed.canonical());
        }

        #[test]
        fn anything_with_a_path_separator_or_space_is_refused(
            prefix in "[a-z]{0,5}", bad in "[/ \\\\\t\n\0]", suffix in "[a-z]{0,5}"
        ) {
            let name = format!("{prefix}{bad}{suffix}");
            prop_assert!(SecretName::parse(&name).is_err());
        }

        #[test]
        fn arbitrary_input_never_panics_and_accepted_names_match_the_rules(s in "\\PC{0,300}") {
            if let Ok(n) = SecretName::parse(&s) {
                prop_assert!(!n.as_str().is_empty() && n.as_str().chars().count() <= MAX_NAME_LEN);
                prop_assert!(n.as_str().chars().all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c)));
                prop_assert!(!n.as_str().starts_with(['.', '-']));
            }
        }

        #[test]
        fn aliases_differing_only_in_separators_collide(
            parts in proptest::collection::vec("[A-Za-z0-9]{1,8}", 1..5),
            seps in proptest::collection::vec("[._-]", 4)
        ) {
            let a = parts.join("_");
            let mut b = String::new();
            for (i, p) in parts.iter().enumerate() {
                if i > 0 { b.push_str(&seps[i - 1]); }
                b.push_str(p);
            }
            let (pa, pb) = (SecretName::parse(&a).unwrap(), SecretName::parse(&b).unwrap());
            prop_assert_eq!(pa.canonical(), pb.canonical());
        }
    }
}
