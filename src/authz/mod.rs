//! The built-in OAuth 2.1 authorization server: metadata, authorize (sign-in and consent),
//! token, registration, revocation, introspection and JWKS. Host-independent like the rest of
//! the core: it takes the request (body included), the time and the store.

pub mod authorize;
pub mod cimd;
pub mod clients;
pub mod context;
pub mod grants;
pub mod metadata;
pub mod pages;
pub mod pkce;
pub mod redirect;
pub mod register;
pub mod revocation;
pub mod scope;
pub mod signer;
pub mod state;
pub mod token;

use crate::config::authz::AuthServerConfig;
use crate::http::Response;
use context::{AuthRequest, Ctx};

/// Largest request body an endpoint reads (forms and registration JSON are small).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Metadata,
    Authorize,
    Token,
    Register,
    Revoke,
    Introspect,
    Jwks,
    /// The upstream identity provider's redirect back (when one is configured).
    Callback,
}

impl Endpoint {
    /// Which of our endpoints `path` (without query) is, if any.
    pub fn for_path(config: &AuthServerConfig, path: &str) -> Option<Endpoint> {
        let e = &config.endpoints;
        if metadata::is_metadata_path(&metadata::issuer_path(config), path) {
            Some(Endpoint::Metadata)
        } else if path == e.authorize {
            Some(Endpoint::Authorize)
        } else if path == e.token {
            Some(Endpoint::Token)
        } else if path == e.register && config.registration_enabled {
            Some(Endpoint::Register)
        } else if path == e.revoke {
            Some(Endpoint::Revoke)
        } else if path == e.introspect {
            Some(Endpoint::Introspect)
        } else if path == e.jwks {
            Some(Endpoint::Jwks)
        } else if path == e.callback && config.upstream.is_some() {
            Some(Endpoint::Callback)
        } else {
            None
        }
    }

    /// POSTs carry a body the endpoint must read before answering.
    pub fn reads_body(self, method: &str) -> bool {
        method == "POST" && !matches!(self, Endpoint::Metadata | Endpoint::Jwks)
    }

    /// A short name for stats and logs.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Metadata => "metadata",
            Endpoint::Authorize => "authorize",
            Endpoint::Token => "token",
            Endpoint::Register => "register",
            Endpoint::Revoke => "revoke",
            Endpoint::Introspect => "introspect",
            Endpoint::Jwks => "jwks",
            Endpoint::Callback => "callback",
        }
    }
}

/// An endpoint's answer, the client metadata document it needs first, a call to the
/// upstream identity provider, or the etcd write to make before answering.
#[derive(Debug)]
pub enum Reply {
    Response(Response),
    Fetch(cimd::Fetch),
    Upstream(crate::federation::Call),
    Store(Box<crate::etcd::EtcdCall>),
}

impl From<crate::etcd::work::Next> for Reply {
    fn from(next: crate::etcd::work::Next) -> Reply {
        match next {
            crate::etcd::work::Next::Call(call) => Reply::Store(call),
            crate::etcd::work::Next::Respond { response, .. } => Reply::Response(response),
        }
    }
}

impl From<Response> for Reply {
    fn from(response: Response) -> Reply {
        Reply::Response(response)
    }
}

pub fn handle(ctx: &mut Ctx, endpoint: Endpoint, req: &AuthRequest) -> Reply {
    let response = match endpoint {
        Endpoint::Metadata | Endpoint::Jwks if req.method() != "GET" && req.method() != "HEAD" => {
            context::method_not_allowed("GET, HEAD, OPTIONS")
        }
        Endpoint::Metadata => Response::json(200, &metadata::document(ctx))
            .replace_header("cache-control", "public, max-age=300"),
        Endpoint::Jwks => Response::json(200, &ctx.config.jwks)
            .replace_header("cache-control", "public, max-age=300"),
        Endpoint::Authorize => return authorize::handle(ctx, req),
        Endpoint::Callback => {
            let config = ctx.config;
            return match &config.upstream {
                Some(upstream) => crate::federation::flow::callback(ctx, upstream, req),
                None => Response::oauth_error(404, "not_found", "Not found").into(),
            };
        }
        Endpoint::Token => return token::handle(ctx, req),
        Endpoint::Register => register::handle(ctx, req),
        Endpoint::Revoke => return revocation::revoke(ctx, req),
        Endpoint::Introspect => revocation::introspect(ctx, req),
    };
    Reply::Response(response)
}

#[cfg(test)]
mod tests;
