//! Fetching remote JWK Sets through an Envoy cluster: at start, every
//! `refresh_interval_seconds`, and (rate-limited) when a token names an unknown `kid`.
//! A failed fetch keeps the last good keys and retries with a growing delay. One worker's VM
//! fetches and shares the document with the others (`jwt::shared_jwks`).

use std::time::Duration;

use proxy_wasm::hostcalls;

use crate::config::RemoteJwks;
use crate::jwt::shared_jwks::{self, Plan, SharedDoc};
use crate::jwt::{Alg, KeySet, KeySource};
use crate::store::Store;

/// The largest JWKS document accepted.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Retry delays after failures: 1 s, 2 s, 4 s … capped here (or at the refresh interval).
const MAX_RETRY_MS: u64 = 30_000;
/// While another worker fetches, how soon to look for its document again.
const WAIT_FOR_OTHER_MS: u64 = 100;

pub struct JwksFetcher {
    pub remote: RemoteJwks,
    in_flight: Option<u32>,
    /// When the running fetch started; a fetch with no answer long after its timeout is lost.
    in_flight_since_ms: u64,
    next_fetch_ms: u64,
    last_started_ms: Option<u64>,
    /// When the document in use was fetched (by this VM or another worker's).
    held_ms: Option<u64>,
    /// When a token with an unknown `kid` asked for a newer document than the one held.
    refetch_asked_ms: Option<u64>,
    failures: u32,
}

impl JwksFetcher {
    pub fn new(remote: RemoteJwks) -> Self {
        JwksFetcher {
            remote,
            in_flight: None,
            in_flight_since_ms: 0,
            next_fetch_ms: 0,
            last_started_ms: None,
            held_ms: None,
            refetch_asked_ms: None,
            failures: 0,
        }
    }

    /// True when the root should start a fetch now. A fetch that never answered (Envoy drops
    /// the answer if its context went away) is forgotten after its timeout plus a margin.
    pub fn is_due(&mut self, now_ms: u64) -> bool {
        let lost_after = self.remote.timeout_ms + 2000;
        if self.in_flight.is_some() && now_ms.saturating_sub(self.in_flight_since_ms) > lost_after {
            log::warn!(
                "mcp-oauth: JWKS fetch from {} got no answer; retrying",
                self.remote.uri
            );
            self.in_flight = None;
        }
        self.in_flight.is_none() && now_ms >= self.next_fetch_ms
    }

    /// Asks the root to fetch at its next tick (a token named an unknown `kid`). Fetches are
    /// only ever dispatched by the root context, whose callback receives the answer.
    pub fn request_refetch(&mut self, now_ms: u64) -> bool {
        if self.in_flight.is_some() {
            return true;
        }
        if !self.may_refetch(now_ms) {
            return false;
        }
        self.next_fetch_ms = self.next_fetch_ms.min(now_ms);
        self.refetch_asked_ms = self.refetch_asked_ms.or(Some(now_ms));
        true
    }

    pub fn in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    pub fn owns(&self, token: u32) -> bool {
        self.in_flight == Some(token)
    }

    /// Whether a token with an unknown `kid` may trigger a fetch now: not within the
    /// minimum interval of this VM's last fetch, nor of the document it holds (which another
    /// worker may have fetched just now).
    fn may_refetch(&self, now_ms: u64) -> bool {
        let last = self.last_started_ms.max(self.held_ms);
        self.in_flight.is_some()
            || last.is_none_or(|t| {
                now_ms.saturating_sub(t) >= self.remote.min_refetch_interval_seconds * 1000
            })
    }

    /// What to do now that the keys are due: fetch, adopt another worker's newer document,
    /// or wait for the worker that is fetching.
    pub fn plan(&mut self, now_ms: u64, store: &mut dyn Store) -> Plan {
        let hold = self.remote.timeout_ms + 2000;
        let newer_than = self
            .held_ms
            .map(|held| held.max(self.refetch_asked_ms.unwrap_or(0)));
        let plan = shared_jwks::plan(store, &self.remote.uri, now_ms, newer_than, hold);
        if plan == Plan::Wait {
            self.next_fetch_ms = now_ms + WAIT_FOR_OTHER_MS;
        }
        plan
    }

