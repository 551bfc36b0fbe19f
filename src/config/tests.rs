use super::*;
use serde_json::json;

fn no_env(_: &str) -> Option<String> {
    None
}

fn base() -> serde_json::Value {
    json!({
        "resource": "https://mcp.example.com/mcp",
        "authorization_servers": ["https://auth.example.com"],
        "issuers": [{"issuer": "https://auth.example.com", "secrets": [{"value": "0123456789abcdef0123456789abcdef"}]}]
    })
}

fn parse_value(v: &serde_json::Value) -> Result<(Config, Verifier), ConfigError> {
    parse(v.to_string().as_bytes(), &no_env)
}

fn error_of(v: serde_json::Value) -> ConfigError {
    match parse_value(&v) {
        Ok(_) => panic!("config was accepted: {v}"),
        Err(e) => e,
    }
}

#[test]
fn minimal_config_gets_secure_defaults() {
    let (config, verifier) = parse_value(&base()).unwrap();
    assert_eq!(config.origin, "https://mcp.example.com");
    assert_eq!(config.routes.len(), 1);
    assert_eq!(config.routes[0].prefix, "/");
    assert_eq!(config.unmatched, Unmatched::Authenticate);
    assert_eq!(config.public_paths, vec!["/health"]);
    assert_eq!(
        config.identity_headers.subject.as_deref(),
        Some("x-mcp-subject")
    );
    assert_eq!(verifier.leeway_seconds, 60);
}

#[test]
fn unknown_fields_are_named_with_their_path() {
    let mut v = base();
    v["issuers"][0]["isuer"] = json!("typo");
    let e = error_of(v);
    assert_eq!(e.path, "issuers[0].isuer");
    assert!(e.reason.contains("unknown field `isuer`"), "{}", e.reason);
}

#[test]
fn wrong_types_are_named_with_their_path() {
    let mut v = base();
    v["routes"] = json!([{"prefix": "/mcp", "scopes": "mcp:tools"}]);
    let e = error_of(v);
    assert_eq!(e.path, "routes[0].scopes");
}

#[test]
fn missing_required_field_is_reported() {
    let mut v = base();
    v.as_object_mut().unwrap().remove("resource");
    let e = error_of(v);
    assert!(e.reason.contains("missing field `resource`"), "{e}");
}

#[test]
fn istio_floats_are_accepted_for_integers() {
    let mut v = base();
    v["leeway_seconds"] = json!(30.0);
    let (_, verifier) = parse_value(&v).unwrap();
    assert_eq!(verifier.leeway_seconds, 30);
    v["leeway_seconds"] = json!(30.5);
    assert_eq!(error_of(v).path, "leeway_seconds");
}

#[test]
fn resource_must_be_canonical() {
    let mut v = base();
    v["resource"] = json!("https://MCP.example.com/mcp/");
    let e = error_of(v);
    assert_eq!(e.path, "resource");
    assert!(e.reason.contains("https://mcp.example.com/mcp"), "{e}");
}

#[test]
fn remote_jwks_uri_must_be_https() {
    let mut v = base();
    v["issuers"][0] = json!({"issuer": "https://a", "remote_jwks": {"uri": "http://idp.example.com/jwks", "cluster": "jwks"}});
    let e = error_of(v);
    assert_eq!(e.path, "issuers[0].remote_jwks.uri");
}

#[test]
fn a_section_is_an_object_not_an_array_of_its_values() {
    let mut v = base();
    v["issuers"][0] =
        json!({"issuer": "https://a", "remote_jwks": ["https://idp.example.com/jwks", "jwks"]});
    let e = error_of(v);
    assert_eq!(e.path, "issuers[0].remote_jwks");
    assert!(
        e.reason
            .starts_with("invalid type: sequence, expected struct RawRemoteJwks"),
        "{}",
        e.reason
    );
}

