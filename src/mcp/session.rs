//! Sessions bound to their user: an `Mcp-Session-Id` the backend issued under one identity
//! (`iss` + `sub` + `client_id`) is refused with 404, as a lost session, for any other identity,
//! so a leaked session id cannot be used with another token.

use crate::jwt::VerifiedToken;
use crate::store::Store;

fn key(session_id: &str) -> String {
    use base64::Engine;
    let digest = crate::secret_hash::sha256(session_id.as_bytes());
    format!(
        "mcp-oauth:session:{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
    )
}

/// Who holds a session: a digest of issuer, subject and client (kept with the token, so a
/// cached token is digested once).
pub fn identity(token: &VerifiedToken) -> &str {
    token.session_identity.0.get_or_init(|| {
        use base64::Engine;
        let text = format!(
            "{}\n{}\n{}",
            token.issuer,
            token.subject.as_deref().unwrap_or(""),
            token.client_id.as_deref().unwrap_or("")
        );
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(crate::secret_hash::sha256(text.as_bytes()))
    })
}

/// Remembers that the backend gave `session_id` to `identity` (first binding wins).
pub fn bind(store: &mut dyn Store, session_id: &str, identity: &str) {
    let key = key(session_id);
    if store.get(&key).is_none() {
        let _ = store.set(&key, identity.as_bytes(), None);
    }
}

/// Whether `identity` may use the session: true for its owner. A session bound when the backend
/// created it (from its answer) keeps that owner; one whose creation was missed is bound to its
/// first user. One store read on the common path.
pub fn claim(store: &mut dyn Store, session_id: &str, identity: &str) -> bool {
    let key = key(session_id);
    match store.get(&key) {
        Some((bound, _)) => bound == identity.as_bytes(),
        None => {
            let _ = store.set(&key, identity.as_bytes(), None);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[test]
    fn a_session_belongs_to_whoever_got_it() {
        let mut s = MemoryStore::default();
        bind(&mut s, "sess", "alice");
        bind(&mut s, "sess", "mallory");
        assert!(claim(&mut s, "sess", "alice"));
        assert!(!claim(&mut s, "sess", "mallory"));
        assert!(
            claim(&mut s, "unseen", "bob"),
            "a session created unseen binds to its first user"
        );
        assert!(!claim(&mut s, "unseen", "alice"));
    }
}
