//! The grant writes that must hold across replicas, as etcd transactions continued across
//! calls: the token or revocation endpoint builds its answer, then hands it here with the
//! [`Work`] to record first. [`start`] gives the first call; the glue makes it and hands the
//! answer to [`resume`], which gives the next call or the answer to send. Nothing is sent
//! before etcd has said yes.
//!
//! Every write is idempotent, so a call whose answer was lost is simply made again: a code is
//! created with a random nonce (finding our own nonce means our earlier attempt won), and a
//! rotation records the new access token's id (finding it means the same).

use super::api::{self, Compare, Failure, Op, Txn, TxnResult};
use super::{call, keys, EtcdCall};
use crate::authz::context::json_error;
use crate::authz::state;
use crate::config::state_store::{EtcdConfig, GrantsWhenUnavailable};
use crate::http::Response;
use crate::store::Store;

/// A refresh-token family started by a code redemption (the family is named by the code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFamily {
    pub exp: u64,
    pub access_jti: String,
    pub access_exp: u64,
}

/// What must be recorded before the answer goes out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    /// Redeem the code `jti` once (create-if-absent); on success start its family.
    RedeemCode {
        jti: String,
        exp: u64,
        nonce: String,
        family: Option<NewFamily>,
    },
    /// Move `family` from `generation` to the next (compare-and-swap), recording the new
    /// access token; an older generation revokes the family.
    Rotate {
        family: String,
        generation: u64,
        /// When the presented refresh token was issued (for the shared-data fallback's
        /// restart-adoption checks).
        issued_at: u64,
        exp: u64,
        access_jti: String,
        access_exp: u64,
    },
    /// Revoke `family` and its live access token.
    RevokeFamily {
        family: String,
        exp: u64,
        access_exp: u64,
    },
    /// Revoke one access token until it would have expired.
    RevokeAccess { jti: String, exp: u64 },
}

/// Which call an answer belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    Lease(i64),
    Work,
}

/// A request's state between etcd calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    work: Work,
    /// The answer to send once the work is done.
    finish: Response,
    waiting: Waiting,
    failures: u8,
}

/// Calls that fail (or whose answer is lost) are made again, twice at most: a member that just
/// died (or an election under way) costs one failed call, and Envoy's health check takes it out
/// of the rotation within a few hundred milliseconds.
const MAX_FAILURES: u8 = 3;

#[derive(Debug)]
pub enum Next {
    Call(Box<EtcdCall>),
    Respond {
        response: Response,
        /// Why, for the log (no secrets).
        detail: Option<String>,
    },
}

impl Work {
    /// The expiry of every key this work writes (each needs the lease of its time bucket).
    fn expiries(&self) -> Vec<u64> {
        match self {
            Work::RedeemCode { exp, family, .. } => {
                let mut e = vec![*exp];
                e.extend(family.as_ref().map(|f| f.exp));
                e
            }
            Work::Rotate { exp, .. } | Work::RevokeFamily { exp, .. } => vec![*exp],
            Work::RevokeAccess { exp, .. } => vec![*exp],
        }
    }

    fn txn(&self, cfg: &EtcdConfig) -> Txn {
        let put = |key: String, value: String, exp: u64| Op::Put {
            key,
            value,
            lease: keys::lease_for(cfg, exp).0,
        };
        match self {
            Work::RedeemCode {
                jti,
                exp,
                nonce,
                family,
            } => {
                let code = keys::code(cfg, jti);
                let mut success = vec![put(code.clone(), nonce.clone(), *exp)];
                if let Some(f) = family {
                    success.push(put(keys::generation(cfg, jti), "0".into(), f.exp));
                    success.push(put(
                        keys::access(cfg, jti),
                        format!("{} {}", f.access_jti, f.access_exp),
                        f.exp,
                    ));
                }
                Txn {
                    compare: vec![Compare::Absent(code.clone())],
                    success,
                    failure: vec![Op::Get(code)],
                }
            }
            Work::Rotate {
                family,
                generation,
                exp,
                access_jti,
                access_exp,
                ..
            } => {
                let gen_key = keys::generation(cfg, family);
                let at_key = keys::access(cfg, family);
                let advance = vec![
                    put(
                        gen_key.clone(),
                        generation.saturating_add(1).to_string(),
                        *exp,
                    ),
                    put(at_key.clone(), format!("{access_jti} {access_exp}"), *exp),
                ];
                Txn {
                    compare: vec![Compare::ValueIs(gen_key.clone(), generation.to_string())],
                    success: advance.clone(),
                    // A family etcd does not know (its keys expired, or it began before etcd
                    // was configured) is genuine, since the token is sealed: track it from here.
                    failure: vec![Op::Txn(Txn {
                        compare: vec![Compare::Absent(gen_key.clone())],
                        success: advance,
                        failure: vec![Op::Get(gen_key), Op::Get(at_key)],
                    })],
                }
            }
            Work::RevokeFamily { family, exp, .. } => Txn {
                compare: vec![],
                success: vec![
                    put(keys::generation(cfg, family), "revoked".into(), *exp),
                    put(keys::revoked_family(cfg, family), exp.to_string(), *exp),
                    Op::Get(keys::access(cfg, family)),
                ],
                failure: vec![],
            },
            Work::RevokeAccess { jti, exp } => Txn {
                compare: vec![],
                success: vec![put(keys::revoked_access(cfg, jti), exp.to_string(), *exp)],
                failure: vec![],
            },
        }
    }
}

