//! The federated sign-in (`src/federation/`) with the provider's answers fuzzed: through
//! `Gateway::decide` and `Gateway::resume_upstream`, `/oauth/authorize` (the discovery document,
//! `documents::accept_discovery`, `documents::endpoints`), the redirect to the provider, then
//! `/oauth/callback`: the code exchange (`flow::resume`), the key set (`documents::accept_keys`,
//! `documents::keys`), the id_token (`id_token::verify`), userinfo, the allow-lists and scope
//! rules (`identity::admit`) and our code; then the callback replayed, and with a code, our
//! token endpoint and `GET /mcp` with the upstream token held for the backend (`held.rs`,
//! refreshes included). Every callout gets the answer the input gives for its step, as the
//! filter hands it over.
//!
//! Input: a first byte picks the provider (modulo 4, see `upstream_json` in `src/lib.rs`: 0,
//! OpenID Connect with discovery; 1, with explicit endpoints and userinfo, tokens held; 2, plain
//! OAuth 2.0 identified by userinfo, tokens held; 3, discovery and userinfo) and, with bit 2 set,
//! caches the key set answer 120 s before the sign-in (so an unknown `kid` fetches it again).
//! Then one field per line: the callback's query after `state=…&` (as `code=x`), the
//! discovery `:status` (empty: the call failed) and body, the token endpoint's status and body
//! (also its answer to refreshes), an id_token JOSE header (empty: ES256 with the provider's
//! `kid`) and claims, the key set's status and body, userinfo's status and body. `$NONCE` in
//! the claims becomes the sign-in's nonce; `$ID_TOKEN` in the token body becomes those claims
//! signed with the provider's fixed key (`IDP_PRIVATE_JWK`), so arbitrary claims get past the
//! signature; `$KEY` in the key set becomes the provider's public JWK.
//!
//! Checks besides "no panic": our code is issued only if the id_token verifies (checked here
//! with jwt-simple) with the provider's key, found in the key set served, with our `iss`,
//! `aud` and the sign-in's `nonce`, or, without OpenID, userinfo answered 2xx with a subject; its
//! `sub` is that subject. No response, callout or forwarded header holds CR, LF or NUL. One
//! request never needs more than 10 callouts (the filter answers 502 after that). A replayed
//! callback never issues a code. An issued code is redeemed at our token endpoint.
#![no_main]

use std::collections::HashSet;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwt_simple::prelude::{
    Duration, ECDSAP256PublicKeyLike, ES256PublicKey, NoCustomClaims, UnixTimeStamp,
    VerificationOptions,
};
use libfuzzer_sys::fuzz_target;
use mcp_oauth_wasm::authz::grants;
use mcp_oauth_wasm::config::upstream::UpstreamConfig;
use mcp_oauth_wasm::federation::{documents, Answer, Step};
use mcp_oauth_wasm::form::{encode, Params};
use mcp_oauth_wasm::gateway::{Action, Decision, Gateway, Request};
use mcp_oauth_wasm::store::MemoryStore;
use mcp_oauth_wasm_fuzz::{
    assert_status, fields, idp_public_jwk, idp_token, json_with, replace, text, token_request,
    with_federation_gateway, CODE_CHALLENGE, CODE_VERIFIER, FEDERATION_CLIENT, IDP, IDP_CLIENT_ID,
    NOW, REDIRECT_URI,
};
use serde_json::{Map, Value};

/// The filter's `MAX_CALLOUTS_PER_REQUEST`.
const MAX_CALLOUTS: usize = 10;
const DEFAULT_HEADER: &[u8] = br#"{"alg":"ES256","kid":"fuzz-idp","typ":"JWT"}"#;
const CLIENT_ADDRESS: Option<&str> = Some("192.0.2.1:5000");

/// What the provider answers, per call.
struct Provider<'a> {
    discovery: (Option<u16>, &'a [u8]),
    token: (Option<u16>, Vec<u8>),
    keys: (Option<u16>, Vec<u8>),
    userinfo: (Option<u16>, &'a [u8]),
}

impl Provider<'_> {
    fn answer(&self, step: &Step) -> Answer<'_> {
        let (status, body) = match step {
            Step::Discovery => (self.discovery.0, self.discovery.1),
            Step::Exchange(_) | Step::Refresh { .. } => (self.token.0, &self.token.1[..]),
            Step::Keys(_) => (self.keys.0, &self.keys.1[..]),
            Step::Userinfo(_) => (self.userinfo.0, self.userinfo.1),
        };
        Answer { status, body }
    }
}

/// A `:status` field as the filter reads it (empty or not a number: the call failed).
fn status(field: &[u8]) -> Option<u16> {
    std::str::from_utf8(field).ok()?.parse().ok()
}

fn ok(status: Option<u16>) -> bool {
    status.is_some_and(|s| (200..300).contains(&s))
}

