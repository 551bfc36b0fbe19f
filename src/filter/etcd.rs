//! The root context's etcd work: on the timer, the VM that claims it polls etcd for new
//! revocations (and, with etcd auth, gets a token); the answer is copied into shared data by the
//! core (`etcd::snapshot`). Every VM of the Envoy then sees it.

use std::time::Duration;

use proxy_wasm::hostcalls;

use crate::config::state_store::EtcdConfig;
use crate::etcd::snapshot::{self, BackgroundCall};

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
}

impl EtcdPoller {
    pub fn new(config: EtcdConfig) -> Self {
        EtcdPoller {
            config,
            in_flight: None,
            failing: false,
        }
    }

    pub fn owns(&self, token: u32) -> bool {
        matches!(self.in_flight, Some((t, _, _)) if t == token)
    }

    pub fn tick(&mut self, now_ms: u64) {
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
        match dispatch(&call) {
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

fn dispatch(call: &BackgroundCall) -> Option<u32> {
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
            log::warn!(
                "mcp-oauth: cannot call etcd through cluster {}: {status:?}",
                call.cluster
            );
            None
        }
    }
}
