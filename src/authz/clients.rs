//! Clients: pre-registered ones from config and dynamically registered ones, whose whole
//! registration is sealed into the `client_id` itself, and client authentication at the token,
//! revocation and introspection endpoints.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::config::authz::AuthServerConfig;
use crate::form::Params;
use crate::seal::Purpose;
use crate::secret_hash::{sha256, SecretHash};
use crate::store::Store;

use super::cimd;

/// Marks a client id that carries its own sealed registration.
pub const REGISTERED_PREFIX: &str = "mcpc.";

/// A registration as sealed into its `client_id`. Short field names keep the id short.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(remote = "Self")]
pub struct Registration {
    #[serde(rename = "n")]
    pub client_name: Option<String>,
    #[serde(rename = "r")]
    pub redirect_uris: Vec<String>,
    #[serde(rename = "g")]
    pub grant_types: Vec<String>,
    #[serde(rename = "a")]
    pub auth_method: String,
    /// SHA-256 of the client secret, base64url, for confidential clients.
    #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
    pub secret_sha256: Option<String>,
    #[serde(rename = "sc", default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(rename = "t")]
    pub application_type: String,
    #[serde(rename = "i")]
    pub issued_at: u64,
}
json_object!(Registration, Serialize);

/// A client, whichever way it was registered.
#[derive(Debug, Clone)]
pub struct Client {
    pub client_id: String,
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    /// Scopes it may get; empty means every scope of the server.
    pub scopes: Vec<String>,
    pub skip_consent: bool,
    pub confidential: bool,
    /// Registered dynamically: its name is self-asserted, and the consent page says so.
    pub dynamic: bool,
    secret: Secret,
}

#[derive(Debug, Clone)]
enum Secret {
    None,
    Hash(SecretHash),
    Sha256([u8; 32]),
}

impl Client {
    /// A public client described by a metadata document at `url`; the name shows the host,
    /// which is what the document proves.
    pub fn public_by_document(url: &str, name: String, redirect_uris: Vec<String>) -> Client {
        let host = crate::ascii_url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_default();
        Client {
            client_id: url.to_string(),
            name: if name == url {
                host
            } else {
                format!("{name} ({host})")
            },
            redirect_uris,
            grant_types: vec!["authorization_code".into(), "refresh_token".into()],
            scopes: vec![],
            skip_consent: false,
            confidential: false,
            dynamic: false,
            secret: Secret::None,
        }
    }

    pub fn verify_secret(&self, presented: &str) -> bool {
        match &self.secret {
            Secret::None => false,
            Secret::Hash(hash) => hash.verify(presented.as_bytes()),
            Secret::Sha256(expected) => sha256(presented.as_bytes()).ct_eq(expected).into(),
        }
    }

    pub fn allows_grant(&self, grant: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant)
    }

    pub fn allows_scope(&self, scope: &str) -> bool {
        self.scopes.is_empty() || self.scopes.iter().any(|s| s == scope)
    }
}

/// Finds a client by id: configured, then a sealed registration, then (when enabled) a
/// metadata document from the cache, or a bare public client for a document URL whose
/// document left the cache (its code or refresh token is bound to that exact id).
pub fn find(
    config: &AuthServerConfig,
    store: &dyn Store,
    client_id: &str,
    now: u64,
) -> Option<Client> {
    if config.cimd.is_some() && cimd::is_document_url(client_id) {
        return match cimd::cached(store, client_id, now) {
            Some(Ok(client)) => Some(client),
            Some(Err(_)) => None,
            None => Some(cimd::public_client(client_id)),
        };
    }
    find_registered(config, client_id)
}

