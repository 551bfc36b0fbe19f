//! `state_store`: where the authorization server keeps what must hold across replicas
//! (one-time codes, refresh-token families, revocations). Absent: Envoy shared data, one
//! Envoy process. `{"etcd": {...}}`: an etcd cluster reached through an Envoy cluster.
//! See docs/state-store.md.

use serde::Deserialize;

use super::raw::opt_whole_number;
use super::ConfigError;

#[derive(Debug, Deserialize)]
#[serde(remote = "Self")]
#[serde(deny_unknown_fields)]
pub struct RawStateStore {
    pub etcd: RawEtcd,
}
json_object!(RawStateStore);

#[derive(Debug, Deserialize)]
#[serde(remote = "Self")]
#[serde(deny_unknown_fields)]
pub struct RawEtcd {
    pub cluster: String,
    #[serde(default)]
    pub authority: Option<String>,
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default, deserialize_with = "opt_whole_number")]
    pub timeout_ms: Option<u64>,
    #[serde(default, deserialize_with = "opt_whole_number")]
    pub poll_interval_ms: Option<u64>,
    #[serde(default)]
    pub watch_cluster: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password_env: Option<String>,
    #[serde(default)]
    pub when_unavailable: Option<RawWhenUnavailable>,
}
json_object!(RawEtcd);

#[derive(Debug, Deserialize)]
#[serde(remote = "Self")]
#[serde(deny_unknown_fields)]
pub struct RawWhenUnavailable {
    #[serde(default)]
    pub grants: Option<GrantsWhenUnavailable>,
    #[serde(default)]
    pub validation: Option<ValidationWhenUnavailable>,
    #[serde(default, deserialize_with = "opt_whole_number")]
    pub max_snapshot_age_ms: Option<u64>,
    #[serde(default, deserialize_with = "opt_whole_number")]
    pub health_status: Option<u64>,
}
json_object!(RawWhenUnavailable);

/// What the code and refresh grants (and revocation) do when etcd cannot be reached.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum GrantsWhenUnavailable {
    /// 503 `temporarily_unavailable`: a retry is better than a double spend.
    Refuse,
    /// Fall back to this Envoy's shared data: the grant works, but a code or an old refresh
    /// token could then be used once more on another replica.
    Local,
}

/// What token validation does when the revocation snapshot is older than `max_snapshot_age_ms`.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ValidationWhenUnavailable {
    /// Go on with the last snapshot (a revocation made meanwhile elsewhere is not seen).
    LastSnapshot,
    /// 503 for every token until the snapshot is fresh again.
    Refuse,
}

/// The checked `state_store.etcd` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// Envoy cluster of the etcd members' client URLs (the JSON gateway, `/v3/...`).
    pub cluster: String,
    /// `:authority` of the calls.
    pub authority: String,
    /// Every key starts with this (ends with `/`).
    pub prefix: String,
    /// Bound of one etcd call; a write is tried at most twice.
    pub timeout_ms: u64,
    /// How often the revocation snapshot is brought up to date.
    pub poll_interval_ms: u64,
    /// An HTTP/2 cluster to the same members for the gRPC Watch of revocations, if any.
    pub watch_cluster: Option<String>,
    /// etcd user and password (etcd auth): the filter gets a token with them.
    pub credentials: Option<(String, String)>,
    pub grants_when_unavailable: GrantsWhenUnavailable,
    pub validation_when_unavailable: ValidationWhenUnavailable,
    /// A snapshot not refreshed for this long counts as stale: /health says degraded.
    pub max_snapshot_age_ms: u64,
    /// The /health status while degraded.
    pub degraded_health_status: u16,
}

