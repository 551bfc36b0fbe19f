//! The etcd v3 API through its JSON gateway (`POST /v3/kv/txn`, `/v3/kv/range`,
//! `/v3/lease/grant`, `/v3/auth/authenticate`): request bodies and answer parsers. Keys and
//! values are base64 in JSON; 64-bit numbers are strings.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};

/// One request to the JSON gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub path: &'static str,
    pub body: Vec<u8>,
}

/// A condition of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// The key does not exist (`create_revision == 0`).
    Absent(String),
    /// The key holds exactly this value.
    ValueIs(String, String),
}

/// An operation inside a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put {
        key: String,
        value: String,
        lease: i64,
    },
    Get(String),
    Txn(Txn),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Txn {
    pub compare: Vec<Compare>,
    pub success: Vec<Op>,
    pub failure: Vec<Op>,
}

fn b64(text: &str) -> String {
    STANDARD.encode(text.as_bytes())
}

fn compare_json(compare: &Compare) -> Value {
    match compare {
        Compare::Absent(key) => {
            json!({"key": b64(key), "result": "EQUAL", "target": "CREATE", "create_revision": "0"})
        }
        Compare::ValueIs(key, value) => {
            json!({"key": b64(key), "result": "EQUAL", "target": "VALUE", "value": b64(value)})
        }
    }
}

fn op_json(op: &Op) -> Value {
    match op {
        Op::Put { key, value, lease } => {
            let put = if *lease != 0 {
                json!({"key": b64(key), "value": b64(value), "lease": lease.to_string()})
            } else {
                json!({"key": b64(key), "value": b64(value)})
            };
            json!({ "request_put": put })
        }
        Op::Get(key) => json!({"request_range": {"key": b64(key)}}),
        Op::Txn(txn) => json!({ "request_txn": txn_json(txn) }),
    }
}

fn txn_json(txn: &Txn) -> Value {
    json!({
        "compare": txn.compare.iter().map(compare_json).collect::<Vec<_>>(),
        "success": txn.success.iter().map(op_json).collect::<Vec<_>>(),
        "failure": txn.failure.iter().map(op_json).collect::<Vec<_>>(),
    })
}

pub fn txn(txn: &Txn) -> Call {
    Call {
        path: "/v3/kv/txn",
        body: txn_json(txn).to_string().into_bytes(),
    }
}

/// A lease with a chosen id (so every replica names the same lease for the same time bucket).
pub fn lease_grant(id: i64, ttl_seconds: u64) -> Call {
    Call {
        path: "/v3/lease/grant",
        body: json!({"ID": id.to_string(), "TTL": ttl_seconds.to_string()})
            .to_string()
            .into_bytes(),
    }
}

/// The smallest key after every key that starts with `prefix`.
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Every key under `prefix` changed after `revision` (oldest change first), at most `limit`.
pub fn range_since(prefix: &str, revision: i64, limit: u64) -> Call {
    Call {
        path: "/v3/kv/range",
        body: json!({
            "key": b64(prefix),
            "range_end": STANDARD.encode(prefix_end(prefix)),
            "min_mod_revision": (revision + 1).to_string(),
            "sort_target": "MOD",
            "sort_order": "ASCEND",
            "limit": limit.to_string(),
        })
        .to_string()
        .into_bytes(),
    }
}

pub fn authenticate(username: &str, password: &str) -> Call {
    Call {
        path: "/v3/auth/authenticate",
        body: json!({"name": username, "password": password})
            .to_string()
            .into_bytes(),
    }
}

/// Why a call did not give an answer to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No answer from etcd (cluster down, timeout, no leader, a 5xx): it may or may not have
    /// been applied.
    Unreachable(String),
    /// The lease named in a put does not exist (expired, or never granted).
    LeaseNotFound,
    /// The lease already exists (a lease grant that someone else made first).
    LeaseExists,
    /// The auth token is missing, wrong or expired.
    AuthFailed,
    /// etcd refused the request (a bug or a misconfiguration, such as permissions).
    Refused(String),
}

