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

/// How far apart two replicas' clocks may be. Only used to compare a refresh token's issue time
/// with a rotation this Envoy recorded: within this margin, no reuse is inferred.
pub const CLOCK_SKEW_SECONDS: u64 = 5;

/// Result of presenting a refresh token of generation `generation`.
#[derive(Debug, PartialEq, Eq)]
pub enum Rotation {
    /// The token was current; the family moved on to the next generation.
    Rotated,
    /// An older generation came back: the family is now revoked (RFC 9700 §4.14.2).
    Reused,
    Revoked,
}

/// The refresh token being presented: its family, its generation, and when it was issued
/// (`issued_at` 0: a token from before refresh tokens carried their issue time).
#[derive(Debug, Clone, Copy)]
pub struct Presented<'a> {
    pub family: &'a str,
    pub generation: u64,
    pub issued_at: u64,
}

/// What a rotation hands out: the next refresh token (issued at `now`, valid until
/// `expires_at`) and an access token (`access_jti`, valid until `access_expires_at`).
#[derive(Debug, Clone, Copy)]
pub struct Issued<'a> {
    pub now: u64,
    pub expires_at: u64,
    pub access_jti: &'a str,
    pub access_expires_at: u64,
}

/// A family record: `<generation|revoked> <expiry> <id of the last access token issued>
/// <issue time of the current generation's refresh token>`. The access token id lets a
/// revocation of the grant stop its live access token too; the issue time (0: unknown, a
/// record written before it was kept) tells the token this Envoy issued for the current
/// generation from any other token of the family.
struct Family {
    /// `None`: revoked.
    generation: Option<u64>,
    expires_at: u64,
    access_jti: String,
    issued_at: u64,
}

impl Family {
    fn parse(value: &[u8]) -> Option<Family> {
        let text = String::from_utf8_lossy(value);
        let mut parts = text.split(' ');
        let generation = match parts.next()? {
            "revoked" => None,
            n => Some(n.parse().ok()?),
        };
        let expires_at = parts.next().and_then(|e| e.parse().ok()).unwrap_or(0);
        let access_jti = parts.next().unwrap_or("-").to_string();
        let issued_at = parts.next().and_then(|t| t.parse().ok()).unwrap_or(0);
        Some(Family {
            generation,
            expires_at,
            access_jti,
            issued_at,
        })
    }

    fn encode(&self) -> Vec<u8> {
        let state = self
            .generation
            .map_or_else(|| "revoked".to_string(), |g| g.to_string());
        format!(
            "{state} {} {} {}",
            self.expires_at, self.access_jti, self.issued_at
        )
        .into_bytes()
    }

    fn revoked(&self) -> Family {
        Family {
            generation: None,
            expires_at: self.expires_at,
            access_jti: self.access_jti.clone(),
            issued_at: self.issued_at,
        }
    }

    /// Whether `presented` may rotate this family. Besides the plain rule (an older generation
    /// is reuse), two cases prove that a token of the family was used twice even though this
    /// Envoy never saw the first use (it restarted, or the first use went to another replica):
    /// - the current generation, but not the token this Envoy issued for it: two tokens of one
    ///   generation exist, so the generation before was redeemed twice;
    /// - a later generation, issued before this Envoy issued the current one: the generation
    ///   before the current one had already been redeemed elsewhere when it was redeemed here.
    ///
    /// A later generation issued after that is a rotation at another replica, and is accepted.
    fn accepts(&self, presented: &Presented) -> Rotation {
        let Some(current) = self.generation else {
            return Rotation::Revoked;
        };
        let known = presented.issued_at != 0 && self.issued_at != 0;
        let fork = if presented.generation < current {
            true
        } else if presented.generation == current {
            known && presented.issued_at != self.issued_at
        } else {
            known && presented.issued_at.saturating_add(CLOCK_SKEW_SECONDS) < self.issued_at
        };
        if fork {
            Rotation::Reused
        } else {
            Rotation::Rotated
        }
    }
}

pub fn start_family(
    store: &mut dyn Store,
    family: &str,
    expires_at: u64,
    access_jti: &str,
    now: u64,
) -> Result<(), StoreError> {
    let record = Family {
        generation: Some(0),
        expires_at,
        access_jti: access_jti.to_string(),
        issued_at: now,
    };
    store.set(&family_key(family), &record.encode(), None)
}

