//! Redirect URIs: only `https`, loopback `http` (RFC 8252 §7.3) or a private-use scheme for
//! native apps (RFC 8252 §7.1), and an exact match with a registered value (any port for
//! loopback, as RFC 8252 §7.3 asks).

use crate::ascii_url::{self, UrlError};

use crate::config::is_loopback;

/// Checks a redirect URI at registration.
pub fn check_redirect_uri(uri: &str) -> Result<(), String> {
    let url = ascii_url::parse(uri).map_err(|e| match e {
        UrlError::NotAscii | UrlError::EncodedHost => e.to_string(),
        UrlError::Invalid(_) => "not an absolute URI".to_string(),
    })?;
    if url.fragment().is_some() {
        return Err("must not contain a fragment".into());
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if url.host_str().is_some_and(is_loopback) => Ok(()),
        "http" => Err("http is allowed only for loopback (localhost, 127.0.0.1, [::1])".into()),
        "javascript" | "data" | "file" | "vbscript" | "about" | "blob" => {
            Err(format!("scheme {} is not allowed", url.scheme()))
        }
        // Private-use schemes of native apps (com.example.app:/callback) need a dot.
        scheme if scheme.contains('.') => Ok(()),
        scheme => Err(format!(
            "scheme {scheme} is not allowed; use https, loopback http or a reverse-domain scheme"
        )),
    }
}

/// True when `requested` is one of `registered`, exactly, except that a loopback `http`
/// URI may use any port.
pub fn redirect_matches(registered: &[String], requested: &str) -> bool {
    if registered.iter().any(|r| r == requested) {
        return true;
    }
    let Ok(req) = ascii_url::parse(requested) else {
        return false;
    };
    if req.scheme() != "http" || !req.host_str().is_some_and(is_loopback) {
        return false;
    }
    registered.iter().any(|r| {
        ascii_url::parse(r).is_ok_and(|reg| {
            reg.scheme() == "http"
                && reg.host_str() == req.host_str()
                && reg.path() == req.path()
                && reg.query() == req.query()
                && reg.username() == req.username()
        })
    })
}

/// The host a person sees on the consent page ("where will the code go").
pub fn display_host(uri: &str) -> String {
    match ascii_url::parse(uri) {
        Ok(url) => match url.host_str() {
            Some(host) => match url.port() {
                Some(port) => format!("{host}:{port}"),
                None => host.to_string(),
            },
            None => format!("{}:", url.scheme()),
        },
        Err(_) => uri.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_ascii_and_punycode_is_accepted() {
        let unicode = check_redirect_uri("https://bücher.example/cb").unwrap_err();
        assert!(unicode.contains("xn--"), "{unicode}");
        assert!(check_redirect_uri("https://xn--bcher-kva.example/cb").is_ok());
    }

    #[test]
    fn allowed_redirects() {
        for uri in [
            "https://claude.ai/api/mcp/auth_callback",
            "http://localhost:6274/oauth/callback",
            "http://127.0.0.1/cb",
            "http://[::1]:9/cb",
            "com.example.app:/cb",
        ] {
            assert!(check_redirect_uri(uri).is_ok(), "{uri}");
        }
        for uri in [
            "http://evil.example/cb",
            "javascript:alert(1)",
            "https://x/cb#frag",
            "relative/cb",
            "myapp:/cb",
        ] {
            assert!(check_redirect_uri(uri).is_err(), "{uri}");
        }
    }

    #[test]
    fn exact_match_except_loopback_port() {
        let registered = vec![
            "https://app.example/cb".to_string(),
            "http://127.0.0.1/cb".to_string(),
        ];
        assert!(redirect_matches(&registered, "https://app.example/cb"));
        assert!(!redirect_matches(&registered, "https://app.example/cb/"));
        assert!(!redirect_matches(&registered, "https://app.example/cb?x=1"));
        assert!(redirect_matches(&registered, "http://127.0.0.1:53123/cb"));
        assert!(!redirect_matches(
            &registered,
            "http://127.0.0.1:53123/other"
        ));
        assert!(!redirect_matches(&registered, "http://localhost:53123/cb"));
    }
}
