//! The HTTP context: per request, read the headers, let the core decide, apply the decision.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action as HostAction;

use crate::cors;
use crate::gateway::{Action, Decision, Outcome, Request};
use crate::http::Response;
use crate::mcp::annotations::ToolKinds;
use crate::mcp::listing::{ListFilter, SseFilter};

use super::host;
use super::root::{VmState, Waiter};
use super::shared_store::SharedStore;
use crate::header_pairs::HeaderPairs;

pub struct Http {
    context_id: u32,
    state: Rc<RefCell<VmState>>,
    /// The request's `Origin`, kept to add CORS headers to the backend's response.
    origin: Option<String>,
    forwarded: bool,
    /// Headers of a request held while its body is read (authorization-server endpoints).
    held: Option<(HeaderPairs, usize)>,
    /// The callout this request waits for, and the request (headers, body if read) to decide
    /// again when it answers.
    callout: Option<Callout>,
    callout_request: Option<HeldRequest>,
    /// Callouts made for this request so far (a sign-in chains a few; never unbounded).
    callouts_made: u8,
    /// The answer carries list results to filter for this token.
    list_filter: Option<ListFilter>,
    /// A session the backend opens in its answer is bound to this identity.
    session_owner: Option<String>,
    /// How the answer's body is being filtered, once its headers are known.
    response_filter: Option<ResponseFilter>,
}

/// A request's headers, and its body if it was read, kept while a callout runs.
type HeldRequest = (HeaderPairs, Option<Vec<u8>>);

/// What a request waits for.
enum Callout {
    ClientMetadata(String),
    Introspection(String),
    /// A call to the upstream identity provider, and where the sign-in stands.
    Upstream(crate::federation::Step),
    /// An etcd write a grant waits for (`Gateway::resume_store` continues it).
    Store(Box<crate::etcd::work::Pending>),
}

/// A sign-in may call discovery, the token endpoint, the keys and userinfo in turn (a client
/// metadata document may come first); a grant recorded in etcd may take a lease, its write,
/// the revocations that follow a replay, and retries of each.
const MAX_CALLOUTS_PER_REQUEST: u8 = 10;

/// Filtering a list answer: a JSON body is read whole; an SSE stream event by event.
enum ResponseFilter {
    Json,
    Sse(SseFilter),
}

impl Http {
    pub fn new(context_id: u32, state: Rc<RefCell<VmState>>) -> Self {
        Http {
            context_id,
            state,
            origin: None,
            forwarded: false,
            held: None,
            callout: None,
            callout_request: None,
            callouts_made: 0,
            list_filter: None,
            session_owner: None,
            response_filter: None,
        }
    }
}

/// The peer address, read only where it is used (rate limits on the authorization server's
/// POST endpoints), so other requests skip the host call.
fn peer_address(request: &Request) -> Option<String> {
    (request.method == "POST")
        .then(host::source_address)
        .flatten()
}

/// The parts of the headers the core reads, found in one pass over them.
fn request_view(headers: &HeaderPairs) -> Request<'_> {
    let mut request = Request {
        method: "",
        path: "",
        authorization: Vec::new(),
        origin: None,
        preflight_method: None,
        session_id: None,
        cookie: None,
        content_type: None,
        client_address: None,
    };
    for (name, value) in headers.iter() {
        let field = match name {
            ":method" => {
                request.method = value;
                continue;
            }
            ":path" => {
                request.path = value;
                continue;
            }
            "authorization" => {
                request.authorization.push(value);
                continue;
            }
            "origin" => &mut request.origin,
            "access-control-request-method" => &mut request.preflight_method,
            "mcp-session-id" => &mut request.session_id,
            "cookie" => &mut request.cookie,
            "content-type" => &mut request.content_type,
            _ => continue,
        };
        // The first of repeated headers, as a lookup by name would give.
        field.get_or_insert(value);
    }
    request
}

