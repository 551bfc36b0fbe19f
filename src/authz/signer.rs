//! Signing our access tokens (RFC 9068 `at+jwt`): ES256 by default, HS256 for a single gateway.

use jwt_simple::prelude::*;
use serde_json::Value;

/// The key that signs new tokens. The public halves of every configured key (this one and
/// any `verify_only` ones) are what the resource server trusts and `jwks_uri` publishes.
pub enum Signer {
    Es256(ES256KeyPair),
    Hs256(HS256Key),
}

impl Signer {
    pub fn sign(&self, claims: JWTClaims<Value>) -> Option<String> {
        let options = HeaderOptions {
            signature_type: Some("at+jwt".into()),
            ..Default::default()
        };
        match self {
            Signer::Es256(key) => key.sign_with_options(claims, &options).ok(),
            Signer::Hs256(key) => key.authenticate_with_options(claims, &options).ok(),
        }
    }
}
