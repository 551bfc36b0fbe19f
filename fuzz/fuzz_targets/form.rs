//! Form bodies and query strings: `form::Params::parse` and `Params::from_path` on arbitrary
//! bytes, and the round trip `form::encode` → `Params::parse` on arbitrary names and values
//! (each input line is `name TAB value`).
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use mcp_oauth_wasm::form::{encode, Params};

fuzz_target!(|data: &[u8]| {
    if let Ok(params) = Params::parse(data) {
        // The empty name is a parameter like any other; it must not panic to look up.
        let _ = params.get("");
        let _ = params.get("grant_type");
    }
    let text = String::from_utf8_lossy(data);
    let _ = Params::from_path(&text);

    let mut seen = HashSet::new();
    let pairs: Vec<(&str, &str)> = text
        .lines()
        .map(|line| line.split_once('\t').unwrap_or((line, "")))
        .filter(|(name, _)| seen.insert(*name))
        .collect();
    let encoded = encode(&pairs);
    let parsed = match Params::parse(encoded.as_bytes()) {
        Ok(parsed) => parsed,
        Err(name) => panic!("encode gave a repeated parameter {name:?}: {encoded:?}"),
    };
    for (name, value) in &pairs {
        let expected = (!value.is_empty()).then_some(*value);
        assert_eq!(parsed.get(name), expected, "{name:?} in {encoded:?}");
    }
    // The same text as a query string.
    let from_path = Params::from_path(&format!("/p?{encoded}"));
    assert!(from_path.is_ok());
});
