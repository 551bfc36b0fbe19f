//! Sealing: AES-256-GCM with keys from config, for everything the gateway hands out and must
//! read back later without keeping state (authorization codes, refresh tokens, registered
//! clients, sign-in sessions, pending authorization requests). Any replica with the same keys
//! can open what another sealed; a restart loses nothing.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// What a sealed value is for. It is authenticated with the value, so a value sealed as one
/// thing (a sign-in session, say) can never be opened as another (a refresh token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    AuthorizationCode,
    RefreshToken,
    RegisteredClient,
    Session,
    PendingRequest,
    UpstreamFlow,
    UpstreamTokens,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Purpose::AuthorizationCode => b"mcp-oauth/code/v1",
            Purpose::RefreshToken => b"mcp-oauth/refresh/v1",
            Purpose::RegisteredClient => b"mcp-oauth/client/v1",
            Purpose::Session => b"mcp-oauth/session/v1",
            Purpose::PendingRequest => b"mcp-oauth/request/v1",
            Purpose::UpstreamFlow => b"mcp-oauth/upstream-flow/v1",
            Purpose::UpstreamTokens => b"mcp-oauth/upstream-tokens/v1",
        }
    }
}

const NONCE_LEN: usize = 12;
pub const KEY_LEN: usize = 32;

/// The sealing keys: the first seals, every one opens (so keys rotate without downtime).
pub struct Sealer {
    keys: Vec<(String, Aes256Gcm)>,
    /// Authenticated with every value: what a gateway sealed for one issuer never opens at
    /// another that happens to share the keys.
    context: String,
}

impl Sealer {
    /// `keys` are (kid, 32-byte key) pairs, newest first. Kids are short URL-safe names.
    pub fn new(keys: &[(String, Vec<u8>)]) -> Result<Sealer, String> {
        if keys.is_empty() {
            return Err("at least one sealing key is required".into());
        }
        let mut out = Vec::new();
        for (kid, key) in keys {
            let kid_ok = !kid.is_empty()
                && kid.len() <= 16
                && kid
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !kid_ok {
                return Err(format!(
                    "kid \"{kid}\" must be 1-16 characters of A-Z a-z 0-9 _ -"
                ));
            }
            if key.len() != KEY_LEN {
                return Err(format!(
                    "key \"{kid}\" is {} bytes; it must be {KEY_LEN}",
                    key.len()
                ));
            }
            if out.iter().any(|(k, _)| k == kid) {
                return Err(format!("kid \"{kid}\" is used twice"));
            }
            let cipher =
                Aes256Gcm::new_from_slice(key).map_err(|_| "bad key length".to_string())?;
            out.push((kid.clone(), cipher));
        }
        Ok(Sealer {
            keys: out,
            context: String::new(),
        })
    }

    /// Binds every sealed value to `context` (the issuer).
    pub fn bound_to(mut self, context: &str) -> Sealer {
        self.context = context.to_string();
        self
    }

    fn aad(&self, purpose: Purpose) -> Vec<u8> {
        let mut aad = purpose.label().to_vec();
        aad.push(0);
        aad.extend_from_slice(self.context.as_bytes());
        aad
    }

    /// `kid.base64url(nonce || ciphertext)`, or `None` without randomness.
    pub fn seal(&self, purpose: Purpose, plaintext: &[u8]) -> Option<String> {
        let (kid, cipher) = self.keys.first()?;
        let nonce = crate::random::bytes::<NONCE_LEN>()?;
        let ciphertext = cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: &self.aad(purpose),
                },
            )
            .ok()?;
        let mut out = nonce.to_vec();
        out.extend(ciphertext);
        Some(format!("{kid}.{}", URL_SAFE_NO_PAD.encode(out)))
    }

    /// The plaintext, if `sealed` was made by one of our keys for this purpose, untouched.
    pub fn open(&self, purpose: Purpose, sealed: &str) -> Option<Vec<u8>> {
        let (kid, body) = sealed.split_once('.')?;
        let (_, cipher) = self.keys.iter().find(|(k, _)| k == kid)?;
        let raw = URL_SAFE_NO_PAD.decode(body).ok()?;
        if raw.len() < NONCE_LEN + 16 {
            return None;
        }
        let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
        cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &self.aad(purpose),
                },
            )
            .ok()
    }

    pub fn seal_json<T: Serialize>(&self, purpose: Purpose, value: &T) -> Option<String> {
        let bytes = serde_json::to_vec(value).ok()?;
        self.seal(purpose, &bytes)
    }

    pub fn open_json<T: DeserializeOwned>(&self, purpose: Purpose, sealed: &str) -> Option<T> {
        let bytes = self.open(purpose, sealed)?;
        serde_json::from_slice(&bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer(keys: &[(&str, u8)]) -> Sealer {
        let keys: Vec<(String, Vec<u8>)> = keys
            .iter()
            .map(|(k, b)| (k.to_string(), vec![*b; 32]))
            .collect();
        Sealer::new(&keys).unwrap()
    }

    #[test]
    fn round_trip_and_purpose_binding() {
        let s = sealer(&[("k1", 1)]);
        let sealed = s.seal(Purpose::AuthorizationCode, b"hello").unwrap();
        assert!(sealed.starts_with("k1."));
        assert_eq!(
            s.open(Purpose::AuthorizationCode, &sealed).unwrap(),
            b"hello"
        );
        assert_eq!(s.open(Purpose::RefreshToken, &sealed), None);
    }

    #[test]
    fn tampering_is_detected() {
        let s = sealer(&[("k1", 1)]);
        let sealed = s.seal(Purpose::Session, b"hello").unwrap();
        let mut bytes = sealed.into_bytes();
        let last = bytes.len() - 2;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert_eq!(s.open(Purpose::Session, &tampered), None);
        assert_eq!(s.open(Purpose::Session, "k1.AAAA"), None);
        assert_eq!(s.open(Purpose::Session, "nokid"), None);
    }

    #[test]
    fn rotation_old_key_still_opens() {
        let old = sealer(&[("old", 1)]);
        let sealed = old.seal(Purpose::RefreshToken, b"x").unwrap();
        let rotated = sealer(&[("new", 2), ("old", 1)]);
        assert_eq!(rotated.open(Purpose::RefreshToken, &sealed).unwrap(), b"x");
        assert!(rotated
            .seal(Purpose::RefreshToken, b"x")
            .unwrap()
            .starts_with("new."));
        let retired = sealer(&[("new", 2)]);
        assert_eq!(retired.open(Purpose::RefreshToken, &sealed), None);
    }

    #[test]
    fn values_are_bound_to_their_context() {
        let a = sealer(&[("k1", 1)]).bound_to("https://a.example");
        let b = sealer(&[("k1", 1)]).bound_to("https://b.example");
        let sealed = a.seal(Purpose::RegisteredClient, b"x").unwrap();
        assert_eq!(a.open(Purpose::RegisteredClient, &sealed).unwrap(), b"x");
        assert_eq!(b.open(Purpose::RegisteredClient, &sealed), None);
    }

    #[test]
    fn bad_keys_are_refused() {
        assert!(Sealer::new(&[]).is_err());
        assert!(Sealer::new(&[("k".into(), vec![0; 16])]).is_err());
        assert!(Sealer::new(&[("bad kid".into(), vec![0; 32])]).is_err());
    }
}
