//! Scopes derived from the tool annotations the backend itself publishes: `readOnlyHint: true`
//! needs the read scope, `destructiveHint: true` the destructive scope (default: the write
//! scope), anything else the write scope. The filter learns the annotations from the
//! `tools/list` answers that pass through it and keeps them in the store per MCP endpoint, so no
//! hand-written rules are needed. A tool not yet seen needs the write scope (fail safe).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::store::{update, Store};

/// Most tools remembered per endpoint.
const MAX_TOOLS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolKind {
    ReadOnly,
    Write,
    Destructive,
}

impl ToolKind {
    fn letter(self) -> &'static str {
        match self {
            ToolKind::ReadOnly => "r",
            ToolKind::Write => "w",
            ToolKind::Destructive => "d",
        }
    }

    fn from_letter(letter: &str) -> Option<ToolKind> {
        match letter {
            "r" => Some(ToolKind::ReadOnly),
            "w" => Some(ToolKind::Write),
            "d" => Some(ToolKind::Destructive),
            _ => None,
        }
    }

    /// From a tool's `annotations` object.
    pub fn of(tool: &Value) -> ToolKind {
        let hint = |name: &str| {
            tool.get("annotations")
                .and_then(|a| a.get(name))
                .and_then(Value::as_bool)
        };
        match (hint("readOnlyHint"), hint("destructiveHint")) {
            (Some(true), _) => ToolKind::ReadOnly,
            (_, Some(true)) => ToolKind::Destructive,
            _ => ToolKind::Write,
        }
    }
}

/// The scope names each kind needs (`mcp.annotation_scopes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnotationScopes {
    pub read_only: String,
    pub write: String,
    pub destructive: String,
}

impl AnnotationScopes {
    pub fn scope_for(&self, kind: Option<ToolKind>) -> &str {
        match kind {
            Some(ToolKind::ReadOnly) => &self.read_only,
            Some(ToolKind::Destructive) => &self.destructive,
            Some(ToolKind::Write) | None => &self.write,
        }
    }
}

/// The annotations learnt for one endpoint.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ToolKinds(BTreeMap<String, ToolKind>);

fn key(endpoint: &str) -> String {
    format!("mcp-oauth:annotations:{endpoint}")
}

impl ToolKinds {
    pub fn get(&self, tool: &str) -> Option<ToolKind> {
        self.0.get(tool).copied()
    }

    /// These kinds updated with what a listing just showed.
    pub fn with(&self, seen: &[(String, ToolKind)]) -> ToolKinds {
        let mut map = self.0.clone();
        map.extend(seen.iter().cloned());
        ToolKinds(map)
    }

    pub fn load(store: &dyn Store, endpoint: &str) -> ToolKinds {
        let Some((bytes, _)) = store.get(&key(endpoint)) else {
            return ToolKinds::default();
        };
        let map: BTreeMap<String, String> = serde_json::from_slice(&bytes).unwrap_or_default();
        ToolKinds(
            map.into_iter()
                .filter_map(|(k, v)| ToolKind::from_letter(&v).map(|kind| (k, kind)))
                .collect(),
        )
    }

    /// Merges what a `tools/list` page showed into the stored map.
    pub fn record(store: &mut dyn Store, endpoint: &str, seen: &[(String, ToolKind)]) {
        if seen.is_empty() {
            return;
        }
        let _ = update(store, &key(endpoint), |current| {
            let mut map: BTreeMap<String, String> = current
                .and_then(|c| serde_json::from_slice(c).ok())
                .unwrap_or_default();
            let mut changed = false;
            for (tool, kind) in seen {
                if map.len() >= MAX_TOOLS && !map.contains_key(tool) {
                    continue;
                }
                if map.get(tool).map(String::as_str) != Some(kind.letter()) {
                    map.insert(tool.clone(), kind.letter().to_string());
                    changed = true;
                }
            }
            (changed.then(|| serde_json::to_vec(&map).ok()).flatten(), ())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use serde_json::json;

    #[test]
    fn hints_decide_the_kind() {
        assert_eq!(
            ToolKind::of(&json!({"name": "a", "annotations": {"readOnlyHint": true}})),
            ToolKind::ReadOnly
        );
        assert_eq!(
            ToolKind::of(&json!({"name": "a", "annotations": {"destructiveHint": true}})),
            ToolKind::Destructive
        );
        assert_eq!(ToolKind::of(&json!({"name": "a"})), ToolKind::Write);
    }

    #[test]
    fn learnt_kinds_are_merged_per_endpoint() {
        let mut s = MemoryStore::default();
        ToolKinds::record(&mut s, "/mcp", &[("echo".into(), ToolKind::ReadOnly)]);
        ToolKinds::record(&mut s, "/mcp", &[("rm".into(), ToolKind::Destructive)]);
        let kinds = ToolKinds::load(&s, "/mcp");
        assert_eq!(kinds.get("echo"), Some(ToolKind::ReadOnly));
        assert_eq!(kinds.get("rm"), Some(ToolKind::Destructive));
        assert_eq!(ToolKinds::load(&s, "/other").get("echo"), None);
    }
}
