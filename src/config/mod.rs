//! Plugin configuration: parsed once at load time into checked, ready-to-use values.
//!
//! Every error names the field path (`issuers[0].remote_jwks.uri`) and the reason, because a
//! bad config makes Envoy refuse the filter and the log line is all the operator gets.

pub mod authz;
mod authz_raw;
mod json_path;
pub mod mcp;
mod raw;
pub mod state_store;
pub mod upstream;
mod uri;

use std::fmt;

use serde::Deserialize;

pub use raw::Unmatched;
use raw::{RawConfig, RawIssuer, RawRemoteJwks, RawRoute, RawSecret};
pub use uri::{canonical_resource_uri, is_loopback, origin_of};

use crate::jwt::{Alg, Issuer, KeySet, KeySource, Verifier};

/// A configuration error: where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub reason: String,
}

impl ConfigError {
    fn at(path: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "config error: {}", self.reason)
        } else {
            write!(f, "config error at {}: {}", self.path, self.reason)
        }
    }
}

/// Where an issuer's keys are fetched from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteJwks {
    pub issuer_index: usize,
    pub uri: String,
    pub cluster: String,
    /// `:authority` and `:path` of the fetch, split from `uri` once.
    pub authority: String,
    pub path: String,
    pub timeout_ms: u64,
    pub refresh_interval_seconds: u64,
    pub min_refetch_interval_seconds: u64,
    pub startup_wait_ms: u64,
}

/// One protected path prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub prefix: String,
    /// Upper-case methods; empty means every method.
    pub methods: Vec<String>,
    pub scopes: Vec<String>,
    pub resource: String,
    /// A service credential (by name) to put on the backend requests of this route.
    pub backend_credential: Option<String>,
    /// Put the signed-in person's upstream token on the backend requests of this route.
    pub upstream_token: bool,
    /// This route's protected-resource metadata URL, made once: every 401 and 403 names it.
    pub metadata_url: String,
}

/// Names of the headers that carry the verified identity upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityHeaders {
    pub subject: Option<String>,
    pub client_id: Option<String>,
    pub scopes: Option<String>,
    pub issuer: Option<String>,
}

impl IdentityHeaders {
    pub fn names(&self) -> impl Iterator<Item = &str> {
        [&self.subject, &self.client_id, &self.scopes, &self.issuer]
            .into_iter()
            .flatten()
            .map(String::as_str)
    }
}

/// The checked configuration.
pub struct Config {
    pub resource: String,
    /// Scheme, host and port of `resource`: the base of every metadata URL.
    pub origin: String,
    /// The metadata URL of `resource` (the root form), made once.
    pub metadata_url: String,
    pub resource_name: Option<String>,
    pub resource_documentation: Option<String>,
    pub authorization_servers: Vec<String>,
    pub scopes_supported: Vec<String>,
    pub routes: Vec<Route>,
    pub public_paths: Vec<String>,
    pub unmatched: Unmatched,
    pub identity_headers: IdentityHeaders,
    pub health_path: String,
    pub cors_allowed_origins: Vec<String>,
    pub remote_jwks: Vec<RemoteJwks>,
    /// The built-in authorization server, when enabled.
    pub authorization_server: Option<authz::AuthServerConfig>,
    /// JSON-RPC inspection on MCP endpoints, when enabled.
    pub mcp: Option<crate::mcp::policy::McpPolicy>,
    /// Opaque tokens checked by introspection, when enabled.
    pub introspection: Option<crate::resource::introspection::IntrospectionConfig>,
    /// Tokens the gateway holds for the backend.
    pub backend_credentials: Vec<crate::upstream::service_credential::ServiceCredential>,
    /// The authorization server's cross-replica state in etcd, when configured.
    pub state_store: Option<state_store::EtcdConfig>,
}