/// The first call for `work`; `finish` is sent once it is recorded.
pub fn start(
    cfg: &EtcdConfig,
    store: &mut dyn Store,
    work: Work,
    finish: Response,
    now: u64,
) -> Next {
    step(
        cfg,
        store,
        Pending {
            work,
            finish,
            waiting: Waiting::Work,
            failures: 0,
        },
        now,
    )
}

/// The next call: a lease this replica has not seen granted yet, else the work itself.
fn step(cfg: &EtcdConfig, store: &mut dyn Store, mut pending: Pending, now: u64) -> Next {
    let missing = pending
        .work
        .expiries()
        .into_iter()
        .map(|exp| keys::lease_for(cfg, exp))
        .find(|(id, _)| !keys::lease_known(store, *id));
    let request = match missing {
        Some((id, end)) => {
            pending.waiting = Waiting::Lease(id);
            api::lease_grant(id, end.saturating_sub(now).max(1))
        }
        None => {
            pending.waiting = Waiting::Work;
            api::txn(&pending.work.txn(cfg))
        }
    };
    Next::Call(Box::new(call(cfg, &*store, request, pending)))
}

/// Continues with etcd's answer (`status` is the HTTP status, `None` if there was none).
pub fn resume(
    cfg: &EtcdConfig,
    store: &mut dyn Store,
    pending: Pending,
    status: Option<&str>,
    body: &[u8],
    now: u64,
) -> Next {
    match (pending.waiting, api::answer(status, body)) {
        (Waiting::Lease(id), Ok(_) | Err(Failure::LeaseExists)) => {
            keys::remember_lease(store, id);
            step(cfg, store, pending, now)
        }
        (Waiting::Work, Ok(answer)) => done(cfg, store, pending, &api::parse_txn(&answer), now),
        (_, Err(failure)) => failed(cfg, store, pending, failure, now),
    }
}

/// A call failed (or its answer made no sense): make it again (bounded), else give up.
fn failed(
    cfg: &EtcdConfig,
    store: &mut dyn Store,
    mut pending: Pending,
    failure: Failure,
    now: u64,
) -> Next {
    match failure {
        Failure::LeaseNotFound => {
            for exp in pending.work.expiries() {
                keys::forget_lease(store, keys::lease_for(cfg, exp).0);
            }
        }
        Failure::AuthFailed => keys::forget_auth_token(store),
        _ => {}
    }
    pending.failures += 1;
    if pending.failures < MAX_FAILURES && !matches!(failure, Failure::Refused(_)) {
        return step(cfg, store, pending, now);
    }
    unavailable(cfg, store, pending, &failure, now)
}

fn unexpected() -> Failure {
    Failure::Unreachable("unexpected answer".into())
}

fn respond(pending: Pending) -> Next {
    Next::Respond {
        response: pending.finish,
        detail: None,
    }
}

fn invalid_grant(description: &str) -> Response {
    json_error(400, "invalid_grant", description)
}

