//! The built-in authorization server's configuration: checked once, with field paths in errors.

use serde_json::{json, Value};

use super::authz_raw::{RawAuthServer, RawSigningKey};
use super::{canonical_resource_uri, check_path, check_scopes, ConfigError};
use crate::authz::signer::Signer;
use crate::jwt::{decode_b64url, Alg, KeySet, KeySource};
use crate::seal::Sealer;
use crate::secret_hash::SecretHash;
use jwt_simple::prelude::*;

/// A client configured by the operator.
#[derive(Debug, Clone)]
pub struct StaticClient {
    pub client_id: String,
    pub secret: Option<SecretHash>,
    pub client_name: String,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    /// Scopes the client may receive; empty means every supported scope.
    pub scopes: Vec<String>,
    pub skip_consent: bool,
}

#[derive(Debug, Clone)]
pub struct User {
    pub username: String,
    pub password: SecretHash,
    pub subject: String,
    /// Scopes the user may grant; empty means every supported scope.
    pub scopes: Vec<String>,
}

/// Paths of the endpoints the filter answers.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub authorize: String,
    pub token: String,
    pub register: String,
    pub revoke: String,
    pub introspect: String,
    pub jwks: String,
    /// Where the upstream identity provider sends people back.
    pub callback: String,
}

#[derive(Debug, Clone, Copy)]
pub struct RateLimits {
    pub token_per_minute_per_client: u64,
    pub token_per_minute_per_address: u64,
    pub register_per_minute_per_address: u64,
}

/// Where and how client metadata documents are fetched.
#[derive(Debug, Clone)]
pub struct CimdConfig {
    pub cluster: String,
    /// Hosts allowed to serve documents (`example.com`, `*.example.com`); empty means any
    /// public host.
    pub allowed_hosts: Vec<String>,
    pub allow_private_hosts: bool,
    pub timeout_ms: u64,
    pub max_bytes: usize,
    pub min_cache_seconds: u64,
    pub max_cache_seconds: u64,
}

pub struct AuthServerConfig {
    pub issuer: String,
    pub signer: Signer,
    pub jwks: Value,
    pub sealer: Sealer,
    pub access_token_ttl: u64,
    pub refresh_token_ttl: u64,
    pub code_ttl: u64,
    pub session_ttl: u64,
    /// (name, description in words), in the order the consent page lists them.
    pub scopes: Vec<(String, String)>,
    pub default_scopes: Vec<String>,
    pub clients: Vec<StaticClient>,
    pub users: Vec<User>,
    pub registration_enabled: bool,
    /// Fetching client metadata documents, when enabled.
    pub cimd: Option<CimdConfig>,
    pub initial_access_tokens: Vec<SecretHash>,
    pub endpoints: Endpoints,
    pub rate_limits: RateLimits,
    pub display_name: String,
    /// Sign-in through an upstream identity provider, when configured.
    pub upstream: Option<super::upstream::UpstreamConfig>,
}

impl AuthServerConfig {
    pub fn scope_names(&self) -> Vec<String> {
        self.scopes.iter().map(|(n, _)| n.clone()).collect()
    }
}

const GRANT_TYPES: [&str; 3] = ["authorization_code", "refresh_token", "client_credentials"];

