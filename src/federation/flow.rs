//! The sign-in itself: the redirect to the provider, the callback, and each call's answer.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

use super::documents::{self, Missing, KEYS_REFETCH_SECONDS};
use super::held::{self, HeldTokens};
use super::id_token::{self, IdTokenError};
use super::identity::{self, Refusal};
use super::{call_to, token_request, Answer, Step};
use crate::authz::authorize::{self, Pending};
use crate::authz::context::{AuthRequest, Ctx};
use crate::authz::pages;
use crate::authz::Reply;
use crate::config::upstream::{ProviderEndpoints, UpstreamConfig};
use crate::form::{self, Params};
use crate::http::Response;
use crate::seal::Purpose;

const FLOW_COOKIE_PREFIX: &str = "__Host-mcp-oauth-flow-";
/// How long a person may take at the provider.
const FLOW_TTL: u64 = 600;

/// The sign-in's secrets, sealed into a cookie bound to this browser while the person is at
/// the provider.
#[derive(Clone, Serialize, Deserialize)]
#[serde(remote = "Self")]
struct Flow {
    state: String,
    nonce: String,
    verifier: String,
    pending: Pending,
    exp: u64,
}
json_object!(Flow, Serialize);

/// A sign-in between the callback and its end, carried from one call's answer to the next.
/// It holds secrets, so its `Debug` shows none.
pub struct SignIn {
    flow: Flow,
    endpoints: ProviderEndpoints,
    /// The token endpoint's answer (access, refresh and id tokens).
    tokens: Map<String, Value>,
    claims: Option<Map<String, Value>>,
    keys_fetched: bool,
    userinfo_done: bool,
}

impl std::fmt::Debug for SignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SignIn { .. }")
    }
}

/// The cookie that carries the flow of `state` (several sign-ins may run in one browser).
fn cookie_name(state: &str) -> String {
    let tag: String = state.chars().take(12).collect();
    format!("{FLOW_COOKIE_PREFIX}{tag}")
}

fn clear_cookie(state: &str) -> String {
    format!(
        "{}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0",
        cookie_name(state)
    )
}

fn callback_url(ctx: &Ctx) -> String {
    ctx.url(&ctx.config.endpoints.callback)
}

/// A page for a provider that cannot be reached or answered wrongly: nothing the person or the
/// application did, so no redirect; they can start again.
fn provider_failed(upstream: &UpstreamConfig, message: &str) -> Response {
    pages::error_page(
        502,
        "The sign-in could not be completed",
        &format!(
            "{} {message} Try again in a moment from your application.",
            upstream.name
        ),
    )
}

fn unreachable_page(upstream: &UpstreamConfig) -> Response {
    provider_failed(upstream, "could not be reached.")
}

/// The answer when the provider's configuration could not be fetched.
pub fn unavailable(upstream: &UpstreamConfig) -> Reply {
    unreachable_page(upstream).into()
}

fn bad_callback(message: &str) -> Reply {
    pages::error_page(400, "This sign-in cannot be completed", message).into()
}

