//! Opaque access tokens, checked by asking the authorization server (RFC 7662) through an Envoy
//! cluster, authenticated as a configured client. Active answers are cached (keyed by the
//! token's SHA-256, never the token) until the earlier of the token's `exp` and a configured
//! bound; inactive answers briefly; an unreachable endpoint gives 401 or 503 as configured,
//! never a silent pass.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use std::rc::Rc;

use crate::jwt::VerifiedToken;
use crate::store::Store;

/// How long an inactive answer or an unreachable endpoint is remembered.
const NEGATIVE_SECONDS: u64 = 5;

/// The checked `introspection` section.
#[derive(Debug, Clone)]
pub struct IntrospectionConfig {
    pub cluster: String,
    pub authority: String,
    pub path: String,
    pub client_id: String,
    pub client_secret: String,
    pub timeout_ms: u64,
    pub max_cache_seconds: u64,
    /// 503 (true) or 401 (false) when the endpoint cannot answer.
    pub unavailable_is_503: bool,
    /// If set, an answer's `iss` must be this.
    pub issuer: Option<String>,
}

/// The call the glue must make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntrospectionCall {
    /// Cache key of the token (its SHA-256), to hand back with the answer.
    pub token_key: String,
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout_ms: u64,
}

/// What the cache says about a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Known {
    Active(Rc<VerifiedToken>),
    Inactive,
    Unavailable,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(remote = "Self")]
struct Entry {
    until: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    active: Option<Answer>,
    #[serde(default)]
    unavailable: bool,
}
json_object!(Entry, Serialize);

/// The parts of an active answer we keep.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(remote = "Self")]
struct Answer {
    iss: String,
    sub: Option<String>,
    client_id: Option<String>,
    scopes: Vec<String>,
    exp: u64,
    iat: Option<u64>,
    jti: Option<String>,
    aud: Vec<String>,
}
json_object!(Answer, Serialize);

/// Whether a bearer token is a JWT (three dot-separated parts) rather than an opaque token.
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}

pub fn token_key(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(crate::secret_hash::sha256(token.as_bytes()))
}

fn store_key(token_key: &str) -> String {
    format!("mcp-oauth:introspect:{token_key}")
}

/// The cached verdict for a token, if still fresh.
pub fn cached(store: &dyn Store, token_key: &str, now: u64) -> Option<Known> {
    let (bytes, _) = store.get(&store_key(token_key))?;
    let entry: Entry = serde_json::from_slice(&bytes).ok()?;
    if entry.until <= now {
        return None;
    }
    Some(match (entry.active, entry.unavailable) {
        (Some(a), _) => Known::Active(Rc::new(VerifiedToken {
            issuer: a.iss,
            subject: a.sub,
            client_id: a.client_id,
            scopes: a.scopes,
            expires_at: a.exp,
            issued_at: a.iat,
            jwt_id: a.jti,
            audiences: a.aud,
            grant: None,
            session_identity: Default::default(),
        })),
        (None, true) => Known::Unavailable,
        (None, false) => Known::Inactive,
    })
}

/// The request to the introspection endpoint (client_secret_basic, form body).
pub fn call(config: &IntrospectionConfig, token: &str) -> IntrospectionCall {
    let credentials = format!(
        "{}:{}",
        crate::form::encode(&[("", &config.client_id)]).trim_start_matches('='),
        crate::form::encode(&[("", &config.client_secret)]).trim_start_matches('=')
    );
    IntrospectionCall {
        token_key: token_key(token),
        cluster: config.cluster.clone(),
        headers: vec![
            (":method".into(), "POST".into()),
            (":path".into(), config.path.clone()),
            (":authority".into(), config.authority.clone()),
            (
                "content-type".into(),
                "application/x-www-form-urlencoded".into(),
            ),
            ("accept".into(), "application/json".into()),
            (
                "authorization".into(),
                format!("Basic {}", STANDARD.encode(credentials)),
            ),
        ],
        body: crate::form::encode(&[("token", token), ("token_type_hint", "access_token")])
            .into_bytes(),
        timeout_ms: config.timeout_ms,
    }
}

/// Reads the endpoint's answer and caches the verdict.
pub fn accept(
    config: &IntrospectionConfig,
    store: &mut dyn Store,
    token_key: &str,
    status: Option<&str>,
    body: &[u8],
    now: u64,
) {
    let entry = match (status, serde_json::from_slice::<Value>(body)) {
        (Some("200"), Ok(answer)) => match read_answer(config, &answer, now) {
            Some(active) => Entry {
                until: active.exp.min(now + cache_seconds(config)),
                active: Some(active),
                unavailable: false,
            },
            None => Entry {
                until: now + NEGATIVE_SECONDS,
                active: None,
                unavailable: false,
            },
        },
        _ => {
            log::warn!(
                "mcp-oauth: token introspection failed (status {})",
                status.unwrap_or("none")
            );
            Entry {
                until: now + NEGATIVE_SECONDS.min(2),
                active: None,
                unavailable: true,
            }
        }
    };
    if let Ok(bytes) = serde_json::to_vec(&entry) {
        let _ = store.set(&store_key(token_key), &bytes, None);
    }
}

/// How long an active answer is kept: `max_cache_seconds`, but at least one second, because
/// the request that asked for it is decided again right after it arrives and must find it
/// (with 0 it asked again, and the filter answered 502).
fn cache_seconds(config: &IntrospectionConfig) -> u64 {
    config.max_cache_seconds.max(1)
}

