//! Dynamic Client Registration: `POST /oauth/register` with arbitrary JSON through
//! `Gateway::decide` and `Gateway::decide_with_body` on a fresh `MemoryStore`.
//!
//! Input, one field per line: `Authorization` (empty: none), `Content-Type`, then the body.
//! A 201 answer must be JSON with a `client_id` (and a `client_secret` unless the client is
//! public) that the token endpoint then accepts as client authentication.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_oauth_wasm::form::encode;
use mcp_oauth_wasm::gateway::Request;
use mcp_oauth_wasm::store::MemoryStore;
use mcp_oauth_wasm_fuzz::{
    fields, json_with, optional, response_of, send, text, token_request, with_gateway,
};

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
        let response = response_of(send(gateway, &request, parts[2]), "registration");
        if response.status != 201 {
            assert!(response.status >= 400, "status {}", response.status);
            return;
        }
        let (answer, client_id) = json_with(&response, "client_id");
        let public = answer["token_endpoint_auth_method"] == "none";
        let secret = answer["client_secret"].as_str();
        assert_eq!(public, secret.is_none(), "{answer}");
        let mut pairs = vec![
            ("grant_type", "authorization_code"),
            ("code", "x"),
            ("code_verifier", "y"),
            ("client_id", &client_id),
        ];
        if let Some(secret) = secret {
            pairs.push(("client_secret", secret));
        }
        let body = encode(&pairs);
        let form = Some("application/x-www-form-urlencoded");
        let mut store = MemoryStore::default();
        let response = token_request(gateway, &mut store, None, form, body.as_bytes());
        // Any answer but a failed client authentication: the client exists and its secret works.
        assert_ne!(
            response.status,
            401,
            "a registered client cannot authenticate: {}",
            String::from_utf8_lossy(&response.body)
        );
    });
});