/// Sends the person to the provider for `pending`.
pub(crate) fn begin(ctx: &Ctx, upstream: &UpstreamConfig, pending: &Pending) -> Reply {
    let endpoints = match documents::endpoints(upstream, &*ctx.store, ctx.now) {
        Ok(endpoints) => endpoints,
        Err(Missing::Fetch(call)) => return Reply::Upstream(call),
        Err(Missing::Broken(why)) => {
            log::warn!("mcp-oauth: upstream sign-in unavailable: {why}");
            return unreachable_page(upstream).into();
        }
    };
    let (Some(state), Some(nonce), Some(verifier)) = (
        crate::random::id(),
        crate::random::id(),
        crate::random::bytes::<32>().map(|b| URL_SAFE_NO_PAD.encode(b)),
    ) else {
        return pages::error_page(500, "Server error", "No randomness available.").into();
    };
    let challenge = URL_SAFE_NO_PAD.encode(crate::secret_hash::sha256(verifier.as_bytes()));
    let redirect_uri = callback_url(ctx);
    let scope = upstream.scopes.join(" ");
    let mut params: Vec<(&str, &str)> = vec![
        ("response_type", "code"),
        ("client_id", &upstream.client_id),
        ("redirect_uri", &redirect_uri),
        ("state", &state),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ];
    if !scope.is_empty() {
        params.push(("scope", &scope));
    }
    if upstream.is_oidc() {
        params.push(("nonce", &nonce));
    }
    params.extend(
        upstream
            .authorize_params
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str())),
    );
    let flow = Flow {
        state: state.clone(),
        nonce: nonce.clone(),
        verifier: verifier.clone(),
        pending: pending.clone(),
        exp: ctx.now + FLOW_TTL,
    };
    let Some(sealed) = ctx.config.sealer.seal_json(Purpose::UpstreamFlow, &flow) else {
        return pages::error_page(500, "Server error", "Could not start the sign-in.").into();
    };
    let separator = if endpoints.authorization.contains('?') {
        '&'
    } else {
        '?'
    };
    Response {
        status: 302,
        headers: vec![
            (
                "location".into(),
                format!(
                    "{}{separator}{}",
                    endpoints.authorization,
                    form::encode(&params)
                ),
            ),
            ("cache-control".into(), "no-store".into()),
            (
                "set-cookie".into(),
                authorize::cookie(&cookie_name(&state), &sealed, FLOW_TTL),
            ),
        ],
        body: vec![],
    }
    .into()
}

/// `/oauth/callback`: the person is back from the provider.
pub fn callback(ctx: &mut Ctx, upstream: &UpstreamConfig, req: &AuthRequest) -> Reply {
    if req.method() != "GET" {
        return crate::authz::context::method_not_allowed("GET").into();
    }
    let Ok(params) = Params::from_path(req.path()) else {
        return bad_callback("The provider's answer repeats a parameter.");
    };
    let Some(state) = params.get("state") else {
        return bad_callback(
            "The provider's answer has no state. Start again from your application.",
        );
    };
    let flow: Option<Flow> = req
        .cookie(&cookie_name(state))
        .and_then(|sealed| ctx.config.sealer.open_json(Purpose::UpstreamFlow, sealed));
    let Some(flow) =
        flow.filter(|f| f.exp >= ctx.now && bool::from(f.state.as_bytes().ct_eq(state.as_bytes())))
    else {
        return bad_callback(
            "This answer does not belong to a sign-in started in this browser, or it took too long. Start again from your application.",
        );
    };
    if let Some(error) = params.get("error") {
        let _ = consume(ctx, &flow);
        return finish(&flow, refused_upstream(ctx, upstream, &flow, error)).into();
    }
    let Some(code) = params.get("code") else {
        return bad_callback("The provider's answer has no code.");
    };
    let endpoints = match documents::endpoints(upstream, &*ctx.store, ctx.now) {
        Ok(endpoints) => endpoints,
        Err(Missing::Fetch(call)) => return Reply::Upstream(call),
        Err(Missing::Broken(why)) => {
            log::warn!("mcp-oauth: upstream sign-in unavailable: {why}");
            return finish(&flow, unreachable_page(upstream)).into();
        }
    };
    match consume(ctx, &flow) {
        Ok(true) => {}
        Ok(false) => {
            return bad_callback(
                "This sign-in was already completed. Start again from your application.",
            )
        }
        Err(()) => {
            return pages::error_page(503, "Try again", "The sign-in could not be recorded.").into()
        }
    }
    let redirect_uri = callback_url(ctx);
    let fields = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri.as_str()),
        ("code_verifier", flow.verifier.as_str()),
    ];
    let token_url = endpoints.token.clone();
    let sign_in = SignIn {
        flow: flow.clone(),
        endpoints,
        tokens: Map::new(),
        claims: None,
        keys_fetched: false,
        userinfo_done: false,
    };
    match token_request(
        upstream,
        &token_url,
        fields,
        Step::Exchange(Box::new(sign_in)),
    ) {
        Ok(call) => Reply::Upstream(call),
        Err(why) => {
            log::warn!("mcp-oauth: upstream token endpoint unusable: {why}");
            finish(&flow, unreachable_page(upstream)).into()
        }
    }
}

