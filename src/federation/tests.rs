//! Federated sign-in in the core: identity rules, id_token checks, and the whole flow through
//! the gateway with a memory store, the provider's answers played by the test.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jwt_simple::prelude::*;
use serde_json::{json, Map, Value};

use super::id_token::{self, IdTokenError};
use super::identity::{admit, Refusal};
use super::{Answer, Step};
use crate::config;
use crate::form::Params;
use crate::gateway::{Action, Gateway, Request};
use crate::http::Response;
use crate::store::MemoryStore;

const ORIGIN: &str = "https://mcp.example.com";
const IDP: &str = "https://idp.example.com";
const REDIRECT: &str = "http://127.0.0.1:7777/callback";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const NOW: u64 = 1_800_000_000;

fn upstream_section(extra: Value) -> Value {
    let mut section = json!({
        "name": "Example ID",
        "issuer": IDP,
        "authorization_endpoint": format!("{IDP}/auth"),
        "token_endpoint": format!("{IDP}/token"),
        "jwks_uri": format!("{IDP}/jwks"),
        "cluster": "idp",
        "client_id": "gateway",
        "client_secret": "gateway secret",
        "allowed_email_domains": ["example.com"],
        "scope_rules": [{"claim": "groups", "values": ["admins"], "scopes": ["mcp:admin"]}],
        "base_scopes": ["mcp:tools"]
    });
    if let (Some(s), Value::Object(e)) = (section.as_object_mut(), extra) {
        s.extend(e);
    }
    section
}

/// A gateway whose provider is found by OpenID discovery at `IDP`.
fn discovering_gateway() -> Gateway {
    gateway(json!({
        "name": "Example ID", "issuer": IDP, "cluster": "idp",
        "client_id": "gateway", "client_secret": "s"
    }))
}

fn gateway(upstream: Value) -> Gateway {
    let signing: Value =
        serde_json::from_str(&ES256KeyPair::generate().with_key_id("k1").to_jwk()).unwrap();
    let cfg = json!({
        "resource": format!("{ORIGIN}/mcp"),
        "routes": [{"prefix": "/mcp"}],
        "authorization_server": {
            "signing_keys": [{"jwk": signing}],
            "sealing_keys": [{"kid": "s1", "value_base64url": URL_SAFE_NO_PAD.encode([7u8; 32])}],
            "scopes": [{"name": "mcp:tools", "description": "Use the tools"}, {"name": "mcp:admin", "description": "Administer"}],
            "clients": [
                {"client_id": "trusted", "redirect_uris": [REDIRECT], "skip_consent": true},
                {"client_id": "app", "client_name": "The App", "redirect_uris": [REDIRECT]}
            ],
            "upstream": upstream
        }
    });
    let (config, verifier) = config::parse(cfg.to_string().as_bytes(), &|_| None).unwrap();
    Gateway { config, verifier }
}

struct Provider {
    key: ES256KeyPair,
}

impl Provider {
    fn new() -> Provider {
        Provider {
            key: ES256KeyPair::generate().with_key_id("idp-1"),
        }
    }

    fn jwks(&self) -> Value {
        json!({"keys": [serde_json::from_str::<Value>(&self.key.public_key().to_jwk()).unwrap()]})
    }

    fn id_token(&self, claims: Value) -> String {
        let custom: Map<String, Value> = serde_json::from_value(claims).unwrap();
        let mut c = Claims::with_custom_claims(custom, Duration::from_secs(300))
            .with_issuer(IDP)
            .with_audience("gateway");
        c.issued_at = Some(UnixTimeStamp::from_secs(NOW));
        c.expires_at = Some(UnixTimeStamp::from_secs(NOW + 300));
        c.invalid_before = None;
        self.key.sign(c).unwrap()
    }
}

fn request<'a>(method: &'a str, path: &'a str, cookie: Option<&'a str>) -> Request<'a> {
    Request {
        method,
        path,
        cookie,
        client_address: Some("127.0.0.1:5000"),
        ..Default::default()
    }
}

fn respond(action: Action) -> Response {
    match action {
        Action::Respond(r) => r,
        other => panic!("expected a response, got {other:?}"),
    }
}

fn call(action: Action) -> super::Call {
    match action {
        Action::CallUpstream(call) => call,
        other => panic!("expected an upstream call, got {other:?}"),
    }
}

fn header<'a>(call: &'a super::Call, name: &str) -> &'a str {
    call.headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .unwrap()
}

fn query(location: &str) -> Params {
    Params::from_path(location).unwrap()
}

fn authorize_path(client: &str) -> String {
    format!(
        "/oauth/authorize?response_type=code&client_id={client}&redirect_uri={}&code_challenge={CHALLENGE}&code_challenge_method=S256&scope=mcp:tools%20mcp:admin&state=client-state",
        crate::form::encode(&[("", REDIRECT)]).trim_start_matches('=')
    )
}

