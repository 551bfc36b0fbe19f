//! Fixtures shared by the fuzz targets: one fixed configuration (resource server with HMAC and
//! public-key issuers, the built-in authorization server, MCP inspection) built from JSON like
//! the unit tests do, fixed keys, a fixed clock, and helpers to split an input into fields.
//!
//! Every key here is a fixed, public test key: it exists only so fuzz inputs can carry valid
//! signatures and sealed grants. Never use it anywhere else.

use std::cell::RefCell;
use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{KeyInit, Mac};
use mcp_oauth_wasm::config;
use mcp_oauth_wasm::gateway::{Action, Decision, Gateway, Request};
use mcp_oauth_wasm::http::Response;
use mcp_oauth_wasm::secret_hash::SecretHash;
use mcp_oauth_wasm::store::MemoryStore;
use serde_json::{json, Value};

/// The fixed clock (2027-01-15): seeds minted for it never expire.
pub const NOW: u64 = 1_800_000_000;
pub const ORIGIN: &str = "https://mcp.example.com";
pub const RESOURCE: &str = "https://mcp.example.com/mcp";
/// Issuer of HMAC (HS256/384/512) tokens signed with [`HS_SECRET`].
pub const HS_ISSUER: &str = "https://hs.example.com";
/// Issuer with an inline JWK Set: [`RSA_PUBLIC_JWK`], [`ED_PUBLIC_JWK`], [`es_public_jwk`].
pub const KEYS_ISSUER: &str = "https://keys.example.com";
pub const HS_SECRET: &[u8] = b"fuzz-secret-fuzz-secret-fuzz-sec";
/// The built-in authorization server's ES256 signing key (its issuer is [`ORIGIN`]).
pub const ES_PRIVATE_JWK: &str = r#"{"alg":"ES256","crv":"P-256","d":"cmKNDIfYBTVMDSZg6E0gbFXys_ITazkmRJkHJbZa9bA","kid":"fuzz-es","kty":"EC","use":"sig","x":"eHoqxRui7Yw0JS2IZ--rQomXduiWa5Nw8lWe-hYiXaY","y":"CZ6i_0YIfv-rcOyItOx0N36i47tSwY7nR8HEoAI3HdM"}"#;
pub const RSA_PUBLIC_JWK: &str = r#"{"kty":"RSA","kid":"fuzz-rs","n":"yv1lmAgq2N5oG7u4qKt_l7Syfn2lGTiqH7vHuHqz_QAfSZDOld-qWDlcp1Y5-N-N4a95y7sknn2_Mn4NSc69RWI3sA6s1UMlPLnZfs_p5tlqcgSoPzDsCde8sDQDIjPjO63wHnz9sERVuHSRAUxZhQExeakJ7W0YQ0QPdVjZf4y5p0aZXxd5GFTEmoPlEdmzwTD-Sv_nZ_8j7AsEK0fSmm5TmRWVZC0O3O4Gvc5yRRpPCkgZjTYW6mJj0G5SGc0cwrko-P-KrV4V94RlVxidzSgAgPo0twtDUdPffK5tF10rH7MFpXgwvqB1EVZajUAtakvoD8UeNsJEu20ke5_MFw","e":"AQAB"}"#;
pub const ED_PUBLIC_JWK: &str = r#"{"kty":"OKP","crv":"Ed25519","kid":"fuzz-ed","x":"iLIa35CYaT290fBDZSZCRPI1SXlHDU3x6mg6vA20hqE"}"#;
/// The sealing key of the authorization server (codes, refresh tokens, registered clients).
pub const SEALING_KEY: [u8; 32] = [7u8; 32];
/// Confidential client `svc` (client credentials), its secret.
pub const SVC_SECRET: &str = "svc-secret";
/// User `alice`; the hash uses the fewest PBKDF2 iterations the config accepts (10 000).
pub const ALICE_PASSWORD: &str = "wonderland";

