//! The root context's etcd work: on the timer, the VM that claims it polls etcd for new
//! revocations (and, with etcd auth, gets a token); the answer is copied into shared data by the
//! core (`etcd::snapshot`). Every VM of the Envoy then sees it. With a `watch_cluster`, each VM
//! also keeps a gRPC Watch stream open on the revocations (`etcd::watch`), which brings them in
//! milliseconds; the poll goes on beside it.

use std::time::Duration;

use proxy_wasm::hostcalls;

use crate::config::state_store::EtcdConfig;
use crate::etcd::snapshot::{self, BackgroundCall};
use crate::etcd::{keys, watch};
use crate::store::Store;

use super::shared_store::SharedStore;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Poll,
    Authenticate,
}

pub struct EtcdPoller {
    pub config: EtcdConfig,
    in_flight: Option<(u32, Kind, u64)>,
    /// The last poll failed (so a recovery is logged once, and a failure once).
    failing: bool,
    /// The open Watch stream, and when to try to open one again after it closed.
    watch: Option<u32>,
    watch_retry_ms: u64,
    first_tick_ms: Option<u64>,
}

/// Wait before opening a Watch stream again after one closed or failed to open.
const WATCH_RETRY_MS: u64 = 1000;

impl EtcdPoller {
    pub fn new(config: EtcdConfig) -> Self {
        EtcdPoller {
            config,
            in_flight: None,
            failing: false,
            watch: None,
            watch_retry_ms: 0,
            first_tick_ms: None,
        }
    }

    pub fn owns(&self, token: u32) -> bool {
        matches!(self.in_flight, Some((t, _, _)) if t == token)
    }

    pub fn tick(&mut self, now_ms: u64) {
        self.open_watch(now_ms);
        if let Some((_, _, since)) = self.in_flight {
            if now_ms.saturating_sub(since) <= self.config.timeout_ms + 1000 {
                return;
            }
            self.in_flight = None;
        }
        let cfg = &self.config;
        let (call, kind) = match snapshot::authenticate_due(cfg, &mut SharedStore, now_ms) {
            Some(call) => (call, Kind::Authenticate),
            None => match snapshot::poll_due(cfg, &mut SharedStore, now_ms) {
                Some(call) => (call, Kind::Poll),
                None => return,
            },
        };
        // The first ticks can come before Envoy's clusters are ready: no warning for those.
        let quiet = now_ms.saturating_sub(*self.first_tick_ms.get_or_insert(now_ms)) < 5000;
        match dispatch(&call, quiet) {
            Some(token) => self.in_flight = Some((token, kind, now_ms)),
            None => snapshot::release(&mut SharedStore, kind == Kind::Poll),
        }
    }

    pub fn finish(&mut self, status: Option<&str>, body: &[u8], now_ms: u64) {
        let Some((_, kind, _)) = self.in_flight.take() else {
            return;
        };
        let result = match kind {
            Kind::Poll => snapshot::apply(&self.config, &mut SharedStore, status, body, now_ms)
                .map(|n| {
                    if n > 0 {
                        log::debug!("mcp-oauth: {n} revocation(s) from etcd");
                    }
                }),
            Kind::Authenticate => snapshot::accept_authentication(&mut SharedStore, status, body),
        };
        match (result, self.failing) {
            (Ok(()), true) => {
                log::info!("mcp-oauth: etcd answers again");
                self.failing = false;
            }
            (Err(why), false) => {
                log::warn!(
                    "mcp-oauth: etcd poll through cluster {} failed: {why}; token validation goes on with the last revocation snapshot",
                    self.config.cluster
                );
                self.failing = true;
            }
            _ => {}
        }
    }
}

impl EtcdPoller {
    pub fn owns_stream(&self, token: u32) -> bool {
        self.watch == Some(token)
    }

    fn open_watch(&mut self, now_ms: u64) {
        let Some(cluster) = &self.config.watch_cluster else {
            return;
        };
        if self.watch.is_some() || now_ms < self.watch_retry_ms {
            return;
        }
        self.watch_retry_ms = now_ms + WATCH_RETRY_MS;
        let token = keys::auth_token(&SharedStore);
        if self.config.credentials.is_some() && token.is_none() {
            return;
        }
        // etcd reads its auth token from the gRPC metadata `token`.
        let metadata: Vec<(&str, &[u8])> = token
            .as_deref()
            .map(|t| vec![("token", t.as_bytes())])
            .unwrap_or_default();
        let start = snapshot::state_of(&SharedStore as &dyn Store).revision + 1;
        let request = watch::create_request(&self.config, start);
        match hostcalls::open_grpc_stream(cluster, "etcdserverpb.Watch", "Watch", metadata) {
            Ok(stream) => {
                match hostcalls::send_grpc_stream_message(stream, Some(&request), false) {
                    Ok(()) => {
                        log::debug!("mcp-oauth: etcd watch opened from revision {start}");
                        self.watch = Some(stream);
                    }
                    Err(status) => {
                        log::warn!("mcp-oauth: cannot start the etcd watch: {status:?}");
                        let _ = hostcalls::close_grpc_stream(stream);
                    }
                }
            }
            Err(status) => {
                log::warn!(
                    "mcp-oauth: cannot open an etcd watch through cluster {cluster}: {status:?}"
                )
            }
        }
    }

    /// A message of the Watch stream: revocations go into shared data at once.
    pub fn watch_message(&mut self, message: &[u8], now_ms: u64) {
        match watch::parse(message) {
            Some(m) if m.canceled => {
                log::info!(
                    "mcp-oauth: etcd ended the watch (compacted at {}); polling fills the gap",
                    m.compact_revision
                );
                if let Some(stream) = self.watch.take() {
                    let _ = hostcalls::close_grpc_stream(stream);
                }
                self.watch_retry_ms = now_ms + WATCH_RETRY_MS;
            }
            Some(m) => {
                if m.created {
                    log::info!("mcp-oauth: etcd watch on revocations is live");
                }
                snapshot::apply_revocations(&self.config, &mut SharedStore, &m.events);
            }
            None => log::warn!("mcp-oauth: unreadable etcd watch message ignored"),
        }
    }

    pub fn watch_closed(&mut self, status: u32, now_ms: u64) {
        self.watch = None;
        self.watch_retry_ms = now_ms + WATCH_RETRY_MS;
        log::info!(
            "mcp-oauth: etcd watch closed (gRPC status {status}); reopening, polling meanwhile"
        );
    }
}

fn dispatch(call: &BackgroundCall, quiet: bool) -> Option<u32> {
    let refs: Vec<(&str, &str)> = call
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    match hostcalls::dispatch_http_call(
        &call.cluster,
        refs,
        Some(&call.body),
        vec![],
        Duration::from_millis(call.timeout_ms),
    ) {
        Ok(token) => Some(token),
        Err(status) => {
            if quiet {
                log::debug!("mcp-oauth: etcd not callable yet: {status:?}");
            } else {
                log::warn!(
                    "mcp-oauth: cannot call etcd through cluster {}: {status:?}",
                    call.cluster
                );
            }
            None
        }
    }
}
