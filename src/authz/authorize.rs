//! `/oauth/authorize`: validate the client and redirect URI first (errors there never
//! redirect), then the request itself (errors redirect with `state` and `iss`), then sign-in and
//! consent, then the code. No server-side state: the pending request travels sealed in the
//! form, the sign-in in a sealed `__Host-` cookie, and CSRF is a double-submit cookie.

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::clients::{self, Client};
use super::context::{AuthRequest, Ctx};
use super::grants::{self, Code};
use super::pages::{self, ConsentView, FormState, SignedIn};
use super::redirect::{display_host, redirect_matches};
use super::{cimd, pkce, scope, Reply};
use crate::config::authz::User;
use crate::config::upstream::UpstreamConfig;
use crate::form::{self, Params};
use crate::http::Response;
use crate::seal::Purpose;

pub const SESSION_COOKIE: &str = "__Host-mcp-oauth-session";
pub const CSRF_COOKIE: &str = "__Host-mcp-oauth-csrf";
/// How long a person may take between opening the sign-in page and approving.
const PENDING_TTL: u64 = 600;

/// The authorization request, sealed into the sign-in and consent forms.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub(crate) struct Pending {
    pub(crate) client_id: String,
    pub(crate) redirect_uri: String,
    pub(crate) scope: Vec<String>,
    pub(crate) resource: String,
    pub(crate) code_challenge: String,
    pub(crate) state: Option<String>,
    pub(crate) exp: u64,
}
json_object!(Pending, Serialize);

/// A signed-in person, sealed into the session cookie.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(remote = "Self")]
struct Session {
    username: String,
    sub: String,
    exp: u64,
}
json_object!(Session, Serialize);

pub fn handle(ctx: &mut Ctx, req: &AuthRequest) -> Reply {
    match req.method() {
        "GET" | "HEAD" => start(ctx, req),
        "POST" => submit(ctx, req),
        _ => super::context::method_not_allowed("GET, POST").into(),
    }
}

/// The client of an authorization request: registered, or described by a metadata
/// document, which may have to be fetched first.
fn client_for(ctx: &Ctx, client_id: &str) -> Result<Client, Reply> {
    if let (Some(config), true) = (&ctx.config.cimd, cimd::is_document_url(client_id)) {
        return match cimd::cached(ctx.store, client_id, ctx.now) {
            Some(Ok(client)) => Ok(client),
            Some(Err(why)) => Err(bad_request(&format!(
                "The application's metadata document cannot be used: {why}."
            ))
            .into()),
            None => match cimd::fetch_for(config, client_id) {
                Ok(fetch) => Err(Reply::Fetch(fetch)),
                Err(why) => Err(bad_request(&format!(
                    "The application's metadata document cannot be fetched: {why}."
                ))
                .into()),
            },
        };
    }
    clients::find(ctx.config, ctx.store, client_id, ctx.now)
        .ok_or_else(|| bad_request("The application is not registered with this server.").into())
}

fn bad_request(message: &str) -> Response {
    pages::error_page(400, "This sign-in request cannot be completed", message)
}

/// The redirect back to the client, with `iss` (RFC 9207) and the unchanged `state`.
fn redirect(
    ctx: &Ctx,
    redirect_uri: &str,
    params: &[(&str, &str)],
    state: Option<&str>,
) -> Response {
    let mut pairs: Vec<(&str, &str)> = params.to_vec();
    if let Some(state) = state {
        pairs.push(("state", state));
    }
    pairs.push(("iss", &ctx.config.issuer));
    let separator = if redirect_uri.contains('?') { '&' } else { '?' };
    let location = format!("{redirect_uri}{separator}{}", form::encode(&pairs));
    Response {
        status: 302,
        headers: vec![
            ("location".into(), location),
            ("cache-control".into(), "no-store".into()),
        ],
        body: vec![],
    }
}

pub(crate) fn redirect_error(
    ctx: &Ctx,
    redirect_uri: &str,
    error: &str,
    description: &str,
    state: Option<&str>,
) -> Response {
    redirect(
        ctx,
        redirect_uri,
        &[("error", error), ("error_description", description)],
        state,
    )
}

fn start(ctx: &mut Ctx, req: &AuthRequest) -> Reply {
    let params = match Params::from_path(req.path()) {
        Ok(p) => p,
        Err(name) => {
            return bad_request(&format!("The parameter {name} appears more than once.")).into()
        }
    };
    let Some(client_id) = params.get("client_id") else {
        return bad_request("The request names no client (client_id is missing).").into();
    };
    let client = match client_for(ctx, client_id) {
        Ok(client) => client,
        Err(reply) => return reply,
    };
    start_for(ctx, req, &params, client)
}