/// The upstream identity provider of the federated sign-in (`federation` target).
pub const IDP: &str = "https://idp.example.com";
/// The gateway's client id at [`IDP`]: the `aud` of its id_tokens.
pub const IDP_CLIENT_ID: &str = "gateway";
/// The provider's ES256 key, which signs the id_tokens the harness mints.
pub const IDP_PRIVATE_JWK: &str = r#"{"kty":"EC","crv":"P-256","kid":"fuzz-idp","d":"y4H2znUs3i_Y0rTqHSXt6jiEf1qidrSEYdZFF_jH-0A","x":"kfDKskP8IL-TvsYxH2GKuvE43ezc9V5HJH9zf8f_tOA","y":"WtTPx44vk_cH-35NDpCAx8m8P2WAuC7QZ1ftb18ef5w"}"#;
/// The client that signs people in through [`IDP`] (it skips our consent page), and where it
/// gets its code back.
pub const FEDERATION_CLIENT: &str = "trusted";
pub const REDIRECT_URI: &str = "http://127.0.0.1:7777/callback";
/// The PKCE pair of every authorization request the harness makes (RFC 7636 appendix B).
pub const CODE_VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
pub const CODE_CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// The public half of [`ES_PRIVATE_JWK`].
pub fn es_public_jwk() -> Value {
    let mut jwk: Value = serde_json::from_str(ES_PRIVATE_JWK).unwrap_or_default();
    if let Some(members) = jwk.as_object_mut() {
        members.remove("d");
    }
    jwk
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_default()
}

/// The fixture configuration, as the plugin would receive it.
pub fn config_json() -> Value {
    json!({
        "resource": RESOURCE,
        "resource_name": "Fuzz",
        "issuers": [
            {"issuer": HS_ISSUER, "secrets": [{"kid": "hs", "value": String::from_utf8_lossy(HS_SECRET)}]},
            {"issuer": KEYS_ISSUER, "jwks": {"keys": [es_public_jwk(), json_of(RSA_PUBLIC_JWK), json_of(ED_PUBLIC_JWK)]}}
        ],
        "token_cache_entries": 16,
        "routes": [
            {"prefix": "/mcp", "scopes": ["mcp:tools"]},
            {"prefix": "/sse", "scopes": ["mcp:tools"], "resource": "https://mcp.example.com/sse"},
            {"prefix": "/admin", "methods": ["POST"], "scopes": ["admin"]}
        ],
        "public_paths": ["/public"],
        "cors": {"allowed_origins": ["https://app.example.com"]},
        "authorization_server": {
            "signing_keys": [{"jwk": json_of(ES_PRIVATE_JWK)}],
            "sealing_keys": [{"kid": "s1", "value_base64url": URL_SAFE_NO_PAD.encode(SEALING_KEY)}],
            "scopes": [
                {"name": "mcp:tools", "description": "Use the tools"},
                {"name": "mcp:write", "description": "Change things"},
                {"name": "mcp:admin", "description": "Administer"}
            ],
            "default_scopes": ["mcp:tools"],
            "users": [{
                "username": "alice",
                "password_hash": SecretHash::pbkdf2_of(ALICE_PASSWORD.as_bytes(), b"saltsalt", 10_000),
                "scopes": ["mcp:tools", "mcp:write"]
            }],
            "clients": [
                {"client_id": "svc", "client_secret_hash": SecretHash::sha256_of(SVC_SECRET.as_bytes()), "scopes": ["mcp:tools", "mcp:write"]},
                {"client_id": "app", "client_name": "The App", "redirect_uris": ["http://127.0.0.1:7777/callback"]}
            ],
            "rate_limits": {"token_per_minute_per_client": 100000, "token_per_minute_per_address": 100000, "register_per_minute_per_address": 100000}
        },
        "mcp": {
            "max_body_bytes": 65536,
            "rules": [
                {"method": "tools/call", "name": "delete_*", "scopes": ["mcp:write"]},
                {"method": "resources/read", "uri": "file:///secret/*", "scopes": ["mcp:admin"]},
                {"method": "prompts/get", "name": "p?", "scopes": ["mcp:tools"]}
            ],
            "default_scopes": ["mcp:tools"],
            "clients": [
                {"client_id": "svc", "deny_tools": ["forbidden", "*_danger"]},
                {"client_id": "bot", "allow_tools": ["search", "get_*"]}
            ],
            "annotation_scopes": {"read_only": "mcp:tools", "write": "mcp:write", "destructive": "mcp:admin"}
        }
    })
}

