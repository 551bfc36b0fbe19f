//! The token request: `POST /oauth/token` through `Gateway::decide` and
//! `Gateway::decide_with_body` on a fresh `MemoryStore` (client authentication by Basic or form,
//! the three grants, scopes, resource indicators, rate limits, code replay, refresh rotation).
//!
//! Input, one field per line: `Authorization` (empty: none), `Content-Type`, a `Code` as JSON,
//! a `Refresh` as JSON, then the body. Where the body says `$CODE` or `$REFRESH`, the harness
//! puts that JSON sealed with the fixture's sealing key, so arbitrary grants (expired, another
//! client's, a wrong PKCE challenge, an odd generation) get past the seal and reach the checks.
//! A 200 answer must carry an access token the gateway itself accepts; a refresh token it
//! hands out is then used once, and replayed once (but for the last generation, u64::MAX,
//! which ends a grant).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_oauth_wasm::authz::grants::{self, Code, Refresh};
use mcp_oauth_wasm::form::{encode, Params};
use mcp_oauth_wasm::store::MemoryStore;
use mcp_oauth_wasm_fuzz::{
    assert_status, fields, json_with, optional, replace, text, token_request, with_gateway, NOW,
};

fuzz_target!(|data: &[u8]| {
    let parts = fields(data, 5);
    let authorization = text(parts[0]);
    let content_type = text(parts[1]);
    let mut body = parts[4].to_vec();
    with_gateway(|gateway| {
        let Some(authz) = gateway.config.authorization_server.as_ref() else {
            return;
        };
        if let Ok(code) = serde_json::from_slice::<Code>(parts[2]) {
            if let Some(sealed) = grants::seal_code(authz, &code) {
                body = replace(&body, b"$CODE", sealed.as_bytes());
            }
        }
        if let Ok(refresh) = serde_json::from_slice::<Refresh>(parts[3]) {
            if let Some(sealed) = grants::seal_refresh(authz, &refresh) {
                body = replace(&body, b"$REFRESH", sealed.as_bytes());
            }
        }
        let mut store = MemoryStore::default();
        let auth = optional(&authorization);
        let ctype = optional(&content_type);
        let response = token_request(gateway, &mut store, auth, ctype, &body);
        if response.status != 200 {
            return;
        }
        let (answer, access) = json_with(&response, "access_token");
        if let Err(e) = gateway.verifier.verify_for_any_audience(&access, NOW) {
            panic!("the gateway refuses its own access token: {e:?}");
        }
        let Some(refresh) = answer["refresh_token"].as_str() else {
            return;
        };
        // Rotation: the new refresh token works once for the same client, then it is a replay.
        // The last generation ends a grant (`rotate_family` refuses to rotate it); only a
        // sealed input can get there, no real grant rotates 2^64 times.
        if grants::open_refresh(authz, refresh).is_some_and(|r| r.gen == u64::MAX) {
            return;
        }
        let form = Params::parse(&body).unwrap_or_default();
        let mut pairs = vec![("grant_type", "refresh_token"), ("refresh_token", refresh)];
        for name in ["client_id", "client_secret"] {
            if let Some(value) = form.get(name) {
                pairs.push((name, value));
            }
        }
        let again = encode(&pairs);
        let ctype = Some("application/x-www-form-urlencoded");
        let first = token_request(gateway, &mut store, auth, ctype, again.as_bytes());
        assert_status(&first, 200);
        let replay = token_request(gateway, &mut store, auth, ctype, again.as_bytes());
        assert_status(&replay, 400);
    });
});
