//! A per-VM cache of verified tokens. MCP clients send the same token on every request for its
//! whole life, and a signature check costs up to a millisecond inside Envoy. Entries live until
//! the token's `exp` (plus leeway), the map is bounded, and it is emptied whenever a key set
//! changes, so a removed key stops working at once. Revocation is checked on every request
//! after the cache, so it is never bypassed.
//!
//! A hit is found by the whole token, as Envoy's `jwt_authn` keys its cache: a keyed hash of
//! the token's last bytes (its signature, where distinct tokens differ) picks the entry, and
//! the entry's token must equal the request's byte for byte. No digest of the whole token is
//! needed (a SHA-256 was half the cost of a cached request), and no hash collision can make
//! one token pass for another.

use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::rc::Rc;

use super::verify::VerifiedToken;

/// How many bytes from the token's end pick its entry.
const HASHED_TAIL: usize = 32;

/// A cached token and its verification.
type Entry = (Box<str>, Rc<VerifiedToken>);

pub struct TokenCache {
    capacity: usize,
    /// Keys the tail hash with per-VM random keys (SipHash), so entries cannot be aimed at.
    hasher: RandomState,
    entries: RefCell<HashMap<u64, Entry>>,
}

impl TokenCache {
    /// A cache of at most `capacity` tokens; 0 turns it off.
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            capacity,
            hasher: RandomState::new(),
            entries: RefCell::new(HashMap::new()),
        }
    }

    fn slot(&self, token: &str) -> u64 {
        let bytes = token.as_bytes();
        let tail = bytes
            .get(bytes.len().saturating_sub(HASHED_TAIL)..)
            .unwrap_or(bytes);
        self.hasher.hash_one((bytes.len(), tail))
    }

    /// The cached verification of exactly `token`, if still within `exp` + `leeway` at `now`.
    pub fn get(&self, token: &str, now: u64, leeway: u64) -> Option<Rc<VerifiedToken>> {
        if self.capacity == 0 {
            return None;
        }
        let slot = self.slot(token);
        let mut entries = self.entries.try_borrow_mut().ok()?;
        match entries.get(&slot) {
            Some((cached, v)) if same_text(cached, token) => {
                if now <= v.expires_at.saturating_add(leeway) {
                    Some(Rc::clone(v))
                } else {
                    entries.remove(&slot);
                    None
                }
            }
            _ => None,
        }
    }

    /// Remembers the verification of `token` (replacing another token in its slot, if any).
    pub fn put(&self, token: &str, verified: &Rc<VerifiedToken>, now: u64) {
        if self.capacity == 0 {
            return;
        }
        let slot = self.slot(token);
        let Ok(mut entries) = self.entries.try_borrow_mut() else {
            return;
        };
        if entries.len() >= self.capacity && !entries.contains_key(&slot) {
            entries.retain(|_, (_, v)| v.expires_at > now);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(slot, (token.into(), Rc::clone(verified)));
    }

    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.try_borrow_mut() {
            entries.clear();
        }
    }

    pub fn len(&self) -> usize {
        self.entries.try_borrow().map(|e| e.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Byte-for-byte equality, eight bytes at a time: Wasm's `memcmp` goes byte by byte, and the
/// whole token is compared on every cached request.
fn same_text(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let (a_words, b_words) = (a.chunks_exact(8), b.chunks_exact(8));
    let tails_equal = a_words.remainder() == b_words.remainder();
    tails_equal
        && a_words.zip(b_words).all(|(x, y)| {
            u64::from_ne_bytes(x.try_into().unwrap_or_default())
                == u64::from_ne_bytes(y.try_into().unwrap_or_default())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::verify::Memo;

    fn verified(subject: &str, expires_at: u64) -> Rc<VerifiedToken> {
        Rc::new(VerifiedToken {
            issuer: "https://issuer.example".into(),
            subject: Some(subject.into()),
            client_id: None,
            scopes: vec![],
            expires_at,
            issued_at: None,
            jwt_id: None,
            audiences: vec![],
            grant: None,
            session_identity: Memo::default(),
        })
    }

    /// Two tokens that end alike (same length, same signature bytes) share a slot, but a hit
    /// needs the whole token: a forged head on a cached token's signature is a miss.
    #[test]
    fn a_hit_needs_the_whole_token_not_just_its_slot() {
        let cache = TokenCache::new(10);
        let real = format!(
            "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.{}",
            "s".repeat(86)
        );
        let forged = format!(
            "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJtYWxsb3J5In0.{}",
            "s".repeat(86)
        );
        let forged = forged[forged.len() - real.len()..].to_string();
        assert_eq!(forged.len(), real.len());
        assert_eq!(cache.slot(&real), cache.slot(&forged));
        cache.put(&real, &verified("alice", 100), 0);
        assert!(cache.get(&forged, 10, 0).is_none());
        assert_eq!(
            cache.get(&real, 10, 0).unwrap().subject.as_deref(),
            Some("alice")
        );
        // The later token takes the slot; the earlier one is then simply verified again.
        cache.put(&forged, &verified("mallory", 100), 0);
        assert!(cache.get(&real, 10, 0).is_none());
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn texts_are_compared_whole() {
        for (a, b, same) in [
            ("", "", true),
            ("abc", "abc", true),
            ("abcdefgh", "abcdefgh", true),
            ("abcdefghi", "abcdefghi", true),
            ("abcdefghi", "abcdefghj", false),
            ("xbcdefghi", "abcdefghi", false),
            ("abcdefgh", "abcdefgx", false),
            ("abcdefgh", "abcdefg", false),
        ] {
            assert_eq!(same_text(a, b), same, "{a} {b}");
        }
    }

    #[test]
    fn entries_end_at_exp_plus_leeway_and_the_size_is_bounded() {
        let cache = TokenCache::new(2);
        cache.put("a.b.c", &verified("a", 100), 0);
        assert!(cache.get("a.b.c", 160, 60).is_some());
        assert!(cache.get("a.b.c", 161, 60).is_none());
        assert!(cache.is_empty(), "an expired entry is dropped when found");
        cache.put("a.b.1", &verified("1", 100), 0);
        cache.put("a.b.2", &verified("2", 50), 0);
        // Full: expired entries go first, then everything if that is not enough.
        cache.put("a.b.3", &verified("3", 100), 60);
        assert_eq!(cache.len(), 2);
        assert!(cache.get("a.b.2", 60, 0).is_none());
        assert!(cache.get("a.b.1", 60, 0).is_some());
        assert!(TokenCache::new(0).get("a.b.1", 0, 0).is_none());
    }
}
