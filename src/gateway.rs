//! The per-request decision: answer, deny, wait for keys, or forward with the verified identity.
//! Pure: it takes the request, the time and the key state, and never calls the host.

use std::rc::Rc;

use serde_json::json;

use crate::authz::cimd::Fetch;
use crate::authz::context::{AuthRequest, Ctx};
use crate::authz::{self, state, Endpoint, Reply};
use crate::config::authz::AuthServerConfig;
use crate::config::upstream::UpstreamConfig;
use crate::config::Config;
use crate::cors;
use crate::http::{path_has_prefix, path_is_ambiguous, path_only, Response};

use crate::jwt::{TokenError, VerifiedToken, Verifier};
use crate::mcp::annotations::ToolKinds;
use crate::mcp::listing::ListFilter;
use crate::mcp::policy::{McpPolicy, Verdict};
use crate::mcp::session;
use crate::resource::bearer::{bearer_token_unless_known, Credential};
use crate::resource::challenge::Challenge;
use crate::resource::introspection::{self, IntrospectionCall, IntrospectionConfig, Known};
use crate::resource::metadata::{self, PRM_PATH};
use crate::resource::policy::{access_for, Access};
use crate::store::Store;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The parts of a request the decision reads.
#[derive(Debug, Default)]
pub struct Request<'a> {
    pub method: &'a str,
    /// `:path`, query included.
    pub path: &'a str,
    /// Every `Authorization` header value (more than one is malformed).
    pub authorization: Vec<&'a str>,
    pub origin: Option<&'a str>,
    /// `Access-Control-Request-Method`, present on CORS preflights.
    pub preflight_method: Option<&'a str>,
    pub cookie: Option<&'a str>,
    pub content_type: Option<&'a str>,
    /// The peer address, for rate limits.
    pub client_address: Option<&'a str>,
    /// `Mcp-Session-Id`, checked against the identity the session was created for.
    pub session_id: Option<&'a str>,
}

/// What the glue should do with the request.
#[derive(Debug)]
pub enum Action {
    /// Send this response; the backend sees nothing.
    Respond(Response),
    /// Pass the request on, after removing `Authorization` and every identity header, then
    /// adding these headers; filter the answer's lists when `list_filter` says so.
    Forward {
        headers: Vec<(String, String)>,
        list_filter: Option<ListFilter>,
        /// Who a session the backend opens in its answer belongs to.
        session_owner: Option<String>,
    },
    /// The issuer's keys are missing or stale: hold the request until the key fetch finishes,
    /// then decide again; send `fallback` if that is not possible.
    AwaitKeys { issuer: usize, fallback: Response },
    /// An authorization-server endpoint needs the body: buffer it (at most
    /// `authz::MAX_BODY_BYTES`), then call `Gateway::decide_with_body`.
    ReadBody { max_bytes: usize },
    /// A client metadata document is needed: fetch it, hand the answer to
    /// `Gateway::accept_client_metadata`, then decide again.
    FetchClientMetadata(Fetch),
    /// An opaque token must be introspected: make the call, hand the answer to
    /// `Gateway::accept_introspection`, then decide again.
    Introspect(IntrospectionCall),
    /// A sign-in needs a call to the upstream identity provider: make it, then hand the
    /// answer and the call's step to `Gateway::resume_upstream`.
    CallUpstream(crate::federation::Call),
    /// A grant must be recorded in etcd first: make the call, hand the answer (and the call's
    /// `pending` state) to `Gateway::resume_store`, and apply what it decides.
    Store(Box<crate::etcd::EtcdCall>),
}

/// How a request ended, for stats and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    Public,
    /// Health and CORS preflights, answered by the filter.
    Served,
    /// A metadata document (or its 404/405), answered by the filter.
    Metadata,
    /// An authorization-server endpoint answered (named).
    Authz(&'static str),
    /// Not decided yet (the body is being read); counted when it is.
    Pending,
    Denied(&'static str),
}

#[derive(Debug)]
pub struct Decision {
    pub action: Action,
    pub outcome: Outcome,
    /// Why a request was denied, for the log. Never contains the token.
    pub detail: Option<String>,
    /// The MCP method (and tool) an inspected request called, for per-method stats.
    pub mcp: Option<McpLabel>,
}

/// Stats labels of an inspected MCP request: its (first) method and tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpLabel {
    pub method: String,
    pub tool: Option<String>,
}

