//! API key tokens: `<prefix>.<secret>`.
//!
//! The prefix (8 base62 characters) identifies the key; the secret part (43
//! base62 characters, > 256 bits) is shown once and stored only as a SHA-256
//! hash. A plain hash is enough because the secret is uniformly random and
//! long: there is nothing to brute-force, so a slow password hash would only
//! cost latency on every request.

use super::ids::{is_base62, random_base62};
use sha2::{Digest, Sha256};
use std::fmt;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

pub const PREFIX_LEN: usize = 8;
pub const SECRET_LEN: usize = 43;

/// A freshly minted key. The full token exists only here and in the response.
pub struct NewKeyToken {
    pub prefix: String,
    token: Zeroizing<String>,
    pub secret_hash: Vec<u8>,
}

impl NewKeyToken {
    pub fn generate() -> Self {
        let prefix = random_base62(PREFIX_LEN);
        let secret = Zeroizing::new(random_base62(SECRET_LEN));
        let secret_hash = hash_secret(&secret);
        let token = Zeroizing::new(format!("{prefix}.{}", secret.as_str()));
        Self {
            prefix,
            token,
            secret_hash,
        }
    }

    pub fn token(&self) -> &str {
        &self.token
    }
}

impl fmt::Debug for NewKeyToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NewKeyToken({}.[redacted])", self.prefix)
    }
}

/// A token presented by a client, split but not yet verified.
pub struct PresentedToken<'a> {
    pub prefix: &'a str,
    secret: &'a str,
}

impl<'a> PresentedToken<'a> {
    /// Splits `<prefix>.<secret>`; `None` when the shape is wrong.
    pub fn parse(token: &'a str) -> Option<Self> {
        let (prefix, secret) = token.split_once('.')?;
        if prefix.len() != PREFIX_LEN || !is_base62(prefix) {
            return None;
        }
        if secret.len() != SECRET_LEN || !is_base62(secret) {
            return None;
        }
        Some(Self { prefix, secret })
    }

    /// Constant-time comparison against the stored hash.
    pub fn matches(&self, stored_hash: &[u8]) -> bool {
        let h = hash_secret(self.secret);
        h.ct_eq(stored_hash).into()
    }
}

fn hash_secret(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse_and_verify() {
        let k = NewKeyToken::generate();
        let p = PresentedToken::parse(k.token()).unwrap();
        assert_eq!(p.prefix, k.prefix);
        assert!(p.matches(&k.secret_hash));
        let other = NewKeyToken::generate();
        assert!(!p.matches(&other.secret_hash));
        assert!(!format!("{k:?}").contains(&k.token()[9..]));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for t in [
            "",
            "abc",
            "abcdefgh",
            "abcdefgh.",
            "abc.defghijk",
            "abcdefg!.x",
        ] {
            assert!(PresentedToken::parse(t).is_none(), "{t}");
        }
    }
}
