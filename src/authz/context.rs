//! What every authorization-server endpoint gets: config, time, the store, and the request.

use crate::config::authz::AuthServerConfig;
use crate::gateway::Request;
use crate::http::Response;
use crate::jwt::Verifier;
use crate::store::Store;

/// One request to an authorization-server endpoint: the gateway's view of it, and its body.
pub struct AuthRequest<'a> {
    pub http: &'a Request<'a>,
    pub body: &'a [u8],
}

impl<'a> AuthRequest<'a> {
    pub fn method(&self) -> &'a str {
        self.http.method
    }

    pub fn path(&self) -> &'a str {
        self.http.path
    }

    /// The `Authorization` header (Envoy joins repeated ones into one value).
    pub fn authorization(&self) -> Option<&'a str> {
        self.http.authorization.first().copied()
    }

    /// The media type without parameters, lowercase.
    pub fn media_type(&self) -> String {
        self.http
            .content_type
            .and_then(|c| c.split(';').next())
            .map(|c| c.trim().to_ascii_lowercase())
            .unwrap_or_default()
    }

    /// A cookie's value.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.http
            .cookie?
            .split(';')
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    }

    /// The address without its port, for rate-limit keys.
    pub fn address(&self) -> &str {
        let addr = self.http.client_address.unwrap_or("unknown");
        match addr.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => addr,
        }
    }
}

/// The server's side of a request.
pub struct Ctx<'a> {
    pub config: &'a AuthServerConfig,
    /// Scheme, host and port of the gateway: the base of endpoint URLs.
    pub origin: &'a str,
    /// Resources a token may be issued for (RFC 8707); the first is the default.
    pub resources: &'a [String],
    pub verifier: &'a Verifier,
    pub store: &'a mut dyn Store,
    pub now: u64,
    /// etcd, when it holds the one-time state (codes, refresh families, revocations).
    pub etcd: Option<&'a crate::config::state_store::EtcdConfig>,
}

impl Ctx<'_> {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }
}

/// An OAuth error answer for endpoints that speak JSON; `no-store` like every token answer.
pub fn json_error(status: u16, error: &str, description: &str) -> Response {
    Response::oauth_error(status, error, description).with_header("pragma", "no-cache")
}

pub fn method_not_allowed(allow: &str) -> Response {
    json_error(405, "invalid_request", "Method not allowed").with_header("allow", allow)
}

/// 429 with the seconds to wait.
pub fn too_many_requests(retry_after: u64) -> Response {
    json_error(429, "slow_down", "Too many requests; retry later")
        .with_header("retry-after", retry_after.to_string())
}