impl Decision {
    /// Forward a public request untouched (but for the headers every request loses).
    fn public() -> Decision {
        Decision {
            action: Action::Forward {
                headers: vec![],
                list_filter: None,
                session_owner: None,
            },
            outcome: Outcome::Public,
            detail: None,
            mcp: None,
        }
    }

    /// Hold the request until its body (at most `max_bytes`) is read.
    fn read_body(max_bytes: usize) -> Decision {
        Decision {
            action: Action::ReadBody { max_bytes },
            outcome: Outcome::Pending,
            detail: None,
            mcp: None,
        }
    }

    fn respond(response: Response, outcome: Outcome) -> Decision {
        Decision {
            action: Action::Respond(response),
            outcome,
            detail: None,
            mcp: None,
        }
    }

    /// Labels the decision with the first call of an inspected body.
    fn with_calls(mut self, calls: &[crate::mcp::jsonrpc::Call]) -> Decision {
        self.mcp = calls.first().map(|c| McpLabel {
            method: c.method.clone(),
            tool: (c.method == "tools/call").then(|| c.name.clone()).flatten(),
        });
        self
    }

    fn with_detail(mut self, detail: String) -> Decision {
        self.detail = Some(detail);
        self
    }
}

/// Adds a header for the backend, replacing one of the same name.
fn set_header(headers: &mut Vec<(String, String)>, header: (String, String)) {
    headers.retain(|(n, _)| n != &header.0);
    headers.push(header);
}

/// The checked configuration and the token verifier, built once per VM.
pub struct Gateway {
    pub config: Config,
    pub verifier: Verifier,
}

impl Gateway {
    /// Decides what happens to `request` at unix time `now`.
    pub fn decide(&self, request: &Request, now: u64, store: &mut dyn Store) -> Decision {
        let decision = self.decide_inner(request, now, store);
        self.with_cors(decision, request)
    }

    /// Answers an authorization-server request whose body has been read.
    pub fn decide_with_body(
        &self,
        request: &Request,
        body: &[u8],
        now: u64,
        store: &mut dyn Store,
    ) -> Decision {
        let decision = match (
            self.authorization_server_endpoint(request),
            self.inspected(request),
        ) {
            (Some((config, endpoint)), _) => {
                self.serve_authz(config, endpoint, request, body, now, store)
            }
            (None, Some(policy)) => match self.authorize(request, now, store) {
                Ok(Some(authorized)) => {
                    let decision =
                        self.inspect(policy, &authorized, body, path_only(request.path), store);
                    self.with_backend_credential(decision, &authorized, store, now)
                }
                Ok(None) => Decision::public(),
                Err(decision) => *decision,
            },
            (None, None) => Decision::respond(
                Response::oauth_error(404, "not_found", "Not found"),
                Outcome::Served,
            ),
        };
        self.with_cors(decision, request)
    }

    /// The answer when a held body grows past its limit: a JSON-RPC error on MCP endpoints,
    /// an OAuth error on the authorization server's.
    pub fn decide_body_too_large(&self, request: &Request) -> Decision {
        let response = if self.inspected(request).is_some() {
            jsonrpc_error(413, None, -32600, "Request body too large")
        } else {
            Response::oauth_error(413, "invalid_request", "The request body is too large")
        };
        let decision = Decision::respond(response, Outcome::Denied("bad_request")).with_detail(
            format!("body too large for {}", sanitize(path_only(request.path))),
        );
        self.with_cors(decision, request)
    }

    fn authorization_server_endpoint(
        &self,
        request: &Request,
    ) -> Option<(&AuthServerConfig, Endpoint)> {
        let config = self.config.authorization_server.as_ref()?;
        Some((config, Endpoint::for_path(config, path_only(request.path))?))
    }

    fn serve_authz(
        &self,
        config: &AuthServerConfig,
        endpoint: Endpoint,
        request: &Request,
        body: &[u8],
        now: u64,
        store: &mut dyn Store,
    ) -> Decision {
        let auth_request = AuthRequest {
            http: request,
            body,
        };
        let outcome = if endpoint == Endpoint::Metadata {
            Outcome::Metadata
        } else {
            Outcome::Authz(endpoint.name())
        };
        let reply = self.with_authz_ctx(config, store, now, |ctx| {
            authz::handle(ctx, endpoint, &auth_request)
        });
        Self::reply_decision(reply, outcome)
    }