/// Marks the flow's `state` used; `Ok(false)` if it already was.
fn consume(ctx: &mut Ctx, flow: &Flow) -> Result<bool, ()> {
    let id = format!("upstream-{}", flow.state);
    crate::authz::state::redeem_code_once(ctx.store, &id, flow.exp, ctx.now).map_err(|_| ())
}

/// The provider said no (or failed) at its own page: tell the client, per RFC 6749 §4.1.2.1.
fn refused_upstream(ctx: &Ctx, upstream: &UpstreamConfig, flow: &Flow, error: &str) -> Response {
    let (code, description) = match error {
        "access_denied" => (
            "access_denied",
            format!("The sign-in at {} was cancelled or refused", upstream.name),
        ),
        "temporarily_unavailable" => (
            "temporarily_unavailable",
            format!("{} is temporarily unavailable", upstream.name),
        ),
        other => {
            let shown: String = other
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect();
            log::warn!("mcp-oauth: upstream sign-in failed at the provider: {shown}");
            (
                "server_error",
                format!("{} refused the sign-in ({shown})", upstream.name),
            )
        }
    };
    authorize::redirect_error(
        ctx,
        &flow.pending.redirect_uri,
        code,
        &description,
        flow.pending.state.as_deref(),
    )
}

/// Every end of a callback clears its flow cookie.
fn finish(flow: &Flow, response: Response) -> Response {
    response.with_header("set-cookie", clear_cookie(&flow.state))
}

/// Goes on with a sign-in after one of its calls answered.
pub fn resume(ctx: &mut Ctx, upstream: &UpstreamConfig, step: Step, answer: Answer) -> Reply {
    match step {
        // The gateway handles these itself: it caches the document or the refreshed token,
        // then handles the request again.
        Step::Discovery | Step::Refresh { .. } => unreachable_page(upstream).into(),
        Step::Exchange(mut sign_in) => {
            let tokens = answer.json_object().filter(|_| answer.ok());
            let Some(tokens) = tokens.filter(|t| !t.contains_key("error")) else {
                let why = answer
                    .json_object()
                    .and_then(|o| o.get("error").and_then(Value::as_str).map(str::to_string));
                log::warn!(
                    "mcp-oauth: upstream code exchange failed (status {:?}, error {:?})",
                    answer.status,
                    why
                );
                let page = match answer.status {
                    None => unreachable_page(upstream),
                    Some(s) if s >= 500 => unreachable_page(upstream),
                    Some(_) => provider_failed(upstream, "did not accept the sign-in."),
                };
                return finish(&sign_in.flow, page).into();
            };
            if super::header_safe_token(&tokens).is_none() {
                return finish(
                    &sign_in.flow,
                    provider_failed(upstream, "answered without a usable access token."),
                )
                .into();
            }
            sign_in.tokens = tokens;
            proceed(ctx, upstream, sign_in)
        }
        Step::Keys(mut sign_in) => {
            documents::accept_keys(ctx.store, answer, ctx.now);
            sign_in.keys_fetched = true;
            proceed(ctx, upstream, sign_in)
        }
        Step::Userinfo(mut sign_in) => {
            let Some(info) = answer.json_object().filter(|_| answer.ok()) else {
                log::warn!(
                    "mcp-oauth: upstream userinfo failed (status {:?})",
                    answer.status
                );
                let page = match answer.status {
                    Some(s) if s < 500 => {
                        provider_failed(upstream, "did not describe the account.")
                    }
                    _ => unreachable_page(upstream),
                };
                return finish(&sign_in.flow, page).into();
            };
            let mut claims = sign_in.claims.take().unwrap_or_default();
            if let Some(sub) = claims.get("sub") {
                if info.get("sub") != Some(sub) {
                    return finish(
                        &sign_in.flow,
                        provider_failed(upstream, "described another account."),
                    )
                    .into();
                }
            }
            for (name, value) in info {
                if name != "sub" || !claims.contains_key("sub") {
                    claims.insert(name, value);
                }
            }
            sign_in.claims = Some(claims);
            sign_in.userinfo_done = true;
            proceed(ctx, upstream, sign_in)
        }
    }
}