#[test]
fn remote_jwks_is_split_into_authority_and_path() {
    let mut v = base();
    v["issuers"][0] = json!({"issuer": "https://a", "remote_jwks": {"uri": "https://idp.example.com:8443/keys?v=2", "cluster": "jwks"}});
    let (config, verifier) = parse_value(&v).unwrap();
    let remote = &config.remote_jwks[0];
    assert_eq!(remote.authority, "idp.example.com:8443");
    assert_eq!(remote.path, "/keys?v=2");
    assert!(verifier.issuers[0].has_remote());
    assert!(!verifier.issuers[0].keys_loaded());
}

#[test]
fn issuer_needs_keys() {
    let mut v = base();
    v["issuers"][0] = json!({"issuer": "https://a"});
    assert_eq!(error_of(v).path, "issuers[0]");
}

#[test]
fn secrets_come_from_the_environment() {
    let mut v = base();
    v["issuers"][0]["secrets"] = json!([{"value_env": "HS_SECRET"}]);
    let env = |name: &str| (name == "HS_SECRET").then(|| "x".repeat(40));
    assert!(parse(v.to_string().as_bytes(), &env).is_ok());
    let e = error_of(v);
    assert_eq!(e.path, "issuers[0].secrets[0].value_env");
}

#[test]
fn secret_needs_exactly_one_value() {
    let mut v = base();
    v["issuers"][0]["secrets"] = json!([{"value": "x".repeat(40), "value_env": "A"}]);
    assert_eq!(error_of(v).path, "issuers[0].secrets[0]");
}

#[test]
fn unsupported_algorithm_is_named() {
    let mut v = base();
    v["issuers"][0]["algorithms"] = json!(["HS256", "none"]);
    assert_eq!(error_of(v).path, "issuers[0].algorithms[1]");
}

#[test]
fn route_resource_must_share_the_origin() {
    let mut v = base();
    v["routes"] = json!([{"prefix": "/sse", "resource": "https://other.example.com/sse"}]);
    assert_eq!(error_of(v).path, "routes[0].resource");
}

#[test]
fn identity_header_can_be_turned_off_but_not_misused() {
    let mut v = base();
    v["identity_headers"] = json!({"issuer": null});
    let (config, _) = parse_value(&v).unwrap();
    assert_eq!(config.identity_headers.issuer, None);
    assert_eq!(
        config.identity_headers.subject.as_deref(),
        Some("x-mcp-subject")
    );
    v["identity_headers"] = json!({"subject": "Authorization"});
    assert_eq!(error_of(v).path, "identity_headers.subject");
}

#[test]
fn empty_and_trailing_garbage_configs_are_refused() {
    assert!(parse(b"", &no_env).is_err());
    assert!(parse(b"  ", &no_env).is_err());
    let text = format!("{} x", base());
    assert!(parse(text.as_bytes(), &no_env).is_err());
}

#[test]
fn scopes_supported_defaults_to_route_scopes() {
    let mut v = base();
    v["routes"] =
        json!([{"prefix": "/mcp", "scopes": ["b", "a"]}, {"prefix": "/x", "scopes": ["a"]}]);
    let (config, _) = parse_value(&v).unwrap();
    assert_eq!(config.scopes_supported, vec!["a", "b"]);
}

