//! The bearer token from `Authorization` (RFC 6750 §2.1), the only place a token is taken from.

/// What the `Authorization` header(s) of a request hold.
#[derive(Debug, PartialEq, Eq)]
pub enum Credential<'a> {
    /// No `Authorization` header, or one with another scheme (such as Basic).
    None,
    Bearer(&'a str),
    /// More than one header, or `Bearer` with an empty or spaced value: a malformed request.
    Malformed(&'static str),
}

/// Reads the bearer token. The scheme is case-insensitive (RFC 7235); the token must be
/// token68 characters, which also keeps it out of any header we build.
pub fn bearer_token<'a>(authorization: &[&'a str]) -> Credential<'a> {
    bearer_token_unless_known(authorization, |_| false)
}

/// `bearer_token`, skipping the byte-by-byte token68 check for a token that `known` vouches
/// for (one the token cache holds, byte for byte: it passed this check when it was verified).
pub fn bearer_token_unless_known<'a>(
    authorization: &[&'a str],
    known: impl FnOnce(&str) -> bool,
) -> Credential<'a> {
    let value = match authorization {
        [] => return Credential::None,
        [one] => *one,
        _ => return Credential::Malformed("More than one Authorization header"),
    };
    let value = value.trim();
    // Envoy joins repeated headers with commas, and no single credential contains one. (A
    // comma is not token68, so a bearer token is only searched for one when it fails.)
    let repeated = || value.contains(',');
    let (scheme, rest) = match value.split_once(' ') {
        Some((scheme, rest)) => (scheme, rest.trim_start()),
        None => (value, ""),
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return if repeated() {
            Credential::Malformed("More than one Authorization header")
        } else {
            Credential::None
        };
    }
    if rest.is_empty() {
        return Credential::Malformed("The Bearer authorization header has no token");
    }
    if !known(rest) && !rest.bytes().all(is_token68) {
        return Credential::Malformed(if repeated() {
            "More than one Authorization header"
        } else {
            "The bearer token contains invalid characters"
        });
    }
    Credential::Bearer(rest)
}

fn is_token68(b: u8) -> bool {
    TOKEN68.get(usize::from(b)).copied().unwrap_or(false)
}

/// The token68 bytes (RFC 7235) as a table: every request's token is checked byte by byte.
/// (Built at compile time, so an index out of range would fail the build, not a request.)
#[allow(clippy::indexing_slicing)]
const TOKEN68: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0u8;
    loop {
        table[b as usize] = b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=');
        if b == u8::MAX {
            break table;
        }
        b += 1;
    }
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token68_table_is_the_rfc_alphabet() {
        for b in 0..=u8::MAX {
            let expected = b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b);
            assert_eq!(is_token68(b), expected, "byte {b}");
        }
    }

    #[test]
    fn scheme_is_case_insensitive() {
        for header in ["Bearer abc.def", "bearer abc.def", "BEARER  abc.def"] {
            assert_eq!(bearer_token(&[header]), Credential::Bearer("abc.def"));
        }
    }

    #[test]
    fn other_schemes_count_as_no_token() {
        assert_eq!(bearer_token(&["Basic dXNlcjpwdw=="]), Credential::None);
        assert_eq!(bearer_token(&[]), Credential::None);
        assert_eq!(bearer_token(&["Bearertoken"]), Credential::None);
    }

    #[test]
    fn joined_headers_are_malformed() {
        assert!(matches!(
            bearer_token(&["Basic x,Bearer b"]),
            Credential::Malformed(_)
        ));
        assert!(matches!(
            bearer_token(&["Bearer a, Bearer b"]),
            Credential::Malformed(_)
        ));
    }

    #[test]
    fn malformed_headers_are_reported() {
        assert!(matches!(
            bearer_token(&["Bearer"]),
            Credential::Malformed(_)
        ));
        assert!(matches!(
            bearer_token(&["Bearer a b"]),
            Credential::Malformed(_)
        ));
        assert!(matches!(
            bearer_token(&["Bearer a\"b"]),
            Credential::Malformed(_)
        ));
        assert!(matches!(
            bearer_token(&["Bearer a", "Bearer b"]),
            Credential::Malformed(_)
        ));
    }
}