fn start_for(ctx: &mut Ctx, req: &AuthRequest, params: &Params, client: Client) -> Reply {
    let redirect_uri = match params.get("redirect_uri") {
        Some(uri) if redirect_matches(&client.redirect_uris, uri) => uri.to_string(),
        Some(_) => {
            return bad_request("The redirect URI is not registered for this application.").into()
        }
        None if client.redirect_uris.len() == 1 => client.redirect_uris.concat(),
        None => return bad_request("The request has no redirect URI.").into(),
    };
    let state = params.get("state");
    let fail = |error: &str, description: &str| -> Reply {
        redirect_error(ctx, &redirect_uri, error, description, state).into()
    };
    if params.get("response_type") != Some("code") {
        return fail(
            "unsupported_response_type",
            "Only response_type=code is supported",
        );
    }
    if !client.allows_grant("authorization_code") {
        return fail(
            "unauthorized_client",
            "This client may not use the authorization code flow",
        );
    }
    let Some(challenge) = params.get("code_challenge") else {
        return fail(
            "invalid_request",
            "PKCE is required: send code_challenge with code_challenge_method=S256",
        );
    };
    if params.get("code_challenge_method") != Some("S256") {
        return fail(
            "invalid_request",
            "Only code_challenge_method=S256 is supported",
        );
    }
    if !pkce::valid_challenge(challenge) {
        return fail(
            "invalid_request",
            "code_challenge is not a valid S256 challenge",
        );
    }
    let scopes = match params.get("scope") {
        Some(requested) => scope::split(requested),
        None => scope::default_for(ctx.config, &client),
    };
    if let Some(bad) = scopes
        .iter()
        .find(|s| !scope::known(ctx.config, s) || !client.allows_scope(s))
    {
        return fail(
            "invalid_scope",
            &format!("Scope {bad} is not available to this client"),
        );
    }
    let resource = match scope::resource(ctx.resources, params.get("resource")) {
        Ok(r) => r,
        Err(_) => {
            return fail(
                "invalid_target",
                "The resource is not served by this authorization server",
            )
        }
    };
    let pending = Pending {
        client_id: client.client_id.clone(),
        redirect_uri: redirect_uri.clone(),
        scope: scopes,
        resource,
        code_challenge: challenge.to_string(),
        state: state.map(str::to_string),
        exp: ctx.now + PENDING_TTL,
    };
    let (csrf, new_csrf) = match req.cookie(CSRF_COOKIE).filter(|c| c.len() >= 16) {
        Some(existing) => (existing.to_string(), false),
        None => match crate::random::id() {
            Some(id) => (id, true),
            None => {
                return pages::error_page(500, "Server error", "No randomness available.").into()
            }
        },
    };
    let config = ctx.config;
    let reply = match (session(ctx, req), &config.upstream) {
        (Some((session, user)), _) => proceed(ctx, &client, &pending, &session, user, &csrf).into(),
        (None, Some(upstream)) if ctx.config.users.is_empty() => {
            to_upstream(ctx, upstream, &client, &pending, &csrf)
        }
        (None, _) => sign_in_page(ctx, &client, &pending, &csrf, None).into(),
    };
    match reply {
        Reply::Response(response) if new_csrf => Reply::Response(response.with_header(
            "set-cookie",
            cookie(CSRF_COOKIE, &csrf, ctx.config.session_ttl),
        )),
        other => other,
    }
}

/// Sign-in at the upstream provider: our consent first (a client the operator did not mark
/// trusted must be approved here, whatever the provider remembers), then the redirect.
fn to_upstream(
    ctx: &Ctx,
    upstream: &UpstreamConfig,
    client: &Client,
    pending: &Pending,
    csrf: &str,
) -> Reply {
    if client.skip_consent {
        return crate::federation::flow::begin(ctx, upstream, pending);
    }
    consent_page(ctx, client, pending, None, csrf).into()
}

