//! Credentials the gateway itself holds for the backend (never the MCP client's token).

pub mod service_credential;