/// The fixture plus what calls out to other servers: opaque tokens checked by introspection,
/// Client ID Metadata Documents, and a backend credential on the `/backend` route.
pub fn upstreams_config_json() -> Value {
    let mut config = config_json();
    config["introspection"] = json!({
        "endpoint": "https://idp.example.com/introspect", "cluster": "idp",
        "client_id": "gateway", "client_secret": "gateway-secret", "issuer": "https://idp.example.com"
    });
    config["backend_credentials"] = json!([{
        "name": "backend", "token_endpoint": "https://idp.example.com/token", "cluster": "idp",
        "client_id": "gateway", "client_secret": "gateway-secret", "scope": "backend"
    }]);
    config["routes"] = json!([
        {"prefix": "/mcp", "scopes": ["mcp:tools"]},
        {"prefix": "/backend", "scopes": ["mcp:tools"], "backend_credential": "backend"}
    ]);
    config["authorization_server"]["client_id_metadata_documents"] = json!({"cluster": "cimd"});
    config
}

/// How the gateway's sign-in goes through [`IDP`], one per `federation` variant.
pub const FEDERATION_VARIANTS: usize = 4;

/// The `authorization_server.upstream` section of a variant: 0, OpenID Connect with discovery,
/// an email-domain allow-list and a scope rule; 1, OpenID Connect with explicit endpoints
/// (keys and userinfo on another host), userinfo too, a group allow-list on another claim,
/// `client_secret_post`, upstream tokens held for the backend; 2, plain OAuth 2.0 identified by
/// userinfo's numeric `id`, a user allow-list, held tokens; 3, discovery and userinfo, no lists.
pub fn upstream_json(variant: usize) -> Value {
    let mut upstream = json!({
        "name": "Example ID", "cluster": "idp", "client_id": IDP_CLIENT_ID,
        "client_secret": "gateway secret"
    });
    let extra = match variant {
        0 => json!({
            "issuer": IDP,
            "allowed_email_domains": ["example.com"],
            "scope_rules": [{"claim": "groups", "values": ["admins"], "scopes": ["mcp:admin"]}],
            "base_scopes": ["mcp:tools"]
        }),
        1 => json!({
            "issuer": IDP,
            "authorization_endpoint": format!("{IDP}/auth?tenant=t1"),
            "token_endpoint": format!("{IDP}/token"),
            "jwks_uri": "https://keys.idp.example.com/jwks",
            "userinfo_endpoint": "https://api.idp.example.com/userinfo",
            "clusters": {"keys.idp.example.com": "idp-keys", "api.idp.example.com": "idp-api"},
            "use_userinfo": true, "client_auth": "client_secret_post",
            "allowed_groups": ["staff"], "groups_claim": "roles",
            "scope_rules": [{"claim": "roles", "values": ["admin"], "scopes": ["mcp:admin"]}],
            "base_scopes": ["mcp:tools"]
        }),
        2 => json!({
            "authorization_endpoint": "https://github.example/login/oauth/authorize",
            "token_endpoint": "https://github.example/login/oauth/access_token",
            "userinfo_endpoint": "https://api.github.example/user",
            "scopes": ["read:user"], "subject_claim": "id",
            "allowed_users": ["424242", "octo@example.com"],
            "scope_rules": [{"claim": "login", "values": ["octo"], "scopes": ["mcp:admin"]}],
            "base_scopes": ["mcp:tools"], "token_header": "x-upstream-token"
        }),
        _ => json!({
            "issuer": IDP, "use_userinfo": true, "authorize_params": {"prompt": "login"}
        }),
    };
    if let (Some(section), Value::Object(extra)) = (upstream.as_object_mut(), extra) {
        section.extend(extra);
    }
    upstream
}

