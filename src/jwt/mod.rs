//! JWT verification: algorithms, keys and the access-token rules.

mod alg;
mod cache;
mod curve_keys;
mod hmac_key;
mod jose;
mod keys;
mod limbs;
mod p256_ecdsa;
mod p256_field;
mod p256_point;
mod p256_uint;
mod rsa_key;
mod rsa_padding;
mod rsa_public;
pub mod shared_jwks;
mod verify;

pub use alg::{Alg, KeyFamily};
pub use cache::TokenCache;
pub use keys::{decode_b64url, KeyEntry, KeySet, KeySource, VerifyKey, MAX_KEYS_PER_SET};
pub use verify::{Issuer, TokenError, VerifiedToken, Verifier};

/// Deterministic test bytes (SHA-256 in counter mode): reproducible inputs without a random
/// number generator.
#[cfg(test)]
pub(crate) fn test_bytes(len: usize, seed: u8) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    (0u32..)
        .flat_map(|block| {
            Sha256::new()
                .chain_update([seed])
                .chain_update(block.to_be_bytes())
                .finalize()
        })
        .take(len)
        .collect()
}

/// A deterministic random number generator for test keys and salts.
#[cfg(test)]
pub(crate) struct TestRng(pub u8, pub u64);

#[cfg(test)]
impl rsa::rand_core::TryRng for TestRng {
    type Error = std::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.try_next_u64()? as u32)
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut bytes = [0; 8];
        self.try_fill_bytes(&mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        use sha2::{Digest, Sha256};
        for chunk in dst.chunks_mut(32) {
            self.1 += 1;
            let block = Sha256::new()
                .chain_update([self.0])
                .chain_update(self.1.to_be_bytes())
                .finalize();
            chunk.copy_from_slice(&block[..chunk.len()]);
        }
        Ok(())
    }
}

#[cfg(test)]
impl rsa::rand_core::TryCryptoRng for TestRng {}
