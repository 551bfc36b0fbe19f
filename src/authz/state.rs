//! What the authorization server must remember between requests, kept in the host's store
//! (Envoy shared data): codes already redeemed, the current generation of each refresh-token
//! family, revoked access tokens, and rate-limit windows. Everything else is sealed into the
//! tokens themselves.

use crate::store::{update, Store, StoreError};

const PREFIX: &str = "mcp-oauth";
/// Redeemed codes are spread over this many keys, each updated with compare-and-swap.
pub const CODE_SHARDS: u32 = 16;
/// The first line of a code shard; shards are created at start so that every later write is a
/// compare-and-swap on an existing key (Envoy cannot create a key conditionally).
pub const SHARD_HEADER: &[u8] = b"#\n";

pub fn code_shard_key(index: u32) -> String {
    format!("{PREFIX}:codes:{index}")
}

fn shard_of(jti: &str) -> u32 {
    let digest = crate::secret_hash::sha256(jti.as_bytes());
    u32::from(digest[0]) % CODE_SHARDS
}

/// Records that the code `jti` was redeemed. `Ok(false)` if it already was.
pub fn redeem_code_once(
    store: &mut dyn Store,
    jti: &str,
    expires_at: u64,
    now: u64,
) -> Result<bool, StoreError> {
    let key = code_shard_key(shard_of(jti));
    update(store, &key, |current| {
        let text = current
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        let mut lines: Vec<&str> = Vec::new();
        for line in text.lines().skip_while(|l| l.starts_with('#')) {
            let mut parts = line.split(' ');
            let (Some(id), Some(exp)) = (
                parts.next(),
                parts.next().and_then(|e| e.parse::<u64>().ok()),
            ) else {
                continue;
            };
            if id == jti {
                return (None, false);
            }
            if exp >= now {
                lines.push(line);
            }
        }
        let entry = format!("{jti} {expires_at}");
        lines.push(&entry);
        let mut value = SHARD_HEADER.to_vec();
        value.extend(lines.join("\n").into_bytes());
        (Some(value), true)
    })
}

fn family_key(family: &str) -> String {
    format!("{PREFIX}:rt:{family}")
}

/// Result of presenting a refresh token of generation `generation`.
#[derive(Debug, PartialEq, Eq)]
pub enum Rotation {
    /// The token was current; the family moved on to the next generation.
    Rotated,
    /// An older generation came back: the family is now revoked (RFC 9700 §4.14.2).
    Reused,
    Revoked,
}

/// A family record: `<generation|revoked> <expiry> <id of the last access token issued>`.
/// The access token id lets a revocation of the grant stop its live access token too.
fn family_value(state: &str, expires_at: u64, access_jti: &str) -> Vec<u8> {
    format!("{state} {expires_at} {access_jti}").into_bytes()
}

fn last_access_jti(value: &[u8]) -> Option<String> {
    String::from_utf8_lossy(value)
        .split(' ')
        .nth(2)
        .map(str::to_string)
}

pub fn start_family(
    store: &mut dyn Store,
    family: &str,
    expires_at: u64,
    access_jti: &str,
) -> Result<(), StoreError> {
    store.set(
        &family_key(family),
        &family_value("0", expires_at, access_jti),
        None,
    )
}

