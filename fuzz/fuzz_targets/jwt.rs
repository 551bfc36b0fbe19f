//! JWT and JOSE header: `jwt::Verifier::verify` with the fixture's real key set (HS256/384/512
//! secret, ES256, RS256/PS256 and EdDSA public keys, and the authorization server's own key).
//!
//! Input: a first byte picks the mode. Even: the rest is the token text as a client sends it
//! (JOSE header, base64url, signature and all). Odd: the rest is `header JSON \n payload JSON`,
//! which the harness signs with the fixture's HS256 secret, so arbitrary headers and claims get
//! past the signature and reach the claim checks (`iss`, `aud`, `exp`/`nbf`/`iat`, scopes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_oauth_wasm_fuzz::{fields, hs256_token, with_gateway, NOW, RESOURCE};

const AUDIENCES: [&str; 2] = [RESOURCE, "https://mcp.example.com/sse"];

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    let token = if mode % 2 == 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        let parts = fields(rest, 2);
        hs256_token(parts[0], parts[1])
    };
    with_gateway(|gateway| {
        let verifier = &gateway.verifier;
        let any = verifier.verify_for_any_audience(&token, NOW);
        for audience in AUDIENCES {
            // Twice: the second answer comes from the token cache and must agree.
            let first = verifier.verify(&token, audience, NOW);
            let second = verifier.verify(&token, audience, NOW);
            assert_eq!(first, second);
            if let Ok(verified) = first {
                assert!(verified.audiences.iter().any(|a| a == audience));
                assert!(verified.expires_at + verifier.leeway_seconds >= NOW);
                assert!(verifier.issuers.iter().any(|i| i.issuer == verified.issuer));
                assert!(verified.scopes.windows(2).all(|w| w[0] < w[1]));
                assert_eq!(any.as_ref().ok(), Some(&*verified));
            }
        }
    });
});
