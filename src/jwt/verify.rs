//! Access-token verification: pick the issuer from `iss`, the key by `kid` and `alg`, let
//! `jwt-simple` check the signature and times, then check what it does not (`exp` present,
//! `aud`, scopes).

use std::cell::OnceCell;
use std::collections::HashSet;
use std::rc::Rc;

use jwt_simple::prelude::*;
use jwt_simple::JWTError;
use serde::Deserialize;
use serde_json::Value;

use super::alg::Alg;
use super::cache::TokenCache;
use super::keys::{decode_b64url, KeySet};

/// A token without `kid` is tried against at most this many keys of its algorithm.
const MAX_KEYS_TRIED_WITHOUT_KID: usize = 8;

/// The keys and rules of one trusted issuer.
pub struct Issuer {
    pub issuer: String,
    pub allowed: Vec<Alg>,
    static_keys: KeySet,
    remote_keys: Option<KeySet>,
    has_remote: bool,
}

impl Issuer {
    pub fn new(issuer: String, allowed: Vec<Alg>, static_keys: KeySet, has_remote: bool) -> Self {
        Issuer {
            issuer,
            allowed,
            static_keys,
            remote_keys: None,
            has_remote,
        }
    }

    /// Replaces the fetched keys; the previous set is dropped only when a new one parsed.
    pub fn set_remote_keys(&mut self, keys: KeySet) {
        self.remote_keys = Some(keys);
    }

    /// True when the issuer can verify something: it has inline keys or a fetched set.
    pub fn keys_loaded(&self) -> bool {
        !self.static_keys.is_empty() || self.remote_keys.is_some()
    }

    pub fn has_remote(&self) -> bool {
        self.has_remote
    }

    pub fn remote_loaded(&self) -> bool {
        self.remote_keys.is_some()
    }

    fn keys(&self) -> impl Iterator<Item = &super::keys::KeyEntry> {
        self.static_keys
            .entries()
            .iter()
            .chain(self.remote_keys.iter().flat_map(|set| set.entries().iter()))
    }
}

/// The verified facts of a token that the gateway uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    pub issuer: String,
    pub subject: Option<String>,
    pub client_id: Option<String>,
    pub scopes: Vec<String>,
    pub expires_at: u64,
    pub issued_at: Option<u64>,
    pub jwt_id: Option<String>,
    pub audiences: Vec<String>,
    /// The grant our authorization server issued this token under (its `grant` claim), naming
    /// the upstream tokens held for it.
    pub grant: Option<String>,
    /// Who holds an MCP session opened with this token (`mcp::session::identity`), worked out
    /// on first use: a cached token then pays for the digest once, not per request.
    pub session_identity: Memo,
}

/// A value derived from the other fields, computed at most once. Two tokens are equal whatever
/// their memos hold (whether it was computed yet says nothing about the token).
#[derive(Debug, Clone, Default)]
pub struct Memo(pub OnceCell<String>);

impl PartialEq for Memo {
    fn eq(&self, _: &Memo) -> bool {
        true
    }
}

impl Eq for Memo {}

/// Why a token was refused. Descriptions are safe to show the client: they never echo the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    TooLong,
    Malformed,
    UnsupportedAlgorithm,
    CriticalHeader,
    UntrustedIssuer,
    AlgorithmNotAllowed,
    /// No key has this `kid`; a fetched key set may be stale, so the caller may refetch.
    UnknownKeyId {
        issuer: usize,
    },
    /// The issuer's keys are fetched and have not loaded yet.
    KeysNotLoaded {
        issuer: usize,
    },
    BadSignature,
    Expired,
    NotYetValid,
    IssuedInFuture,
    MissingExpiry,
    WrongAudience,
}

