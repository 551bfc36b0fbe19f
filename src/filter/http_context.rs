//! The HTTP context: per request, read the headers, let the core decide, apply the decision.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action as HostAction;

use crate::cors;
use crate::gateway::{Action, Decision, Outcome, Request};
use crate::http::Response;

use super::host;
use super::root::{VmState, Waiter};

pub struct Http {
    context_id: u32,
    state: Rc<RefCell<VmState>>,
    /// The request's `Origin`, kept to add CORS headers to the backend's response.
    origin: Option<String>,
    forwarded: bool,
}

impl Http {
    pub fn new(context_id: u32, state: Rc<RefCell<VmState>>) -> Self {
        Http {
            context_id,
            state,
            origin: None,
            forwarded: false,
        }
    }
}

/// Reads the request headers and asks the core; no borrow of the state outlives this call,
/// so host calls made afterwards cannot re-enter a borrowed state.
fn decide_now(state: &Rc<RefCell<VmState>>) -> (Decision, Option<String>) {
    let headers = host::request_headers();
    let value = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let request = Request {
        method: value(":method").unwrap_or(""),
        path: value(":path").unwrap_or(""),
        authorization: headers
            .iter()
            .filter(|(n, _)| n == "authorization")
            .map(|(_, v)| v.as_str())
            .collect(),
        origin: value("origin"),
        preflight_method: value("access-control-request-method"),
    };
    let now_secs = host::now_ms() / 1000;
    let vm = state.borrow();
    let decision = vm.gateway.decide(&request, now_secs);
    vm.stats.record(decision.outcome);
    if let Some(detail) = &decision.detail {
        match decision.outcome {
            Outcome::Denied(reason) => log::info!("mcp-oauth: denied ({reason}): {detail}"),
            _ => log::debug!("mcp-oauth: {detail}"),
        }
    }
    (decision, request.origin.map(str::to_string))
}

/// Removes the client's token and any identity headers it sent, then adds the verified ones.
fn forward(state: &Rc<RefCell<VmState>>, headers: &[(String, String)]) {
    let names: Vec<String> = {
        let vm = state.borrow();
        vm.gateway
            .config
            .identity_headers
            .names()
            .map(str::to_string)
            .collect()
    };
    host::remove_request_header("authorization");
    for name in &names {
        host::remove_request_header(name);
    }
    for (name, value) in headers {
        host::set_request_header(name, value);
    }
}

/// Called by the root (with this request as the effective context) when the keys it waited
/// for have arrived: decide again, and never wait a second time.
pub fn decide_after_wait(state: &Rc<RefCell<VmState>>, fallback: Response) {
    let (decision, _) = decide_now(state);
    match decision.action {
        Action::Respond(response) => host::send_response(&response),
        Action::AwaitKeys { .. } => host::send_response(&fallback),
        Action::Forward { headers } => {
            forward(state, &headers);
            host::resume_request();
        }
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> HostAction {
        let (decision, origin) = decide_now(&self.state);
        self.origin = origin;
        match decision.action {
            Action::Respond(response) => {
                host::send_response(&response);
                HostAction::Pause
            }
            Action::Forward { headers } => {
                forward(&self.state, &headers);
                self.forwarded = true;
                HostAction::Continue
            }
            Action::AwaitKeys { issuer, fallback } => self.wait_for_keys(issuer, fallback),
        }
    }

    fn on_http_response_headers(
        &mut self,
        _num_headers: usize,
        _end_of_stream: bool,
    ) -> HostAction {
        if self.forwarded && !host::response_header_present("access-control-allow-origin") {
            let vm = self.state.borrow();
            let extra = cors::headers_for_forwarded(
                &vm.gateway.config.cors_allowed_origins,
                self.origin.as_deref(),
            );
            drop(vm);
            for (name, value) in extra {
                host::add_response_header(&name, &value);
            }
        }
        HostAction::Continue
    }
}

impl Http {
    /// Holds the request until the issuer's keys load, if a fetch is running or allowed now;
    /// otherwise answers with the fallback at once.
    fn wait_for_keys(&mut self, issuer: usize, fallback: Response) -> HostAction {
        let now = host::now_ms();
        let mut vm = self.state.borrow_mut();
        let wait_ms = vm.fetcher_mut(issuer).and_then(|fetcher| {
            (fetcher.may_refetch(now) && fetcher.start(now))
                .then_some(fetcher.remote.startup_wait_ms)
        });
        match wait_ms {
            Some(wait_ms) if wait_ms > 0 => {
                vm.waiters.push(Waiter {
                    context_id: self.context_id,
                    issuer,
                    deadline_ms: now + wait_ms,
                    fallback,
                });
                HostAction::Pause
            }
            _ => {
                drop(vm);
                host::send_response(&fallback);
                HostAction::Pause
            }
        }
    }
}

impl Context for Http {
    fn on_done(&mut self) -> bool {
        if let Ok(mut vm) = self.state.try_borrow_mut() {
            vm.waiters.retain(|w| w.context_id != self.context_id);
        }
        true
    }
}
