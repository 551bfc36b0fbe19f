//! Keys: token signing keys (ES256 JWKs), sealing keys, and demo access tokens.

use jwt_simple::prelude::*;
use serde_json::{json, Map, Value};

use mcp_oauth_wasm::authz::signer::Signer;
use mcp_oauth_wasm::seal::Sealer;

use crate::args::{Args, Spec};
use crate::{base64url, random_bytes, random_hex, read_all, Command, Failure, Input, Output};

pub const GEN_SIGNING_KEY: Command = Command {
    name: "gen-signing-key",
    summary: "a new ES256 token signing key (private JWK)",
    help: "usage: mcp-oauth gen-signing-key [--kid KID] [--public]

Prints a new EC P-256 private JWK (ES256) as one line of JSON, for
authorization_server.signing_keys. Keep it secret.

  --kid KID   key id (default: es-<8 hex digits>)
  --public    instead, read a private JWK from standard input and print its public JWK
              (with --kid, under that key id)
",
    spec: Spec {
        values: &["kid"],
        switches: &["public"],
        positional: &[],
    },
    run: gen_signing_key,
};

const SIGNING_KEY_NOTE: &str = "\
mcp-oauth: a new private signing key (above); keep it out of the config text. For example:
  export MCP_OAUTH_SIGNING_JWK=\"$(mcp-oauth gen-signing-key 2>/dev/null)\"
  plugin config: \"signing_keys\": [{\"jwk_env\": \"MCP_OAUTH_SIGNING_JWK\"}]
  Envoy: vm_config.environment_variables: {host_env_keys: [MCP_OAUTH_SIGNING_JWK]}
The filter publishes the public key at its jwks endpoint (mcp-oauth gen-signing-key --public
prints it).
";

fn gen_signing_key(args: &Args, input: &mut Input) -> Result<Output, Failure> {
    let kid = args.value("kid")?;
    if let Some(kid) = kid {
        check_signing_kid(kid)?;
    }
    if args.switch("public") {
        let pair = ES256KeyPair::from_jwk(read_all(input)?.trim()).map_err(|e| {
            Failure::error(format!(
                "standard input is not an EC P-256 private JWK: {e}"
            ))
        })?;
        let pair = match kid {
            Some(kid) => pair.with_key_id(kid),
            None => pair,
        };
        return Ok(Output::stdout(
            one_line(&pair.public_key().to_jwk())? + "\n",
        ));
    }
    let kid = match kid {
        Some(kid) => kid.to_string(),
        None => format!("es-{}", random_hex::<4>()?),
    };
    let jwk = ES256KeyPair::generate().with_key_id(&kid).to_jwk();
    Ok(Output {
        stdout: one_line(&jwk)? + "\n",
        stderr: SIGNING_KEY_NOTE.into(),
    })
}

fn check_signing_kid(kid: &str) -> Result<(), Failure> {
    if kid.is_empty() || kid.len() > 64 || !kid.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Failure::usage(
            "--kid must be 1-64 printable ASCII characters",
        ));
    }
    Ok(())
}

/// A JSON document on one line.
fn one_line(json: &str) -> Result<String, Failure> {
    serde_json::from_str::<Value>(json)
        .map(|v| v.to_string())
        .map_err(|e| Failure::error(format!("bad JSON from the JWK library: {e}")))
}