/// Moves the family past the presented generation, recording the access token and the time of
/// the refresh token issued now; on reuse, revokes the family and its live access token (until
/// `issued.access_expires_at`).
///
/// A family this Envoy has no record of (it restarted since the family was last used here, or
/// the family was used at another replica) is adopted: the presented token is accepted, since
/// its seal proves it genuine, and tracked from here. If it was a superseded token, the token
/// that superseded it is refused as reuse when it comes back (see [`Family::accepts`]), which
/// revokes the grant, including the access token the adopted token got.
pub fn rotate_family(
    store: &mut dyn Store,
    presented: &Presented,
    issued: &Issued,
) -> Result<Rotation, StoreError> {
    // No grant is rotated 2^64 times; refusing the last generation keeps the count from
    // overflowing (a panic with overflow checks, a silent wrap to 0 without).
    let Some(next_generation) = presented.generation.checked_add(1) else {
        return Ok(Rotation::Revoked);
    };
    let mut previous_access = None;
    let rotation = update(store, &family_key(presented.family), |current| {
        let record = current.and_then(Family::parse);
        previous_access = record.as_ref().map(|r| r.access_jti.clone());
        let verdict = record
            .as_ref()
            .map_or(Rotation::Rotated, |r| r.accepts(presented));
        match (verdict, &record) {
            (Rotation::Rotated, _) => {
                let next = Family {
                    generation: Some(next_generation),
                    expires_at: issued.expires_at,
                    access_jti: issued.access_jti.to_string(),
                    issued_at: issued.now,
                };
                (Some(next.encode()), Rotation::Rotated)
            }
            (Rotation::Reused, Some(r)) => (Some(r.revoked().encode()), Rotation::Reused),
            (verdict, _) => (None, verdict),
        }
    })?;
    if rotation == Rotation::Reused {
        if let Some(jti) = previous_access.filter(|j| j != "-") {
            revoke_access_token(store, &jti, issued.access_expires_at)?;
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
    let record = store
        .get(&key)
        .and_then(|(v, _)| Family::parse(&v))
        .map_or_else(
            || Family {
                generation: None,
                expires_at,
                access_jti: "-".to_string(),
                issued_at: 0,
            },
            |r| Family {
                expires_at,
                ..r.revoked()
            },
        );
    store.set(&key, &record.encode(), None)?;
    if record.access_jti != "-" {
        revoke_access_token(store, &record.access_jti, access_expires_at)?;
    }
    Ok(())
}

/// Marks the family revoked in this store only (the revocation itself was recorded elsewhere:
/// etcd). Its live access token is revoked separately.
pub fn mark_family_revoked(store: &mut dyn Store, family: &str, expires_at: u64) {
    let revoked = Family {
        generation: None,
        expires_at,
        access_jti: "-".to_string(),
        issued_at: 0,
    };
    let _ = store.set(&family_key(family), &revoked.encode(), None);
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

    /// Presents generation `generation` of family `f`, issued at `issued_at`, at time `now`;
    /// the access token issued is `jti`.
    fn present(
        s: &mut MemoryStore,
        generation: u64,
        issued_at: u64,
        now: u64,
        jti: &str,
    ) -> Rotation {
        let presented = Presented {
            family: "f",
            generation,
            issued_at,
        };
        let issued = Issued {
            now,
            expires_at: now + 1000,
            access_jti: jti,
            access_expires_at: now + 50,
        };
        rotate_family(s, &presented, &issued).unwrap()
    }

    #[test]
    fn refresh_reuse_revokes_the_family() {
        let mut s = MemoryStore::default();
        start_family(&mut s, "f", 1000, "at0", 100).unwrap();
        assert_eq!(present(&mut s, 0, 100, 110, "at1"), Rotation::Rotated);
        assert_eq!(present(&mut s, 1, 110, 120, "at2"), Rotation::Rotated);
        assert!(!access_token_revoked(&s, "at2"));
        assert_eq!(present(&mut s, 0, 100, 130, "at3"), Rotation::Reused);
        assert_eq!(present(&mut s, 2, 120, 140, "at4"), Rotation::Revoked);
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
        assert_eq!(present(&mut s, u64::MAX, 0, 100, "a"), Rotation::Revoked);
        start_family(&mut s, "f", 1000, "at0", 100).unwrap();
        assert_eq!(present(&mut s, u64::MAX, 100, 101, "b"), Rotation::Revoked);
        assert!(!access_token_revoked(&s, "at0"));
    }

    #[test]
    fn after_a_restart_the_current_token_of_a_family_is_adopted() {
        // Before the restart: generations 0 → 1 → 2, the client holds generation 2 (issued at 120).
        let mut s = MemoryStore::default();
        assert_eq!(present(&mut s, 2, 120, 200, "a"), Rotation::Rotated);
        assert_eq!(present(&mut s, 3, 200, 210, "b"), Rotation::Rotated);
        assert!(!family_revoked(&s, "f"));
    }

    #[test]
    fn after_a_restart_a_superseded_token_is_caught_when_its_successor_returns() {
        // Generation 1 (issued at 110) was rotated to generation 2 (issued at 120) before the
        // restart. A thief presents generation 1 after the restart: nothing here says it is
        // stale, so it is adopted...
        let mut s = MemoryStore::default();
        assert_eq!(present(&mut s, 1, 110, 200, "thief"), Rotation::Rotated);
        assert!(!access_token_revoked(&s, "thief"));
        // ...until the client's generation 2 comes back: a second token of the current
        // generation, so generation 1 was redeemed twice. The grant and the thief's access
        // token are revoked.
        assert_eq!(present(&mut s, 2, 120, 210, "client"), Rotation::Reused);
        assert!(family_revoked(&s, "f"));
        assert!(access_token_revoked(&s, "thief"));
        assert_eq!(present(&mut s, 2, 200, 220, "thief"), Rotation::Revoked);
    }

    #[test]
    fn after_a_restart_a_later_generation_issued_before_the_adoption_is_reuse() {
        // The thief's generation 1 is adopted at 200; the client's generation 3 was issued at
        // 150, before that: generation 1 had been redeemed before, so this is reuse.
        let mut s = MemoryStore::default();
        assert_eq!(present(&mut s, 1, 110, 200, "thief"), Rotation::Rotated);
        assert_eq!(present(&mut s, 3, 150, 210, "client"), Rotation::Reused);
        assert!(access_token_revoked(&s, "thief"));
    }

    #[test]
    fn a_later_generation_issued_after_our_rotation_is_a_rotation_elsewhere() {
        // Replicas: generation 1 was issued here at 200; the client rotated it at another
        // replica (generation 2, issued at 230) and comes back with generation 2.
        let mut s = MemoryStore::default();
        start_family(&mut s, "f", 1000, "at0", 100).unwrap();
        assert_eq!(present(&mut s, 0, 100, 200, "a"), Rotation::Rotated);
        assert_eq!(present(&mut s, 2, 230, 240, "b"), Rotation::Rotated);
        // Generation 3 was issued here at 240; generation 4 comes from a replica whose clock is
        // a little behind: within the allowed skew, not reuse.
        assert_eq!(
            present(&mut s, 4, 240 - CLOCK_SKEW_SECONDS, 250, "c"),
            Rotation::Rotated
        );
        assert_eq!(
            present(&mut s, 5, 250, 260, "d"),
            Rotation::Rotated,
            "our own token of the current generation"
        );
        assert!(!family_revoked(&s, "f"));
    }

    #[test]
    fn records_and_tokens_without_issue_times_keep_the_generation_rule() {
        // A record written before issue times were kept, and a token issued before they were
        // sealed into refresh tokens: only generations are compared.
        let mut s = MemoryStore::default();
        s.set("mcp-oauth:rt:f", b"3 1000 at3", None).unwrap();
        assert_eq!(present(&mut s, 3, 0, 200, "a"), Rotation::Rotated);
        assert_eq!(
            present(&mut s, 4, 0, 210, "b"),
            Rotation::Rotated,
            "a token without iat is not told apart from ours"
        );
        assert_eq!(present(&mut s, 3, 0, 220, "c"), Rotation::Reused);
        assert!(access_token_revoked(&s, "b"));
        // A record without the fourth field, with a token that has one.
        let mut s = MemoryStore::default();
        s.set("mcp-oauth:rt:f", b"3 1000 at3", None).unwrap();
        assert_eq!(present(&mut s, 3, 150, 200, "a"), Rotation::Rotated);
    }

    #[test]
    fn revoking_a_family_revokes_its_live_access_token() {
        let mut s = MemoryStore::default();
        start_family(&mut s, "f", 1000, "at0", 100).unwrap();
        revoke_family(&mut s, "f", 1000, 50).unwrap();
        assert!(family_revoked(&s, "f"));
        assert!(access_token_revoked(&s, "at0"));
        assert_eq!(present(&mut s, 0, 100, 110, "a"), Rotation::Revoked);
        // An unknown family (revoked after a restart) is recorded as revoked too.
        let mut s = MemoryStore::default();
        revoke_family(&mut s, "f", 1000, 50).unwrap();
        assert_eq!(present(&mut s, 7, 100, 110, "a"), Rotation::Revoked);
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
