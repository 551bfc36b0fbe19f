//! `POST /oauth/token`: the authorization-code (PKCE), refresh-token (rotating) and
//! client-credentials grants, with RFC 6749 §5.2 errors.

use serde_json::json;

use super::clients::{self, AuthError, Authenticated};
use super::context::{json_error, method_not_allowed, too_many_requests, AuthRequest, Ctx};
use super::grants::{self, AccessToken, Code, Refresh};
use super::scope;
use super::state::{self, Rotation};
use super::Reply;
use crate::config::state_store::EtcdConfig;
use crate::etcd::work::{self, NewFamily, Work};
use crate::federation::held;
use crate::form::Params;
use crate::http::Response;

pub fn handle(ctx: &mut Ctx, req: &AuthRequest) -> Reply {
    if req.method() != "POST" {
        return method_not_allowed("POST").into();
    }
    if req.media_type() != "application/x-www-form-urlencoded" {
        return json_error(
            400,
            "invalid_request",
            "Send the parameters as application/x-www-form-urlencoded",
        )
        .into();
    }
    let form = match Params::parse(req.body) {
        Ok(form) => form,
        Err(name) => {
            return json_error(
                400,
                "invalid_request",
                &format!("Parameter {name} is repeated"),
            )
            .into()
        }
    };
    let limits = ctx.config.rate_limits;
    if let Err(wait) = state::rate_limit(
        ctx.store,
        &format!("token-ip:{}", req.address()),
        limits.token_per_minute_per_address,
        ctx.now,
    ) {
        return too_many_requests(wait).into();
    }
    let auth =
        match clients::authenticate(ctx.config, ctx.store, ctx.now, req.authorization(), &form) {
            Ok(auth) => auth,
            Err(error) => return client_error(error).into(),
        };
    if let Err(wait) = state::rate_limit(
        ctx.store,
        &format!("token-client:{}", auth.client.client_id),
        limits.token_per_minute_per_client,
        ctx.now,
    ) {
        return too_many_requests(wait).into();
    }
    let Some(grant_type) = form.get("grant_type") else {
        return json_error(400, "invalid_request", "grant_type is required").into();
    };
    if !matches!(
        grant_type,
        "authorization_code" | "refresh_token" | "client_credentials"
    ) {
        return json_error(
            400,
            "unsupported_grant_type",
            "Use authorization_code, refresh_token or client_credentials",
        )
        .into();
    }
    if !auth.client.allows_grant(grant_type) {
        return json_error(
            400,
            "unauthorized_client",
            &format!("This client may not use {grant_type}"),
        )
        .into();
    }
    match grant_type {
        "authorization_code" => authorization_code(ctx, &auth, &form),
        "refresh_token" => refresh_token(ctx, &auth, &form),
        _ => client_credentials(ctx, &auth, &form).into(),
    }
}

/// `invalid_client` is 401, with `WWW-Authenticate: Basic` when the client tried Basic.
pub fn client_error(error: AuthError) -> Response {
    match error {
        AuthError::InvalidRequest(why) => json_error(400, "invalid_request", why),
        AuthError::InvalidClient { basic } => {
            let response = json_error(401, "invalid_client", "Client authentication failed");
            if basic {
                response.with_header(
                    "www-authenticate",
                    "Basic realm=\"mcp-oauth\", charset=\"UTF-8\"",
                )
            } else {
                response
            }
        }
    }
}

fn invalid_grant(description: &str) -> Response {
    json_error(400, "invalid_grant", description)
}

fn unavailable() -> Response {
    json_error(
        503,
        "temporarily_unavailable",
        "The grant state could not be updated; retry",
    )
}

fn authorization_code(ctx: &mut Ctx, auth: &Authenticated, form: &Params) -> Reply {
    let Some(code_text) = form.get("code") else {
        return json_error(400, "invalid_request", "code is required").into();
    };
    let Some(verifier) = form.get("code_verifier") else {
        return json_error(400, "invalid_request", "code_verifier is required (PKCE)").into();
    };
    let Some(code) = grants::open_code(ctx.config, code_text) else {
        return invalid_grant("The authorization code is invalid").into();
    };
    if code.exp < ctx.now {
        return invalid_grant("The authorization code expired").into();
    }
    if code.client_id != auth.client.client_id {
        return invalid_grant("The authorization code was issued to another client").into();
    }
    if form.get("redirect_uri") != Some(code.redirect_uri.as_str()) {
        return invalid_grant("redirect_uri does not match the authorization request").into();
    }
    if !super::pkce::verify(&code.code_challenge, verifier) {
        return invalid_grant("The code_verifier does not match the code_challenge").into();
    }
    if let Some(resource) = form.get("resource") {
        if resource != code.resource {
            return json_error(
                400,
                "invalid_target",
                "resource differs from the authorization request",
            )
            .into();
        }
    }
    if let Some(etcd) = ctx.etcd {
        return redeem_in_etcd(ctx, etcd, auth, &code);
    }
    match state::redeem_code_once(ctx.store, &code.jti, code.exp, ctx.now) {
        Ok(true) => {}
        Ok(false) => {
            // RFC 9700 §4.2.4: a replayed code revokes what the first redemption got.
            let _ = state::revoke_family(
                ctx.store,
                &code.jti,
                ctx.now + ctx.config.refresh_token_ttl,
                ctx.now + ctx.config.access_token_ttl,
            );
            return invalid_grant("The authorization code was already used").into();
        }
        Err(_) => return unavailable().into(),
    }
    let (refresh, access) = match code_grant(ctx, auth, &code) {
        Ok(grant) => grant,
        Err(response) => return response.into(),
    };
    if let Some(r) = &refresh {
        if state::start_family(ctx.store, &r.fam, r.exp, &access.jti, r.iat).is_err() {
            return unavailable().into();
        }
    }
    issue(ctx, access, &code.scope, refresh).into()
}

