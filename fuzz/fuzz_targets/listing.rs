//! Filtering list answers: `mcp::listing::ListFilter::filter_json` on an arbitrary response body
//! and `mcp::listing::SseFilter` on the same bytes as an SSE stream, for the fixture's MCP policy
//! and a filter made from a batch of `tools/list`, `prompts/list` and `resources/list` requests.
//!
//! Input: a first byte picks the caller (`CALLERS`), a second the SSE chunk size (1 to 256), the
//! rest is the backend's answer. Checks: a filtered JSON body is JSON and filtering it again
//! changes nothing; the SSE output does not depend on how the stream is cut into chunks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_oauth_wasm::mcp::annotations::ToolKinds;
use mcp_oauth_wasm::mcp::jsonrpc::calls;
use mcp_oauth_wasm::mcp::listing::{ListFilter, Seen, SseFilter};
use mcp_oauth_wasm::mcp::policy::McpPolicy;
use mcp_oauth_wasm_fuzz::{with_gateway, CALLERS};

const LIST_REQUESTS: &[u8] = br#"[
    {"jsonrpc":"2.0","id":1,"method":"tools/list"},
    {"jsonrpc":"2.0","id":"p","method":"prompts/list","params":{}},
    {"jsonrpc":"2.0","id":3,"method":"resources/list"},
    {"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"echo"}}
]"#;

fn sse(
    filter: &ListFilter,
    policy: &McpPolicy,
    kinds: &ToolKinds,
    stream: &[u8],
    chunk: usize,
) -> (Vec<u8>, Seen) {
    let mut sse = SseFilter::default();
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for piece in stream.chunks(chunk) {
        out.extend(sse.push(filter, policy, kinds, piece, &mut seen));
    }
    out.extend(sse.finish());
    (out, seen)
}

fuzz_target!(|data: &[u8]| {
    let [pick, chunk, body @ ..] = data else {
        return;
    };
    let (client_id, scope) = CALLERS[usize::from(*pick) % CALLERS.len()];
    let scopes: Vec<String> = scope.split(' ').map(str::to_string).collect();
    let Ok(requests) = calls(LIST_REQUESTS) else {
        panic!("fixture list requests do not parse");
    };
    let Some(filter) = ListFilter::for_calls(&requests, Some(client_id), &scopes, "/mcp") else {
        panic!("fixture list requests make no filter");
    };
    with_gateway(|gateway| {
        let Some(policy) = gateway.config.mcp.as_ref() else {
            return;
        };
        let mut seen = Vec::new();
        let kinds = ToolKinds::default();
        if let Some(filtered) = filter.filter_json(policy, &kinds, body, &mut seen) {
            assert!(serde_json::from_slice::<serde_json::Value>(&filtered).is_ok());
            let learnt = kinds.with(&seen);
            let mut again = Vec::new();
            let twice = filter.filter_json(policy, &learnt, &filtered, &mut again);
            assert!(
                twice.is_none(),
                "filtering twice changed {:?}",
                String::from_utf8_lossy(&filtered)
            );
        }
        let (whole, seen_whole) = sse(&filter, policy, &kinds, body, body.len().max(1));
        let (cut, seen_cut) = sse(&filter, policy, &kinds, body, usize::from(*chunk) + 1);
        assert_eq!(whole, cut, "the SSE output depends on the chunking");
        assert_eq!(seen_whole, seen_cut);
    });
});
