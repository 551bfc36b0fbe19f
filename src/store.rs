//! The small key-value store the core needs, with compare-and-swap. Inside Envoy it is
//! proxy-wasm shared data (one per Envoy process, seen by every worker); in tests it is
//! [`MemoryStore`].

use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// The value changed since it was read: read again and retry.
    CasMismatch,
    /// The store could not be used at all.
    Unavailable,
}

pub trait Store {
    /// The value and its version. An empty value counts as absent.
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)>;
    /// Writes `value`. With `cas`, only if the version is still `cas`.
    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError>;
}

/// Runs `update` on the current value until the write is not overtaken by another writer.
/// `update` returns the new value and a result, or `None` to leave the value unchanged.
pub fn update<T>(
    store: &mut dyn Store,
    key: &str,
    mut update: impl FnMut(Option<&[u8]>) -> (Option<Vec<u8>>, T),
) -> Result<T, StoreError> {
    for _ in 0..16 {
        let current = store.get(key);
        let (value, cas) = match &current {
            Some((v, cas)) => (Some(v.as_slice()), Some(*cas)),
            None => (None, None),
        };
        let (new_value, result) = update(value);
        let Some(new_value) = new_value else {
            return Ok(result);
        };
        match store.set(key, &new_value, cas) {
            Ok(()) => return Ok(result),
            Err(StoreError::CasMismatch) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Unavailable)
}

/// An in-memory store for tests and the native tool.
#[derive(Default)]
pub struct MemoryStore {
    map: HashMap<String, (Vec<u8>, u32)>,
    next_cas: u32,
}

impl Store for MemoryStore {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.map.get(key).filter(|(v, _)| !v.is_empty()).cloned()
    }

    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        if let (Some(cas), Some((_, current))) = (cas, self.map.get(key)) {
            if cas != *current {
                return Err(StoreError::CasMismatch);
            }
        }
        self.next_cas += 1;
        self.map
            .insert(key.to_string(), (value.to_vec(), self.next_cas));
        Ok(())
    }
}