fn find_registered(config: &AuthServerConfig, client_id: &str) -> Option<Client> {
    if let Some(c) = config.clients.iter().find(|c| c.client_id == client_id) {
        return Some(Client {
            client_id: c.client_id.clone(),
            name: c.client_name.clone(),
            redirect_uris: c.redirect_uris.clone(),
            grant_types: c.grant_types.clone(),
            scopes: c.scopes.clone(),
            skip_consent: c.skip_consent,
            confidential: c.secret.is_some(),
            dynamic: false,
            secret: c.secret.clone().map(Secret::Hash).unwrap_or(Secret::None),
        });
    }
    let sealed = client_id.strip_prefix(REGISTERED_PREFIX)?;
    if !config.registration_enabled {
        return None;
    }
    let reg: Registration = config.sealer.open_json(Purpose::RegisteredClient, sealed)?;
    let secret = match &reg.secret_sha256 {
        Some(digest) => {
            let bytes: [u8; 32] = URL_SAFE_NO_PAD.decode(digest).ok()?.try_into().ok()?;
            Secret::Sha256(bytes)
        }
        None => Secret::None,
    };
    Some(Client {
        client_id: client_id.to_string(),
        name: reg
            .client_name
            .clone()
            .unwrap_or_else(|| "Unnamed client".into()),
        redirect_uris: reg.redirect_uris.clone(),
        grant_types: reg.grant_types.clone(),
        // The registered `scope` is not a cap: MCP clients register with the scope of their
        // first challenge and must be able to step up later; the person consents to each scope.
        scopes: vec![],
        skip_consent: false,
        confidential: !matches!(secret, Secret::None),
        dynamic: true,
        secret,
    })
}

/// Why client authentication failed; `basic` says whether the client tried HTTP Basic, which
/// decides whether the 401 carries `WWW-Authenticate: Basic`.
#[derive(Debug, PartialEq, Eq)]
pub enum AuthError {
    InvalidRequest(&'static str),
    InvalidClient { basic: bool },
}

/// How the client authenticated.
#[derive(Debug)]
pub struct Authenticated {
    pub client: Client,
    /// True for `client_secret_basic` / `client_secret_post`, false for a public client.
    pub with_secret: bool,
}

/// RFC 6749 §2.3: HTTP Basic (`client_secret_basic`), or `client_id` + `client_secret` in
/// the body (`client_secret_post`), or `client_id` alone for a public client.
pub fn authenticate(
    config: &AuthServerConfig,
    store: &dyn Store,
    now: u64,
    authorization: Option<&str>,
    form: &Params,
) -> Result<Authenticated, AuthError> {
    let find = |id: &str| find(config, store, id, now);
    let basic = authorization.and_then(parse_basic);
    if authorization.is_some_and(|a| a.get(..6).is_some_and(|p| p.eq_ignore_ascii_case("basic ")))
        && basic.is_none()
    {
        return Err(AuthError::InvalidClient { basic: true });
    }
    match (basic, form.get("client_secret")) {
        (Some(_), Some(_)) => Err(AuthError::InvalidRequest(
            "Use one client authentication method, not two",
        )),
        (Some((id, secret)), None) => {
            if form.get("client_id").is_some_and(|body_id| body_id != id) {
                return Err(AuthError::InvalidRequest(
                    "client_id does not match the authenticated client",
                ));
            }
            let client = find(&id).ok_or(AuthError::InvalidClient { basic: true })?;
            if !client.verify_secret(&secret) {
                return Err(AuthError::InvalidClient { basic: true });
            }
            Ok(Authenticated {
                client,
                with_secret: true,
            })
        }
        (None, Some(secret)) => {
            let id = form
                .get("client_id")
                .ok_or(AuthError::InvalidRequest("client_id is required"))?;
            let client = find(id).ok_or(AuthError::InvalidClient { basic: false })?;
            if !client.verify_secret(secret) {
                return Err(AuthError::InvalidClient { basic: false });
            }
            Ok(Authenticated {
                client,
                with_secret: true,
            })
        }
        (None, None) => {
            let id = form
                .get("client_id")
                .ok_or(AuthError::InvalidClient { basic: false })?;
            let client = find(id).ok_or(AuthError::InvalidClient { basic: false })?;
            if client.confidential {
                return Err(AuthError::InvalidClient { basic: false });
            }
            Ok(Authenticated {
                client,
                with_secret: false,
            })
        }
    }
}

/// `Basic base64(urlencode(id):urlencode(secret))`, decoded.
fn parse_basic(header: &str) -> Option<(String, String)> {
    let (scheme, value) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(value.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let decode = |s: &str| -> Option<String> {
        form_urlencoded::parse(format!("v={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((decode(id)?, decode(secret)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded() {
        let header = format!("Basic {}", STANDARD.encode("my%20client:s%3Acret"));
        assert_eq!(
            parse_basic(&header),
            Some(("my client".into(), "s:cret".into()))
        );
        assert_eq!(parse_basic("Basic !!!"), None);
        assert_eq!(parse_basic("Bearer x"), None);
    }
}
