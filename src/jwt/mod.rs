//! JWT verification: algorithms, keys and the access-token rules.

mod alg;
mod cache;
mod jose;
mod keys;
mod rsa_key;
mod verify;

pub use alg::{Alg, KeyFamily};
pub use cache::TokenCache;
pub use keys::{decode_b64url, KeyEntry, KeySet, KeySource, VerifyKey, MAX_KEYS_PER_SET};
pub use verify::{Issuer, TokenError, VerifiedToken, Verifier};
