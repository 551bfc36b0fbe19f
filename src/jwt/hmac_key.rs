//! Shared-secret keys for HS256/384/512: the tag is checked with the `hmac` crate (a
//! constant-time comparison), over the `sha2` hashes the rest of the crate uses, so these
//! tokens take the same `jose::verify_token` path as RSA ones.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Sha256, Sha384, Sha512};

use super::alg::Alg;

/// An HMAC secret bound to one algorithm.
pub struct HmacKey {
    alg: Alg,
    secret: Vec<u8>,
}

impl HmacKey {
    /// The key for `alg`; `None` if `alg` is not an HMAC algorithm.
    pub fn new(alg: Alg, secret: &[u8]) -> Option<HmacKey> {
        matches!(alg, Alg::HS256 | Alg::HS384 | Alg::HS512).then(|| HmacKey {
            alg,
            secret: secret.to_vec(),
        })
    }

    pub fn alg(&self) -> Alg {
        self.alg
    }

    /// Whether `tag` is the HMAC of `message` under this key and its algorithm.
    pub fn verify(&self, message: &[u8], tag: &[u8]) -> bool {
        match self.alg {
            Alg::HS256 => check::<Hmac<Sha256>>(&self.secret, message, tag),
            Alg::HS384 => check::<Hmac<Sha384>>(&self.secret, message, tag),
            Alg::HS512 => check::<Hmac<Sha512>>(&self.secret, message, tag),
            _ => false,
        }
    }
}

fn check<M: Mac + KeyInit>(secret: &[u8], message: &[u8], tag: &[u8]) -> bool {
    // HMAC takes a key of any length, so this cannot fail.
    let Ok(mut mac) = <M as KeyInit>::new_from_slice(secret) else {
        return false;
    };
    mac.update(message);
    mac.verify_slice(tag).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jwt_simple::prelude::{HS256Key, HS384Key, HS512Key, MACLike};

    /// The tags `jwt-simple`'s keys make are the ones this checks, for secrets shorter and
    /// longer than a hash block; any other tag (cut, extended, one bit off) is refused.
    #[test]
    fn agrees_with_jwt_simple_tags() {
        for (i, secret_len) in [1usize, 32, 64, 65, 128, 129, 200].into_iter().enumerate() {
            let secret = crate::jwt::test_bytes(secret_len, i as u8);
            let message = crate::jwt::test_bytes(300 + i, 100 + i as u8);
            let tags = [
                (
                    Alg::HS256,
                    HS256Key::from_bytes(&secret).authentication_tag(&message),
                ),
                (
                    Alg::HS384,
                    HS384Key::from_bytes(&secret).authentication_tag(&message),
                ),
                (
                    Alg::HS512,
                    HS512Key::from_bytes(&secret).authentication_tag(&message),
                ),
            ];
            for (alg, tag) in tags {
                let key = HmacKey::new(alg, &secret).unwrap();
                assert!(key.verify(&message, &tag), "{alg:?} secret {secret_len}");
                assert!(!key.verify(&message, &tag[..tag.len() - 1]));
                assert!(!key.verify(&message, &[tag.as_slice(), &[0]].concat()));
                assert!(!key.verify(&message, &[]));
                let mut flipped = tag.clone();
                flipped[i % tag.len()] ^= 1;
                assert!(!key.verify(&message, &flipped));
                assert!(!key.verify(&message[1..], &tag));
            }
        }
    }

    #[test]
    fn hmac_key_only_for_hmac_algorithms() {
        assert!(HmacKey::new(Alg::RS256, b"secret").is_none());
        assert!(HmacKey::new(Alg::ES256, b"secret").is_none());
        assert_eq!(
            HmacKey::new(Alg::HS384, b"secret").unwrap().alg(),
            Alg::HS384
        );
    }
}
