//! The plugin configuration: `config::parse` on arbitrary bytes (as `on_configure` gets them),
//! with an environment that knows a few variables (`SIGNING_JWK`, `SEALING_KEY`, `HS_SECRET`,
//! `JWKS`, `CLIENT_SECRET`). A config that loads must then serve requests without a panic: the
//! health check, both metadata documents, CORS preflights, its routes with a JWT, with an
//! opaque token (answered by an active introspection answer) and without a token, every
//! authorization-server endpoint it configured, and an authorization request from a client
//! known by a metadata document (answered with a valid one). After such an answer the gateway
//! must not ask for it again.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use mcp_oauth_wasm::config;
use mcp_oauth_wasm::gateway::{Gateway, Request};
use mcp_oauth_wasm::store::MemoryStore;
use mcp_oauth_wasm_fuzz::{
    access_token, es_public_jwk, send_with_answer, Answer, ED_PUBLIC_JWK, ES_PRIVATE_JWK,
    HS_SECRET, NOW, SEALING_KEY,
};

const DOCUMENT_URL: &str = "https://app.example.com/client.json";

fn env(name: &str) -> Option<String> {
    match name {
        "SIGNING_JWK" => Some(ES_PRIVATE_JWK.to_string()),
        "SEALING_KEY" => Some(URL_SAFE_NO_PAD.encode(SEALING_KEY)),
        "HS_SECRET" => Some(String::from_utf8_lossy(HS_SECRET).into_owned()),
        "JWKS" => Some(format!(
            r#"{{"keys":[{},{ED_PUBLIC_JWK}]}}"#,
            es_public_jwk()
        )),
        "CLIENT_SECRET" => Some("secret".to_string()),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok((config, verifier)) = config::parse(data, &env) else {
        return;
    };
    let gateway = Gateway { config, verifier };
    let token = format!("Bearer {}", access_token("svc", "mcp:tools"));
    let mut paths: Vec<String> = vec![
        "/".into(),
        gateway.config.health_path.clone(),
        "/.well-known/oauth-protected-resource".into(),
        "/.well-known/oauth-protected-resource/mcp".into(),
        "/.well-known/oauth-authorization-server".into(),
        "/.well-known/openid-configuration".into(),
        "/mcp?x=1".into(),
    ];
    paths.extend(gateway.config.routes.iter().map(|r| r.prefix.clone()));
    paths.extend(gateway.config.public_paths.iter().cloned());
    if let Some(mcp) = &gateway.config.mcp {
        paths.extend(mcp.endpoints.iter().cloned());
    }
    if let Some(authz) = &gateway.config.authorization_server {
        let e = &authz.endpoints;
        paths.extend(
            [
                &e.authorize,
                &e.token,
                &e.register,
                &e.revoke,
                &e.introspect,
                &e.jwks,
            ]
            .map(|p| p.to_string()),
        );
    }
    let origin = gateway.config.cors_allowed_origins.first().cloned();
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let active = format!(
        r#"{{"active":true,"sub":"u","client_id":"c","scope":"mcp:tools","exp":{}}}"#,
        NOW + 60
    );
    let document = format!(
        r#"{{"client_id":"{DOCUMENT_URL}","client_name":"App","redirect_uris":["https://app.example.com/cb"]}}"#
    );
    if let Some(authz) = &gateway.config.authorization_server {
        paths.insert(0, format!(
            "{}?response_type=code&client_id={}&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256",
            authz.endpoints.authorize,
            mcp_oauth_wasm::form::encode(&[("", DOCUMENT_URL)]).trim_start_matches('=')
        ));
    }
    let calls = [
        ("GET", None, document.as_bytes()),
        ("POST", Some(token.as_str()), &b""[..]),
        (
            "POST",
            Some("Bearer opaque-token-0123456789"),
            active.as_bytes(),
        ),
    ];
    for path in paths.iter().take(24) {
        for (method, authorization, answer) in calls {
            let request = Request {
                method,
                path,
                authorization: authorization.into_iter().collect(),
                origin: origin.as_deref(),
                content_type: Some("application/json"),
                client_address: Some("192.0.2.1:5000"),
                ..Default::default()
            };
            let answer = Answer {
                status: Some("200"),
                cache_control: Some("max-age=0"),
                body: answer,
            };
            let _ = send_with_answer(
                &gateway,
                &mut MemoryStore::default(),
                &request,
                body,
                answer,
            );
        }
        let preflight = Request {
            method: "OPTIONS",
            path,
            origin: origin.as_deref(),
            preflight_method: Some("POST"),
            ..Default::default()
        };
        let _ = mcp_oauth_wasm_fuzz::send(&gateway, &preflight, b"");
    }
});
