//! The revocation snapshot: every replica copies etcd's `revoked/` keys into its own shared
//! data, where token validation reads them (no etcd round trip per request). Each poll asks for
//! the keys changed since the last revision seen (`min_mod_revision`), so it costs one small
//! range read; revocations are only ever added (they leave etcd with their lease, when the
//! token would have expired anyway), so that is all the snapshot needs.
//!
//! Every Wasm VM ticks; one poll per Envoy and interval is made, claimed with a
//! compare-and-swap on the due time in shared data.

use super::api::{self, Failure, KeyValue};
use super::keys;
use crate::authz::state;
use crate::config::state_store::EtcdConfig;
use crate::store::{update, Store};

const STATE: &str = "mcp-oauth:etcd:snapshot";
const POLL_DUE: &str = "mcp-oauth:etcd:poll-due";
const AUTH_DUE: &str = "mcp-oauth:etcd:auth-due";
/// Keys per poll; a poll that gets this many asks again at once.
pub const PAGE: u64 = 500;

/// A call the root context makes on its own (not for a request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackgroundCall {
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout_ms: u64,
}

/// The snapshot's state: the revision it is complete up to, and when etcd last answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SnapshotState {
    pub revision: i64,
    pub last_ok_ms: u64,
}

pub fn state_of(store: &dyn Store) -> SnapshotState {
    let Some((value, _)) = store.get(STATE) else {
        return SnapshotState::default();
    };
    let text = String::from_utf8_lossy(&value);
    let mut parts = text.split(' ');
    SnapshotState {
        revision: parts.next().and_then(|r| r.parse().ok()).unwrap_or(0),
        last_ok_ms: parts.next().and_then(|r| r.parse().ok()).unwrap_or(0),
    }
}

/// Takes the due time at `key` if it has come, and sets the next one. Only one VM of the
/// Envoy wins (compare-and-swap); a lost race just skips this tick.
fn claim(store: &mut dyn Store, key: &str, now_ms: u64, next_ms: u64) -> bool {
    let current = store.get(key);
    let due = current
        .as_ref()
        .and_then(|(v, _)| String::from_utf8_lossy(v).parse::<u64>().ok())
        .unwrap_or(0);
    if due > now_ms {
        return false;
    }
    store
        .set(
            key,
            next_ms.to_string().as_bytes(),
            current.map(|(_, cas)| cas),
        )
        .is_ok()
}

/// The poll to make now, if it is due and this VM claimed it.
pub fn poll_due(cfg: &EtcdConfig, store: &mut dyn Store, now_ms: u64) -> Option<BackgroundCall> {
    if cfg.credentials.is_some() && keys::auth_token(store).is_none() {
        return None;
    }
    if !claim(store, POLL_DUE, now_ms, now_ms + cfg.poll_interval_ms) {
        return None;
    }
    let request = api::range_since(&keys::revoked(cfg), state_of(store).revision, PAGE);
    Some(background(cfg, store, request))
}

fn background(cfg: &EtcdConfig, store: &dyn Store, request: api::Call) -> BackgroundCall {
    BackgroundCall {
        cluster: cfg.cluster.clone(),
        headers: super::headers(cfg, store, request.path),
        body: request.body,
        timeout_ms: cfg.timeout_ms,
    }
}

/// Gives a claimed poll (or authentication) back when its call could not even be made, so the
/// next tick of any VM tries again.
pub fn release(store: &mut dyn Store, poll: bool) {
    let _ = store.set(if poll { POLL_DUE } else { AUTH_DUE }, b"0", None);
}

/// Copies a poll's answer into shared data. `Ok(count)` of revocations applied.
pub fn apply(
    cfg: &EtcdConfig,
    store: &mut dyn Store,
    status: Option<&str>,
    body: &[u8],
    now_ms: u64,
) -> Result<usize, String> {
    let changes = match api::answer(status, body) {
        Ok(v) => api::parse_range(&v),
        Err(failure) => {
            if failure == Failure::AuthFailed {
                keys::forget_auth_token(store);
            }
            return Err(super::work::describe(&failure));
        }
    };
    let applied = apply_revocations(cfg, store, &changes.kvs);
    // With more keys than a page, continue from the last one's revision (read again: a
    // transaction may have written several keys at that revision).
    let revision = match (changes.more, changes.kvs.last()) {
        (true, Some(last)) => last.mod_revision - 1,
        _ => changes.revision,
    };
    let _ = update(store, STATE, |current| {
        let before = current.map(|v| {
            let text = String::from_utf8_lossy(v);
            text.split(' ')
                .next()
                .and_then(|r| r.parse::<i64>().ok())
                .unwrap_or(0)
        });
        let revision = revision.max(before.unwrap_or(0));
        (Some(format!("{revision} {now_ms}").into_bytes()), ())
    });
    if changes.more {
        let _ = store.set(POLL_DUE, b"0", None);
    }
    Ok(applied)
}

/// Copies revoked access tokens and families (keys under `revoked/`) into shared data, where
/// validation and introspection read them. Returns how many there were.
pub fn apply_revocations(cfg: &EtcdConfig, store: &mut dyn Store, kvs: &[KeyValue]) -> usize {
    let revoked = keys::revoked(cfg);
    let mut applied = 0;
    for kv in kvs {
        let Some(rest) = kv.key.strip_prefix(&revoked) else {
            continue;
        };
        let exp = kv.value.parse::<u64>().unwrap_or(u64::MAX);
        if let Some(jti) = rest.strip_prefix("at/") {
            let _ = state::revoke_access_token(store, jti, exp);
            applied += 1;
        } else if let Some(family) = rest.strip_prefix("rt/") {
            state::mark_family_revoked(store, family, exp);
            applied += 1;
        }
    }
    applied
}

/// How current the snapshot is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Never loaded since this Envoy started.
    Starting,
    Fresh,
    /// etcd has not answered a poll for longer than `max_snapshot_age_ms`.
    Stale {
        age_ms: u64,
    },
}

pub fn health(cfg: &EtcdConfig, store: &dyn Store, now_ms: u64) -> Health {
    let state = state_of(store);
    if state.last_ok_ms == 0 {
        return Health::Starting;
    }
    let age_ms = now_ms.saturating_sub(state.last_ok_ms);
    if age_ms > cfg.max_snapshot_age_ms {
        Health::Stale { age_ms }
    } else {
        Health::Fresh
    }
}

/// With etcd auth: the authenticate call when no token is held (at most one per second).
pub fn authenticate_due(
    cfg: &EtcdConfig,
    store: &mut dyn Store,
    now_ms: u64,
) -> Option<BackgroundCall> {
    let (user, password) = cfg.credentials.as_ref()?;
    if keys::auth_token(store).is_some() || !claim(store, AUTH_DUE, now_ms, now_ms + 1000) {
        return None;
    }
    Some(background(cfg, store, api::authenticate(user, password)))
}

/// Keeps the token an authenticate call gave.
pub fn accept_authentication(
    store: &mut dyn Store,
    status: Option<&str>,
    body: &[u8],
) -> Result<(), String> {
    let answer = api::answer(status, body).map_err(|f| super::work::describe(&f))?;
    let token = api::parse_token(&answer).ok_or("no token in the answer")?;
    keys::set_auth_token(store, &token);
    Ok(())
}
