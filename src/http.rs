//! Host-independent HTTP values the core hands to the glue.

use serde_json::Value;

/// A response the filter sends itself instead of forwarding the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// A JSON response that no cache keeps (tokens and errors must not be cached).
    pub fn json(status: u16, body: &Value) -> Response {
        Response {
            status,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("cache-control".into(), "no-store".into()),
            ],
            body: body.to_string().into_bytes(),
        }
    }

    /// The OAuth error body `{"error","error_description"}`.
    pub fn oauth_error(status: u16, error: &str, description: &str) -> Response {
        Response::json(
            status,
            &serde_json::json!({ "error": error, "error_description": description }),
        )
    }

    /// 503 `temporarily_unavailable` with `Retry-After`: something the answer depends on is
    /// not available yet, and the client should simply try again.
    pub fn retry_later(description: &str, retry_after_seconds: u32) -> Response {
        Response::oauth_error(503, "temporarily_unavailable", description)
            .with_header("retry-after", retry_after_seconds.to_string())
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Response {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// Sets `name` to `value`, dropping earlier values of it.
    pub fn replace_header(mut self, name: &str, value: impl Into<String>) -> Response {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.with_header(name, value)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// True for text a person should see as it is: no control characters and no invisible or
/// direction-changing format characters (zero-width spaces, bidi overrides, BOM), which could
/// make a client name on the consent page read as something else.
pub fn is_plain_text(text: &str) -> bool {
    !text.chars().any(|c| {
        c.is_control()
            || matches!(
                c,
                '\u{200B}'..='\u{200F}'
                    | '\u{202A}'..='\u{202E}'
                    | '\u{2060}'..='\u{2069}'
                    | '\u{FEFF}'
                    | '\u{061C}'
                    | '\u{180E}'
            )
    })
}

/// The path without its query string.
pub fn path_only(path: &str) -> &str {
    path.split(['?', '#']).next().unwrap_or(path)
}

/// True when `path` is `prefix` or lies below it on a segment boundary (`/mcp` covers `/mcp/x`,
/// not `/mcpx`). The prefix `/` covers everything.
pub fn path_has_prefix(path: &str, prefix: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// Paths that a backend could resolve differently from a prefix match (dot segments, encoded
/// slashes or dots, backslashes) are refused, so a public prefix can never be used to reach a
/// protected one.
pub fn path_is_ambiguous(path: &str) -> bool {
    let path = path_only(path);
    // Nearly every path has none of these: one pass, no copy.
    if !path.contains(['%', '\\', '.']) {
        return false;
    }
    let lower = path.to_ascii_lowercase();
    lower.contains("%2e")
        || lower.contains("%2f")
        || lower.contains("%5c")
        // An encoded `%` lets a second decoding produce any of the above.
        || lower.contains("%25")
        || path.contains('\\')
        || path
            .split('/')
            .any(|segment| segment == "." || segment == "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_whole_segments() {
        assert!(path_has_prefix("/mcp", "/mcp"));
        assert!(path_has_prefix("/mcp/x", "/mcp"));
        assert!(!path_has_prefix("/mcpx", "/mcp"));
        assert!(path_has_prefix("/anything", "/"));
    }

    #[test]
    fn query_is_not_part_of_the_path() {
        assert_eq!(path_only("/mcp?x=/y"), "/mcp");
        assert_eq!(path_only("/mcp"), "/mcp");
    }

    #[test]
    fn dot_segments_and_encoded_separators_are_ambiguous() {
        for p in [
            "/health/../mcp",
            "/./mcp",
            "/health%2f..%2fmcp",
            "/a%2E%2E/b",
            "/a\\b",
            "/public/%252e%252e/mcp",
        ] {
            assert!(path_is_ambiguous(p), "{p}");
        }
        for p in [
            "/.well-known/oauth-protected-resource",
            "/mcp",
            "/a.b/c",
            "/x?y=../z",
        ] {
            assert!(!path_is_ambiguous(p), "{p}");
        }
    }
}