impl TokenError {
    pub fn description(&self) -> &'static str {
        match self {
            TokenError::TooLong => "The access token is too long",
            TokenError::Malformed => "The access token is malformed",
            TokenError::UnsupportedAlgorithm => "The access token uses an unsupported algorithm",
            TokenError::CriticalHeader => "The access token has unsupported critical headers",
            TokenError::UntrustedIssuer => "The access token issuer is not trusted",
            TokenError::AlgorithmNotAllowed => "The access token algorithm is not allowed",
            TokenError::UnknownKeyId { .. } => "The access token is signed with an unknown key",
            TokenError::KeysNotLoaded { .. } => "The signing keys are not available yet",
            TokenError::BadSignature => "The access token signature is invalid",
            TokenError::Expired => "The access token expired",
            TokenError::NotYetValid => "The access token is not valid yet",
            TokenError::IssuedInFuture => "The access token was issued in the future",
            TokenError::MissingExpiry => "The access token has no expiry",
            TokenError::WrongAudience => "The access token is not meant for this resource",
        }
    }

    /// Short stable name for logs and stats.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::TooLong => "too_long",
            TokenError::Malformed => "malformed",
            TokenError::UnsupportedAlgorithm => "unsupported_alg",
            TokenError::CriticalHeader => "crit_header",
            TokenError::UntrustedIssuer => "untrusted_issuer",
            TokenError::AlgorithmNotAllowed => "alg_not_allowed",
            TokenError::UnknownKeyId { .. } => "unknown_kid",
            TokenError::KeysNotLoaded { .. } => "keys_not_loaded",
            TokenError::BadSignature => "bad_signature",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::IssuedInFuture => "issued_in_future",
            TokenError::MissingExpiry => "missing_exp",
            TokenError::WrongAudience => "wrong_audience",
        }
    }
}

/// Claims beyond the registered ones that an access token may carry.
#[derive(Debug, Default, Serialize, Deserialize)]
struct AccessClaims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scp: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_id: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    azp: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    grant: Option<Value>,
}

/// Only `iss`, read before verification to choose the issuer's keys; the other members are
/// skipped unread.
#[derive(Deserialize)]
#[serde(remote = "Self")]
struct IssuerPeek {
    iss: Option<String>,
}
json_object!(IssuerPeek);

/// Everything needed to verify a token, except the keys' refresh state.
pub struct Verifier {
    pub issuers: Vec<Issuer>,
    pub leeway_seconds: u64,
    pub max_token_bytes: usize,
    pub cache: TokenCache,
}

impl Verifier {
    pub fn new(
        issuers: Vec<Issuer>,
        leeway_seconds: u64,
        max_token_bytes: usize,
        cache_entries: usize,
    ) -> Verifier {
        Verifier {
            issuers,
            leeway_seconds,
            max_token_bytes,
            cache: TokenCache::new(cache_entries),
        }
    }

    /// The algorithms `issuer` (by index) accepts; its fetched keys are read for these.
    pub fn allowed_algorithms(&self, issuer: usize) -> Option<Vec<Alg>> {
        self.issuers.get(issuer).map(|i| i.allowed.clone())
    }

    /// Installs a freshly fetched key set; cached verifications are dropped, since a key may
    /// have been removed.
    pub fn set_remote_keys(&mut self, issuer: usize, keys: KeySet) {
        if let Some(target) = self.issuers.get_mut(issuer) {
            target.set_remote_keys(keys);
            self.cache.clear();
        }
    }

    /// Verifies `token` for a request whose resource is `audience`, at unix time `now`.
    pub fn verify(
        &self,
        token: &str,
        audience: &str,
        now: u64,
    ) -> Result<Rc<VerifiedToken>, TokenError> {
        if token.len() > self.max_token_bytes {
            return Err(TokenError::TooLong);
        }
        let verified = match self.cached(token, now) {
            Some(hit) => hit,
            None => {
                let verified = Rc::new(self.verify_for_any_audience(token, now)?);
                self.cache.put(token, &verified, now);
                verified
            }
        };
        Self::for_audience(verified, audience)
    }

    /// The token cache's verification of exactly this token, while it is valid.
    pub fn cached(&self, token: &str, now: u64) -> Option<Rc<VerifiedToken>> {
        self.cache.get(token, now, self.leeway_seconds)
    }

    /// A verified token, if it is meant for `audience`.
    pub fn for_audience(
        verified: Rc<VerifiedToken>,
        audience: &str,
    ) -> Result<Rc<VerifiedToken>, TokenError> {
        if verified.audiences.iter().any(|a| a == audience) {
            Ok(verified)
        } else {
            Err(TokenError::WrongAudience)
        }
    }