/// Parses and checks the plugin configuration. `env` reads environment variables (the Wasm VM's
/// under Envoy), so secrets can stay out of the config text.
pub fn parse(
    json: &[u8],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Config, Verifier), ConfigError> {
    if json.iter().all(u8::is_ascii_whitespace) {
        return Err(ConfigError::at(
            "",
            "the plugin configuration is empty; give the JSON document as the filter's `configuration`",
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let raw = <RawConfig as Deserialize>::deserialize(&mut deserializer)
        .map_err(|e| ConfigError::at(json_path::path_of_error(json, &e), e.to_string()))?;
    deserializer
        .end()
        .map_err(|e| ConfigError::at("", format!("trailing characters after the JSON: {e}")))?;
    build(raw, env)
}

fn build(
    raw: RawConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Config, Verifier), ConfigError> {
    let resource =
        canonical_resource_uri(&raw.resource).map_err(|r| ConfigError::at("resource", r))?;
    let origin = origin_of(&resource);
    if let Some(doc) = &raw.resource_documentation {
        crate::ascii_url::parse(doc)
            .map_err(|e| ConfigError::at("resource_documentation", format!("not a URL: {e}")))?;
    }
    let authorization_server = raw
        .authorization_server
        .map(|section| authz::build(section, &origin, env))
        .transpose()?;
    let authorization_servers = match (raw.authorization_servers, &authorization_server) {
        (Some(list), _) => list,
        (None, Some((as_config, _))) => vec![as_config.issuer.clone()],
        (None, None) => vec![],
    };
    if authorization_servers.is_empty() {
        return Err(ConfigError::at(
            "authorization_servers",
            "list at least one authorization server (clients need one to get a token)",
        ));
    }
    for (i, server) in authorization_servers.iter().enumerate() {
        canonical_resource_uri(server)
            .map_err(|r| ConfigError::at(format!("authorization_servers[{i}]"), r))?;
    }
    let leeway_seconds = raw.leeway_seconds.unwrap_or(60);
    if leeway_seconds > 300 {
        return Err(ConfigError::at("leeway_seconds", "at most 300 seconds"));
    }
    let max_token_bytes = raw.max_token_bytes.unwrap_or(16384);
    if !(256..=1_048_576).contains(&max_token_bytes) {
        return Err(ConfigError::at(
            "max_token_bytes",
            "must be between 256 and 1048576",
        ));
    }
    let introspection = raw
        .introspection
        .map(|r| build_introspection(r, env))
        .transpose()?;
    let raw_issuers = raw.issuers.unwrap_or_default();
    if raw_issuers.is_empty() && authorization_server.is_none() && introspection.is_none() {
        return Err(ConfigError::at(
            "issuers",
            "list at least one trusted token issuer",
        ));
    }
    let mut issuers = Vec::new();
    let mut remote_jwks = Vec::new();
    for (i, raw_issuer) in raw_issuers.into_iter().enumerate() {
        let path = format!("issuers[{i}]");
        if issuers
            .iter()
            .any(|x: &Issuer| x.issuer == raw_issuer.issuer)
        {
            return Err(ConfigError::at(format!("{path}.issuer"), "listed twice"));
        }
        let (issuer, remote) = build_issuer(&path, i, raw_issuer, env)?;
        issuers.push(issuer);
        remote_jwks.extend(remote);
    }
    // The built-in server's own tokens are trusted without further config.
    let authorization_server = match authorization_server {
        Some((as_config, trusted_keys)) => {
            if issuers.iter().any(|x| x.issuer == as_config.issuer) {
                return Err(ConfigError::at(
                    "issuers",
                    "the built-in authorization server's issuer is trusted automatically; do not list it",
                ));
            }
            let algs = vec![Alg::ES256, Alg::HS256];
            issuers.push(Issuer::new(
                as_config.issuer.clone(),
                algs,
                trusted_keys,
                false,
            ));
            Some(as_config)
        }
        None => None,
    };
    let routes = match raw.routes {
        None => vec![Route {
            prefix: "/".into(),
            methods: vec![],
            scopes: vec![],
            resource: resource.clone(),
            backend_credential: None,
            upstream_token: false,
            metadata_url: crate::resource::metadata::metadata_url(&origin, "/"),
        }],
        Some(routes) => routes
            .into_iter()
            .enumerate()
            .map(|(i, r)| build_route(&format!("routes[{i}]"), r, &resource, &origin))
            .collect::<Result<_, _>>()?,
    };
    let mcp = raw.mcp.map(mcp::build).transpose()?;
    let backend_credentials = raw
        .backend_credentials
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, c)| build_service_credential(&format!("backend_credentials[{i}]"), c, env))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, c) in backend_credentials.iter().enumerate() {
        if backend_credentials.iter().take(i).any(|o| o.name == c.name) {
            return Err(ConfigError::at(
                format!("backend_credentials[{i}].name"),
                "listed twice",
            ));
        }
    }
    for (i, route) in routes.iter().enumerate() {
        if let Some(name) = &route.backend_credential {
            if !backend_credentials.iter().any(|c| &c.name == name) {
                return Err(ConfigError::at(
                    format!("routes[{i}].backend_credential"),
                    format!("no backend_credentials entry is named \"{name}\""),
                ));
            }
        }
    }
    let mut authorization_server = authorization_server;
    for (i, _) in routes.iter().enumerate().filter(|(_, r)| r.upstream_token) {
        let upstream = authorization_server
            .as_mut()
            .and_then(|a| a.upstream.as_mut())
            .ok_or_else(|| {
                ConfigError::at(
                    format!("routes[{i}].upstream_token"),
                    "needs authorization_server.upstream (people sign in there)",
                )
            })?;
        upstream.hold_tokens = true;
    }
    let state_store = raw
        .state_store
        .map(|section| state_store::build(section, env))
        .transpose()?;
    if state_store.is_some() && authorization_server.is_none() {
        return Err(ConfigError::at(
            "state_store",
            "holds the authorization server's state: configure authorization_server too",
        ));
    }
    let scopes_supported = match raw.scopes_supported {
        Some(scopes) => {
            check_scopes("scopes_supported", &scopes)?;
            scopes
        }
        None => {
            // Every scope a client may be asked for: routes, MCP rules, and what the built-in
            // server grants.
            let mut all: Vec<String> = routes.iter().flat_map(|r| r.scopes.clone()).collect();
            if let Some(policy) = &mcp {
                all.extend(policy.rules.iter().flat_map(|r| r.scopes.clone()));
                all.extend(policy.default_scopes.clone());
                if let Some(a) = &policy.annotation_scopes {
                    all.extend([a.read_only.clone(), a.write.clone(), a.destructive.clone()]);
                }
            }
            if let Some(as_config) = &authorization_server {
                all.extend(as_config.scope_names());
            }
            all.sort();
            all.dedup();
            all
        }
    };
    let public_paths = raw.public_paths.unwrap_or_else(|| vec!["/health".into()]);
    for (i, p) in public_paths.iter().enumerate() {
        check_path(&format!("public_paths[{i}]"), p)?;
    }
    let health_path = raw.health_path.unwrap_or_else(|| "/health".into());
    check_path("health_path", &health_path)?;
    let identity = raw.identity_headers.unwrap_or_default();
    let identity_headers = IdentityHeaders {
        subject: header_name("identity_headers.subject", identity.subject)?,
        client_id: header_name("identity_headers.client_id", identity.client_id)?,
        scopes: header_name("identity_headers.scopes", identity.scopes)?,
        issuer: header_name("identity_headers.issuer", identity.issuer)?,
    };
    let cors_allowed_origins = raw
        .cors
        .and_then(|c| c.allowed_origins)
        .unwrap_or_else(|| vec!["*".into()]);
    let config = Config {
        resource,
        metadata_url: crate::resource::metadata::metadata_url(&origin, "/"),
        origin,
        resource_name: raw.resource_name,
        resource_documentation: raw.resource_documentation,
        authorization_servers,
        scopes_supported,
        routes,
        public_paths,
        unmatched: raw.unmatched.unwrap_or(Unmatched::Authenticate),
        identity_headers,
        health_path,
        cors_allowed_origins,
        remote_jwks,
        authorization_server,
        mcp,
        introspection,
        backend_credentials,
        state_store,
    };
    let cache_entries = raw.token_cache_entries.unwrap_or(10_000);
    if cache_entries > 1_000_000 {
        return Err(ConfigError::at("token_cache_entries", "at most 1000000"));
    }
    let verifier = Verifier::new(
        issuers,
        leeway_seconds,
        max_token_bytes as usize,
        cache_entries as usize,
    );
    Ok((config, verifier))
}

