//! Envoy counters (shown under `wasmcustom.` in `/stats` and `/stats/prometheus`).

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

use std::cell::RefCell;
use std::collections::HashMap;

use crate::gateway::{McpLabel, Outcome};

/// Most per-method and per-tool counters one VM defines.
const MAX_TOOL_COUNTERS: usize = 300;

/// A bounded stats label for a JSON-RPC method.
fn method_label(method: &str) -> &'static str {
    match method {
        "initialize" => "initialize",
        "ping" => "ping",
        "tools/list" => "tools_list",
        "tools/call" => "tools_call",
        "resources/list" => "resources_list",
        "resources/templates/list" => "resources_templates_list",
        "resources/read" => "resources_read",
        "resources/subscribe" => "resources_subscribe",
        "resources/unsubscribe" => "resources_unsubscribe",
        "prompts/list" => "prompts_list",
        "prompts/get" => "prompts_get",
        "completion/complete" => "completion_complete",
        "logging/setLevel" => "logging_set_level",
        m if m.starts_with("notifications/") => "notification",
        _ => "other",
    }
}

const DENIAL_REASONS: [&str; 9] = [
    "client_denied",
    "session_mismatch",
    "missing_token",
    "invalid_token",
    "expired",
    "insufficient_scope",
    "bad_request",
    "keys_unavailable",
    "no_upstream_token",
];

const AUTHZ_ENDPOINTS: [&str; 7] = [
    "authorize",
    "token",
    "register",
    "revoke",
    "introspect",
    "jwks",
    "callback",
];

/// Counter ids, defined once per VM.
#[derive(Default)]
pub struct Stats {
    allowed: Option<u32>,
    public: Option<u32>,
    served: Option<u32>,
    metadata: Option<u32>,
    authz: Vec<(&'static str, Option<u32>)>,
    /// Per-MCP-method (and, if configured, per-tool) counters, defined on first use.
    mcp: RefCell<HashMap<String, Option<u32>>>,
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
            mcp: RefCell::new(HashMap::new()),
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

    /// Counts an inspected MCP request by method (a fixed set of names, so the number of
    /// counters stays bounded) and, when `per_tool`, by tool (at most `MAX_TOOL_COUNTERS`).
    pub fn record_mcp(&self, label: &McpLabel, outcome: Outcome, per_tool: bool) {
        let verdict = match outcome {
            Outcome::Allowed => "allowed",
            Outcome::Denied(_) => "denied",
            _ => return,
        };
        self.bump_named(&format!(
            "mcp_oauth.mcp.{}.{verdict}",
            method_label(&label.method)
        ));
        if let (true, Some(tool)) = (per_tool, &label.tool) {
            let tool: String = tool
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .take(64)
                .collect();
            self.bump_named(&format!("mcp_oauth.mcp.tool.{tool}.{verdict}"));
        }
    }

    fn bump_named(&self, name: &str) {
        let Ok(mut map) = self.mcp.try_borrow_mut() else {
            return;
        };
        if let Some(id) = map.get(name) {
            bump(*id);
            return;
        }
        if map.len() >= MAX_TOOL_COUNTERS {
            return;
        }
        let id = counter(name);
        map.insert(name.to_string(), id);
        bump(id);
    }

    pub fn jwks_fetch(&self, ok: bool) {
        bump(if ok { self.jwks_ok } else { self.jwks_failed })
    }
}
