//! The `mcp` section: JSON-RPC inspection on MCP endpoints, with rules checked at load time.

use serde::Deserialize;

use super::raw::opt_whole_number;
use super::{check_path, check_scopes, ConfigError};
use crate::mcp::annotations::AnnotationScopes;
use crate::mcp::glob::Glob;
use crate::mcp::policy::{ClientTools, McpPolicy, Rule};

#[derive(Debug, Deserialize)]
#[serde(remote = "Self")]
#[serde(deny_unknown_fields)]
pub struct RawMcp {
    #[serde(default)]
    pub endpoints: Option<Vec<String>>,
    #[serde(default, deserialize_with = "opt_whole_number")]
    pub max_body_bytes: Option<u64>,
    #[serde(default)]
    pub rules: Option<Vec<RawRule>>,
    #[serde(default)]
    pub default_scopes: Option<Vec<String>>,
    #[serde(default)]
    pub clients: Option<Vec<RawClientTools>>,
    #[serde(default)]
    pub annotation_scopes: Option<RawAnnotationScopes>,
    #[serde(default)]
    pub stats_per_tool: Option<bool>,
}
json_object!(RawMcp);

#[derive(Debug, Deserialize)]
#[serde(remote = "Self")]
#[serde(deny_unknown_fields)]
pub struct RawAnnotationScopes {
    pub read_only: String,
    pub write: String,
    #[serde(default)]
    pub destructive: Option<String>,
}
json_object!(RawAnnotationScopes);

#[derive(Debug, Deserialize)]
#[serde(remote = "Self")]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub method: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub uri: Option<String>,
    pub scopes: Vec<String>,
}
json_object!(RawRule);

#[derive(Debug, Deserialize)]
#[serde(remote = "Self")]
#[serde(deny_unknown_fields)]
pub struct RawClientTools {
    pub client_id: String,
    #[serde(default)]
    pub allow_tools: Option<Vec<String>>,
    #[serde(default)]
    pub deny_tools: Option<Vec<String>>,
}
json_object!(RawClientTools);

fn glob(path: &str, pattern: &str) -> Result<Glob, ConfigError> {
    Glob::new(pattern).map_err(|r| ConfigError::at(path, r))
}

fn globs(path: &str, patterns: &[String]) -> Result<Vec<Glob>, ConfigError> {
    patterns
        .iter()
        .enumerate()
        .map(|(i, p)| glob(&format!("{path}[{i}]"), p))
        .collect()
}

pub fn build(raw: RawMcp) -> Result<McpPolicy, ConfigError> {
    let endpoints = raw.endpoints.unwrap_or_else(|| vec!["/mcp".into()]);
    for (i, e) in endpoints.iter().enumerate() {
        check_path(&format!("mcp.endpoints[{i}]"), e)?;
    }
    let max_body_bytes = raw.max_body_bytes.unwrap_or(1_048_576);
    if !(1024..=16_777_216).contains(&max_body_bytes) {
        return Err(ConfigError::at(
            "mcp.max_body_bytes",
            "must be between 1024 and 16777216",
        ));
    }
    let mut rules = Vec::new();
    for (i, r) in raw.rules.unwrap_or_default().into_iter().enumerate() {
        let p = format!("mcp.rules[{i}]");
        check_scopes(&format!("{p}.scopes"), &r.scopes)?;
        if r.name.is_some() && r.uri.is_some() {
            return Err(ConfigError::at(
                &p,
                "give name (tools, prompts) or uri (resources), not both",
            ));
        }
        let names_things = ["tools/call", "prompts/get"]
            .iter()
            .any(|m| Glob::new(&r.method).is_ok_and(|g| g.matches(m)));
        if r.name.is_some() && !names_things {
            return Err(ConfigError::at(
                format!("{p}.name"),
                "name applies to tools/call and prompts/get",
            ));
        }
        let reads_uris = [
            "resources/read",
            "resources/subscribe",
            "resources/unsubscribe",
        ]
        .iter()
        .any(|m| Glob::new(&r.method).is_ok_and(|g| g.matches(m)));
        if r.uri.is_some() && !reads_uris {
            return Err(ConfigError::at(
                format!("{p}.uri"),
                "uri applies to resources/read, resources/subscribe and resources/unsubscribe",
            ));
        }
        rules.push(Rule {
            method: glob(&format!("{p}.method"), &r.method)?,
            name: r.name.map(|n| glob(&format!("{p}.name"), &n)).transpose()?,
            uri: r.uri.map(|u| glob(&format!("{p}.uri"), &u)).transpose()?,
            scopes: r.scopes,
        });
    }
    let default_scopes = raw.default_scopes.unwrap_or_default();
    check_scopes("mcp.default_scopes", &default_scopes)?;
    let mut clients = Vec::new();
    for (i, c) in raw.clients.unwrap_or_default().into_iter().enumerate() {
        let p = format!("mcp.clients[{i}]");
        if c.client_id.is_empty() {
            return Err(ConfigError::at(
                format!("{p}.client_id"),
                "must not be empty",
            ));
        }
        clients.push(ClientTools {
            client_id: c.client_id,
            allow: c
                .allow_tools
                .map(|a| globs(&format!("{p}.allow_tools"), &a))
                .transpose()?,
            deny: globs(
                &format!("{p}.deny_tools"),
                &c.deny_tools.unwrap_or_default(),
            )?,
        });
    }
    let annotation_scopes = match raw.annotation_scopes {
        None => None,
        Some(a) => {
            let destructive = a.destructive.unwrap_or_else(|| a.write.clone());
            check_scopes(
                "mcp.annotation_scopes",
                &[a.read_only.clone(), a.write.clone(), destructive.clone()],
            )?;
            Some(AnnotationScopes {
                read_only: a.read_only,
                write: a.write,
                destructive,
            })
        }
    };
    Ok(McpPolicy {
        annotation_scopes,
        stats_per_tool: raw.stats_per_tool.unwrap_or(false),
        endpoints,
        max_body_bytes: max_body_bytes as usize,
        rules,
        default_scopes,
        clients,
    })
}