/// The redirect to the provider: where it goes, and the flow cookie (`name=value`).
fn start(gw: &Gateway, store: &mut MemoryStore) -> (Params, String) {
    let path = authorize_path("trusted");
    let r = respond(gw.decide(&request("GET", &path, None), NOW, store).action);
    assert_eq!(r.status, 302, "{}", String::from_utf8_lossy(&r.body));
    let location = r.header("location").unwrap().to_string();
    let set_cookie = r.header("set-cookie").unwrap();
    assert!(set_cookie.starts_with("__Host-mcp-oauth-flow-"));
    assert!(set_cookie.contains("Secure; HttpOnly; SameSite=Lax"));
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    (query(&location), cookie)
}

/// The callback with `code`, through the exchange call it starts.
fn callback(gw: &Gateway, store: &mut MemoryStore, state: &str, cookie: &str) -> super::Call {
    let path = format!("/oauth/callback?code=upstream-code&state={state}");
    call(
        gw.decide(&request("GET", &path, Some(cookie)), NOW, store)
            .action,
    )
}

fn json_bytes(body: &Value) -> Vec<u8> {
    body.to_string().into_bytes()
}

/// Adds (or replaces) the fields of `extra` in the object `base`.
fn merge(base: &mut Value, extra: Value) {
    if let (Some(base), Value::Object(extra)) = (base.as_object_mut(), extra) {
        base.extend(extra);
    }
}

/// With the provider's keys cached: the redirect to the provider, the callback, and the
/// provider's token answer (`tokens` over a default access token) with an id_token of `claims`
/// (over this sign-in's nonce). Returns what the gateway does next.
fn sign_in_answered(
    gw: &Gateway,
    store: &mut MemoryStore,
    idp: &Provider,
    claims: Value,
    tokens: Value,
) -> Action {
    super::documents::accept_keys(
        store,
        Answer {
            status: Some(200),
            body: &json_bytes(&idp.jwks()),
        },
        NOW,
    );
    let (params, cookie) = start(gw, store);
    let exchange = callback(gw, store, params.get("state").unwrap(), &cookie);
    let mut id_claims = json!({"nonce": params.get("nonce").unwrap()});
    merge(&mut id_claims, claims);
    let mut answer = json!({"access_token": "up-at", "id_token": idp.id_token(id_claims)});
    merge(&mut answer, tokens);
    resume(gw, store, exchange.step, Some(200), &json_bytes(&answer))
}

fn resume(
    gw: &Gateway,
    store: &mut MemoryStore,
    step: Step,
    status: Option<u16>,
    body: &[u8],
) -> Action {
    let req = request("GET", "/oauth/callback?x", None);
    answer(gw, store, &req, step, status, body, NOW)
}

/// The provider's answer to `step`, for the request that made the call.
fn answer(
    gw: &Gateway,
    store: &mut MemoryStore,
    req: &Request,
    step: Step,
    status: Option<u16>,
    body: &[u8],
    now: u64,
) -> Action {
    gw.resume_upstream(req, None, step, Answer { status, body }, now, store)
        .action
}

/// The provider's answer to the upstream refresh that an MCP call with `access` started.
fn answer_refresh(
    gw: &Gateway,
    store: &mut MemoryStore,
    access: &str,
    step: Step,
    status: u16,
    body: &[u8],
    now: u64,
) -> Action {
    let bearer = format!("Bearer {access}");
    let req = Request {
        authorization: vec![&bearer],
        ..request("GET", "/mcp", None)
    };
    answer(gw, store, &req, step, Some(status), body, now)
}

