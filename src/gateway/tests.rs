use super::*;
use crate::store::MemoryStore;

fn decide(g: &Gateway, request: &Request, now: u64) -> Decision {
    g.decide(request, now, &mut MemoryStore::default())
}
use crate::config;
use jwt_simple::prelude::*;
use serde_json::{json, Value};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const ISS: &str = "https://auth.example.com";
const RESOURCE: &str = "https://mcp.example.com/mcp";
const NOW: u64 = 1_800_000_000;

fn gateway_with(extra: Value) -> Gateway {
    let mut v = json!({
        "resource": RESOURCE,
        "resource_name": "Example",
        "authorization_servers": [ISS],
        "issuers": [{"issuer": ISS, "secrets": [{"value": std::str::from_utf8(SECRET).unwrap()}]}],
        "routes": [
            {"prefix": "/mcp", "scopes": ["mcp:tools"]},
            {"prefix": "/sse", "scopes": ["mcp:tools"], "resource": "https://mcp.example.com/sse"},
            {"prefix": "/admin", "methods": ["POST"], "scopes": ["admin"]}
        ]
    });
    for (k, val) in extra.as_object().unwrap() {
        v[k] = val.clone();
    }
    let env = |_: &str| None;
    let (config, verifier) = config::parse(v.to_string().as_bytes(), &env).unwrap();
    Gateway { config, verifier }
}

fn gateway() -> Gateway {
    gateway_with(json!({}))
}

fn token(scope: &str, aud: &str) -> String {
    let mut claims = Claims::with_custom_claims(
        json!({"scope": scope, "client_id": "cli"}),
        Duration::from_secs(900),
    )
    .with_issuer(ISS)
    .with_audience(aud)
    .with_subject("alice");
    claims.issued_at = Some(UnixTimeStamp::from_secs(NOW));
    claims.invalid_before = Some(UnixTimeStamp::from_secs(NOW));
    claims.expires_at = Some(UnixTimeStamp::from_secs(NOW + 900));
    HS256Key::from_bytes(SECRET).authenticate(claims).unwrap()
}

fn get<'a>(path: &'a str, authorization: Vec<&'a str>) -> Request<'a> {
    Request {
        method: "POST",
        path,
        authorization,
        ..Default::default()
    }
}

fn response(decision: Decision) -> Response {
    match decision.action {
        Action::Respond(r) => r,
        other => panic!("expected a response, got {other:?}"),
    }
}

fn body(r: &Response) -> Value {
    serde_json::from_slice(&r.body).unwrap()
}

#[test]
fn no_token_gets_401_with_route_metadata_and_scope() {
    let g = gateway();
    let d = decide(&g, &get("/mcp", vec![]), NOW);
    assert_eq!(d.outcome, Outcome::Denied("missing_token"));
    let r = response(d);
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer scope=\"mcp:tools\", resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\"")
    );
}

#[test]
fn valid_token_is_forwarded_with_identity() {
    let g = gateway();
    let t = token("mcp:tools", RESOURCE);
    let auth = format!("Bearer {t}");
    let d = decide(&g, &get("/mcp", vec![&auth]), NOW);
    assert_eq!(d.outcome, Outcome::Allowed);
    let Action::Forward { headers, .. } = d.action else {
        panic!()
    };
    assert_eq!(
        headers,
        vec![
            ("x-mcp-subject".to_string(), "alice".to_string()),
            ("x-mcp-client-id".to_string(), "cli".to_string()),
            ("x-mcp-scopes".to_string(), "mcp:tools".to_string()),
            ("x-mcp-issuer".to_string(), ISS.to_string()),
        ]
    );
}

#[test]
fn route_resource_is_the_audience() {
    let g = gateway();
    let for_mcp = format!("Bearer {}", token("mcp:tools", RESOURCE));
    let r = response(decide(&g, &get("/sse", vec![&for_mcp]), NOW));
    assert_eq!(r.status, 401);
    assert_eq!(
        body(&r)["error_description"],
        "The access token is not meant for this resource"
    );
    let for_sse = format!(
        "Bearer {}",
        token("mcp:tools", "https://mcp.example.com/sse")
    );
    assert_eq!(
        decide(&g, &get("/sse", vec![&for_sse]), NOW).outcome,
        Outcome::Allowed
    );
}

#[test]
fn missing_scope_gets_403_asking_for_granted_plus_needed() {
    let g = gateway();
    let auth = format!("Bearer {}", token("profile", RESOURCE));
    let r = response(decide(&g, &get("/mcp", vec![&auth]), NOW));
    assert_eq!(r.status, 403);
    let h = r.header("www-authenticate").unwrap();
    assert!(h.starts_with("Bearer error=\"insufficient_scope\""), "{h}");
    assert!(h.contains("scope=\"profile mcp:tools\""), "{h}");
    assert_eq!(body(&r)["error"], "insufficient_scope");
}

#[test]
fn expired_token_is_counted_as_expired() {
    let g = gateway();
    let auth = format!("Bearer {}", token("mcp:tools", RESOURCE));
    let d = decide(&g, &get("/mcp", vec![&auth]), NOW + 2000);
    assert_eq!(d.outcome, Outcome::Denied("expired"));
    let r = response(d);
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .contains("error=\"invalid_token\""));
}

