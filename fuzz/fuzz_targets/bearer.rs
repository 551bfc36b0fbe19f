//! The `Authorization` header(s): `resource::bearer::bearer_token`, then the whole resource-server
//! check through `Gateway::decide` on a protected MCP route (token verification, scopes,
//! `WWW-Authenticate` challenges). Input: one header value per line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_oauth_wasm::gateway::{Action, Request};
use mcp_oauth_wasm::resource::bearer::{bearer_token, Credential};
use mcp_oauth_wasm_fuzz::{send, with_gateway};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let headers: Vec<&str> = if text.is_empty() {
        vec![]
    } else {
        text.split('\n').take(4).collect()
    };
    if let Credential::Bearer(token) = bearer_token(&headers) {
        // A token goes into logs and headers only as token68 text, never empty.
        assert!(!token.is_empty());
        assert!(token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b)));
    }
    with_gateway(|gateway| {
        for (method, path) in [("GET", "/admin"), ("POST", "/sse/x"), ("GET", "/mcp")] {
            let request = Request {
                method,
                path,
                authorization: headers.clone(),
                ..Default::default()
            };
            let decision = send(gateway, &request, b"");
            if let Action::Respond(response) = &decision.action {
                for (name, value) in &response.headers {
                    // Header values the filter builds must be valid for the host.
                    assert!(!value.contains(['\r', '\n', '\0']), "{name}: {value:?}");
                }
            }
        }
    });
});