pub fn build(
    raw: RawStateStore,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<EtcdConfig, ConfigError> {
    let p = "state_store.etcd";
    let raw = raw.etcd;
    if raw.cluster.is_empty() {
        return Err(ConfigError::at(
            format!("{p}.cluster"),
            "name the Envoy cluster that reaches the etcd members",
        ));
    }
    let authority = raw.authority.unwrap_or_else(|| raw.cluster.clone());
    if authority.is_empty() || authority.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err(ConfigError::at(
            format!("{p}.authority"),
            "must be a host name (optionally with a port)",
        ));
    }
    let prefix = raw.prefix.unwrap_or_else(|| "/mcp-oauth/".into());
    if !prefix.ends_with('/') || prefix.len() > 128 || !prefix.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(ConfigError::at(
            format!("{p}.prefix"),
            "must be printable ASCII without spaces, at most 128 bytes, ending with /",
        ));
    }
    let timeout_ms = raw.timeout_ms.unwrap_or(1000);
    if !(50..=10_000).contains(&timeout_ms) {
        return Err(ConfigError::at(
            format!("{p}.timeout_ms"),
            "must be between 50 and 10000",
        ));
    }
    let poll_interval_ms = raw.poll_interval_ms.unwrap_or(1000);
    if !(100..=60_000).contains(&poll_interval_ms) {
        return Err(ConfigError::at(
            format!("{p}.poll_interval_ms"),
            "must be between 100 and 60000",
        ));
    }
    if raw.watch_cluster.as_deref() == Some("") {
        return Err(ConfigError::at(
            format!("{p}.watch_cluster"),
            "name an HTTP/2 Envoy cluster to the etcd members, or leave it out",
        ));
    }
    let credentials = match (raw.username, raw.password_env) {
        (None, None) => None,
        (Some(user), Some(var)) if !user.is_empty() => {
            let password = env(&var).ok_or_else(|| {
                ConfigError::at(
                    format!("{p}.password_env"),
                    format!("environment variable {var} is not set in the Wasm VM"),
                )
            })?;
            Some((user, password))
        }
        (Some(_), None) => {
            return Err(ConfigError::at(
                format!("{p}.password_env"),
                "is required with username",
            ))
        }
        _ => {
            return Err(ConfigError::at(
                format!("{p}.username"),
                "is required with password_env, and must not be empty",
            ))
        }
    };
    let when = raw.when_unavailable.unwrap_or(RawWhenUnavailable {
        grants: None,
        validation: None,
        max_snapshot_age_ms: None,
        health_status: None,
    });
    let max_snapshot_age_ms = when
        .max_snapshot_age_ms
        .unwrap_or(3 * poll_interval_ms + timeout_ms);
    if max_snapshot_age_ms < poll_interval_ms + timeout_ms || max_snapshot_age_ms > 3_600_000 {
        return Err(ConfigError::at(
            format!("{p}.when_unavailable.max_snapshot_age_ms"),
            "must be at least poll_interval_ms + timeout_ms, and at most 3600000",
        ));
    }
    let degraded_health_status = match when.health_status.unwrap_or(200) {
        200 => 200,
        503 => 503,
        _ => {
            return Err(ConfigError::at(
                format!("{p}.when_unavailable.health_status"),
                "must be 200 or 503",
            ))
        }
    };
    Ok(EtcdConfig {
        cluster: raw.cluster,
        authority,
        prefix,
        timeout_ms,
        poll_interval_ms,
        watch_cluster: raw.watch_cluster,
        credentials,
        grants_when_unavailable: when.grants.unwrap_or(GrantsWhenUnavailable::Refuse),
        validation_when_unavailable: when
            .validation
            .unwrap_or(ValidationWhenUnavailable::LastSnapshot),
        max_snapshot_age_ms,
        degraded_health_status,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::parse;
    use serde_json::json;

    fn with_store(store: serde_json::Value) -> serde_json::Value {
        json!({
            "resource": "https://mcp.example.com/mcp",
            "authorization_server": {
                "signing_keys": [{"kid": "h", "hs256_secret_base64url": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"}],
                "sealing_keys": [{"kid": "s1", "value_base64url": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"}]
            },
            "state_store": store
        })
    }

    fn error_at(store: serde_json::Value) -> String {
        let env = |name: &str| (name == "PW").then(|| "secret".to_string());
        match parse(with_store(store).to_string().as_bytes(), &env) {
            Ok(_) => panic!("accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn defaults() {
        let (config, _) = parse(
            with_store(json!({"etcd": {"cluster": "etcd"}}))
                .to_string()
                .as_bytes(),
            &|_| None,
        )
        .unwrap();
        let etcd = config.state_store.unwrap();
        assert_eq!(etcd.prefix, "/mcp-oauth/");
        assert_eq!(etcd.authority, "etcd");
        assert_eq!(etcd.poll_interval_ms, 1000);
        assert_eq!(etcd.timeout_ms, 1000);
        assert_eq!(etcd.max_snapshot_age_ms, 4000);
        assert_eq!(etcd.degraded_health_status, 200);
        assert_eq!(
            etcd.grants_when_unavailable,
            super::GrantsWhenUnavailable::Refuse
        );
    }

    #[test]
    fn bad_fields_are_named() {
        for (store, field) in [
            (json!({"etcd": {"cluster": ""}}), "state_store.etcd.cluster"),
            (
                json!({"etcd": {"cluster": "e", "prefix": "x"}}),
                "state_store.etcd.prefix",
            ),
            (
                json!({"etcd": {"cluster": "e", "timeout_ms": 1}}),
                "state_store.etcd.timeout_ms",
            ),
            (
                json!({"etcd": {"cluster": "e", "poll_interval_ms": 0}}),
                "state_store.etcd.poll_interval_ms",
            ),
            (
                json!({"etcd": {"cluster": "e", "username": "u"}}),
                "state_store.etcd.password_env",
            ),
            (
                json!({"etcd": {"cluster": "e", "username": "u", "password_env": "NOPE"}}),
                "state_store.etcd.password_env",
            ),
            (
                json!({"etcd": {"cluster": "e", "when_unavailable": {"grants": "maybe"}}}),
                "state_store.etcd.when_unavailable.grants",
            ),
            (
                json!({"etcd": {"cluster": "e", "when_unavailable": {"health_status": 500}}}),
                "state_store.etcd.when_unavailable.health_status",
            ),
            (
                json!({"etcd": {"cluster": "e", "colour": 1}}),
                "state_store.etcd",
            ),
        ] {
            let error = error_at(store.clone());
            assert!(
                error.contains(&format!("at {field}")),
                "{store}: {error} should name {field}"
            );
        }
    }

    #[test]
    fn credentials_come_from_the_environment() {
        let env = |name: &str| (name == "PW").then(|| "secret".to_string());
        let (config, _) = parse(
            with_store(json!({"etcd": {"cluster": "e", "username": "u", "password_env": "PW"}}))
                .to_string()
                .as_bytes(),
            &env,
        )
        .unwrap();
        assert_eq!(
            config.state_store.unwrap().credentials,
            Some(("u".into(), "secret".into()))
        );
    }

    #[test]
    fn needs_the_authorization_server() {
        let v = json!({
            "resource": "https://mcp.example.com/mcp",
            "authorization_servers": ["https://auth.example.com"],
            "issuers": [{"issuer": "https://auth.example.com", "secrets": [{"value": "0123456789abcdef0123456789abcdef"}]}],
            "state_store": {"etcd": {"cluster": "e"}}
        });
        let error = parse(v.to_string().as_bytes(), &|_| None)
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("at state_store"), "{error}");
    }
}
