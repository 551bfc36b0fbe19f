//! The JSON-RPC body of an MCP request: `mcp::jsonrpc::calls` and `mcp::policy::McpPolicy::check`
//! directly, and the same body as a `POST /mcp` through `Gateway::decide` and
//! `Gateway::decide_with_body` with a valid token (rules with globs, per-client allow and deny
//! lists, annotation scopes, step-up 403s, JSON-RPC errors, list filters).
//!
//! Input: a first byte picks the caller (`CALLERS`), the rest is the body. The gateway's verdict
//! must agree with the policy's own on the parsed calls.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_oauth_wasm::gateway::{Action, Outcome, Request};
use mcp_oauth_wasm::mcp::annotations::ToolKinds;
use mcp_oauth_wasm::mcp::jsonrpc::{calls, MAX_BATCH};
use mcp_oauth_wasm::mcp::listing::ListFilter;
use mcp_oauth_wasm::mcp::policy::Verdict;
use mcp_oauth_wasm_fuzz::{access_token, send, with_gateway, CALLERS};

fuzz_target!(|data: &[u8]| {
    let Some((pick, body)) = data.split_first() else {
        return;
    };
    let (client_id, scope) = CALLERS[usize::from(*pick) % CALLERS.len()];
    // Sorted, as the verifier hands them over.
    let mut scopes: Vec<String> = scope.split(' ').map(str::to_string).collect();
    scopes.sort();
    let parsed = calls(body);
    if let Ok(calls) = &parsed {
        assert!(calls.len() <= MAX_BATCH);
        for call in calls {
            let _ = call.describe();
        }
    }
    with_gateway(|gateway| {
        let Some(policy) = gateway.config.mcp.as_ref() else {
            return;
        };
        let verdict = parsed
            .as_ref()
            .ok()
            .map(|calls| policy.check(calls, Some(client_id), &scopes, &ToolKinds::default()));
        let authorization = format!("Bearer {}", access_token(client_id, scope));
        let request = Request {
            method: "POST",
            path: "/mcp",
            authorization: vec![&authorization],
            content_type: Some("application/json"),
            ..Default::default()
        };
        let decision = send(gateway, &request, body);
        match (&verdict, &decision.action) {
            (None, Action::Respond(r)) => assert!(r.status == 400 || r.status == 413),
            (Some(Verdict::Allow), Action::Forward { list_filter, .. }) => {
                assert_eq!(decision.outcome, Outcome::Allowed);
                let expected = parsed.as_ref().ok().and_then(|calls| {
                    ListFilter::for_calls(calls, Some(client_id), &scopes, "/mcp")
                });
                assert_eq!(list_filter, &expected);
            }
            (Some(Verdict::NeedScopes { .. }), Action::Respond(r)) => assert_eq!(r.status, 403),
            (Some(Verdict::ClientDenied { .. }), Action::Respond(r)) => assert_eq!(r.status, 403),
            (verdict, action) => panic!("policy says {verdict:?}, gateway does {action:?}"),
        }
    });
});
