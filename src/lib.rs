//! mcp-oauth-wasm: OAuth 2.1 for any MCP server, as a proxy-wasm filter for Envoy.
//!
//! The crate is a host-independent core (config, JWT verification, the per-request decision,
//! metadata), unit-tested natively, and a thin proxy-wasm layer in [`filter`] that is compiled
//! only for `wasm32`. The core never calls the host: it takes the request, the time and the
//! key state, and returns a decision.

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::string_slice
    )
)]

#[macro_use]
pub mod json_object;

pub mod ascii_url;
pub mod authz;
pub mod config;
pub mod cors;
pub mod etcd;
pub mod federation;
pub mod form;
pub mod gateway;
pub mod header_pairs;
pub mod http;
pub mod jwt;
pub mod mcp;
pub mod random;
pub mod resource;
pub mod seal;
pub mod secret_hash;
pub mod store;
pub mod upstream;

#[cfg(any(target_arch = "wasm32", feature = "native-filter"))]
mod filter;