    /// Runs `f` with the authorization server's view of this gateway.
    fn with_authz_ctx<T>(
        &self,
        config: &AuthServerConfig,
        store: &mut dyn Store,
        now: u64,
        f: impl FnOnce(&mut Ctx) -> T,
    ) -> T {
        let mut resources: Vec<String> = vec![self.config.resource.clone()];
        for route in &self.config.routes {
            if !resources.contains(&route.resource) {
                resources.push(route.resource.clone());
            }
        }
        let mut ctx = Ctx {
            config,
            origin: &self.config.origin,
            resources: &resources,
            verifier: &self.verifier,
            store,
            now,
            etcd: self.config.state_store.as_ref(),
        };
        f(&mut ctx)
    }

    /// The decision for an endpoint's reply; a request that must call out first is counted
    /// once, when its answer goes out.
    fn reply_decision(reply: Reply, outcome: Outcome) -> Decision {
        let (action, outcome) = match reply {
            Reply::Response(response) => (Action::Respond(response), outcome),
            Reply::Fetch(fetch) => (Action::FetchClientMetadata(fetch), Outcome::Pending),
            Reply::Upstream(call) => (Action::CallUpstream(call), Outcome::Pending),
            Reply::Store(call) => (Action::Store(call), Outcome::Pending),
        };
        Decision {
            action,
            outcome,
            detail: None,
            mcp: None,
        }
    }

    /// Goes on with a sign-in after the upstream provider answered a call. A discovery
    /// document is cached and the request handled again from the start (`body` is its body,
    /// if it was read); the other steps continue where the sign-in stood.
    pub fn resume_upstream(
        &self,
        request: &Request,
        body: Option<&[u8]>,
        step: crate::federation::Step,
        answer: crate::federation::Answer,
        now: u64,
        store: &mut dyn Store,
    ) -> Decision {
        let Some((config, upstream)) = self.upstream_provider() else {
            return Decision::respond(
                Response::oauth_error(404, "not_found", "Not found"),
                Outcome::Served,
            );
        };
        let outcome = Outcome::Authz(
            self.authorization_server_endpoint(request)
                .map_or("callback", |(_, e)| e.name()),
        );
        let again = |store: &mut dyn Store| match body {
            Some(body) => self.decide_with_body(request, body, now, store),
            None => self.decide(request, now, store),
        };
        let decision = match step {
            crate::federation::Step::Discovery => {
                if crate::federation::documents::accept_discovery(upstream, store, answer, now) {
                    return again(store);
                }
                Self::reply_decision(crate::federation::flow::unavailable(upstream), outcome)
            }
            // Whatever the provider said is in the store now; the request sees it.
            crate::federation::Step::Refresh { grant } => {
                crate::federation::held::accept_refresh(store, config, &grant, answer, now);
                return again(store);
            }
            step => {
                let reply = self.with_authz_ctx(config, store, now, |ctx| {
                    crate::federation::flow::resume(ctx, upstream, step, answer)
                });
                Self::reply_decision(reply, outcome)
            }
        };
        self.with_cors(decision, request)
    }

    /// Validates and caches a fetched client metadata document (or the failure to get one).
    pub fn accept_client_metadata(
        &self,
        url: &str,
        status: Option<&str>,
        cache_control: Option<&str>,
        body: &[u8],
        now: u64,
        store: &mut dyn Store,
    ) {
        if let Some(cimd) = self
            .config
            .authorization_server
            .as_ref()
            .and_then(|a| a.cimd.as_ref())
        {
            authz::cimd::accept(cimd, store, url, status, cache_control, body, now);
        }
    }

    fn with_cors(&self, mut decision: Decision, request: &Request) -> Decision {
        let allowed = &self.config.cors_allowed_origins;
        match &mut decision.action {
            Action::Respond(response) => {
                *response = cors::decorate(
                    std::mem::replace(response, empty()),
                    allowed,
                    request.origin,
                )
            }
            Action::AwaitKeys { fallback, .. } => {
                *fallback = cors::decorate(
                    std::mem::replace(fallback, empty()),
                    allowed,
                    request.origin,
                )
            }
            Action::Forward { .. }
            | Action::ReadBody { .. }
            | Action::FetchClientMetadata(_)
            | Action::Introspect(_)
            | Action::CallUpstream(_)
            | Action::Store(_) => {}
        }
        decision
    }

