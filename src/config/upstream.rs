//! `authorization_server.upstream`: the identity provider people sign in with (OIDC with
//! discovery, OIDC with explicit endpoints, or plain OAuth 2.0 with a userinfo endpoint).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::raw::opt_whole_number;
use super::{check_scopes, secret_value, ConfigError};

#[derive(Debug, Deserialize)]
#[serde(remote = "Self")]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    #[serde(default)]
    pub token_endpoint: Option<String>,
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
    #[serde(default)]
    pub jwks_uri: Option<String>,
    pub cluster: String,
    #[serde(default)]
    pub clusters: Option<BTreeMap<String, String>>,
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default)]
    pub client_secret_env: Option<String>,
    #[serde(default)]
    pub client_auth: Option<String>,
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    #[serde(default)]
    pub authorize_params: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub use_userinfo: Option<bool>,
    #[serde(default)]
    pub subject_claim: Option<String>,
    #[serde(default)]
    pub allowed_email_domains: Option<Vec<String>>,
    #[serde(default)]
    pub allowed_users: Option<Vec<String>>,
    #[serde(default)]
    pub allowed_groups: Option<Vec<String>>,
    #[serde(default)]
    pub groups_claim: Option<String>,
    #[serde(default)]
    pub scope_rules: Option<Vec<RawScopeRule>>,
    #[serde(default)]
    pub base_scopes: Option<Vec<String>>,
    #[serde(default, deserialize_with = "opt_whole_number")]
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub token_header: Option<String>,
}
json_object!(RawUpstream);

#[derive(Debug, Deserialize)]
#[serde(remote = "Self")]
#[serde(deny_unknown_fields)]
pub struct RawScopeRule {
    pub claim: String,
    pub values: Vec<String>,
    pub scopes: Vec<String>,
}
json_object!(RawScopeRule);

/// How the gateway authenticates to the provider's token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    Basic,
    Post,
}

/// Scopes a person gets when a claim of theirs has one of `values`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeRule {
    pub claim: String,
    pub values: Vec<String>,
    pub scopes: Vec<String>,
}

/// The provider's endpoints, given in the config (or read from discovery at run time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderEndpoints {
    /// Where the browser is sent.
    pub authorization: String,
    pub token: String,
    pub userinfo: Option<String>,
    pub jwks: Option<String>,
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Shown to people: "Continue with {name}".
    pub name: String,
    /// The OIDC issuer; `None` for a plain OAuth 2.0 provider (identity from userinfo).
    pub issuer: Option<String>,
    /// Explicit endpoints; `None` means OIDC discovery from `issuer`.
    pub endpoints: Option<ProviderEndpoints>,
    /// The cluster for calls to any host not in `host_clusters`.
    pub cluster: String,
    pub host_clusters: BTreeMap<String, String>,
    pub client_id: String,
    pub client_secret: String,
    pub client_auth: ClientAuth,
    pub scopes: Vec<String>,
    pub authorize_params: Vec<(String, String)>,
    pub use_userinfo: bool,
    pub subject_claim: String,
    pub allowed_email_domains: Vec<String>,
    pub allowed_users: Vec<String>,
    pub allowed_groups: Vec<String>,
    pub groups_claim: String,
    pub scope_rules: Vec<ScopeRule>,
    /// With scope rules: the scopes everyone admitted may get.
    pub base_scopes: Vec<String>,
    pub timeout_ms: u64,
    /// Keep the person's upstream tokens for the backend (some route has `upstream_token`).
    pub hold_tokens: bool,
    /// The backend request header that carries the upstream token (`authorization`: Bearer).
    pub token_header: String,
}

impl UpstreamConfig {
    /// The header to add to a backend request.
    pub fn header_for(&self, token: &str) -> (String, String) {
        if self.token_header == "authorization" {
            (self.token_header.clone(), format!("Bearer {token}"))
        } else {
            (self.token_header.clone(), token.to_string())
        }
    }
}

impl UpstreamConfig {
    /// True for an OpenID provider: an `id_token` is expected and verified.
    pub fn is_oidc(&self) -> bool {
        self.issuer.is_some()
    }

    /// The discovery document's URL (OIDC Discovery 1.0 §4).
    pub fn discovery_url(&self) -> Option<String> {
        let issuer = self.issuer.as_ref()?;
        Some(format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        ))
    }

    /// The Envoy cluster for calls to `host`.
    pub fn cluster_for(&self, host: &str) -> &str {
        self.host_clusters
            .get(&host.to_ascii_lowercase())
            .unwrap_or(&self.cluster)
    }
}

