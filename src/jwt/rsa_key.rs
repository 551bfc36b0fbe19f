//! RSA public keys for RS256/384/512 and PS256/384/512, checked with the `rsa` 0.10 crate
//! (crypto-bigint). `jwt-simple`'s own RSA keys run on `rsa` 0.9 and `num-bigint-dig`, whose
//! 128-bit arithmetic is emulated in Wasm: measured in V8 (`make bench-core`), a signature
//! check here takes well under half the time. `jwt-simple` still parses and vets the JWK
//! (2048 to 4096 bits, exponent 65537); this type only holds the numbers.

use rsa::signature::Verifier;
use rsa::{pkcs1v15, pss, BoxedUint, PublicKey};
use sha2::{Sha256, Sha384, Sha512};

use super::alg::Alg;

/// An RSA public key bound to one algorithm (PKCS #1 v1.5 for RS*, PSS with a salt as long
/// as the hash for PS*, as RFC 7518 §3.3 and §3.5 say).
pub enum RsaKey {
    RS256(pkcs1v15::VerifyingKey<Sha256>),
    RS384(pkcs1v15::VerifyingKey<Sha384>),
    RS512(pkcs1v15::VerifyingKey<Sha512>),
    PS256(pss::VerifyingKey<Sha256>),
    PS384(pss::VerifyingKey<Sha384>),
    PS512(pss::VerifyingKey<Sha512>),
}

impl RsaKey {
    /// The key with modulus `n` and exponent `e` (big-endian), for `alg`; `None` if `alg` is
    /// not an RSA algorithm or the numbers are not a usable key.
    pub fn new(alg: Alg, n: &[u8], e: &[u8]) -> Option<RsaKey> {
        let key = PublicKey::new(
            BoxedUint::from_be_slice_vartime(n),
            BoxedUint::from_be_slice_vartime(e),
        )
        .ok()?;
        Some(match alg {
            Alg::RS256 => RsaKey::RS256(pkcs1v15::VerifyingKey::new(key)),
            Alg::RS384 => RsaKey::RS384(pkcs1v15::VerifyingKey::new(key)),
            Alg::RS512 => RsaKey::RS512(pkcs1v15::VerifyingKey::new(key)),
            Alg::PS256 => RsaKey::PS256(pss::VerifyingKey::new(key)),
            Alg::PS384 => RsaKey::PS384(pss::VerifyingKey::new(key)),
            Alg::PS512 => RsaKey::PS512(pss::VerifyingKey::new(key)),
            _ => return None,
        })
    }

    pub fn alg(&self) -> Alg {
        match self {
            RsaKey::RS256(_) => Alg::RS256,
            RsaKey::RS384(_) => Alg::RS384,
            RsaKey::RS512(_) => Alg::RS512,
            RsaKey::PS256(_) => Alg::PS256,
            RsaKey::PS384(_) => Alg::PS384,
            RsaKey::PS512(_) => Alg::PS512,
        }
    }

    /// Whether `signature` signs `message` under this key and its algorithm.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            RsaKey::RS256(key) => check(key, message, pkcs1v15::Signature::try_from(signature)),
            RsaKey::RS384(key) => check(key, message, pkcs1v15::Signature::try_from(signature)),
            RsaKey::RS512(key) => check(key, message, pkcs1v15::Signature::try_from(signature)),
            RsaKey::PS256(key) => check(key, message, pss::Signature::try_from(signature)),
            RsaKey::PS384(key) => check(key, message, pss::Signature::try_from(signature)),
            RsaKey::PS512(key) => check(key, message, pss::Signature::try_from(signature)),
        }
    }
}

fn check<S, E>(key: &impl Verifier<S>, message: &[u8], signature: Result<S, E>) -> bool {
    signature.is_ok_and(|signature| key.verify(message, &signature).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jwt_simple::prelude::*;

    /// Tokens `jwt-simple` signs with each RSA algorithm verify here, and only under that
    /// algorithm's key; a changed signature does not.
    #[test]
    fn every_rsa_algorithm_checks_jwt_simple_signatures() {
        let claims = || Claims::create(Duration::from_mins(5));
        let rs384 = RS384KeyPair::generate(2048).unwrap();
        let rs512 = RS512KeyPair::generate(2048).unwrap();
        let ps256 = PS256KeyPair::generate(2048).unwrap();
        let ps512 = PS512KeyPair::generate(2048).unwrap();
        let cases = [
            (
                Alg::RS384,
                rs384.sign(claims()).unwrap(),
                rs384.public_key().to_components(),
            ),
            (
                Alg::RS512,
                rs512.sign(claims()).unwrap(),
                rs512.public_key().to_components(),
            ),
            (
                Alg::PS256,
                ps256.sign(claims()).unwrap(),
                ps256.public_key().to_components(),
            ),
            (
                Alg::PS512,
                ps512.sign(claims()).unwrap(),
                ps512.public_key().to_components(),
            ),
        ];
        for (alg, token, parts) in cases {
            let (signed, signature) = token.rsplit_once('.').unwrap();
            let signature = crate::jwt::decode_b64url(signature).unwrap();
            let key = RsaKey::new(alg, &parts.n, &parts.e).unwrap();
            assert_eq!(key.alg(), alg);
            assert!(key.verify(signed.as_bytes(), &signature), "{alg:?}");
            let mut changed = signature.clone();
            changed[10] ^= 1;
            assert!(!key.verify(signed.as_bytes(), &changed), "{alg:?}");
            let other = if alg == Alg::PS256 {
                Alg::RS256
            } else {
                Alg::PS256
            };
            let wrong = RsaKey::new(other, &parts.n, &parts.e).unwrap();
            assert!(
                !wrong.verify(signed.as_bytes(), &signature),
                "{alg:?} as {other:?}"
            );
        }
        assert!(RsaKey::new(Alg::ES256, &[1], &[1, 0, 1]).is_none());
    }
}
