//! One JWKS fetch for all of Envoy's workers. Each worker runs its own Wasm VM, and each VM
//! needs the keys; without sharing, every VM fetched the document itself, at start and at
//! every refresh. Now the VM that fetches publishes the document in the store (proxy-wasm
//! shared data), and the others adopt it. A lease in the store says who is fetching, so the
//! others wait for its answer instead of asking too. After a failure the lease is free
//! again, and each VM retries on its own schedule, as without sharing.

use crate::store::{Store, StoreError};

/// A JWKS document as one VM fetched it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedDoc {
    /// When it was fetched (Unix ms).
    pub fetched_ms: u64,
    pub body: Vec<u8>,
}

/// What a VM whose keys are due should do.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// Another VM fetched a newer document: use it.
    Adopt(SharedDoc),
    /// Fetch it (this VM now holds the lease).
    Fetch,
    /// Another VM is fetching (or backing off after a failure): look again shortly.
    Wait,
}

fn doc_key(uri: &str) -> String {
    format!("mcp-oauth:jwks:{uri}")
}

fn lease_key(uri: &str) -> String {
    format!("mcp-oauth:jwks-lease:{uri}")
}

/// Creates the lease if it does not exist, so that taking it is always a compare-and-swap on
/// an existing value (Envoy's shared data has no create-if-absent).
pub fn prepare(store: &mut dyn Store, uri: &str) {
    if store.get(&lease_key(uri)).is_none() {
        let _ = store.set(&lease_key(uri), b"0", None);
    }
}

/// The document last published for `uri`.
pub fn read(store: &dyn Store, uri: &str) -> Option<SharedDoc> {
    let (value, _) = store.get(&doc_key(uri))?;
    let split = value.iter().position(|&b| b == b'\n')?;
    let (head, body) = value.split_at(split);
    let fetched_ms = std::str::from_utf8(head).ok()?.parse().ok()?;
    Some(SharedDoc {
        fetched_ms,
        body: body.get(1..).unwrap_or_default().to_vec(),
    })
}

/// Decides for a VM whose keys for `uri` are due. `held_ms` is when the document this VM
/// uses was fetched, or when a token with an unknown key asked for a newer one: only a
/// document fetched after it is adopted (`None`: the VM has no keys yet; any document does).
/// A fetch holds the lease for `hold_ms` at most.
pub fn plan(
    store: &mut dyn Store,
    uri: &str,
    now_ms: u64,
    held_ms: Option<u64>,
    hold_ms: u64,
) -> Plan {
    if let Some(doc) = read(store, uri) {
        if held_ms.is_none_or(|held| doc.fetched_ms > held) {
            return Plan::Adopt(doc);
        }
    }
    // A VM without keys fetches at once: a worker that took the lease and went away (Envoy
    // starts and drops VMs while it loads) must not hold up the first requests.
    if held_ms.is_none() {
        return Plan::Fetch;
    }
    let key = lease_key(uri);
    let lease = store.get(&key);
    if lease
        .as_ref()
        .is_some_and(|(value, _)| held_until(value).is_some_and(|until| until > now_ms))
    {
        return Plan::Wait;
    }
    let taken = format!("F{}", now_ms.saturating_add(hold_ms));
    match store.set(&key, taken.as_bytes(), lease.map(|(_, cas)| cas)) {
        Ok(()) => Plan::Fetch,
        Err(StoreError::CasMismatch) => Plan::Wait,
        // Without a usable store, every VM fetches for itself, as before sharing.
        Err(StoreError::Unavailable) => Plan::Fetch,
    }
}

/// After a good fetch: the document for the other VMs, and the lease free again.
pub fn publish(store: &mut dyn Store, uri: &str, fetched_ms: u64, body: &[u8]) {
    let mut value = format!("{fetched_ms}\n").into_bytes();
    value.extend_from_slice(body);
    if store.set(&doc_key(uri), &value, None).is_err() {
        log::warn!("mcp-oauth: cannot share the JWKS of {uri} with the other workers");
    }
    let _ = store.set(&lease_key(uri), b"0", None);
}

/// The lease given back unused (the fetch could not even be sent).
pub fn release(store: &mut dyn Store, uri: &str) {
    let _ = store.set(&lease_key(uri), b"0", None);
}

/// Until when a lease is held: `F<ms>` while a worker fetches, `0` when free.
fn held_until(value: &[u8]) -> Option<u64> {
    let digits = value.strip_prefix(b"F").unwrap_or(value);
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    const URI: &str = "https://idp.example/jwks.json";

    #[test]
    fn one_vm_fetches_the_others_wait_then_adopt() {
        let mut store = MemoryStore::default();
        prepare(&mut store, URI);
        publish(&mut store, URI, 500, br#"{"keys":[]}"#);
        assert_eq!(plan(&mut store, URI, 1000, Some(500), 5000), Plan::Fetch);
        // A second and third VM find the lease taken.
        assert_eq!(plan(&mut store, URI, 1001, Some(500), 5000), Plan::Wait);
        assert_eq!(plan(&mut store, URI, 1002, Some(500), 5000), Plan::Wait);
        publish(&mut store, URI, 1100, br#"{"keys":[]}"#);
        let doc = SharedDoc {
            fetched_ms: 1100,
            body: br#"{"keys":[]}"#.to_vec(),
        };
        assert_eq!(
            plan(&mut store, URI, 1150, None, 5000),
            Plan::Adopt(doc.clone())
        );
        assert_eq!(read(&store, URI), Some(doc));
        // At the next refresh, the document held is not newer: one VM fetches again.
        assert_eq!(plan(&mut store, URI, 9000, Some(1100), 5000), Plan::Fetch);
        assert_eq!(plan(&mut store, URI, 9001, Some(1100), 5000), Plan::Wait);
    }

    #[test]
    fn a_lost_fetch_frees_the_lease_when_it_runs_out() {
        let mut store = MemoryStore::default();
        prepare(&mut store, URI);
        assert_eq!(plan(&mut store, URI, 0, Some(0), 3500), Plan::Fetch);
        assert_eq!(plan(&mut store, URI, 3499, Some(0), 3500), Plan::Wait);
        assert_eq!(plan(&mut store, URI, 3500, Some(0), 3500), Plan::Fetch);
        // Given back unused: free at once.
        release(&mut store, URI);
        assert_eq!(plan(&mut store, URI, 3501, Some(0), 3500), Plan::Fetch);
    }

    /// Envoy starts and drops VMs while it loads: one may take the lease and vanish, so a VM
    /// without keys never waits for another.
    #[test]
    fn a_vm_without_keys_fetches_even_while_another_holds_the_lease() {
        let mut store = MemoryStore::default();
        assert_eq!(plan(&mut store, URI, 0, Some(0), 3500), Plan::Fetch);
        assert_eq!(plan(&mut store, URI, 1, None, 3500), Plan::Fetch);
        assert_eq!(plan(&mut store, URI, 1, Some(0), 3500), Plan::Wait);
    }

    #[test]
    fn a_garbled_entry_is_ignored() {
        let mut store = MemoryStore::default();
        store.set(&doc_key(URI), b"soon\n{}", None).unwrap();
        store.set(&lease_key(URI), b"later", None).unwrap();
        assert_eq!(read(&store, URI), None);
        assert_eq!(plan(&mut store, URI, 5, Some(0), 100), Plan::Fetch);
    }
}
