//! Verification keys: JWK Sets (inline or fetched) and shared HMAC secrets, turned into key
//! objects once (`jwt-simple`'s, or `rsa_key`'s, `p256_ecdsa`'s and `hmac_key`'s for the
//! algorithms this crate checks itself), so no key is parsed on the request path.

use jwt_simple::prelude::*;
use serde_json::{Map, Value};

use super::alg::{Alg, KeyFamily};
use super::curve_keys::{Ed25519Key, Es384Key};
use super::hmac_key::HmacKey;
use super::jose::Check;
use super::p256_ecdsa::P256Key;
use super::rsa_key::RsaKey;

/// Shortest HMAC secret accepted (RFC 7518 §3.2: at least the hash size for HS256).
pub const MIN_SECRET_BYTES: usize = 32;
/// A JWK Set with more keys than this is refused: nobody rotates through hundreds of keys,
/// and the limit bounds the work an unknown `kid` can cause.
pub const MAX_KEYS_PER_SET: usize = 64;

/// One key, bound to exactly one algorithm.
pub enum VerifyKey {
    /// HS256/384/512, checked by `hmac_key` rather than `jwt-simple`.
    Hmac(HmacKey),
    /// RS256/384/512 and PS256/384/512, checked by `rsa_key` rather than `jwt-simple`.
    Rsa(RsaKey),
    /// Checked by `p256_ecdsa` rather than `jwt-simple` (about 4× faster in V8).
    ES256(P256Key),
    /// ES384 and EdDSA: `curve_keys` (the same curve crates as `jwt-simple`).
    ES384(Es384Key),
    EdDSA(Ed25519Key),
}

impl VerifyKey {
    pub fn alg(&self) -> Alg {
        match self {
            VerifyKey::Hmac(key) => key.alg(),
            VerifyKey::Rsa(key) => key.alg(),
            VerifyKey::ES256(_) => Alg::ES256,
            VerifyKey::ES384(_) => Alg::ES384,
            VerifyKey::EdDSA(_) => Alg::EdDSA,
        }
    }

    /// Checks the signature and the standard time claims; the caller checks the rest.
    pub fn verify<C>(
        &self,
        token: &str,
        options: VerificationOptions,
    ) -> Result<JWTClaims<C>, jwt_simple::Error>
    where
        C: serde::Serialize + serde::de::DeserializeOwned,
    {
        let check = match self {
            VerifyKey::Hmac(_) => Check::Mac,
            _ => Check::Signature,
        };
        super::jose::verify_token(check, self.alg().name(), token, &options, |signed, sig| {
            self.signature_matches(signed, sig)
        })
    }

    /// Whether `signature` signs (for HMAC: authenticates) `message` under this key.
    fn signature_matches(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            VerifyKey::Hmac(key) => key.verify(message, signature),
            VerifyKey::Rsa(key) => key.verify(message, signature),
            VerifyKey::ES256(key) => key.verify(message, signature),
            VerifyKey::ES384(key) => key.verify(message, signature),
            VerifyKey::EdDSA(key) => key.verify(message, signature),
        }
    }
}

/// A key and the `kid` it was published under.
pub struct KeyEntry {
    pub kid: Option<String>,
    pub key: VerifyKey,
}

/// The keys of one source (inline config, a secret, or one fetch of a remote JWK Set).
#[derive(Default)]
pub struct KeySet {
    entries: Vec<KeyEntry>,
}

impl KeySet {
    pub fn entries(&self) -> &[KeyEntry] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn extend(&mut self, other: KeySet) {
        self.entries.extend(other.entries);
    }

    pub fn has_kid(&self, kid: &str) -> bool {
        self.entries.iter().any(|e| e.kid.as_deref() == Some(kid))
    }

