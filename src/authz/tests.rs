//! The authorization server end to end in the core: config → authorize → sign-in → consent →
//! code → token → refresh → reuse, with a memory store.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jwt_simple::prelude::*;
use serde_json::{json, Value};

use crate::config;
use crate::gateway::{Action, Decision, Gateway, Request};
use crate::http::Response;
use crate::secret_hash::SecretHash;
use crate::store::MemoryStore;

const ORIGIN: &str = "https://mcp.example.com";
const RESOURCE: &str = "https://mcp.example.com/mcp";
const REDIRECT: &str = "http://127.0.0.1:7777/callback";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const NOW: u64 = 1_800_000_000;

struct World {
    gateway: Gateway,
    store: MemoryStore,
    now: u64,
}

fn world() -> World {
    let signing: Value =
        serde_json::from_str(&ES256KeyPair::generate().with_key_id("k1").to_jwk()).unwrap();
    let cfg = json!({
        "resource": RESOURCE,
        "routes": [{"prefix": "/mcp", "scopes": ["mcp:tools"]}],
        "authorization_server": {
            "signing_keys": [{"jwk": signing}],
            "sealing_keys": [{"kid": "s1", "value_base64url": URL_SAFE_NO_PAD.encode([9u8; 32])}],
            "scopes": [{"name": "mcp:tools", "description": "Use the tools"}, {"name": "mcp:admin", "description": "Administer"}],
            "default_scopes": ["mcp:tools"],
            "users": [{"username": "alice", "password_hash": SecretHash::pbkdf2_of(b"wonderland", b"saltsalt", 10_000), "scopes": ["mcp:tools"]}],
            "clients": [
                {"client_id": "svc", "client_secret_hash": SecretHash::sha256_of(b"svc-secret"), "scopes": ["mcp:tools"]},
                {"client_id": "app", "client_name": "The App", "redirect_uris": [REDIRECT]}
            ],
            "rate_limits": {"token_per_minute_per_client": 1000}
        }
    });
    let env = |_: &str| None;
    let (config, verifier) = config::parse(cfg.to_string().as_bytes(), &env).unwrap();
    World {
        gateway: Gateway { config, verifier },
        store: MemoryStore::default(),
        now: NOW,
    }
}

impl World {
    fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let get = |name: &str| headers.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
        let request = Request {
            method,
            path,
            authorization: get("authorization").into_iter().collect(),
            cookie: get("cookie"),
            content_type: get("content-type"),
            client_address: Some("127.0.0.1:5000"),
            ..Default::default()
        };
        let decision: Decision = match self
            .gateway
            .decide(&request, self.now, &mut self.store)
            .action
        {
            Action::ReadBody { .. } => {
                self.gateway
                    .decide_with_body(&request, body, self.now, &mut self.store)
            }
            other => Decision {
                action: other,
                outcome: crate::gateway::Outcome::Served,
                detail: None,
                mcp: None,
            },
        };
        match decision.action {
            Action::Respond(r) => r,
            Action::Forward { .. } => Response {
                status: 0,
                headers: vec![],
                body: vec![],
            },
            other => panic!("unexpected {other:?}"),
        }
    }

    fn form(&mut self, path: &str, pairs: &[(&str, &str)], extra: &[(&str, &str)]) -> Response {
        let body = crate::form::encode(pairs);
        let mut headers = vec![("content-type", "application/x-www-form-urlencoded")];
        headers.extend_from_slice(extra);
        self.send("POST", path, &headers, body.as_bytes())
    }
}

fn json_of(r: &Response) -> Value {
    serde_json::from_slice(&r.body).unwrap()
}

fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).unwrap() + marker.len();
    let end = html[start..].find('"').unwrap();
    html[start..start + end].replace("&amp;", "&")
}

fn cookie_value(r: &Response, name: &str) -> String {
    let header = r
        .headers
        .iter()
        .find(|(n, v)| n == "set-cookie" && v.starts_with(name))
        .unwrap();
    header.1.split(';').next().unwrap().to_string()
}

fn location_param(r: &Response, name: &str) -> Option<String> {
    let location = r.header("location").unwrap();
    let query = location.split_once('?').unwrap().1;
    crate::form::Params::parse(query.as_bytes())
        .unwrap()
        .get(name)
        .map(str::to_string)
}

