//! `POST /oauth/revoke` (RFC 7009) and `POST /oauth/introspect` (RFC 7662).

use serde_json::json;

use super::clients;
use super::context::{json_error, method_not_allowed, AuthRequest, Ctx};
use super::grants;
use super::state;
use super::token::client_error;
use super::Reply;
use crate::etcd::work::Work;
use crate::form::Params;
use crate::http::Response;

fn form_of(req: &AuthRequest) -> Result<Params, Response> {
    if req.method() != "POST" {
        return Err(method_not_allowed("POST"));
    }
    if req.media_type() != "application/x-www-form-urlencoded" {
        return Err(json_error(
            400,
            "invalid_request",
            "Send the parameters as application/x-www-form-urlencoded",
        ));
    }
    Params::parse(req.body).map_err(|name| {
        json_error(
            400,
            "invalid_request",
            &format!("Parameter {name} is repeated"),
        )
    })
}

/// Revokes a refresh token (its whole grant) or an access token: in this Envoy's shared data,
/// or in etcd (every replica) when it is configured.
/// Answers 200 whether or not the token was known, as RFC 7009 §2.2 asks.
pub fn revoke(ctx: &mut Ctx, req: &AuthRequest) -> Reply {
    let form = match form_of(req) {
        Ok(form) => form,
        Err(response) => return response.into(),
    };
    let auth =
        match clients::authenticate(ctx.config, ctx.store, ctx.now, req.authorization(), &form) {
            Ok(auth) => auth,
            Err(error) => return client_error(error).into(),
        };
    let Some(token) = form.get("token") else {
        return json_error(400, "invalid_request", "token is required").into();
    };
    let client_id = &auth.client.client_id;
    let work = if let Some(refresh) = grants::open_refresh(ctx.config, token) {
        (&refresh.client_id == client_id).then(|| Work::RevokeFamily {
            family: refresh.fam.clone(),
            exp: refresh.exp,
            access_exp: ctx.now + ctx.config.access_token_ttl,
        })
    } else if let Some(access) = grants::read_access_token(ctx.verifier, token, ctx.now) {
        let ours = access.issuer == ctx.config.issuer
            && access.client_id.as_deref() == Some(client_id.as_str());
        match (ours, access.jwt_id) {
            (true, Some(jti)) => Some(Work::RevokeAccess {
                jti,
                exp: access.expires_at,
            }),
            _ => None,
        }
    } else {
        None
    };
    let done = Response {
        status: 200,
        headers: vec![("cache-control".into(), "no-store".into())],
        body: vec![],
    };
    let Some(work) = work else {
        return done.into();
    };
    if let Some(etcd) = ctx.etcd {
        return crate::etcd::work::start(etcd, ctx.store, work, done, ctx.now).into();
    }
    let recorded = match &work {
        Work::RevokeFamily {
            family,
            exp,
            access_exp,
        } => state::revoke_family(ctx.store, family, *exp, *access_exp),
        Work::RevokeAccess { jti, exp } => state::revoke_access_token(ctx.store, jti, *exp),
        _ => Ok(()),
    };
    match recorded {
        Ok(()) => done.into(),
        Err(_) => json_error(
            503,
            "temporarily_unavailable",
            "Could not record the revocation",
        )
        .into(),
    }
}

/// Tells an authenticated confidential client whether a token is active, and what it carries.
pub fn introspect(ctx: &mut Ctx, req: &AuthRequest) -> Response {
    let form = match form_of(req) {
        Ok(form) => form,
        Err(response) => return response,
    };
    let auth =
        match clients::authenticate(ctx.config, ctx.store, ctx.now, req.authorization(), &form) {
            Ok(auth) if auth.with_secret => auth,
            Ok(_) => return client_error(clients::AuthError::InvalidClient { basic: false }),
            Err(error) => return client_error(error),
        };
    let _ = auth;
    let Some(token) = form.get("token") else {
        return json_error(400, "invalid_request", "token is required");
    };
    let inactive = || Response::json(200, &json!({ "active": false }));
    if let Some(access) = grants::read_access_token(ctx.verifier, token, ctx.now) {
        if access
            .jwt_id
            .as_deref()
            .is_some_and(|jti| state::access_token_revoked(ctx.store, jti))
        {
            return inactive();
        }
        return Response::json(
            200,
            &json!({
                "active": true,
                "token_type": "Bearer",
                "scope": access.scopes.join(" "),
                "client_id": access.client_id,
                "sub": access.subject,
                "iss": access.issuer,
                "aud": access.audiences,
                "exp": access.expires_at,
                "iat": access.issued_at,
                "jti": access.jwt_id,
            }),
        );
    }
    if let Some(refresh) = grants::open_refresh(ctx.config, token) {
        if refresh.exp >= ctx.now && !state::family_revoked(ctx.store, &refresh.fam) {
            return Response::json(
                200,
                &json!({
                    "active": true,
                    "token_type": "refresh_token",
                    "scope": refresh.scope,
                    "client_id": refresh.client_id,
                    "sub": refresh.sub,
                    "iss": ctx.config.issuer,
                    "aud": refresh.resource,
                    "exp": refresh.exp,
                }),
            );
        }
    }
    inactive()
}