    /// Parses a JWK Set. `strict` (inline config) makes every bad key an error naming its index;
    /// otherwise (a fetched set) unusable keys, such as encryption keys, are skipped and reported
    /// in the returned warnings, and only a set with no usable key at all is an error.
    pub fn from_jwks(
        doc: &Value,
        allowed: &[Alg],
        source: KeySource,
    ) -> Result<(KeySet, Vec<String>), String> {
        let keys = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| "must be a JWK Set: an object with a \"keys\" array".to_string())?;
        if keys.len() > MAX_KEYS_PER_SET {
            return Err(format!(
                "has {} keys; at most {MAX_KEYS_PER_SET} are accepted",
                keys.len()
            ));
        }
        let mut set = KeySet::default();
        let mut warnings = Vec::new();
        for (index, jwk) in keys.iter().enumerate() {
            match parse_jwk(jwk, allowed, source) {
                Ok(entries) => set.entries.extend(entries),
                Err(reason) if source == KeySource::Inline => {
                    return Err(format!("keys[{index}]: {reason}"))
                }
                Err(reason) => warnings.push(format!("key {index} skipped: {reason}")),
            }
        }
        if set.is_empty() {
            return Err(match warnings.first() {
                Some(first) => format!("has no usable signature key ({first})"),
                None => "has no usable signature key".to_string(),
            });
        }
        Ok((set, warnings))
    }

    /// A shared secret for every HMAC algorithm in `allowed`.
    pub fn from_secret(
        kid: Option<&str>,
        secret: &[u8],
        allowed: &[Alg],
    ) -> Result<KeySet, String> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "secret is {} bytes; at least {MIN_SECRET_BYTES} are required",
                secret.len()
            ));
        }
        let entries: Vec<KeyEntry> = Alg::of_family(KeyFamily::Hmac)
            .filter(|alg| allowed.contains(alg))
            .filter_map(|alg| HmacKey::new(alg, secret))
            .map(|key| KeyEntry {
                kid: kid.map(str::to_string),
                key: VerifyKey::Hmac(key),
            })
            .collect();
        if entries.is_empty() {
            return Err("no HMAC algorithm (HS256/HS384/HS512) is allowed for this issuer".into());
        }
        Ok(KeySet { entries })
    }
}

/// Where a key set came from; fetched documents are public, so they may not carry secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    Inline,
    Remote,
}

fn str_member<'a>(jwk: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, String> {
    match jwk.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("\"{name}\" must be a string")),
    }
}

fn required<'a>(jwk: &'a Map<String, Value>, name: &str) -> Result<&'a str, String> {
    str_member(jwk, name)?.ok_or_else(|| format!("missing \"{name}\""))
}

/// Turns one JWK into one key object per algorithm it may verify.
fn parse_jwk(jwk: &Value, allowed: &[Alg], source: KeySource) -> Result<Vec<KeyEntry>, String> {
    let jwk = jwk.as_object().ok_or("a JWK must be an object")?;
    let kty = required(jwk, "kty")?;
    let kid = str_member(jwk, "kid")?.map(str::to_string);
    if let Some(key_use) = str_member(jwk, "use")? {
        if key_use != "sig" {
            return Err(format!("\"use\" is \"{key_use}\", not \"sig\""));
        }
    }
    if let Some(ops) = jwk.get("key_ops") {
        let verifies = ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|op| op.as_str() == Some("verify")));
        if !verifies {
            return Err("\"key_ops\" does not include \"verify\"".into());
        }
    }
    let family = match (kty, str_member(jwk, "crv")?) {
        ("RSA", _) => KeyFamily::Rsa,
        ("EC", Some("P-256")) => KeyFamily::P256,
        ("EC", Some("P-384")) => KeyFamily::P384,
        ("OKP", Some("Ed25519")) => KeyFamily::Ed25519,
        ("oct", _) => KeyFamily::Hmac,
        ("EC" | "OKP", crv) => {
            return Err(format!("unsupported curve {:?}", crv.unwrap_or("(none)")))
        }
        (other, _) => return Err(format!("unsupported key type \"{other}\"")),
    };
    if family == KeyFamily::Hmac && source == KeySource::Remote {
        return Err("symmetric (oct) keys are never taken from a fetched JWK Set".into());
    }
    let algs: Vec<Alg> = match str_member(jwk, "alg")? {
        Some(name) => {
            let alg = Alg::parse(name).ok_or_else(|| format!("unsupported \"alg\" \"{name}\""))?;
            if alg.family() != family {
                return Err(format!("\"alg\" {alg} does not fit key type \"{kty}\""));
            }
            if !allowed.contains(&alg) {
                return Err(format!(
                    "\"alg\" {alg} is not in the issuer's allowed algorithms"
                ));
            }
            vec![alg]
        }
        None => Alg::of_family(family)
            .filter(|alg| allowed.contains(alg))
            .collect(),
    };
    if algs.is_empty() {
        return Err(format!(
            "no allowed algorithm can use a \"{kty}\" key; adjust the issuer's algorithms"
        ));
    }
    if family == KeyFamily::Hmac {
        let secret = decode_b64url(required(jwk, "k")?).map_err(|e| format!("\"k\": {e}"))?;
        let set = KeySet::from_secret(kid.as_deref(), &secret, &algs)?;
        return Ok(set.entries);
    }
    let public = public_members(jwk, family)?;
    algs.into_iter()
        .map(|alg| {
            build_public_key(alg, &public)
                .map(|key| KeyEntry {
                    kid: kid.clone(),
                    key,
                })
                .map_err(|e| format!("not a valid {alg} public key ({e})"))
        })
        .collect()
}