fn log_decision(decision: &Decision) {
    if let Some(detail) = &decision.detail {
        match decision.outcome {
            Outcome::Denied(reason) => log::info!("mcp-oauth: denied ({reason}): {detail}"),
            _ => log::debug!("mcp-oauth: {detail}"),
        }
    }
}

/// Reads the request headers and asks the core; no borrow of the state outlives this call,
/// so host calls made afterwards cannot re-enter a borrowed state.
fn decide_now(state: &Rc<RefCell<VmState>>) -> (Decision, HeaderPairs) {
    let headers = host::request_headers();
    let decision = decide_held(state, &headers, |gateway, request, now_secs| {
        gateway.decide(request, now_secs, &mut SharedStore)
    });
    (decision, headers)
}

/// Decides on a held request now that its body is here.
fn decide_with_body(state: &Rc<RefCell<VmState>>, headers: &HeaderPairs, body: &[u8]) -> Decision {
    decide_held(state, headers, |gateway, request, now_secs| {
        gateway.decide_with_body(request, body, now_secs, &mut SharedStore)
    })
}

/// Continues a request whose grant waits for etcd, with etcd's answer.
fn resume_store(
    state: &Rc<RefCell<VmState>>,
    headers: &HeaderPairs,
    pending: crate::etcd::work::Pending,
    status: Option<String>,
    answer: &[u8],
) -> Decision {
    decide_held(state, headers, |gateway, request, now_secs| {
        gateway.resume_store(
            request,
            pending,
            status.as_deref(),
            answer,
            now_secs,
            &mut SharedStore,
        )
    })
}

/// A decision on a request whose headers are in hand, recorded in stats and the log. The
/// borrow of the state ends with it.
fn decide_held(
    state: &Rc<RefCell<VmState>>,
    headers: &HeaderPairs,
    decide: impl FnOnce(&crate::gateway::Gateway, &Request, u64) -> Decision,
) -> Decision {
    let mut request = request_view(headers);
    let address = peer_address(&request);
    request.client_address = address.as_deref();
    let now_secs = host::now_ms() / 1000;
    let vm = state.borrow();
    let decision = decide(&vm.gateway, &request, now_secs);
    record(&vm, &decision);
    decision
}

/// Stats and the log line of a decision.
fn record(vm: &VmState, decision: &Decision) {
    vm.stats.record(decision.outcome);
    if let Some(label) = &decision.mcp {
        let per_tool = vm
            .gateway
            .config
            .mcp
            .as_ref()
            .is_some_and(|p| p.stats_per_tool);
        vm.stats.record_mcp(label, decision.outcome, per_tool);
    }
    log_decision(decision);
}

/// Where a decision is applied from: what the host expects back differs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The request-headers callback; `end_of_stream` says whether a body follows.
    Headers { end_of_stream: bool },
    /// The request-body callback, the body complete.
    Body,
    /// A callout's answer: the request is paused and must be resumed explicitly.
    Callout,
}

/// Removes the client's token, any identity headers it sent and any header about to be added,
/// then adds the verified ones. Only headers the request has are removed, each once: every
/// host call costs about a microsecond on every request. (Envoy adds faster than it
/// replaces, which searches the map first.)
fn forward(state: &Rc<RefCell<VmState>>, request_headers: &HeaderPairs, add: &[(String, String)]) {
    {
        let vm = state.borrow();
        let identity = &vm.gateway.config.identity_headers;
        let removed = |name: &str| {
            name == "authorization"
                || identity.names().any(|n| n == name)
                || add.iter().any(|(n, _)| n == name)
        };
        // Removing headers calls no callback of ours, so the borrow cannot be re-entered.
        let mut done: Option<&str> = None;
        for (name, _) in request_headers.iter() {
            // One removal takes every value of a name; a repeat that is not adjacent is
            // removed again, which finds nothing and does no harm.
            if done != Some(name) && removed(name) {
                host::remove_request_header(name);
                done = Some(name);
            }
        }
    }
    for (name, value) in add {
        host::add_request_header(name, value);
    }
}