/// An endpoint the filter calls through a cluster: `https://` (or `http://` on loopback),
/// split into `:authority` and `:path` once.
fn call_target(path: &str, uri: &str) -> Result<(String, String), ConfigError> {
    let url = crate::ascii_url::parse(uri)
        .map_err(|e| ConfigError::at(path, format!("not a URL: {e}")))?;
    let host = url.host_str().unwrap_or_default().to_string();
    let secure = url.scheme() == "https" || (url.scheme() == "http" && uri::is_loopback(&host));
    if !secure || host.is_empty() {
        return Err(ConfigError::at(
            path,
            "must be an absolute https:// URL (http:// only for loopback)",
        ));
    }
    let authority = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    };
    let mut request_path = url.path().to_string();
    if let Some(query) = url.query() {
        request_path.push('?');
        request_path.push_str(query);
    }
    Ok((authority, request_path))
}

/// A secret given inline or by environment variable: exactly one of the two.
fn secret_value(
    path: &str,
    inline: Option<String>,
    env_name: Option<String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    match (inline, env_name) {
        (Some(secret), None) => Ok(secret),
        (None, Some(var)) => env(&var).ok_or_else(|| {
            ConfigError::at(
                format!("{path}.client_secret_env"),
                format!("environment variable {var} is not set in the Wasm VM"),
            )
        }),
        _ => Err(ConfigError::at(
            path,
            "give exactly one of client_secret, client_secret_env",
        )),
    }
}

