//! Authorization-server metadata (RFC 8414) and OpenID discovery, at every well-known URL
//! a client may derive from the issuer.

use serde_json::{json, Value};

use super::context::Ctx;
use crate::config::authz::AuthServerConfig;

const OAUTH: &str = "/.well-known/oauth-authorization-server";
const OIDC: &str = "/.well-known/openid-configuration";

/// Whether `path` is one of the metadata URLs of an issuer whose path is `issuer_path`
/// (empty for an issuer without a path).
pub fn is_metadata_path(issuer_path: &str, path: &str) -> bool {
    [
        format!("{OAUTH}{issuer_path}"),
        format!("{OIDC}{issuer_path}"),
        format!("{issuer_path}{OIDC}"),
    ]
    .iter()
    .any(|p| p == path)
}

/// The path part of the issuer (`""` for `https://host`).
pub fn issuer_path(config: &AuthServerConfig) -> String {
    crate::ascii_url::parse(&config.issuer)
        .map(|u| u.path().trim_end_matches('/').to_string())
        .unwrap_or_default()
}

pub fn document(ctx: &Ctx) -> Value {
    let c = ctx.config;
    let e = &c.endpoints;
    let mut grants = vec!["authorization_code", "refresh_token"];
    if c.clients
        .iter()
        .any(|cl| cl.grant_types.iter().any(|g| g == "client_credentials"))
        || c.registration_enabled
    {
        grants.push("client_credentials");
    }
    let mut doc = json!({
        "issuer": c.issuer,
        "authorization_endpoint": ctx.url(&e.authorize),
        "token_endpoint": ctx.url(&e.token),
        "jwks_uri": ctx.url(&e.jwks),
        "revocation_endpoint": ctx.url(&e.revoke),
        "introspection_endpoint": ctx.url(&e.introspect),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": grants,
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "scopes_supported": c.scope_names(),
        "authorization_response_iss_parameter_supported": true,
        "client_id_metadata_document_supported": c.cimd.is_some(),
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
    });
    if c.registration_enabled {
        if let Some(obj) = doc.as_object_mut() {
            obj.insert("registration_endpoint".into(), json!(ctx.url(&e.register)));
        }
    }
    doc
}