/// Builds the section, and returns the key set the resource server must trust for it.
pub fn build(
    raw: RawAuthServer,
    default_issuer: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(AuthServerConfig, KeySet), ConfigError> {
    let p = "authorization_server";
    let issuer = match raw.issuer.clone() {
        Some(issuer) => canonical_resource_uri(&issuer)
            .map_err(|r| ConfigError::at(format!("{p}.issuer"), r))?,
        None => default_issuer.to_string(),
    };
    let (signer, trusted, jwks) =
        build_signing_keys(&format!("{p}.signing_keys"), &raw.signing_keys, env)?;
    let sealer = build_sealer(&format!("{p}.sealing_keys"), &raw, env)?.bound_to(&issuer);
    let ttl =
        |field: &str, value: Option<u64>, default: u64, max: u64| -> Result<u64, ConfigError> {
            let v = value.unwrap_or(default);
            if v == 0 || v > max {
                return Err(ConfigError::at(
                    format!("{p}.{field}"),
                    format!("must be between 1 and {max}"),
                ));
            }
            Ok(v)
        };
    let access_token_ttl = ttl(
        "access_token_ttl_seconds",
        raw.access_token_ttl_seconds,
        900,
        86_400,
    )?;
    let refresh_token_ttl = ttl(
        "refresh_token_ttl_seconds",
        raw.refresh_token_ttl_seconds,
        30 * 86_400,
        365 * 86_400,
    )?;
    let code_ttl = ttl("code_ttl_seconds", raw.code_ttl_seconds, 60, 60)?;
    let session_ttl = ttl(
        "session_ttl_seconds",
        raw.session_ttl_seconds,
        3600,
        30 * 86_400,
    )?;
    let scopes: Vec<(String, String)> = match raw.scopes {
        Some(list) => list.into_iter().map(|s| (s.name, s.description)).collect(),
        None => vec![(
            "mcp:tools".into(),
            "Use the tools, prompts and resources of this MCP server".into(),
        )],
    };
    let names: Vec<String> = scopes.iter().map(|(n, _)| n.clone()).collect();
    check_scopes(&format!("{p}.scopes"), &names)?;
    let default_scopes = raw.default_scopes.unwrap_or_else(|| names.clone());
    check_known(&format!("{p}.default_scopes"), &default_scopes, &names)?;
    let mut clients = Vec::new();
    for (i, c) in raw.clients.unwrap_or_default().into_iter().enumerate() {
        let cp = format!("{p}.clients[{i}]");
        if c.client_id.is_empty()
            || c.client_id.len() > 128
            || !c.client_id.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(ConfigError::at(
                format!("{cp}.client_id"),
                "1-128 printable ASCII characters",
            ));
        }
        if clients
            .iter()
            .any(|x: &StaticClient| x.client_id == c.client_id)
        {
            return Err(ConfigError::at(format!("{cp}.client_id"), "listed twice"));
        }
        let secret = c
            .client_secret_hash
            .map(|h| {
                SecretHash::parse(&h)
                    .map_err(|r| ConfigError::at(format!("{cp}.client_secret_hash"), r))
            })
            .transpose()?;
        let redirect_uris = c.redirect_uris.unwrap_or_default();
        for (j, uri) in redirect_uris.iter().enumerate() {
            crate::authz::redirect::check_redirect_uri(uri)
                .map_err(|r| ConfigError::at(format!("{cp}.redirect_uris[{j}]"), r))?;
        }
        let grant_types = c.grant_types.unwrap_or_else(|| {
            if secret.is_some() && redirect_uris.is_empty() {
                vec!["client_credentials".into()]
            } else {
                vec!["authorization_code".into(), "refresh_token".into()]
            }
        });
        for (j, g) in grant_types.iter().enumerate() {
            if !GRANT_TYPES.contains(&g.as_str()) {
                return Err(ConfigError::at(
                    format!("{cp}.grant_types[{j}]"),
                    format!("unsupported grant type \"{g}\""),
                ));
            }
        }
        if grant_types.iter().any(|g| g == "client_credentials") && secret.is_none() {
            return Err(ConfigError::at(
                format!("{cp}.client_secret_hash"),
                "client_credentials needs a confidential client",
            ));
        }
        if grant_types.iter().any(|g| g == "authorization_code") && redirect_uris.is_empty() {
            return Err(ConfigError::at(
                format!("{cp}.redirect_uris"),
                "authorization_code needs at least one redirect URI",
            ));
        }
        let client_scopes = c.scopes.unwrap_or_default();
        check_known(&format!("{cp}.scopes"), &client_scopes, &names)?;
        clients.push(StaticClient {
            client_name: c.client_name.unwrap_or_else(|| c.client_id.clone()),
            client_id: c.client_id,
            secret,
            redirect_uris,
            grant_types,
            scopes: client_scopes,
            skip_consent: c.skip_consent.unwrap_or(false),
        });
    }
    let mut users = Vec::new();
    for (i, u) in raw.users.unwrap_or_default().into_iter().enumerate() {
        let up = format!("{p}.users[{i}]");
        if u.username.is_empty() || users.iter().any(|x: &User| x.username == u.username) {
            return Err(ConfigError::at(
                format!("{up}.username"),
                "must be non-empty and unique",
            ));
        }
        let password = SecretHash::parse(&u.password_hash)
            .map_err(|r| ConfigError::at(format!("{up}.password_hash"), r))?;
        if !matches!(password, SecretHash::Pbkdf2 { .. }) {
            return Err(ConfigError::at(
                format!("{up}.password_hash"),
                "passwords must be stored as pbkdf2-sha256 (mcp-oauth hash-password)",
            ));
        }
        let user_scopes = u.scopes.unwrap_or_default();
        check_known(&format!("{up}.scopes"), &user_scopes, &names)?;
        users.push(User {
            subject: u.subject.unwrap_or_else(|| u.username.clone()),
            username: u.username,
            password,
            scopes: user_scopes,
        });
    }
    let cimd = match raw.client_id_metadata_documents {
        None => None,
        Some(c) => {
            let cp = format!("{p}.client_id_metadata_documents");
            if c.cluster.is_empty() {
                return Err(ConfigError::at(
                    format!("{cp}.cluster"),
                    "name the Envoy cluster that fetches client metadata",
                ));
            }
            let cimd = CimdConfig {
                cluster: c.cluster,
                allowed_hosts: c
                    .allowed_hosts
                    .unwrap_or_default()
                    .into_iter()
                    .map(|h| h.to_ascii_lowercase())
                    .collect(),
                allow_private_hosts: c.allow_private_hosts.unwrap_or(false),
                timeout_ms: c.timeout_ms.unwrap_or(3000),
                max_bytes: c.max_bytes.unwrap_or(5120) as usize,
                min_cache_seconds: c.min_cache_seconds.unwrap_or(60),
                max_cache_seconds: c.max_cache_seconds.unwrap_or(3600),
            };
            if !(100..=30_000).contains(&cimd.timeout_ms) {
                return Err(ConfigError::at(
                    format!("{cp}.timeout_ms"),
                    "must be between 100 and 30000",
                ));
            }
            if !(512..=65_536).contains(&cimd.max_bytes) {
                return Err(ConfigError::at(
                    format!("{cp}.max_bytes"),
                    "must be between 512 and 65536",
                ));
            }
            if cimd.min_cache_seconds > cimd.max_cache_seconds {
                return Err(ConfigError::at(
                    format!("{cp}.min_cache_seconds"),
                    "must not exceed max_cache_seconds",
                ));
            }
            Some(cimd)
        }
    };
    let registration = raw.registration;
    let registration_enabled = registration
        .as_ref()
        .and_then(|r| r.enabled)
        .unwrap_or(true);
    let initial_access_tokens = registration
        .and_then(|r| r.initial_access_token_hashes)
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            SecretHash::parse(h).map_err(|r| {
                ConfigError::at(
                    format!("{p}.registration.initial_access_token_hashes[{i}]"),
                    r,
                )
            })
        })
        .collect::<Result<_, _>>()?;
    let e = raw.endpoints;
    let endpoint =
        |field: &str, value: Option<String>, default: &str| -> Result<String, ConfigError> {
            let v = value.unwrap_or_else(|| default.to_string());
            check_path(&format!("{p}.endpoints.{field}"), &v)?;
            Ok(v)
        };
    let endpoints = Endpoints {
        authorize: endpoint(
            "authorize",
            e.as_ref().and_then(|e| e.authorize.clone()),
            "/oauth/authorize",
        )?,
        token: endpoint(
            "token",
            e.as_ref().and_then(|e| e.token.clone()),
            "/oauth/token",
        )?,
        register: endpoint(
            "register",
            e.as_ref().and_then(|e| e.register.clone()),
            "/oauth/register",
        )?,
        revoke: endpoint(
            "revoke",
            e.as_ref().and_then(|e| e.revoke.clone()),
            "/oauth/revoke",
        )?,
        introspect: endpoint(
            "introspect",
            e.as_ref().and_then(|e| e.introspect.clone()),
            "/oauth/introspect",
        )?,
        jwks: endpoint(
            "jwks",
            e.as_ref().and_then(|e| e.jwks.clone()),
            "/oauth/jwks",
        )?,
        callback: endpoint(
            "callback",
            e.as_ref().and_then(|e| e.callback.clone()),
            "/oauth/callback",
        )?,
    };
    let upstream = raw
        .upstream
        .map(|u| super::upstream::build(&format!("{p}.upstream"), u, &names, env))
        .transpose()?;
    let r = raw.rate_limits;
    let rate_limits = RateLimits {
        token_per_minute_per_client: r
            .as_ref()
            .and_then(|r| r.token_per_minute_per_client)
            .unwrap_or(60),
        token_per_minute_per_address: r
            .as_ref()
            .and_then(|r| r.token_per_minute_per_address)
            .unwrap_or(120),
        register_per_minute_per_address: r
            .as_ref()
            .and_then(|r| r.register_per_minute_per_address)
            .unwrap_or(10),
    };
    let config = AuthServerConfig {
        issuer,
        signer,
        jwks,
        sealer,
        access_token_ttl,
        refresh_token_ttl,
        code_ttl,
        session_ttl,
        scopes,
        default_scopes,
        clients,
        users,
        registration_enabled,
        cimd,
        initial_access_tokens,
        endpoints,
        rate_limits,
        display_name: raw.display_name.unwrap_or_else(|| "MCP server".into()),
        upstream,
    };
    Ok((config, trusted))
}

