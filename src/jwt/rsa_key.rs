//! RSA public keys for RS256/384/512 and PS256/384/512: RSA's public operation
//! (`rsa_public`, 32-bit Montgomery arithmetic, about 3× faster in V8 than the `rsa` crate)
//! and the algorithm's signature encoding (`rsa_padding`). The key is vetted here: 2048 to
//! 4096 bits, an odd exponent below 2³³.

use sha2::{Digest, Sha256, Sha384, Sha512};

use super::alg::Alg;
use super::rsa_padding::{
    pkcs1_v15_matches, pss_matches, SHA256_PREFIX, SHA384_PREFIX, SHA512_PREFIX,
};
use super::rsa_public::RsaPublic;

/// An RSA public key bound to one algorithm (PKCS #1 v1.5 for RS*, PSS with a salt as long
/// as the hash for PS*, as RFC 7518 §3.3 and §3.5 say).
pub struct RsaKey {
    alg: Alg,
    public: RsaPublic,
}

impl RsaKey {
    /// The key with modulus `n` and exponent `e` (big-endian), for `alg`; `None` if `alg` is
    /// not an RSA algorithm or the numbers are not a usable key.
    pub fn new(alg: Alg, n: &[u8], e: &[u8]) -> Option<RsaKey> {
        match alg {
            Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512 => {
                Some(RsaKey {
                    alg,
                    public: RsaPublic::new(n, e)?,
                })
            }
            _ => None,
        }
    }

    pub fn alg(&self) -> Alg {
        self.alg
    }

