//! Sign-in through an upstream identity provider. The built-in authorization server stays the
//! one MCP clients talk to; only the person's sign-in goes upstream:
//!
//! 1. `/oauth/authorize` (after our own consent for clients that need it) redirects to the
//!    provider with PKCE, `state` and `nonce`, the flow sealed in a `__Host-` cookie;
//! 2. `/oauth/callback` checks `state` against that cookie (single use), exchanges the code
//!    server-to-server, verifies the `id_token` (or reads userinfo), admits or refuses the
//!    person, and finishes the client's authorization request with our own code.
//!
//! Calls to the provider are [`Call`]s the glue makes through an Envoy cluster; each answer
//! comes back to [`flow::resume`] with the state of the sign-in it belongs to.

pub mod documents;
pub mod flow;
pub mod held;
pub mod id_token;
pub mod identity;

use serde_json::{Map, Value};

use crate::config::upstream::{check_url, ClientAuth, UpstreamConfig};

/// An HTTP call to the provider, and what to do with its answer.
#[derive(Debug)]
pub struct Call {
    pub cluster: String,
    /// Pseudo-headers included (`:method`, `:path`, `:authority`).
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub timeout_ms: u64,
    pub step: Step,
}

/// Where a sign-in stands while a call runs.
#[derive(Debug)]
pub enum Step {
    /// The discovery document: cache it, then handle the request again from the start.
    Discovery,
    /// The code exchange.
    Exchange(Box<flow::SignIn>),
    /// The provider's keys, to verify the `id_token` (fetched when missing or stale).
    Keys(Box<flow::SignIn>),
    /// Userinfo claims.
    Userinfo(Box<flow::SignIn>),
    /// A held upstream token refreshed for a backend request of this grant: store the
    /// answer, then handle the request again.
    Refresh { grant: String },
}

impl Step {
    /// A short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Step::Discovery => "discovery",
            Step::Exchange(_) => "code exchange",
            Step::Keys(_) => "keys",
            Step::Userinfo(_) => "userinfo",
            Step::Refresh { .. } => "token refresh",
        }
    }
}

/// The provider's answer to a call: `status` is `None` when the call failed (refused, reset or
/// timed out).
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    pub status: Option<u16>,
    pub body: &'a [u8],
}

impl Answer<'_> {
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }

    /// The body as a JSON object, if it is one.
    pub fn json_object(&self) -> Option<Map<String, Value>> {
        match serde_json::from_slice(self.body).ok()? {
            Value::Object(map) => Some(map),
            _ => None,
        }
    }
}

/// The provider's access token in a token endpoint answer, if it can go into a header as it
/// is (`Bearer` to userinfo, the backend's header): non-empty visible ASCII.
pub(crate) fn header_safe_token(answer: &Map<String, Value>) -> Option<&str> {
    answer
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
}

/// RFC 6749 §2.3.1: both parts form-encoded, then Basic.
fn basic_auth(upstream: &UpstreamConfig) -> String {
    use base64::Engine;
    let encode = |s: &str| {
        crate::form::encode(&[("", s)])
            .trim_start_matches('=')
            .to_string()
    };
    let pair = format!(
        "{}:{}",
        encode(&upstream.client_id),
        encode(&upstream.client_secret)
    );
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// A POST of `fields` to the provider's token endpoint `url`, with the gateway's client
/// authentication (RFC 6749 §2.3.1).
fn token_request<'a>(
    config: &'a UpstreamConfig,
    url: &str,
    mut fields: Vec<(&'a str, &'a str)>,
    step: Step,
) -> Result<Call, String> {
    let mut headers = vec![(
        "content-type".to_string(),
        "application/x-www-form-urlencoded".to_string(),
    )];
    match config.client_auth {
        ClientAuth::Basic => headers.push(("authorization".into(), basic_auth(config))),
        ClientAuth::Post => {
            fields.push(("client_id", &config.client_id));
            fields.push(("client_secret", &config.client_secret));
        }
    }
    let body = crate::form::encode(&fields).into_bytes();
    call_to(config, "POST", url, headers, Some(body), step)
}

/// A call to `url` through the cluster configured for its host.
pub fn call_to(
    config: &UpstreamConfig,
    method: &str,
    url: &str,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    step: Step,
) -> Result<Call, String> {
    let parsed = check_url(url)?;
    let host = parsed.host_str().unwrap_or_default();
    let authority = match parsed.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    let mut path = parsed.path().to_string();
    if let Some(query) = parsed.query() {
        path.push('?');
        path.push_str(query);
    }
    let mut all = vec![
        (":method".to_string(), method.to_string()),
        (":path".to_string(), path),
        (":authority".to_string(), authority),
        ("accept".to_string(), "application/json".to_string()),
        ("user-agent".to_string(), "mcp-oauth-wasm".to_string()),
    ];
    all.extend(headers);
    Ok(Call {
        cluster: config.cluster_for(host).to_string(),
        headers: all,
        body,
        timeout_ms: config.timeout_ms,
        step,
    })
}

#[cfg(test)]
mod tests;
