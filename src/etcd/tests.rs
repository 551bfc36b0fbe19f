//! The etcd path end to end in the core: two "replicas" (gateways with their own memory store,
//! like two Envoys with their own shared data) and one fake etcd that runs the JSON gateway's
//! transactions, leases and ranges as etcd 3.4 does (the subset the filter uses).

use std::collections::{BTreeMap, HashSet};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jwt_simple::prelude::*;
use serde_json::{json, Value};

use crate::authz::grants::{self, Code};
use crate::authz::state;
use crate::config;
use crate::gateway::{Action, Gateway, Request};
use crate::http::Response;
use crate::store::MemoryStore;

const NOW: u64 = 1_800_000_000;
const REDIRECT: &str = "http://127.0.0.1:7777/callback";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

#[derive(Default)]
struct FakeEtcd {
    kv: BTreeMap<String, (String, i64, i64)>,
    leases: HashSet<i64>,
    revision: i64,
    down: bool,
    /// Apply the next request, then lose its answer (a timeout after the commit).
    lose_next_answer: bool,
    calls: usize,
}

fn text(v: &Value) -> String {
    String::from_utf8(STANDARD.decode(v.as_str().unwrap_or("")).unwrap()).unwrap()
}

fn num(v: &Value) -> i64 {
    v.as_str().map_or(0, |s| s.parse().unwrap())
}

impl FakeEtcd {
    fn call(&mut self, path: &str, body: &[u8]) -> (Option<String>, Vec<u8>) {
        self.calls += 1;
        if self.down {
            return (Some("503".into()), b"upstream connect error".to_vec());
        }
        let req: Value = serde_json::from_slice(body).unwrap();
        let (status, answer) = match path {
            "/v3/lease/grant" => {
                let id = num(&req["ID"]);
                if self.leases.insert(id) {
                    (200, json!({"header": {}, "ID": id.to_string()}))
                } else {
                    (
                        412,
                        json!({"error": "etcdserver: lease already exists", "code": 9}),
                    )
                }
            }
            "/v3/kv/txn" => match self.txn(&req) {
                Ok(v) => (200, v),
                Err(()) => (
                    404,
                    json!({"error": "etcdserver: requested lease not found", "code": 5}),
                ),
            },
            "/v3/kv/range" => {
                let start = text(&req["key"]);
                let end = text(&req["range_end"]);
                let min = num(&req["min_mod_revision"]);
                let kvs: Vec<Value> = self
                    .kv
                    .range(start..end)
                    .filter(|(_, (_, rev, _))| *rev >= min)
                    .map(|(k, (v, rev, _))| {
                        json!({"key": STANDARD.encode(k), "value": STANDARD.encode(v), "mod_revision": rev.to_string()})
                    })
                    .collect();
                (
                    200,
                    json!({"header": {"revision": self.revision.to_string()}, "kvs": kvs}),
                )
            }
            other => panic!("unexpected path {other}"),
        };
        if std::mem::take(&mut self.lose_next_answer) {
            return (Some("504".into()), b"upstream request timeout".to_vec());
        }
        (Some(status.to_string()), answer.to_string().into_bytes())
    }

    /// One transaction: every put gets the next revision (as one etcd revision per txn would,
    /// close enough here).
    fn txn(&mut self, req: &Value) -> Result<Value, ()> {
        let holds = req["compare"].as_array().unwrap().iter().all(|c| {
            let current = self.kv.get(&text(&c["key"]));
            match c["target"].as_str().unwrap() {
                "CREATE" => current.is_none(),
                "VALUE" => current.is_some_and(|(v, _, _)| *v == text(&c["value"])),
                t => panic!("target {t}"),
            }
        });
        let branch = if holds { "success" } else { "failure" };
        let ops = req[branch].as_array().cloned().unwrap_or_default();
        for op in &ops {
            if let Some(put) = op.get("request_put") {
                let lease = num(&put["lease"]);
                if lease != 0 && !self.leases.contains(&lease) {
                    return Err(());
                }
            }
        }
        self.revision += 1;
        let mut responses = vec![];
        for op in &ops {
            if let Some(put) = op.get("request_put") {
                self.kv.insert(
                    text(&put["key"]),
                    (text(&put["value"]), self.revision, num(&put["lease"])),
                );
                responses.push(json!({"response_put": {}}));
            } else if let Some(range) = op.get("request_range") {
                let kvs: Vec<Value> = self
                    .kv
                    .get(&text(&range["key"]))
                    .map(|(v, rev, _)| json!({"key": range["key"], "value": STANDARD.encode(v), "mod_revision": rev.to_string()}))
                    .into_iter()
                    .collect();
                responses.push(json!({"response_range": {"kvs": kvs}}));
            } else if let Some(inner) = op.get("request_txn") {
                responses.push(json!({"response_txn": self.txn(inner)?}));
            }
        }
        let mut answer =
            json!({"header": {"revision": self.revision.to_string()}, "responses": responses});
        if holds {
            answer["succeeded"] = json!(true);
        }
        Ok(answer)
    }