fn submit(ctx: &mut Ctx, req: &AuthRequest) -> Reply {
    if req.media_type() != "application/x-www-form-urlencoded" {
        return bad_request("The form was not sent as a form.").into();
    }
    let form = match Params::parse(req.body) {
        Ok(f) => f,
        Err(name) => {
            return bad_request(&format!("The field {name} appears more than once.")).into()
        }
    };
    let csrf_ok = match (req.cookie(CSRF_COOKIE), form.get("csrf")) {
        (Some(cookie), Some(field)) => bool::from(cookie.as_bytes().ct_eq(field.as_bytes())),
        _ => false,
    };
    if !csrf_ok {
        return pages::error_page(
            403,
            "This form cannot be accepted",
            "The form expired or was not sent from this page. Start the sign-in again from your application.",
        )
        .into();
    }
    let csrf = form.get("csrf").unwrap_or_default().to_string();
    let pending: Option<Pending> = form
        .get("request")
        .and_then(|r| ctx.config.sealer.open_json(Purpose::PendingRequest, r));
    let Some(pending) = pending.filter(|p| p.exp >= ctx.now) else {
        return bad_request(
            "The sign-in took too long or the form was changed. Start again from your application.",
        )
        .into();
    };
    let Some(client) = clients::find(ctx.config, ctx.store, &pending.client_id, ctx.now) else {
        return bad_request("The application is not registered with this server.").into();
    };
    let action = form.get("action");
    if action == Some("deny") {
        return redirect_error(
            ctx,
            &pending.redirect_uri,
            "access_denied",
            "The user denied the request",
            pending.state.as_deref(),
        )
        .into();
    }
    let config = ctx.config;
    if let (Some(upstream), Some(action @ ("upstream" | "continue_upstream"))) =
        (&config.upstream, action)
    {
        // From the sign-in page's provider button, consent still comes first.
        if action == "upstream" && !client.skip_consent {
            return consent_page(ctx, &client, &pending, None, &csrf).into();
        }
        return crate::federation::flow::begin(ctx, upstream, &pending);
    }
    submit_local(ctx, req, &form, &client, &pending, &csrf).into()
}

/// The built-in users' sign-in and consent.
fn submit_local(
    ctx: &mut Ctx,
    req: &AuthRequest,
    form: &Params,
    client: &Client,
    pending: &Pending,
    csrf: &str,
) -> Response {
    match form.get("action") {
        Some("sign_in") => {
            let username = form.get("username").unwrap_or_default();
            let password = form.get("password").unwrap_or_default();
            let Some(user) = check_password(&ctx.config.users, username, password) else {
                return sign_in_page(
                    ctx,
                    client,
                    pending,
                    csrf,
                    Some("The username or password is not right."),
                );
            };
            let session = Session {
                username: user.username.clone(),
                sub: user.subject.clone(),
                exp: ctx.now + ctx.config.session_ttl,
            };
            let Some(sealed) = ctx.config.sealer.seal_json(Purpose::Session, &session) else {
                return pages::error_page(500, "Server error", "Could not start a session.");
            };
            let user = user.clone();
            proceed(ctx, client, pending, &session, Some(&user), csrf).with_header(
                "set-cookie",
                cookie(SESSION_COOKIE, &sealed, ctx.config.session_ttl),
            )
        }
        Some("approve") => {
            let Some((session, user)) = session(ctx, req) else {
                return sign_in_page(
                    ctx,
                    client,
                    pending,
                    csrf,
                    Some("Your sign-in expired; sign in again."),
                );
            };
            issue_code(
                ctx,
                pending,
                &session.sub,
                &|s| user_may_grant(user, s),
                None,
            )
        }
        _ => bad_request("The form has no valid action."),
    }
}

/// After sign-in: the consent page, or the code at once for a trusted client.
fn proceed(
    ctx: &Ctx,
    client: &Client,
    pending: &Pending,
    session: &Session,
    user: Option<&User>,
    csrf: &str,
) -> Response {
    if client.skip_consent {
        return issue_code(
            ctx,
            pending,
            &session.sub,
            &|s| user_may_grant(user, s),
            None,
        );
    }
    consent_page(ctx, client, pending, Some(&session.username), csrf)
}

