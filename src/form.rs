//! `application/x-www-form-urlencoded` bodies and query strings, strictly: a parameter given
//! twice is an error (RFC 6749 §3.1: "parameters MUST NOT be included more than once"), so two
//! parsers can never disagree about which value counts.

use std::collections::HashMap;

/// Parsed parameters; values are percent-decoded.
#[derive(Debug, Default)]
pub struct Params(HashMap<String, String>);

impl Params {
    /// Parses `input`; `Err(name)` names a repeated parameter.
    pub fn parse(input: &[u8]) -> Result<Params, String> {
        let mut map = HashMap::new();
        for (key, value) in form_urlencoded::parse(input) {
            if map.insert(key.to_string(), value.into_owned()).is_some() {
                return Err(key.into_owned());
            }
        }
        Ok(Params(map))
    }

    /// The query string of a `:path`.
    pub fn from_path(path: &str) -> Result<Params, String> {
        match path.split_once('?') {
            Some((_, query)) => Params::parse(query.as_bytes()),
            None => Ok(Params::default()),
        }
    }

    /// The value, with an empty value counting as absent (RFC 6749 §3.1).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// Builds a query string or form body.
pub fn encode(pairs: &[(&str, &str)]) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        out.append_pair(k, v);
    }
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_parameters_are_refused() {
        assert_eq!(
            Params::parse(b"grant_type=a&grant_type=b").unwrap_err(),
            "grant_type"
        );
    }

    #[test]
    fn values_are_decoded_and_empty_is_absent() {
        let p = Params::parse(b"a=x%20y&b=&c=1+2").unwrap();
        assert_eq!(p.get("a"), Some("x y"));
        assert_eq!(p.get("b"), None);
        assert_eq!(p.get("c"), Some("1 2"));
        assert_eq!(
            Params::from_path("/x?state=s%26t").unwrap().get("state"),
            Some("s&t")
        );
    }
}