    /// Takes another worker's document: its keys, or why there are none (then this VM
    /// fetches itself at its next tick).
    pub fn adopt(
        &mut self,
        doc: SharedDoc,
        now_ms: u64,
        allowed: &[Alg],
    ) -> Result<KeySet, String> {
        self.held_ms = Some(doc.fetched_ms);
        self.refetch_asked_ms = None;
        let result = parse_answer(Some("200"), Ok(&doc.body), allowed);
        self.next_fetch_ms = match result {
            Ok(_) => doc.fetched_ms + self.remote.refresh_interval_seconds * 1000,
            Err(_) => now_ms,
        };
        result
    }

    /// Starts a fetch unless one is running. Returns false if Envoy refused the call
    /// (for example an unknown cluster); the next tick retries.
    pub fn start(&mut self, now_ms: u64) -> bool {
        if self.in_flight.is_some() {
            return true;
        }
        let headers = vec![
            (":method", "GET"),
            (":path", self.remote.path.as_str()),
            (":authority", self.remote.authority.as_str()),
            ("accept", "application/json, application/jwk-set+json"),
            ("user-agent", "mcp-oauth-wasm"),
        ];
        self.last_started_ms = Some(now_ms);
        let timeout = Duration::from_millis(self.remote.timeout_ms);
        match hostcalls::dispatch_http_call(&self.remote.cluster, headers, None, vec![], timeout) {
            Ok(token) => {
                self.in_flight = Some(token);
                self.in_flight_since_ms = now_ms;
                true
            }
            Err(status) => {
                log::warn!(
                    "mcp-oauth: cannot fetch JWKS {} through cluster {}: {status:?}",
                    self.remote.uri,
                    self.remote.cluster
                );
                self.schedule_retry(now_ms);
                shared_jwks::release(
                    &mut crate::filter::shared_store::SharedStore,
                    &self.remote.uri,
                );
                false
            }
        }
    }

    /// Handles the answer to the fetch: the parsed keys, or why there are none.
    /// A good document is shared with the other workers; after a failure the lease is given
    /// back, and each VM retries on its own schedule.
    pub fn finish(
        &mut self,
        now_ms: u64,
        status: Option<&str>,
        body: Result<Vec<u8>, String>,
        allowed: &[Alg],
        store: &mut dyn Store,
    ) -> Result<KeySet, String> {
        self.in_flight = None;
        self.refetch_asked_ms = None;
        let body = body.as_deref().map_err(String::as_str);
        let result = parse_answer(status, body, allowed);
        match (&result, body) {
            (Ok(_), Ok(body)) => {
                self.failures = 0;
                self.held_ms = Some(now_ms);
                self.next_fetch_ms = now_ms + self.remote.refresh_interval_seconds * 1000;
                shared_jwks::publish(store, &self.remote.uri, now_ms, body);
            }
            _ => {
                self.schedule_retry(now_ms);
                shared_jwks::release(store, &self.remote.uri);
            }
        }
        result
    }

    fn schedule_retry(&mut self, now_ms: u64) {
        self.failures = self.failures.saturating_add(1);
        let backoff = 1000u64.saturating_mul(1 << self.failures.min(10).saturating_sub(1));
        let cap = MAX_RETRY_MS.min(self.remote.refresh_interval_seconds * 1000);
        self.next_fetch_ms = now_ms + backoff.min(cap);
    }
}

fn parse_answer(
    status: Option<&str>,
    body: Result<&[u8], &str>,
    allowed: &[Alg],
) -> Result<KeySet, String> {
    match status {
        Some("200") => {}
        Some(other) => return Err(format!("HTTP status {other}")),
        None => return Err("no response".into()),
    }
    let body = body.map_err(str::to_string)?;
    let doc: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let (set, warnings) = KeySet::from_jwks(&doc, allowed, KeySource::Remote)?;
    for warning in warnings {
        log::info!("mcp-oauth: JWKS {warning}");
    }
    Ok(set)
}
