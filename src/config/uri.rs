//! Canonical resource URIs (RFC 8707, RFC 9728): clients compare them as strings, so the
//! configured value must already be in the one form they will compute.

use url::Host;

use crate::ascii_url;

/// True for hosts that only this machine can reach; plain `http` is allowed for them.
pub fn is_loopback(host: &str) -> bool {
    match ascii_url::parse(&format!("http://{host}/"))
        .ok()
        .and_then(|u| u.host().map(|h| h.to_owned()))
    {
        Some(Host::Domain(d)) => d == "localhost",
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Checks that `uri` is an absolute `https` URI (or `http` on loopback) in canonical form:
/// lowercase scheme and host, default port omitted, no query, no fragment, no trailing slash.
/// Returns it unchanged, or a reason that shows the canonical spelling.
pub fn canonical_resource_uri(uri: &str) -> Result<String, String> {
    let url = ascii_url::parse(uri).map_err(|e| format!("not an absolute URI: {e}"))?;
    let host = url.host_str().ok_or("must have a host")?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(host) => {}
        "http" => return Err("must use https (http is allowed only for localhost)".into()),
        other => return Err(format!("scheme {other} is not https")),
    }
    if url.query().is_some() || url.fragment().is_some() || uri.contains(['?', '#']) {
        return Err("must not have a query or a fragment".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain credentials".into());
    }
    let mut canonical = format!("{}://{}", url.scheme(), host);
    if let Some(port) = url.port() {
        canonical.push_str(&format!(":{port}"));
    }
    let path = url.path().trim_end_matches('/');
    canonical.push_str(path);
    if canonical != uri {
        return Err(format!("write it in canonical form: {canonical}"));
    }
    Ok(canonical)
}

/// `https://host:port` of a canonical URI.
pub fn origin_of(canonical: &str) -> String {
    match ascii_url::parse(canonical) {
        Ok(url) => url.origin().ascii_serialization(),
        Err(_) => canonical.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms_pass() {
        for uri in [
            "https://mcp.example.com/mcp",
            "https://mcp.example.com",
            "https://localhost:8443/mcp",
            "http://localhost:3000/mcp",
            "http://127.0.0.1:3000",
            "http://[::1]:3000/mcp",
        ] {
            assert_eq!(canonical_resource_uri(uri).as_deref(), Ok(uri));
        }
    }

    #[test]
    fn non_canonical_forms_name_the_fix() {
        let cases = [
            ("https://MCP.example.com/mcp", "https://mcp.example.com/mcp"),
            (
                "https://mcp.example.com/mcp/",
                "https://mcp.example.com/mcp",
            ),
            (
                "https://mcp.example.com:443/mcp",
                "https://mcp.example.com/mcp",
            ),
            ("HTTPS://mcp.example.com", "https://mcp.example.com"),
        ];
        for (given, fixed) in cases {
            let err = canonical_resource_uri(given).unwrap_err();
            assert!(err.ends_with(fixed), "{given}: {err}");
        }
    }

    #[test]
    fn insecure_and_odd_uris_fail() {
        for uri in [
            "http://mcp.example.com/mcp",
            "ftp://x/y",
            "https://x/mcp?x=1",
            "https://x/mcp#f",
            "/mcp",
            "https://user:pw@x/mcp",
        ] {
            assert!(canonical_resource_uri(uri).is_err(), "{uri}");
        }
    }

    #[test]
    fn origin_keeps_non_default_port() {
        assert_eq!(
            origin_of("https://localhost:8443/mcp"),
            "https://localhost:8443"
        );
        assert_eq!(origin_of("https://a.example/x/y"), "https://a.example");
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("localhost"));
        assert!(is_loopback("127.0.0.5"));
        assert!(is_loopback("[::1]"));
        assert!(!is_loopback("10.0.0.1"));
        assert!(!is_loopback("example.com"));
    }
}
