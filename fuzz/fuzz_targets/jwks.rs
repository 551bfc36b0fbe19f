//! JWK Sets: `jwt::KeySet::from_jwks` on arbitrary bytes, as a fetched set (the filter's JWKS
//! fetch parses the body with `serde_json` and calls it with `KeySource::Remote`) and as an
//! inline one. Every key that parses is then used for real: a token naming its `kid` and
//! algorithm goes through `Verifier::verify_for_any_audience`, so odd moduli, exponents and
//! curve points reach the signature code.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use mcp_oauth_wasm::jwt::{Alg, Issuer, KeySet, KeySource, Verifier, MAX_KEYS_PER_SET};
use mcp_oauth_wasm_fuzz::NOW;
use serde_json::json;

const ISSUER: &str = "https://jwks.example.com";

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let remote = KeySet::from_jwks(&doc, &Alg::ALL, KeySource::Remote);
    let inline = KeySet::from_jwks(&doc, &Alg::ALL, KeySource::Inline);
    if let Ok((set, _)) = &inline {
        // Inline parsing is the strict one: what it accepts, a fetch accepts too (but for
        // symmetric keys, which are never taken from a fetched set).
        let symmetric = set
            .entries()
            .iter()
            .any(|e| matches!(e.key.alg(), Alg::HS256 | Alg::HS384 | Alg::HS512));
        assert!(remote.is_ok() || symmetric);
    }
    for (set, _) in [remote, inline].into_iter().flatten() {
        assert!(!set.is_empty());
        // A key set never holds more than one key per listed JWK and algorithm.
        assert!(set.entries().len() <= MAX_KEYS_PER_SET * Alg::ALL.len());
        let tokens: Vec<String> = set
            .entries()
            .iter()
            .take(4)
            .map(|entry| {
                let header = json!({"alg": entry.key.alg().name(), "kid": entry.kid, "typ": "JWT"});
                let payload = json!({"iss": ISSUER, "aud": "x", "exp": NOW + 60});
                format!(
                    "{}.{}.{}",
                    URL_SAFE_NO_PAD.encode(header.to_string()),
                    URL_SAFE_NO_PAD.encode(payload.to_string()),
                    URL_SAFE_NO_PAD.encode([0x5a; 256])
                )
            })
            .collect();
        let verifier = Verifier::new(
            vec![Issuer::new(ISSUER.into(), Alg::ALL.to_vec(), set, false)],
            60,
            16384,
            0,
        );
        for token in tokens {
            // The signature is garbage: no key may accept it.
            assert!(verifier.verify_for_any_audience(&token, NOW).is_err());
        }
    }
});