/// A configuration whose people sign in at [`IDP`] ([`upstream_json`]): the built-in
/// authorization server without users, the client [`FEDERATION_CLIENT`], and `/mcp` (with the
/// upstream token for the backend in variants 1 and 2).
pub fn federation_config_json(variant: usize) -> Value {
    json!({
        "resource": RESOURCE,
        "routes": [{"prefix": "/mcp", "scopes": ["mcp:tools"], "upstream_token": variant == 1 || variant == 2}],
        "authorization_server": {
            "signing_keys": [{"jwk": json_of(ES_PRIVATE_JWK)}],
            "sealing_keys": [{"kid": "s1", "value_base64url": URL_SAFE_NO_PAD.encode(SEALING_KEY)}],
            "scopes": [
                {"name": "mcp:tools", "description": "Use the tools"},
                {"name": "mcp:admin", "description": "Administer"}
            ],
            "clients": [{"client_id": FEDERATION_CLIENT, "redirect_uris": [REDIRECT_URI], "skip_consent": true}],
            "upstream": upstream_json(variant)
        }
    })
}

fn build(config: &Value) -> Gateway {
    let env = |_: &str| None;
    match config::parse(config.to_string().as_bytes(), &env) {
        Ok((config, verifier)) => Gateway { config, verifier },
        Err(e) => panic!("fuzz fixture config: {e}"),
    }
}

/// Builds the fixture gateway; a failure is a bug in the fixture, so it panics.
pub fn build_gateway() -> Gateway {
    build(&config_json())
}

thread_local! {
    static GATEWAY: RefCell<Option<Gateway>> = const { RefCell::new(None) };
    static UPSTREAMS_GATEWAY: RefCell<Option<Gateway>> = const { RefCell::new(None) };
    static FEDERATION_GATEWAYS: RefCell<Vec<Gateway>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with the fixture gateway, built once per process. Its token cache is emptied first,
/// so every input is judged alone (a crash reproduces from its input file).
pub fn with_gateway<R>(f: impl FnOnce(&Gateway) -> R) -> R {
    GATEWAY.with(|cell| {
        let mut slot = cell.borrow_mut();
        let gateway = slot.get_or_insert_with(build_gateway);
        gateway.verifier.cache.clear();
        f(gateway)
    })
}

/// [`with_gateway`] for the [`upstreams_config_json`] gateway.
pub fn with_upstreams_gateway<R>(f: impl FnOnce(&Gateway) -> R) -> R {
    UPSTREAMS_GATEWAY.with(|cell| {
        let mut slot = cell.borrow_mut();
        let gateway = slot.get_or_insert_with(|| build(&upstreams_config_json()));
        gateway.verifier.cache.clear();
        f(gateway)
    })
}

/// [`with_gateway`] for the [`federation_config_json`] gateway of `variant` (modulo
/// [`FEDERATION_VARIANTS`]).
pub fn with_federation_gateway<R>(variant: usize, f: impl FnOnce(&Gateway) -> R) -> R {
    FEDERATION_GATEWAYS.with(|cell| {
        let mut gateways = cell.borrow_mut();
        if gateways.is_empty() {
            *gateways = (0..FEDERATION_VARIANTS)
                .map(|v| build(&federation_config_json(v)))
                .collect();
        }
        match gateways.get_mut(variant % FEDERATION_VARIANTS) {
            Some(gateway) => {
                gateway.verifier.cache.clear();
                f(gateway)
            }
            None => panic!("no federation gateway {variant}"),
        }
    })
}

/// What the filter does with a request: decide on the headers and, when the gateway asks for
/// the body, decide again with `body`. Each call has a fresh store.
pub fn send(gateway: &Gateway, request: &Request, body: &[u8]) -> Decision {
    send_in(gateway, &mut MemoryStore::default(), request, body)
}

/// [`send`] with a given store.
pub fn send_in(
    gateway: &Gateway,
    store: &mut MemoryStore,
    request: &Request,
    body: &[u8],
) -> Decision {
    let decision = gateway.decide(request, NOW, store);
    match decision.action {
        Action::ReadBody { max_bytes } if body.len() > max_bytes => {
            gateway.decide_body_too_large(request)
        }
        Action::ReadBody { .. } => gateway.decide_with_body(request, body, NOW, store),
        _ => decision,
    }
}

/// An upstream's answer to a callout (token introspection, a client metadata document).
#[derive(Clone, Copy)]
pub struct Answer<'a> {
    pub status: Option<&'a str>,
    pub cache_control: Option<&'a str>,
    pub body: &'a [u8],
}