    fn value(&self, key: &str) -> Option<String> {
        self.kv.get(key).map(|(v, _, _)| v.clone())
    }
}

/// One gateway (replica) with its own shared data.
struct Replica {
    gateway: Gateway,
    store: MemoryStore,
}

fn config_json(grants: &str) -> Value {
    let signing: Value =
        serde_json::from_str(&ES256KeyPair::generate().with_key_id("k1").to_jwk()).unwrap();
    json!({
        "resource": "https://mcp.example.com/mcp",
        "routes": [{"prefix": "/mcp", "scopes": ["mcp:tools"]}],
        "authorization_server": {
            "signing_keys": [{"jwk": signing}],
            "sealing_keys": [{"kid": "s1", "value_base64url": URL_SAFE_NO_PAD.encode([9u8; 32])}],
            "clients": [{"client_id": "app", "redirect_uris": [REDIRECT]}],
            "rate_limits": {"token_per_minute_per_client": 1000, "token_per_minute_per_address": 1000}
        },
        "state_store": {"etcd": {"cluster": "etcd", "prefix": "/t/", "when_unavailable": {"grants": grants}}}
    })
}

fn replicas(grants: &str) -> (Replica, Replica) {
    let cfg = config_json(grants).to_string();
    let make = || {
        let (config, verifier) = config::parse(cfg.as_bytes(), &|_| None).unwrap();
        Replica {
            gateway: Gateway { config, verifier },
            store: MemoryStore::default(),
        }
    };
    (make(), make())
}

