//! Filtering `tools/list`, `prompts/list` and `resources/list` answers so a token sees only what
//! it may call — whether the backend answers with plain JSON or with an SSE stream (streamable
//! HTTP often answers a POST with `text/event-stream`). Other messages pass untouched.

use serde_json::Value;

use super::annotations::{ToolKind, ToolKinds};
use super::jsonrpc::Call;
use super::policy::{McpPolicy, Verdict};

/// What a forwarded request's answer must be filtered for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListFilter {
    /// Ids of the list requests in the body, with their method.
    pub requests: Vec<(Value, String)>,
    pub client_id: Option<String>,
    pub scopes: Vec<String>,
    /// The MCP endpoint the request went to (annotations are learnt per endpoint).
    pub endpoint: String,
}

/// Tool annotations seen in a `tools/list` answer, to remember.
pub type Seen = Vec<(String, ToolKind)>;

const LIST_METHODS: [&str; 3] = ["tools/list", "prompts/list", "resources/list"];

impl ListFilter {
    /// A filter when the body has list requests, else `None` (the answer streams untouched).
    pub fn for_calls(
        calls: &[Call],
        client_id: Option<&str>,
        scopes: &[String],
        endpoint: &str,
    ) -> Option<ListFilter> {
        let requests: Vec<(Value, String)> = calls
            .iter()
            .filter(|c| LIST_METHODS.contains(&c.method.as_str()))
            .filter_map(|c| c.id.clone().map(|id| (id, c.method.clone())))
            .collect();
        (!requests.is_empty()).then(|| ListFilter {
            requests,
            client_id: client_id.map(str::to_string),
            scopes: scopes.to_vec(),
            endpoint: endpoint.to_string(),
        })
    }

    /// Filters one JSON-RPC message (or batch); `None` when nothing had to change.
    pub fn filter_message(
        &self,
        policy: &McpPolicy,
        kinds: &ToolKinds,
        message: &mut Value,
        seen: &mut Seen,
    ) -> bool {
        match message {
            Value::Array(items) => {
                let mut changed = false;
                for item in items {
                    changed |= self.filter_message(policy, kinds, item, seen);
                }
                changed
            }
            Value::Object(obj) => {
                let Some(method) = obj
                    .get("id")
                    .and_then(|id| self.requests.iter().find(|(rid, _)| rid == id))
                    .map(|(_, m)| m.clone())
                else {
                    return false;
                };
                let (key, field, call_method) = match method.as_str() {
                    "tools/list" => ("tools", "name", "tools/call"),
                    "prompts/list" => ("prompts", "name", "prompts/get"),
                    _ => ("resources", "uri", "resources/read"),
                };
                let Some(items) = obj
                    .get_mut("result")
                    .and_then(|r| r.get_mut(key))
                    .and_then(Value::as_array_mut)
                else {
                    return false;
                };
                if key == "tools" {
                    for item in items.iter() {
                        if let Some(name) = item.get("name").and_then(Value::as_str) {
                            seen.push((name.to_string(), ToolKind::of(item)));
                        }
                    }
                }
                let learnt: ToolKinds;
                let kinds = if key == "tools" && policy.annotation_scopes.is_some() {
                    learnt = kinds.with(seen);
                    &learnt
                } else {
                    kinds
                };
                let before = items.len();
                items.retain(|item| {
                    let target = item.get(field).and_then(Value::as_str).map(str::to_string);
                    let call = Call {
                        method: call_method.to_string(),
                        name: (field == "name").then(|| target.clone()).flatten(),
                        uri: (field == "uri").then_some(target).flatten(),
                        id: None,
                    };
                    policy.check(&[call], self.client_id.as_deref(), &self.scopes, kinds)
                        == Verdict::Allow
                });
                items.len() != before
            }
            _ => false,
        }
    }

    /// Filters a whole JSON body; returns the new body if it changed.
    pub fn filter_json(
        &self,
        policy: &McpPolicy,
        kinds: &ToolKinds,
        body: &[u8],
        seen: &mut Seen,
    ) -> Option<Vec<u8>> {
        let mut message: Value = serde_json::from_slice(body).ok()?;
        if self.filter_message(policy, kinds, &mut message, seen) {
            serde_json::to_vec(&message).ok()
        } else {
            None
        }
    }
}

/// Filters an SSE stream event by event. Bytes go out as soon as an event is complete; only an
/// incomplete event is held back (bounded), so progress notifications and long streams flow.
#[derive(Debug, Default)]
pub struct SseFilter {
    pending: Vec<u8>,
}

/// An event larger than this passes unfiltered rather than being held without bound.
const MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;

