//! Names people choose (teams, API keys, users, organizations) and email
//! addresses. Secret names have their own, stricter rules
//! (`secret_name.rs`: ASCII only).
//!
//! Two names that look the same must be the same name. So every name is
//! normalized to Unicode NFC (a precomposed `é` and `e` + combining accent are
//! one spelling), trimmed of surrounding whitespace, and refused when it holds
//! a character that is invisible or changes how text around it is shown:
//! control characters (Unicode category Cc), format characters (Cf: zero-width
//! spaces and joiners, bidirectional overrides such as U+202E, the byte order
//! mark) and line or paragraph separators (Zl, Zp).
//!
//! Emails are compared case-insensitively: their identity is [`email_key`]
//! (NFC, then lowercase). The spelling given is kept for display.

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// Why a name was refused; the message is meant for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NameError(pub String);

/// Whether `c` may appear in a name.
fn is_invisible(c: char) -> bool {
    matches!(
        c.general_category(),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
    )
}

/// Refuses invisible and control characters, naming the first one found.
fn check_visible(what: &str, s: &str) -> Result<(), NameError> {
    match s.chars().enumerate().find(|(_, c)| is_invisible(*c)) {
        Some((i, c)) => Err(NameError(format!(
            "{what} must not contain control or invisible formatting characters \
             (found U+{:04X} at character {})",
            c as u32,
            i + 1
        ))),
        None => Ok(()),
    }
}

/// NFC of `s`.
pub fn nfc(s: &str) -> String {
    s.nfc().collect()
}

/// A display name (team, key, user or organization name): trimmed, NFC,
/// 1 to `max_chars` characters, nothing invisible. `what` names the field in
/// error messages.
pub fn display_name(what: &str, raw: &str, max_chars: usize) -> Result<String, NameError> {
    let name = nfc(raw.trim());
    if name.is_empty() {
        return Err(NameError(format!("{what} must not be blank")));
    }
    if name.chars().count() > max_chars {
        return Err(NameError(format!(
            "{what} is longer than {max_chars} characters"
        )));
    }
    check_visible(what, &name)?;
    Ok(name)
}

/// Longest accepted email address, in bytes (RFC 5321's path limit).
pub const MAX_EMAIL_BYTES: usize = 254;

/// An email address as given (trimmed, NFC), checked. Its identity is
/// [`email_key`] of the result.
pub fn email(raw: &str) -> Result<String, NameError> {
    let email = nfc(raw.trim());
    check_visible("email", &email)?;
    if email.len() > MAX_EMAIL_BYTES
        || email.chars().any(char::is_whitespace)
        || !email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
    {
        return Err(NameError(
            "email must be an address like name@example.com".into(),
        ));
    }
    Ok(email)
}

/// What makes two emails the same address: NFC, then lowercase (full Unicode
/// case mapping), so `Dup.User@x.y` and `dup.user@x.y` are one user.
pub fn email_key(email: &str) -> String {
    nfc(&nfc(email).to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invisible_and_bidi_characters_are_refused() {
        for bad in [
            "default\u{200b}",
            "\u{202e}tluafed",
            "a\u{feff}b",
            "a\u{2028}b",
            "tab\there",
            "zw\u{200d}j",
        ] {
            let e = display_name("team name", bad, 100).unwrap_err();
            assert!(e.0.contains("team name must not contain"), "{bad:?}: {e}");
            assert!(e.0.contains("U+"), "{e}");
        }
        assert!(email("dup.user\u{200b}@x.y").is_err());
    }

    #[test]
    fn names_are_nfc_and_trimmed() {
        let decomposed = "cafe\u{301}";
        assert_eq!(display_name("n", decomposed, 10).unwrap(), "caf\u{e9}");
        assert_eq!(display_name("n", "  ml  ", 10).unwrap(), "ml");
        assert!(display_name("n", "   ", 10).is_err());
        assert!(display_name("n", "abcdef", 5).is_err());
        // Ordinary non-ASCII names stay allowed.
        assert_eq!(display_name("n", "Zürich ✓", 10).unwrap(), "Zürich ✓");
    }

    #[test]
    fn emails_compare_case_insensitively() {
        assert_eq!(email_key("Dup.User@X.y"), email_key("dup.user@x.y"));
        assert_eq!(email_key("ÄNNE@x.y"), email_key("a\u{308}nne@x.y"));
        assert_eq!(email("  Ana@Example.com ").unwrap(), "Ana@Example.com");
        for bad in ["no-at", "@x.y", "a@", "a b@x.y"] {
            assert!(email(bad).is_err(), "{bad}");
        }
    }
}