fn build_service_credential(
    path: &str,
    raw: raw::RawServiceCredential,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<crate::upstream::service_credential::ServiceCredential, ConfigError> {
    if raw.name.is_empty() {
        return Err(ConfigError::at(format!("{path}.name"), "must not be empty"));
    }
    let (authority, request_path) =
        call_target(&format!("{path}.token_endpoint"), &raw.token_endpoint)?;
    let client_secret = secret_value(path, raw.client_secret, raw.client_secret_env, env)?;
    let header = raw
        .header
        .unwrap_or_else(|| "authorization".into())
        .to_ascii_lowercase();
    if header != "authorization" {
        header_name(&format!("{path}.header"), Some(header.clone()))?;
    }
    let timeout_ms = raw.timeout_ms.unwrap_or(3000);
    if !(100..=30_000).contains(&timeout_ms) {
        return Err(ConfigError::at(
            format!("{path}.timeout_ms"),
            "must be between 100 and 30000",
        ));
    }
    Ok(crate::upstream::service_credential::ServiceCredential {
        name: raw.name,
        cluster: raw.cluster,
        authority,
        path: request_path,
        client_id: raw.client_id,
        client_secret,
        scope: raw.scope,
        resource: raw.resource,
        timeout_ms,
        refresh_before_seconds: raw.refresh_before_seconds.unwrap_or(60),
        header,
    })
}

fn build_introspection(
    raw: raw::RawIntrospection,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<crate::resource::introspection::IntrospectionConfig, ConfigError> {
    let p = "introspection";
    let (authority, request_path) = call_target(&format!("{p}.endpoint"), &raw.endpoint)?;
    if raw.cluster.is_empty() {
        return Err(ConfigError::at(
            format!("{p}.cluster"),
            "name the Envoy cluster that reaches the endpoint",
        ));
    }
    let client_secret = secret_value(p, raw.client_secret, raw.client_secret_env, env)?;
    let timeout_ms = raw.timeout_ms.unwrap_or(2000);
    if !(100..=30_000).contains(&timeout_ms) {
        return Err(ConfigError::at(
            format!("{p}.timeout_ms"),
            "must be between 100 and 30000",
        ));
    }
    let max_cache_seconds = raw.max_cache_seconds.unwrap_or(60);
    if max_cache_seconds > 3600 {
        return Err(ConfigError::at(
            format!("{p}.max_cache_seconds"),
            "at most 3600",
        ));
    }
    Ok(crate::resource::introspection::IntrospectionConfig {
        cluster: raw.cluster,
        authority,
        path: request_path,
        client_id: raw.client_id,
        client_secret,
        timeout_ms,
        max_cache_seconds,
        unavailable_is_503: raw
            .when_unavailable
            .unwrap_or(raw::WhenUnavailable::Unavailable)
            == raw::WhenUnavailable::Unavailable,
        issuer: raw.issuer,
    })
}

fn build_issuer(
    path: &str,
    index: usize,
    raw: RawIssuer,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Issuer, Option<RemoteJwks>), ConfigError> {
    if raw.issuer.is_empty() {
        return Err(ConfigError::at(
            format!("{path}.issuer"),
            "must not be empty",
        ));
    }
    let allowed = match raw.algorithms {
        None => Alg::ALL.to_vec(),
        Some(names) if names.is_empty() => {
            return Err(ConfigError::at(format!("{path}.algorithms"), "must not be empty"))
        }
        Some(names) => names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                Alg::parse(name).ok_or_else(|| {
                    ConfigError::at(
                        format!("{path}.algorithms[{i}]"),
                        format!("unsupported algorithm \"{name}\"; use one of HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA"),
                    )
                })
            })
            .collect::<Result<_, _>>()?,
    };
    let mut keys = KeySet::default();
    if let Some(doc) = &raw.jwks {
        let (set, _) = KeySet::from_jwks(doc, &allowed, KeySource::Inline)
            .map_err(|r| ConfigError::at(format!("{path}.jwks"), r))?;
        keys.extend(set);
    }
    if let Some(var) = &raw.jwks_env {
        let field = format!("{path}.jwks_env");
        let text = env(var).ok_or_else(|| {
            ConfigError::at(&field, format!("environment variable {var} is not set in the Wasm VM (add it to vm_config.environment_variables)"))
        })?;
        let doc: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| ConfigError::at(&field, format!("{var} is not JSON: {e}")))?;
        let (set, _) = KeySet::from_jwks(&doc, &allowed, KeySource::Inline)
            .map_err(|r| ConfigError::at(&field, format!("{var}: {r}")))?;
        keys.extend(set);
    }
    for (i, secret) in raw.secrets.iter().flatten().enumerate() {
        let field = format!("{path}.secrets[{i}]");
        let bytes = secret_bytes(&field, secret, env)?;
        let set = KeySet::from_secret(secret.kid.as_deref(), &bytes, &allowed)
            .map_err(|r| ConfigError::at(&field, r))?;
        keys.extend(set);
    }
    let remote = raw
        .remote_jwks
        .map(|r| build_remote(&format!("{path}.remote_jwks"), index, r))
        .transpose()?;
    if keys.is_empty() && remote.is_none() {
        return Err(ConfigError::at(
            path,
            "give the issuer's keys: one of jwks, jwks_env, remote_jwks or secrets",
        ));
    }
    Ok((
        Issuer::new(raw.issuer, allowed, keys, remote.is_some()),
        remote,
    ))
}