#[test]
fn malformed_authorization_is_400() {
    let g = gateway();
    let r = response(decide(&g, &get("/mcp", vec!["Bearer a", "Bearer b"]), NOW));
    assert_eq!(r.status, 400);
    assert_eq!(body(&r)["error"], "invalid_request");
}

#[test]
fn methods_limit_a_route() {
    let g = gateway();
    let auth = format!("Bearer {}", token("mcp:tools", RESOURCE));
    let mut req = get("/admin", vec![&auth]);
    assert_eq!(response(decide(&g, &req, NOW)).status, 403);
    req.method = "GET";
    assert_eq!(decide(&g, &req, NOW).outcome, Outcome::Allowed);
}

#[test]
fn public_paths_and_unmatched_allow_pass_without_token() {
    let g = gateway_with(json!({"public_paths": ["/static"], "unmatched": "allow"}));
    assert_eq!(
        decide(&g, &get("/static/app.js", vec![]), NOW).outcome,
        Outcome::Public
    );
    assert_eq!(
        decide(&g, &get("/elsewhere", vec![]), NOW).outcome,
        Outcome::Public
    );
    assert_eq!(
        decide(&g, &get("/mcp", vec![]), NOW).outcome,
        Outcome::Denied("missing_token")
    );
}

#[test]
fn unmatched_paths_need_a_token_by_default() {
    let g = gateway();
    let r = response(decide(&g, &get("/other", vec![]), NOW));
    assert_eq!(r.status, 401);
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .contains("/.well-known/oauth-protected-resource\""));
}

#[test]
fn dot_segments_cannot_reach_a_protected_path_through_a_public_one() {
    let g = gateway();
    let r = response(decide(&g, &get("/health/../mcp", vec![]), NOW));
    assert_eq!(r.status, 400);
}

#[test]
fn both_metadata_forms_are_served_and_never_401() {
    let g = gateway();
    let mut req = get(
        "/.well-known/oauth-protected-resource",
        vec!["Bearer garbage"],
    );
    req.method = "GET";
    let root = response(decide(&g, &req, NOW));
    assert_eq!(root.status, 200);
    assert_eq!(
        body(&root),
        json!({
            "resource": RESOURCE,
            "authorization_servers": [ISS],
            "scopes_supported": ["admin", "mcp:tools"],
            "bearer_methods_supported": ["header"],
            "resource_name": "Example"
        })
    );
    req.path = "/.well-known/oauth-protected-resource/sse";
    assert_eq!(
        body(&response(decide(&g, &req, NOW)))["resource"],
        "https://mcp.example.com/sse"
    );
    req.path = "/.well-known/oauth-protected-resource/mcp";
    assert_eq!(body(&response(decide(&g, &req, NOW)))["resource"], RESOURCE);
    req.path = "/.well-known/oauth-protected-resource/nope";
    assert_eq!(response(decide(&g, &req, NOW)).status, 404);
}

#[test]
fn cors_preflight_is_answered_and_responses_are_readable() {
    let g = gateway();
    let req = Request {
        method: "OPTIONS",
        path: "/mcp",
        origin: Some("https://app.example"),
        preflight_method: Some("POST"),
        ..Default::default()
    };
    let r = response(decide(&g, &req, NOW));
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert!(r
        .header("access-control-allow-headers")
        .unwrap()
        .contains("authorization"));
    let mut req = get("/mcp", vec![]);
    req.origin = Some("https://app.example");
    let r = response(decide(&g, &req, NOW));
    assert_eq!(
        r.header("access-control-expose-headers")
            .map(|h| h.contains("www-authenticate")),
        Some(true)
    );
}

#[test]
fn cors_can_be_limited_to_listed_origins() {
    let g = gateway_with(json!({"cors": {"allowed_origins": ["https://good.example"]}}));
    let mut req = get("/mcp", vec![]);
    req.origin = Some("https://evil.example");
    assert_eq!(
        response(decide(&g, &req, NOW)).header("access-control-allow-origin"),
        None
    );
    req.origin = Some("https://good.example");
    let r = response(decide(&g, &req, NOW));
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://good.example")
    );
    assert_eq!(r.header("vary"), Some("origin"));
}

#[test]
fn health_reports_keys_and_version() {
    let g = gateway();
    let mut req = get("/health", vec![]);
    req.method = "GET";
    let r = response(decide(&g, &req, NOW));
    assert_eq!(r.status, 200);
    assert_eq!(
        body(&r),
        json!({"status": "ok", "keys_loaded": true, "version": VERSION})
    );
}

#[test]
fn remote_keys_not_loaded_means_wait_then_503() {
    let g = gateway_with(json!({
        "issuers": [{"issuer": ISS, "remote_jwks": {"uri": "https://auth.example.com/jwks", "cluster": "jwks"}}]
    }));
    let auth = format!("Bearer {}", token("mcp:tools", RESOURCE));
    let d = decide(&g, &get("/mcp", vec![&auth]), NOW);
    let Action::AwaitKeys { issuer, fallback } = d.action else {
        panic!()
    };
    assert_eq!(issuer, 0);
    assert_eq!(fallback.status, 503);
    assert_eq!(body(&fallback)["error"], "temporarily_unavailable");
    let mut req = get("/health", vec![]);
    req.method = "GET";
    assert_eq!(response(decide(&g, &req, NOW)).status, 503);
}

