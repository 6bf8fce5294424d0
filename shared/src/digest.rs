//! Hex digests of text, for ids that must be short, stable and safe to put in a record or a
//! message attribute.

use sha2::{Digest, Sha256};

/// The first `bytes` bytes (at most 32) of `text`'s SHA-256, in lowercase hex.
pub(crate) fn sha256_hex(text: &str, bytes: usize) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest
        .iter()
        .take(bytes)
        .map(|b| format!("{b:02x}"))
        .collect()
}