    /// Whether `signature` signs `message` under this key and its algorithm.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let Some(m) = self.public.apply(signature) else {
            return false;
        };
        let bits = self.public.bits();
        match self.alg {
            Alg::RS256 => pkcs1_v15_matches(&m, SHA256_PREFIX, &Sha256::digest(message)),
            Alg::RS384 => pkcs1_v15_matches(&m, SHA384_PREFIX, &Sha384::digest(message)),
            Alg::RS512 => pkcs1_v15_matches(&m, SHA512_PREFIX, &Sha512::digest(message)),
            Alg::PS256 => pss_matches::<Sha256>(&m, bits, &Sha256::digest(message)),
            Alg::PS384 => pss_matches::<Sha384>(&m, bits, &Sha384::digest(message)),
            Alg::PS512 => pss_matches::<Sha512>(&m, bits, &Sha512::digest(message)),
            _ => false,
        }
    }
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

    /// Signatures over chosen encoded messages, made with the private key (so the public
    /// operation yields exactly that message): well-formed ones and each way of breaking
    /// them get the same answer here as from the `rsa` crate, for key sizes where the PSS
    /// encoding is one octet shorter than the modulus (2049 bits) or not.
    #[test]
    fn encodings_get_the_same_answer_as_from_the_rsa_crate() {
        use rsa::hazmat::rsa_decrypt;
        use rsa::signature::{RandomizedSigner, SignatureEncoding, Verifier};
        use rsa::traits::PublicKeyParts;
        use rsa::{pkcs1v15, pss, BoxedUint, PrivateKey};

        let mut rng = crate::jwt::TestRng(1, 0);
        for bits in [2048, 2049, 2056] {
            let private = PrivateKey::new(&mut rng, bits).unwrap();
            let public = private.to_public_key();
            let (n, e) = (public.n_bytes(), public.e_bytes());
            let k = n.len();
            // The signature whose public operation is `em` (k octets, below n).
            let sign_raw = |em: &[u8]| -> Vec<u8> {
                let m = BoxedUint::from_be_slice(em, public.n().bits_precision()).unwrap();
                let s = rsa_decrypt::<crate::jwt::TestRng>(None, &private, &m).unwrap();
                let mut out = s.to_be_bytes_trimmed_vartime().to_vec();
                while out.len() < k {
                    out.insert(0, 0);
                }
                out
            };
            let message = b"header.payload";
            let hash = Sha256::digest(message);
            let mut cases: Vec<(Alg, Vec<u8>)> = Vec::new();
            // PKCS #1 v1.5: the real thing, then broken encodings.
            let good = [
                &[0u8, 1][..],
                &vec![0xff; k - 3 - 19 - 32],
                &[0],
                SHA256_PREFIX,
                &hash,
            ]
            .concat();
            cases.push((Alg::RS256, sign_raw(&good)));
            let mut variants = vec![];
            for at in [0, 1, 2, k - 52, k - 51, k - 40, k - 33, k - 1] {
                let mut v = good.clone();
                v[at] ^= 0x01;
                variants.push(v);
            }
            // No NULL parameters in the DigestInfo (some signers do this); short padding.
            let no_null: Vec<u8> = [&SHA256_PREFIX[..13], &[0x04, 0x20]].concat();
            let mut fixed = no_null.clone();
            fixed[1] = 0x2f;
            fixed[3] = 0x0b;
            variants.push(
                [
                    &[0u8, 1][..],
                    &vec![0xff; k - 3 - 17 - 32],
                    &[0],
                    &fixed,
                    &hash,
                ]
                .concat(),
            );
            variants.push(
                [
                    &[0u8, 1][..],
                    &vec![0xff; k - 3 - 19 - 32 - 1],
                    &[0],
                    SHA256_PREFIX,
                    &hash,
                    &[0],
                ]
                .concat(),
            );
            variants.push(
                [
                    &[0u8, 2][..],
                    &vec![0xff; k - 3 - 19 - 32],
                    &[0],
                    SHA256_PREFIX,
                    &hash,
                ]
                .concat(),
            );
            for v in variants {
                cases.push((Alg::RS256, sign_raw(&v)));
            }
            // PSS, signed by the rsa crate with a salt as long as the hash, and with others.
            for (alg, salt) in [
                (Alg::PS256, 32),
                (Alg::PS256, 0),
                (Alg::PS256, 20),
                (Alg::PS384, 48),
                (Alg::PS512, 64),
            ] {
                let signature = match alg {
                    Alg::PS256 => {
                        pss::SigningKey::<Sha256>::new_with_salt_len(private.clone(), salt)
                            .sign_with_rng(&mut rng, message)
                            .to_vec()
                    }
                    Alg::PS384 => {
                        pss::SigningKey::<Sha384>::new_with_salt_len(private.clone(), salt)
                            .sign_with_rng(&mut rng, message)
                            .to_vec()
                    }
                    _ => pss::SigningKey::<Sha512>::new_with_salt_len(private.clone(), salt)
                        .sign_with_rng(&mut rng, message)
                        .to_vec(),
                };
                cases.push((alg, signature.clone()));
                // The encoded message, broken in each part, re-signed.
                let em = public_op(&public, &signature);
                for at in [0, 1, k / 2, k - 34, k - 2, k - 1] {
                    let mut v = em.clone();
                    v[at] ^= 0x80;
                    if BoxedUint::from_be_slice_vartime(&v) < *public.n().as_ref() {
                        cases.push((alg, sign_raw(&v)));
                    }
                }
            }
            let mut accepted = 0;
            for (alg, signature) in &cases {
                let ours = RsaKey::new(*alg, &n, &e)
                    .unwrap()
                    .verify(message, signature);
                let theirs = match alg {
                    Alg::RS256 => pkcs1v15::VerifyingKey::<Sha256>::new(public.clone())
                        .verify(
                            message,
                            &pkcs1v15::Signature::try_from(&signature[..]).unwrap(),
                        )
                        .is_ok(),
                    Alg::PS256 => pss::VerifyingKey::<Sha256>::new(public.clone())
                        .verify(message, &pss::Signature::try_from(&signature[..]).unwrap())
                        .is_ok(),
                    Alg::PS384 => pss::VerifyingKey::<Sha384>::new(public.clone())
                        .verify(message, &pss::Signature::try_from(&signature[..]).unwrap())
                        .is_ok(),
                    _ => pss::VerifyingKey::<Sha512>::new(public.clone())
                        .verify(message, &pss::Signature::try_from(&signature[..]).unwrap())
                        .is_ok(),
                };
                assert_eq!(ours, theirs, "{bits} bits, {alg:?}");
                accepted += usize::from(ours);
            }
            // The well-formed ones: RS256, and PSS with the hash's salt length in three hashes.
            assert_eq!(accepted, 4, "{bits} bits");
        }
    }

    fn public_op(public: &rsa::PublicKey, signature: &[u8]) -> Vec<u8> {
        use rsa::traits::PublicKeyParts;
        let m = rsa::hazmat::rsa_encrypt(public, &rsa::BoxedUint::from_be_slice_vartime(signature))
            .unwrap();
        let mut out = m.to_be_bytes_trimmed_vartime().to_vec();
        while out.len() < public.size() {
            out.insert(0, 0);
        }
        out
    }
}