/// What a transaction's answer means for the work.
fn done(
    cfg: &EtcdConfig,
    store: &mut dyn Store,
    mut pending: Pending,
    result: &TxnResult,
    now: u64,
) -> Next {
    match pending.work.clone() {
        Work::RedeemCode {
            jti, nonce, family, ..
        } => {
            let ours = result.get(0).is_some_and(|kv| kv.value == nonce);
            if result.succeeded || ours {
                return respond(pending);
            }
            if result.get(0).is_none() {
                // The failure branch reads the code: no value means this is not etcd's answer.
                return failed(cfg, store, pending, unexpected(), now);
            }
            // RFC 9700 §4.2.4: a replayed code revokes what the first redemption got.
            pending.finish = invalid_grant("The authorization code was already used");
            match family {
                Some(f) => {
                    pending.work = Work::RevokeFamily {
                        family: jti,
                        exp: f.exp,
                        access_exp: f.access_exp,
                    };
                    step(cfg, store, pending, now)
                }
                None => respond(pending),
            }
        }
        Work::Rotate {
            family,
            generation,
            exp,
            access_jti,
            access_exp,
            ..
        } => {
            if result.succeeded {
                return respond(pending);
            }
            let Some(inner) = result.inner(0) else {
                return failed(cfg, store, pending, unexpected(), now);
            };
            if inner.succeeded {
                return respond(pending);
            }
            // The family exists (else the nested transaction succeeded): no value read means
            // this is not etcd's answer.
            let Some(current) = inner.get(0).map(|kv| kv.value.as_str()) else {
                return failed(cfg, store, pending, unexpected(), now);
            };
            let live = inner.get(1).map(|kv| kv.value.as_str()).unwrap_or("");
            if current == generation.saturating_add(1).to_string()
                && live.split(' ').next() == Some(access_jti.as_str())
            {
                return respond(pending);
            }
            if current == "revoked" {
                pending.finish = invalid_grant("The grant was revoked");
                return respond(pending);
            }
            // An older generation came back: the family dies everywhere (RFC 9700 §4.14.2).
            pending.finish =
                invalid_grant("The refresh token was already used; the grant is revoked");
            pending.work = Work::RevokeFamily {
                family,
                exp,
                access_exp,
            };
            step(cfg, store, pending, now)
        }
        Work::RevokeFamily {
            family,
            exp,
            access_exp,
        } => {
            state::mark_family_revoked(store, &family, exp);
            let live = result.get(2).map(|kv| kv.value.clone()).unwrap_or_default();
            let mut parts = live.split(' ');
            match (
                parts.next(),
                parts.next().and_then(|e| e.parse::<u64>().ok()),
            ) {
                (Some(jti), live_exp) if !jti.is_empty() && jti != "-" => {
                    pending.work = Work::RevokeAccess {
                        jti: jti.to_string(),
                        exp: live_exp.unwrap_or(access_exp),
                    };
                    step(cfg, store, pending, now)
                }
                _ => respond(pending),
            }
        }
        Work::RevokeAccess { jti, exp } => {
            let _ = state::revoke_access_token(store, &jti, exp);
            respond(pending)
        }
    }
}

/// etcd cannot be used: refuse (503), or do the work in this Envoy's shared data when the
/// config says so.
fn unavailable(
    cfg: &EtcdConfig,
    store: &mut dyn Store,
    pending: Pending,
    failure: &Failure,
    now: u64,
) -> Next {
    let detail = Some(format!("etcd write failed: {}", describe(failure)));
    let refuse = |detail: Option<String>| Next::Respond {
        response: json_error(
            503,
            "temporarily_unavailable",
            "The grant state could not be recorded; retry shortly",
        )
        .with_header("retry-after", "1"),
        detail,
    };
    if cfg.grants_when_unavailable == GrantsWhenUnavailable::Refuse {
        return refuse(detail);
    }
    let finish = match local(store, &pending.work, now) {
        Ok(None) => pending.finish,
        Ok(Some(refusal)) => refusal,
        Err(()) => return refuse(detail),
    };
    Next::Respond {
        response: finish,
        detail: detail.map(|d| format!("{d}; done in shared data instead")),
    }
}

/// The same work on this Envoy's shared data. `Ok(Some(answer))` when it refuses.
fn local(store: &mut dyn Store, work: &Work, now: u64) -> Result<Option<Response>, ()> {
    match work {
        Work::RedeemCode {
            jti, exp, family, ..
        } => match state::redeem_code_once(store, jti, *exp, now) {
            Ok(true) => {
                if let Some(f) = family {
                    state::start_family(store, jti, f.exp, &f.access_jti, now).map_err(|_| ())?;
                }
                Ok(None)
            }
            Ok(false) => {
                if let Some(f) = family {
                    let _ = state::revoke_family(store, jti, f.exp, f.access_exp);
                }
                Ok(Some(invalid_grant(
                    "The authorization code was already used",
                )))
            }
            Err(_) => Err(()),
        },
        Work::Rotate {
            family,
            generation,
            issued_at,
            exp,
            access_jti,
            access_exp,
        } => {
            let presented = state::Presented {
                family,
                generation: *generation,
                issued_at: *issued_at,
            };
            let issued = state::Issued {
                now,
                expires_at: *exp,
                access_jti,
                access_expires_at: *access_exp,
            };
            match state::rotate_family(store, &presented, &issued) {
                Ok(state::Rotation::Rotated) => Ok(None),
                Ok(state::Rotation::Reused) => Ok(Some(invalid_grant(
                    "The refresh token was already used; the grant is revoked",
                ))),
                Ok(state::Rotation::Revoked) => Ok(Some(invalid_grant("The grant was revoked"))),
                Err(_) => Err(()),
            }
        }
        Work::RevokeFamily {
            family,
            exp,
            access_exp,
        } => state::revoke_family(store, family, *exp, *access_exp)
            .map(|_| None)
            .map_err(|_| ()),
        Work::RevokeAccess { jti, exp } => state::revoke_access_token(store, jti, *exp)
            .map(|_| None)
            .map_err(|_| ()),
    }
}

pub fn describe(failure: &Failure) -> String {
    match failure {
        Failure::Unreachable(why) => format!("unreachable ({why})"),
        Failure::LeaseNotFound => "lease not found".into(),
        Failure::LeaseExists => "lease exists".into(),
        Failure::AuthFailed => "authentication failed".into(),
        Failure::Refused(why) => format!("refused ({why})"),
    }
}
