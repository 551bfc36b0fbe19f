//! Understanding MCP: JSON-RPC bodies, per-tool/prompt/resource scopes and per-client tool
//! lists.

pub mod annotations;
pub mod glob;
pub mod jsonrpc;
pub mod listing;
pub mod policy;
pub mod session;