fn mcp_gateway() -> Gateway {
    gateway_with(json!({
        "mcp": {
            "max_body_bytes": 2048,
            "rules": [
                {"method": "tools/call", "name": "delete_*", "scopes": ["mcp:write"]},
                {"method": "tools/call", "scopes": ["mcp:tools"]}
            ],
            "clients": [{"client_id": "cli", "deny_tools": ["forbidden"]}]
        }
    }))
}

fn with_body(g: &Gateway, request: &Request, body: &str) -> Decision {
    let mut store = MemoryStore::default();
    match g.decide(request, NOW, &mut store).action {
        Action::ReadBody { .. } => g.decide_with_body(request, body.as_bytes(), NOW, &mut store),
        other => panic!("expected ReadBody, got {other:?}"),
    }
}

fn tool_call(name: &str) -> String {
    json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": name, "arguments": {}}}).to_string()
}

#[test]
fn mcp_posts_are_inspected_and_allowed_tools_pass() {
    let g = mcp_gateway();
    let auth = format!("Bearer {}", token("mcp:tools", RESOURCE));
    let d = with_body(&g, &get("/mcp", vec![&auth]), &tool_call("echo"));
    assert_eq!(d.outcome, Outcome::Allowed);
    assert!(matches!(d.action, Action::Forward { .. }));
}

#[test]
fn a_tool_needing_another_scope_gets_403_for_step_up() {
    let g = mcp_gateway();
    let auth = format!("Bearer {}", token("mcp:tools", RESOURCE));
    let r = response(with_body(
        &g,
        &get("/mcp", vec![&auth]),
        &tool_call("delete_file"),
    ));
    assert_eq!(r.status, 403);
    let h = r.header("www-authenticate").unwrap();
    assert!(h.contains("error=\"insufficient_scope\""), "{h}");
    assert!(h.contains("scope=\"mcp:tools mcp:write\""), "{h}");
}

#[test]
fn a_denied_tool_gets_a_json_rpc_error_naming_it() {
    let g = mcp_gateway();
    let auth = format!("Bearer {}", token("mcp:tools", RESOURCE));
    let r = response(with_body(
        &g,
        &get("/mcp", vec![&auth]),
        &tool_call("forbidden"),
    ));
    assert_eq!(r.status, 403);
    let b = body(&r);
    assert_eq!(b["id"], 7);
    assert_eq!(
        b["error"]["message"],
        "Tool forbidden is not allowed for this client"
    );
}

#[test]
fn bad_bodies_never_reach_the_backend() {
    let g = mcp_gateway();
    let auth = format!("Bearer {}", token("mcp:tools", RESOURCE));
    let r = response(with_body(&g, &get("/mcp", vec![&auth]), "{not json"));
    assert_eq!(r.status, 400);
    assert_eq!(body(&r)["error"]["code"], -32700);
    let big = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{{\"x\":\"{}\"}}}}",
        "a".repeat(3000)
    );
    assert_eq!(
        response(with_body(&g, &get("/mcp", vec![&auth]), &big)).status,
        413
    );
}

#[test]
fn mcp_get_and_unauthenticated_posts_are_not_read() {
    let g = mcp_gateway();
    let auth = format!("Bearer {}", token("mcp:tools", RESOURCE));
    let mut req = get("/mcp", vec![&auth]);
    req.method = "GET";
    assert!(matches!(
        decide(&g, &req, NOW).action,
        Action::Forward { .. }
    ));
    assert_eq!(response(decide(&g, &get("/mcp", vec![]), NOW)).status, 401);
}

#[test]
fn a_revoked_jti_of_ours_does_not_refuse_another_issuers_token() {
    // Revocation is by `jti`, and only our authorization server's tokens can be revoked here:
    // another issuer's token that happens to carry the same `jti` is not affected.
    let g = gateway();
    let mut claims = Claims::with_custom_claims(
        json!({"scope": "mcp:tools", "client_id": "cli"}),
        Duration::from_secs(900),
    )
    .with_issuer(ISS)
    .with_audience(RESOURCE)
    .with_subject("alice")
    .with_jwt_id("shared-jti");
    claims.issued_at = Some(UnixTimeStamp::from_secs(NOW));
    claims.expires_at = Some(UnixTimeStamp::from_secs(NOW + 900));
    let token = HS256Key::from_bytes(SECRET).authenticate(claims).unwrap();
    let mut store = MemoryStore::default();
    crate::authz::state::revoke_access_token(&mut store, "shared-jti", NOW + 900).unwrap();
    let auth = format!("Bearer {token}");
    let decision = g.decide(&get("/mcp", vec![&auth]), NOW, &mut store);
    assert!(matches!(decision.action, Action::Forward { .. }));
}
