//! Envoy counters (shown under `wasmcustom.` in `/stats` and `/stats/prometheus`).

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

use crate::gateway::Outcome;

const DENIAL_REASONS: [&str; 8] = [
    "client_denied",
    "session_mismatch",
    "missing_token",
    "invalid_token",
    "expired",
    "insufficient_scope",
    "bad_request",
    "keys_unavailable",
];

const AUTHZ_ENDPOINTS: [&str; 6] = [
    "authorize",
    "token",
    "register",
    "revoke",
    "introspect",
    "jwks",
];

/// Counter ids, defined once per VM.
#[derive(Default)]
pub struct Stats {
    allowed: Option<u32>,
    public: Option<u32>,
    served: Option<u32>,
    metadata: Option<u32>,
    authz: Vec<(&'static str, Option<u32>)>,
    denied: Vec<(&'static str, Option<u32>)>,
    jwks_ok: Option<u32>,
    jwks_failed: Option<u32>,
}

fn counter(name: &str) -> Option<u32> {
    match hostcalls::define_metric(MetricType::Counter, name) {
        Ok(id) => Some(id),
        Err(status) => {
            log::warn!("mcp-oauth: cannot define metric {name}: {status:?}");
            None
        }
    }
}

fn bump(id: Option<u32>) {
    if let Some(id) = id {
        let _ = hostcalls::increment_metric(id, 1);
    }
}

impl Stats {
    pub fn define() -> Stats {
        Stats {
            allowed: counter("mcp_oauth.requests.allowed"),
            public: counter("mcp_oauth.requests.public"),
            served: counter("mcp_oauth.requests.served"),
            metadata: counter("mcp_oauth.metadata.served"),
            authz: AUTHZ_ENDPOINTS
                .iter()
                .map(|e| (*e, counter(&format!("mcp_oauth.authz.{e}"))))
                .collect(),
            denied: DENIAL_REASONS
                .iter()
                .map(|r| (*r, counter(&format!("mcp_oauth.requests.denied.{r}"))))
                .collect(),
            jwks_ok: counter("mcp_oauth.jwks.fetch_ok"),
            jwks_failed: counter("mcp_oauth.jwks.fetch_failed"),
        }
    }

    pub fn record(&self, outcome: Outcome) {
        match outcome {
            Outcome::Allowed => bump(self.allowed),
            Outcome::Public => bump(self.public),
            Outcome::Served => bump(self.served),
            Outcome::Metadata => bump(self.metadata),
            Outcome::Pending => {}
            Outcome::Authz(endpoint) => {
                let id = self
                    .authz
                    .iter()
                    .find(|(e, _)| *e == endpoint)
                    .and_then(|(_, id)| *id);
                bump(id)
            }
            Outcome::Denied(reason) => {
                let id = self
                    .denied
                    .iter()
                    .find(|(r, _)| *r == reason)
                    .and_then(|(_, id)| *id);
                bump(id)
            }
        }
    }

    pub fn jwks_fetch(&self, ok: bool) {
        bump(if ok { self.jwks_ok } else { self.jwks_failed })
    }
}