fn json_object(body: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice(body).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

fn assert_clean(headers: &[(String, String)], what: &str) {
    for (name, value) in headers {
        assert!(
            !format!("{name}{value}").contains(['\r', '\n', '\0']),
            "{what} header {name:?} holds CR, LF or NUL: {value:?}"
        );
    }
}

/// Like the filter: every callout gets its answer and the gateway goes on, until it answers or
/// forwards the request; at most [`MAX_CALLOUTS`] callouts, and every header checked.
fn drive(
    gateway: &Gateway,
    store: &mut MemoryStore,
    request: &Request,
    first: Decision,
    provider: &Provider,
) -> Action {
    let mut decision = first;
    let mut made = 0;
    loop {
        let call = match decision.action {
            Action::CallUpstream(call) => call,
            Action::Respond(response) => {
                assert_clean(&response.headers, "a response");
                return Action::Respond(response);
            }
            other => {
                if let Action::Forward { headers, .. } = &other {
                    assert_clean(headers, "a forwarded");
                }
                return other;
            }
        };
        made += 1;
        assert!(
            made <= MAX_CALLOUTS,
            "{} for {}: more than {MAX_CALLOUTS} callouts for one request",
            call.step.name(),
            request.path
        );
        assert_clean(&call.headers, "a callout");
        let answer = provider.answer(&call.step);
        decision = gateway.resume_upstream(request, None, call.step, answer, NOW, store);
    }
}

/// Our code, if `action` sends the person back to the client with one.
fn issued_code(action: &Action) -> Option<String> {
    let Action::Respond(response) = action else {
        return None;
    };
    let location = response.header("location")?;
    if response.status != 302 || !location.starts_with(REDIRECT_URI) {
        return None;
    }
    Params::from_path(location)
        .ok()?
        .get("code")
        .map(str::to_string)
}

/// True if the key set holds the provider's public key (P-256 point, however encoded).
fn has_provider_key(keys: &Map<String, Value>) -> bool {
    let ours = idp_public_jwk();
    let point = |jwk: &Value, name: &str| {
        let text = jwk[name].as_str()?;
        URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok()
    };
    keys.get("keys")
        .and_then(Value::as_array)
        .is_some_and(|list| {
            list.iter().any(|jwk| {
                jwk["kty"] == "EC"
                    && jwk["crv"] == "P-256"
                    && point(jwk, "x").is_some()
                    && point(jwk, "x") == point(&ours, "x")
                    && point(jwk, "y") == point(&ours, "y")
            })
        })
}

/// The subject the provider vouched for, checked without the gateway: the id_token verified
/// with the provider's key from the key set served, for us and this sign-in; or, without
/// OpenID, userinfo's subject. Panics if there is none: then no code was deserved.
fn vouched_subject(upstream: &UpstreamConfig, provider: &Provider, nonce: &str) -> String {
    let tokens = json_object(&provider.token.1)
        .filter(|t| ok(provider.token.0) && !t.contains_key("error"))
        .filter(|t| t.get("access_token").is_some_and(Value::is_string))
        .unwrap_or_else(|| panic!("a code after a failed code exchange"));
    let userinfo = json_object(provider.userinfo.1).filter(|_| ok(provider.userinfo.0));
    if upstream.use_userinfo {
        assert!(userinfo.is_some(), "a code without a userinfo answer");
    }
    if upstream.issuer.is_none() {
        let info = userinfo.unwrap_or_default();
        return match info.get(&upstream.subject_claim) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) if n.is_u64() || n.is_i64() => n.to_string(),
            other => panic!("a code for userinfo without a subject: {other:?}"),
        };
    }
    let id_token = tokens
        .get("id_token")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("a code without an id_token"));
    let keys = json_object(&provider.keys.1).filter(|_| ok(provider.keys.0));
    assert!(
        keys.as_ref().is_some_and(has_provider_key),
        "a code for an id_token without the provider's key in the key set served"
    );
    let ours = idp_public_jwk();
    let point: Vec<u8> = [&ours["x"], &ours["y"]]
        .iter()
        .flat_map(|c| {
            URL_SAFE_NO_PAD
                .decode(c.as_str().unwrap_or_default())
                .unwrap_or_default()
        })
        .collect();
    let key = ES256PublicKey::from_bytes(&[&[4u8][..], &point].concat())
        .unwrap_or_else(|e| panic!("the provider's public key: {e}"));
    let options = VerificationOptions {
        allowed_issuers: Some(HashSet::from([IDP.to_string()])),
        allowed_audiences: Some(HashSet::from([IDP_CLIENT_ID.to_string()])),
        required_nonce: Some(nonce.to_string()),
        time_tolerance: Some(Duration::from_secs(60)),
        artificial_time: Some(UnixTimeStamp::from_secs(NOW)),
        ..Default::default()
    };
    let claims = key
        .verify_token::<NoCustomClaims>(id_token, Some(options))
        .unwrap_or_else(|e| panic!("a code for an id_token that does not verify: {e}"));
    let subject = claims
        .subject
        .unwrap_or_else(|| panic!("a code for an id_token without sub"));
    if upstream.use_userinfo {
        let info_sub = userinfo.unwrap_or_default().get("sub").cloned();
        assert_eq!(
            info_sub,
            Some(Value::String(subject.clone())),
            "a code although userinfo describes another account"
        );
    }
    subject
}

