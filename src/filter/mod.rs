//! proxy-wasm glue: the only code that talks to Envoy. It reads requests, asks the core
//! (`Gateway::decide`) what to do, and applies the answer. Host calls go through `host.rs`,
//! which never panics on a host error.

mod etcd;
mod host;
mod http_context;
mod jwks;
mod root;
mod service_credentials;
mod shared_store;
mod stats;

use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| Box::new(root::Root::default()));
}}