#[test]
fn a_whole_sign_in_ends_with_our_code_for_the_mapped_person() {
    let gw = gateway(upstream_section(json!({})));
    let idp = Provider::new();
    let mut store = MemoryStore::default();
    let (params, cookie) = start(&gw, &mut store);
    assert_eq!(params.get("client_id"), Some("gateway"));
    assert_eq!(
        params.get("redirect_uri"),
        Some(&*format!("{ORIGIN}/oauth/callback"))
    );
    assert_eq!(params.get("scope"), Some("openid email profile"));
    assert_eq!(params.get("code_challenge_method"), Some("S256"));
    let state = params.get("state").unwrap().to_string();
    let nonce = params.get("nonce").unwrap().to_string();
    let challenge = params.get("code_challenge").unwrap().to_string();

    let exchange = callback(&gw, &mut store, &state, &cookie);
    assert_eq!(exchange.cluster, "idp");
    assert_eq!(header(&exchange, ":path"), "/token");
    assert_eq!(header(&exchange, ":authority"), "idp.example.com");
    let basic = STANDARD.encode("gateway:gateway+secret");
    assert_eq!(header(&exchange, "authorization"), format!("Basic {basic}"));
    let form = Params::parse(exchange.body.as_deref().unwrap()).unwrap();
    assert_eq!(form.get("grant_type"), Some("authorization_code"));
    assert_eq!(form.get("code"), Some("upstream-code"));
    let verifier = form.get("code_verifier").unwrap();
    assert!(crate::authz::pkce::verify(&challenge, verifier));

    let id_token = idp.id_token(
        json!({"sub": "u-1", "nonce": nonce, "email": "Alice@Example.com",
        "email_verified": true, "groups": ["admins"]}),
    );
    let tokens =
        json_bytes(&json!({"access_token": "up-at", "token_type": "Bearer", "id_token": id_token}));
    let keys = call(resume(&gw, &mut store, exchange.step, Some(200), &tokens));
    assert_eq!(header(&keys, ":path"), "/jwks");
    let jwks = json_bytes(&idp.jwks());
    let done = respond(resume(&gw, &mut store, keys.step, Some(200), &jwks));
    assert_eq!(done.status, 302, "{}", String::from_utf8_lossy(&done.body));
    let back = query(done.header("location").unwrap());
    assert_eq!(back.get("state"), Some("client-state"));
    assert_eq!(back.get("iss"), Some(ORIGIN));
    let clears: Vec<_> = done
        .headers
        .iter()
        .filter(|(n, v)| n == "set-cookie" && v.ends_with("Max-Age=0"))
        .collect();
    assert_eq!(clears.len(), 1, "the flow cookie is cleared");

    // Our code carries the provider's subject and the scopes its rules allow.
    let auth = gw.config.authorization_server.as_ref().unwrap();
    let code = crate::authz::grants::open_code(auth, back.get("code").unwrap()).unwrap();
    assert_eq!(code.sub, "u-1");
    assert_eq!(code.scope, "mcp:tools mcp:admin");
    assert_eq!(code.code_challenge, CHALLENGE);
    let _ = VERIFIER;

    // The callback cannot be replayed.
    let again = format!("/oauth/callback?code=upstream-code&state={state}");
    let replay = respond(
        gw.decide(&request("GET", &again, Some(&cookie)), NOW, &mut store)
            .action,
    );
    assert_eq!(replay.status, 400);
}

#[test]
fn keys_already_cached_skip_the_fetch_and_rules_limit_scopes() {
    let gw = gateway(upstream_section(json!({})));
    let idp = Provider::new();
    let mut store = MemoryStore::default();
    let claims = json!({"sub": "u-2", "email": "bob@example.com", "email_verified": true});
    let done = respond(sign_in_answered(&gw, &mut store, &idp, claims, json!({})));
    let back = query(done.header("location").unwrap());
    let auth = gw.config.authorization_server.as_ref().unwrap();
    let code = crate::authz::grants::open_code(auth, back.get("code").unwrap()).unwrap();
    assert_eq!(code.sub, "u-2");
    assert_eq!(code.scope, "mcp:tools", "no admins group, no admin scope");
}

#[test]
fn a_wrong_nonce_or_audience_gives_a_502_page_and_no_code() {
    for bad in [json!({"nonce": "other"}), json!({"aud": "someone-else"})] {
        let gw = gateway(upstream_section(json!({})));
        let idp = Provider::new();
        let mut store = MemoryStore::default();
        let mut claims = json!({"sub": "u-1", "email": "a@example.com", "email_verified": true});
        merge(&mut claims, bad.clone());
        let r = respond(sign_in_answered(&gw, &mut store, &idp, claims, json!({})));
        assert_eq!(r.status, 502, "{bad}");
        assert!(r.header("location").is_none());
    }
}

#[test]
fn a_person_outside_the_allow_list_is_sent_back_with_access_denied() {
    let gw = gateway(upstream_section(json!({})));
    let idp = Provider::new();
    let mut store = MemoryStore::default();
    let claims = json!({"sub": "u-3", "email": "eve@other.org", "email_verified": true});
    let r = respond(sign_in_answered(&gw, &mut store, &idp, claims, json!({})));
    assert_eq!(r.status, 302);
    let back = query(r.header("location").unwrap());
    assert_eq!(back.get("error"), Some("access_denied"));
    assert_eq!(back.get("state"), Some("client-state"));
    assert!(back.get("code").is_none());
}

