//! Client ID Metadata Documents: a `client_id` that is an https URL names a JSON document,
//! fetched through an Envoy cluster, that describes the client. Guarded against SSRF (https
//! only, no private or loopback hosts unless allowed, an optional host allow-list, a size and
//! time limit) and cached in the store for as long as its `Cache-Control` says, within bounds.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Host;

use super::clients::Client;
use super::redirect::check_redirect_uri;
use crate::ascii_url;
use crate::config::authz::CimdConfig;
use crate::store::Store;

/// Failed fetches are remembered this long, so a broken document is not fetched per request.
const NEGATIVE_CACHE_SECONDS: u64 = 10;

/// Whether `client_id` is a metadata-document URL (rather than an id we issued).
pub fn is_document_url(client_id: &str) -> bool {
    client_id.starts_with("https://")
}

/// What the glue must fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    pub url: String,
    pub cluster: String,
    pub authority: String,
    pub path: String,
    pub timeout_ms: u64,
}

/// Checks the URL before anything is fetched.
pub fn fetch_for(config: &CimdConfig, client_id: &str) -> Result<Fetch, String> {
    let url = ascii_url::parse(client_id)
        .map_err(|e| format!("the client_id is not a valid URL: {e}"))?;
    if url.scheme() != "https" {
        return Err("a client metadata URL must use https".into());
    }
    if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
        return Err("a client metadata URL must not have credentials or a fragment".into());
    }
    if url.path() == "/" || url.path().is_empty() {
        return Err("a client metadata URL must have a path".into());
    }
    let host = url.host().ok_or("the client metadata URL has no host")?;
    let host_name = url.host_str().unwrap_or_default().to_ascii_lowercase();
    if !config.allow_private_hosts && is_private(&host) {
        return Err(format!("{host_name} is a private or loopback address"));
    }
    if !config.allowed_hosts.is_empty()
        && !config
            .allowed_hosts
            .iter()
            .any(|pattern| host_matches(pattern, &host_name))
    {
        return Err(format!(
            "{host_name} is not an allowed client metadata host"
        ));
    }
    let authority = match url.port() {
        Some(port) => format!("{host_name}:{port}"),
        None => host_name,
    };
    let mut path = url.path().to_string();
    if let Some(query) = url.query() {
        path.push('?');
        path.push_str(query);
    }
    Ok(Fetch {
        url: client_id.to_string(),
        cluster: config.cluster.clone(),
        authority,
        path,
        timeout_ms: config.timeout_ms,
    })
}

fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => host.ends_with(&format!(".{suffix}")),
        None => pattern == host,
    }
}

fn is_private(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(d) => {
            let d = d.to_ascii_lowercase();
            d == "localhost"
                || d.ends_with(".localhost")
                || d.ends_with(".local")
                || d.ends_with(".internal")
        }
        Host::Ipv4(ip) => {
            ip.is_private()
                || ip.is_loopback()
                || ip.is_link_local()
                || ip.is_unspecified()
                || ip.is_broadcast()
                || ip.octets()[0] == 100 && (64..128).contains(&ip.octets()[1])
        }
        Host::Ipv6(ip) => {
            let first = ip.segments()[0];
            ip.is_loopback()
                || ip.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || ip.to_ipv4_mapped().is_some()
        }
    }
}

/// The parts of a document we keep.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(remote = "Self")]
struct Document {
    client_name: Option<String>,
    redirect_uris: Vec<String>,
}
json_object!(Document, Serialize);

#[derive(Debug, Serialize, Deserialize)]
#[serde(remote = "Self")]
struct Cached {
    exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    doc: Option<Document>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}
json_object!(Cached, Serialize);

fn cache_key(url: &str) -> String {
    use base64::Engine;
    let digest = crate::secret_hash::sha256(url.as_bytes());
    format!(
        "mcp-oauth:cimd:{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
    )
}

