//! Randomness from the host (WASI `random_get` inside Envoy, the OS natively).

/// `N` random bytes, or `None` if the host has no randomness to give (callers then answer
/// `server_error` rather than use weak values).
pub fn bytes<const N: usize>() -> Option<[u8; N]> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).ok()?;
    Some(buf)
}

/// A random identifier: 16 bytes, base64url.
pub fn id() -> Option<String> {
    use base64::Engine;
    bytes::<16>().map(|b| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}