pub const GEN_SEALING_KEY: Command = Command {
    name: "gen-sealing-key",
    summary: "a new 32-byte sealing key for codes, refresh tokens and sessions",
    help: "usage: mcp-oauth gen-sealing-key [--kid KID]

Prints {\"kid\": ..., \"value_base64url\": ...}: a new AES-256-GCM key for
authorization_server.sealing_keys. Keep it secret.

  --kid KID   key id, 1-16 characters of A-Z a-z 0-9 _ - (default: s-<6 hex digits>)
",
    spec: Spec {
        values: &["kid"],
        switches: &[],
        positional: &[],
    },
    run: gen_sealing_key,
};

fn gen_sealing_key(args: &Args, _input: &mut Input) -> Result<Output, Failure> {
    let kid = match args.value("kid")? {
        Some(kid) => kid.to_string(),
        None => format!("s-{}", random_hex::<3>()?),
    };
    let key = random_bytes::<32>()?;
    // The filter's own check of the kid.
    Sealer::new(&[(kid.clone(), key.to_vec())])
        .map_err(|r| Failure::usage(format!("--kid: {r}")))?;
    let value = base64url(&key);
    Ok(Output {
        stdout: json!({ "kid": kid, "value_base64url": value }).to_string() + "\n",
        stderr: format!(
            "mcp-oauth: add it to \"sealing_keys\" as is, or keep the value out of the config text:\n  \
             {{\"kid\": \"{kid}\", \"value_env\": \"MCP_OAUTH_SEALING_KEY\"}}, with MCP_OAUTH_SEALING_KEY set to\n  \
             value_base64url and passed in vm_config.environment_variables. The first key seals;\n  \
             keep old keys after it while what they sealed (refresh tokens, clients) is in use.\n"
        ),
    })
}

pub const MINT_TOKEN: Command = Command {
    name: "mint-token",
    summary: "sign an ES256 access token (at+jwt) with a private JWK, for tests and demos",
    help: "usage: mcp-oauth mint-token --jwk-file FILE --iss ISS --aud AUD [--sub SUB]
                          [--client-id ID] [--scope \"a b\"] [--ttl SECONDS]

Signs an RFC 9068 access token (header typ at+jwt; iat, nbf now; exp; random jti) with the
EC P-256 private JWK in FILE (`-` reads standard input) and prints it. For tests and demos.

  --jwk-file FILE   private JWK, e.g. from mcp-oauth gen-signing-key
  --iss ISS         issuer (the authorization server's issuer)
  --aud AUD         audience: the protected resource URI
  --sub SUB         subject (default: the client id, else none)
  --client-id ID    client_id claim
  --scope S         scope claim; repeat or separate with spaces
  --ttl SECONDS     lifetime (default 900)
",
    spec: Spec {
        values: &["jwk-file", "iss", "aud", "sub", "client-id", "scope", "ttl"],
        switches: &[],
        positional: &[],
    },
    run: mint_token,
};

fn mint_token(args: &Args, input: &mut Input) -> Result<Output, Failure> {
    let file = args.required("jwk-file")?;
    let iss = args.required("iss")?;
    let aud = args.required("aud")?;
    let client_id = args.value("client-id")?;
    let subject = args.value("sub")?.or(client_id);
    let scope = args
        .values("scope")
        .iter()
        .flat_map(|s| s.split_whitespace())
        .collect::<Vec<_>>()
        .join(" ");
    let ttl: u64 = args.number("ttl")?.unwrap_or(900);
    if ttl == 0 {
        return Err(Failure::usage("--ttl must be at least 1"));
    }
    let text = if file == "-" {
        read_all(input)?
    } else {
        std::fs::read_to_string(file)
            .map_err(|e| Failure::error(format!("cannot read {file}: {e}")))?
    };
    let pair = ES256KeyPair::from_jwk(text.trim())
        .map_err(|e| Failure::error(format!("{file} is not an EC P-256 private JWK: {e}")))?;
    let mut custom = Map::new();
    if let Some(client_id) = client_id {
        custom.insert("client_id".into(), json!(client_id));
    }
    if !scope.is_empty() {
        custom.insert("scope".into(), json!(scope));
    }
    let jti = base64url(&random_bytes::<16>()?);
    let mut claims = Claims::with_custom_claims(Value::Object(custom), Duration::from_secs(ttl))
        .with_issuer(iss)
        .with_audience(aud)
        .with_jwt_id(jti);
    if let Some(subject) = subject {
        claims = claims.with_subject(subject);
    }
    let token = Signer::Es256(pair)
        .sign(claims)
        .ok_or_else(|| Failure::error("signing failed"))?;
    Ok(Output::stdout(token + "\n"))
}

#[cfg(test)]
mod tests {
    use crate::tests::run_with;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use jwt_simple::prelude::*;
    use serde_json::Value;

    fn generated_key(extra: &[&str]) -> (String, Value) {
        let mut line = vec!["gen-signing-key"];
        line.extend_from_slice(extra);
        let (out, code) = run_with(&line, "");
        assert_eq!(code, 0, "{}", out.stderr);
        assert!(out.stderr.contains("jwk_env"));
        assert_eq!(out.stdout.lines().count(), 1);
        let json = serde_json::from_str(&out.stdout).unwrap();
        (out.stdout, json)
    }

    #[test]
    fn signing_key_round_trips() {
        let (text, jwk) = generated_key(&[]);
        let kid = jwk["kid"].as_str().unwrap();
        assert!(kid.starts_with("es-") && kid.len() == 11, "{kid}");
        assert_eq!(jwk["crv"], "P-256");
        let pair = ES256KeyPair::from_jwk(text.trim()).unwrap();
        assert_eq!(pair.key_id().as_deref(), Some(kid));

        let (out, code) = run_with(&["gen-signing-key", "--public"], &text);
        assert_eq!(code, 0, "{}", out.stderr);
        let public: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(public["kid"], kid);
        assert!(public.get("d").is_none());
        assert_eq!(public["x"], jwk["x"]);
        ES256PublicKey::from_jwk(out.stdout.trim()).unwrap();

        let (_, jwk) = generated_key(&["--kid", "2026-01"]);
        assert_eq!(jwk["kid"], "2026-01");
        assert_eq!(run_with(&["gen-signing-key", "--kid", "a b"], "").1, 2);
        assert_eq!(run_with(&["gen-signing-key", "--public"], "{}").1, 1);
    }

    #[test]
    fn sealing_key() {
        let (out, code) = run_with(&["gen-sealing-key"], "");
        assert_eq!(code, 0);
        let key: Value = serde_json::from_str(&out.stdout).unwrap();
        let kid = key["kid"].as_str().unwrap();
        assert!(kid.starts_with("s-") && kid.len() == 8, "{kid}");
        let value = key["value_base64url"].as_str().unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(value).unwrap().len(), 32);
        assert!(!out.stderr.contains(value));
        let (out, code) = run_with(&["gen-sealing-key", "--kid", "k1"], "");
        assert_eq!(code, 0);
        assert!(out.stdout.starts_with("{\"kid\":\"k1\","));
        let (out, code) = run_with(&["gen-sealing-key", "--kid", "far-too-long-a-kid"], "");
        assert_eq!(code, 2, "{}", out.stderr);
    }

    #[test]
    fn minted_token_verifies() {
        let (jwk, _) = generated_key(&["--kid", "k1"]);
        let (out, code) = run_with(
            &[
                "mint-token",
                "--jwk-file=-",
                "--iss",
                "https://as.example",
                "--aud",
                "https://mcp.example/mcp",
                "--client-id",
                "cli",
                "--scope",
                "mcp:tools  b",
                "--scope=c",
                "--ttl",
                "120",
            ],
            &jwk,
        );
        assert_eq!(code, 0, "{}", out.stderr);
        let token = out.stdout.trim();
        let public = ES256KeyPair::from_jwk(jwk.trim()).unwrap().public_key();
        let options = VerificationOptions {
            required_signature_type: Some("at+jwt".into()),
            allowed_issuers: Some(HashSet::from_strings(&["https://as.example"])),
            allowed_audiences: Some(HashSet::from_strings(&["https://mcp.example/mcp"])),
            ..Default::default()
        };
        let claims = public.verify_token::<Value>(token, Some(options)).unwrap();
        assert_eq!(claims.subject.as_deref(), Some("cli"));
        assert_eq!(claims.custom["client_id"], "cli");
        assert_eq!(claims.custom["scope"], "mcp:tools b c");
        assert!(claims.jwt_id.is_some());
        let (iat, exp) = (claims.issued_at.unwrap(), claims.expires_at.unwrap());
        assert_eq!((exp - iat).as_secs(), 120);
        let header = Token::decode_metadata(token).unwrap();
        assert_eq!(header.key_id(), Some("k1"));

        let base = ["mint-token", "--jwk-file", "-", "--iss", "i", "--aud", "a"];
        assert_eq!(run_with(&base, "not a jwk").1, 1);
        assert_eq!(run_with(&[&base[..], &["--ttl", "0"]].concat(), &jwk).1, 2);
        assert_eq!(run_with(&base[..5], &jwk).1, 2);
    }
}
