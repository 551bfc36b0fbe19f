//! Key names in etcd (under the configured prefix), the leases they live on, and what this
//! Envoy remembers about etcd in its shared data.
//!
//! Leases are per time bucket, not per key: a key that expires at `exp` is put on the lease of
//! the bucket after `exp` (buckets of [`BUCKET_SECONDS`]), so it lives at most two buckets
//! longer than needed and a busy server grants one lease per bucket, not one per write. The
//! lease id is derived from the prefix and the bucket, so every replica names the same lease;
//! whoever grants it first wins and the others get "already exists".

use crate::config::state_store::EtcdConfig;
use crate::store::Store;

pub const BUCKET_SECONDS: u64 = 300;

pub fn code(cfg: &EtcdConfig, jti: &str) -> String {
    format!("{}code/{jti}", cfg.prefix)
}

/// The current generation of a refresh-token family (or `revoked`).
pub fn generation(cfg: &EtcdConfig, family: &str) -> String {
    format!("{}rt/{family}/gen", cfg.prefix)
}

/// `<jti> <exp>` of the family's live access token.
pub fn access(cfg: &EtcdConfig, family: &str) -> String {
    format!("{}rt/{family}/at", cfg.prefix)
}

/// Everything the revocation snapshot copies lives under this.
pub fn revoked(cfg: &EtcdConfig) -> String {
    format!("{}revoked/", cfg.prefix)
}

pub fn revoked_access(cfg: &EtcdConfig, jti: &str) -> String {
    format!("{}at/{jti}", revoked(cfg))
}

pub fn revoked_family(cfg: &EtcdConfig, family: &str) -> String {
    format!("{}rt/{family}", revoked(cfg))
}

/// The lease (id, end as unix seconds) for a key that must live until `exp`.
pub fn lease_for(cfg: &EtcdConfig, exp: u64) -> (i64, u64) {
    let bucket = exp / BUCKET_SECONDS + 2;
    let digest = crate::secret_hash::sha256(cfg.prefix.as_bytes());
    let tag = u64::from(u32::from_be_bytes([0, digest[0], digest[1], digest[2]]) & 0x3f_ffff);
    let id = (tag << 32) | (bucket & 0xffff_ffff);
    (
        i64::try_from(id).unwrap_or(1).max(1),
        bucket * BUCKET_SECONDS,
    )
}

const LOCAL: &str = "mcp-oauth:etcd";

fn lease_key(id: i64) -> String {
    format!("{LOCAL}:lease:{id}")
}

pub fn lease_known(store: &dyn Store, id: i64) -> bool {
    store.get(&lease_key(id)).is_some()
}

pub fn remember_lease(store: &mut dyn Store, id: i64) {
    let _ = store.set(&lease_key(id), b"1", None);
}

pub fn forget_lease(store: &mut dyn Store, id: i64) {
    let _ = store.set(&lease_key(id), b"", None);
}

const AUTH_TOKEN: &str = "mcp-oauth:etcd:auth-token";

pub fn auth_token(store: &dyn Store) -> Option<String> {
    store
        .get(AUTH_TOKEN)
        .and_then(|(v, _)| String::from_utf8(v).ok())
}

pub fn set_auth_token(store: &mut dyn Store, token: &str) {
    let _ = store.set(AUTH_TOKEN, token.as_bytes(), None);
}

pub fn forget_auth_token(store: &mut dyn Store) {
    let _ = store.set(AUTH_TOKEN, b"", None);
}