/// Keeps only the public members, so certificate chains, thumbprints and private parts never
/// reach the strict JWK importer (a private key in a JWKS is refused instead).
fn public_members(jwk: &Map<String, Value>, family: KeyFamily) -> Result<String, String> {
    if jwk.contains_key("d") {
        return Err("contains private key material (\"d\"); publish only the public key".into());
    }
    let names: &[&str] = match family {
        KeyFamily::Rsa => &["kty", "n", "e"],
        KeyFamily::P256 | KeyFamily::P384 => &["kty", "crv", "x", "y"],
        KeyFamily::Ed25519 => &["kty", "crv", "x"],
        KeyFamily::Hmac => &["kty", "k"],
    };
    let mut out = Map::new();
    for name in names {
        out.insert(
            (*name).to_string(),
            Value::String(required(jwk, name)?.into()),
        );
    }
    Ok(Value::Object(out).to_string())
}

fn build_public_key(alg: Alg, jwk: &str) -> Result<VerifyKey, jwt_simple::Error> {
    Ok(match alg {
        // jwt-simple vets the JWK (2048 to 4096 bits, exponent 65537); rsa_key checks with it.
        Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512 => {
            let parts = RS256PublicKey::from_jwk(jwk)?.to_components();
            VerifyKey::Rsa(
                RsaKey::new(alg, &parts.n, &parts.e)
                    .ok_or(jwt_simple::JWTError::InvalidPublicKey)?,
            )
        }
        // jwt-simple vets the JWK (the same rules and errors as before); p256_ecdsa checks with
        // the point, which it vets again (coordinates below p, on the curve).
        Alg::ES256 => {
            let sec1 = ES256PublicKey::from_jwk(jwk)?
                .public_key()
                .to_bytes_uncompressed();
            // 0x04 ‖ x ‖ y
            let key = sec1
                .get(1..33)
                .zip(sec1.get(33..65))
                .and_then(|(x, y)| P256Key::new(x, y));
            VerifyKey::ES256(key.ok_or(jwt_simple::JWTError::InvalidPublicKey)?)
        }
        // jwt-simple vets the JWK; the key it made is checked with by curve_keys.
        Alg::ES384 => VerifyKey::ES384(
            Es384Key::from_sec1(&ES384PublicKey::from_jwk(jwk)?.to_bytes())
                .ok_or(jwt_simple::JWTError::InvalidPublicKey)?,
        ),
        Alg::EdDSA => VerifyKey::EdDSA(
            Ed25519Key::from_bytes(&Ed25519PublicKey::from_jwk(jwk)?.to_bytes())
                .ok_or(jwt_simple::JWTError::InvalidPublicKey)?,
        ),
        Alg::HS256 | Alg::HS384 | Alg::HS512 => {
            return Err(jwt_simple::JWTError::InvalidPublicKey.into())
        }
    })
}

