//! 401/403/400 answers with `WWW-Authenticate` exactly as the MCP authorization spec and
//! RFC 6750 §3 / RFC 9728 §5.1 describe them.

use crate::http::Response;

/// What the client must be told about the protected resource.
pub struct Challenge<'a> {
    /// URL of the protected-resource metadata for the requested path.
    pub resource_metadata: &'a str,
    /// Scopes the request needs (and, for step-up, those already granted).
    pub scopes: &'a [String],
}

impl Challenge<'_> {
    /// 401 for a request without a token: no error code (RFC 6750 §3.1).
    pub fn missing_token(&self) -> Response {
        let header = self.header(None, None);
        Response::oauth_error(401, "invalid_token", "An access token is required")
            .with_header("www-authenticate", header)
    }

    /// 401 for a token that is invalid, expired or meant for another resource.
    pub fn invalid_token(&self, description: &str) -> Response {
        let header = self.header(Some("invalid_token"), Some(description));
        Response::oauth_error(401, "invalid_token", description)
            .with_header("www-authenticate", header)
    }

    /// 403 for a valid token that lacks scopes; `scope` lists what the client should ask for.
    pub fn insufficient_scope(&self, description: &str) -> Response {
        let header = self.header(Some("insufficient_scope"), Some(description));
        Response::oauth_error(403, "insufficient_scope", description)
            .with_header("www-authenticate", header)
    }

    /// 400 for a malformed request (RFC 6750 §3.1 `invalid_request`).
    pub fn invalid_request(&self, description: &str) -> Response {
        let header = self.header(Some("invalid_request"), Some(description));
        Response::oauth_error(400, "invalid_request", description)
            .with_header("www-authenticate", header)
    }

    fn header(&self, error: Option<&str>, description: Option<&str>) -> String {
        let mut params = Vec::new();
        if let Some(error) = error {
            params.push(format!("error=\"{error}\""));
        }
        if let Some(description) = description {
            params.push(format!("error_description=\"{}\"", quote_safe(description)));
        }
        if !self.scopes.is_empty() {
            params.push(format!("scope=\"{}\"", self.scopes.join(" ")));
        }
        params.push(format!("resource_metadata=\"{}\"", self.resource_metadata));
        format!("Bearer {}", params.join(", "))
    }
}

/// Keeps a quoted-string value inside its quotes.
fn quote_safe(text: &str) -> String {
    text.chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRM: &str = "https://mcp.example/.well-known/oauth-protected-resource/mcp";

    #[test]
    fn missing_token_challenge_has_metadata_and_scope_only() {
        let scopes = vec!["mcp:tools".to_string()];
        let r = Challenge {
            resource_metadata: PRM,
            scopes: &scopes,
        }
        .missing_token();
        assert_eq!(r.status, 401);
        assert_eq!(
            r.header("www-authenticate"),
            Some(format!("Bearer scope=\"mcp:tools\", resource_metadata=\"{PRM}\"").as_str())
        );
    }

    #[test]
    fn invalid_token_challenge_carries_error_and_description() {
        let r = Challenge {
            resource_metadata: PRM,
            scopes: &[],
        }
        .invalid_token("The access token expired");
        assert_eq!(
            r.header("www-authenticate"),
            Some(format!("Bearer error=\"invalid_token\", error_description=\"The access token expired\", resource_metadata=\"{PRM}\"").as_str())
        );
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["error"], "invalid_token");
        assert_eq!(r.header("cache-control"), Some("no-store"));
    }

    #[test]
    fn insufficient_scope_is_403_with_scope() {
        let scopes = vec!["a".to_string(), "b".to_string()];
        let r = Challenge {
            resource_metadata: PRM,
            scopes: &scopes,
        }
        .insufficient_scope("needs b");
        assert_eq!(r.status, 403);
        let h = r.header("www-authenticate").unwrap();
        assert!(h.starts_with("Bearer error=\"insufficient_scope\""), "{h}");
        assert!(h.contains("scope=\"a b\""), "{h}");
    }

    #[test]
    fn descriptions_cannot_break_out_of_quotes() {
        assert_eq!(quote_safe("a\"b\\c\nd"), "abcd");
    }
}
