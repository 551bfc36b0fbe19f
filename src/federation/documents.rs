//! The provider's discovery document and key set, fetched on demand and kept in the store, so
//! every worker (and every sign-in) shares one copy.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{call_to, Answer, Call, Step};
use crate::config::upstream::{check_url, ProviderEndpoints, UpstreamConfig};
use crate::store::Store;

const DISCOVERY_KEY: &str = "mcp-oauth/upstream/discovery";
const KEYS_KEY: &str = "mcp-oauth/upstream/jwks";
/// Documents are fetched again after an hour.
const FRESH_SECONDS: u64 = 3600;
/// When a refetch fails, a document up to a day old is used for another minute at a time,
/// so a provider's short outage does not stop sign-ins whose endpoints we already know.
const STALE_LIMIT_SECONDS: u64 = 86_400;
const STALE_GRACE_SECONDS: u64 = 60;
/// An unknown `kid` refetches the keys at most this often.
pub const KEYS_REFETCH_SECONDS: u64 = 60;
/// Larger documents are refused.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;

#[derive(Serialize, Deserialize)]
#[serde(remote = "Self")]
struct Cached {
    fetched_at: u64,
    /// When the document counts as fresh until (later than `fetched_at + FRESH_SECONDS` after
    /// a failed refetch).
    fresh_until: u64,
    doc: Value,
}
json_object!(Cached, Serialize);

fn load(store: &dyn Store, key: &str) -> Option<Cached> {
    let (bytes, _) = store.get(key)?;
    serde_json::from_slice(&bytes).ok()
}

fn save(store: &mut dyn Store, key: &str, cached: &Cached) {
    if let Ok(bytes) = serde_json::to_vec(cached) {
        let _ = store.set(key, &bytes, None);
    }
}

/// Why the endpoints are not at hand.
#[derive(Debug)]
pub enum Missing {
    /// Fetch the discovery document first.
    Fetch(Call),
    /// The provider's configuration cannot be used (the reason is for the log).
    Broken(String),
}

/// The provider's endpoints: from the config, or from a fresh discovery document.
pub fn endpoints(
    config: &UpstreamConfig,
    store: &dyn Store,
    now: u64,
) -> Result<ProviderEndpoints, Missing> {
    if let Some(endpoints) = &config.endpoints {
        return Ok(endpoints.clone());
    }
    let Some(url) = config.discovery_url() else {
        return Err(Missing::Broken("no issuer to discover".into()));
    };
    match load(store, DISCOVERY_KEY) {
        Some(cached) if now < cached.fresh_until => {
            endpoints_from(config, &cached.doc).map_err(Missing::Broken)
        }
        _ => Err(
            match call_to(config, "GET", &url, vec![], None, Step::Discovery) {
                Ok(call) => Missing::Fetch(call),
                Err(why) => Missing::Broken(why),
            },
        ),
    }
}

/// Reads and checks the endpoints of a discovery document (OIDC Discovery 1.0 §3, §4.3).
fn endpoints_from(config: &UpstreamConfig, doc: &Value) -> Result<ProviderEndpoints, String> {
    let field = |name: &str| doc.get(name).and_then(Value::as_str);
    if field("issuer") != config.issuer.as_deref() {
        return Err("the discovery document names another issuer".into());
    }
    let url = |name: &str| -> Result<Option<String>, String> {
        match field(name) {
            Some(value) => check_url(value)
                .map(|_| Some(value.to_string()))
                .map_err(|e| format!("{name} {e}")),
            None => Ok(None),
        }
    };
    let required = |name: &str| -> Result<String, String> {
        url(name)?.ok_or_else(|| format!("the discovery document has no {name}"))
    };
    let endpoints = ProviderEndpoints {
        authorization: required("authorization_endpoint")?,
        token: required("token_endpoint")?,
        userinfo: url("userinfo_endpoint")?,
        jwks: Some(required("jwks_uri")?),
    };
    if config.use_userinfo && endpoints.userinfo.is_none() {
        return Err("the discovery document has no userinfo_endpoint".into());
    }
    Ok(endpoints)
}

/// Takes a fetched discovery document. True when usable endpoints are now cached (the request
/// can be handled again); false when sign-in cannot go on.
pub fn accept_discovery(
    config: &UpstreamConfig,
    store: &mut dyn Store,
    answer: Answer,
    now: u64,
) -> bool {
    let doc = answer
        .ok()
        .then(|| answer.json_object())
        .flatten()
        .map(Value::Object);
    match doc {
        Some(doc) if answer.body.len() <= MAX_DOCUMENT_BYTES => {
            if let Err(why) = endpoints_from(config, &doc) {
                log::warn!("mcp-oauth: upstream discovery document refused: {why}");
                return false;
            }
            save(
                store,
                DISCOVERY_KEY,
                &Cached {
                    fetched_at: now,
                    fresh_until: now + FRESH_SECONDS,
                    doc,
                },
            );
            true
        }
        _ => {
            log::warn!(
                "mcp-oauth: upstream discovery fetch failed (status {:?})",
                answer.status
            );
            extend_stale(store, DISCOVERY_KEY, now)
        }
    }
}

/// After a failed refetch: keeps using a document that is not too old, for a short while.
fn extend_stale(store: &mut dyn Store, key: &str, now: u64) -> bool {
    match load(store, key) {
        Some(mut cached) if now.saturating_sub(cached.fetched_at) < STALE_LIMIT_SECONDS => {
            cached.fresh_until = now + STALE_GRACE_SECONDS;
            save(store, key, &cached);
            true
        }
        _ => false,
    }
}

/// The cached key set and when it was fetched, if fresh.
pub fn keys(store: &dyn Store, now: u64) -> Option<(Value, u64)> {
    load(store, KEYS_KEY)
        .filter(|c| now < c.fresh_until)
        .map(|c| (c.doc, c.fetched_at))
}

/// Takes a fetched key set; false if it is not one (the cached set, if any, stays).
pub fn accept_keys(store: &mut dyn Store, answer: Answer, now: u64) -> bool {
    let doc = answer
        .ok()
        .then(|| answer.json_object())
        .flatten()
        .filter(|m| m.get("keys").is_some_and(Value::is_array));
    match doc {
        Some(doc) if answer.body.len() <= MAX_DOCUMENT_BYTES => {
            save(
                store,
                KEYS_KEY,
                &Cached {
                    fetched_at: now,
                    fresh_until: now + FRESH_SECONDS,
                    doc: Value::Object(doc),
                },
            );
            true
        }
        _ => {
            log::warn!(
                "mcp-oauth: upstream key set fetch failed (status {:?})",
                answer.status
            );
            extend_stale(store, KEYS_KEY, now)
        }
    }
}