/// What a redeemed code yields: its first refresh token (if the client may refresh) and an
/// access token, naming the grant when upstream tokens are held for it.
fn code_grant(
    ctx: &mut Ctx,
    auth: &Authenticated,
    code: &Code,
) -> Result<(Option<Refresh>, AccessToken), Response> {
    let held = hold_upstream(ctx, &code.jti, code.upstream.as_deref())?;
    let refresh = first_refresh(ctx, auth, code, held.clone());
    let grant = held.as_ref().map(|_| code.jti.as_str());
    let access = mint(
        ctx,
        &code.sub,
        &code.client_id,
        &code.scope,
        &code.resource,
        grant,
    )?;
    Ok((refresh, access))
}

/// The refresh token a code redemption starts its family with, if the client may refresh;
/// `upstream`: the sealed upstream tokens it carries (federated sign-in).
fn first_refresh(
    ctx: &Ctx,
    auth: &Authenticated,
    code: &Code,
    upstream: Option<String>,
) -> Option<Refresh> {
    auth.client.allows_grant("refresh_token").then(|| Refresh {
        fam: code.jti.clone(),
        gen: 0,
        client_id: code.client_id.clone(),
        scope: code.scope.clone(),
        resource: code.resource.clone(),
        sub: code.sub.clone(),
        exp: ctx.now + ctx.config.refresh_token_ttl,
        iat: ctx.now,
        upstream,
    })
}

/// With etcd: the answer is made first, then sent only once etcd has recorded the code as
/// redeemed (create-if-absent) and started its refresh family.
fn redeem_in_etcd(ctx: &mut Ctx, etcd: &EtcdConfig, auth: &Authenticated, code: &Code) -> Reply {
    let (refresh, access) = match code_grant(ctx, auth, code) {
        Ok(grant) => grant,
        Err(response) => return response.into(),
    };
    let family = refresh.as_ref().map(|r| NewFamily {
        exp: r.exp,
        access_jti: access.jti.clone(),
        access_exp: ctx.now + ctx.config.access_token_ttl,
    });
    let response = issue(ctx, access, &code.scope, refresh);
    let Some(nonce) = crate::random::id() else {
        return json_error(500, "server_error", "No randomness available").into();
    };
    if response.status != 200 {
        return response.into();
    }
    let work = Work::RedeemCode {
        jti: code.jti.clone(),
        exp: code.exp,
        nonce,
        family,
    };
    work::start(etcd, ctx.store, work, response, ctx.now).into()
}

