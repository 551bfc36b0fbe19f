//! What a JSON-RPC request body asks for: the method and, where it applies, the tool or prompt
//! name or the resource URI. Only what the rules need is read; the body goes on unchanged.

use serde_json::Value;

/// Most messages accepted in one batch.
pub const MAX_BATCH: usize = 100;

/// One request or notification from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub method: String,
    /// `params.name` of `tools/call` and `prompts/get`.
    pub name: Option<String>,
    /// `params.uri` of `resources/read`, `resources/subscribe`, `resources/unsubscribe`.
    pub uri: Option<String>,
    pub id: Option<Value>,
}

impl Call {
    /// How the call is named in messages: `tools/call echo`.
    pub fn describe(&self) -> String {
        match (&self.name, &self.uri) {
            (Some(name), _) => format!("{} {name}", self.method),
            (None, Some(uri)) => format!("{} {uri}", self.method),
            (None, None) => self.method.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Not JSON (JSON-RPC -32700).
    NotJson,
    /// JSON, but not a JSON-RPC message or batch (-32600).
    NotJsonRpc,
}

impl ParseError {
    pub fn code(self) -> i64 {
        match self {
            ParseError::NotJson => -32700,
            ParseError::NotJsonRpc => -32600,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            ParseError::NotJson => "Parse error",
            ParseError::NotJsonRpc => "Invalid Request",
        }
    }
}

/// The calls in a body: one message or a batch (2025-03-26 clients). Responses the client
/// sends (to sampling or elicitation requests) carry no method and are not calls.
pub fn calls(body: &[u8]) -> Result<Vec<Call>, ParseError> {
    let value: Value = serde_json::from_slice(body).map_err(|_| ParseError::NotJson)?;
    match value {
        Value::Array(items) => {
            if items.is_empty() || items.len() > MAX_BATCH {
                return Err(ParseError::NotJsonRpc);
            }
            let mut out = Vec::new();
            for item in &items {
                out.extend(message(item)?);
            }
            Ok(out)
        }
        single => Ok(message(&single)?.into_iter().collect()),
    }
}

fn message(value: &Value) -> Result<Option<Call>, ParseError> {
    let obj = value.as_object().ok_or(ParseError::NotJsonRpc)?;
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(ParseError::NotJsonRpc);
    }
    let Some(method) = obj.get("method") else {
        // A response from the client: it must have a result or an error.
        return if obj.contains_key("result") || obj.contains_key("error") {
            Ok(None)
        } else {
            Err(ParseError::NotJsonRpc)
        };
    };
    let method = method.as_str().ok_or(ParseError::NotJsonRpc)?.to_string();
    let params = obj.get("params");
    let field = |name: &str| -> Result<Option<String>, ParseError> {
        match params.and_then(|p| p.get(name)) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ParseError::NotJsonRpc),
        }
    };
    let (name, uri) = match method.as_str() {
        "tools/call" | "prompts/get" => (Some(field("name")?.ok_or(ParseError::NotJsonRpc)?), None),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            (None, Some(field("uri")?.ok_or(ParseError::NotJsonRpc)?))
        }
        _ => (None, None),
    };
    Ok(Some(Call {
        method,
        name,
        uri,
        id: obj.get("id").cloned(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_batch_messages() {
        let one = calls(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#).unwrap();
        assert_eq!(one[0].describe(), "tools/call echo");
        let batch = calls(
            br#"[{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a"}},
                {"jsonrpc":"2.0","method":"notifications/initialized"},
                {"jsonrpc":"2.0","id":7,"result":{}}]"#,
        )
        .unwrap();
        assert_eq!(batch.len(), 2);
        assert_eq!(batch[0].uri.as_deref(), Some("file:///a"));
    }

    #[test]
    fn malformed_bodies_are_told_apart() {
        assert_eq!(calls(b"{not json"), Err(ParseError::NotJson));
        assert_eq!(calls(b"[]"), Err(ParseError::NotJsonRpc));
        assert_eq!(
            calls(br#"{"id":1,"method":"x"}"#),
            Err(ParseError::NotJsonRpc)
        );
        assert_eq!(
            calls(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#),
            Err(ParseError::NotJsonRpc)
        );
        assert_eq!(
            calls(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":5}}"#),
            Err(ParseError::NotJsonRpc)
        );
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(calls(deep.as_bytes()).is_err());
    }
}
