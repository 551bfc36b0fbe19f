//! `POST /oauth/register`: Dynamic Client Registration (RFC 7591), stateless. The whole
//! registration is sealed into the returned `client_id`; a confidential client's secret is
//! random and only its hash is sealed in, so nothing is stored and every replica with the same
//! sealing keys knows every client.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use super::clients::{Registration, REGISTERED_PREFIX};
use super::context::{json_error, method_not_allowed, too_many_requests, AuthRequest, Ctx};
use super::redirect::check_redirect_uri;
use super::scope;
use super::state;
use crate::http::Response;
use crate::resource::bearer::{bearer_token, Credential};
use crate::seal::Purpose;

const MAX_REDIRECT_URIS: usize = 10;
const MAX_URI_LEN: usize = 1000;
const MAX_NAME_LEN: usize = 200;

fn metadata_error(description: &str) -> Response {
    json_error(400, "invalid_client_metadata", description)
}

pub fn handle(ctx: &mut Ctx, req: &AuthRequest) -> Response {
    if req.method() != "POST" {
        return method_not_allowed("POST");
    }
    if !ctx.config.initial_access_tokens.is_empty() {
        let presented = match bearer_token(&req.authorization().into_iter().collect::<Vec<_>>()) {
            Credential::Bearer(token) => Some(token),
            _ => None,
        };
        let allowed = presented.is_some_and(|t| {
            ctx.config
                .initial_access_tokens
                .iter()
                .any(|h| h.verify(t.as_bytes()))
        });
        if !allowed {
            return json_error(
                401,
                "invalid_token",
                "Registration needs a valid initial access token",
            )
            .with_header("www-authenticate", "Bearer error=\"invalid_token\"");
        }
    }
    let limit = ctx.config.rate_limits.register_per_minute_per_address;
    if let Err(wait) = state::rate_limit(
        ctx.store,
        &format!("register-ip:{}", req.address()),
        limit,
        ctx.now,
    ) {
        return too_many_requests(wait);
    }
    if req.media_type() != "application/json" {
        return metadata_error("Send the client metadata as application/json");
    }
    let Ok(Value::Object(meta)) = serde_json::from_slice::<Value>(req.body) else {
        return metadata_error("The body is not a JSON object");
    };
    let registration = match build(ctx, &meta) {
        Ok(r) => r,
        Err(response) => return response,
    };
    let (registration, secret) = registration;
    let Some(sealed) = ctx
        .config
        .sealer
        .seal_json(Purpose::RegisteredClient, &registration)
    else {
        return json_error(500, "server_error", "Could not seal the registration");
    };
    let client_id = format!("{REGISTERED_PREFIX}{sealed}");
    let mut body = json!({
        "client_id": client_id,
        "client_id_issued_at": registration.issued_at,
        "redirect_uris": registration.redirect_uris,
        "grant_types": registration.grant_types,
        "response_types": if registration.grant_types.iter().any(|g| g == "authorization_code") { json!(["code"]) } else { json!([]) },
        "token_endpoint_auth_method": registration.auth_method,
        "application_type": registration.application_type,
    });
    if let Some(obj) = body.as_object_mut() {
        if let Some(name) = &registration.client_name {
            obj.insert("client_name".into(), json!(name));
        }
        if let Some(scope) = &registration.scope {
            obj.insert("scope".into(), json!(scope));
        }
        if let Some(secret) = secret {
            obj.insert("client_secret".into(), json!(secret));
            obj.insert("client_secret_expires_at".into(), json!(0));
        }
    }
    Response::json(201, &body).with_header("pragma", "no-cache")
}

fn strings(
    meta: &serde_json::Map<String, Value>,
    name: &str,
) -> Result<Option<Vec<String>>, Response> {
    match meta.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| metadata_error(&format!("{name} must be an array of strings")))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(metadata_error(&format!(
            "{name} must be an array of strings"
        ))),
    }
}