fn authorize_path(extra: &str) -> String {
    format!(
        "/oauth/authorize?response_type=code&client_id=app&redirect_uri={}&code_challenge={CHALLENGE}&code_challenge_method=S256&state=xyz&scope=mcp%3Atools&resource={}{extra}",
        crate::form::encode(&[("u", REDIRECT)]).trim_start_matches("u="),
        crate::form::encode(&[("u", RESOURCE)]).trim_start_matches("u="),
    )
}

/// Runs authorize → sign-in → approve and returns the code.
fn get_code(w: &mut World) -> String {
    let page = w.send("GET", &authorize_path(""), &[], b"");
    assert_eq!(page.status, 200);
    let html = String::from_utf8(page.body.clone()).unwrap();
    let csrf_cookie = cookie_value(&page, "__Host-mcp-oauth-csrf");
    let (request, csrf) = (hidden(&html, "request"), hidden(&html, "csrf"));
    let consent = w.form(
        "/oauth/authorize",
        &[
            ("request", &request),
            ("csrf", &csrf),
            ("action", "sign_in"),
            ("username", "alice"),
            ("password", "wonderland"),
        ],
        &[("cookie", &csrf_cookie)],
    );
    assert_eq!(consent.status, 200);
    let html = String::from_utf8(consent.body.clone()).unwrap();
    assert!(
        html.contains("The App")
            && html.contains("Use the tools")
            && html.contains("127.0.0.1:7777")
    );
    let cookies = format!(
        "{csrf_cookie}; {}",
        cookie_value(&consent, "__Host-mcp-oauth-session")
    );
    let done = w.form(
        "/oauth/authorize",
        &[
            ("request", &hidden(&html, "request")),
            ("csrf", &csrf),
            ("action", "approve"),
        ],
        &[("cookie", &cookies)],
    );
    assert_eq!(done.status, 302);
    assert_eq!(location_param(&done, "state").as_deref(), Some("xyz"));
    assert_eq!(location_param(&done, "iss").as_deref(), Some(ORIGIN));
    location_param(&done, "code").unwrap()
}

fn redeem(w: &mut World, code: &str) -> Response {
    w.form(
        "/oauth/token",
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("client_id", "app"),
        ],
        &[],
    )
}

#[test]
fn code_flow_refresh_and_reuse() {
    let mut w = world();
    let code = get_code(&mut w);
    let tokens = redeem(&mut w, &code);
    assert_eq!(
        tokens.status,
        200,
        "{}",
        String::from_utf8_lossy(&tokens.body)
    );
    assert_eq!(tokens.header("cache-control"), Some("no-store"));
    let body = json_of(&tokens);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "mcp:tools");
    let access = body["access_token"].as_str().unwrap().to_string();
    // The resource server accepts it.
    let auth = format!("Bearer {access}");
    assert_eq!(
        w.send("POST", "/mcp", &[("authorization", &auth)], b"")
            .status,
        0
    );
    // Refresh rotates; reuse of the old one kills the family.
    let refresh1 = body["refresh_token"].as_str().unwrap().to_string();
    let r2 = w.form(
        "/oauth/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh1),
            ("client_id", "app"),
        ],
        &[],
    );
    assert_eq!(r2.status, 200);
    let refresh2 = json_of(&r2)["refresh_token"].as_str().unwrap().to_string();
    let reuse = w.form(
        "/oauth/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh1),
            ("client_id", "app"),
        ],
        &[],
    );
    assert_eq!(json_of(&reuse)["error"], "invalid_grant");
    let after = w.form(
        "/oauth/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh2),
            ("client_id", "app"),
        ],
        &[],
    );
    assert_eq!(json_of(&after)["error"], "invalid_grant");
    // Replay of the code fails.
    assert_eq!(json_of(&redeem(&mut w, &code))["error"], "invalid_grant");
}

fn refresh(w: &mut World, token: &str) -> Response {
    w.form(
        "/oauth/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", token),
            ("client_id", "app"),
        ],
        &[],
    )
}

fn field(r: &Response, name: &str) -> String {
    json_of(r)[name].as_str().unwrap().to_string()
}

/// A grant rotated once before a restart (lost state: a new, empty store): returns the
/// superseded refresh token and the current one.
fn grant_rotated_then_restart(w: &mut World) -> (String, String) {
    let code = get_code(w);
    let first = field(&redeem(w, &code), "refresh_token");
    w.now += 10;
    let current = field(&refresh(w, &first), "refresh_token");
    w.store = MemoryStore::default();
    w.now += 10;
    (first, current)
}