/// The next thing a sign-in needs: the keys, the id_token checked, userinfo, then the verdict.
fn proceed(ctx: &mut Ctx, upstream: &UpstreamConfig, mut sign_in: Box<SignIn>) -> Reply {
    if let (Some(issuer), None) = (&upstream.issuer, &sign_in.claims) {
        let id_token = sign_in.tokens.get("id_token").and_then(Value::as_str);
        let Some(id_token) = id_token.map(str::to_string) else {
            return finish(
                &sign_in.flow,
                provider_failed(upstream, "answered without an id_token."),
            )
            .into();
        };
        let need_keys = match documents::keys(&*ctx.store, ctx.now) {
            None => true,
            Some((keys, fetched_at)) => match id_token::verify(
                &id_token,
                &keys,
                issuer,
                &upstream.client_id,
                &sign_in.flow.nonce,
                ctx.now,
            ) {
                Ok(claims) => {
                    sign_in.claims = Some(claims);
                    false
                }
                Err(IdTokenError::UnknownKey) if ctx.now >= fetched_at + KEYS_REFETCH_SECONDS => {
                    true
                }
                Err(IdTokenError::UnknownKey) => {
                    return id_token_refused(upstream, &sign_in, "signed with an unknown key")
                }
                Err(IdTokenError::Invalid(why)) => {
                    return id_token_refused(upstream, &sign_in, &why)
                }
            },
        };
        if need_keys {
            if sign_in.keys_fetched {
                return finish(&sign_in.flow, unreachable_page(upstream)).into();
            }
            let Some(jwks) = sign_in.endpoints.jwks.clone() else {
                return id_token_refused(upstream, &sign_in, "no jwks_uri");
            };
            return call_or_fail(upstream, &jwks, vec![], Step::Keys, sign_in);
        }
    }
    if upstream.use_userinfo && !sign_in.userinfo_done {
        let Some(userinfo) = sign_in.endpoints.userinfo.clone() else {
            return finish(&sign_in.flow, unreachable_page(upstream)).into();
        };
        let access_token = super::header_safe_token(&sign_in.tokens).unwrap_or_default();
        let bearer = vec![(
            "authorization".to_string(),
            format!("Bearer {access_token}"),
        )];
        return call_or_fail(upstream, &userinfo, bearer, Step::Userinfo, sign_in);
    }
    let claims = sign_in.claims.clone().unwrap_or_default();
    let pending = &sign_in.flow.pending;
    let response = match identity::admit(upstream, &claims) {
        Ok(identity) => {
            let may_grant = identity.may_grant;
            // Held for the backend: sealed into our code, then into the grant.
            let held = upstream
                .hold_tokens
                .then(|| HeldTokens::from_answer(&sign_in.tokens, ctx.now, None))
                .flatten()
                .and_then(|tokens| held::seal(ctx.config, &tokens));
            authorize::issue_code(
                ctx,
                pending,
                &identity.subject,
                &|scope: &str| {
                    may_grant
                        .as_ref()
                        .is_none_or(|list| list.iter().any(|s| s == scope))
                },
                held,
            )
        }
        Err(Refusal(why)) => {
            log::info!("mcp-oauth: upstream sign-in refused: {why}");
            authorize::redirect_error(
                ctx,
                &pending.redirect_uri,
                "access_denied",
                why,
                pending.state.as_deref(),
            )
        }
    };
    finish(&sign_in.flow, response).into()
}

fn id_token_refused(upstream: &UpstreamConfig, sign_in: &SignIn, why: &str) -> Reply {
    log::warn!("mcp-oauth: upstream id_token refused: {why}");
    finish(
        &sign_in.flow,
        provider_failed(upstream, "sent a sign-in that could not be verified."),
    )
    .into()
}

fn call_or_fail(
    upstream: &UpstreamConfig,
    url: &str,
    headers: Vec<(String, String)>,
    step: impl FnOnce(Box<SignIn>) -> Step,
    sign_in: Box<SignIn>,
) -> Reply {
    let flow = sign_in.flow.clone();
    match call_to(upstream, "GET", url, headers, None, step(sign_in)) {
        Ok(call) => Reply::Upstream(call),
        Err(why) => {
            log::warn!("mcp-oauth: upstream endpoint unusable: {why}");
            finish(&flow, unreachable_page(upstream)).into()
        }
    }
}