fn check_known(path: &str, scopes: &[String], known: &[String]) -> Result<(), ConfigError> {
    for (i, s) in scopes.iter().enumerate() {
        if !known.contains(s) {
            return Err(ConfigError::at(
                format!("{path}[{i}]"),
                format!("\"{s}\" is not in authorization_server.scopes"),
            ));
        }
    }
    Ok(())
}

fn env_or_inline(
    path: &str,
    env_name: &Option<String>,
    inline: Option<String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<String>, ConfigError> {
    match (env_name, inline) {
        (Some(_), Some(_)) => Err(ConfigError::at(
            path,
            "give the value inline or by environment variable, not both",
        )),
        (Some(var), None) => env(var).map(Some).ok_or_else(|| {
            ConfigError::at(
                path,
                format!("environment variable {var} is not set in the Wasm VM"),
            )
        }),
        (None, inline) => Ok(inline),
    }
}

/// The first key that is not `verify_only` signs; every key is trusted and published.
fn build_signing_keys(
    path: &str,
    keys: &[RawSigningKey],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Signer, KeySet, Value), ConfigError> {
    if keys.is_empty() {
        return Err(ConfigError::at(
            path,
            "add a signing key (mcp-oauth gen-signing-key)",
        ));
    }
    let mut signer = None;
    let mut trusted = KeySet::default();
    let mut published = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let kp = format!("{path}[{i}]");
        let jwk_text = env_or_inline(
            &format!("{kp}.jwk_env"),
            &key.jwk_env,
            key.jwk.as_ref().map(Value::to_string),
            env,
        )?;
        let secret_text = env_or_inline(
            &format!("{kp}.hs256_secret_env"),
            &key.hs256_secret_env,
            key.hs256_secret_base64url.clone(),
            env,
        )?;
        let this = match (jwk_text, secret_text) {
            (Some(jwk), None) => {
                let pair = ES256KeyPair::from_jwk(&jwk)
                    .map_err(|e| ConfigError::at(&kp, format!("not an EC P-256 private JWK: {e}")))?;
                let kid = key.kid.clone().or_else(|| pair.key_id().clone()).ok_or_else(|| ConfigError::at(format!("{kp}.kid"), "the key needs a kid"))?;
                let pair = pair.with_key_id(&kid);
                let mut public: Value = serde_json::from_str(&pair.public_key().to_jwk())
                    .map_err(|e| ConfigError::at(&kp, e.to_string()))?;
                if let Some(obj) = public.as_object_mut() {
                    obj.insert("kid".into(), json!(kid));
                }
                let (set, _) = KeySet::from_jwks(&json!({ "keys": [public.clone()] }), &[Alg::ES256], KeySource::Inline)
                    .map_err(|r| ConfigError::at(&kp, r))?;
                trusted.extend(set);
                published.push(public);
                Signer::Es256(pair)
            }
            (None, Some(secret)) => {
                let bytes = decode_b64url(secret.trim()).map_err(|r| ConfigError::at(&kp, r))?;
                let kid = key.kid.clone().ok_or_else(|| ConfigError::at(format!("{kp}.kid"), "the key needs a kid"))?;
                let set = KeySet::from_secret(Some(&kid), &bytes, &[Alg::HS256]).map_err(|r| ConfigError::at(&kp, r))?;
                trusted.extend(set);
                Signer::Hs256(HS256Key::from_bytes(&bytes).with_key_id(&kid))
            }
            _ => {
                return Err(ConfigError::at(
                    &kp,
                    "give exactly one of jwk, jwk_env (ES256) or hs256_secret_env, hs256_secret_base64url (HS256)",
                ))
            }
        };
        if signer.is_none() && !key.verify_only.unwrap_or(false) {
            signer = Some(this);
        }
    }
    let signer = signer
        .ok_or_else(|| ConfigError::at(path, "every key is verify_only: one key must sign"))?;
    Ok((signer, trusted, json!({ "keys": published })))
}

fn build_sealer(
    path: &str,
    raw: &RawAuthServer,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Sealer, ConfigError> {
    let mut keys = Vec::new();
    for (i, key) in raw.sealing_keys.iter().enumerate() {
        let kp = format!("{path}[{i}]");
        let text = env_or_inline(
            &format!("{kp}.value_env"),
            &key.value_env,
            key.value_base64url.clone(),
            env,
        )?
        .ok_or_else(|| {
            ConfigError::at(
                &kp,
                "give value_base64url or value_env (mcp-oauth gen-sealing-key)",
            )
        })?;
        let bytes = decode_b64url(text.trim()).map_err(|r| ConfigError::at(&kp, r))?;
        keys.push((key.kid.clone(), bytes));
    }
    Sealer::new(&keys).map_err(|r| ConfigError::at(path, r))
}