impl SseFilter {
    /// Takes the next chunk and returns what can be sent now.
    pub fn push(
        &mut self,
        filter: &ListFilter,
        policy: &McpPolicy,
        kinds: &ToolKinds,
        chunk: &[u8],
        seen: &mut Seen,
    ) -> Vec<u8> {
        self.pending.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(end) = event_end(&self.pending) {
            let event: Vec<u8> = self.pending.drain(..end).collect();
            out.extend(filter_event(filter, policy, kinds, &event, seen));
        }
        if self.pending.len() > MAX_EVENT_BYTES {
            out.append(&mut self.pending);
        }
        out
    }

    /// The end of the stream: whatever is left goes out as it is.
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.pending)
    }
}

/// The index just past the blank line that ends the first complete event.
fn event_end(buf: &[u8]) -> Option<usize> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Rewrites the `data:` of one event if it is a list answer to filter.
fn filter_event(
    filter: &ListFilter,
    policy: &McpPolicy,
    kinds: &ToolKinds,
    event: &[u8],
    seen: &mut Seen,
) -> Vec<u8> {
    let Ok(text) = std::str::from_utf8(event) else {
        return event.to_vec();
    };
    let data: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| d.strip_prefix(' ').unwrap_or(d))
        .collect();
    if data.is_empty() {
        return event.to_vec();
    }
    let Some(new_data) = filter.filter_json(policy, kinds, data.join("\n").as_bytes(), seen) else {
        return event.to_vec();
    };
    let mut out = String::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with("data:"))
    {
        out.push_str(line);
        out.push('\n');
    }
    out.push_str("data: ");
    out.push_str(&String::from_utf8_lossy(&new_data));
    out.push_str("\n\n");
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::glob::Glob;
    use crate::mcp::policy::{ClientTools, Rule};
    use serde_json::json;

    fn policy() -> McpPolicy {
        McpPolicy {
            endpoints: vec!["/mcp".into()],
            max_body_bytes: 1 << 20,
            rules: vec![Rule {
                method: Glob::new("tools/call").unwrap(),
                name: Some(Glob::new("delete_*").unwrap()),
                uri: None,
                scopes: vec!["write".into()],
            }],
            default_scopes: vec![],
            clients: vec![ClientTools {
                client_id: "bot".into(),
                allow: None,
                deny: vec![Glob::new("secret").unwrap()],
            }],
            annotation_scopes: None,
            stats_per_tool: false,
        }
    }

    fn filter(client: Option<&str>, scopes: &[&str]) -> ListFilter {
        let calls =
            crate::mcp::jsonrpc::calls(br#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#)
                .unwrap();
        let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        ListFilter::for_calls(&calls, client, &scopes, "/mcp").unwrap()
    }

    fn listing() -> Value {
        json!({"jsonrpc": "2.0", "id": 3, "result": {"tools": [{"name": "echo"}, {"name": "delete_file"}, {"name": "secret"}]}})
    }

    fn names(v: &Value) -> Vec<String> {
        v["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn json_answers_show_only_callable_tools() {
        let out = filter(Some("bot"), &["read"])
            .filter_json(
                &policy(),
                &ToolKinds::default(),
                listing().to_string().as_bytes(),
                &mut Vec::new(),
            )
            .unwrap();
        assert_eq!(names(&serde_json::from_slice(&out).unwrap()), vec!["echo"]);
        let all = filter(None, &["write"]).filter_json(
            &policy(),
            &ToolKinds::default(),
            listing().to_string().as_bytes(),
            &mut Vec::new(),
        );
        assert!(all.is_none(), "nothing removed, nothing rewritten");
    }

    #[test]
    fn other_ids_and_messages_pass_untouched() {
        let other =
            json!({"jsonrpc": "2.0", "id": 4, "result": {"tools": [{"name": "delete_file"}]}});
        assert!(filter(None, &[])
            .filter_json(
                &policy(),
                &ToolKinds::default(),
                other.to_string().as_bytes(),
                &mut Vec::new()
            )
            .is_none());
    }

    #[test]
    fn sse_events_are_filtered_across_chunk_boundaries() {
        let f = filter(None, &["read"]);
        let p = policy();
        let progress = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n";
        let list = format!("event: message\nid: 9\ndata: {}\n\n", listing());
        let stream = format!("{progress}{list}");
        let (a, b) = stream.as_bytes().split_at(progress.len() + 20);
        let mut sse = SseFilter::default();
        let mut out = sse.push(&f, &p, &ToolKinds::default(), a, &mut Vec::new());
        assert_eq!(out, progress.as_bytes(), "complete events go out at once");
        out.extend(sse.push(&f, &p, &ToolKinds::default(), b, &mut Vec::new()));
        out.extend(sse.finish());
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("id: 9\n"));
        assert!(!text.contains("delete_file"));
        assert!(text.contains("\"echo\""));
    }
}