fuzz_target!(|data: &[u8]| {
    let Some((case, rest)) = data.split_first() else {
        return;
    };
    let parts = fields(rest, 11);
    let variant = usize::from(case % 4);
    let keys_cached = case & 4 != 0;
    let mut provider = Provider {
        discovery: (status(parts[1]), parts[2]),
        token: (status(parts[3]), parts[4].to_vec()),
        keys: (
            status(parts[7]),
            replace(parts[8], b"$KEY", idp_public_jwk().to_string().as_bytes()),
        ),
        userinfo: (status(parts[9]), parts[10]),
    };
    with_federation_gateway(variant, |gateway| {
        let Some((authz, upstream)) = gateway
            .config
            .authorization_server
            .as_ref()
            .and_then(|a| Some((a, a.upstream.as_ref()?)))
        else {
            return;
        };
        let mut store = MemoryStore::default();
        if keys_cached {
            let (status, body) = (provider.keys.0, &provider.keys.1[..]);
            documents::accept_keys(&mut store, Answer { status, body }, NOW - 120);
        }

        // Our authorization request sends the person to the provider (after discovery).
        let path = format!(
            "/oauth/authorize?response_type=code&client_id={FEDERATION_CLIENT}&{}&code_challenge={CODE_CHALLENGE}&code_challenge_method=S256&scope=mcp%3Atools%20mcp%3Aadmin&state=client-state",
            encode(&[("redirect_uri", REDIRECT_URI)])
        );
        let authorize = Request {
            method: "GET",
            path: &path,
            client_address: CLIENT_ADDRESS,
            ..Default::default()
        };
        let first = gateway.decide(&authorize, NOW, &mut store);
        let Action::Respond(to_provider) = drive(gateway, &mut store, &authorize, first, &provider)
        else {
            return;
        };
        let (Some(location), Some(set_cookie)) = (
            to_provider.header("location"),
            to_provider.header("set-cookie"),
        ) else {
            return;
        };
        let Ok(sent) = Params::from_path(location) else {
            return;
        };
        let (Some(state), Some(cookie)) = (sent.get("state"), set_cookie.split(';').next()) else {
            return;
        };
        let nonce = sent.get("nonce").unwrap_or_default();
        assert_eq!(
            upstream.is_oidc(),
            !nonce.is_empty(),
            "a nonce only for OpenID"
        );

        // The provider's token answer, with an id_token of the fuzzed claims for this nonce.
        if parts[4].windows(9).any(|w| w == b"$ID_TOKEN") {
            let header = match parts[5] {
                b"" => DEFAULT_HEADER,
                header => header,
            };
            let claims = replace(parts[6], b"$NONCE", nonce.as_bytes());
            let id_token = idp_token(header, &claims);
            provider.token.1 = replace(parts[4], b"$ID_TOKEN", id_token.as_bytes());
        }

        // The person comes back.
        let path = format!("/oauth/callback?state={state}&{}", text(parts[0]));
        let callback = Request {
            method: "GET",
            path: &path,
            cookie: Some(cookie),
            client_address: CLIENT_ADDRESS,
            ..Default::default()
        };
        let first = gateway.decide(&callback, NOW, &mut store);
        let done = drive(gateway, &mut store, &callback, first, &provider);
        let code = issued_code(&done);
        if code.is_some() {
            let subject = vouched_subject(upstream, &provider, nonce);
            let opened = code.as_deref().and_then(|c| grants::open_code(authz, c));
            let opened = opened.unwrap_or_else(|| panic!("our code does not open"));
            assert_eq!(opened.sub, subject, "our code is for someone else");
        }

        // The same answer from the provider again: never a second code.
        let first = gateway.decide(&callback, NOW, &mut store);
        let replay = drive(gateway, &mut store, &callback, first, &provider);
        assert!(
            issued_code(&replay).is_none(),
            "a replayed callback issued a code: {replay:?}"
        );

        // The code works at our token endpoint, and the backend gets the upstream token.
        let Some(code) = code else {
            return;
        };
        let form = encode(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", CODE_VERIFIER),
            ("client_id", FEDERATION_CLIENT),
        ]);
        let ctype = Some("application/x-www-form-urlencoded");
        let response = token_request(gateway, &mut store, None, ctype, form.as_bytes());
        assert_status(&response, 200);
        assert_clean(&response.headers, "a token response");
        let (_, access) = json_with(&response, "access_token");
        let bearer = format!("Bearer {access}");
        let mcp = Request {
            method: "GET",
            path: "/mcp",
            authorization: vec![&bearer],
            client_address: CLIENT_ADDRESS,
            ..Default::default()
        };
        let first = gateway.decide(&mcp, NOW, &mut store);
        drive(gateway, &mut store, &mcp, first, &provider);
    });
});