/// Called by the root (with this request as the effective context) when the keys it waited
/// for have arrived: decide again, and never wait a second time.
pub fn decide_after_wait(state: &Rc<RefCell<VmState>>, fallback: Response) {
    let (decision, request_headers) = decide_now(state);
    match decision.action {
        Action::Respond(response) => host::send_response(&response),
        Action::Forward { headers, .. } => {
            forward(state, &request_headers, &headers);
            host::resume_request();
        }
        // Body reads and callouts need the request's own context: the client retries.
        _ => host::send_response(&fallback),
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> HostAction {
        let (decision, headers) = decide_now(&self.state);
        self.origin = headers.get("origin").map(str::to_string);
        self.apply(decision, headers, None, Phase::Headers { end_of_stream })
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> HostAction {
        let Some((headers, max_bytes)) = self.held.take() else {
            // A request held for keys or a callout has no verdict yet: its body waits with it.
            // (Returning Continue here would send the held request on unchecked.)
            return if self.awaiting_verdict() {
                HostAction::Pause
            } else {
                HostAction::Continue
            };
        };
        if body_size > max_bytes {
            let decision = decide_held(&self.state, &headers, |gateway, request, _| {
                gateway.decide_body_too_large(request)
            });
            return self.apply(decision, headers, None, Phase::Body);
        }
        if !end_of_stream {
            self.held = Some((headers, max_bytes));
            return HostAction::Pause;
        }
        let body = host::request_body(body_size);
        let decision = decide_with_body(&self.state, &headers, &body);
        self.apply(decision, headers, Some(body), Phase::Body)
    }

    fn on_http_response_headers(
        &mut self,
        _num_headers: usize,
        _end_of_stream: bool,
    ) -> HostAction {
        // The owner first: the header is read (a host call) only for an answer that may open a
        // session.
        if let Some(owner) = &self.session_owner {
            if let Some(session_id) = host::response_header("mcp-session-id") {
                crate::mcp::session::bind(&mut SharedStore, &session_id, owner);
            }
        }
        if self.list_filter.is_some() {
            let content_type = host::response_header("content-type")
                .unwrap_or_default()
                .to_ascii_lowercase();
            self.response_filter = if content_type.starts_with("application/json") {
                Some(ResponseFilter::Json)
            } else if content_type.starts_with("text/event-stream") {
                Some(ResponseFilter::Sse(SseFilter::default()))
            } else {
                None
            };
            if self.response_filter.is_some() {
                host::remove_response_header("content-length");
            }
        }
        if self.forwarded
            && self.origin.is_some()
            && !host::response_header_present("access-control-allow-origin")
        {
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

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> HostAction {
        let (Some(filter), Some(mode)) = (&self.list_filter, &mut self.response_filter) else {
            return HostAction::Continue;
        };
        let vm = self.state.borrow();
        let Some(policy) = vm.gateway.config.mcp.as_ref() else {
            return HostAction::Continue;
        };
        let learns = policy.annotation_scopes.is_some();
        let kinds = if learns {
            ToolKinds::load(&SharedStore, &filter.endpoint)
        } else {
            ToolKinds::default()
        };
        let mut seen = Vec::new();
        match mode {
            ResponseFilter::Json => {
                if !end_of_stream {
                    return HostAction::Pause;
                }
                let body = host::response_body(body_size);
                if let Some(filtered) = filter.filter_json(policy, &kinds, &body, &mut seen) {
                    host::replace_response_body(body_size, &filtered);
                }
            }
            ResponseFilter::Sse(sse) => {
                let chunk = host::response_body(body_size);
                let mut out = sse.push(filter, policy, &kinds, &chunk, &mut seen);
                if end_of_stream {
                    out.extend(sse.finish());
                }
                if out != chunk {
                    host::replace_response_body(body_size, &out);
                }
            }
        }
        if learns {
            ToolKinds::record(&mut SharedStore, &filter.endpoint, &seen);
        }
        HostAction::Continue
    }
}

impl Http {
    /// True while the request waits for signing keys or a fetch before it is decided.
    fn awaiting_verdict(&self) -> bool {
        if self.forwarded {
            return false;
        }
        if self.callout.is_some() {
            return true;
        }
        self.state
            .try_borrow()
            .map(|vm| vm.waiters.iter().any(|w| w.context_id == self.context_id))
            .unwrap_or(true)
    }

    /// Carries out a decision. Returns what the host expects from the current callback
    /// (ignored for callouts, where the request is resumed or answered explicitly).
    fn apply(
        &mut self,
        decision: Decision,
        headers: HeaderPairs,
        body: Option<Vec<u8>>,
        phase: Phase,
    ) -> HostAction {
        match decision.action {
            Action::Respond(response) => {
                host::send_response(&response);
                HostAction::Pause
            }
            Action::Forward {
                headers: identity,
                list_filter,
                session_owner,
            } => {
                forward(&self.state, &headers, &identity);
                self.forwarded = true;
                self.list_filter = list_filter;
                self.session_owner = session_owner;
                if phase == Phase::Callout {
                    host::resume_request();
                }
                HostAction::Continue
            }
            Action::AwaitKeys { issuer, fallback } => match phase {
                Phase::Headers { .. } => self.wait_for_keys(issuer, fallback),
                _ => {
                    host::send_response(&fallback);
                    HostAction::Pause
                }
            },
            Action::ReadBody { max_bytes } => match phase {
                Phase::Headers {
                    end_of_stream: true,
                } => {
                    let decision = decide_with_body(&self.state, &headers, &[]);
                    self.apply(
                        decision,
                        headers,
                        Some(Vec::new()),
                        Phase::Headers {
                            end_of_stream: true,
                        },
                    )
                }
                Phase::Headers {
                    end_of_stream: false,
                } => {
                    self.held = Some((headers, max_bytes));
                    HostAction::Pause
                }
                // The body already went by (it was buffered while the request waited).
                _ => {
                    host::send_response(&Response::oauth_error(
                        503,
                        "temporarily_unavailable",
                        "Retry the request",
                    ));
                    HostAction::Pause
                }
            },
            Action::FetchClientMetadata(fetch) => {
                let call_headers = vec![
                    (":method".to_string(), "GET".to_string()),
                    (":path".to_string(), fetch.path.clone()),
                    (":authority".to_string(), fetch.authority.clone()),
                    ("accept".to_string(), "application/json".to_string()),
                    ("user-agent".to_string(), "mcp-oauth-wasm".to_string()),
                ];
                self.callout(
                    Callout::ClientMetadata(fetch.url.clone()),
                    &fetch.cluster,
                    call_headers,
                    None,
                    fetch.timeout_ms,
                    headers,
                    body,
                )
            }
            Action::CallUpstream(call) => self.callout(
                Callout::Upstream(call.step),
                &call.cluster,
                call.headers,
                call.body,
                call.timeout_ms,
                headers,
                body,
            ),
            Action::Store(call) => {
                let call = *call;
                self.callout(
                    Callout::Store(Box::new(call.pending)),
                    &call.cluster,
                    call.headers,
                    Some(call.body),
                    call.timeout_ms,
                    headers,
                    body,
                )
            }
            Action::Introspect(call) => {
                let pending = Callout::Introspection(call.token_key.clone());
                self.callout(
                    pending,
                    &call.cluster,
                    call.headers,
                    Some(call.body),
                    call.timeout_ms,
                    headers,
                    body,
                )
            }
        }
    }

    /// Dispatches a call whose answer comes back to this context, holding the request (and its
    /// body, if already read) until then.
    #[allow(clippy::too_many_arguments)]
    fn callout(
        &mut self,
        pending: Callout,
        cluster: &str,
        call_headers: Vec<(String, String)>,
        call_body: Option<Vec<u8>>,
        timeout_ms: u64,
        headers: HeaderPairs,
        body: Option<Vec<u8>>,
    ) -> HostAction {
        if self.callout.is_some() || self.callouts_made >= MAX_CALLOUTS_PER_REQUEST {
            // Never two at once, and never an endless chain.
            host::send_response(&Response::oauth_error(
                502,
                "server_error",
                "The request could not be completed",
            ));
            return HostAction::Pause;
        }
        let refs: Vec<(&str, &str)> = call_headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let timeout = std::time::Duration::from_millis(timeout_ms);
        match proxy_wasm::hostcalls::dispatch_http_call(
            cluster,
            refs,
            call_body.as_deref(),
            vec![],
            timeout,
        ) {
            Ok(_) => {
                self.callouts_made += 1;
                self.callout = Some(pending);
                self.callout_request = Some((headers, body));
                HostAction::Pause
            }
            Err(status) => {
                log::warn!("mcp-oauth: cannot call cluster {cluster}: {status:?}");
                host::send_response(&Response::oauth_error(
                    502,
                    "server_error",
                    "An upstream service could not be reached",
                ));
                HostAction::Pause
            }
        }
    }

    /// Holds the request until the issuer's keys load, if a fetch is running or allowed now;
    /// otherwise answers with the fallback at once.
    fn wait_for_keys(&mut self, issuer: usize, fallback: Response) -> HostAction {
        let now = host::now_ms();
        let mut vm = self.state.borrow_mut();
        let wait_ms = vm.fetcher_mut(issuer).and_then(|fetcher| {
            fetcher
                .request_refetch(now)
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

impl Http {
    /// Caches the answer of a client-metadata or introspection callout.
    fn accept_cached(&self, pending: &Callout, status: Option<&str>, answer: &[u8], now: u64) {
        let vm = self.state.borrow();
        match pending {
            Callout::ClientMetadata(url) => {
                let cache_control = host::call_response_header("cache-control");
                vm.gateway.accept_client_metadata(
                    url,
                    status,
                    cache_control.as_deref(),
                    answer,
                    now,
                    &mut SharedStore,
                );
            }
            Callout::Introspection(token_key) => {
                vm.gateway
                    .accept_introspection(token_key, status, answer, now, &mut SharedStore);
            }
            Callout::Upstream(_) | Callout::Store(_) => {}
        }
    }
}

impl Context for Http {
    /// A callout's answer: cache what it says, then decide again (with the body, if the
    /// request's body was already read).
    fn on_http_call_response(
        &mut self,
        _token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let (Some(pending), Some((headers, body))) =
            (self.callout.take(), self.callout_request.take())
        else {
            return;
        };
        let status = host::call_response_header(":status");
        let answer = host::call_response_body(body_size.min(crate::authz::MAX_BODY_BYTES));
        let now_secs = host::now_ms() / 1000;
        let decision = match pending {
            Callout::Upstream(step) => {
                let answer = crate::federation::Answer {
                    status: status.as_deref().and_then(|s| s.parse().ok()),
                    body: &answer,
                };
                decide_held(&self.state, &headers, |gateway, request, now| {
                    gateway.resume_upstream(
                        request,
                        body.as_deref(),
                        step,
                        answer,
                        now,
                        &mut SharedStore,
                    )
                })
            }
            Callout::Store(pending) => {
                resume_store(&self.state, &headers, *pending, status, &answer)
            }
            cached => {
                self.accept_cached(&cached, status.as_deref(), &answer, now_secs);
                // The second decision must not call out again (the answer is cached now).
                let decision = match &body {
                    Some(body) => decide_with_body(&self.state, &headers, body),
                    None => decide_now(&self.state).0,
                };
                match decision.action {
                    Action::FetchClientMetadata(_) | Action::Introspect(_) => Decision {
                        action: Action::Respond(Response::oauth_error(
                            502,
                            "server_error",
                            "The request could not be completed",
                        )),
                        ..decision
                    },
                    _ => decision,
                }
            }
        };
        self.apply(decision, headers, body, Phase::Callout);
    }

    fn on_done(&mut self) -> bool {
        if let Ok(mut vm) = self.state.try_borrow_mut() {
            vm.waiters.retain(|w| w.context_id != self.context_id);
        }
        true
    }
}