    fn decide_inner(&self, request: &Request, now: u64, store: &mut dyn Store) -> Decision {
        let config = &self.config;
        if request.method == "OPTIONS"
            && request.preflight_method.is_some()
            && request.origin.is_some()
            && !config.cors_allowed_origins.is_empty()
        {
            let response = cors::preflight(&config.cors_allowed_origins, request.origin);
            return Decision::respond(response, Outcome::Served);
        }
        if path_is_ambiguous(request.path) {
            let challenge = Challenge {
                resource_metadata: &config.metadata_url,
                scopes: &[],
            };
            return Decision::respond(
                challenge.invalid_request("The request path is not in normal form"),
                Outcome::Denied("bad_request"),
            )
            .with_detail(format!(
                "ambiguous path {}",
                sanitize(path_only(request.path))
            ));
        }
        let path = path_only(request.path);
        if path == config.health_path {
            return Decision::respond(self.health(store, now), Outcome::Served);
        }
        if path
            .strip_prefix(PRM_PATH)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        {
            return self.metadata(request.method, path);
        }
        let authz_endpoint = self.authorization_server_endpoint(request);
        if authz_endpoint.is_none() && is_oauth_well_known(path) {
            // Clients probe several of these; a 404 lets them move on, a 401 would stop them.
            return Decision::respond(
                Response::oauth_error(404, "not_found", "No metadata at this path"),
                Outcome::Metadata,
            );
        }
        if let Some((config, endpoint)) = authz_endpoint {
            if endpoint.reads_body(request.method) {
                return Decision::read_body(authz::MAX_BODY_BYTES);
            }
            return self.serve_authz(config, endpoint, request, &[], now, store);
        }
        let inspected = self.inspected(request);
        let authorized = match self.authorize(request, now, store) {
            Ok(Some(authorized)) => authorized,
            Ok(None) => return Decision::public(),
            // An opaque token on an inspected POST: read the body first, introspect after,
            // so the answer comes back to a request whose body is already in hand.
            Err(decision) => match (&decision.action, inspected) {
                (Action::Introspect(_), Some(policy)) => {
                    return Decision::read_body(policy.max_body_bytes)
                }
                _ => return *decision,
            },
        };
        if let Some(policy) = inspected {
            return Decision::read_body(policy.max_body_bytes);
        }
        let decision = Decision {
            action: Action::Forward {
                headers: self.identity_headers(&authorized.token),
                list_filter: None,
                // Sessions are opened by `initialize`, always a POST: only a POST's answer is
                // read for a new session id (a host call on every answer otherwise).
                session_owner: (request.method == "POST")
                    .then(|| session::identity(&authorized.token).to_string()),
            },
            outcome: Outcome::Allowed,
            detail: None,
            mcp: None,
        };
        self.with_backend_credential(decision, &authorized, store, now)
    }

    /// The MCP policy, if this request's JSON-RPC body must be inspected.
    fn inspected(&self, request: &Request) -> Option<&McpPolicy> {
        let policy = self.config.mcp.as_ref()?;
        let path = path_only(request.path);
        (request.method == "POST" && policy.endpoints.iter().any(|e| path_has_prefix(path, e)))
            .then_some(policy)
    }

