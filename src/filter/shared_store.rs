//! The core's `Store` on proxy-wasm shared data: one map per Envoy process, seen by every
//! worker's VM, with compare-and-swap.

use proxy_wasm::hostcalls;
use proxy_wasm::types::Status;

use crate::authz::state::{code_shard_key, CODE_SHARDS, SHARD_HEADER};
use crate::store::{Store, StoreError};

pub struct SharedStore;

impl Store for SharedStore {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        match hostcalls::get_shared_data(key) {
            Ok((Some(value), Some(cas))) if !value.is_empty() => Some((value, cas)),
            _ => None,
        }
    }

    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        match hostcalls::set_shared_data(key, Some(value), cas) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) => Err(StoreError::CasMismatch),
            Err(status) => {
                log::warn!("mcp-oauth: shared data write failed: {status:?}");
                Err(StoreError::Unavailable)
            }
        }
    }
}

/// Creates the code shards that do not exist yet, so later writes are all compare-and-swap
/// on existing keys (Envoy has no create-if-absent). A VM reload finds them in place.
pub fn create_code_shards() {
    for index in 0..CODE_SHARDS {
        let key = code_shard_key(index);
        if matches!(hostcalls::get_shared_data(&key), Ok((Some(v), _)) if !v.is_empty()) {
            continue;
        }
        let _ = hostcalls::set_shared_data(&key, Some(SHARD_HEADER), None);
    }
}
