//! The plugin configuration exactly as the user writes it (serde types).
//!
//! Every struct denies unknown fields, so a typo is a load-time error with its path instead of
//! a silently ignored setting. Validation that serde cannot express lives in `validate.rs`.

use serde::{Deserialize, Deserializer};

/// Top-level plugin configuration. See docs/configuration.md.
#[derive(Debug, Deserialize)]
#[serde(remote = "Self")]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub resource: String,
    #[serde(default)]
    pub resource_name: Option<String>,
    #[serde(default)]
    pub resource_documentation: Option<String>,
    #[serde(default)]
    pub authorization_servers: Option<Vec<String>>,
    #[serde(default)]
    pub scopes_supported: Option<Vec<String>>,
    #[serde(default)]
    pub issuers: Option<Vec<RawIssuer>>,
    #[serde(default, deserialize_with = "opt_whole_number")]
    pub leeway_seconds: Option<u64>,
    #[serde(default, deserialize_with = "opt_whole_number")]
    pub max_token_bytes: Option<u64>,
    #[serde(default, deserialize_with = "opt_whole_number")]
    pub token_cache_entries: Option<u64>,
    #[serde(default)]
    pub routes: Option<Vec<RawRoute>>,
    #[serde(default)]
    pub public_paths: Option<Vec<String>>,
    #[serde(default)]
    pub unmatched: Option<Unmatched>,
    #[serde(default)]
    pub identity_headers: Option<RawIdentityHeaders>,
    #[serde(default)]
    pub health_path: Option<String>,
    #[serde(default)]
    pub cors: Option<RawCors>,
    #[serde(default)]
    pub authorization_server: Option<super::authz_raw::RawAuthServer>,
    #[serde(default)]
    pub mcp: Option<super::mcp::RawMcp>,
    #[serde(default)]
    pub introspection: Option<RawIntrospection>,
    #[serde(default)]
    pub backend_credentials: Option<Vec<RawServiceCredential>>,
    #[serde(default)]
    pub state_store: Option<super::state_store::RawStateStore>,
}
json_object!(RawConfig);

/// A token the gateway gets for the backend with client_credentials.
#[derive(Debug, Deserialize)]
#[serde(remote = "Self")]
#[serde(deny_unknown_fields)]
pub struct RawServiceCredential {
    pub name: String,
    pub token_endpoint: String,
    pub cluster: String,
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default)]
    pub client_secret_env: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub resource: Option<String>,
    #[serde(default, deserialize_with = "opt_whole_number")]
    pub timeout_ms: Option<u64>,
    #[serde(default, deserialize_with = "opt_whole_number")]
    pub refresh_before_seconds: Option<u64>,
    #[serde(default)]
    pub header: Option<String>,
}
json_object!(RawServiceCredential);

/// Opaque tokens checked at an RFC 7662 endpoint.
#[derive(Debug, Deserialize)]
#[serde(remote = "Self")]
#[serde(deny_unknown_fields)]
pub struct RawIntrospection {
    pub endpoint: String,
    pub cluster: String,
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default)]
    pub client_secret_env: Option<String>,
    #[serde(default, deserialize_with = "opt_whole_number")]
    pub timeout_ms: Option<u64>,
    #[serde(default, deserialize_with = "opt_whole_number")]
    pub max_cache_seconds: Option<u64>,
    #[serde(default)]
    pub when_unavailable: Option<WhenUnavailable>,
    #[serde(default)]
    pub issuer: Option<String>,
}
json_object!(RawIntrospection);

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WhenUnavailable {
    /// 401: the client signs in again.
    Deny,
    /// 503: the client retries.
    Unavailable,
}

/// One trusted token issuer and where its keys come from.
#[derive(Debug, Deserialize)]
#[serde(remote = "Self")]
#[serde(deny_unknown_fields)]
pub struct RawIssuer {
    pub issuer: String,
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
    #[serde(default)]
    pub jwks: Option<serde_json::Value>,
    #[serde(default)]
    pub jwks_env: Option<String>,
    #[serde(default)]
    pub remote_jwks: Option<RawRemoteJwks>,
    #[serde(default)]
    pub secrets: Option<Vec<RawSecret>>,
}
json_object!(RawIssuer);

