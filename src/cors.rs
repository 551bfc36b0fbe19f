//! CORS for browser-based MCP clients: preflights are answered here (they carry no token, so
//! the backend behind an auth gate could never answer them), and the filter's own answers say
//! which origins may read them, including `WWW-Authenticate`.

use crate::http::Response;

/// Response headers a browser client must be able to read.
const EXPOSED: &str = "www-authenticate, mcp-session-id, mcp-protocol-version";
const ALLOWED_HEADERS: &str =
    "authorization, content-type, accept, mcp-session-id, mcp-protocol-version, last-event-id";
const ALLOWED_METHODS: &str = "GET, POST, DELETE, OPTIONS";

/// The `Access-Control-Allow-Origin` value for `origin`, if it is allowed.
pub fn allow_origin(allowed: &[String], origin: Option<&str>) -> Option<String> {
    let origin = origin?;
    if allowed.iter().any(|a| a == "*") {
        Some("*".into())
    } else if allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)) {
        Some(origin.to_string())
    } else {
        None
    }
}

/// Adds the headers that let an allowed origin read `response`.
pub fn decorate(response: Response, allowed: &[String], origin: Option<&str>) -> Response {
    match allow_origin(allowed, origin) {
        Some(value) => {
            let vary = value != "*";
            let response = response
                .with_header("access-control-allow-origin", value)
                .with_header("access-control-expose-headers", EXPOSED);
            if vary {
                response.with_header("vary", "origin")
            } else {
                response
            }
        }
        None => response,
    }
}

/// The answer to a preflight: 204, with permissions only for an allowed origin. The
/// allow-origin header itself is added by `decorate`, like on every answer of the filter.
pub fn preflight(allowed: &[String], origin: Option<&str>) -> Response {
    let response = Response {
        status: 204,
        headers: vec![],
        body: vec![],
    };
    if allow_origin(allowed, origin).is_none() {
        return response;
    }
    response
        .with_header("access-control-allow-methods", ALLOWED_METHODS)
        .with_header("access-control-allow-headers", ALLOWED_HEADERS)
        .with_header("access-control-max-age", "86400")
}

/// Headers to add to a backend response for an allowed origin, unless the backend set its own.
pub fn headers_for_forwarded(allowed: &[String], origin: Option<&str>) -> Vec<(String, String)> {
    match allow_origin(allowed, origin) {
        Some(value) => vec![
            ("access-control-allow-origin".into(), value),
            ("access-control-expose-headers".into(), EXPOSED.into()),
        ],
        None => vec![],
    }
}