/// [`send_in`], then, like the filter, when the gateway asks for a callout: hand it `answer`
/// and decide once more. That second decision must not ask for the same callout again (the
/// filter would answer the request with a 502).
pub fn send_with_answer(
    gateway: &Gateway,
    store: &mut MemoryStore,
    request: &Request,
    body: &[u8],
    answer: Answer,
) -> Decision {
    let first = send_in(gateway, store, request, body);
    match &first.action {
        Action::Introspect(call) => {
            gateway.accept_introspection(&call.token_key, answer.status, answer.body, NOW, store)
        }
        Action::FetchClientMetadata(fetch) => gateway.accept_client_metadata(
            &fetch.url,
            answer.status,
            answer.cache_control,
            answer.body,
            NOW,
            store,
        ),
        _ => return first,
    }
    let second = send_in(gateway, store, request, body);
    assert!(
        !matches!(
            second.action,
            Action::Introspect(_) | Action::FetchClientMetadata(_)
        ),
        "the gateway asks again after its answer was accepted: {:?}",
        second.action
    );
    second
}

/// `header.payload.signature` with HS256 over the given (arbitrary) header and payload bytes,
/// so inputs reach the claim checks behind the signature.
pub fn hs256_token(header: &[u8], payload: &[u8]) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let signature = match hmac::Hmac::<sha2::Sha256>::new_from_slice(HS_SECRET) {
        Ok(mut mac) => {
            mac.update(signing_input.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    };
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// `header.payload.signature` with ES256 and [`IDP_PRIVATE_JWK`] over the given (arbitrary)
/// header and payload bytes: an id_token of the provider, whatever its claims say.
pub fn idp_token(header: &[u8], payload: &[u8]) -> String {
    use p256::ecdsa::signature::Signer;
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    // Loading the key computes its public point: once per process, not per input.
    static KEY: OnceLock<p256::ecdsa::SigningKey> = OnceLock::new();
    let key = KEY.get_or_init(|| {
        let d = json_of(IDP_PRIVATE_JWK)["d"]
            .as_str()
            .and_then(|d| URL_SAFE_NO_PAD.decode(d).ok())
            .unwrap_or_default();
        match p256::ecdsa::SigningKey::from_slice(&d) {
            Ok(key) => key,
            Err(e) => panic!("fuzz fixture IDP key: {e}"),
        }
    });
    let signature: p256::ecdsa::Signature = key.sign(signing_input.as_bytes());
    format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature.to_bytes())
    )
}

/// The public half of [`IDP_PRIVATE_JWK`].
pub fn idp_public_jwk() -> Value {
    let mut jwk = json_of(IDP_PRIVATE_JWK);
    if let Some(members) = jwk.as_object_mut() {
        members.remove("d");
    }
    jwk
}