/// Checks the HTTP status and etcd's error document; `Ok` with the parsed body.
pub fn answer(status: Option<&str>, body: &[u8]) -> Result<Value, Failure> {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    if status == Some("200") {
        return parsed.ok_or_else(|| Failure::Unreachable("answer is not JSON".into()));
    }
    let error = parsed
        .as_ref()
        .and_then(|v| v.get("error").or_else(|| v.get("message")))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if error.contains("requested lease not found") {
        Err(Failure::LeaseNotFound)
    } else if error.contains("lease already exists") {
        Err(Failure::LeaseExists)
    } else if error.contains("invalid auth token")
        || error.contains("user name is empty")
        || error.contains("authentication failed")
    {
        Err(Failure::AuthFailed)
    } else if matches!(status, Some(s) if s.starts_with('4')) && !error.is_empty() {
        Err(Failure::Refused(error))
    } else {
        let status = status.unwrap_or("none");
        Err(Failure::Unreachable(if error.is_empty() {
            format!("status {status}")
        } else {
            format!("status {status}: {error}")
        }))
    }
}

/// A key and its value, as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
    pub mod_revision: i64,
}

fn int(v: Option<&Value>) -> i64 {
    match v {
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

fn text(v: Option<&Value>) -> String {
    v.and_then(Value::as_str)
        .and_then(|s| STANDARD.decode(s).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn kvs(range: &Value) -> Vec<KeyValue> {
    range
        .get("kvs")
        .and_then(Value::as_array)
        .map(|kvs| {
            kvs.iter()
                .map(|kv| KeyValue {
                    key: text(kv.get("key")),
                    value: text(kv.get("value")),
                    mod_revision: int(kv.get("mod_revision")),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A transaction's result: which branch ran, and what its operations returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnResult {
    pub succeeded: bool,
    pub responses: Vec<OpResult>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResult {
    Put,
    /// The key's value, if it exists.
    Get(Option<KeyValue>),
    Txn(TxnResult),
}

fn txn_result(v: &Value) -> TxnResult {
    TxnResult {
        // proto3 JSON leaves out a false `succeeded`.
        succeeded: v.get("succeeded").and_then(Value::as_bool).unwrap_or(false),
        responses: v
            .get("responses")
            .and_then(Value::as_array)
            .map(|ops| {
                ops.iter()
                    .map(|op| {
                        if let Some(range) = op.get("response_range") {
                            OpResult::Get(kvs(range).into_iter().next())
                        } else if let Some(inner) = op.get("response_txn") {
                            OpResult::Txn(txn_result(inner))
                        } else {
                            OpResult::Put
                        }
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

pub fn parse_txn(v: &Value) -> TxnResult {
    txn_result(v)
}

/// A range answer: the changed keys, the store's revision it was read at, and whether more
/// keys matched than the limit allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changes {
    pub kvs: Vec<KeyValue>,
    pub revision: i64,
    pub more: bool,
}

pub fn parse_range(v: &Value) -> Changes {
    Changes {
        kvs: kvs(v),
        revision: int(v.get("header").and_then(|h| h.get("revision"))),
        more: v.get("more").and_then(Value::as_bool).unwrap_or(false),
    }
}

/// The token an `authenticate` answer carries.
pub fn parse_token(v: &Value) -> Option<String> {
    v.get("token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
}

impl TxnResult {
    /// The value read by the `index`-th operation (a get), following a nested transaction.
    pub fn get(&self, index: usize) -> Option<&KeyValue> {
        match self.responses.get(index) {
            Some(OpResult::Get(kv)) => kv.as_ref(),
            _ => None,
        }
    }

    /// The nested transaction at `index`.
    pub fn inner(&self, index: usize) -> Option<&TxnResult> {
        match self.responses.get(index) {
            Some(OpResult::Txn(t)) => Some(t),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_create_if_absent_transaction() {
        let call = txn(&Txn {
            compare: vec![Compare::Absent("p/code/x".into())],
            success: vec![Op::Put {
                key: "p/code/x".into(),
                value: "n".into(),
                lease: 77,
            }],
            failure: vec![Op::Get("p/code/x".into())],
        });
        assert_eq!(call.path, "/v3/kv/txn");
        let v: Value = serde_json::from_slice(&call.body).unwrap();
        assert_eq!(
            v,
            json!({
                "compare": [{"key": "cC9jb2RlL3g=", "result": "EQUAL", "target": "CREATE", "create_revision": "0"}],
                "success": [{"request_put": {"key": "cC9jb2RlL3g=", "value": "bg==", "lease": "77"}}],
                "failure": [{"request_range": {"key": "cC9jb2RlL3g="}}],
            })
        );
    }

    #[test]
    fn a_compare_and_swap_with_a_nested_transaction() {
        let call = txn(&Txn {
            compare: vec![Compare::ValueIs("k".into(), "1".into())],
            success: vec![],
            failure: vec![Op::Txn(Txn::default())],
        });
        let v: Value = serde_json::from_slice(&call.body).unwrap();
        assert_eq!(v["compare"][0]["target"], "VALUE");
        assert_eq!(v["compare"][0]["value"], "MQ==");
        assert!(v["failure"][0]["request_txn"]["compare"].is_array());
    }

    #[test]
    fn answers_as_etcd_3_4_gives_them() {
        // Copied from etcd 3.4.23's JSON gateway.
        let ok = br#"{"header":{"revision":"2"},"succeeded":true,"responses":[{"response_put":{"header":{"revision":"2"}}}]}"#;
        let r = parse_txn(&answer(Some("200"), ok).unwrap());
        assert!(r.succeeded);
        assert_eq!(r.responses, vec![OpResult::Put]);
        let taken = br#"{"header":{"revision":"2"},"responses":[{"response_range":{"header":{"revision":"2"},"kvs":[{"key":"cC9jb2RlL3g=","create_revision":"2","mod_revision":"2","version":"1","value":"bjE=","lease":"4660"}],"count":"1"}}]}"#;
        let r = parse_txn(&answer(Some("200"), taken).unwrap());
        assert!(!r.succeeded);
        assert_eq!(r.get(0).map(|kv| kv.value.as_str()), Some("n1"));
        let nested = br#"{"header":{"revision":"3"},"responses":[{"response_txn":{"header":{},"responses":[{"response_range":{"header":{"revision":"3"},"kvs":[]}}]}}]}"#;
        let r = parse_txn(&answer(Some("200"), nested).unwrap());
        let inner = r.inner(0).unwrap();
        assert!(!inner.succeeded);
        assert_eq!(inner.get(0), None);
    }

    #[test]
    fn errors_are_classified() {
        let lease = br#"{"error":"etcdserver: requested lease not found","message":"etcdserver: requested lease not found","code":5}"#;
        assert_eq!(answer(Some("404"), lease), Err(Failure::LeaseNotFound));
        let exists = br#"{"error":"etcdserver: lease already exists","code":9}"#;
        assert_eq!(answer(Some("412"), exists), Err(Failure::LeaseExists));
        assert_eq!(
            answer(
                Some("401"),
                br#"{"error":"etcdserver: invalid auth token","code":16}"#
            ),
            Err(Failure::AuthFailed)
        );
        assert!(matches!(
            answer(Some("503"), b"upstream connect error"),
            Err(Failure::Unreachable(_))
        ));
        assert!(matches!(answer(None, b""), Err(Failure::Unreachable(_))));
        assert!(matches!(
            answer(Some("200"), b"<html>"),
            Err(Failure::Unreachable(_))
        ));
        assert!(matches!(
            answer(Some("403"), br#"{"error":"etcdserver: permission denied"}"#),
            Err(Failure::Refused(_))
        ));
    }

    #[test]
    fn range_since_a_revision() {
        let call = range_since("/p/revoked/", 41, 1000);
        let v: Value = serde_json::from_slice(&call.body).unwrap();
        assert_eq!(v["min_mod_revision"], "42");
        assert_eq!(
            STANDARD.decode(v["range_end"].as_str().unwrap()).unwrap(),
            b"/p/revoked0"
        );
        let body = br#"{"header":{"revision":"9"},"kvs":[{"key":"L3AvcmV2b2tlZC9hdC9q","mod_revision":"7","value":"MTAw"}],"count":"3"}"#;
        let changes = parse_range(&answer(Some("200"), body).unwrap());
        assert_eq!(changes.revision, 9);
        assert!(!changes.more);
        assert_eq!(
            changes.kvs,
            vec![KeyValue {
                key: "/p/revoked/at/j".into(),
                value: "100".into(),
                mod_revision: 7
            }]
        );
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end("a/"), b"a0");
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80");
    }
}