/// Authorization parameters the gateway sets itself; the config may not override them.
const RESERVED_PARAMS: [&str; 8] = [
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
];

pub fn build(
    p: &str,
    raw: RawUpstream,
    known_scopes: &[String],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<UpstreamConfig, ConfigError> {
    let url_field = |field: &str, value: &str| -> Result<String, ConfigError> {
        check_url(value).map_err(|r| ConfigError::at(format!("{p}.{field}"), r))?;
        Ok(value.to_string())
    };
    let issuer = raw
        .issuer
        .as_deref()
        .map(|i| url_field("issuer", i))
        .transpose()?;
    let explicit = [
        &raw.authorization_endpoint,
        &raw.token_endpoint,
        &raw.userinfo_endpoint,
        &raw.jwks_uri,
    ]
    .iter()
    .any(|e| e.is_some());
    let endpoints = if explicit {
        let required = |field: &str, value: &Option<String>| -> Result<String, ConfigError> {
            match value {
                Some(v) => url_field(field, v),
                None => Err(ConfigError::at(
                    format!("{p}.{field}"),
                    "required when endpoints are given (or give only issuer, for discovery)",
                )),
            }
        };
        let optional = |field: &str, value: &Option<String>| {
            value.as_deref().map(|v| url_field(field, v)).transpose()
        };
        Some(ProviderEndpoints {
            authorization: required("authorization_endpoint", &raw.authorization_endpoint)?,
            token: required("token_endpoint", &raw.token_endpoint)?,
            userinfo: optional("userinfo_endpoint", &raw.userinfo_endpoint)?,
            jwks: optional("jwks_uri", &raw.jwks_uri)?,
        })
    } else {
        None
    };
    match (&issuer, &endpoints) {
        (None, None) => {
            return Err(ConfigError::at(
                p,
                "give issuer (OpenID Connect, with discovery) or the provider's endpoints",
            ))
        }
        (Some(_), Some(e)) if e.jwks.is_none() => {
            return Err(ConfigError::at(
                format!("{p}.jwks_uri"),
                "an OpenID provider's id_token is verified with its keys: give jwks_uri",
            ))
        }
        (None, Some(e)) if e.userinfo.is_none() => {
            return Err(ConfigError::at(
                format!("{p}.userinfo_endpoint"),
                "without issuer (plain OAuth 2.0) the person is identified by userinfo",
            ))
        }
        _ => {}
    }
    if raw.cluster.is_empty() {
        return Err(ConfigError::at(
            format!("{p}.cluster"),
            "name the Envoy cluster that reaches the provider",
        ));
    }
    let mut host_clusters = BTreeMap::new();
    for (host, cluster) in raw.clusters.unwrap_or_default() {
        if host.is_empty() || cluster.is_empty() || host.contains('/') {
            return Err(ConfigError::at(
                format!("{p}.clusters.{host}"),
                "map a host name to a cluster name",
            ));
        }
        host_clusters.insert(host.to_ascii_lowercase(), cluster);
    }
    if raw.client_id.is_empty() {
        return Err(ConfigError::at(
            format!("{p}.client_id"),
            "the gateway's client id at the provider",
        ));
    }
    let client_secret = secret_value(p, raw.client_secret, raw.client_secret_env, env)?;
    let client_auth = match raw.client_auth.as_deref() {
        None | Some("client_secret_basic") => ClientAuth::Basic,
        Some("client_secret_post") => ClientAuth::Post,
        Some(other) => {
            return Err(ConfigError::at(
                format!("{p}.client_auth"),
                format!("\"{other}\": use client_secret_basic or client_secret_post"),
            ))
        }
    };
    let scopes = raw.scopes.unwrap_or_else(|| {
        if issuer.is_some() {
            vec!["openid".into(), "email".into(), "profile".into()]
        } else {
            Vec::new()
        }
    });
    check_scopes(&format!("{p}.scopes"), &scopes)?;
    if issuer.is_some() && !scopes.iter().any(|s| s == "openid") {
        return Err(ConfigError::at(
            format!("{p}.scopes"),
            "an OpenID provider needs the openid scope",
        ));
    }
    let mut authorize_params = Vec::new();
    for (name, value) in raw.authorize_params.unwrap_or_default() {
        if RESERVED_PARAMS.contains(&name.as_str()) {
            return Err(ConfigError::at(
                format!("{p}.authorize_params.{name}"),
                "set by the gateway itself",
            ));
        }
        authorize_params.push((name, value));
    }
    let names = |field: &str, list: Option<Vec<String>>| -> Result<Vec<String>, ConfigError> {
        let list = list.unwrap_or_default();
        if let Some(i) = list.iter().position(|v| v.trim().is_empty()) {
            return Err(ConfigError::at(
                format!("{p}.{field}[{i}]"),
                "must not be empty",
            ));
        }
        Ok(list)
    };
    let allowed_email_domains = names("allowed_email_domains", raw.allowed_email_domains)?
        .into_iter()
        .map(|d| d.trim_start_matches('@').to_ascii_lowercase())
        .collect();
    let check_known = |field: String, scopes: &[String]| -> Result<(), ConfigError> {
        match scopes.iter().position(|s| !known_scopes.contains(s)) {
            Some(i) => Err(ConfigError::at(
                format!("{field}[{i}]"),
                "not in authorization_server.scopes",
            )),
            None => Ok(()),
        }
    };
    let mut scope_rules = Vec::new();
    for (i, rule) in raw.scope_rules.unwrap_or_default().into_iter().enumerate() {
        let rp = format!("{p}.scope_rules[{i}]");
        if rule.claim.is_empty() || rule.values.is_empty() {
            return Err(ConfigError::at(
                rp,
                "a rule needs a claim and at least one value",
            ));
        }
        check_known(format!("{rp}.scopes"), &rule.scopes)?;
        scope_rules.push(ScopeRule {
            claim: rule.claim,
            values: rule.values,
            scopes: rule.scopes,
        });
    }
    let base_scopes = raw.base_scopes.unwrap_or_default();
    check_known(format!("{p}.base_scopes"), &base_scopes)?;
    let timeout_ms = raw.timeout_ms.unwrap_or(5000);
    if !(100..=30_000).contains(&timeout_ms) {
        return Err(ConfigError::at(
            format!("{p}.timeout_ms"),
            "must be between 100 and 30000",
        ));
    }
    let token_header = raw
        .token_header
        .unwrap_or_else(|| "authorization".into())
        .to_ascii_lowercase();
    if token_header != "authorization" {
        super::header_name(&format!("{p}.token_header"), Some(token_header.clone()))?;
    }
    let is_oidc = issuer.is_some();
    let use_userinfo = raw.use_userinfo.unwrap_or(!is_oidc);
    if use_userinfo && endpoints.as_ref().is_some_and(|e| e.userinfo.is_none()) {
        return Err(ConfigError::at(
            format!("{p}.userinfo_endpoint"),
            "use_userinfo needs the userinfo endpoint",
        ));
    }
    Ok(UpstreamConfig {
        name: raw.name.unwrap_or_else(|| "your identity provider".into()),
        issuer,
        endpoints,
        cluster: raw.cluster,
        host_clusters,
        client_id: raw.client_id,
        client_secret,
        client_auth,
        scopes,
        authorize_params,
        use_userinfo,
        subject_claim: raw.subject_claim.unwrap_or_else(|| "sub".into()),
        allowed_email_domains,
        allowed_users: names("allowed_users", raw.allowed_users)?,
        allowed_groups: names("allowed_groups", raw.allowed_groups)?,
        groups_claim: raw.groups_claim.unwrap_or_else(|| "groups".into()),
        scope_rules,
        base_scopes,
        timeout_ms,
        hold_tokens: false,
        token_header,
    })
}

/// A provider URL: https (http only on loopback), with a host, without a fragment, and
/// without control characters (the URL parser drops tabs and line breaks and encodes the
/// others, but the text itself becomes the `Location` of the redirect to the provider).
pub fn check_url(value: &str) -> Result<url::Url, String> {
    if value.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    let url = crate::ascii_url::parse(value).map_err(|e| format!("not a URL: {e}"))?;
    let host = url.host_str().unwrap_or_default();
    let secure =
        url.scheme() == "https" || (url.scheme() == "http" && super::uri::is_loopback(host));
    if !secure || host.is_empty() {
        return Err("must be an absolute https:// URL (http:// only for loopback)".into());
    }
    if url.fragment().is_some() {
        return Err("must not have a fragment".into());
    }
    Ok(url)
}
