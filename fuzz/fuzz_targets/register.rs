//! Dynamic Client Registration: `POST /oauth/register` with arbitrary JSON through
//! `Gateway::decide` and `Gateway::decide_with_body` on a fresh `MemoryStore`.
//!
//! Input, one field per line: `Authorization` (empty: none), `Content-Type`, then the body.
//! A 201 answer must be JSON with a `client_id` (and a `client_secret` unless the client is
//! public) that the token endpoint then accepts as client authentication.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_oauth_wasm::form::encode;
use mcp_oauth_wasm::gateway::{Action, Request};
use mcp_oauth_wasm_fuzz::{fields, optional, send, text, with_gateway};

fuzz_target!(|data: &[u8]| {
    let parts = fields(data, 3);
    let authorization = text(parts[0]);
    let content_type = text(parts[1]);
    with_gateway(|gateway| {
        let request = Request {
            method: "POST",
            path: "/oauth/register",
            authorization: optional(&authorization).into_iter().collect(),
            content_type: optional(&content_type),
            client_address: Some("192.0.2.1:5000"),
            ..Default::default()
        };
        let Action::Respond(response) = send(gateway, &request, parts[2]).action else {
            panic!("registration must answer");
        };
        if response.status != 201 {
            assert!(response.status >= 400, "status {}", response.status);
            return;
        }
        let answer: serde_json::Value = match serde_json::from_slice(&response.body) {
            Ok(answer) => answer,
            Err(e) => panic!("a 201 registration answer is not JSON: {e}"),
        };
        let Some(client_id) = answer["client_id"].as_str() else {
            panic!("a 201 registration without client_id: {answer}");
        };
        let public = answer["token_endpoint_auth_method"] == "none";
        let secret = answer["client_secret"].as_str();
        assert_eq!(public, secret.is_none(), "{answer}");
        let mut pairs = vec![
            ("grant_type", "authorization_code"),
            ("code", "x"),
            ("code_verifier", "y"),
            ("client_id", client_id),
        ];
        if let Some(secret) = secret {
            pairs.push(("client_secret", secret));
        }
        let body = encode(&pairs);
        let token = Request {
            method: "POST",
            path: "/oauth/token",
            content_type: Some("application/x-www-form-urlencoded"),
            client_address: Some("192.0.2.1:5000"),
            ..Default::default()
        };
        let Action::Respond(response) = send(gateway, &token, body.as_bytes()).action else {
            panic!("the token endpoint must answer");
        };
        // Any answer but a failed client authentication: the client exists and its secret works.
        assert_ne!(
            response.status,
            401,
            "a registered client cannot authenticate: {}",
            String::from_utf8_lossy(&response.body)
        );
    });
});