impl Replica {
    fn post(&mut self, etcd: &mut FakeEtcd, path: &str, pairs: &[(&str, &str)]) -> Response {
        let body = crate::form::encode(pairs);
        let request = Request {
            method: "POST",
            path,
            content_type: Some("application/x-www-form-urlencoded"),
            client_address: Some("127.0.0.1:5000"),
            ..Default::default()
        };
        let mut decision =
            self.gateway
                .decide_with_body(&request, body.as_bytes(), NOW, &mut self.store);
        for _ in 0..10 {
            match decision.action {
                Action::Respond(response) => return response,
                Action::Store(call) => {
                    let path = call
                        .headers
                        .iter()
                        .find(|(n, _)| n == ":path")
                        .map(|(_, v)| v.clone())
                        .unwrap();
                    let (status, answer) = etcd.call(&path, &call.body);
                    decision = self.gateway.resume_store(
                        &request,
                        call.pending,
                        status.as_deref(),
                        &answer,
                        NOW,
                        &mut self.store,
                    );
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        panic!("too many etcd calls for one request")
    }

    fn code(&self) -> String {
        let code = Code {
            jti: crate::random::id().unwrap(),
            client_id: "app".into(),
            redirect_uri: REDIRECT.into(),
            code_challenge: CHALLENGE.into(),
            scope: "mcp:tools".into(),
            resource: "https://mcp.example.com/mcp".into(),
            sub: "alice".into(),
            exp: NOW + 60,
            upstream: None,
        };
        let config = self.gateway.config.authorization_server.as_ref().unwrap();
        grants::seal_code(config, &code).unwrap()
    }

    fn redeem(&mut self, etcd: &mut FakeEtcd, code: &str) -> Response {
        self.post(
            etcd,
            "/oauth/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("code_verifier", VERIFIER),
                ("redirect_uri", REDIRECT),
                ("client_id", "app"),
            ],
        )
    }

    fn refresh(&mut self, etcd: &mut FakeEtcd, token: &str) -> Response {
        self.post(
            etcd,
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", token),
                ("client_id", "app"),
            ],
        )
    }

    /// Polls etcd into this replica's snapshot, as the root context does.
    fn poll(&mut self, etcd: &mut FakeEtcd, now_ms: u64) {
        let cfg = self.gateway.config.state_store.clone().unwrap();
        if let Some(call) = super::snapshot::poll_due(&cfg, &mut self.store, now_ms) {
            let (status, body) = etcd.call("/v3/kv/range", &call.body);
            super::snapshot::apply(&cfg, &mut self.store, status.as_deref(), &body, now_ms)
                .unwrap();
        }
    }

    fn health(&self, now: u64) -> Response {
        self.gateway.health(&self.store, now)
    }
}

fn field(r: &Response, name: &str) -> String {
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    v[name].as_str().unwrap_or_default().to_string()
}

fn jti_of(access_token: &str) -> String {
    let claims = access_token.split('.').nth(1).unwrap();
    let v: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
    v["jti"].as_str().unwrap().to_string()
}

#[test]
fn a_code_redeemed_on_one_replica_is_refused_on_another() {
    let (mut a, mut b) = replicas("refuse");
    let mut etcd = FakeEtcd::default();
    let code = a.code();
    let first = a.redeem(&mut etcd, &code);
    assert_eq!(
        first.status,
        200,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    let again = b.redeem(&mut etcd, &code);
    assert_eq!(again.status, 400);
    assert_eq!(field(&again, "error"), "invalid_grant");
    assert!(field(&again, "error_description").contains("already used"));
    // The replay revoked what the first redemption got, everywhere.
    let family = etcd
        .kv
        .keys()
        .find(|k| k.ends_with("/gen"))
        .cloned()
        .unwrap();
    assert_eq!(etcd.value(&family).as_deref(), Some("revoked"));
    let jti = jti_of(&field(&first, "access_token"));
    assert!(etcd.value(&format!("/t/revoked/at/{jti}")).is_some());
    let refused = a.refresh(&mut etcd, &field(&first, "refresh_token"));
    assert_eq!(
        field(&refused, "error_description"),
        "The grant was revoked"
    );
}

#[test]
fn refresh_reuse_on_another_replica_kills_the_family_on_both() {
    let (mut a, mut b) = replicas("refuse");
    let mut etcd = FakeEtcd::default();
    let first = a.redeem(&mut etcd, &a.code());
    let old = field(&first, "refresh_token");
    let rotated = a.refresh(&mut etcd, &old);
    assert_eq!(rotated.status, 200);
    let reuse = b.refresh(&mut etcd, &old);
    assert_eq!(reuse.status, 400);
    assert!(field(&reuse, "error_description").contains("already used"));
    let newest = a.refresh(&mut etcd, &field(&rotated, "refresh_token"));
    assert_eq!(field(&newest, "error_description"), "The grant was revoked");
    // The live access token (from the rotation) is revoked in etcd; after a poll, both
    // replicas refuse it without asking etcd.
    let jti = jti_of(&field(&rotated, "access_token"));
    for replica in [&mut a, &mut b] {
        replica.poll(&mut etcd, NOW * 1000);
        assert!(state::access_token_revoked(&replica.store, &jti));
    }
}

#[test]
fn a_revocation_reaches_the_other_replica_by_the_next_poll() {
    let (mut a, mut b) = replicas("refuse");
    let mut etcd = FakeEtcd::default();
    b.poll(&mut etcd, NOW * 1000);
    let issued = a.redeem(&mut etcd, &a.code());
    let access = field(&issued, "access_token");
    let jti = jti_of(&access);
    let revoked = a.post(
        &mut etcd,
        "/oauth/revoke",
        &[("token", &access), ("client_id", "app")],
    );
    assert_eq!(revoked.status, 200);
    assert!(
        state::access_token_revoked(&a.store, &jti),
        "at once where it was made"
    );
    assert!(!state::access_token_revoked(&b.store, &jti));
    // Not due yet: the poll interval has not passed.
    b.poll(&mut etcd, NOW * 1000 + 500);
    assert!(!state::access_token_revoked(&b.store, &jti));
    b.poll(&mut etcd, NOW * 1000 + 1000);
    assert!(state::access_token_revoked(&b.store, &jti));
    // The next poll asks only for what changed since.
    let revision = super::snapshot::state_of(&b.store).revision;
    assert_eq!(revision, etcd.revision);
}

#[test]
fn a_lost_answer_is_retried_and_recognised_as_ours() {
    let (mut a, _) = replicas("refuse");
    let mut etcd = FakeEtcd::default();
    // Grant the leases first, so the next call is the redemption itself.
    let warm = a.redeem(&mut etcd, &a.code());
    assert_eq!(warm.status, 200);
    etcd.lose_next_answer = true;
    let code = a.code();
    let first = a.redeem(&mut etcd, &code);
    assert_eq!(
        first.status,
        200,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    let again = a.redeem(&mut etcd, &code);
    assert_eq!(again.status, 400);
    // Same for a rotation.
    etcd.lose_next_answer = true;
    let rotated = a.refresh(&mut etcd, &field(&warm, "refresh_token"));
    assert_eq!(
        rotated.status,
        200,
        "{}",
        String::from_utf8_lossy(&rotated.body)
    );
}

#[test]
fn leases_are_granted_once_per_bucket_and_regranted_when_gone() {
    let (mut a, mut b) = replicas("refuse");
    let mut etcd = FakeEtcd::default();
    a.redeem(&mut etcd, &a.code());
    let calls = etcd.calls;
    a.redeem(&mut etcd, &a.code());
    assert_eq!(etcd.calls - calls, 1, "one transaction, no lease grant");
    // Another replica learns that the leases exist from "already exists".
    assert_eq!(b.redeem(&mut etcd, &b.code()).status, 200);
    // A lease that expired (etcd forgot it) is granted again.
    etcd.leases.clear();
    assert_eq!(a.redeem(&mut etcd, &a.code()).status, 200);
}

#[test]
fn etcd_down_refuses_grants_with_503_by_default() {
    let (mut a, _) = replicas("refuse");
    let mut etcd = FakeEtcd::default();
    let issued = a.redeem(&mut etcd, &a.code());
    etcd.down = true;
    let refused = a.redeem(&mut etcd, &a.code());
    assert_eq!(refused.status, 503);
    assert_eq!(field(&refused, "error"), "temporarily_unavailable");
    assert_eq!(refused.header("retry-after"), Some("1"));
    let refresh = a.refresh(&mut etcd, &field(&issued, "refresh_token"));
    assert_eq!(refresh.status, 503);
    etcd.down = false;
    let refresh = a.refresh(&mut etcd, &field(&issued, "refresh_token"));
    assert_eq!(refresh.status, 200, "the refused refresh did not count");
}

#[test]
fn etcd_down_with_local_fallback_uses_shared_data() {
    let (mut a, _) = replicas("local");
    let mut etcd = FakeEtcd {
        down: true,
        ..Default::default()
    };
    let code = a.code();
    assert_eq!(a.redeem(&mut etcd, &code).status, 200);
    assert_eq!(
        a.redeem(&mut etcd, &code).status,
        400,
        "still once per Envoy"
    );
}

#[test]
fn health_reports_the_snapshot() {
    let (mut a, _) = replicas("refuse");
    let mut etcd = FakeEtcd::default();
    let starting = a.health(NOW);
    assert_eq!(starting.status, 503);
    assert_eq!(field(&starting, "status"), "starting");
    a.poll(&mut etcd, NOW * 1000);
    let ok = a.health(NOW + 1);
    assert_eq!(ok.status, 200);
    assert_eq!(field(&ok, "status"), "ok");
    assert_eq!(field(&ok, "state_store"), "ok");
    // No answer for longer than max_snapshot_age_ms (4 s by default): degraded, still 200.
    let stale = a.health(NOW + 5);
    assert_eq!(stale.status, 200);
    assert_eq!(field(&stale, "status"), "degraded");
    assert_eq!(field(&stale, "state_store"), "unreachable");
}

#[test]
fn a_failed_poll_keeps_the_snapshot() {
    let (mut a, _) = replicas("refuse");
    let mut etcd = FakeEtcd::default();
    a.poll(&mut etcd, NOW * 1000);
    let cfg = a.gateway.config.state_store.clone().unwrap();
    let call = super::snapshot::poll_due(&cfg, &mut a.store, NOW * 1000 + 1000).unwrap();
    assert!(call
        .headers
        .contains(&(":path".into(), "/v3/kv/range".into())));
    let before = super::snapshot::state_of(&a.store);
    let failed = super::snapshot::apply(&cfg, &mut a.store, Some("503"), b"", NOW * 1000 + 1001);
    assert!(failed.is_err());
    assert_eq!(super::snapshot::state_of(&a.store), before);
}

#[test]
fn lease_ids_are_shared_by_replicas_and_cover_the_expiry() {
    let (a, b) = replicas("refuse");
    let cfg = a.gateway.config.state_store.clone().unwrap();
    let other = b.gateway.config.state_store.clone().unwrap();
    let (id, end) = super::keys::lease_for(&cfg, NOW + 60);
    assert_eq!(super::keys::lease_for(&other, NOW + 60), (id, end));
    assert!(id > 0);
    assert!((NOW + 60..=NOW + 60 + 3 * super::keys::BUCKET_SECONDS).contains(&end));
    assert_ne!(super::keys::lease_for(&cfg, NOW + 1000).0, id);
}

fn replica_with(etcd: Value) -> Replica {
    let mut cfg = config_json("refuse");
    cfg["state_store"]["etcd"] = etcd;
    let (config, verifier) = config::parse(cfg.to_string().as_bytes(), &|_| None).unwrap();
    Replica {
        gateway: Gateway { config, verifier },
        store: MemoryStore::default(),
    }
}

impl Replica {
    fn mcp(&mut self, token: &str, now: u64) -> Response {
        let bearer = format!("Bearer {token}");
        let request = Request {
            method: "GET",
            path: "/mcp",
            authorization: vec![&bearer],
            ..Default::default()
        };
        match self.gateway.decide(&request, now, &mut self.store).action {
            Action::Respond(r) => r,
            Action::Forward { .. } => Response {
                status: 200,
                headers: vec![],
                body: vec![],
            },
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn validation_refuse_answers_503_while_the_snapshot_is_stale() {
    let mut a = replica_with(
        json!({"cluster": "etcd", "prefix": "/t/", "when_unavailable": {"validation": "refuse", "health_status": 503}}),
    );
    let mut etcd = FakeEtcd::default();
    let token = field(&a.redeem(&mut etcd, &a.code()), "access_token");
    // Never loaded: refused.
    assert_eq!(a.mcp(&token, NOW).status, 503);
    a.poll(&mut etcd, NOW * 1000);
    assert_eq!(a.mcp(&token, NOW + 1).status, 200);
    // etcd silent for longer than max_snapshot_age_ms (4 s): refused again, and /health is 503.
    let refused = a.mcp(&token, NOW + 5);
    assert_eq!(refused.status, 503);
    assert_eq!(field(&refused, "error"), "temporarily_unavailable");
    let health = a.health(NOW + 5);
    assert_eq!(health.status, 503);
    assert_eq!(field(&health, "status"), "degraded");
}

#[test]
fn validation_goes_on_with_the_last_snapshot_by_default() {
    let (mut a, _) = replicas("refuse");
    let mut etcd = FakeEtcd::default();
    let token = field(&a.redeem(&mut etcd, &a.code()), "access_token");
    assert_eq!(a.mcp(&token, NOW).status, 200, "not loaded yet: served");
    a.poll(&mut etcd, NOW * 1000);
    assert_eq!(a.mcp(&token, NOW + 60).status, 200, "stale: served");
}

#[test]
fn an_answer_that_is_not_etcd_s_is_never_taken_for_a_replay() {
    let (mut a, _) = replicas("refuse");
    let mut etcd = FakeEtcd::default();
    a.redeem(&mut etcd, &a.code()); // leases granted
    let code = a.code();
    let request = Request {
        method: "POST",
        path: "/oauth/token",
        content_type: Some("application/x-www-form-urlencoded"),
        ..Default::default()
    };
    let body = crate::form::encode(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("code_verifier", VERIFIER),
        ("redirect_uri", REDIRECT),
        ("client_id", "app"),
    ]);
    let mut decision = a
        .gateway
        .decide_with_body(&request, body.as_bytes(), NOW, &mut a.store);
    // A proxy in the way answers 200 with something else, every time (three tries).
    for _ in 0..3 {
        let Action::Store(call) = decision.action else {
            panic!("expected an etcd call, got {:?}", decision.action);
        };
        decision = a.gateway.resume_store(
            &request,
            call.pending,
            Some("200"),
            b"{}",
            NOW,
            &mut a.store,
        );
    }
    let Action::Respond(response) = decision.action else {
        panic!("expected an answer");
    };
    assert_eq!(response.status, 503);
    // The code was never spent: it works once etcd answers.
    assert_eq!(a.redeem(&mut etcd, &code).status, 200);
}
