//! Times `Gateway::decide` for one request, in batches; prints one JSON line per case.
//! Arguments: a plugin config (JSON), a bearer token, a batch size, a batch count, the unix
//! time, and optionally `cache` or `no_cache` to time one case only (for a profiler). The
//! config is also run with `token_cache_entries: 0`, so both paths are timed.

use std::time::Instant;

use mcp_oauth_wasm::config;
use mcp_oauth_wasm::gateway::{Action, Gateway, Request};
use mcp_oauth_wasm::store::MemoryStore;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (config_text, token, batch, batches, now, only) = match args.as_slice() {
        [_, c, t, b, n, now] => (c, t, b, n, now, None),
        [_, c, t, b, n, now, only] => (c, t, b, n, now, Some(only.as_str())),
        _ => {
            eprintln!("usage: bench-core-decide CONFIG TOKEN BATCH BATCHES NOW [cache|no_cache]");
            std::process::exit(2);
        }
    };
    let batch: u32 = batch.parse().expect("BATCH is a number");
    let token = token.as_str();
    let batches: u32 = batches.parse().expect("BATCHES is a number");
    let now: u64 = now.parse().expect("NOW is a unix time");
    let authorization = format!("Bearer {token}");
    let mut base: serde_json::Value = serde_json::from_str(config_text).expect("CONFIG is JSON");
    for (case, entries) in [("cache", None), ("no_cache", Some(0))] {
        if only.is_some_and(|o| o != case) {
            continue;
        }
        if let Some(n) = entries {
            base["token_cache_entries"] = serde_json::json!(n);
        }
        let env = |_: &str| None;
        let (config, verifier) =
            config::parse(base.to_string().as_bytes(), &env).expect("the config parses");
        let gateway = Gateway { config, verifier };
        let request = Request {
            method: "GET",
            path: "/mcp",
            authorization: vec![authorization.as_str()],
            ..Default::default()
        };
        let mut store = MemoryStore::default();
        let run = |store: &mut MemoryStore| {
            let decision = gateway.decide(&request, now, store);
            assert!(matches!(decision.action, Action::Forward { .. }), "the token is accepted");
        };
        run(&mut store);
        let per_batch = if entries.is_some() { batch.div_ceil(50).max(1) } else { batch };
        let mut times = Vec::new();
        for _ in 0..batches {
            let start = Instant::now();
            for _ in 0..per_batch {
                run(&mut store);
            }
            times.push(start.elapsed().as_nanos() as f64 / f64::from(per_batch));
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{{\"case\":\"{case}\",\"min_ns\":{:.0},\"median_ns\":{:.0}}}",
            times[0],
            times[times.len() / 2]
        );
    }
}
