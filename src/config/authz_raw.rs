//! The `authorization_server` section as the user writes it (serde types).

use serde::Deserialize;

use super::raw::opt_whole_number;

#[derive(Debug, Deserialize)]
#[serde(remote = "Self")]
#[serde(deny_unknown_fields)]
pub struct RawAuthServer {
    #[serde(default)]
    pub issuer: Option<String>,
    pub signing_keys: Vec<RawSigningKey>,
    pub sealing_keys: Vec<RawSealingKey>,
    #[serde(default, deserialize_with = "opt_whole_number")]
    pub access_token_ttl_seconds: Option<u64>,
    #[serde(default, deserialize_with = "opt_whole_number")]
    pub refresh_token_ttl_seconds: Option<u64>,
    #[serde(default, deserialize_with = "opt_whole_number")]
    pub code_ttl_seconds: Option<u64>,
    #[serde(default, deserialize_with = "opt_whole_number")]
    pub session_ttl_seconds: Option<u64>,
    #[serde(default)]
    pub scopes: Option<Vec<RawScope>>,
    #[serde(default)]
    pub default_scopes: Option<Vec<String>>,
    #[serde(default)]
    pub clients: Option<Vec<RawClient>>,
    #[serde(default)]
    pub users: Option<Vec<RawUser>>,
    #[serde(default)]
    pub registration: Option<RawRegistration>,
    #[serde(default)]
    pub client_id_metadata_documents: Option<RawCimd>,
    #[serde(default)]
    pub endpoints: Option<RawEndpoints>,
    #[serde(default)]
    pub rate_limits: Option<RawRateLimits>,
    #[serde(default)]
    pub display_name: Option<String>,
    /// Sign people in through this identity provider.
    #[serde(default)]
    pub upstream: Option<super::upstream::RawUpstream>,
}
json_object!(RawAuthServer);

/// A token signing key: an EC P-256 private JWK (ES256), or a shared secret (HS256).
#[derive(Debug, Deserialize)]
#[serde(remote = "Self")]
#[serde(deny_unknown_fields)]
pub struct RawSigningKey {
    #[serde(default)]
    pub jwk: Option<serde_json::Value>,
    #[serde(default)]
    pub jwk_env: Option<String>,
    #[serde(default)]
    pub hs256_secret_env: Option<String>,
    #[serde(default)]
    pub hs256_secret_base64url: Option<String>,
    #[serde(default)]
    pub kid: Option<String>,
    /// Published and trusted, but not used to sign: the first step of a key rotation.
    #[serde(default)]
    pub verify_only: Option<bool>,
}
json_object!(RawSigningKey);

#[derive(Debug, Deserialize)]
#[serde(remote = "Self")]
#[serde(deny_unknown_fields)]
pub struct RawSealingKey {
    pub kid: String,
    #[serde(default)]
    pub value_base64url: Option<String>,
    #[serde(default)]
    pub value_env: Option<String>,
}
json_object!(RawSealingKey);

#[derive(Debug, Deserialize)]
#[serde(remote = "Self")]
#[serde(deny_unknown_fields)]
pub struct RawScope {
    pub name: String,
    pub description: String,
}
json_object!(RawScope);

#[derive(Debug, Deserialize)]
#[serde(remote = "Self")]
#[serde(deny_unknown_fields)]
pub struct RawClient {
    pub client_id: String,
    #[serde(default)]
    pub client_secret_hash: Option<String>,
    #[serde(default)]
    pub client_name: Option<String>,
    #[serde(default)]
    pub redirect_uris: Option<Vec<String>>,
    #[serde(default)]
    pub grant_types: Option<Vec<String>>,
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    #[serde(default)]
    pub skip_consent: Option<bool>,
}
json_object!(RawClient);

#[derive(Debug, Deserialize)]
#[serde(remote = "Self")]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    pub username: String,
    pub password_hash: String,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
}
json_object!(RawUser);

#[derive(Debug, Deserialize)]
#[serde(remote = "Self")]
#[serde(deny_unknown_fields)]
pub struct RawRegistration {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub initial_access_token_hashes: Option<Vec<String>>,
}
json_object!(RawRegistration);

/// Client ID Metadata Documents: `client_id` is an https URL whose document we fetch.
#[derive(Debug, Deserialize)]
#[serde(remote = "Self")]
#[serde(deny_unknown_fields)]
pub struct RawCimd {
    pub cluster: String,
    #[serde(default)]
    pub allowed_hosts: Option<Vec<String>>,
    #[serde(default)]
    pub allow_private_hosts: Option<bool>,
    #[serde(default, deserialize_with = "opt_whole_number")]
    pub timeout_ms: Option<u64>,
    #[serde(default, deserialize_with = "opt_whole_number")]
    pub max_bytes: Option<u64>,
    #[serde(default, deserialize_with = "opt_whole_number")]
    pub min_cache_seconds: Option<u64>,
    #[serde(default, deserialize_with = "opt_whole_number")]
    pub max_cache_seconds: Option<u64>,
}
json_object!(RawCimd);

#[derive(Debug, Deserialize)]
#[serde(remote = "Self")]
#[serde(deny_unknown_fields)]
pub struct RawEndpoints {
    #[serde(default)]
    pub authorize: Option<String>,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub register: Option<String>,
    #[serde(default)]
    pub revoke: Option<String>,
    #[serde(default)]
    pub introspect: Option<String>,
    #[serde(default)]
    pub jwks: Option<String>,
    #[serde(default)]
    pub callback: Option<String>,
}
json_object!(RawEndpoints);

#[derive(Debug, Deserialize)]
#[serde(remote = "Self")]
#[serde(deny_unknown_fields)]
pub struct RawRateLimits {
    #[serde(default, deserialize_with = "opt_whole_number")]
    pub token_per_minute_per_client: Option<u64>,
    #[serde(default, deserialize_with = "opt_whole_number")]
    pub token_per_minute_per_address: Option<u64>,
    #[serde(default, deserialize_with = "opt_whole_number")]
    pub register_per_minute_per_address: Option<u64>,
}
json_object!(RawRateLimits);
