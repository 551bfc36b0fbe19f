//! OAuth 2.0 Protected Resource Metadata (RFC 9728) at the root and path-suffixed well-known URLs.

use serde_json::{json, Value};

use crate::config::Config;

pub const PRM_PATH: &str = "/.well-known/oauth-protected-resource";

/// The metadata URL clients should fetch for a route prefix on `origin` (the root form for
/// `/`). The config keeps each route's, made once at load.
pub fn metadata_url(origin: &str, prefix: &str) -> String {
    let suffix = if prefix == "/" { "" } else { prefix };
    format!("{origin}{PRM_PATH}{suffix}")
}

/// The metadata document for a well-known request path, or `None` when the path is not one
/// of ours (any other `/.well-known/oauth-protected-resource/...` then gets a 404 from us,
/// never a 401, so clients fall back to the root form).
pub fn document_for(config: &Config, path: &str) -> Option<Value> {
    let suffix = path.strip_prefix(PRM_PATH)?;
    let resource = if suffix.is_empty() || suffix == "/" {
        config.resource.as_str()
    } else {
        let suffix = suffix.trim_end_matches('/');
        config
            .routes
            .iter()
            .find(|route| route.prefix == suffix)
            .map(|route| route.resource.as_str())
            .or_else(|| {
                (format!("{}{suffix}", config.origin) == config.resource)
                    .then_some(config.resource.as_str())
            })?
    };
    Some(document(config, resource))
}

fn document(config: &Config, resource: &str) -> Value {
    let mut doc = serde_json::Map::new();
    doc.insert("resource".into(), json!(resource));
    doc.insert(
        "authorization_servers".into(),
        json!(config.authorization_servers),
    );
    doc.insert("scopes_supported".into(), json!(config.scopes_supported));
    doc.insert("bearer_methods_supported".into(), json!(["header"]));
    if let Some(name) = &config.resource_name {
        doc.insert("resource_name".into(), json!(name));
    }
    if let Some(docs) = &config.resource_documentation {
        doc.insert("resource_documentation".into(), json!(docs));
    }
    Value::Object(doc)
}