fn string(meta: &serde_json::Map<String, Value>, name: &str) -> Result<Option<String>, Response> {
    match meta.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(metadata_error(&format!("{name} must be a string"))),
    }
}

/// Checks the metadata and builds the registration, plus the secret to show once.
fn build(
    ctx: &Ctx,
    meta: &serde_json::Map<String, Value>,
) -> Result<(Registration, Option<String>), Response> {
    let auth_method =
        string(meta, "token_endpoint_auth_method")?.unwrap_or_else(|| "client_secret_basic".into());
    if !matches!(
        auth_method.as_str(),
        "none" | "client_secret_basic" | "client_secret_post"
    ) {
        return Err(metadata_error(
            "token_endpoint_auth_method must be none, client_secret_basic or client_secret_post",
        ));
    }
    let grant_types =
        strings(meta, "grant_types")?.unwrap_or_else(|| vec!["authorization_code".into()]);
    if grant_types.is_empty() {
        return Err(metadata_error("grant_types must not be empty"));
    }
    for g in &grant_types {
        if !matches!(
            g.as_str(),
            "authorization_code" | "refresh_token" | "client_credentials"
        ) {
            return Err(metadata_error(&format!("grant type {g} is not supported")));
        }
    }
    if grant_types.iter().any(|g| g == "client_credentials") && auth_method == "none" {
        return Err(metadata_error(
            "client_credentials needs a confidential client",
        ));
    }
    let code_flow = grant_types.iter().any(|g| g == "authorization_code");
    if let Some(types) = strings(meta, "response_types")? {
        let ok = types.iter().all(|t| t == "code") && (code_flow || types.is_empty());
        if !ok {
            return Err(metadata_error("response_types must be [\"code\"]"));
        }
    }
    let redirect_uris = strings(meta, "redirect_uris")?.unwrap_or_default();
    if code_flow && redirect_uris.is_empty() {
        return Err(json_error(
            400,
            "invalid_redirect_uri",
            "redirect_uris is required for authorization_code",
        ));
    }
    if redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err(json_error(
            400,
            "invalid_redirect_uri",
            "Too many redirect URIs",
        ));
    }
    for uri in &redirect_uris {
        if uri.len() > MAX_URI_LEN {
            return Err(json_error(
                400,
                "invalid_redirect_uri",
                "A redirect URI is too long",
            ));
        }
        check_redirect_uri(uri)
            .map_err(|why| json_error(400, "invalid_redirect_uri", &format!("{uri}: {why}")))?;
    }
    let application_type = string(meta, "application_type")?.unwrap_or_else(|| "web".into());
    if !matches!(application_type.as_str(), "web" | "native") {
        return Err(metadata_error("application_type must be web or native"));
    }
    let client_name = string(meta, "client_name")?;
    if client_name
        .as_ref()
        .is_some_and(|n| n.chars().count() > MAX_NAME_LEN || !crate::http::is_plain_text(n))
    {
        return Err(metadata_error(
            "client_name is too long or has control or invisible characters",
        ));
    }
    let requested_scope = string(meta, "scope")?;
    if let Some(s) = &requested_scope {
        if let Some(bad) = scope::split(s)
            .iter()
            .find(|s| !scope::known(ctx.config, s))
        {
            return Err(metadata_error(&format!("scope {bad} is not supported")));
        }
    }
    let secret = if auth_method == "none" {
        None
    } else {
        let bytes = crate::random::bytes::<32>()
            .ok_or_else(|| json_error(500, "server_error", "No randomness"))?;
        Some(URL_SAFE_NO_PAD.encode(bytes))
    };
    let registration = Registration {
        client_name,
        redirect_uris,
        grant_types,
        auth_method,
        secret_sha256: secret
            .as_ref()
            .map(|s| URL_SAFE_NO_PAD.encode(crate::secret_hash::sha256(s.as_bytes()))),
        scope: requested_scope,
        application_type,
        issued_at: ctx.now,
    };
    Ok((registration, secret))
}