/// Moves the family past `generation`, recording `access_jti` as its live access token; on
/// reuse, revokes the family and that live access token (until `access_expires_at`).
pub fn rotate_family(
    store: &mut dyn Store,
    family: &str,
    generation: u64,
    expires_at: u64,
    access_jti: &str,
    access_expires_at: u64,
) -> Result<Rotation, StoreError> {
    // No grant is rotated 2^64 times; refusing the last generation keeps the count from
    // overflowing (a panic with overflow checks, a silent wrap to 0 without).
    let Some(next_generation) = generation.checked_add(1) else {
        return Ok(Rotation::Revoked);
    };
    let mut previous_access = None;
    let rotation = update(store, &family_key(family), |current| {
        let text = current.map(|v| String::from_utf8_lossy(v).into_owned());
        let next = family_value(&next_generation.to_string(), expires_at, access_jti);
        previous_access = current.and_then(last_access_jti);
        match text.as_deref().and_then(|t| t.split(' ').next()) {
            Some("revoked") => (None, Rotation::Revoked),
            Some(current) => match current.parse::<u64>() {
                Ok(current) if current > generation => {
                    let revoked = family_value(
                        "revoked",
                        expires_at,
                        previous_access.as_deref().unwrap_or("-"),
                    );
                    (Some(revoked), Rotation::Reused)
                }
                _ => (Some(next), Rotation::Rotated),
            },
            // Unknown family: this Envoy restarted since it was issued; the sealed token is
            // genuine, so accept it and start tracking from here.
            None => (Some(next), Rotation::Rotated),
        }
    })?;
    if rotation == Rotation::Reused {
        if let Some(jti) = previous_access.filter(|j| j != "-") {
            revoke_access_token(store, &jti, access_expires_at)?;
        }
    }
    Ok(rotation)
}

/// Revokes the grant and its live access token (kept revoked until `access_expires_at`).
pub fn revoke_family(
    store: &mut dyn Store,
    family: &str,
    expires_at: u64,
    access_expires_at: u64,
) -> Result<(), StoreError> {
    let key = family_key(family);
    let previous = store.get(&key).and_then(|(v, _)| last_access_jti(&v));
    store.set(
        &key,
        &family_value("revoked", expires_at, previous.as_deref().unwrap_or("-")),
        None,
    )?;
    if let Some(jti) = previous.filter(|j| j != "-") {
        revoke_access_token(store, &jti, access_expires_at)?;
    }
    Ok(())
}

pub fn family_revoked(store: &dyn Store, family: &str) -> bool {
    store
        .get(&family_key(family))
        .is_some_and(|(v, _)| v.starts_with(b"revoked"))
}

fn revoked_token_key(jti: &str) -> String {
    format!("{PREFIX}:at-revoked:{jti}")
}

pub fn revoke_access_token(
    store: &mut dyn Store,
    jti: &str,
    expires_at: u64,
) -> Result<(), StoreError> {
    store.set(
        &revoked_token_key(jti),
        expires_at.to_string().as_bytes(),
        None,
    )
}

pub fn access_token_revoked(store: &dyn Store, jti: &str) -> bool {
    store.get(&revoked_token_key(jti)).is_some()
}

/// Rate-limit counters live in a fixed number of buckets per kind, so a flood of new
/// addresses or client ids cannot grow the store without bound. Subjects that share a bucket
/// share its budget; with 65536 buckets per kind that is rare.
fn rate_bucket(subject: &str) -> String {
    let (kind, id) = subject.split_once(':').unwrap_or(("rl", subject));
    let digest = crate::secret_hash::sha256(id.as_bytes());
    format!("{kind}:{:04x}", u16::from_be_bytes([digest[0], digest[1]]))
}