    /// The token check for a non-public request: `Ok(None)` for a public path, the verified
    /// token when it may proceed, or the refusal.
    fn authorize(
        &self,
        request: &Request,
        now: u64,
        store: &mut dyn Store,
    ) -> Result<Option<Authorized<'_>>, Box<Decision>> {
        let config = &self.config;
        let path = path_only(request.path);
        let (resource, scopes, metadata_url, backend_credential, upstream_token) =
            match access_for(config, request.method, request.path) {
                Access::Public => return Ok(None),
                Access::Protected(route) => (
                    route.resource.as_str(),
                    route.scopes.as_slice(),
                    route.metadata_url.as_str(),
                    route.backend_credential.as_deref(),
                    route.upstream_token,
                ),
                Access::Authenticated => (
                    config.resource.as_str(),
                    &[][..],
                    config.metadata_url.as_str(),
                    None,
                    false,
                ),
            };
        let challenge = Challenge {
            resource_metadata: metadata_url,
            scopes,
        };
        // A token the cache holds is looked up once, and skips the header's character check.
        let mut hit = None;
        let credential = bearer_token_unless_known(&request.authorization, |token| {
            hit = self.verifier.cached(token, now);
            hit.is_some()
        });
        let token = match credential {
            Credential::Bearer(token) => token,
            Credential::None => {
                return Err(Box::new(
                    Decision::respond(challenge.missing_token(), Outcome::Denied("missing_token"))
                        .with_detail(format!("no bearer token for {}", sanitize(path))),
                ))
            }
            Credential::Malformed(why) => {
                return Err(Box::new(
                    Decision::respond(
                        challenge.invalid_request(why),
                        Outcome::Denied("bad_request"),
                    )
                    .with_detail(why.to_string()),
                ))
            }
        };
        let checked = match (hit, &self.config.introspection) {
            (Some(hit), _) => Verifier::for_audience(hit, resource),
            (None, Some(introspection)) if !introspection::looks_like_jwt(token) => Ok(
                self.introspected(introspection, &challenge, token, resource, path, now, store)?
            ),
            (None, _) => self.verifier.verify(token, resource, now),
        };
        let verified = match checked {
            Ok(verified) => verified,
            Err(error) => return Err(Box::new(self.token_error(&challenge, error, path))),
        };
        if let Some(refusal) = self.stale_snapshot_refusal(store, now) {
            return Err(Box::new(refusal));
        }
        if self.issued_here(&verified)
            && verified
                .jwt_id
                .as_deref()
                .is_some_and(|jti| state::access_token_revoked(store, jti))
        {
            return Err(Box::new(
                Decision::respond(
                    challenge.invalid_token("The access token was revoked"),
                    Outcome::Denied("invalid_token"),
                )
                .with_detail(format!("revoked token for {}", sanitize(path))),
            ));
        }
        let authorized = Authorized {
            token: verified,
            metadata_url,
            backend_credential,
            upstream_token,
        };
        if let Some(session_id) = request.session_id {
            if !session::claim(store, session_id, session::identity(&authorized.token)) {
                return Err(Box::new(
                    Decision::respond(
                        jsonrpc_error(404, None, -32001, "Session not found"),
                        Outcome::Denied("session_mismatch"),
                    )
                    .with_detail(format!(
                        "session used by another identity (sub {})",
                        sanitize(authorized.token.subject.as_deref().unwrap_or("-"))
                    )),
                ));
            }
        }
        let missing: Vec<String> = scopes
            .iter()
            .filter(|s| !authorized.token.scopes.contains(s))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(Box::new(authorized.step_up(&missing, &sanitize(path))));
        }
        Ok(Some(authorized))
    }

    /// Our authorization server and the identity provider it signs people in through, when it
    /// has one.
    fn upstream_provider(&self) -> Option<(&AuthServerConfig, &UpstreamConfig)> {
        let config = self.config.authorization_server.as_ref()?;
        Some((config, config.upstream.as_ref()?))
    }

    /// Whether our authorization server issued the token: only its tokens can be revoked here
    /// (revocation is by `jti`, which other issuers may reuse), so only they cost a store read.
    fn issued_here(&self, token: &VerifiedToken) -> bool {
        self.config
            .authorization_server
            .as_ref()
            .is_some_and(|server| server.issuer == token.issuer)
    }

    /// Puts the route's backend credentials on a forwarded request: the service credential,
    /// and the person's upstream token.
    fn with_backend_credential(
        &self,
        decision: Decision,
        authorized: &Authorized,
        store: &mut dyn Store,
        now: u64,
    ) -> Decision {
        let decision = self.with_service_credential(decision, authorized, &*store, now);
        if authorized.upstream_token {
            self.with_upstream_token(decision, authorized, store, now)
        } else {
            decision
        }
    }

    /// The person's token at the upstream provider, refreshed first if it is about to
    /// expire; when the provider no longer honours the grant, 401 so the client signs in again.
    fn with_upstream_token(
        &self,
        mut decision: Decision,
        authorized: &Authorized,
        store: &mut dyn Store,
        now: u64,
    ) -> Decision {
        use crate::federation::held::{self, Use};
        let Action::Forward { headers, .. } = &mut decision.action else {
            return decision;
        };
        let Some((config, upstream)) = self.upstream_provider() else {
            return decision;
        };
        let challenge = Challenge {
            resource_metadata: authorized.metadata_url,
            scopes: &[],
        };
        let grant = authorized
            .token
            .grant
            .as_deref()
            .filter(|_| authorized.token.issuer == config.issuer);
        let Some(grant) = grant else {
            return Decision::respond(
                Response::oauth_error(
                    403,
                    "insufficient_user_authentication",
                    &format!("This needs a sign-in through {}", upstream.name),
                ),
                Outcome::Denied("no_upstream_token"),
            );
        };
        match held::for_request(store, config, upstream, grant, now) {
            Use::Token(token) => {
                set_header(headers, upstream.header_for(&token));
                decision
            }
            Use::Call(call) => Decision {
                action: Action::CallUpstream(call),
                ..decision
            },
            Use::SignInAgain => Decision::respond(
                challenge.invalid_token(&format!(
                    "The sign-in at {} expired; sign in again",
                    upstream.name
                )),
                Outcome::Denied("invalid_token"),
            )
            .with_detail("upstream grant is over".into()),
            Use::Busy | Use::Unavailable => Decision::respond(
                Response::retry_later(
                    "The identity provider's token is being renewed; retry shortly",
                    1,
                ),
                Outcome::Denied("keys_unavailable"),
            ),
        }
    }

    /// Puts the route's service credential on a forwarded request; without a current token
    /// the request is not forwarded (503), since the backend would refuse it anyway.
    fn with_service_credential(
        &self,
        mut decision: Decision,
        authorized: &Authorized,
        store: &dyn Store,
        now: u64,
    ) -> Decision {
        let Some(name) = &authorized.backend_credential else {
            return decision;
        };
        let Action::Forward { headers, .. } = &mut decision.action else {
            return decision;
        };
        let credential = self
            .config
            .backend_credentials
            .iter()
            .find(|c| &c.name == name);
        match credential.and_then(|c| c.current(store, now).map(|token| c.header_for(&token))) {
            Some(header) => {
                set_header(headers, header);
                decision
            }
            None => Decision::respond(
                Response::retry_later(
                    "The backend credential is not available yet; retry shortly",
                    2,
                ),
                Outcome::Denied("keys_unavailable"),
            )
            .with_detail(format!("no current token for backend credential {name}")),
        }
    }

    /// Decides on an inspected JSON-RPC body, after the token passed.
    fn inspect(
        &self,
        policy: &McpPolicy,
        authorized: &Authorized,
        body: &[u8],
        path: &str,
        store: &dyn Store,
    ) -> Decision {
        if body.len() > policy.max_body_bytes {
            return Decision::respond(
                jsonrpc_error(413, None, -32600, "Request body too large"),
                Outcome::Denied("bad_request"),
            )
            .with_detail(format!(
                "body over {} bytes for {}",
                policy.max_body_bytes,
                sanitize(path)
            ));
        }
        let calls = match crate::mcp::jsonrpc::calls(body) {
            Ok(calls) => calls,
            Err(error) => {
                return Decision::respond(
                    jsonrpc_error(400, None, error.code(), error.message()),
                    Outcome::Denied("bad_request"),
                )
                .with_detail(format!("malformed JSON-RPC for {}", sanitize(path)))
            }
        };
        let token = &authorized.token;
        let endpoint = policy
            .endpoints
            .iter()
            .find(|e| path_has_prefix(path, e))
            .cloned()
            .unwrap_or_default();
        let kinds = if policy.annotation_scopes.is_some() {
            ToolKinds::load(store, &endpoint)
        } else {
            ToolKinds::default()
        };
        let decision = match policy.check(&calls, token.client_id.as_deref(), &token.scopes, &kinds)
        {
            Verdict::Allow => Decision {
                action: Action::Forward {
                    headers: self.identity_headers(token),
                    list_filter: ListFilter::for_calls(
                        &calls,
                        token.client_id.as_deref(),
                        &token.scopes,
                        &endpoint,
                    ),
                    session_owner: Some(session::identity(token).to_string()),
                },
                outcome: Outcome::Allowed,
                detail: None,
                mcp: None,
            },
            Verdict::NeedScopes { call, missing } => authorized.step_up(&missing, &sanitize(&call)),
            Verdict::ClientDenied { tool, id } => Decision::respond(
                jsonrpc_error(
                    403,
                    id,
                    -32001,
                    &format!("Tool {tool} is not allowed for this client"),
                ),
                Outcome::Denied("client_denied"),
            )
            .with_detail(format!(
                "tool {} denied for client {}",
                sanitize(&tool),
                sanitize(token.client_id.as_deref().unwrap_or("-"))
            )),
        };
        decision.with_calls(&calls)
    }

    /// An opaque token: the cached introspection verdict, or the call to make first.
    #[allow(clippy::too_many_arguments)]
    fn introspected(
        &self,
        config: &IntrospectionConfig,
        challenge: &Challenge,
        token: &str,
        resource: &str,
        path: &str,
        now: u64,
        store: &mut dyn Store,
    ) -> Result<Rc<VerifiedToken>, Box<Decision>> {
        let refuse = |description: &str, reason: &'static str| {
            Box::new(
                Decision::respond(
                    challenge.invalid_token(description),
                    Outcome::Denied("invalid_token"),
                )
                .with_detail(format!(
                    "opaque token refused for {}: {reason}",
                    sanitize(path)
                )),
            )
        };
        match introspection::cached(store, &introspection::token_key(token), now) {
            Some(Known::Active(verified)) => {
                if !verified.audiences.is_empty()
                    && !verified.audiences.iter().any(|a| a == resource)
                {
                    return Err(refuse(
                        "The access token is not meant for this resource",
                        "wrong_audience",
                    ));
                }
                Ok(verified)
            }
            Some(Known::Inactive) => Err(refuse("The access token is not active", "inactive")),
            Some(Known::Unavailable) if config.unavailable_is_503 => Err(Box::new(
                Decision::respond(
                    Response::retry_later("The token could not be checked; retry shortly", 2),
                    Outcome::Denied("keys_unavailable"),
                )
                .with_detail(format!("introspection unavailable for {}", sanitize(path))),
            )),
            Some(Known::Unavailable) => Err(refuse(
                "The access token could not be checked",
                "introspection_unavailable",
            )),
            None => Err(Box::new(Decision {
                action: Action::Introspect(introspection::call(config, token)),
                outcome: Outcome::Pending,
                detail: None,
                mcp: None,
            })),
        }
    }

    /// Caches the introspection endpoint's answer for the token `token_key`.
    pub fn accept_introspection(
        &self,
        token_key: &str,
        status: Option<&str>,
        body: &[u8],
        now: u64,
        store: &mut dyn Store,
    ) {
        if let Some(config) = &self.config.introspection {
            introspection::accept(config, store, token_key, status, body, now);
        }
    }

    fn token_error(&self, challenge: &Challenge, error: TokenError, path: &str) -> Decision {
        let detail = format!("token refused for {}: {}", sanitize(path), error.reason());
        match error {
            TokenError::KeysNotLoaded { issuer } => {
                let fallback = Response::retry_later(
                    "The token signing keys are not loaded yet; retry shortly",
                    5,
                );
                Decision {
                    action: Action::AwaitKeys { issuer, fallback },
                    outcome: Outcome::Denied("keys_unavailable"),
                    detail: Some(detail),
                    mcp: None,
                }
            }
            TokenError::UnknownKeyId { issuer } => Decision {
                action: Action::AwaitKeys {
                    issuer,
                    fallback: challenge.invalid_token(error.description()),
                },
                outcome: Outcome::Denied("invalid_token"),
                detail: Some(detail),
                mcp: None,
            },
            TokenError::Expired => Decision::respond(
                challenge.invalid_token(error.description()),
                Outcome::Denied("expired"),
            )
            .with_detail(detail),
            _ => Decision::respond(
                challenge.invalid_token(error.description()),
                Outcome::Denied("invalid_token"),
            )
            .with_detail(detail),
        }
    }

    /// The identity headers for a verified token: only the configured ones, each value made
    /// only when its header is configured (this runs on every forwarded request).
    fn identity_headers(&self, token: &VerifiedToken) -> Vec<(String, String)> {
        let names = &self.config.identity_headers;
        let mut headers = Vec::new();
        let mut add = |name: &Option<String>, value: &dyn Fn() -> Option<String>| {
            let Some(name) = name else { return };
            if let Some(value) = value() {
                if !value.is_empty() && !value.chars().any(char::is_control) {
                    headers.push((name.clone(), value));
                }
            }
        };
        add(&names.subject, &|| token.subject.clone());
        add(&names.client_id, &|| token.client_id.clone());
        add(&names.scopes, &|| Some(token.scopes.join(" ")));
        add(&names.issuer, &|| Some(token.issuer.clone()));
        headers
    }

    fn metadata(&self, method: &str, path: &str) -> Decision {
        if method != "GET" && method != "HEAD" {
            return Decision::respond(
                Response::oauth_error(405, "invalid_request", "Use GET")
                    .with_header("allow", "GET, HEAD, OPTIONS"),
                Outcome::Metadata,
            );
        }
        match metadata::document_for(&self.config, path) {
            Some(doc) => Decision::respond(
                Response::json(200, &doc).replace_header("cache-control", "public, max-age=300"),
                Outcome::Metadata,
            ),
            None => Decision::respond(
                Response::oauth_error(
                    404,
                    "not_found",
                    "No protected resource metadata at this path",
                ),
                Outcome::Metadata,
            ),
        }
    }

    /// Health for load balancers: 503 until every issuer with fetched keys has loaded them once
    /// (and, with etcd, until the revocation snapshot has loaded once); `degraded` while etcd
    /// does not answer.
    pub fn health(&self, store: &dyn Store, now: u64) -> Response {
        let keys_loaded = self.verifier.issuers.iter().all(|i| i.keys_loaded());
        let state_store = self.state_store_health(store, now);
        let (status, code) = match (keys_loaded, state_store) {
            (false, _) | (_, Some(("starting", _))) => ("starting", 503),
            (true, Some(("ok", _)) | None) => ("ok", 200),
            (true, Some((_, code))) => ("degraded", code),
        };
        let mut body = json!({ "status": status, "keys_loaded": keys_loaded, "version": VERSION });
        if let (Some(object), Some((label, _))) = (body.as_object_mut(), state_store) {
            object.insert("state_store".into(), json!(label));
        }
        Response::json(code, &body)
    }
}

