//! The root context: loads the config (refusing a bad one), drives JWKS fetches from the
//! timer, and releases requests that were held waiting for keys.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType};

use crate::config;
use crate::gateway::Gateway;
use crate::http::Response;

use super::etcd::EtcdPoller;
use super::host;
use super::http_context::{self, Http};
use super::jwks::{JwksFetcher, MAX_JWKS_BYTES};
use super::service_credentials::CredentialFetcher;
use super::shared_store::SharedStore;
use super::stats::Stats;
use crate::jwt::shared_jwks::{self, Plan, SharedDoc};
use crate::jwt::Verifier;

/// Tick while requests wait or a first key set is loading, so waits end on time.
const FAST_TICK: Duration = Duration::from_millis(50);
const IDLE_TICK: Duration = Duration::from_millis(250);
/// With etcd: a poll starts at most this late after it is due.
const ETCD_TICK: Duration = Duration::from_millis(100);

/// A request held until its issuer's keys arrive (or its deadline passes).
pub struct Waiter {
    pub context_id: u32,
    pub issuer: usize,
    pub deadline_ms: u64,
    pub fallback: Response,
}

/// Everything one VM shares between its root and its HTTP contexts.
pub struct VmState {
    pub gateway: Gateway,
    pub fetchers: Vec<JwksFetcher>,
    pub credentials: Vec<CredentialFetcher>,
    pub waiters: Vec<Waiter>,
    pub stats: Stats,
    /// The revocation snapshot poller, with etcd.
    pub etcd: Option<EtcdPoller>,
}

impl VmState {
    /// The fetcher of `issuer`'s remote keys, if it has any.
    pub fn fetcher_mut(&mut self, issuer: usize) -> Option<&mut JwksFetcher> {
        self.fetchers
            .iter_mut()
            .find(|f| f.remote.issuer_index == issuer)
    }
}