/// Splits `data` at its first `n - 1` newlines: `n` fields, the last one the rest (which may
/// hold newlines). Missing fields are empty. Seeds stay readable text this way.
pub fn fields(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut out = Vec::with_capacity(n);
    let mut rest = data;
    while out.len() + 1 < n {
        match rest.iter().position(|b| *b == b'\n') {
            Some(i) => {
                out.push(rest.get(..i).unwrap_or_default());
                rest = rest.get(i + 1..).unwrap_or_default();
            }
            None => {
                out.push(rest);
                rest = &[];
            }
        }
    }
    out.push(rest);
    out
}

/// `haystack` with every `needle` replaced by `with` (the targets' `$PLACEHOLDER`s).
pub fn replace(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut rest = haystack;
    while let Some(i) = rest.windows(needle.len()).position(|w| w == needle) {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(with);
        rest = &rest[i + needle.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// A field as text (lossy: the host hands the core `&str` headers).
pub fn text(field: &[u8]) -> String {
    String::from_utf8_lossy(field).into_owned()
}

/// An optional header: an empty field means "not sent".
pub fn optional(field: &str) -> Option<&str> {
    (!field.is_empty()).then_some(field)
}

/// A valid HS256 access token of [`HS_ISSUER`] for [`RESOURCE`], for `client_id` with `scope`.
pub fn access_token(client_id: &str, scope: &str) -> String {
    let header = json!({"alg": "HS256", "typ": "at+jwt"});
    let claims = json!({
        "iss": HS_ISSUER, "aud": RESOURCE, "sub": "fuzz-user", "client_id": client_id,
        "scope": scope, "iat": NOW, "exp": NOW + 900, "jti": "fuzz-jti"
    });
    hs256_token(header.to_string().as_bytes(), claims.to_string().as_bytes())
}

/// The identities the MCP targets call with: a client with a deny list, a client with an allow
/// list, and one with every scope and no list. Picked by an input byte.
pub const CALLERS: [(&str, &str); 3] = [
    ("svc", "mcp:tools"),
    ("bot", "mcp:tools mcp:write"),
    ("other", "mcp:tools mcp:write mcp:admin"),
];

/// The response of a decision that must answer (`what` names the endpoint in the panic).
pub fn response_of(decision: Decision, what: &str) -> Response {
    match decision.action {
        Action::Respond(response) => response,
        other => panic!("{what} must answer, not {other:?}"),
    }
}

/// A successful answer's JSON body, which must have the string member `name`.
pub fn json_with(response: &Response, name: &str) -> (Value, String) {
    let body: Value = match serde_json::from_slice(&response.body) {
        Ok(body) => body,
        Err(e) => panic!("a {} answer is not JSON: {e}", response.status),
    };
    match body[name].as_str() {
        Some(value) => {
            let value = value.to_string();
            (body, value)
        }
        None => panic!("a {} answer without {name}: {body}", response.status),
    }
}

/// Asserts the status, showing the body when it differs.
pub fn assert_status(response: &Response, status: u16) {
    assert_eq!(
        response.status,
        status,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
}

/// `POST /oauth/token` from 192.0.2.1, the way the filter hands it over: headers first, then
/// the body the gateway asks for.
pub fn token_request(
    gateway: &Gateway,
    store: &mut MemoryStore,
    authorization: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> Response {
    let request = Request {
        method: "POST",
        path: "/oauth/token",
        authorization: authorization.into_iter().collect(),
        content_type,
        client_address: Some("192.0.2.1:5000"),
        ..Default::default()
    };
    match gateway.decide(&request, NOW, store).action {
        Action::ReadBody { .. } => response_of(
            gateway.decide_with_body(&request, body, NOW, store),
            "the token endpoint",
        ),
        other => panic!("the token endpoint must read the body, not {other:?}"),
    }
}