/// Every way to break a rich config at the deserialization stage (a wrong type in each place, an
/// unknown member in each object, each member removed): the error path matches what a
/// path-tracking deserializer reports.
#[test]
fn parse_error_paths_match_a_path_tracking_deserializer() {
    let rich = json!({
        "resource": "https://mcp.example.com/mcp",
        "issuers": [
            {"issuer": "https://auth.example.com", "secrets": [{"value": "0123456789abcdef0123456789abcdef"}]},
            {"issuer": "https://idp.example.com", "remote_jwks": {"uri": "https://idp.example.com/jwks", "cluster": "idp"}, "algorithms": ["ES256", "RS256"]}
        ],
        "routes": [{"prefix": "/mcp", "scopes": ["mcp:tools"]}, {"prefix": "/admin", "scopes": ["admin"], "upstream_token": true}],
        "identity_headers": {"subject": "x-sub", "scopes": null},
        "public_paths": ["/health"],
        "mcp": {"endpoints": ["/mcp"], "rules": [{"method": "tools/call", "name": "echo", "scopes": ["mcp:tools"]}]},
        "authorization_server": {
            "issuer": "https://mcp.example.com",
            "signing_keys": [{"kid": "k1", "jwk_env": "SIGNING_JWK"}],
            "sealing_keys": [{"kid": "s1", "value_env": "SEAL"}],
            "scopes": [{"name": "mcp:tools", "description": "Use the tools"}],
            "clients": [{"client_id": "cli", "redirect_uris": ["http://127.0.0.1/cb"], "scopes": ["mcp:tools"], "skip_consent": false}],
            "users": [{"username": "alice", "password_hash": "x"}],
            "registration": {"enabled": true},
            "endpoints": {"token": "/oauth/token"},
            "rate_limits": {"token_per_minute_per_client": 10},
            "upstream": {"issuer": "https://idp.example.com", "client_id": "gw", "client_secret_env": "IDP_SECRET", "cluster": "idp", "clusters": {"idp.example.com": "idp"}, "scope_rules": [{"claim": "groups", "values": ["eng"], "scopes": ["mcp:tools"]}]}
        },
        "state_store": {"etcd": {"cluster": "etcd", "prefix": "/mcp", "when_unavailable": {"grants": "local", "max_snapshot_age_ms": 5000}}}
    });
    serde_json::from_value::<raw::RawConfig>(rich.clone()).expect("the rich config deserializes");
    let mut variants = Vec::new();
    mutations(&rich, &mut |doc| variants.push(doc));
    let mut compared = 0;
    for doc in variants {
        let text = doc.to_string();
        let mut tracked = serde_json::Deserializer::from_str(&text);
        let Err(expected) = serde_path_to_error::deserialize::<_, raw::RawConfig>(&mut tracked)
        else {
            continue;
        };
        let expected_path = match expected.path().to_string() {
            p if p == "." => String::new(),
            p => p,
        };
        let ours = parse(text.as_bytes(), &no_env)
            .err()
            .expect("the same text fails");
        assert_eq!(ours.path, expected_path, "for {text}: {}", ours.reason);
        assert_eq!(ours.reason, expected.inner().to_string(), "for {text}");
        compared += 1;
    }
    assert!(
        compared > 100,
        "only {compared} variants failed to deserialize"
    );
}

/// Calls `each` with every single-place mutation of `doc`.
fn mutations(doc: &serde_json::Value, each: &mut dyn FnMut(serde_json::Value)) {
    fn walk(
        root: &serde_json::Value,
        pointer: String,
        here: &serde_json::Value,
        each: &mut dyn FnMut(serde_json::Value),
    ) {
        for wrong in [
            json!(true),
            json!(7),
            json!(1.5),
            json!("text"),
            json!([1]),
            json!({"z": 1}),
        ] {
            if &wrong != here && !pointer.is_empty() {
                let mut doc = root.clone();
                *doc.pointer_mut(&pointer).unwrap() = wrong;
                each(doc);
            }
        }
        match here {
            serde_json::Value::Object(map) => {
                let mut doc = root.clone();
                doc.pointer_mut(&pointer).unwrap()["unexpected_member"] = json!(1);
                each(doc);
                for (key, value) in map {
                    let mut doc = root.clone();
                    doc.pointer_mut(&pointer)
                        .unwrap()
                        .as_object_mut()
                        .unwrap()
                        .remove(key);
                    each(doc);
                    walk(root, format!("{pointer}/{key}"), value, each);
                }
            }
            serde_json::Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(root, format!("{pointer}/{i}"), item, each);
                }
            }
            _ => {}
        }
    }
    walk(doc, String::new(), doc, each);
}