/// Base64url without padding, as JOSE uses it; padding is tolerated because people paste it.
pub fn decode_b64url(text: &str) -> Result<Vec<u8>, String> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|_| "not valid base64url".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn es256_jwk(kid: &str) -> (ES256KeyPair, Value) {
        let pair = ES256KeyPair::generate();
        let mut jwk: Value = serde_json::from_str(&pair.public_key().to_jwk()).unwrap();
        jwk["kid"] = json!(kid);
        (pair, jwk)
    }

    #[test]
    fn ec_key_without_alg_gets_its_one_algorithm() {
        let (_, mut jwk) = es256_jwk("a");
        jwk.as_object_mut().unwrap().remove("alg");
        let (set, warnings) =
            KeySet::from_jwks(&json!({ "keys": [jwk] }), &Alg::ALL, KeySource::Inline).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(set.entries().len(), 1);
        assert_eq!(set.entries()[0].key.alg(), Alg::ES256);
        assert_eq!(set.entries()[0].kid.as_deref(), Some("a"));
    }

    #[test]
    fn rsa_key_without_alg_verifies_only_allowed_rsa_algorithms() {
        let pair = RS256KeyPair::generate(2048).unwrap();
        let mut jwk: Value = serde_json::from_str(&pair.public_key().to_jwk()).unwrap();
        jwk.as_object_mut().unwrap().remove("alg");
        let allowed = [Alg::RS256, Alg::PS256, Alg::ES256];
        let (set, _) =
            KeySet::from_jwks(&json!({ "keys": [jwk] }), &allowed, KeySource::Inline).unwrap();
        let algs: Vec<Alg> = set.entries().iter().map(|e| e.key.alg()).collect();
        assert_eq!(algs, vec![Alg::RS256, Alg::PS256]);
    }

    #[test]
    fn extra_members_like_x5c_are_ignored() {
        let (_, mut jwk) = es256_jwk("a");
        jwk["x5c"] = json!(["MIIB..."]);
        jwk["x5t"] = json!("abc");
        assert!(KeySet::from_jwks(&json!({ "keys": [jwk] }), &Alg::ALL, KeySource::Inline).is_ok());
    }

    #[test]
    fn inline_set_names_the_bad_key() {
        let (_, good) = es256_jwk("a");
        let bad = json!({"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"});
        let err = KeySet::from_jwks(
            &json!({ "keys": [good, bad] }),
            &Alg::ALL,
            KeySource::Inline,
        )
        .err()
        .unwrap();
        assert!(
            err.starts_with("keys[1]: not a valid ES256 public key"),
            "{err}"
        );
    }

    #[test]
    fn remote_set_skips_encryption_and_symmetric_keys() {
        let (_, good) = es256_jwk("a");
        let enc = json!({"kty": "RSA", "use": "enc", "n": "x", "e": "AQAB"});
        let oct = json!({"kty": "oct", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI"});
        let (set, warnings) = KeySet::from_jwks(
            &json!({ "keys": [enc, oct, good] }),
            &Alg::ALL,
            KeySource::Remote,
        )
        .unwrap();
        assert_eq!(set.entries().len(), 1);
        assert_eq!(warnings.len(), 2);
    }

    #[test]
    fn alg_that_does_not_fit_the_key_type_is_refused() {
        let (_, mut jwk) = es256_jwk("a");
        jwk["alg"] = json!("HS256");
        let err = KeySet::from_jwks(&json!({ "keys": [jwk] }), &Alg::ALL, KeySource::Inline)
            .err()
            .unwrap();
        assert!(err.contains("does not fit"), "{err}");
    }

    #[test]
    fn private_keys_are_refused_in_a_jwks() {
        let pair = ES256KeyPair::generate().with_key_id("p");
        let jwk: Value = serde_json::from_str(&pair.to_jwk()).unwrap();
        let err = KeySet::from_jwks(&json!({ "keys": [jwk] }), &Alg::ALL, KeySource::Inline)
            .err()
            .unwrap();
        assert!(err.contains("private key material"), "{err}");
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(KeySet::from_secret(None, b"short", &Alg::ALL).is_err());
        let set = KeySet::from_secret(Some("k"), &[7u8; 32], &[Alg::HS256]).unwrap();
        assert_eq!(set.entries().len(), 1);
    }

    #[test]
    fn not_a_jwks_is_an_error() {
        assert!(KeySet::from_jwks(&json!([1, 2]), &Alg::ALL, KeySource::Remote).is_err());
        assert!(KeySet::from_jwks(&json!({"keys": []}), &Alg::ALL, KeySource::Remote).is_err());
    }
}
