//! What other servers answer the gateway: token introspection (RFC 7662) answers through
//! `Gateway::accept_introspection`, Client ID Metadata Documents through
//! `Gateway::accept_client_metadata`, and the backend credential's token endpoint answers through
//! `ServiceCredential::accept`, each followed by the decision that uses what was accepted.
//!
//! Input: a first byte picks the case (0: an opaque token on an inspected `POST /mcp`, 1: on
//! `GET /mcp`, 2: an authorization request whose `client_id` is a document URL, 3: the backend
//! credential), then one field per line: the answer's `:status` (empty: no answer, as when the
//! call failed), its `Cache-Control`, and its body. After an answer is accepted, deciding again
//! must not call out again (the filter would answer 502), and an accepted backend credential
//! must be put on the backend request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_oauth_wasm::gateway::{Action, Request};
use mcp_oauth_wasm::store::MemoryStore;
use mcp_oauth_wasm_fuzz::{
    access_token, fields, optional, send_in, send_with_answer, text, with_upstreams_gateway,
    Answer, NOW,
};

const OPAQUE: &str = "Bearer opaque-token-0123456789";
const AUTHORIZE: &str = "/oauth/authorize?response_type=code&client_id=https%3A%2F%2Fapp.example.com%2Fclient.json&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256&state=s&scope=mcp%3Atools";
const TOOL_CALL: &[u8] =
    br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#;

fuzz_target!(|data: &[u8]| {
    let Some((case, rest)) = data.split_first() else {
        return;
    };
    let parts = fields(rest, 3);
    let status = text(parts[0]);
    let cache_control = text(parts[1]);
    let answer = Answer {
        status: optional(&status),
        cache_control: optional(&cache_control),
        body: parts[2],
    };
    with_upstreams_gateway(|gateway| {
        let mut store = MemoryStore::default();
        let (method, path, authorization, body) = match case % 4 {
            0 => ("POST", "/mcp", Some(OPAQUE), TOOL_CALL),
            1 => ("GET", "/mcp", Some(OPAQUE), &b""[..]),
            2 => ("GET", AUTHORIZE, None, &b""[..]),
            _ => {
                let Some(credential) = gateway.config.backend_credentials.first() else {
                    return;
                };
                let accepted = credential.accept(&mut store, answer.status, answer.body, NOW);
                let token = format!("Bearer {}", access_token("svc", "mcp:tools"));
                let request = Request {
                    method: "GET",
                    path: "/backend",
                    authorization: vec![&token],
                    ..Default::default()
                };
                let decision = send_in(gateway, &mut store, &request, b"");
                if let Ok(exp) = accepted {
                    assert!(exp > NOW);
                    let Action::Forward { headers, .. } = &decision.action else {
                        panic!("an accepted backend credential is not used: {decision:?}");
                    };
                    assert!(headers.iter().any(|(name, _)| name == "authorization"));
                }
                return;
            }
        };
        let request = Request {
            method,
            path,
            authorization: authorization.into_iter().collect(),
            content_type: Some("application/json"),
            client_address: Some("192.0.2.1:5000"),
            ..Default::default()
        };
        let _ = send_with_answer(gateway, &mut store, &request, body, answer);
    });
});