fn secret_bytes(
    path: &str,
    secret: &RawSecret,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<u8>, ConfigError> {
    match (&secret.value, &secret.value_base64url, &secret.value_env) {
        (Some(text), None, None) => Ok(text.as_bytes().to_vec()),
        (None, Some(b64), None) => crate::jwt::decode_b64url(b64)
            .map_err(|r| ConfigError::at(format!("{path}.value_base64url"), r)),
        (None, None, Some(var)) => env(var).map(String::into_bytes).ok_or_else(|| {
            ConfigError::at(
                format!("{path}.value_env"),
                format!("environment variable {var} is not set in the Wasm VM"),
            )
        }),
        _ => Err(ConfigError::at(
            path,
            "give exactly one of value, value_base64url, value_env",
        )),
    }
}

fn build_remote(
    path: &str,
    issuer_index: usize,
    raw: RawRemoteJwks,
) -> Result<RemoteJwks, ConfigError> {
    let (authority, request_path) = call_target(&format!("{path}.uri"), &raw.uri)?;
    if raw.cluster.is_empty() {
        return Err(ConfigError::at(
            format!("{path}.cluster"),
            "name the Envoy cluster that reaches the JWKS host",
        ));
    }
    let remote = RemoteJwks {
        issuer_index,
        uri: raw.uri,
        cluster: raw.cluster,
        authority,
        path: request_path,
        timeout_ms: raw.timeout_ms.unwrap_or(5000),
        refresh_interval_seconds: raw.refresh_interval_seconds.unwrap_or(300),
        min_refetch_interval_seconds: raw.min_refetch_interval_seconds.unwrap_or(30),
        startup_wait_ms: raw.startup_wait_ms.unwrap_or(5000),
    };
    if !(100..=60_000).contains(&remote.timeout_ms) {
        return Err(ConfigError::at(
            format!("{path}.timeout_ms"),
            "must be between 100 and 60000",
        ));
    }
    if !(10..=86_400).contains(&remote.refresh_interval_seconds) {
        return Err(ConfigError::at(
            format!("{path}.refresh_interval_seconds"),
            "must be between 10 and 86400",
        ));
    }
    if remote.min_refetch_interval_seconds > remote.refresh_interval_seconds {
        return Err(ConfigError::at(
            format!("{path}.min_refetch_interval_seconds"),
            "must not exceed refresh_interval_seconds",
        ));
    }
    if remote.startup_wait_ms > 60_000 {
        return Err(ConfigError::at(
            format!("{path}.startup_wait_ms"),
            "at most 60000",
        ));
    }
    Ok(remote)
}

fn build_route(
    path: &str,
    raw: RawRoute,
    resource: &str,
    origin: &str,
) -> Result<Route, ConfigError> {
    check_path(&format!("{path}.prefix"), &raw.prefix)?;
    let methods = raw
        .methods
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic()) {
                Err(ConfigError::at(
                    format!("{path}.methods[{i}]"),
                    "not an HTTP method",
                ))
            } else {
                Ok(m.to_ascii_uppercase())
            }
        })
        .collect::<Result<_, _>>()?;
    let scopes = raw.scopes.unwrap_or_default();
    check_scopes(&format!("{path}.scopes"), &scopes)?;
    let route_resource = match raw.resource {
        None => resource.to_string(),
        Some(r) => {
            let canonical = canonical_resource_uri(&r)
                .map_err(|e| ConfigError::at(format!("{path}.resource"), e))?;
            if origin_of(&canonical) != origin {
                return Err(ConfigError::at(
                    format!("{path}.resource"),
                    format!("must be on the same origin as resource ({origin})"),
                ));
            }
            canonical
        }
    };
    let prefix = normalize_prefix(&raw.prefix);
    Ok(Route {
        metadata_url: crate::resource::metadata::metadata_url(origin, &prefix),
        prefix,
        methods,
        scopes,
        resource: route_resource,
        backend_credential: raw.backend_credential,
        upstream_token: raw.upstream_token.unwrap_or(false),
    })
}