#[test]
fn callback_errors_are_clear() {
    let gw = gateway(upstream_section(json!({})));
    let mut store = MemoryStore::default();
    let (params, cookie) = start(&gw, &mut store);
    let state = params.get("state").unwrap().to_string();
    // A state that is not this browser's flow.
    let path = "/oauth/callback?code=c&state=forged-state-value";
    let r = respond(
        gw.decide(&request("GET", path, Some(&cookie)), NOW, &mut store)
            .action,
    );
    assert_eq!(r.status, 400);
    // The right state without the cookie.
    let path = format!("/oauth/callback?code=c&state={state}");
    let r = respond(
        gw.decide(&request("GET", &path, None), NOW, &mut store)
            .action,
    );
    assert_eq!(r.status, 400);
    // The provider refused: the client hears access_denied.
    let path = format!("/oauth/callback?error=access_denied&state={state}");
    let r = respond(
        gw.decide(&request("GET", &path, Some(&cookie)), NOW, &mut store)
            .action,
    );
    assert_eq!(r.status, 302);
    let back = query(r.header("location").unwrap());
    assert_eq!(back.get("error"), Some("access_denied"));
    assert!(back
        .get("error_description")
        .unwrap()
        .contains("Example ID"));
}

#[test]
fn a_provider_that_fails_the_exchange_gives_a_502_page() {
    for (status, body) in [
        (None, Vec::new()),
        (Some(503), b"down".to_vec()),
        (Some(400), br#"{"error":"invalid_grant"}"#.to_vec()),
        (Some(200), br#"{"error":"bad_verification_code"}"#.to_vec()),
    ] {
        let gw = gateway(upstream_section(json!({})));
        let mut store = MemoryStore::default();
        let (params, cookie) = start(&gw, &mut store);
        let exchange = callback(&gw, &mut store, params.get("state").unwrap(), &cookie);
        let r = respond(resume(&gw, &mut store, exchange.step, status, &body));
        assert_eq!(r.status, 502, "{status:?}");
        let html = String::from_utf8(r.body).unwrap();
        assert!(html.contains("Example ID"));
    }
}

#[test]
fn a_client_that_needs_consent_is_asked_before_the_provider() {
    let gw = gateway(upstream_section(json!({})));
    let mut store = MemoryStore::default();
    let path = authorize_path("app");
    let r = respond(
        gw.decide(&request("GET", &path, None), NOW, &mut store)
            .action,
    );
    assert_eq!(r.status, 200);
    let html = String::from_utf8(r.body).unwrap();
    assert!(html.contains("value=\"continue_upstream\""));
    assert!(html.contains("sign in with <strong>Example ID</strong>"));
}

#[test]
fn discovery_is_fetched_once_and_cached() {
    let gw = discovering_gateway();
    let mut store = MemoryStore::default();
    let path = authorize_path("trusted");
    let fetch = call(
        gw.decide(&request("GET", &path, None), NOW, &mut store)
            .action,
    );
    assert_eq!(header(&fetch, ":path"), "/.well-known/openid-configuration");
    let doc = json!({"issuer": IDP, "authorization_endpoint": format!("{IDP}/a"),
        "token_endpoint": format!("{IDP}/t"), "jwks_uri": format!("{IDP}/k")});
    let body = doc.to_string().into_bytes();
    let req = request("GET", &path, None);
    let r = respond(answer(
        &gw,
        &mut store,
        &req,
        fetch.step,
        Some(200),
        &body,
        NOW,
    ));
    assert_eq!(r.status, 302);
    assert!(r
        .header("location")
        .unwrap()
        .starts_with(&format!("{IDP}/a?")));
    // Cached: the next sign-in goes straight to the provider.
    let r = respond(
        gw.decide(&request("GET", &path, None), NOW + 10, &mut store)
            .action,
    );
    assert_eq!(r.status, 302);

    // A document naming another issuer is refused.
    let mut store = MemoryStore::default();
    let fetch = call(
        gw.decide(&request("GET", &path, None), NOW, &mut store)
            .action,
    );
    let body = json!({"issuer": "https://evil.example", "authorization_endpoint": "https://evil.example/a",
        "token_endpoint": "https://evil.example/t", "jwks_uri": "https://evil.example/k"})
    .to_string()
    .into_bytes();
    let r = respond(answer(
        &gw,
        &mut store,
        &req,
        fetch.step,
        Some(200),
        &body,
        NOW,
    ));
    assert_eq!(r.status, 502);
}

#[test]
fn plain_oauth_providers_identify_people_by_userinfo() {
    let gw = gateway(json!({
        "name": "GitHub",
        "authorization_endpoint": "https://github.example/login/oauth/authorize",
        "token_endpoint": "https://github.example/login/oauth/access_token",
        "userinfo_endpoint": "https://api.github.example/user",
        "cluster": "github", "clusters": {"api.github.example": "github-api"},
        "client_id": "gateway", "client_secret": "s", "client_auth": "client_secret_post",
        "scopes": ["read:user"], "subject_claim": "id", "allowed_users": ["424242"]
    }));
    let mut store = MemoryStore::default();
    let (params, cookie) = start(&gw, &mut store);
    assert!(params.get("nonce").is_none(), "no nonce without OpenID");
    let exchange = callback(&gw, &mut store, params.get("state").unwrap(), &cookie);
    let form = Params::parse(exchange.body.as_deref().unwrap()).unwrap();
    assert_eq!(form.get("client_secret"), Some("s"));
    let tokens = json_bytes(&json!({"access_token": "gho_x", "token_type": "bearer"}));
    let info = call(resume(&gw, &mut store, exchange.step, Some(200), &tokens));
    assert_eq!(info.cluster, "github-api");
    assert_eq!(header(&info, "authorization"), "Bearer gho_x");
    let user = json_bytes(&json!({"id": 424242, "login": "octo"}));
    let done = respond(resume(&gw, &mut store, info.step, Some(200), &user));
    let back = query(done.header("location").unwrap());
    let auth = gw.config.authorization_server.as_ref().unwrap();
    let code = crate::authz::grants::open_code(auth, back.get("code").unwrap()).unwrap();
    assert_eq!(code.sub, "424242");
}

fn claims(v: Value) -> Map<String, Value> {
    serde_json::from_value(v).unwrap()
}

#[test]
fn identity_rules() {
    let gw = gateway(upstream_section(json!({"allowed_groups": ["staff"]})));
    let up = gw
        .config
        .authorization_server
        .as_ref()
        .unwrap()
        .upstream
        .as_ref()
        .unwrap();
    let ok = claims(
        json!({"sub": "s", "email": "a@example.com", "email_verified": true, "groups": ["staff", "admins"]}),
    );
    let identity = admit(up, &ok).unwrap();
    assert_eq!(identity.subject, "s");
    assert_eq!(
        identity.may_grant,
        Some(vec!["mcp:admin".to_string(), "mcp:tools".to_string()])
    );
    let unverified = claims(json!({"sub": "s", "email": "a@example.com", "groups": ["staff"]}));
    assert!(matches!(admit(up, &unverified), Err(Refusal(r)) if r.contains("domain")));
    let no_group = claims(json!({"sub": "s", "email": "a@example.com", "email_verified": "true"}));
    assert!(matches!(admit(up, &no_group), Err(Refusal(r)) if r.contains("group")));
    let no_sub =
        claims(json!({"email": "a@example.com", "email_verified": true, "groups": "staff"}));
    assert!(admit(up, &no_sub).is_err());
}

#[test]
fn id_token_checks() {
    let idp = Provider::new();
    let good = idp.id_token(json!({"sub": "s", "nonce": "n"}));
    assert!(id_token::verify(&good, &idp.jwks(), IDP, "gateway", "n", NOW).is_ok());
    assert!(matches!(
        id_token::verify(&good, &idp.jwks(), IDP, "gateway", "other", NOW),
        Err(IdTokenError::Invalid(_))
    ));
    assert!(matches!(
        id_token::verify(&good, &idp.jwks(), "https://other", "gateway", "n", NOW),
        Err(IdTokenError::Invalid(_))
    ));
    assert!(matches!(
        id_token::verify(&good, &idp.jwks(), IDP, "gateway", "n", NOW + 3600),
        Err(IdTokenError::Invalid(_))
    ));
    let stranger = Provider::new();
    assert!(matches!(
        id_token::verify(&good, &stranger.jwks(), IDP, "gateway", "n", NOW),
        Err(IdTokenError::Invalid(_)) | Err(IdTokenError::UnknownKey)
    ));
    let other_kid = Provider {
        key: ES256KeyPair::generate().with_key_id("idp-2"),
    };
    assert_eq!(
        id_token::verify(&good, &other_kid.jwks(), IDP, "gateway", "n", NOW),
        Err(IdTokenError::UnknownKey)
    );
    let two_audiences = idp.id_token(json!({"sub": "s", "nonce": "n", "aud": ["gateway", "x"]}));
    assert!(id_token::verify(&two_audiences, &idp.jwks(), IDP, "gateway", "n", NOW).is_err());
}

#[test]
fn bad_upstream_config_names_the_field() {
    let cases = [
        (
            json!({"issuer": "http://idp.example.com"}),
            "authorization_server.upstream.issuer",
        ),
        (
            json!({"scopes": ["email"]}),
            "authorization_server.upstream.scopes",
        ),
        (
            json!({"client_auth": "private_key_jwt"}),
            "authorization_server.upstream.client_auth",
        ),
        (
            json!({"base_scopes": ["nope"]}),
            "authorization_server.upstream.base_scopes[0]",
        ),
        (
            json!({"authorize_params": {"state": "x"}}),
            "authorization_server.upstream.authorize_params.state",
        ),
        (
            json!({"jwks_uri": null}),
            "authorization_server.upstream.jwks_uri",
        ),
    ];
    for (change, field) in cases {
        let mut section = upstream_section(json!({}));
        for (k, v) in change.as_object().unwrap() {
            if v.is_null() {
                section.as_object_mut().unwrap().remove(k);
            } else {
                section[k] = v.clone();
            }
        }
        let signing: Value =
            serde_json::from_str(&ES256KeyPair::generate().with_key_id("k1").to_jwk()).unwrap();
        let cfg = json!({
            "resource": format!("{ORIGIN}/mcp"),
            "authorization_server": {
                "signing_keys": [{"jwk": signing}],
                "sealing_keys": [{"kid": "s1", "value_base64url": URL_SAFE_NO_PAD.encode([7u8; 32])}],
                "scopes": [{"name": "mcp:tools", "description": "Use the tools"}, {"name": "mcp:admin", "description": "Administer"}],
                "upstream": section
            }
        });
        let err = match config::parse(cfg.to_string().as_bytes(), &|_| None) {
            Err(e) => e,
            Ok(_) => panic!("accepted {change}"),
        };
        assert_eq!(err.path, field, "{err}");
    }
}

/// A sign-in whose upstream tokens the gateway holds; returns our access and refresh tokens.
fn signed_in_with_held_tokens(
    gw: &Gateway,
    store: &mut MemoryStore,
    idp: &Provider,
) -> (String, String) {
    let claims = json!({"sub": "u-1", "email": "a@example.com", "email_verified": true});
    let tokens = json!({"access_token": "up-at-1", "refresh_token": "up-rt-1", "expires_in": 300});
    let done = respond(sign_in_answered(gw, store, idp, claims, tokens));
    let back = query(done.header("location").unwrap());
    let form = crate::form::encode(&[
        ("grant_type", "authorization_code"),
        ("code", back.get("code").unwrap()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
        ("client_id", "trusted"),
    ]);
    let req = Request {
        content_type: Some("application/x-www-form-urlencoded"),
        ..request("POST", "/oauth/token", None)
    };
    let r = respond(
        gw.decide_with_body(&req, form.as_bytes(), NOW, store)
            .action,
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    (
        body["access_token"].as_str().unwrap().to_string(),
        body["refresh_token"].as_str().unwrap().to_string(),
    )
}

fn mcp_call(gw: &Gateway, store: &mut MemoryStore, token: &str, now: u64) -> Action {
    let bearer = format!("Bearer {token}");
    let req = Request {
        authorization: vec![&bearer],
        ..request("GET", "/mcp", None)
    };
    gw.decide(&req, now, store).action
}

fn forwarded_authorization(action: Action) -> String {
    match action {
        Action::Forward { headers, .. } => headers
            .into_iter()
            .find(|(n, _)| n == "authorization")
            .map(|(_, v)| v)
            .expect("an authorization header for the backend"),
        other => panic!("expected forward, got {other:?}"),
    }
}

fn held_gateway() -> Gateway {
    let signing: Value =
        serde_json::from_str(&ES256KeyPair::generate().with_key_id("k1").to_jwk()).unwrap();
    let cfg = json!({
        "resource": format!("{ORIGIN}/mcp"),
        "routes": [{"prefix": "/mcp", "upstream_token": true}],
        "authorization_server": {
            "signing_keys": [{"jwk": signing}],
            "sealing_keys": [{"kid": "s1", "value_base64url": URL_SAFE_NO_PAD.encode([7u8; 32])}],
            "scopes": [{"name": "mcp:tools", "description": "Use the tools"}, {"name": "mcp:admin", "description": "Administer"}],
            "clients": [{"client_id": "trusted", "redirect_uris": [REDIRECT], "skip_consent": true}],
            "upstream": upstream_section(json!({}))
        }
    });
    let (config, verifier) = config::parse(cfg.to_string().as_bytes(), &|_| None).unwrap();
    Gateway { config, verifier }
}

#[test]
fn held_upstream_tokens_reach_the_backend_and_are_refreshed_before_they_expire() {
    let gw = held_gateway();
    let idp = Provider::new();
    let mut store = MemoryStore::default();
    let (access, _) = signed_in_with_held_tokens(&gw, &mut store, &idp);
    // Our token never reaches the backend; the upstream one does.
    assert_eq!(
        forwarded_authorization(mcp_call(&gw, &mut store, &access, NOW + 1)),
        "Bearer up-at-1"
    );
    // Near expiry, one request refreshes it.
    let refresh = call(mcp_call(&gw, &mut store, &access, NOW + 250));
    let form = Params::parse(refresh.body.as_deref().unwrap()).unwrap();
    assert_eq!(form.get("grant_type"), Some("refresh_token"));
    assert_eq!(form.get("refresh_token"), Some("up-rt-1"));
    // Meanwhile, others use the still valid token instead of racing the refresh.
    assert_eq!(
        forwarded_authorization(mcp_call(&gw, &mut store, &access, NOW + 250)),
        "Bearer up-at-1"
    );
    let new_tokens = json_bytes(
        &json!({"access_token": "up-at-2", "refresh_token": "up-rt-2", "expires_in": 300}),
    );
    let after = answer_refresh(
        &gw,
        &mut store,
        &access,
        refresh.step,
        200,
        &new_tokens,
        NOW + 250,
    );
    assert_eq!(forwarded_authorization(after), "Bearer up-at-2");
    assert_eq!(
        forwarded_authorization(mcp_call(&gw, &mut store, &access, NOW + 260)),
        "Bearer up-at-2"
    );
}

#[test]
fn a_refused_upstream_refresh_ends_the_grant_with_a_401_and_our_refresh_fails() {
    let gw = held_gateway();
    let idp = Provider::new();
    let mut store = MemoryStore::default();
    let (access, refresh_token) = signed_in_with_held_tokens(&gw, &mut store, &idp);
    let refresh = call(mcp_call(&gw, &mut store, &access, NOW + 299));
    let refused = br#"{"error":"invalid_grant"}"#;
    let after = answer_refresh(
        &gw,
        &mut store,
        &access,
        refresh.step,
        400,
        refused,
        NOW + 299,
    );
    let r = respond(after);
    assert_eq!(r.status, 401);
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .contains("invalid_token"));
    // Our refresh token no longer yields tokens: the client must sign in again.
    let form = crate::form::encode(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", &refresh_token),
        ("client_id", "trusted"),
    ]);
    let req = Request {
        content_type: Some("application/x-www-form-urlencoded"),
        ..request("POST", "/oauth/token", None)
    };
    let r = respond(
        gw.decide_with_body(&req, form.as_bytes(), NOW + 300, &mut store)
            .action,
    );
    assert_eq!(r.status, 400);
    assert!(String::from_utf8_lossy(&r.body).contains("invalid_grant"));
}

#[test]
fn held_tokens_survive_a_lost_store_through_our_refresh_token() {
    let gw = held_gateway();
    let idp = Provider::new();
    let mut store = MemoryStore::default();
    let (_, refresh_token) = signed_in_with_held_tokens(&gw, &mut store, &idp);
    // A restart: shared data is gone. Our refresh token carries the sealed upstream tokens.
    let mut fresh = MemoryStore::default();
    let form = crate::form::encode(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", &refresh_token),
        ("client_id", "trusted"),
    ]);
    let req = Request {
        content_type: Some("application/x-www-form-urlencoded"),
        ..request("POST", "/oauth/token", None)
    };
    let r = respond(
        gw.decide_with_body(&req, form.as_bytes(), NOW + 10, &mut fresh)
            .action,
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    let access = body["access_token"].as_str().unwrap();
    assert!(
        !body.to_string().contains("up-at-1"),
        "upstream tokens never reach the client in the clear"
    );
    assert_eq!(
        forwarded_authorization(mcp_call(&gw, &mut fresh, access, NOW + 11)),
        "Bearer up-at-1"
    );
}

#[test]
fn beside_built_in_users_the_sign_in_page_offers_the_provider() {
    let signing: Value =
        serde_json::from_str(&ES256KeyPair::generate().with_key_id("k1").to_jwk()).unwrap();
    let cfg = json!({
        "resource": format!("{ORIGIN}/mcp"),
        "authorization_server": {
            "signing_keys": [{"jwk": signing}],
            "sealing_keys": [{"kid": "s1", "value_base64url": URL_SAFE_NO_PAD.encode([7u8; 32])}],
            "scopes": [{"name": "mcp:tools", "description": "Use the tools"}, {"name": "mcp:admin", "description": "Administer"}],
            "users": [{"username": "local", "password_hash": crate::secret_hash::SecretHash::pbkdf2_of(b"pw", b"saltsalt", 10_000)}],
            "clients": [{"client_id": "app", "client_name": "The App", "redirect_uris": [REDIRECT]}],
            "upstream": upstream_section(json!({}))
        }
    });
    let (config, verifier) = config::parse(cfg.to_string().as_bytes(), &|_| None).unwrap();
    let gw = Gateway { config, verifier };
    let mut store = MemoryStore::default();
    let r = respond(
        gw.decide(
            &request("GET", &authorize_path("app"), None),
            NOW,
            &mut store,
        )
        .action,
    );
    assert_eq!(r.status, 200);
    let html = String::from_utf8(r.body.clone()).unwrap();
    assert!(
        html.contains("type=\"password\""),
        "the built-in sign-in form"
    );
    assert!(
        html.contains("value=\"upstream\""),
        "and the provider's button"
    );
    let csrf_cookie = r
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let field = |name: &str| {
        let marker = format!("name=\"{name}\" value=\"");
        let start = html.find(&marker).unwrap() + marker.len();
        html[start..][..html[start..].find('"').unwrap()].to_string()
    };
    let (sealed, csrf) = (field("request"), field("csrf"));
    let post = |action: &str, store: &mut MemoryStore| {
        let body =
            crate::form::encode(&[("request", &sealed), ("csrf", &csrf), ("action", action)]);
        let req = Request {
            content_type: Some("application/x-www-form-urlencoded"),
            ..request("POST", "/oauth/authorize", Some(&csrf_cookie))
        };
        respond(
            gw.decide_with_body(&req, body.as_bytes(), NOW, store)
                .action,
        )
    };
    // The provider's button: a client needing consent sees it first ...
    let consent = post("upstream", &mut store);
    assert_eq!(consent.status, 200);
    assert!(String::from_utf8_lossy(&consent.body).contains("value=\"continue_upstream\""));
    // ... then goes to the provider.
    let to_provider = post("continue_upstream", &mut store);
    assert_eq!(to_provider.status, 302);
    assert!(to_provider
        .header("location")
        .unwrap()
        .starts_with(&format!("{IDP}/auth?")));
    // Deny needs no sign-in.
    let denied = post("deny", &mut store);
    assert_eq!(
        query(denied.header("location").unwrap()).get("error"),
        Some("access_denied")
    );
}

// Spotted while writing the `federation` fuzz target, reproduced with it on hand-made inputs
// (seeds federation/oidc-endpoint-crlf, federation/plain-oauth-token-crlf).
#[test]
fn an_endpoint_with_control_characters_is_refused_not_put_in_a_header() {
    for bad in ["/a\r\nx-evil: 1", "/a\nb", "/a\u{0}b", "/a\tb", "/a\u{7f}b"] {
        let url = format!("{IDP}{bad}");
        assert!(crate::config::upstream::check_url(&url).is_err(), "{url:?}");
        let gw = discovering_gateway();
        let mut store = MemoryStore::default();
        let path = authorize_path("trusted");
        let fetch = call(
            gw.decide(&request("GET", &path, None), NOW, &mut store)
                .action,
        );
        let doc = json!({"issuer": IDP, "authorization_endpoint": url,
            "token_endpoint": format!("{IDP}/t"), "jwks_uri": format!("{IDP}/k")});
        let body = json_bytes(&doc);
        let r = respond(answer(
            &gw,
            &mut store,
            &request("GET", &path, None),
            fetch.step,
            Some(200),
            &body,
            NOW,
        ));
        assert_eq!(r.status, 502, "{url:?}");
        assert!(r.header("location").is_none());
    }
}

#[test]
fn an_access_token_that_cannot_go_in_a_header_is_refused() {
    for bad in ["gho_x\r\nx-evil: 1", "a\u{0}b", "a b", ""] {
        let gw = gateway(json!({
            "authorization_endpoint": "https://github.example/login/oauth/authorize",
            "token_endpoint": "https://github.example/login/oauth/access_token",
            "userinfo_endpoint": "https://api.github.example/user",
            "cluster": "github", "client_id": "gateway", "client_secret": "s",
            "subject_claim": "id"
        }));
        let mut store = MemoryStore::default();
        let (params, cookie) = start(&gw, &mut store);
        let exchange = callback(&gw, &mut store, params.get("state").unwrap(), &cookie);
        let tokens = json_bytes(&json!({"access_token": bad, "token_type": "bearer"}));
        let r = respond(resume(&gw, &mut store, exchange.step, Some(200), &tokens));
        assert_eq!(r.status, 502, "{bad:?}");
        // Nor is one held for the backend, from a refresh answer.
        let answer = json!({"access_token": bad, "expires_in": 300});
        let held = super::held::HeldTokens::from_answer(answer.as_object().unwrap(), NOW, None);
        assert!(held.is_none(), "{bad:?}");
    }
}

// Spotted while writing the `federation` fuzz target, reproduced with it on a hand-made input
// (seed federation/endpoints-refresh-expires-at-once): one request refreshed again and again.
#[test]
fn a_refresh_answer_that_expires_at_once_is_used_not_refreshed_again() {
    let gw = held_gateway();
    let idp = Provider::new();
    let mut store = MemoryStore::default();
    let (access, _) = signed_in_with_held_tokens(&gw, &mut store, &idp);
    let refresh = call(mcp_call(&gw, &mut store, &access, NOW + 299));
    let zero = json_bytes(&json!({"access_token": "up-at-2", "expires_in": 0}));
    let after = answer_refresh(
        &gw,
        &mut store,
        &access,
        refresh.step,
        200,
        &zero,
        NOW + 299,
    );
    assert_eq!(forwarded_authorization(after), "Bearer up-at-2");
    // A later request refreshes it, once.
    let again = call(mcp_call(&gw, &mut store, &access, NOW + 300));
    assert!(matches!(again.step, Step::Refresh { .. }));
}