/// Counts one event in the current minute for `subject` (`kind:id`); `Err(seconds)` when over `limit`,
/// with the seconds until the window ends. Approximate under races (a lost increment at most
/// when the window starts), which is fine for abuse protection.
pub fn rate_limit(store: &mut dyn Store, subject: &str, limit: u64, now: u64) -> Result<(), u64> {
    if limit == 0 {
        return Ok(());
    }
    let window = now / 60;
    let key = format!("{PREFIX}:rl:{}", rate_bucket(subject));
    let result = update(store, &key, |current| {
        let text = current
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        let mut parts = text.split(' ');
        let (w, count) = (
            parts.next().and_then(|w| w.parse::<u64>().ok()),
            parts
                .next()
                .and_then(|c| c.parse::<u64>().ok())
                .unwrap_or(0),
        );
        let count = if w == Some(window) { count } else { 0 };
        if count >= limit {
            return (None, false);
        }
        (Some(format!("{window} {}", count + 1).into_bytes()), true)
    });
    match result {
        Ok(false) => Err(60 - now % 60),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[test]
    fn a_code_is_redeemed_once() {
        let mut s = MemoryStore::default();
        assert_eq!(redeem_code_once(&mut s, "c1", 160, 100), Ok(true));
        assert_eq!(redeem_code_once(&mut s, "c1", 160, 101), Ok(false));
        assert_eq!(redeem_code_once(&mut s, "c2", 160, 101), Ok(true));
    }

    #[test]
    fn expired_codes_are_pruned_from_their_shard() {
        let mut s = MemoryStore::default();
        for i in 0..200 {
            redeem_code_once(&mut s, &format!("c{i}"), 10, 0).unwrap();
        }
        redeem_code_once(&mut s, "late", 100, 50).unwrap();
        let total: usize = (0..CODE_SHARDS)
            .filter_map(|i| s.get(&code_shard_key(i)))
            .map(|(v, _)| {
                String::from_utf8(v)
                    .unwrap()
                    .lines()
                    .filter(|l| !l.starts_with('#'))
                    .count()
            })
            .sum();
        assert!(total < 200, "{total}");
    }

    #[test]
    fn refresh_reuse_revokes_the_family() {
        let mut s = MemoryStore::default();
        start_family(&mut s, "f", 1000, "at0").unwrap();
        assert_eq!(
            rotate_family(&mut s, "f", 0, 1000, "at1", 50),
            Ok(Rotation::Rotated)
        );
        assert_eq!(
            rotate_family(&mut s, "f", 1, 1000, "at2", 50),
            Ok(Rotation::Rotated)
        );
        assert!(!access_token_revoked(&s, "at2"));
        assert_eq!(
            rotate_family(&mut s, "f", 0, 1000, "at3", 50),
            Ok(Rotation::Reused)
        );
        assert_eq!(
            rotate_family(&mut s, "f", 2, 1000, "at4", 50),
            Ok(Rotation::Revoked)
        );
        assert!(family_revoked(&s, "f"));
        assert!(
            access_token_revoked(&s, "at2"),
            "the live access token dies with the grant"
        );
    }

    /// Regression (input of the `token` fuzz target): generation u64::MAX overflowed.
    #[test]
    fn the_last_generation_is_refused_not_overflowed() {
        let mut s = MemoryStore::default();
        assert_eq!(
            rotate_family(&mut s, "f", u64::MAX, 1000, "a", 50),
            Ok(Rotation::Revoked)
        );
        start_family(&mut s, "g", 1000, "at0").unwrap();
        assert_eq!(
            rotate_family(&mut s, "g", u64::MAX, 1000, "b", 50),
            Ok(Rotation::Revoked)
        );
        assert!(!access_token_revoked(&s, "at0"));
    }

    #[test]
    fn unknown_family_is_accepted_after_a_restart() {
        let mut s = MemoryStore::default();
        assert_eq!(
            rotate_family(&mut s, "g", 5, 1000, "a", 50),
            Ok(Rotation::Rotated)
        );
        assert_eq!(
            rotate_family(&mut s, "g", 5, 1000, "b", 50),
            Ok(Rotation::Reused)
        );
    }

    #[test]
    fn revoking_a_family_revokes_its_live_access_token() {
        let mut s = MemoryStore::default();
        start_family(&mut s, "f", 1000, "at0").unwrap();
        revoke_family(&mut s, "f", 1000, 50).unwrap();
        assert!(family_revoked(&s, "f"));
        assert!(access_token_revoked(&s, "at0"));
    }

    #[test]
    fn rate_limit_counts_per_minute() {
        let mut s = MemoryStore::default();
        for _ in 0..3 {
            assert_eq!(rate_limit(&mut s, "c", 3, 120), Ok(()));
        }
        assert_eq!(rate_limit(&mut s, "c", 3, 130), Err(50));
        assert_eq!(rate_limit(&mut s, "c", 3, 180), Ok(()));
    }

    #[test]
    fn revoked_access_tokens_are_remembered() {
        let mut s = MemoryStore::default();
        assert!(!access_token_revoked(&s, "j"));
        revoke_access_token(&mut s, "j", 10).unwrap();
        assert!(access_token_revoked(&s, "j"));
    }
}
