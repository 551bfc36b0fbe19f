//! The one way the filter parses a URL. URIs (RFC 3986) are ASCII, and the build carries no
//! Unicode IDNA tables, so any other character is refused here, with a reason a person can act
//! on, before the `url` parser sees it.

use std::fmt;

use url::Url;

/// Why a string is not a URL we accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlError {
    /// A character outside ASCII (an IRI, or a Unicode host name).
    NotAscii,
    /// Not a URL at all.
    Invalid(url::ParseError),
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlError::NotAscii => f.write_str(
                "must be ASCII (percent-encode other characters; \
                 write an internationalised host name in its xn-- form)",
            ),
            UrlError::Invalid(e) => write!(f, "{e}"),
        }
    }
}

/// Parses an absolute URL that is written in ASCII.
#[allow(clippy::disallowed_methods)] // the one sanctioned call
pub fn parse(input: &str) -> Result<Url, UrlError> {
    if !input.is_ascii() {
        return Err(UrlError::NotAscii);
    }
    Url::parse(input).map_err(UrlError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_urls_parse() {
        let url = parse("https://App.Example.com:443/cb?x=1").unwrap();
        assert_eq!(url.host_str(), Some("app.example.com"));
        assert!(parse("https://xn--bcher-kva.example/cb").is_ok());
    }

    #[test]
    fn other_characters_are_refused_with_a_reason() {
        // Mixed case next to a non-ASCII host once reached a debug assertion in the
        // ASCII-only IDNA adapter (found by the `register` fuzz target).
        for input in [
            "https://app.exaMPLE.comDDD\u{d29c}/cb",
            "https://bücher.example/cb",
            "https://app.example.com/caf\u{e9}",
        ] {
            let err = parse(input).unwrap_err();
            assert_eq!(err, UrlError::NotAscii, "{input}");
            assert!(err.to_string().contains("xn--"));
        }
        assert!(matches!(parse("not a url"), Err(UrlError::Invalid(_))));
    }
}
