//! From the provider's claims to our identity: the subject, whether the person is admitted
//! (every configured allow-list must match), and which scopes they may grant.

use serde_json::{Map, Value};

use crate::config::upstream::UpstreamConfig;

#[derive(Debug, PartialEq, Eq)]
pub struct Identity {
    /// Our `sub`: the configured claim's value.
    pub subject: String,
    /// Scopes the person may grant; `None` means any scope the client asked for.
    pub may_grant: Option<Vec<String>>,
}

/// Why a person was not admitted; shown to the client as the `access_denied` description.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal(pub &'static str);

/// A claim as text: strings as they are, integers written out (GitHub's numeric `id`).
fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) if n.is_u64() || n.is_i64() => Some(n.to_string()),
        _ => None,
    }
}

/// A claim's values: one string, or an array of strings (groups, roles).
fn values(claims: &Map<String, Value>, name: &str) -> Vec<String> {
    match claims.get(name) {
        Some(Value::Array(list)) => list.iter().filter_map(text).collect(),
        Some(value) => text(value).into_iter().collect(),
        None => vec![],
    }
}

/// The email, lower-cased, only when the provider says it is verified (`email_verified`
/// true): an address a person merely typed in proves nothing about their domain.
fn verified_email(claims: &Map<String, Value>) -> Option<String> {
    let verified = match claims.get("email_verified") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true",
        _ => false,
    };
    if !verified {
        return None;
    }
    claims
        .get("email")
        .and_then(Value::as_str)
        .filter(|e| e.contains('@'))
        .map(str::to_ascii_lowercase)
}

pub fn admit(config: &UpstreamConfig, claims: &Map<String, Value>) -> Result<Identity, Refusal> {
    let subject = claims
        .get(&config.subject_claim)
        .and_then(text)
        .ok_or(Refusal("The identity provider did not say who signed in"))?;
    let email = verified_email(claims);
    if !config.allowed_email_domains.is_empty() {
        let domain = email
            .as_deref()
            .and_then(|e| e.rsplit_once('@'))
            .map(|(_, d)| d);
        if !domain.is_some_and(|d| config.allowed_email_domains.iter().any(|a| a == d)) {
            return Err(Refusal(
                "This account's email domain is not allowed on this server",
            ));
        }
    }
    if !config.allowed_users.is_empty() {
        let listed = config
            .allowed_users
            .iter()
            .any(|u| u == &subject || email.as_deref().is_some_and(|e| u.eq_ignore_ascii_case(e)));
        if !listed {
            return Err(Refusal("This account is not allowed on this server"));
        }
    }
    if !config.allowed_groups.is_empty() {
        let groups = values(claims, &config.groups_claim);
        if !groups.iter().any(|g| config.allowed_groups.contains(g)) {
            return Err(Refusal(
                "This account is not in a group allowed on this server",
            ));
        }
    }
    let may_grant = (!config.scope_rules.is_empty()).then(|| {
        let mut scopes = config.base_scopes.clone();
        for rule in &config.scope_rules {
            let has = values(claims, &rule.claim);
            if has.iter().any(|v| rule.values.contains(v)) {
                scopes.extend(rule.scopes.iter().cloned());
            }
        }
        scopes.sort();
        scopes.dedup();
        scopes
    });
    Ok(Identity { subject, may_grant })
}
