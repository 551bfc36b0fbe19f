//! A per-VM cache of verified tokens. MCP clients send the same token on every request for its
//! whole life, and a signature check costs up to a millisecond inside Envoy; a cache hit costs
//! a SHA-256 and a map lookup, and hands out the shared verification (no copy per request). Entries live until the token's `exp` (plus leeway), the map is
//! bounded, and it is emptied whenever a key set changes, so a removed key stops working at once.
//! Revocation is checked on every request after the cache, so it is never bypassed.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use super::verify::VerifiedToken;

pub struct TokenCache {
    capacity: usize,
    entries: RefCell<HashMap<[u8; 32], Rc<VerifiedToken>>>,
}

impl TokenCache {
    /// A cache of at most `capacity` tokens; 0 turns it off.
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            capacity,
            entries: RefCell::new(HashMap::new()),
        }
    }

    pub fn key(token: &str) -> [u8; 32] {
        crate::secret_hash::sha256(token.as_bytes())
    }

    /// The cached verification, if still within `exp` + `leeway` at `now`.
    pub fn get(&self, key: &[u8; 32], now: u64, leeway: u64) -> Option<Rc<VerifiedToken>> {
        if self.capacity == 0 {
            return None;
        }
        let mut entries = self.entries.try_borrow_mut().ok()?;
        match entries.get(key) {
            Some(v) if now <= v.expires_at.saturating_add(leeway) => Some(Rc::clone(v)),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    pub fn put(&self, key: [u8; 32], verified: &Rc<VerifiedToken>, now: u64) {
        if self.capacity == 0 {
            return;
        }
        let Ok(mut entries) = self.entries.try_borrow_mut() else {
            return;
        };
        if entries.len() >= self.capacity {
            entries.retain(|_, v| v.expires_at > now);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(key, Rc::clone(verified));
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
