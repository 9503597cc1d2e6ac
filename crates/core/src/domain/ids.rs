//! Random identifiers: opaque base62 strings.
//!
//! They come from `rand`'s thread-local CSPRNG (ChaCha12, seeded and
//! periodically reseeded from the OS): unpredictable like the OS generator,
//! without a `getrandom` system call per character.

use rand::Rng;

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `len` random base62 characters (5.95 bits each).
pub fn random_base62(len: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| BASE62[rng.gen_range(0..BASE62.len())] as char)
        .collect()
}

/// A new id for an organization, team, user or secret (~95 bits).
pub fn new_id() -> String {
    random_base62(16)
}

pub fn is_base62(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric())
}
