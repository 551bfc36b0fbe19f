//! Client secrets, user passwords and other secrets, stored in the config as hashes.

use serde_json::{json, Map, Value};

use mcp_oauth_wasm::authz::redirect::check_redirect_uri;
use mcp_oauth_wasm::secret_hash::{
    SecretHash, DEFAULT_PBKDF2_ITERATIONS, MAX_PBKDF2_ITERATIONS, MIN_PBKDF2_ITERATIONS,
};

use crate::args::{Args, Spec};
use crate::{base64url, random_bytes, read_secret, Command, Failure, Input, Output};

pub const ADD_CLIENT: Command = Command {
    name: "add-client",
    summary: "a pre-registered client: its secret, and its entry for the config",
    help: "usage: mcp-oauth add-client --id ID [--name NAME] [--redirect-uri URI ...]
                          [--grant GRANT ...] [--scope S ...] [--public] [--skip-consent] [--json]

Makes a client for authorization_server.clients. A confidential client gets a new secret
(32 random bytes, base64url), printed this once; the config keeps only its hash. Prints
`client_id: ...` and `client_secret: ...` lines, then the JSON object for the config.

  --id ID              client_id (1-128 printable ASCII characters)
  --name NAME          client_name, shown on the consent page (default: the id)
  --redirect-uri URI   an exact redirect URI (https, loopback http, or com.example.app:/cb);
                       repeat for more
  --grant GRANT        authorization_code, refresh_token or client_credentials; repeat for
                       more (default: authorization_code and refresh_token, or
                       client_credentials for a confidential client without redirect URIs)
  --scope S            scopes the client may get (default: all); repeat or separate with spaces
  --public             a public client (PKCE only, no secret), like a desktop or CLI app
  --skip-consent       a trusted first-party client: no consent page
  --json               print one JSON object {client_id, client_secret, config} instead
",
    spec: Spec {
        values: &["id", "name", "redirect-uri", "grant", "scope"],
        switches: &["public", "skip-consent", "json"],
        positional: &[],
    },
    run: add_client,
};

const GRANT_TYPES: [&str; 3] = ["authorization_code", "refresh_token", "client_credentials"];

fn add_client(args: &Args, _input: &mut Input) -> Result<Output, Failure> {
    let id = args.required("id")?;
    if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Failure::usage(
            "--id must be 1-128 printable ASCII characters",
        ));
    }
    let public = args.switch("public");
    let redirect_uris = args.values("redirect-uri");
    for uri in &redirect_uris {
        check_redirect_uri(uri)
            .map_err(|r| Failure::usage(format!("--redirect-uri {uri}: {r}")))?;
    }
    let mut grants = args.values("grant");
    if let Some(bad) = grants.iter().find(|g| !GRANT_TYPES.contains(g)) {
        return Err(Failure::usage(format!(
            "--grant {bad}: use authorization_code, refresh_token or client_credentials"
        )));
    }
    if grants.is_empty() {
        grants = if !public && redirect_uris.is_empty() {
            vec!["client_credentials"]
        } else {
            vec!["authorization_code", "refresh_token"]
        };
    }
    if public && grants.contains(&"client_credentials") {
        return Err(Failure::usage(
            "client_credentials needs a confidential client (without --public)",
        ));
    }
    if grants.contains(&"authorization_code") && redirect_uris.is_empty() {
        return Err(Failure::usage(
            "authorization_code needs at least one --redirect-uri",
        ));
    }
    let scopes = scope_list(args)?;

    let secret = if public {
        None
    } else {
        Some(base64url(&random_bytes::<32>()?))
    };
    let mut config = Map::new();
    config.insert("client_id".into(), json!(id));
    if let Some(name) = args.value("name")? {
        config.insert("client_name".into(), json!(name));
    }
    if let Some(secret) = &secret {
        let hash = SecretHash::sha256_of(secret.as_bytes());
        config.insert("client_secret_hash".into(), json!(hash));
    }
    if !redirect_uris.is_empty() {
        config.insert("redirect_uris".into(), json!(redirect_uris));
    }
    config.insert("grant_types".into(), json!(grants));
    if !scopes.is_empty() {
        config.insert("scopes".into(), json!(scopes));
    }
    if args.switch("skip-consent") {
        config.insert("skip_consent".into(), json!(true));
    }
    let config = Value::Object(config);

    let stdout = if args.switch("json") {
        json!({ "client_id": id, "client_secret": secret, "config": config }).to_string() + "\n"
    } else {
        let mut text = format!("client_id: {id}\n");
        if let Some(secret) = &secret {
            text.push_str(&format!("client_secret: {secret}\n"));
        }
        let pretty = serde_json::to_string_pretty(&config)
            .map_err(|e| Failure::error(format!("cannot print the config: {e}")))?;
        text + &pretty + "\n"
    };
    let stderr = if secret.is_some() {
        "mcp-oauth: the client secret is shown only this once; the config keeps only its hash.\n\
         Add the JSON object to authorization_server.clients in the plugin config.\n"
    } else {
        "mcp-oauth: a public client (no secret). Add the JSON object to\n\
         authorization_server.clients in the plugin config.\n"
    };
    Ok(Output {
        stdout,
        stderr: stderr.into(),
    })
}

