//! What we hand out and read back: access tokens (signed JWTs), and the sealed authorization
//! codes and refresh tokens.

use jwt_simple::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::config::authz::AuthServerConfig;
use crate::seal::Purpose;

/// An authorization code, sealed: everything the token endpoint must check is inside.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct Code {
    pub jti: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub scope: String,
    pub resource: String,
    pub sub: String,
    pub exp: u64,
    /// The person's tokens at the upstream provider, sealed, when the gateway holds them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
}
json_object!(Code, Serialize);

/// A refresh token, sealed. `fam` names the grant (all tokens rotated from one code share it);
/// `gen` is its place in the rotation; `iat` when it was issued (0 in tokens issued before it
/// was recorded), which tells two tokens of one generation apart after a restart.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct Refresh {
    pub fam: String,
    pub gen: u64,
    pub client_id: String,
    pub scope: String,
    pub resource: String,
    pub sub: String,
    pub exp: u64,
    #[serde(default)]
    pub iat: u64,
    /// The upstream tokens as of this token's issue (the store may hold newer ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
}
json_object!(Refresh, Serialize);

/// A freshly minted access token and its id.
pub struct AccessToken {
    pub token: String,
    pub jti: String,
}

pub fn mint_access_token(
    config: &AuthServerConfig,
    sub: &str,
    client_id: &str,
    scope: &str,
    resource: &str,
    grant: Option<&str>,
    now: u64,
) -> Option<AccessToken> {
    let jti = crate::random::id()?;
    let mut custom = json!({ "client_id": client_id, "scope": scope });
    if let (Some(grant), Some(obj)) = (grant, custom.as_object_mut()) {
        // Names the grant whose upstream tokens the backend requests of this token carry.
        obj.insert("grant".into(), json!(grant));
    }
    let mut claims =
        Claims::with_custom_claims(custom, Duration::from_secs(config.access_token_ttl))
            .with_issuer(&config.issuer)
            .with_subject(sub)
            .with_audience(resource)
            .with_jwt_id(&jti);
    claims.issued_at = Some(UnixTimeStamp::from_secs(now));
    claims.invalid_before = None;
    claims.expires_at = Some(UnixTimeStamp::from_secs(now + config.access_token_ttl));
    let token = config.signer.sign(claims)?;
    Some(AccessToken { token, jti })
}

pub fn seal_code(config: &AuthServerConfig, code: &Code) -> Option<String> {
    config.sealer.seal_json(Purpose::AuthorizationCode, code)
}

pub fn open_code(config: &AuthServerConfig, text: &str) -> Option<Code> {
    config.sealer.open_json(Purpose::AuthorizationCode, text)
}

pub fn seal_refresh(config: &AuthServerConfig, refresh: &Refresh) -> Option<String> {
    config.sealer.seal_json(Purpose::RefreshToken, refresh)
}

pub fn open_refresh(config: &AuthServerConfig, text: &str) -> Option<Refresh> {
    config.sealer.open_json(Purpose::RefreshToken, text)
}

/// The JSON claims of one of our access tokens, verified (signature and time), or `None`.
pub fn read_access_token(
    verifier: &crate::jwt::Verifier,
    token: &str,
    now: u64,
) -> Option<crate::jwt::VerifiedToken> {
    verifier.verify_for_any_audience(token, now).ok()
}