#[derive(Debug, Deserialize)]
#[serde(remote = "Self")]
#[serde(deny_unknown_fields)]
pub struct RawRemoteJwks {
    pub uri: String,
    pub cluster: String,
    #[serde(default, deserialize_with = "opt_whole_number")]
    pub timeout_ms: Option<u64>,
    #[serde(default, deserialize_with = "opt_whole_number")]
    pub refresh_interval_seconds: Option<u64>,
    #[serde(default, deserialize_with = "opt_whole_number")]
    pub min_refetch_interval_seconds: Option<u64>,
    #[serde(default, deserialize_with = "opt_whole_number")]
    pub startup_wait_ms: Option<u64>,
}
json_object!(RawRemoteJwks);

/// A shared HMAC secret; exactly one of the value fields must be set.
#[derive(Debug, Deserialize)]
#[serde(remote = "Self")]
#[serde(deny_unknown_fields)]
pub struct RawSecret {
    #[serde(default)]
    pub kid: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub value_base64url: Option<String>,
    #[serde(default)]
    pub value_env: Option<String>,
}
json_object!(RawSecret);

#[derive(Debug, Deserialize)]
#[serde(remote = "Self")]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub prefix: String,
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    #[serde(default)]
    pub resource: Option<String>,
    #[serde(default)]
    pub backend_credential: Option<String>,
    #[serde(default)]
    pub upstream_token: Option<bool>,
}
json_object!(RawRoute);

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Unmatched {
    Authenticate,
    Allow,
}

/// `null` turns a header off; an absent field keeps the default name.
#[derive(Debug, Deserialize)]
#[serde(remote = "Self")]
#[serde(deny_unknown_fields)]
pub struct RawIdentityHeaders {
    #[serde(default = "default_subject_header")]
    pub subject: Option<String>,
    #[serde(default = "default_client_id_header")]
    pub client_id: Option<String>,
    #[serde(default = "default_scopes_header")]
    pub scopes: Option<String>,
    #[serde(default = "default_issuer_header")]
    pub issuer: Option<String>,
}
json_object!(RawIdentityHeaders);

impl Default for RawIdentityHeaders {
    fn default() -> Self {
        RawIdentityHeaders {
            subject: default_subject_header(),
            client_id: default_client_id_header(),
            scopes: default_scopes_header(),
            issuer: default_issuer_header(),
        }
    }
}

fn default_subject_header() -> Option<String> {
    Some("x-mcp-subject".into())
}
fn default_client_id_header() -> Option<String> {
    Some("x-mcp-client-id".into())
}
fn default_scopes_header() -> Option<String> {
    Some("x-mcp-scopes".into())
}
fn default_issuer_header() -> Option<String> {
    Some("x-mcp-issuer".into())
}

#[derive(Debug, Deserialize)]
#[serde(remote = "Self")]
#[serde(deny_unknown_fields)]
pub struct RawCors {
    #[serde(default)]
    pub allowed_origins: Option<Vec<String>>,
}
json_object!(RawCors);

/// Accepts `900` and `900.0` (Istio turns every number into a double), refuses `900.5` and
/// negatives, so integer settings behave the same under plain Envoy and under Istio.
pub fn opt_whole_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    use serde::de::Error;
    let value = Option::<serde_json::Number>::deserialize(d)?;
    let Some(number) = value else {
        return Ok(None);
    };
    if let Some(n) = number.as_u64() {
        return Ok(Some(n));
    }
    match number.as_f64() {
        Some(f) if f >= 0.0 && f.fract() == 0.0 && f <= 9.0e15 => Ok(Some(f as u64)),
        _ => Err(D::Error::custom(format!(
            "expected a whole non-negative number, got {number}"
        ))),
    }
}