/// The `--scope` values, split at spaces; each a scope-token of RFC 6749 §3.3.
fn scope_list(args: &Args) -> Result<Vec<&str>, Failure> {
    let scopes: Vec<&str> = args
        .values("scope")
        .into_iter()
        .flat_map(str::split_whitespace)
        .collect();
    for scope in &scopes {
        if !scope
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
        {
            return Err(Failure::usage(format!(
                "--scope {scope}: not a valid scope name"
            )));
        }
    }
    Ok(scopes)
}

pub const HASH_PASSWORD: Command = Command {
    name: "hash-password",
    summary: "hash a user's password (pbkdf2-sha256) for authorization_server.users",
    help: "usage: mcp-oauth hash-password [--iterations N]

Reads a password from the first line of standard input (at a terminal: typed twice, not
shown) and prints its pbkdf2-sha256$<iterations>$<salt>$<hash> with a new random 16-byte salt,
for the password_hash of an entry in authorization_server.users.

  --iterations N   PBKDF2 iterations, 10000 to 2000000 (default 100000); every sign-in pays
                   them on an Envoy worker thread
",
    spec: Spec {
        values: &["iterations"],
        switches: &[],
        positional: &[],
    },
    run: hash_password,
};

fn hash_password(args: &Args, input: &mut Input) -> Result<Output, Failure> {
    let iterations = args
        .number("iterations")?
        .unwrap_or(DEFAULT_PBKDF2_ITERATIONS);
    if !(MIN_PBKDF2_ITERATIONS..=MAX_PBKDF2_ITERATIONS).contains(&iterations) {
        return Err(Failure::usage(format!(
            "--iterations must be between {MIN_PBKDF2_ITERATIONS} and {MAX_PBKDF2_ITERATIONS}"
        )));
    }
    let password = read_secret(input, "password", true)?;
    let salt = random_bytes::<16>()?;
    Ok(Output::stdout(
        SecretHash::pbkdf2_of(&password, &salt, iterations) + "\n",
    ))
}

pub const HASH_SECRET: Command = Command {
    name: "hash-secret",
    summary: "hash a secret (sha256), e.g. an initial access token for registration",
    help: "usage: mcp-oauth hash-secret [--generate]

Reads a secret from the first line of standard input and prints its sha256$<base64url>, e.g.
for authorization_server.registration.initial_access_token_hashes.

  --generate   instead, make a new secret (32 random bytes, base64url) and print
               `secret: ...` and `hash: sha256$...`
",
    spec: Spec {
        values: &[],
        switches: &["generate"],
        positional: &[],
    },
    run: hash_secret,
};

