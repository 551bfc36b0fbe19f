//! ES384 and EdDSA (Ed25519) public keys: checked with the crates `jwt-simple` checks them with
//! (`p384`, `ed25519-compact`), but through `jose::verify_token`, so every algorithm shares one
//! path for the compact form, header and claims (and its base64url decoder).

use p384::ecdsa::signature::Verifier;

/// A P-384 public key (ES384: ECDSA over SHA-384, the signature as r‖s, 96 bytes).
pub struct Es384Key(p384::ecdsa::VerifyingKey);

impl Es384Key {
    /// From a SEC1 point (what `jwt-simple`'s key gives after vetting the JWK).
    pub fn from_sec1(point: &[u8]) -> Option<Es384Key> {
        p384::ecdsa::VerifyingKey::from_sec1_bytes(point)
            .ok()
            .map(Es384Key)
    }

    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        p384::ecdsa::Signature::try_from(signature)
            .is_ok_and(|signature| self.0.verify(message, &signature).is_ok())
    }
}

/// An Ed25519 public key (EdDSA, RFC 8037).
pub struct Ed25519Key(ed25519_compact::PublicKey);

impl Ed25519Key {
    pub fn from_bytes(bytes: &[u8]) -> Option<Ed25519Key> {
        ed25519_compact::PublicKey::from_slice(bytes)
            .ok()
            .map(Ed25519Key)
    }

    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        ed25519_compact::Signature::from_slice(signature)
            .is_ok_and(|signature| self.0.verify(message, &signature).is_ok())
    }
}