#[test]
fn after_a_restart_the_current_refresh_token_still_refreshes() {
    let mut w = world();
    let (_, current) = grant_rotated_then_restart(&mut w);
    let r = refresh(&mut w, &current);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    w.now += 1;
    let again = refresh(&mut w, &field(&r, "refresh_token"));
    assert_eq!(
        again.status,
        200,
        "{}",
        String::from_utf8_lossy(&again.body)
    );
    assert_eq!(
        json_of(&refresh(&mut w, &current))["error"],
        "invalid_grant"
    );
}

#[test]
fn after_a_restart_a_superseded_refresh_token_is_caught_when_the_current_one_returns() {
    let mut w = world();
    let (superseded, current) = grant_rotated_then_restart(&mut w);
    // Nothing here remembers that `superseded` was rotated: it is accepted once...
    let stolen = refresh(&mut w, &superseded);
    assert_eq!(stolen.status, 200);
    let stolen_access = format!("Bearer {}", field(&stolen, "access_token"));
    assert_eq!(
        w.send("POST", "/mcp", &[("authorization", &stolen_access)], b"")
            .status,
        0
    );
    // ...and when the client's current token comes back, that is reuse: the grant is revoked,
    // with the access token the superseded one got.
    w.now += 1;
    let back = refresh(&mut w, &current);
    assert_eq!(back.status, 400);
    assert_eq!(
        json_of(&back)["error_description"],
        "The refresh token was already used; the grant is revoked"
    );
    assert_eq!(
        w.send("POST", "/mcp", &[("authorization", &stolen_access)], b"")
            .status,
        401
    );
    assert_eq!(
        json_of(&refresh(&mut w, &field(&stolen, "refresh_token")))["error"],
        "invalid_grant"
    );
}

/// Regression (input of the `token` fuzz target): a sealed refresh token at generation
/// u64::MAX made the rotation count overflow (a panic with overflow checks).
#[test]
fn refresh_token_at_the_last_generation_is_refused() {
    let mut w = world();
    let refresh = crate::authz::grants::Refresh {
        fam: "fam".into(),
        gen: u64::MAX,
        client_id: "app".into(),
        scope: "mcp:tools".into(),
        resource: RESOURCE.into(),
        sub: "alice".into(),
        exp: NOW + 3600,
        iat: 0,
        upstream: None,
    };
    let config = w.gateway.config.authorization_server.as_ref().unwrap();
    let sealed = crate::authz::grants::seal_refresh(config, &refresh).unwrap();
    let r = w.form(
        "/oauth/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &sealed),
            ("client_id", "app"),
        ],
        &[],
    );
    assert_eq!(r.status, 400);
    assert_eq!(json_of(&r)["error"], "invalid_grant");
}

#[test]
fn code_replay_revokes_the_grant_it_produced() {
    let mut w = world();
    let code = get_code(&mut w);
    let refresh = json_of(&redeem(&mut w, &code))["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(json_of(&redeem(&mut w, &code))["error"], "invalid_grant");
    let r = w.form(
        "/oauth/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("client_id", "app"),
        ],
        &[],
    );
    assert_eq!(json_of(&r)["error"], "invalid_grant");
}

#[test]
fn wrong_verifier_and_other_client_fail() {
    let mut w = world();
    let code = get_code(&mut w);
    let bad = w.form(
        "/oauth/token",
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &"a".repeat(43)),
            ("client_id", "app"),
        ],
        &[],
    );
    assert_eq!(json_of(&bad)["error"], "invalid_grant");
}

#[test]
fn unregistered_redirect_shows_a_page_and_never_redirects() {
    let mut w = world();
    let path = authorize_path("").replace("7777%2Fcallback", "7777%2Fevil");
    let r = w.send("GET", &path, &[], b"");
    assert_eq!(r.status, 400);
    assert!(r.header("location").is_none());
    let r = w.send(
        "GET",
        "/oauth/authorize?client_id=nobody&redirect_uri=https%3A%2F%2Fx",
        &[],
        b"",
    );
    assert_eq!(r.status, 400);
}

#[test]
fn plain_pkce_and_foreign_resource_redirect_with_errors() {
    let mut w = world();
    let plain = w.send(
        "GET",
        &authorize_path("").replace("S256", "plain"),
        &[],
        b"",
    );
    assert_eq!(
        location_param(&plain, "error").as_deref(),
        Some("invalid_request")
    );
    let foreign = authorize_path("").replace(
        "resource=https%3A%2F%2Fmcp.example.com%2Fmcp",
        "resource=https%3A%2F%2Fevil.example%2Fmcp",
    );
    let r = w.send("GET", &foreign, &[], b"");
    assert_eq!(
        location_param(&r, "error").as_deref(),
        Some("invalid_target")
    );
    assert_eq!(location_param(&r, "state").as_deref(), Some("xyz"));
}