fn refresh_token(ctx: &mut Ctx, auth: &Authenticated, form: &Params) -> Reply {
    let Some(text) = form.get("refresh_token") else {
        return json_error(400, "invalid_request", "refresh_token is required").into();
    };
    let Some(old) = grants::open_refresh(ctx.config, text) else {
        return invalid_grant("The refresh token is invalid").into();
    };
    if old.exp < ctx.now {
        return invalid_grant("The refresh token expired").into();
    }
    if old.client_id != auth.client.client_id {
        return invalid_grant("The refresh token was issued to another client").into();
    }
    if let Some(resource) = form.get("resource") {
        if resource != old.resource {
            return json_error(
                400,
                "invalid_target",
                "resource differs from the original grant",
            )
            .into();
        }
    }
    let granted = scope::split(&old.scope);
    let scope = match form.get("scope") {
        Some(requested) => {
            let requested = scope::split(requested);
            if !requested.iter().all(|s| granted.contains(s)) {
                return json_error(
                    400,
                    "invalid_scope",
                    "A refresh cannot add scopes to the grant",
                )
                .into();
            }
            requested.join(" ")
        }
        None => old.scope.clone(),
    };
    // No grant is rotated 2^64 times: the last generation is refused rather than overflow.
    let Some(next_generation) = old.gen.checked_add(1) else {
        return invalid_grant("The grant was revoked").into();
    };
    let exp = ctx.now + ctx.config.refresh_token_ttl;
    let held = match hold_upstream(ctx, &old.fam, old.upstream.as_deref()) {
        Ok(held) => held,
        Err(response) => return response.into(),
    };
    let grant = held.as_ref().map(|_| old.fam.as_str());
    let access = match mint(ctx, &old.sub, &old.client_id, &scope, &old.resource, grant) {
        Ok(access) => access,
        Err(response) => return response.into(),
    };
    let access_exp = ctx.now + ctx.config.access_token_ttl;
    let next = Refresh {
        gen: next_generation,
        exp,
        iat: ctx.now,
        scope: old.scope.clone(),
        upstream: held,
        ..old.clone()
    };
    if let Some(etcd) = ctx.etcd {
        // With etcd: the answer goes out only once the compare-and-swap of the generation won.
        let work = Work::Rotate {
            family: old.fam.clone(),
            generation: old.gen,
            issued_at: old.iat,
            exp,
            access_jti: access.jti.clone(),
            access_exp,
        };
        let response = issue(ctx, access, &scope, Some(next));
        if response.status != 200 {
            return response.into();
        }
        return work::start(etcd, ctx.store, work, response, ctx.now).into();
    }
    let presented = state::Presented {
        family: &old.fam,
        generation: old.gen,
        issued_at: old.iat,
    };
    let issued = state::Issued {
        now: ctx.now,
        expires_at: exp,
        access_jti: &access.jti,
        access_expires_at: access_exp,
    };
    match state::rotate_family(ctx.store, &presented, &issued) {
        Ok(Rotation::Rotated) => {}
        Ok(Rotation::Reused) => {
            return invalid_grant("The refresh token was already used; the grant is revoked").into()
        }
        Ok(Rotation::Revoked) => return invalid_grant("The grant was revoked").into(),
        Err(_) => return unavailable().into(),
    }
    issue(ctx, access, &scope, Some(next)).into()
}

fn client_credentials(ctx: &mut Ctx, auth: &Authenticated, form: &Params) -> Response {
    if !auth.with_secret {
        return json_error(
            400,
            "unauthorized_client",
            "client_credentials needs a confidential client",
        );
    }
    let client = &auth.client;
    let scope = match form.get("scope") {
        Some(requested) => {
            let requested = scope::split(requested);
            if let Some(bad) = requested
                .iter()
                .find(|s| !scope::known(ctx.config, s) || !client.allows_scope(s))
            {
                return json_error(
                    400,
                    "invalid_scope",
                    &format!("Scope {bad} is not available to this client"),
                );
            }
            requested.join(" ")
        }
        None => scope::default_for(ctx.config, client).join(" "),
    };
    let resource = match scope::resource(ctx.resources, form.get("resource")) {
        Ok(r) => r,
        Err(response) => return response,
    };
    let access = match mint(
        ctx,
        &client.client_id,
        &client.client_id,
        &scope,
        &resource,
        None,
    ) {
        Ok(access) => access,
        Err(response) => return response,
    };
    issue(ctx, access, &scope, None)
}

fn mint(
    ctx: &Ctx,
    sub: &str,
    client_id: &str,
    scope: &str,
    resource: &str,
    grant: Option<&str>,
) -> Result<AccessToken, Response> {
    grants::mint_access_token(ctx.config, sub, client_id, scope, resource, grant, ctx.now)
        .ok_or_else(|| json_error(500, "server_error", "Could not sign the token"))
}

/// The newest upstream tokens of `grant` (sealed, to carry in the next refresh token), written
/// to the store for backend requests. A grant whose provider refused a refresh is over: the
/// client must sign in again.
fn hold_upstream(
    ctx: &mut Ctx,
    grant: &str,
    carried: Option<&str>,
) -> Result<Option<String>, Response> {
    let Some(sealed) = carried else {
        return Ok(None);
    };
    let Some(tokens) = held::open(ctx.config, sealed) else {
        return Err(invalid_grant("The grant is invalid"));
    };
    match held::current(ctx.store, ctx.config, grant, tokens) {
        Ok(newest) => Ok(held::seal(ctx.config, &newest)),
        Err(held::Dead) => Err(invalid_grant(
            "The sign-in at the identity provider expired; sign in again",
        )),
    }
}

/// The token response (RFC 6749 §5.1).
fn issue(ctx: &Ctx, access: AccessToken, scope: &str, refresh: Option<Refresh>) -> Response {
    let mut body = json!({
        "access_token": access.token,
        "token_type": "Bearer",
        "expires_in": ctx.config.access_token_ttl,
        "scope": scope,
    });
    if let Some(refresh) = refresh {
        let Some(sealed) = grants::seal_refresh(ctx.config, &refresh) else {
            return json_error(500, "server_error", "Could not seal the refresh token");
        };
        if let Some(obj) = body.as_object_mut() {
            obj.insert("refresh_token".into(), json!(sealed));
        }
    }
    Response::json(200, &body).with_header("pragma", "no-cache")
}