/// An active, unexpired answer from the expected issuer, or `None` (inactive).
fn read_answer(config: &IntrospectionConfig, answer: &Value, now: u64) -> Option<Answer> {
    if answer.get("active").and_then(Value::as_bool) != Some(true) {
        return None;
    }
    let text = |name: &str| answer.get(name).and_then(Value::as_str).map(str::to_string);
    let number = |name: &str| answer.get(name).and_then(Value::as_u64);
    let exp = number("exp").unwrap_or(now + cache_seconds(config));
    // `exp` is the first second the token is no longer valid (RFC 7519 §4.1.4). Taking
    // `exp == now` as active cached it until `now`, already stale, so the gateway asked again.
    if exp <= now {
        return None;
    }
    let iss = text("iss");
    if let (Some(expected), Some(iss)) = (&config.issuer, &iss) {
        if expected != iss {
            return None;
        }
    }
    let aud = match answer.get("aud") {
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => vec![],
    };
    Some(Answer {
        iss: iss.or_else(|| config.issuer.clone()).unwrap_or_default(),
        sub: text("sub"),
        client_id: text("client_id"),
        scopes: text("scope")
            .map(|s| s.split_ascii_whitespace().map(str::to_string).collect())
            .unwrap_or_default(),
        exp,
        iat: number("iat"),
        jti: text("jti"),
        aud,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use serde_json::json;

    fn config() -> IntrospectionConfig {
        IntrospectionConfig {
            cluster: "idp".into(),
            authority: "idp.example".into(),
            path: "/introspect".into(),
            client_id: "gw".into(),
            client_secret: "s3cret".into(),
            timeout_ms: 2000,
            max_cache_seconds: 60,
            unavailable_is_503: true,
            issuer: Some("https://idp.example".into()),
        }
    }

    /// The endpoint answers 200 with `answer` for the token `key` at `now`.
    fn answered(
        config: &IntrospectionConfig,
        s: &mut MemoryStore,
        key: &str,
        answer: Value,
        now: u64,
    ) {
        accept(
            config,
            s,
            key,
            Some("200"),
            answer.to_string().as_bytes(),
            now,
        );
    }

    #[test]
    fn active_answers_are_cached_until_the_earlier_bound() {
        let mut s = MemoryStore::default();
        let answer = json!({"active": true, "iss": "https://idp.example", "sub": "u", "scope": "a b", "exp": 1030, "aud": "https://mcp/mcp"});
        answered(&config(), &mut s, "k", answer, 1000);
        match cached(&s, "k", 1010) {
            Some(Known::Active(t)) => {
                assert_eq!(t.scopes, vec!["a", "b"]);
                assert_eq!(t.audiences, vec!["https://mcp/mcp"]);
            }
            other => panic!("{other:?}"),
        }
        assert!(cached(&s, "k", 1030).is_none(), "not past exp");
    }

    #[test]
    fn inactive_foreign_and_failed_answers() {
        let mut s = MemoryStore::default();
        accept(
            &config(),
            &mut s,
            "a",
            Some("200"),
            br#"{"active":false}"#,
            1000,
        );
        assert_eq!(cached(&s, "a", 1001), Some(Known::Inactive));
        let foreign = json!({"active": true, "iss": "https://evil", "exp": 2000});
        accept(
            &config(),
            &mut s,
            "b",
            Some("200"),
            foreign.to_string().as_bytes(),
            1000,
        );
        assert_eq!(cached(&s, "b", 1001), Some(Known::Inactive));
        accept(&config(), &mut s, "c", Some("503"), b"", 1000);
        assert_eq!(cached(&s, "c", 1001), Some(Known::Unavailable));
        assert!(cached(&s, "c", 1010).is_none());
    }

    /// Regression (fuzz target `answers`): an answer whose `exp` is now was cached as active
    /// until now, so the request asked again and the filter answered 502.
    #[test]
    fn an_answer_expiring_now_is_inactive_and_found_in_the_cache() {
        let mut s = MemoryStore::default();
        answered(
            &config(),
            &mut s,
            "k",
            json!({"active": true, "sub": "u", "exp": 1000}),
            1000,
        );
        assert_eq!(cached(&s, "k", 1000), Some(Known::Inactive));
    }

    /// Regression (seed `config/introspection-no-cache` of the `config` fuzz target): with
    /// `max_cache_seconds: 0` an active answer was stale as soon as it was cached, so every
    /// opaque token got a 502.
    #[test]
    fn a_zero_cache_time_still_keeps_the_answer_for_its_request() {
        let mut s = MemoryStore::default();
        let no_cache = IntrospectionConfig {
            max_cache_seconds: 0,
            ..config()
        };
        for (key, answer) in [
            ("with-exp", json!({"active": true, "sub": "u", "exp": 2000})),
            ("without-exp", json!({"active": true, "sub": "u"})),
        ] {
            answered(&no_cache, &mut s, key, answer, 1000);
            assert!(
                matches!(cached(&s, key, 1000), Some(Known::Active(_))),
                "{key}"
            );
            assert!(cached(&s, key, 1001).is_none(), "{key}: kept one second");
        }
    }

    #[test]
    fn the_call_authenticates_and_never_logs_the_token() {
        let c = call(&config(), "opaque-123");
        assert!(c.headers.iter().any(|(n, v)| n == "authorization"
            && v == &format!("Basic {}", STANDARD.encode("gw:s3cret"))));
        assert_eq!(c.body, b"token=opaque-123&token_type_hint=access_token");
        assert!(!c.token_key.contains("opaque"));
        assert!(!looks_like_jwt("opaque-123"));
        assert!(looks_like_jwt("a.b.c"));
    }
}