    /// Verifies everything but the audience (for introspection and revocation, which serve
    /// every resource of this server).
    pub fn verify_for_any_audience(
        &self,
        token: &str,
        now: u64,
    ) -> Result<VerifiedToken, TokenError> {
        if token.len() > self.max_token_bytes {
            return Err(TokenError::TooLong);
        }
        let mut parts = token.split('.');
        let (Some(_), Some(payload), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let metadata = Token::decode_metadata(token).map_err(|_| TokenError::Malformed)?;
        if metadata.critical().is_some() {
            return Err(TokenError::CriticalHeader);
        }
        let alg = Alg::parse(metadata.algorithm()).ok_or(TokenError::UnsupportedAlgorithm)?;
        let payload = decode_b64url(payload).map_err(|_| TokenError::Malformed)?;
        let peek: IssuerPeek =
            serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
        let iss = peek.iss.ok_or(TokenError::UntrustedIssuer)?;
        let (index, issuer) = self
            .issuers
            .iter()
            .enumerate()
            .find(|(_, i)| i.issuer == iss)
            .ok_or(TokenError::UntrustedIssuer)?;
        if !issuer.allowed.contains(&alg) {
            return Err(TokenError::AlgorithmNotAllowed);
        }
        if !issuer.keys_loaded() {
            return Err(TokenError::KeysNotLoaded { issuer: index });
        }
        let candidates: Vec<_> = match metadata.key_id() {
            Some(kid) => {
                let with_kid: Vec<_> = issuer
                    .keys()
                    .filter(|k| k.kid.as_deref() == Some(kid))
                    .collect();
                if with_kid.is_empty() {
                    return Err(TokenError::UnknownKeyId { issuer: index });
                }
                with_kid
                    .into_iter()
                    .filter(|k| k.key.alg() == alg)
                    .collect()
            }
            None => issuer
                .keys()
                .filter(|k| k.key.alg() == alg)
                .take(MAX_KEYS_TRIED_WITHOUT_KID)
                .collect(),
        };
        if candidates.is_empty() {
            return Err(TokenError::AlgorithmNotAllowed);
        }
        let options = VerificationOptions {
            allowed_issuers: Some(HashSet::from([iss.clone()])),
            time_tolerance: Some(Duration::from_secs(self.leeway_seconds)),
            artificial_time: Some(UnixTimeStamp::from_secs(now)),
            max_token_length: Some(self.max_token_bytes),
            ..Default::default()
        };
        let mut last_error = TokenError::BadSignature;
        for candidate in candidates {
            match candidate.key.verify::<AccessClaims>(token, options.clone()) {
                Ok(claims) => return finish(claims),
                Err(error) => {
                    last_error = map_error(&error);
                    if last_error != TokenError::BadSignature {
                        break;
                    }
                }
            }
        }
        Err(last_error)
    }
}

fn map_error(error: &jwt_simple::Error) -> TokenError {
    match error.downcast_ref::<JWTError>() {
        Some(JWTError::InvalidSignature | JWTError::InvalidAuthenticationTag) => {
            TokenError::BadSignature
        }
        Some(JWTError::TokenHasExpired) => TokenError::Expired,
        Some(JWTError::TokenNotValidYet) => TokenError::NotYetValid,
        Some(JWTError::ClockDrift) => TokenError::IssuedInFuture,
        Some(JWTError::RequiredIssuerMismatch | JWTError::RequiredIssuerMissing) => {
            TokenError::UntrustedIssuer
        }
        Some(JWTError::AlgorithmMismatch) => TokenError::AlgorithmNotAllowed,
        _ => TokenError::Malformed,
    }
}

/// Checks what `jwt-simple` leaves to us and extracts the identity.
/// No real token expires after 2100-01-01; a larger `exp` (1e30, 2^64) is a broken or hostile
/// token, not one that never expires.
const LATEST_EXPIRY: u64 = 4_102_444_800;

fn finish(claims: JWTClaims<AccessClaims>) -> Result<VerifiedToken, TokenError> {
    let expires_at = claims
        .expires_at
        .ok_or(TokenError::MissingExpiry)?
        .as_secs();
    if expires_at > LATEST_EXPIRY {
        return Err(TokenError::Malformed);
    }
    let mut audiences: Vec<String> = match &claims.audiences {
        Some(Audiences::AsString(aud)) => vec![aud.clone()],
        Some(Audiences::AsSet(set)) => set.iter().cloned().collect(),
        None => vec![],
    };
    audiences.sort();
    let custom = claims.custom;
    let client_id = custom
        .client_id
        .as_ref()
        .or(custom.azp.as_ref())
        .map(|v| v.as_str().map(str::to_string).ok_or(TokenError::Malformed))
        .transpose()?;
    Ok(VerifiedToken {
        issuer: claims.issuer.unwrap_or_default(),
        subject: claims.subject,
        client_id,
        scopes: scopes_of(custom.scope.as_ref(), custom.scp.as_ref())?,
        expires_at,
        issued_at: claims.issued_at.map(|t| t.as_secs()),
        jwt_id: claims.jwt_id,
        audiences,
        grant: custom
            .grant
            .as_ref()
            .and_then(Value::as_str)
            .map(str::to_string),
        session_identity: Memo::default(),
    })
}

/// Scopes from `scope` (space-separated, RFC 9068) or `scp` (an array, as Okta and Entra send).
fn scopes_of(scope: Option<&Value>, scp: Option<&Value>) -> Result<Vec<String>, TokenError> {
    let mut scopes: Vec<String> = Vec::new();
    for value in [scope, scp].into_iter().flatten() {
        match value {
            Value::String(s) => scopes.extend(s.split_ascii_whitespace().map(str::to_string)),
            Value::Array(items) => {
                for item in items {
                    let s = item.as_str().ok_or(TokenError::Malformed)?;
                    scopes.push(s.to_string());
                }
            }
            _ => return Err(TokenError::Malformed),
        }
    }
    scopes.sort();
    scopes.dedup();
    Ok(scopes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::keys::KeySource;
    use serde_json::json;

    const ISS: &str = "https://issuer.example";
    const AUD: &str = "https://mcp.example/mcp";
    const NOW: u64 = 1_800_000_000;

    struct Fixture {
        es: ES256KeyPair,
        rs: RS256KeyPair,
        hs: HS256Key,
        verifier: Verifier,
    }

    fn fixture() -> Fixture {
        let es = ES256KeyPair::generate().with_key_id("es");
        let rs = RS256KeyPair::generate(2048).unwrap().with_key_id("rs");
        let secret = [42u8; 32];
        let hs = HS256Key::from_bytes(&secret).with_key_id("hs");
        let jwks = json!({ "keys": [
            serde_json::from_str::<Value>(&es.public_key().to_jwk()).unwrap(),
            serde_json::from_str::<Value>(&rs.public_key().to_jwk()).unwrap(),
        ]});
        let (mut keys, _) = KeySet::from_jwks(&jwks, &Alg::ALL, KeySource::Inline).unwrap();
        keys.extend(KeySet::from_secret(Some("hs"), &secret, &Alg::ALL).unwrap());
        let verifier = Verifier::new(
            vec![Issuer::new(ISS.into(), Alg::ALL.to_vec(), keys, false)],
            60,
            16384,
            0,
        );
        Fixture {
            es,
            rs,
            hs,
            verifier,
        }
    }

    fn claims(extra: Value) -> JWTClaims<Value> {
        let mut c = Claims::with_custom_claims(extra, Duration::from_secs(900))
            .with_issuer(ISS)
            .with_audience(AUD)
            .with_subject("alice");
        c.issued_at = Some(UnixTimeStamp::from_secs(NOW));
        c.invalid_before = Some(UnixTimeStamp::from_secs(NOW));
        c.expires_at = Some(UnixTimeStamp::from_secs(NOW + 900));
        c
    }

    #[test]
    fn valid_tokens_of_each_family_verify() {
        let f = fixture();
        let c = || claims(json!({"scope": "mcp:tools mcp:read", "client_id": "c1"}));
        for token in [
            f.es.sign(c()).unwrap(),
            f.rs.sign(c()).unwrap(),
            f.hs.authenticate(c()).unwrap(),
        ] {
            let v = f.verifier.verify(&token, AUD, NOW).unwrap();
            assert_eq!(v.subject.as_deref(), Some("alice"));
            assert_eq!(v.client_id.as_deref(), Some("c1"));
            assert_eq!(v.scopes, vec!["mcp:read", "mcp:tools"]);
            assert_eq!(v.expires_at, NOW + 900);
        }
    }

    #[test]
    fn scp_array_and_azp_are_understood() {
        let f = fixture();
        let token =
            f.es.sign(claims(json!({"scp": ["a", "b"], "azp": "app"})))
                .unwrap();
        let v = f.verifier.verify(&token, AUD, NOW).unwrap();
        assert_eq!(v.scopes, vec!["a", "b"]);
        assert_eq!(v.client_id.as_deref(), Some("app"));
    }

    #[test]
    fn time_rules_use_the_leeway() {
        let f = fixture();
        let token = f.es.sign(claims(json!({}))).unwrap();
        assert!(f.verifier.verify(&token, AUD, NOW + 900 + 59).is_ok());
        assert_eq!(
            f.verifier.verify(&token, AUD, NOW + 900 + 61),
            Err(TokenError::Expired)
        );
        let mut early = claims(json!({}));
        early.issued_at = None;
        let token = f.es.sign(early).unwrap();
        assert_eq!(
            f.verifier.verify(&token, AUD, NOW - 61),
            Err(TokenError::NotYetValid)
        );
        assert!(f.verifier.verify(&token, AUD, NOW - 59).is_ok());
    }

    #[test]
    fn iat_in_the_future_is_refused() {
        let f = fixture();
        let mut c = claims(json!({}));
        c.invalid_before = None;
        c.issued_at = Some(UnixTimeStamp::from_secs(NOW + 600));
        let token = f.es.sign(c).unwrap();
        assert_eq!(
            f.verifier.verify(&token, AUD, NOW),
            Err(TokenError::IssuedInFuture)
        );
    }

    #[test]
    fn audience_must_name_this_resource() {
        let f = fixture();
        let token = f.es.sign(claims(json!({}))).unwrap();
        assert_eq!(
            f.verifier.verify(&token, "https://other.example/mcp", NOW),
            Err(TokenError::WrongAudience)
        );
        let multi = claims(json!({})).with_audiences(HashSet::from([
            "https://x.example".to_string(),
            AUD.to_string(),
        ]));
        assert!(f
            .verifier
            .verify(&f.es.sign(multi).unwrap(), AUD, NOW)
            .is_ok());
    }

    #[test]
    fn other_issuer_is_untrusted() {
        let f = fixture();
        let token =
            f.es.sign(claims(json!({})).with_issuer("https://evil"))
                .unwrap();
        assert_eq!(
            f.verifier.verify(&token, AUD, NOW),
            Err(TokenError::UntrustedIssuer)
        );
    }

    #[test]
    fn tampered_payload_fails_the_signature() {
        let f = fixture();
        let token = f.es.sign(claims(json!({"scope": "read"}))).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let forged_payload = {
            use base64::Engine;
            let mut body: Value =
                serde_json::from_slice(&decode_b64url(parts[1]).unwrap()).unwrap();
            body["scope"] = json!("admin");
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(body.to_string())
        };
        let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert_eq!(
            f.verifier.verify(&forged, AUD, NOW),
            Err(TokenError::BadSignature)
        );
    }

    fn unsigned(header: Value, payload: Value, signature: &[u8]) -> String {
        use base64::Engine;
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.{}",
            e.encode(header.to_string()),
            e.encode(payload.to_string()),
            e.encode(signature)
        )
    }

    #[test]
    fn alg_none_is_refused() {
        let f = fixture();
        let payload = json!({"iss": ISS, "aud": AUD, "exp": NOW + 100});
        let token = unsigned(json!({"alg": "none"}), payload, b"");
        assert_eq!(
            f.verifier.verify(&token, AUD, NOW),
            Err(TokenError::UnsupportedAlgorithm)
        );
    }

    #[test]
    fn hmac_signed_with_the_rsa_public_key_is_refused() {
        let f = fixture();
        let public_pem = f.rs.public_key().to_pem().unwrap();
        let attacker = HS256Key::from_bytes(public_pem.as_bytes()).with_key_id("rs");
        let token = attacker.authenticate(claims(json!({}))).unwrap();
        assert_eq!(
            f.verifier.verify(&token, AUD, NOW),
            Err(TokenError::AlgorithmNotAllowed)
        );
    }

    #[test]
    fn unknown_kid_names_the_issuer() {
        let f = fixture();
        let other = ES256KeyPair::generate().with_key_id("new");
        let token = other.sign(claims(json!({}))).unwrap();
        assert_eq!(
            f.verifier.verify(&token, AUD, NOW),
            Err(TokenError::UnknownKeyId { issuer: 0 })
        );
    }

    #[test]
    fn crit_header_and_garbage_are_refused() {
        let f = fixture();
        let token = unsigned(
            json!({"alg": "ES256", "crit": ["exp"], "exp": 1}),
            json!({"iss": ISS}),
            b"sig",
        );
        assert_eq!(
            f.verifier.verify(&token, AUD, NOW),
            Err(TokenError::CriticalHeader)
        );
        for garbage in [
            "",
            "abc",
            "a.b",
            "a.b.c.d",
            "....",
            "eyJ.eyJ.x",
            "\u{0}.\u{1}.\u{2}",
        ] {
            assert!(f.verifier.verify(garbage, AUD, NOW).is_err(), "{garbage:?}");
        }
    }

    #[test]
    fn exp_is_required_and_must_be_a_number() {
        let f = fixture();
        let mut c = claims(json!({}));
        c.expires_at = None;
        let token = f.es.sign(c).unwrap();
        assert_eq!(
            f.verifier.verify(&token, AUD, NOW),
            Err(TokenError::MissingExpiry)
        );
        let token = f.hs.authenticate(claims(json!({"scope": 5}))).unwrap();
        assert_eq!(
            f.verifier.verify(&token, AUD, NOW),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn absurd_expiry_is_malformed() {
        let f = fixture();
        let mut c = claims(json!({}));
        c.expires_at = Some(UnixTimeStamp::from_secs(u64::MAX / 2));
        let token = f.hs.authenticate(c).unwrap();
        assert_eq!(
            f.verifier.verify(&token, AUD, NOW),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn oversized_tokens_are_refused_before_parsing() {
        let f = fixture();
        let token = "a".repeat(20_000);
        assert_eq!(
            f.verifier.verify(&token, AUD, NOW),
            Err(TokenError::TooLong)
        );
    }

    #[test]
    fn issuer_without_loaded_remote_keys_says_so() {
        let verifier = Verifier::new(
            vec![Issuer::new(
                ISS.into(),
                Alg::ALL.to_vec(),
                KeySet::default(),
                true,
            )],
            60,
            16384,
            0,
        );
        let es = ES256KeyPair::generate();
        let token = es.sign(claims(json!({}))).unwrap();
        assert_eq!(
            verifier.verify(&token, AUD, NOW),
            Err(TokenError::KeysNotLoaded { issuer: 0 })
        );
    }

    #[test]
    fn cached_tokens_still_obey_audience_and_expiry() {
        let f = fixture();
        let verifier = Verifier::new(f.verifier.issuers, 60, 16384, 10);
        let token = f.es.sign(claims(json!({"scope": "a"}))).unwrap();
        assert!(verifier.verify(&token, AUD, NOW).is_ok());
        assert_eq!(verifier.cache.len(), 1);
        assert!(verifier.verify(&token, AUD, NOW + 1).is_ok());
        assert_eq!(
            verifier.verify(&token, "https://other.example", NOW),
            Err(TokenError::WrongAudience)
        );
        assert_eq!(
            verifier.verify(&token, AUD, NOW + 2000),
            Err(TokenError::Expired)
        );
        assert_eq!(verifier.cache.len(), 0);
    }

    #[test]
    fn a_new_key_set_empties_the_cache() {
        let f = fixture();
        let mut verifier = Verifier::new(f.verifier.issuers, 60, 16384, 10);
        let token = f.es.sign(claims(json!({}))).unwrap();
        assert!(verifier.verify(&token, AUD, NOW).is_ok());
        verifier.set_remote_keys(0, KeySet::default());
        assert!(verifier.cache.is_empty());
    }
}
