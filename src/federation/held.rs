//! The signed-in person's tokens at the upstream provider, held by the gateway for the backend
//! (routes with `upstream_token`). They never reach the MCP client in the clear: they travel
//! sealed inside our code and refresh token, and live sealed in the store under the grant's id.
//! Before the upstream access token expires, one request refreshes it (a lease keeps the others
//! from racing a provider that rotates refresh tokens); if the provider refuses, the grant is
//! marked dead and the client must sign in again.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::documents::{self, Missing};
use super::{token_request, Answer, Call, Step};
use crate::config::authz::AuthServerConfig;
use crate::config::upstream::UpstreamConfig;
use crate::seal::Purpose;
use crate::store::{Store, StoreError};

/// Refresh when less than this much (or a quarter of the token's life) is left.
const REFRESH_BEFORE_SECONDS: u64 = 60;

/// The upstream tokens of one grant.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(remote = "Self")]
pub struct HeldTokens {
    pub access_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// `None`: the provider gave no lifetime (GitHub's classic tokens do not expire).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    pub obtained_at: u64,
    /// Counts refreshes, so the newest copy wins.
    #[serde(default)]
    pub generation: u64,
}
json_object!(HeldTokens, Serialize);

impl std::fmt::Debug for HeldTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HeldTokens {{ generation: {}, .. }}", self.generation)
    }
}

impl HeldTokens {
    /// Reads a token endpoint answer (RFC 6749 §5.1), `None` without an access token that can
    /// go into a header; `previous` supplies the refresh token when a refresh answer does not
    /// rotate it.
    pub fn from_answer(
        answer: &serde_json::Map<String, Value>,
        now: u64,
        previous: Option<&HeldTokens>,
    ) -> Option<HeldTokens> {
        let access_token = super::header_safe_token(answer)?.to_string();
        let expires_in = answer.get("expires_in").and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        });
        Some(HeldTokens {
            access_token,
            refresh_token: answer
                .get("refresh_token")
                .and_then(Value::as_str)
                .map(str::to_string)
                .or_else(|| previous.and_then(|p| p.refresh_token.clone())),
            expires_at: expires_in.map(|s| now.saturating_add(s)),
            obtained_at: now,
            generation: previous.map_or(0, |p| p.generation + 1),
        })
    }

    /// Tokens obtained this second are never refreshed at once: the provider just gave them,
    /// and a provider answering `expires_in: 0` would otherwise be asked again and again for
    /// one request (until the filter gave up on it with a 502).
    fn needs_refresh(&self, now: u64) -> bool {
        if now <= self.obtained_at {
            return false;
        }
        match self.expires_at {
            None => false,
            Some(exp) => {
                let life = exp.saturating_sub(self.obtained_at);
                let margin = REFRESH_BEFORE_SECONDS.min(life / 4);
                now.saturating_add(margin) >= exp
            }
        }
    }

    fn expired(&self, now: u64) -> bool {
        self.expires_at.is_some_and(|exp| now >= exp)
    }
}

pub fn seal(config: &AuthServerConfig, tokens: &HeldTokens) -> Option<String> {
    config.sealer.seal_json(Purpose::UpstreamTokens, tokens)
}

pub fn open(config: &AuthServerConfig, sealed: &str) -> Option<HeldTokens> {
    config.sealer.open_json(Purpose::UpstreamTokens, sealed)
}

/// What the store keeps per grant.
#[derive(Serialize, Deserialize, Default)]
#[serde(remote = "Self")]
struct Record {
    tokens: Option<HeldTokens>,
    /// The provider refused a refresh: the person must sign in again.
    #[serde(default)]
    dead: bool,
    /// A refresh is under way until then.
    #[serde(default)]
    refreshing_until: u64,
}
json_object!(Record, Serialize);

fn key(grant: &str) -> String {
    format!("mcp-oauth/upstream-grant/{grant}")
}

fn load(store: &dyn Store, config: &AuthServerConfig, grant: &str) -> Option<(Record, u32)> {
    let (bytes, cas) = store.get(&key(grant))?;
    let text = std::str::from_utf8(&bytes).ok()?;
    let record = config.sealer.open_json(Purpose::UpstreamTokens, text)?;
    Some((record, cas))
}

fn save(
    store: &mut dyn Store,
    config: &AuthServerConfig,
    grant: &str,
    record: &Record,
    cas: Option<u32>,
) -> Result<(), StoreError> {
    let sealed = config
        .sealer
        .seal_json(Purpose::UpstreamTokens, record)
        .ok_or(StoreError::Unavailable)?;
    store.set(&key(grant), sealed.as_bytes(), cas)
}

/// The grant's provider refused it.
#[derive(Debug, PartialEq, Eq)]
pub struct Dead;