fn hash_secret(args: &Args, input: &mut Input) -> Result<Output, Failure> {
    if args.switch("generate") {
        let secret = base64url(&random_bytes::<32>()?);
        let hash = SecretHash::sha256_of(secret.as_bytes());
        return Ok(Output {
            stdout: format!("secret: {secret}\nhash: {hash}\n"),
            stderr:
                "mcp-oauth: the secret is shown only this once; the config keeps only its hash.\n"
                    .into(),
        });
    }
    let secret = read_secret(input, "secret", false)?;
    let mut output = Output::stdout(SecretHash::sha256_of(&secret) + "\n");
    if secret.len() < 20 {
        output.stderr = "mcp-oauth: warning: a short secret can be guessed from its sha256 hash; \
                         use a long random one (hash-secret --generate)\n"
            .into();
    }
    Ok(output)
}

#[cfg(test)]
mod tests {
    use crate::tests::run_with;
    use mcp_oauth_wasm::secret_hash::SecretHash;
    use serde_json::{json, Value};

    /// The value after `name: ` on its line.
    fn field<'a>(text: &'a str, name: &str) -> &'a str {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap()
    }

    #[test]
    fn confidential_client_secret_verifies() {
        let (out, code) = run_with(
            &[
                "add-client",
                "--id",
                "app",
                "--name",
                "The App",
                "--redirect-uri",
                "https://app.example/cb",
                "--redirect-uri=http://127.0.0.1/cb",
                "--scope",
                "mcp:tools other",
            ],
            "",
        );
        assert_eq!(code, 0, "{}", out.stderr);
        assert_eq!(field(&out.stdout, "client_id"), "app");
        let secret = field(&out.stdout, "client_secret");
        assert_eq!(secret.len(), 43);
        assert!(!out.stderr.contains(secret));
        let json_start = out.stdout.find('{').unwrap();
        let config: Value = serde_json::from_str(&out.stdout[json_start..]).unwrap();
        let hash = SecretHash::parse(config["client_secret_hash"].as_str().unwrap()).unwrap();
        assert!(hash.verify(secret.as_bytes()));
        assert!(!hash.verify(b"other"));
        assert_eq!(config["client_name"], "The App");
        assert_eq!(
            config["grant_types"],
            json!(["authorization_code", "refresh_token"])
        );
        assert_eq!(config["scopes"], json!(["mcp:tools", "other"]));
        assert_eq!(
            config["redirect_uris"],
            json!(["https://app.example/cb", "http://127.0.0.1/cb"])
        );
    }

    #[test]
    fn json_output_and_defaults() {
        let (out, code) = run_with(&["add-client", "--id", "svc", "--json"], "");
        assert_eq!(code, 0, "{}", out.stderr);
        assert_eq!(out.stdout.lines().count(), 1);
        let all: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(all["client_id"], "svc");
        assert_eq!(all["config"]["grant_types"], json!(["client_credentials"]));
        let hash = SecretHash::parse(all["config"]["client_secret_hash"].as_str().unwrap());
        assert!(hash
            .unwrap()
            .verify(all["client_secret"].as_str().unwrap().as_bytes()));

        let line = ["add-client", "--id", "cli", "--public", "--json"];
        let (out, code) = run_with(
            &[&line[..], &["--redirect-uri", "http://localhost/cb"]].concat(),
            "",
        );
        assert_eq!(code, 0, "{}", out.stderr);
        let all: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(all["client_secret"], Value::Null);
        assert!(all["config"].get("client_secret_hash").is_none());
    }

    #[test]
    fn impossible_clients_are_refused() {
        for line in [
            &["add-client", "--id", "c", "--public"][..],
            &["add-client", "--id", "c", "--grant", "authorization_code"],
            &[
                "add-client",
                "--id",
                "c",
                "--public",
                "--grant",
                "client_credentials",
                "--redirect-uri",
                "https://a.example/cb",
            ],
            &["add-client", "--id", "c", "--grant", "password"],
            &[
                "add-client",
                "--id",
                "c",
                "--redirect-uri",
                "http://evil.example/cb",
            ],
            &[
                "add-client",
                "--id",
                "c",
                "--redirect-uri",
                "https://a.example/cb#x",
            ],
            &["add-client", "--id", "c d"],
            &["add-client", "--id", "c", "--scope", "a\"b"],
        ] {
            let (out, code) = run_with(line, "");
            assert_eq!(code, 2, "{line:?}: {}", out.stdout);
            assert!(!out.stdout.contains("client_secret"), "{line:?}");
        }
    }

    #[test]
    fn password_hash_verifies() {
        let (out, code) = run_with(
            &["hash-password", "--iterations", "10000"],
            "pass word\nignored\n",
        );
        assert_eq!(code, 0, "{}", out.stderr);
        assert!(out.stdout.starts_with("pbkdf2-sha256$10000$"));
        let hash = SecretHash::parse(out.stdout.trim()).unwrap();
        assert!(hash.verify(b"pass word"));
        assert!(!hash.verify(b"pass word\n"));
        let SecretHash::Pbkdf2 { salt, .. } = hash else {
            panic!("not pbkdf2")
        };
        assert_eq!(salt.len(), 16);

        assert_eq!(run_with(&["hash-password"], "\n").1, 1);
        assert_eq!(run_with(&["hash-password"], "").1, 1);
        assert_eq!(
            run_with(&["hash-password", "--iterations", "9999"], "pw").1,
            2
        );
    }

    #[test]
    fn default_iterations() {
        let (out, code) = run_with(&["hash-password"], "pw\r\n");
        assert_eq!(code, 0, "{}", out.stderr);
        assert!(out.stdout.starts_with("pbkdf2-sha256$100000$"));
        assert!(SecretHash::parse(out.stdout.trim()).unwrap().verify(b"pw"));
    }

    #[test]
    fn secret_hash_verifies() {
        let (out, code) = run_with(&["hash-secret"], "an-initial-access-token-value\n");
        assert_eq!(code, 0);
        assert!(out.stderr.is_empty());
        let hash = SecretHash::parse(out.stdout.trim()).unwrap();
        assert!(hash.verify(b"an-initial-access-token-value"));
        assert!(run_with(&["hash-secret"], "short")
            .0
            .stderr
            .contains("warning"));

        let (out, code) = run_with(&["hash-secret", "--generate"], "");
        assert_eq!(code, 0);
        let hash = SecretHash::parse(field(&out.stdout, "hash")).unwrap();
        assert!(hash.verify(field(&out.stdout, "secret").as_bytes()));
    }

    /// Everything the tool makes, put together, is a config the filter loads.
    #[test]
    fn generated_values_make_a_config_the_filter_loads() {
        let out = |line: &[&str], stdin: &str| {
            let (out, code) = run_with(line, stdin);
            assert_eq!(code, 0, "{line:?}: {}", out.stderr);
            out.stdout
        };
        let signing: Value = serde_json::from_str(&out(&["gen-signing-key"], "")).unwrap();
        let sealing: Value = serde_json::from_str(&out(&["gen-sealing-key"], "")).unwrap();
        let client: Value = serde_json::from_str(&out(
            &[
                "add-client",
                "--id",
                "app",
                "--redirect-uri",
                "https://app.example/cb",
                "--json",
            ],
            "",
        ))
        .unwrap();
        let service: Value =
            serde_json::from_str(&out(&["add-client", "--id", "svc", "--json"], "")).unwrap();
        let password = out(&["hash-password", "--iterations", "10000"], "pw");
        let token_hash = out(&["hash-secret"], "an-initial-access-token-value");
        let config = json!({
            "resource": "https://mcp.example.com/mcp",
            "authorization_server": {
                "signing_keys": [{ "jwk": signing }],
                "sealing_keys": [sealing],
                "clients": [client["config"], service["config"]],
                "users": [{ "username": "alice", "password_hash": password.trim() }],
                "registration": { "initial_access_token_hashes": [token_hash.trim()] },
            }
        });
        let report = out(&["check-config", "-"], &config.to_string());
        assert!(report.contains("OK"), "{report}");
        assert!(report.contains("2 client(s) and 1 user(s)"), "{report}");
    }
}