/// OAuth and OpenID discovery documents, ours or not: never behind the token check.
fn is_oauth_well_known(path: &str) -> bool {
    path.starts_with("/.well-known/oauth-") || path.starts_with("/.well-known/openid-configuration")
}

/// A request that passed the token check (borrowing its route's settings from the config).
struct Authorized<'a> {
    /// Shared with the token cache.
    token: Rc<VerifiedToken>,
    metadata_url: &'a str,
    /// The service credential the route puts on backend requests.
    backend_credential: Option<&'a str>,
    /// The route puts the person's upstream token on backend requests.
    upstream_token: bool,
}

impl Authorized<'_> {
    /// 403 `insufficient_scope` asking for what the token has plus what is missing, so the
    /// client can step up by re-authorizing once with that scope.
    fn step_up(&self, missing: &[String], what: &str) -> Decision {
        let mut wanted = self.token.scopes.clone();
        wanted.extend(
            missing
                .iter()
                .filter(|m| !self.token.scopes.contains(m))
                .cloned(),
        );
        let challenge = Challenge {
            resource_metadata: self.metadata_url,
            scopes: &wanted,
        };
        let description = format!("The access token lacks the scope {}", missing.join(" "));
        Decision::respond(
            challenge.insufficient_scope(&description),
            Outcome::Denied("insufficient_scope"),
        )
        .with_detail(format!(
            "insufficient scope for {what}: missing {} (sub {})",
            missing.join(" "),
            sanitize(self.token.subject.as_deref().unwrap_or("-"))
        ))
    }
}

/// A JSON-RPC error answer with an HTTP status (nothing reaches the backend).
fn jsonrpc_error(status: u16, id: Option<serde_json::Value>, code: i64, message: &str) -> Response {
    Response::json(
        status,
        &json!({"jsonrpc": "2.0", "id": id.unwrap_or(serde_json::Value::Null), "error": {"code": code, "message": message}}),
    )
}

fn empty() -> Response {
    Response {
        status: 0,
        headers: vec![],
        body: vec![],
    }
}

/// Request data in logs: printable, bounded, never a header value that could carry a secret.
fn sanitize(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(200).collect()
}

mod state_store;
#[cfg(test)]
mod tests;