/// The cached client, `Some(Err)` for a recent failure, `None` when it must be fetched.
pub fn cached(store: &dyn Store, url: &str, now: u64) -> Option<Result<Client, String>> {
    let (bytes, _) = store.get(&cache_key(url))?;
    let cached: Cached = serde_json::from_slice(&bytes).ok()?;
    if cached.exp < now {
        return None;
    }
    match (cached.doc, cached.error) {
        (Some(doc), _) => Some(Ok(client_of(url, doc))),
        (None, Some(error)) => Some(Err(error)),
        (None, None) => None,
    }
}

/// A client known only by its URL, for the token endpoint when the document has left the
/// cache: the code or refresh token it presents was bound to this exact id at authorization.
pub fn public_client(url: &str) -> Client {
    client_of(
        url,
        Document {
            client_name: None,
            redirect_uris: vec![],
        },
    )
}

fn client_of(url: &str, doc: Document) -> Client {
    Client::public_by_document(
        url,
        doc.client_name.unwrap_or_else(|| url.to_string()),
        doc.redirect_uris,
    )
}

/// Validates a fetched document and caches the result, good or bad.
pub fn accept(
    config: &CimdConfig,
    store: &mut dyn Store,
    url: &str,
    status: Option<&str>,
    cache_control: Option<&str>,
    body: &[u8],
    now: u64,
) {
    let entry = match validate(config, url, status, body) {
        Ok(doc) => Cached {
            exp: now + cache_seconds(config, cache_control),
            doc: Some(doc),
            error: None,
        },
        Err(error) => {
            log::info!("mcp-oauth: client metadata {url} refused: {error}");
            Cached {
                exp: now + NEGATIVE_CACHE_SECONDS,
                doc: None,
                error: Some(error),
            }
        }
    };
    if let Ok(bytes) = serde_json::to_vec(&entry) {
        let _ = store.set(&cache_key(url), &bytes, None);
    }
}

fn cache_seconds(config: &CimdConfig, cache_control: Option<&str>) -> u64 {
    let max_age = cache_control.and_then(|cc| {
        cc.split(',')
            .filter_map(|d| d.trim().strip_prefix("max-age="))
            .find_map(|v| v.trim().parse::<u64>().ok())
    });
    let no_store =
        cache_control.is_some_and(|cc| cc.contains("no-store") || cc.contains("no-cache"));
    let wanted = if no_store {
        0
    } else {
        max_age.unwrap_or(config.min_cache_seconds)
    };
    wanted.clamp(config.min_cache_seconds, config.max_cache_seconds)
}