/// The newest tokens of a grant (the store's, or `carried` in our refresh token if newer, as
/// after a restart), written back to the store. `Err(Dead)` when the provider refused them.
pub fn current(
    store: &mut dyn Store,
    config: &AuthServerConfig,
    grant: &str,
    carried: HeldTokens,
) -> Result<HeldTokens, Dead> {
    let (record, cas) = match load(store, config, grant) {
        Some((record, cas)) => (record, Some(cas)),
        None => (Record::default(), None),
    };
    if record.dead {
        return Err(Dead);
    }
    match record.tokens {
        Some(stored) if stored.generation >= carried.generation => Ok(stored),
        _ => {
            let fresh = Record {
                tokens: Some(carried.clone()),
                ..Record::default()
            };
            let _ = save(store, config, grant, &fresh, cas);
            Ok(carried)
        }
    }
}

/// What to do for a backend request of `grant`.
#[derive(Debug)]
pub enum Use {
    /// Put this token on the request.
    Token(String),
    /// Refresh first: make the call, then `accept_refresh`.
    Call(Call),
    /// Another request is refreshing an expired token: retry in a moment.
    Busy,
    /// Nothing usable: the person must sign in again.
    SignInAgain,
    /// The provider's endpoints are unknown and cannot be fetched.
    Unavailable,
}

pub fn for_request(
    store: &mut dyn Store,
    config: &AuthServerConfig,
    upstream: &UpstreamConfig,
    grant: &str,
    now: u64,
) -> Use {
    let Some((mut record, cas)) = load(store, config, grant) else {
        return Use::SignInAgain;
    };
    let Some(tokens) = record.tokens.clone().filter(|_| !record.dead) else {
        return Use::SignInAgain;
    };
    if !tokens.needs_refresh(now) {
        return Use::Token(tokens.access_token);
    }
    let Some(refresh_token) = tokens.refresh_token.clone() else {
        return if tokens.expired(now) {
            Use::SignInAgain
        } else {
            Use::Token(tokens.access_token)
        };
    };
    if record.refreshing_until > now {
        return if tokens.expired(now) {
            Use::Busy
        } else {
            Use::Token(tokens.access_token)
        };
    }
    let endpoints = match documents::endpoints(upstream, &*store, now) {
        Ok(endpoints) => endpoints,
        Err(Missing::Fetch(call)) => return Use::Call(call),
        Err(Missing::Broken(_)) => return Use::Unavailable,
    };
    // Take the lease; if another worker took it first, use what is there.
    record.refreshing_until = now + upstream.timeout_ms / 1000 + 1;
    if save(store, config, grant, &record, Some(cas)).is_err() {
        return if tokens.expired(now) {
            Use::Busy
        } else {
            Use::Token(tokens.access_token)
        };
    }
    let fields = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token.as_str()),
    ];
    let step = Step::Refresh {
        grant: grant.to_string(),
    };
    match token_request(upstream, &endpoints.token, fields, step) {
        Ok(call) => Use::Call(call),
        Err(_) => Use::Unavailable,
    }
}

/// The outcome of an upstream refresh.
#[derive(Debug, PartialEq, Eq)]
pub enum Refreshed {
    /// New tokens are stored: handle the request again.
    Done,
    /// The provider refused: the person must sign in again.
    Refused,
    /// The provider could not be reached: the old token stays, the lease is released.
    Failed,
}

pub fn accept_refresh(
    store: &mut dyn Store,
    config: &AuthServerConfig,
    grant: &str,
    answer: Answer,
    now: u64,
) -> Refreshed {
    let Some((mut record, cas)) = load(store, config, grant) else {
        return Refreshed::Refused;
    };
    let previous = record.tokens.clone();
    let parsed = answer
        .json_object()
        .filter(|_| answer.ok())
        .and_then(|o| HeldTokens::from_answer(&o, now, previous.as_ref()));
    record.refreshing_until = 0;
    let outcome = match (parsed, answer.status) {
        (Some(tokens), _) => {
            record.tokens = Some(tokens);
            Refreshed::Done
        }
        // RFC 6749 §5.2: a 400/401 is the provider's "no" (invalid_grant and the like).
        (None, Some(400 | 401)) => {
            record.dead = true;
            Refreshed::Refused
        }
        (None, _) => Refreshed::Failed,
    };
    log::info!(
        "mcp-oauth: upstream token refresh: {outcome:?} (status {:?})",
        answer.status
    );
    match save(store, config, grant, &record, Some(cas)) {
        Ok(()) => outcome,
        // Someone else wrote meanwhile: handle the request again with what is there.
        Err(_) => Refreshed::Done,
    }
}
