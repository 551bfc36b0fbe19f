//! MCP-level authorization: which scopes a tool, prompt or resource needs, and which tools a
//! client may use at all. Rules are checked at load time; here they only match.

use super::annotations::{AnnotationScopes, ToolKinds};
use super::glob::Glob;
use super::jsonrpc::Call;

/// One rule: calls whose method (and name or URI) match need all of `scopes`.
#[derive(Debug, Clone)]
pub struct Rule {
    pub method: Glob,
    pub name: Option<Glob>,
    pub uri: Option<Glob>,
    pub scopes: Vec<String>,
}

impl Rule {
    fn matches(&self, call: &Call) -> bool {
        self.method.matches(&call.method)
            && self
                .name
                .as_ref()
                .is_none_or(|g| call.name.as_deref().is_some_and(|n| g.matches(n)))
            && self
                .uri
                .as_ref()
                .is_none_or(|g| call.uri.as_deref().is_some_and(|u| g.matches(u)))
    }
}

/// Tools a client may or may not call, whatever its scopes.
#[derive(Debug, Clone)]
pub struct ClientTools {
    pub client_id: String,
    /// When set, only these tools.
    pub allow: Option<Vec<Glob>>,
    pub deny: Vec<Glob>,
}

/// The checked `mcp` section.
#[derive(Debug, Clone)]
pub struct McpPolicy {
    /// Path prefixes whose POST bodies are JSON-RPC to inspect.
    pub endpoints: Vec<String>,
    pub max_body_bytes: usize,
    pub rules: Vec<Rule>,
    /// Scopes for any call that no rule names.
    pub default_scopes: Vec<String>,
    pub clients: Vec<ClientTools>,
    /// Scopes derived from the backend's tool annotations, for tools no rule names.
    pub annotation_scopes: Option<AnnotationScopes>,
    /// Count decisions per tool too (off by default: tool names are unbounded).
    pub stats_per_tool: bool,
}

/// The verdict on a body.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// The token lacks `missing` for `call`.
    NeedScopes {
        call: String,
        missing: Vec<String>,
    },
    /// This client may never call the tool.
    ClientDenied {
        tool: String,
        id: Option<serde_json::Value>,
    },
}

impl McpPolicy {
    /// Every call must pass; the first refusal decides (a batch is refused whole).
    /// `kinds` are the tool annotations learnt for this endpoint (used only with
    /// `annotation_scopes`).
    pub fn check(
        &self,
        calls: &[Call],
        client_id: Option<&str>,
        granted: &[String],
        kinds: &ToolKinds,
    ) -> Verdict {
        let client = client_id.and_then(|id| self.clients.iter().find(|c| c.client_id == id));
        for call in calls {
            if let (Some(client), "tools/call", Some(tool)) =
                (client, call.method.as_str(), call.name.as_deref())
            {
                let allowed = client
                    .allow
                    .as_ref()
                    .is_none_or(|list| list.iter().any(|g| g.matches(tool)));
                if !allowed || client.deny.iter().any(|g| g.matches(tool)) {
                    return Verdict::ClientDenied {
                        tool: tool.to_string(),
                        id: call.id.clone(),
                    };
                }
            }
            let derived;
            let required = match self.rules.iter().find(|r| r.matches(call)) {
                Some(rule) => &rule.scopes,
                None => match (
                    &self.annotation_scopes,
                    call.method.as_str(),
                    call.name.as_deref(),
                ) {
                    (Some(scopes), "tools/call", Some(tool)) => {
                        derived = vec![scopes.scope_for(kinds.get(tool)).to_string()];
                        &derived
                    }
                    _ => &self.default_scopes,
                },
            };
            let missing: Vec<String> = required
                .iter()
                .filter(|s| !granted.contains(s))
                .cloned()
                .collect();
            if !missing.is_empty() {
                return Verdict::NeedScopes {
                    call: call.describe(),
                    missing,
                };
            }
        }
        Verdict::Allow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl McpPolicy {
        fn check_plain(
            &self,
            calls: &[Call],
            client_id: Option<&str>,
            granted: &[String],
        ) -> Verdict {
            self.check(calls, client_id, granted, &ToolKinds::default())
        }
    }

    fn g(p: &str) -> Glob {
        Glob::new(p).unwrap()
    }

    fn policy() -> McpPolicy {
        McpPolicy {
            endpoints: vec!["/mcp".into()],
            max_body_bytes: 1024,
            rules: vec![
                Rule {
                    method: g("tools/call"),
                    name: Some(g("delete_*")),
                    uri: None,
                    scopes: vec!["write".into()],
                },
                Rule {
                    method: g("tools/call"),
                    name: None,
                    uri: None,
                    scopes: vec!["read".into()],
                },
                Rule {
                    method: g("resources/read"),
                    name: None,
                    uri: Some(g("secret://*")),
                    scopes: vec!["admin".into()],
                },
            ],
            default_scopes: vec![],
            clients: vec![ClientTools {
                client_id: "bot".into(),
                allow: Some(vec![g("echo")]),
                deny: vec![],
            }],
            annotation_scopes: None,
            stats_per_tool: false,
        }
    }

    fn call(method: &str, name: Option<&str>, uri: Option<&str>) -> Call {
        Call {
            method: method.into(),
            name: name.map(Into::into),
            uri: uri.map(Into::into),
            id: Some(serde_json::json!(1)),
        }
    }

    #[test]
    fn first_matching_rule_sets_the_scopes() {
        let p = policy();
        let read = vec!["read".to_string()];
        assert_eq!(
            p.check_plain(&[call("tools/call", Some("echo"), None)], None, &read),
            Verdict::Allow
        );
        assert_eq!(
            p.check_plain(
                &[call("tools/call", Some("delete_file"), None)],
                None,
                &read
            ),
            Verdict::NeedScopes {
                call: "tools/call delete_file".into(),
                missing: vec!["write".into()]
            }
        );
        assert!(matches!(
            p.check_plain(
                &[call("resources/read", None, Some("secret://k"))],
                None,
                &read
            ),
            Verdict::NeedScopes { .. }
        ));
        assert_eq!(
            p.check_plain(
                &[call("resources/read", None, Some("file:///a"))],
                None,
                &[]
            ),
            Verdict::Allow
        );
        assert_eq!(
            p.check_plain(&[call("initialize", None, None)], None, &[]),
            Verdict::Allow
        );
    }

    #[test]
    fn client_lists_hold_whatever_the_scopes() {
        let p = policy();
        let all = vec!["read".to_string(), "write".to_string()];
        assert!(matches!(
            p.check_plain(
                &[call("tools/call", Some("delete_file"), None)],
                Some("bot"),
                &all
            ),
            Verdict::ClientDenied { .. }
        ));
        assert_eq!(
            p.check_plain(&[call("tools/call", Some("echo"), None)], Some("bot"), &all),
            Verdict::Allow
        );
    }

    #[test]
    fn one_forbidden_call_refuses_the_batch() {
        let p = policy();
        let read = vec!["read".to_string()];
        let batch = [
            call("tools/call", Some("echo"), None),
            call("tools/call", Some("delete_x"), None),
        ];
        assert!(matches!(
            p.check_plain(&batch, None, &read),
            Verdict::NeedScopes { .. }
        ));
    }
}
