//! `POST /oauth/revoke` (RFC 7009) and `POST /oauth/introspect` (RFC 7662).

use serde_json::json;

use super::clients;
use super::context::{json_error, method_not_allowed, AuthRequest, Ctx};
use super::grants;
use super::state;
use super::token::client_error;
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

/// Revokes a refresh token (its whole grant) or an access token (on this Envoy at once).
/// Answers 200 whether or not the token was known, as RFC 7009 §2.2 asks.
pub fn revoke(ctx: &mut Ctx, req: &AuthRequest) -> Response {
    let form = match form_of(req) {
        Ok(form) => form,
        Err(response) => return response,
    };
    let auth =
        match clients::authenticate(ctx.config, ctx.store, ctx.now, req.authorization(), &form) {
            Ok(auth) => auth,
            Err(error) => return client_error(error),
        };
    let Some(token) = form.get("token") else {
        return json_error(400, "invalid_request", "token is required");
    };
    let client_id = &auth.client.client_id;
    if let Some(refresh) = grants::open_refresh(ctx.config, token) {
        if &refresh.client_id == client_id
            && state::revoke_family(
                ctx.store,
                &refresh.fam,
                refresh.exp,
                ctx.now + ctx.config.access_token_ttl,
            )
            .is_err()
        {
            return json_error(
                503,
                "temporarily_unavailable",
                "Could not record the revocation",
            );
        }
    } else if let Some(access) = grants::read_access_token(ctx.verifier, token, ctx.now) {
        let ours = access.issuer == ctx.config.issuer
            && access.client_id.as_deref() == Some(client_id.as_str());
        if let (true, Some(jti)) = (ours, access.jwt_id.as_deref()) {
            if state::revoke_access_token(ctx.store, jti, access.expires_at).is_err() {
                return json_error(
                    503,
                    "temporarily_unavailable",
                    "Could not record the revocation",
                );
            }
        }
    }
    Response {
        status: 200,
        headers: vec![("cache-control".into(), "no-store".into())],
        body: vec![],
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
