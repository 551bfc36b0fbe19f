//! The revocation feed over etcd's gRPC Watch (`etcdserverpb.Watch/Watch`, a bidirectional
//! stream): the request that opens a watch on the `revoked/` prefix, and the reading of the
//! `WatchResponse` messages. Only these two messages are needed, so they are written and read
//! here by hand (protobuf wire format) instead of pulling in a protobuf crate.
//!
//! The watch only speeds revocations up (milliseconds instead of the poll interval); the poll
//! goes on beside it and stays the source of the snapshot's revision and health.

use super::api::{prefix_end, KeyValue};
use super::keys;
use crate::config::state_store::EtcdConfig;

const VARINT: u64 = 0;
const LEN: u64 = 2;

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn field_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    varint(out, (field << 3) | LEN);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn field_varint(out: &mut Vec<u8>, field: u64, value: u64) {
    varint(out, (field << 3) | VARINT);
    varint(out, value);
}

/// `WatchRequest { create_request: WatchCreateRequest { key, range_end, start_revision,
/// filters: [NODELETE] } }`: every put under `revoked/` from `start_revision` on.
pub fn create_request(cfg: &EtcdConfig, start_revision: i64) -> Vec<u8> {
    let prefix = keys::revoked(cfg);
    let mut create = Vec::new();
    field_bytes(&mut create, 1, prefix.as_bytes());
    field_bytes(&mut create, 2, &prefix_end(&prefix));
    if start_revision > 0 {
        field_varint(&mut create, 3, start_revision as u64);
    }
    field_varint(&mut create, 5, 1); // filters: NODELETE
    let mut request = Vec::new();
    field_bytes(&mut request, 1, &create);
    request
}

/// One protobuf field: its number and its value (a varint, or the bytes of a length-delimited
/// field). Fixed-width fields are skipped over.
enum Value<'a> {
    Int(u64),
    Bytes(&'a [u8]),
    Other,
}

struct Fields<'a> {
    rest: &'a [u8],
}

fn read_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(value);
        }
    }
    None
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Value<'a>), ()>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let mut read = || -> Option<(u64, Value<'a>)> {
            let key = read_varint(&mut self.rest)?;
            let value = match key & 7 {
                0 => Value::Int(read_varint(&mut self.rest)?),
                1 => {
                    self.rest = self.rest.get(8..)?;
                    Value::Other
                }
                2 => {
                    let len = usize::try_from(read_varint(&mut self.rest)?).ok()?;
                    let bytes = self.rest.get(..len)?;
                    self.rest = self.rest.get(len..)?;
                    Value::Bytes(bytes)
                }
                5 => {
                    self.rest = self.rest.get(4..)?;
                    Value::Other
                }
                _ => return None,
            };
            Some((key >> 3, value))
        };
        match read() {
            Some(field) => Some(Ok(field)),
            None => {
                self.rest = &[];
                Some(Err(()))
            }
        }
    }
}

fn fields(bytes: &[u8]) -> Fields<'_> {
    Fields { rest: bytes }
}

/// What one `WatchResponse` says.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct WatchMessage {
    pub created: bool,
    /// The watch ended (compaction, or refused): open a new one.
    pub canceled: bool,
    pub compact_revision: i64,
    /// Keys put (deletes are filtered out by etcd).
    pub events: Vec<KeyValue>,
}

fn key_value(bytes: &[u8]) -> Result<KeyValue, ()> {
    let mut kv = KeyValue {
        key: String::new(),
        value: String::new(),
        mod_revision: 0,
    };
    for field in fields(bytes) {
        match field? {
            (1, Value::Bytes(b)) => kv.key = String::from_utf8_lossy(b).into_owned(),
            (3, Value::Int(r)) => kv.mod_revision = r as i64,
            (5, Value::Bytes(b)) => kv.value = String::from_utf8_lossy(b).into_owned(),
            _ => {}
        }
    }
    Ok(kv)
}

