//! etcd as the authorization server's shared state across replicas (docs/state-store.md).
//! Host-independent like the rest of the core: it builds the calls (JSON gateway over
//! `dispatch_http_call`) and reads their answers; the glue only makes them.
//!
//! - [`work`]: code redemption, refresh rotation and revocation, written synchronously (the
//!   request waits for etcd, bounded by the timeout and two retries).
//! - [`snapshot`]: the revocations, copied into this Envoy's shared data by polling changes
//!   since the last revision, so token validation never waits for etcd; [`watch`]: the same
//!   revocations pushed over a gRPC Watch stream, when a gRPC cluster is configured.

pub mod api;
pub mod keys;
pub mod snapshot;
pub mod watch;
pub mod work;

use crate::config::state_store::EtcdConfig;
use crate::store::Store;

/// A call to make through the etcd cluster, and the request's state to resume with.
#[derive(Debug)]
pub struct EtcdCall {
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout_ms: u64,
    pub pending: work::Pending,
}

/// The headers of a JSON-gateway call (with the etcd auth token, when there is one).
pub fn headers(cfg: &EtcdConfig, store: &dyn Store, path: &str) -> Vec<(String, String)> {
    let mut headers = vec![
        (":method".to_string(), "POST".to_string()),
        (":path".to_string(), path.to_string()),
        (":authority".to_string(), cfg.authority.clone()),
        ("content-type".to_string(), "application/json".to_string()),
    ];
    if cfg.credentials.is_some() {
        if let Some(token) = keys::auth_token(store) {
            headers.push(("authorization".to_string(), token));
        }
    }
    headers
}

fn call(
    cfg: &EtcdConfig,
    store: &dyn Store,
    request: api::Call,
    pending: work::Pending,
) -> EtcdCall {
    EtcdCall {
        cluster: cfg.cluster.clone(),
        headers: headers(cfg, store, request.path),
        body: request.body,
        timeout_ms: cfg.timeout_ms,
        pending,
    }
}

#[cfg(test)]
mod tests;