#[test]
fn client_credentials_basic_and_errors() {
    let mut w = world();
    let basic = format!("Basic {}", STANDARD.encode("svc:svc-secret"));
    let ok = w.form(
        "/oauth/token",
        &[("grant_type", "client_credentials")],
        &[("authorization", &basic)],
    );
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    assert!(json_of(&ok).get("refresh_token").is_none());
    let wrong = format!("Basic {}", STANDARD.encode("svc:nope"));
    let r = w.form(
        "/oauth/token",
        &[("grant_type", "client_credentials")],
        &[("authorization", &wrong)],
    );
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").unwrap().starts_with("Basic"));
    let post = w.form(
        "/oauth/token",
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "svc"),
            ("client_secret", "nope"),
        ],
        &[],
    );
    assert_eq!(post.status, 401);
    assert!(post.header("www-authenticate").is_none());
    let unsupported = w.form(
        "/oauth/token",
        &[
            ("grant_type", "password"),
            ("client_id", "svc"),
            ("client_secret", "svc-secret"),
        ],
        &[],
    );
    assert_eq!(json_of(&unsupported)["error"], "unsupported_grant_type");
    let twice = w.send(
        "POST",
        "/oauth/token",
        &[("content-type", "application/x-www-form-urlencoded")],
        b"grant_type=a&grant_type=b",
    );
    assert_eq!(json_of(&twice)["error"], "invalid_request");
}

#[test]
fn registration_then_code_flow_with_the_new_client() {
    let mut w = world();
    let body = json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none", "client_name": "Dyn", "grant_types": ["authorization_code", "refresh_token"]});
    let r = w.send(
        "POST",
        "/oauth/register",
        &[("content-type", "application/json")],
        body.to_string().as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let client_id = json_of(&r)["client_id"].as_str().unwrap().to_string();
    let path = authorize_path("").replace("client_id=app", &format!("client_id={client_id}"));
    let page = w.send("GET", &path, &[], b"");
    assert_eq!(page.status, 200);
    let bad = json!({"redirect_uris": ["http://evil.example/cb"]});
    let r = w.send(
        "POST",
        "/oauth/register",
        &[("content-type", "application/json")],
        bad.to_string().as_bytes(),
    );
    assert_eq!(json_of(&r)["error"], "invalid_redirect_uri");
}

#[test]
fn revoked_access_token_is_refused_and_introspection_says_inactive() {
    let mut w = world();
    let basic = format!("Basic {}", STANDARD.encode("svc:svc-secret"));
    let token = json_of(&w.form(
        "/oauth/token",
        &[("grant_type", "client_credentials")],
        &[("authorization", &basic)],
    ))["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let active = w.form(
        "/oauth/introspect",
        &[("token", &token)],
        &[("authorization", &basic)],
    );
    assert_eq!(json_of(&active)["active"], true);
    assert_eq!(json_of(&active)["client_id"], "svc");
    assert_eq!(
        w.form(
            "/oauth/revoke",
            &[("token", &token)],
            &[("authorization", &basic)]
        )
        .status,
        200
    );
    let auth = format!("Bearer {token}");
    assert_eq!(
        w.send("POST", "/mcp", &[("authorization", &auth)], b"")
            .status,
        401
    );
    let inactive = w.form(
        "/oauth/introspect",
        &[("token", &token)],
        &[("authorization", &basic)],
    );
    assert_eq!(json_of(&inactive), json!({"active": false}));
}

#[test]
fn metadata_lists_what_is_supported() {
    let mut w = world();
    let r = w.send("GET", "/.well-known/oauth-authorization-server", &[], b"");
    let doc = json_of(&r);
    assert_eq!(doc["issuer"], ORIGIN);
    assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(doc["token_endpoint"], format!("{ORIGIN}/oauth/token"));
    assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
    let oidc = json_of(&w.send("GET", "/.well-known/openid-configuration", &[], b""));
    assert_eq!(oidc["issuer"], ORIGIN);
    let prm = json_of(&w.send("GET", "/.well-known/oauth-protected-resource/mcp", &[], b""));
    assert_eq!(prm["authorization_servers"], json!([ORIGIN]));
}