/// Reads one `WatchResponse`; `None` if it is not well-formed protobuf.
pub fn parse(bytes: &[u8]) -> Option<WatchMessage> {
    read(bytes).ok()
}

fn read(bytes: &[u8]) -> Result<WatchMessage, ()> {
    let mut message = WatchMessage::default();
    for field in fields(bytes) {
        match field? {
            (3, Value::Int(v)) => message.created = v != 0,
            (4, Value::Int(v)) => message.canceled = v != 0,
            (5, Value::Int(v)) => message.compact_revision = v as i64,
            (11, Value::Bytes(event)) => {
                let mut put = true;
                let mut kv = None;
                for f in fields(event) {
                    match f? {
                        (1, Value::Int(kind)) => put = kind == 0,
                        (2, Value::Bytes(b)) => kv = Some(key_value(b)?),
                        _ => {}
                    }
                }
                if let (true, Some(kv)) = (put, kv) {
                    message.events.push(kv);
                }
            }
            _ => {}
        }
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> EtcdConfig {
        let raw: crate::config::state_store::RawStateStore =
            serde_json::from_value(serde_json::json!({"etcd": {"cluster": "e", "prefix": "/p/"}}))
                .unwrap();
        crate::config::state_store::build(raw, &|_| None).unwrap()
    }

    #[test]
    fn the_create_request_is_what_etcd_expects() {
        let bytes = create_request(&cfg(), 300);
        // WatchRequest.create_request (1, length-delimited) holding key, range_end, start_revision
        // (300 = ac 02) and filters [NODELETE].
        let mut inner = vec![0x0a, 11];
        inner.extend_from_slice(b"/p/revoked/");
        inner.extend([0x12, 11]);
        inner.extend_from_slice(b"/p/revoked0");
        inner.extend([0x18, 0xac, 0x02, 0x28, 0x01]);
        let mut expected = vec![0x0a, inner.len() as u8];
        expected.extend(inner);
        assert_eq!(bytes, expected);
    }

    #[test]
    fn reads_what_etcd_3_4_sent_in_envoy() {
        // Captured from Envoy 1.40 with etcd 3.4.23 (the probe in wasm-tests/fixtures/etcd-probe):
        // the "created" answer, then one put of probe/key = v1.
        let created = [
            0x0a, 0x18, 0x08, 0x91, 0xc6, 0x86, 0xd0, 0x85, 0xb8, 0xe6, 0xf3, 0x58, 0x10, 0x83,
            0xad, 0x90, 0x90, 0xe2, 0xc5, 0xaf, 0xdb, 0x5c, 0x18, 0x01, 0x20, 0x02, 0x18, 0x01,
        ];
        let m = parse(&created).unwrap();
        assert!(m.created);
        assert!(m.events.is_empty());
        let event = [
            0x0a, 0x18, 0x08, 0x91, 0xc6, 0x86, 0xd0, 0x85, 0xb8, 0xe6, 0xf3, 0x58, 0x10, 0x83,
            0xad, 0x90, 0x90, 0xe2, 0xc5, 0xaf, 0xdb, 0x5c, 0x18, 0x02, 0x20, 0x02, 0x5a, 0x17,
            0x12, 0x15, 0x0a, 0x09, 0x70, 0x72, 0x6f, 0x62, 0x65, 0x2f, 0x6b, 0x65, 0x79, 0x10,
            0x02, 0x18, 0x02, 0x20, 0x01, 0x2a, 0x02, 0x76, 0x31,
        ];
        let m = parse(&event).unwrap();
        assert!(!m.created && !m.canceled);
        assert_eq!(
            m.events,
            vec![KeyValue {
                key: "probe/key".into(),
                value: "v1".into(),
                mod_revision: 2
            }]
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [
            &[0x0a, 0xff][..],
            &[0x5a, 0x05, 0x12][..],
            &[0xff; 12][..],
            &[0x0b][..],
        ] {
            assert!(parse(bytes).is_none(), "{bytes:02x?}");
        }
        assert_eq!(parse(&[]), Some(WatchMessage::default()));
    }
}
