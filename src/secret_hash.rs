//! Stored secrets: client secrets as SHA-256 (they are long and random) and user passwords as
//! PBKDF2-HMAC-SHA256 (they are not). Both compared in constant time.
//!
//! Formats: `sha256$<base64url digest>` and
//! `pbkdf2-sha256$<iterations>$<base64url salt>$<base64url 32-byte hash>`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Fewest PBKDF2 iterations accepted in config; the CLI writes more.
pub const MIN_PBKDF2_ITERATIONS: u32 = 10_000;
/// Most accepted: each sign-in runs this many HMACs on an Envoy worker thread.
pub const MAX_PBKDF2_ITERATIONS: u32 = 2_000_000;
/// What `mcp-oauth hash-password` uses by default.
pub const DEFAULT_PBKDF2_ITERATIONS: u32 = 100_000;

/// A parsed stored hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretHash {
    Sha256([u8; 32]),
    Pbkdf2 {
        iterations: u32,
        salt: Vec<u8>,
        hash: [u8; 32],
    },
}

impl SecretHash {
    pub fn parse(text: &str) -> Result<SecretHash, String> {
        let parts: Vec<&str> = text.split('$').collect();
        match parts.as_slice() {
            ["sha256", digest] => Ok(SecretHash::Sha256(decode32(digest)?)),
            ["pbkdf2-sha256", iterations, salt, hash] => {
                let iterations: u32 = iterations.parse().map_err(|_| "iterations is not a number".to_string())?;
                if !(MIN_PBKDF2_ITERATIONS..=MAX_PBKDF2_ITERATIONS).contains(&iterations) {
                    return Err(format!(
                        "iterations must be between {MIN_PBKDF2_ITERATIONS} and {MAX_PBKDF2_ITERATIONS}"
                    ));
                }
                let salt = URL_SAFE_NO_PAD.decode(salt).map_err(|_| "salt is not base64url".to_string())?;
                if salt.len() < 8 {
                    return Err("salt must be at least 8 bytes".into());
                }
                Ok(SecretHash::Pbkdf2 {
                    iterations,
                    salt,
                    hash: decode32(hash)?,
                })
            }
            _ => Err("expected sha256$<digest> or pbkdf2-sha256$<iterations>$<salt>$<hash> (make one with mcp-oauth)".into()),
        }
    }

    pub fn verify(&self, presented: &[u8]) -> bool {
        let computed = match self {
            SecretHash::Sha256(_) => sha256(presented),
            SecretHash::Pbkdf2 {
                iterations, salt, ..
            } => pbkdf2(presented, salt, *iterations),
        };
        let expected = match self {
            SecretHash::Sha256(d) => d,
            SecretHash::Pbkdf2 { hash, .. } => hash,
        };
        computed.ct_eq(expected).into()
    }

    pub fn sha256_of(secret: &[u8]) -> String {
        format!("sha256${}", URL_SAFE_NO_PAD.encode(sha256(secret)))
    }

    pub fn pbkdf2_of(password: &[u8], salt: &[u8], iterations: u32) -> String {
        format!(
            "pbkdf2-sha256${iterations}${}${}",
            URL_SAFE_NO_PAD.encode(salt),
            URL_SAFE_NO_PAD.encode(pbkdf2(password, salt, iterations))
        )
    }
}

fn decode32(text: &str) -> Result<[u8; 32], String> {
    let bytes = URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| "hash is not base64url".to_string())?;
    bytes
        .try_into()
        .map_err(|_| "hash must be 32 bytes".to_string())
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

fn pbkdf2(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_round_trip() {
        let stored = SecretHash::sha256_of(b"s3cret-value");
        let hash = SecretHash::parse(&stored).unwrap();
        assert!(hash.verify(b"s3cret-value"));
        assert!(!hash.verify(b"s3cret-valuf"));
    }

    #[test]
    fn pbkdf2_round_trip() {
        let stored = SecretHash::pbkdf2_of(b"pw", b"saltsalt", 10_000);
        let hash = SecretHash::parse(&stored).unwrap();
        assert!(hash.verify(b"pw"));
        assert!(!hash.verify(b"pW"));
    }

    #[test]
    fn weak_or_odd_hashes_are_refused() {
        assert!(SecretHash::parse("plain").is_err());
        assert!(SecretHash::parse("pbkdf2-sha256$10$c2FsdHNhbHQ$AAAA").is_err());
        assert!(SecretHash::parse("sha256$AAAA").is_err());
    }
}