fn validate(
    config: &CimdConfig,
    url: &str,
    status: Option<&str>,
    body: &[u8],
) -> Result<Document, String> {
    match status {
        Some("200") => {}
        Some(other) => return Err(format!("the document answered HTTP {other}")),
        None => return Err("the document could not be fetched".into()),
    }
    if body.len() > config.max_bytes {
        return Err(format!(
            "the document is larger than {} bytes",
            config.max_bytes
        ));
    }
    let Ok(Value::Object(doc)) = serde_json::from_slice::<Value>(body) else {
        return Err("the document is not a JSON object".into());
    };
    if doc.get("client_id").and_then(Value::as_str) != Some(url) {
        return Err("the document's client_id is not its own URL".into());
    }
    if doc.contains_key("client_secret") || doc.contains_key("client_secret_expires_at") {
        return Err("the document must not contain a client secret".into());
    }
    match doc
        .get("token_endpoint_auth_method")
        .and_then(Value::as_str)
    {
        None | Some("none") => {}
        Some(other) => {
            return Err(format!(
                "token_endpoint_auth_method {other} is not supported (use none)"
            ))
        }
    }
    let redirect_uris: Vec<String> = doc
        .get("redirect_uris")
        .and_then(Value::as_array)
        .ok_or("the document has no redirect_uris")?
        .iter()
        .map(|v| {
            v.as_str()
                .map(str::to_string)
                .ok_or("redirect_uris must be strings")
        })
        .collect::<Result<_, _>>()?;
    if redirect_uris.is_empty() || redirect_uris.len() > 10 {
        return Err("redirect_uris must list 1 to 10 URIs".into());
    }
    for uri in &redirect_uris {
        check_redirect_uri(uri).map_err(|e| format!("redirect URI {uri}: {e}"))?;
    }
    let client_name = match doc.get("client_name") {
        None | Some(Value::Null) => None,
        Some(Value::String(name))
            if name.chars().count() <= 200 && crate::http::is_plain_text(name) =>
        {
            Some(name.clone())
        }
        Some(_) => return Err("client_name must be a short string".into()),
    };
    Ok(Document {
        client_name,
        redirect_uris,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use serde_json::json;

    fn config() -> CimdConfig {
        CimdConfig {
            cluster: "cimd".into(),
            allowed_hosts: vec![],
            allow_private_hosts: false,
            timeout_ms: 3000,
            max_bytes: 5120,
            min_cache_seconds: 60,
            max_cache_seconds: 3600,
        }
    }

    const URL: &str = "https://app.example.com/oauth/client.json";

    #[test]
    fn urls_are_checked_before_fetching() {
        let c = config();
        let f = fetch_for(&c, URL).unwrap();
        assert_eq!(
            (f.authority.as_str(), f.path.as_str()),
            ("app.example.com", "/oauth/client.json")
        );
        for bad in [
            "http://app.example.com/c.json",
            "https://app.example.com/",
            "https://127.0.0.1/c.json",
            "https://10.1.2.3/c.json",
            "https://169.254.169.254/latest",
            "https://[::1]/c.json",
            "https://localhost/c.json",
            "https://u:p@app.example.com/c.json",
        ] {
            assert!(fetch_for(&c, bad).is_err(), "{bad}");
        }
        let limited = CimdConfig {
            allowed_hosts: vec!["*.example.org".into()],
            ..config()
        };
        assert!(fetch_for(&limited, URL).is_err());
        assert!(fetch_for(&limited, "https://a.example.org/c.json").is_ok());
    }

    #[test]
    fn a_valid_document_is_cached_with_its_max_age() {
        let mut store = MemoryStore::default();
        let doc = json!({"client_id": URL, "client_name": "App", "redirect_uris": ["http://127.0.0.1/cb"]});
        accept(
            &config(),
            &mut store,
            URL,
            Some("200"),
            Some("max-age=600"),
            doc.to_string().as_bytes(),
            1000,
        );
        let client = cached(&store, URL, 1500).unwrap().unwrap();
        assert_eq!(client.name, "App (app.example.com)");
        assert_eq!(client.redirect_uris, vec!["http://127.0.0.1/cb"]);
        assert!(cached(&store, URL, 1700).is_none());
    }

    #[test]
    fn bad_documents_are_refused_and_briefly_remembered() {
        let mut store = MemoryStore::default();
        let wrong_id =
            json!({"client_id": "https://evil.example/c.json", "redirect_uris": ["https://x/cb"]});
        accept(
            &config(),
            &mut store,
            URL,
            Some("200"),
            None,
            wrong_id.to_string().as_bytes(),
            1000,
        );
        assert!(cached(&store, URL, 1001).unwrap().is_err());
        assert!(cached(&store, URL, 1020).is_none());
        for body in [
            json!({"client_id": URL, "redirect_uris": ["https://x/cb"], "client_secret": "s"}),
            json!({"client_id": URL, "redirect_uris": ["http://evil.example/cb"]}),
            json!({"client_id": URL, "redirect_uris": []}),
            json!({"client_id": URL, "redirect_uris": ["https://x/cb"], "token_endpoint_auth_method": "client_secret_basic"}),
        ] {
            assert!(
                validate(&config(), URL, Some("200"), body.to_string().as_bytes()).is_err(),
                "{body}"
            );
        }
        assert!(validate(&config(), URL, Some("404"), b"{}").is_err());
    }
}