/// `/mcp/` and `/mcp` mean the same prefix.
fn normalize_prefix(prefix: &str) -> String {
    match prefix.trim_end_matches('/') {
        "" => "/".into(),
        p => p.into(),
    }
}

fn check_path(path: &str, value: &str) -> Result<(), ConfigError> {
    if !value.starts_with('/') || value.contains(['?', '#', ' ']) {
        return Err(ConfigError::at(
            path,
            "must be a path starting with / (no query, no fragment)",
        ));
    }
    Ok(())
}

/// RFC 6749 §3.3 scope-token characters, which also keeps `WWW-Authenticate` well-formed.
fn check_scopes(path: &str, scopes: &[String]) -> Result<(), ConfigError> {
    for (i, scope) in scopes.iter().enumerate() {
        let ok = !scope.is_empty()
            && scope
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b));
        if !ok {
            return Err(ConfigError::at(
                format!("{path}[{i}]"),
                "a scope is printable ASCII without spaces, quotes or backslashes",
            ));
        }
    }
    Ok(())
}

fn header_name(path: &str, name: Option<String>) -> Result<Option<String>, ConfigError> {
    let Some(name) = name else { return Ok(None) };
    let lower = name.to_ascii_lowercase();
    let valid = !lower.is_empty()
        && lower
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid || lower.starts_with(':') {
        return Err(ConfigError::at(path, "not a valid header name"));
    }
    if [
        "authorization",
        "host",
        "cookie",
        "content-length",
        "transfer-encoding",
    ]
    .contains(&lower.as_str())
    {
        return Err(ConfigError::at(
            path,
            format!("{lower} cannot carry the identity"),
        ));
    }
    Ok(Some(lower))
}

#[cfg(test)]
mod tests;