#[derive(Default)]
pub struct Root {
    state: Option<Rc<RefCell<VmState>>>,
    tick: Option<Duration>,
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let Some(state) = self.state.clone() else {
            return;
        };
        let status = host::call_response_header(":status");
        let body = if body_size > MAX_JWKS_BYTES {
            Err(format!("document larger than {MAX_JWKS_BYTES} bytes"))
        } else {
            hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
                .ok()
                .flatten()
                .ok_or_else(|| "empty body".to_string())
        };
        let now = host::now_ms();
        {
            let mut vm = state.borrow_mut();
            if let Some(poller) = vm.etcd.as_mut().filter(|p| p.owns(token_id)) {
                let body = body.clone().unwrap_or_default();
                poller.finish(status.as_deref(), &body, now);
                return;
            }
            if let Some(credential) = vm.credentials.iter_mut().find(|c| c.owns(token_id)) {
                let body = body.clone().unwrap_or_default();
                credential.finish(now, status.as_deref(), &body);
                return;
            }
        }
        let issuer = {
            let mut guard = state.borrow_mut();
            let vm = &mut *guard;
            let Some(fetcher) = vm.fetchers.iter_mut().find(|f| f.owns(token_id)) else {
                return;
            };
            let issuer = fetcher.remote.issuer_index;
            let Some(allowed) = vm.gateway.verifier.allowed_algorithms(issuer) else {
                return;
            };
            match fetcher.finish(now, status.as_deref(), body, &allowed, &mut SharedStore) {
                Ok(keys) => {
                    log::info!(
                        "mcp-oauth: loaded {} key(s) from {}",
                        keys.entries().len(),
                        fetcher.remote.uri
                    );
                    vm.gateway.verifier.set_remote_keys(issuer, keys);
                    vm.stats.jwks_fetch(true);
                }
                Err(reason) => {
                    log::warn!("mcp-oauth: JWKS fetch from {} failed: {reason}; keeping the last good keys", fetcher.remote.uri);
                    vm.stats.jwks_fetch(false);
                }
            }
            issuer
        };
        self.release_waiters(&state, |w| w.issuer == issuer, false);
        self.adjust_tick();
    }

    fn on_grpc_stream_message(&mut self, token_id: u32, message_size: usize) {
        let Some(state) = &self.state else { return };
        let message = hostcalls::get_buffer(BufferType::GrpcReceiveBuffer, 0, message_size)
            .ok()
            .flatten()
            .unwrap_or_default();
        if let Some(poller) = state.borrow_mut().etcd.as_mut() {
            if poller.owns_stream(token_id) {
                poller.watch_message(&message, host::now_ms());
            }
        }
    }

    fn on_grpc_stream_close(&mut self, token_id: u32, status_code: u32) {
        let Some(state) = &self.state else { return };
        if let Some(poller) = state.borrow_mut().etcd.as_mut() {
            if poller.owns_stream(token_id) {
                poller.watch_closed(status_code, host::now_ms());
            }
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        let env = |name: &str| std::env::var(name).ok();
        let (config, verifier) = match config::parse(&bytes, &env) {
            Ok(parsed) => parsed,
            Err(error) => {
                log::error!("mcp-oauth: {error}");
                return false;
            }
        };
        let fetchers = config
            .remote_jwks
            .iter()
            .cloned()
            .map(JwksFetcher::new)
            .collect();
        let credentials = config
            .backend_credentials
            .iter()
            .cloned()
            .map(CredentialFetcher::new)
            .collect();
        let etcd = config.state_store.clone().map(EtcdPoller::new);
        let state = VmState {
            gateway: Gateway { config, verifier },
            fetchers,
            credentials,
            waiters: Vec::new(),
            stats: Stats::define(),
            etcd,
        };
        if state.gateway.config.authorization_server.is_some() {
            super::shared_store::create_code_shards();
        }
        for fetcher in &state.fetchers {
            shared_jwks::prepare(&mut SharedStore, &fetcher.remote.uri);
        }
        self.state = Some(Rc::new(RefCell::new(state)));
        self.start_due_fetches();
        self.adjust_tick();
        true
    }

    fn on_tick(&mut self) {
        self.start_due_fetches();
        // Not from on_configure: the etcd cluster cannot be called before Envoy has started.
        if let Some(state) = &self.state {
            if let Some(poller) = state.borrow_mut().etcd.as_mut() {
                poller.tick(host::now_ms());
            }
        }
        if let Some(state) = self.state.clone() {
            let now = host::now_ms();
            self.release_waiters(&state, |w| w.deadline_ms <= now, true);
        }
        self.adjust_tick();
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let state = self.state.clone()?;
        Some(Box::new(Http::new(context_id, state)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

impl Root {
    fn start_due_fetches(&mut self) {
        let Some(state) = &self.state else { return };
        let now = host::now_ms();
        for credential in state.borrow_mut().credentials.iter_mut() {
            credential.tick(now);
        }
        let mut adopted = Vec::new();
        {
            let mut guard = state.borrow_mut();
            let vm = &mut *guard;
            for fetcher in vm.fetchers.iter_mut() {
                if !fetcher.is_due(now) {
                    continue;
                }
                match fetcher.plan(now, &mut SharedStore) {
                    Plan::Fetch => {
                        fetcher.start(now);
                    }
                    Plan::Wait => {}
                    Plan::Adopt(doc) => {
                        if adopt(fetcher, &mut vm.gateway.verifier, doc, now) {
                            adopted.push(fetcher.remote.issuer_index);
                        }
                    }
                }
            }
        }
        if !adopted.is_empty() {
            let state = Rc::clone(state);
            self.release_waiters(&state, |w| adopted.contains(&w.issuer), false);
        }
    }

    /// Decides again for every waiter that `select` picks; `expired` ones get their fallback.
    fn release_waiters(
        &self,
        state: &Rc<RefCell<VmState>>,
        select: impl Fn(&Waiter) -> bool,
        expired: bool,
    ) {
        let released: Vec<Waiter> = {
            let mut vm = state.borrow_mut();
            let (released, kept) = std::mem::take(&mut vm.waiters)
                .into_iter()
                .partition(|w| select(w));
            vm.waiters = kept;
            released
        };
        for waiter in released {
            if hostcalls::set_effective_context(waiter.context_id).is_err() {
                continue;
            }
            if expired {
                log::info!("mcp-oauth: request waited too long for signing keys");
                host::send_response(&waiter.fallback);
            } else {
                http_context::decide_after_wait(state, waiter.fallback);
            }
        }
    }

    /// Ticks fast while something waits or a first key set is loading, every 100 ms with etcd
    /// (its poll), slowly while there are keys to refresh, and not at all otherwise.
    fn adjust_tick(&mut self) {
        let Some(state) = &self.state else { return };
        let period = {
            let vm = state.borrow();
            let loading = vm.fetchers.iter().any(|f| {
                f.in_flight()
                    || !vm
                        .gateway
                        .verifier
                        .issuers
                        .get(f.remote.issuer_index)
                        .is_some_and(|i| i.remote_loaded())
            });
            // A request may ask for a refetch at any time, so a VM with fetched keys keeps
            // ticking often enough to start it promptly; an idle tick costs next to nothing.
            if !vm.waiters.is_empty() || loading {
                FAST_TICK
            } else if vm.etcd.is_some() {
                ETCD_TICK
            } else if vm.fetchers.is_empty() && vm.credentials.is_empty() {
                Duration::ZERO
            } else {
                IDLE_TICK
            }
        };
        if self.tick != Some(period) {
            self.tick = Some(period);
            let _ = hostcalls::set_tick_period(period);
        }
    }
}

/// Installs the key set another worker fetched; false if its document is unusable (this VM
/// then fetches itself).
fn adopt(fetcher: &mut JwksFetcher, verifier: &mut Verifier, doc: SharedDoc, now: u64) -> bool {
    let issuer = fetcher.remote.issuer_index;
    let allowed = verifier.allowed_algorithms(issuer).unwrap_or_default();
    match fetcher.adopt(doc, now, &allowed) {
        Ok(keys) => {
            log::info!(
                "mcp-oauth: using {} key(s) from {} fetched by another worker",
                keys.entries().len(),
                fetcher.remote.uri
            );
            verifier.set_remote_keys(issuer, keys);
            true
        }
        Err(reason) => {
            log::warn!(
                "mcp-oauth: the JWKS of {} shared by another worker is unusable: {reason}",
                fetcher.remote.uri
            );
            false
        }
    }
}
