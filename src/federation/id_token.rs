//! The provider's `id_token` (OIDC Core §3.1.3.7): signed by one of its keys, issued by it,
//! for us (`aud`, `azp`), for this sign-in (`nonce`), and current (`exp`, `iat`).

use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

use crate::jwt::{decode_b64url, Alg, Issuer, KeyFamily, KeySet, KeySource, TokenError, Verifier};

/// Signature algorithms accepted for id_tokens: asymmetric only (a MAC with our client
/// secret would prove nothing the TLS channel does not).
fn algorithms() -> Vec<Alg> {
    Alg::ALL
        .into_iter()
        .filter(|a| a.family() != KeyFamily::Hmac)
        .collect()
}

const LEEWAY_SECONDS: u64 = 60;
const MAX_ID_TOKEN_BYTES: usize = 16 * 1024;

#[derive(Debug, PartialEq, Eq)]
pub enum IdTokenError {
    /// Signed with a key not in the set: the set may be stale.
    UnknownKey,
    /// Anything else; the reason is for the log.
    Invalid(String),
}

/// Verifies `id_token` and returns its claims.
pub fn verify(
    id_token: &str,
    keys: &Value,
    issuer: &str,
    client_id: &str,
    nonce: &str,
    now: u64,
) -> Result<Map<String, Value>, IdTokenError> {
    let invalid = |why: &str| IdTokenError::Invalid(why.to_string());
    let algs = algorithms();
    let (keys, _) = KeySet::from_jwks(keys, &algs, KeySource::Remote)
        .map_err(|e| IdTokenError::Invalid(format!("the provider's key set {e}")))?;
    let verifier = Verifier::new(
        vec![Issuer::new(issuer.to_string(), algs, keys, false)],
        LEEWAY_SECONDS,
        MAX_ID_TOKEN_BYTES,
        0,
    );
    match verifier.verify_for_any_audience(id_token, now) {
        Ok(_) => {}
        Err(TokenError::UnknownKeyId { .. }) => return Err(IdTokenError::UnknownKey),
        Err(e) => return Err(IdTokenError::Invalid(format!("id_token: {}", e.reason()))),
    }
    let claims = id_token
        .split('.')
        .nth(1)
        .and_then(|p| decode_b64url(p).ok())
        .and_then(|b| serde_json::from_slice::<Map<String, Value>>(&b).ok())
        .ok_or_else(|| invalid("id_token payload is not a JSON object"))?;
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if !audiences.contains(&client_id) {
        return Err(invalid("id_token is not for this client (aud)"));
    }
    if audiences.len() > 1 && claims.get("azp").and_then(Value::as_str) != Some(client_id) {
        return Err(invalid("id_token has several audiences and another azp"));
    }
    let nonce_ok = claims
        .get("nonce")
        .and_then(Value::as_str)
        .is_some_and(|n| bool::from(n.as_bytes().ct_eq(nonce.as_bytes())));
    if !nonce_ok {
        return Err(invalid("id_token nonce does not match this sign-in"));
    }
    if !claims.get("sub").is_some_and(Value::is_string) {
        return Err(invalid("id_token has no sub"));
    }
    Ok(claims)
}