/// The consent page: for a signed-in person, or (`username` `None`) before the upstream
/// provider's sign-in.
fn consent_page(
    ctx: &Ctx,
    client: &Client,
    pending: &Pending,
    username: Option<&str>,
    csrf: &str,
) -> Response {
    let Some(request) = ctx
        .config
        .sealer
        .seal_json(Purpose::PendingRequest, pending)
    else {
        return pages::error_page(500, "Server error", "Could not prepare the form.");
    };
    let descriptions: Vec<(&str, &str)> = pending
        .scope
        .iter()
        .map(|s| {
            let description = ctx
                .config
                .scopes
                .iter()
                .find(|(n, _)| n == s)
                .map(|(_, d)| d.as_str())
                .unwrap_or(s.as_str());
            (s.as_str(), description)
        })
        .collect();
    let view = ConsentView {
        server_name: &ctx.config.display_name,
        client_name: &client.name,
        client_is_dynamic: client.dynamic,
        redirect_host: &display_host(&pending.redirect_uri),
        signed_in: match username {
            Some(name) => SignedIn::As(name),
            None => SignedIn::Next(
                ctx.config
                    .upstream
                    .as_ref()
                    .map(|u| u.name.as_str())
                    .unwrap_or_default(),
            ),
        },
        scopes: descriptions,
    };
    pages::consent(
        &view,
        &FormState {
            action: &ctx.config.endpoints.authorize,
            request: &request,
            csrf,
        },
    )
}

fn sign_in_page(
    ctx: &Ctx,
    client: &Client,
    pending: &Pending,
    csrf: &str,
    error: Option<&str>,
) -> Response {
    let Some(request) = ctx
        .config
        .sealer
        .seal_json(Purpose::PendingRequest, pending)
    else {
        return pages::error_page(500, "Server error", "Could not prepare the form.");
    };
    pages::sign_in(
        &ctx.config.display_name,
        &client.name,
        &FormState {
            action: &ctx.config.endpoints.authorize,
            request: &request,
            csrf,
        },
        ctx.config.upstream.as_ref().map(|u| u.name.as_str()),
        error,
    )
}

/// Whether a built-in user may grant `scope` (a person signed in upstream is checked by the
/// provider's rules instead).
fn user_may_grant(user: Option<&User>, scope: &str) -> bool {
    user.is_none_or(|u| u.scopes.is_empty() || u.scopes.iter().any(|s| s == scope))
}

/// The code for `sub`, for the scopes both asked for and allowed to the person.
pub(crate) fn issue_code(
    ctx: &Ctx,
    pending: &Pending,
    sub: &str,
    may_grant: &dyn Fn(&str) -> bool,
    upstream: Option<String>,
) -> Response {
    let granted: Vec<String> = pending
        .scope
        .iter()
        .filter(|s| may_grant(s))
        .cloned()
        .collect();
    if granted.is_empty() && !pending.scope.is_empty() {
        return redirect_error(
            ctx,
            &pending.redirect_uri,
            "access_denied",
            "The user may not grant the requested scopes",
            pending.state.as_deref(),
        );
    }
    let Some(jti) = crate::random::id() else {
        return pages::error_page(500, "Server error", "No randomness available.");
    };
    let code = Code {
        jti,
        client_id: pending.client_id.clone(),
        redirect_uri: pending.redirect_uri.clone(),
        code_challenge: pending.code_challenge.clone(),
        scope: granted.join(" "),
        resource: pending.resource.clone(),
        sub: sub.to_string(),
        exp: ctx.now + ctx.config.code_ttl,
        upstream,
    };
    let Some(sealed) = grants::seal_code(ctx.config, &code) else {
        return pages::error_page(500, "Server error", "Could not issue the code.");
    };
    redirect(
        ctx,
        &pending.redirect_uri,
        &[("code", &sealed)],
        pending.state.as_deref(),
    )
}

/// The signed-in person, if the session cookie is ours, unexpired, and the user still exists.
fn session<'c>(ctx: &'c Ctx, req: &AuthRequest) -> Option<(Session, Option<&'c User>)> {
    let sealed = req.cookie(SESSION_COOKIE)?;
    let session: Session = ctx.config.sealer.open_json(Purpose::Session, sealed)?;
    if session.exp < ctx.now {
        return None;
    }
    let user = ctx
        .config
        .users
        .iter()
        .find(|u| u.username == session.username)?;
    Some((session, Some(user)))
}

/// Checks a password; an unknown name costs the same hashing as a known one.
fn check_password<'u>(users: &'u [User], username: &str, password: &str) -> Option<&'u User> {
    let user = users.iter().find(|u| u.username == username);
    match user {
        Some(u) if u.password.verify(password.as_bytes()) => Some(u),
        Some(_) => None,
        None => {
            if let Some(any) = users.first() {
                let _ = any.password.verify(password.as_bytes());
            }
            None
        }
    }
}

pub(crate) fn cookie(name: &str, value: &str, max_age: u64) -> String {
    format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={max_age}")
}
