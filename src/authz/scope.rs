//! Scope and resource parameters (RFC 6749 §3.3, RFC 8707).

use super::clients::Client;
use super::context::json_error;
use crate::config::authz::AuthServerConfig;
use crate::http::Response;

/// Space-separated scope tokens, deduplicated, in the order given.
pub fn split(scope: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in scope.split_ascii_whitespace() {
        if !out.iter().any(|o| o == s) {
            out.push(s.to_string());
        }
    }
    out
}

pub fn known(config: &AuthServerConfig, scope: &str) -> bool {
    config.scopes.iter().any(|(name, _)| name == scope)
}

/// What a client gets when it asks for no scope: the server's defaults it may have.
pub fn default_for(config: &AuthServerConfig, client: &Client) -> Vec<String> {
    config
        .default_scopes
        .iter()
        .filter(|s| client.allows_scope(s))
        .cloned()
        .collect()
}

/// The `resource` the token is for: the one asked (it must be ours), or the default.
pub fn resource(resources: &[String], requested: Option<&str>) -> Result<String, Response> {
    match requested {
        None => resources
            .first()
            .cloned()
            .ok_or_else(|| json_error(500, "server_error", "No resource configured")),
        Some(r) => {
            let r = r.trim_end_matches('/');
            resources
                .iter()
                .find(|known| known.as_str() == r)
                .cloned()
                .ok_or_else(|| json_error(400, "invalid_target", "The resource is not served here"))
        }
    }
}
