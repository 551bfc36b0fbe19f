//! `mcp-oauth`: the native companion of the filter. It makes keys, client secrets and password
//! hashes for the plugin config and checks a config with the filter's own code, so a config it
//! accepts is a config Envoy will load.
//!
//! Output a script may read goes to stdout; notes for people go to stderr. Exit codes: 0 done,
//! 1 error, 2 usage error.

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod args;
mod keys;
mod secrets;

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use args::{Args, Spec};

/// Why a subcommand did not succeed.
#[derive(Debug, PartialEq, Eq)]
pub enum Failure {
    /// The command line is wrong (exit 2).
    Usage(String),
    /// The work failed (exit 1).
    Error(String),
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure::Usage(message.into())
    }
    pub fn error(message: impl Into<String>) -> Failure {
        Failure::Error(message.into())
    }
}

/// What a subcommand prints.
#[derive(Debug, Default)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
}

/// Standard input, and whether a person types it.
pub struct Input<'a> {
    pub reader: &'a mut dyn BufRead,
    pub terminal: bool,
}

struct Command {
    name: &'static str,
    summary: &'static str,
    /// Starts with the usage line.
    help: &'static str,
    spec: Spec,
    run: fn(&Args, &mut Input) -> Result<Output, Failure>,
}

const COMMANDS: &[Command] = &[
    keys::GEN_SIGNING_KEY,
    keys::GEN_SEALING_KEY,
    secrets::ADD_CLIENT,
    secrets::HASH_PASSWORD,
    secrets::HASH_SECRET,
    keys::MINT_TOKEN,
    CHECK_CONFIG,
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let stdin = std::io::stdin();
    let terminal = stdin.is_terminal();
    let mut lock = stdin.lock();
    let mut input = Input {
        reader: &mut lock,
        terminal,
    };
    let (output, code) = run(&args, &mut input);
    // A closed pipe (`| head`) is not worth a panic or a message.
    let _ = std::io::stdout().write_all(output.stdout.as_bytes());
    let _ = std::io::stderr().write_all(output.stderr.as_bytes());
    ExitCode::from(code)
}

/// Runs one command line; returns what to print and the exit code.
fn run(args: &[String], input: &mut Input) -> (Output, u8) {
    let Some((name, rest)) = args.split_first() else {
        return (Output::stderr(usage()), 2);
    };
    if matches!(name.as_str(), "-h" | "--help" | "help") {
        return (Output::stdout(usage()), 0);
    }
    let Some(command) = COMMANDS.iter().find(|c| c.name == name) else {
        let message = format!("mcp-oauth: unknown command {name}\n\n{}", usage());
        return (Output::stderr(message), 2);
    };
    let result = args::parse(rest, &command.spec).and_then(|parsed| {
        if parsed.help {
            Ok(Output::stdout(command.help.to_string()))
        } else {
            (command.run)(&parsed, input)
        }
    });
    match result {
        Ok(output) => (output, 0),
        Err(Failure::Usage(message)) => {
            // The usage lines: the help text up to its first blank line.
            let usage = command.help.split("\n\n").next().unwrap_or_default();
            let text = format!(
                "mcp-oauth {}: {message}\n{usage}\n(mcp-oauth {} --help for more)\n",
                command.name, command.name
            );
            (Output::stderr(text), 2)
        }
        Err(Failure::Error(message)) => (
            Output::stderr(format!("mcp-oauth {}: {message}\n", command.name)),
            1,
        ),
    }
}

fn usage() -> String {
    let mut text = String::from(
        "usage: mcp-oauth <command> [options]   (mcp-oauth <command> --help for its options)\n\n",
    );
    for c in COMMANDS {
        text.push_str(&format!("  {:<17}{}\n", c.name, c.summary));
    }
    text
}

impl Output {
    pub fn stdout(text: impl Into<String>) -> Output {
        Output {
            stdout: text.into(),
            stderr: String::new(),
        }
    }
    pub fn stderr(text: impl Into<String>) -> Output {
        Output {
            stdout: String::new(),
            stderr: text.into(),
        }
    }
}

/// All of standard input, as text.
pub fn read_all(input: &mut Input) -> Result<String, Failure> {
    let mut text = String::new();
    input
        .reader
        .read_to_string(&mut text)
        .map_err(|e| Failure::error(format!("cannot read standard input: {e}")))?;
    Ok(text)
}

/// The first line of standard input, without its line ending.
pub fn read_line(input: &mut Input) -> Result<Vec<u8>, Failure> {
    let mut line = Vec::new();
    input
        .reader
        .read_until(b'\n', &mut line)
        .map_err(|e| Failure::error(format!("cannot read standard input: {e}")))?;
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    Ok(line)
}

/// A secret from standard input: the first line, or typed without echo at a terminal (twice,
/// with `confirm`). Refuses an empty one.
pub fn read_secret(input: &mut Input, what: &str, confirm: bool) -> Result<Vec<u8>, Failure> {
    let secret = if input.terminal {
        let echo_off = set_terminal_echo(false);
        let typed = prompt(input, &format!("{what}: ")).and_then(|first| {
            if confirm && prompt(input, &format!("{what} again: "))? != first {
                return Err(Failure::error(format!("the two {what}s differ")));
            }
            Ok(first)
        });
        if echo_off {
            set_terminal_echo(true);
        }
        typed?
    } else {
        read_line(input)?
    };
    if secret.is_empty() {
        return Err(Failure::error(format!(
            "the {what} is empty (it is read from the first line of standard input)"
        )));
    }
    Ok(secret)
}

fn prompt(input: &mut Input, text: &str) -> Result<Vec<u8>, Failure> {
    eprint!("{text}");
    let line = read_line(input);
    eprintln!();
    line
}

/// `stty [-]echo` on the terminal on standard input; false if that did not work.
fn set_terminal_echo(on: bool) -> bool {
    std::process::Command::new("stty")
        .arg(if on { "echo" } else { "-echo" })
        .status()
        .is_ok_and(|s| s.success())
}

pub fn random_bytes<const N: usize>() -> Result<[u8; N], Failure> {
    mcp_oauth_wasm::random::bytes::<N>()
        .ok_or_else(|| Failure::error("the operating system gave no random bytes"))
}

pub fn random_hex<const N: usize>() -> Result<String, Failure> {
    Ok(random_bytes::<N>()?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

pub fn base64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

const CHECK_CONFIG: Command = Command {
    name: "check-config",
    summary: "check a plugin config (JSON) the way the filter does at load time",
    help: "usage: mcp-oauth check-config <plugin-config.json | ->

Checks a plugin config (JSON; `-` reads standard input) with the filter's own code and prints
the first error with its field path. Environment variables named in *_env fields are read
from this process's environment, as the filter reads them from the Wasm VM's.
",
    spec: Spec {
        values: &[],
        switches: &[],
        positional: &["plugin-config.json"],
    },
    run: check_config,
};

fn check_config(args: &Args, input: &mut Input) -> Result<Output, Failure> {
    let path = args.positional.first().map_or("-", String::as_str);
    let text = if path == "-" {
        read_all(input)?.into_bytes()
    } else {
        std::fs::read(path).map_err(|e| Failure::error(format!("cannot read {path}: {e}")))?
    };
    let env = |name: &str| std::env::var(name).ok();
    let (config, verifier) = mcp_oauth_wasm::config::parse(&text, &env)
        .map_err(|e| Failure::error(format!("{path}: {e}")))?;
    let mut line = format!(
        "{path}: OK — resource {}, {} issuer(s), {} route(s)",
        config.resource,
        verifier.issuers.len(),
        config.routes.len()
    );
    if let Some(server) = &config.authorization_server {
        line.push_str(&format!(
            ", authorization server {} with {} client(s) and {} user(s)",
            server.issuer,
            server.clients.len(),
            server.users.len()
        ));
    }
    Ok(Output::stdout(line + "\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a command line with `stdin` as standard input.
    pub fn run_with(line: &[&str], stdin: &str) -> (Output, u8) {
        let args: Vec<String> = line.iter().map(|s| s.to_string()).collect();
        let mut reader = stdin.as_bytes();
        let mut input = Input {
            reader: &mut reader,
            terminal: false,
        };
        run(&args, &mut input)
    }

    #[test]
    fn usage_help_and_exit_codes() {
        let (out, code) = run_with(&[], "");
        assert_eq!(code, 2);
        assert!(out.stderr.contains("gen-signing-key"));
        let (out, code) = run_with(&["--help"], "");
        assert_eq!(code, 0);
        for c in COMMANDS {
            assert!(out.stdout.contains(c.name));
            let (help, code) = run_with(&[c.name, "--help"], "");
            assert_eq!(code, 0);
            assert!(help
                .stdout
                .starts_with(&format!("usage: mcp-oauth {}", c.name)));
        }
        let (out, code) = run_with(&["frobnicate"], "");
        assert_eq!(code, 2);
        assert!(out
            .stderr
            .starts_with("mcp-oauth: unknown command frobnicate"));
        let (out, code) = run_with(&["add-client"], "");
        assert_eq!(code, 2);
        assert!(out.stderr.contains("--id is required"));
        assert!(out.stderr.contains("usage: mcp-oauth add-client"));
        let (out, code) = run_with(&["hash-secret"], "\n");
        assert_eq!(code, 1);
        assert!(out.stderr.contains("empty"));
    }

    #[test]
    fn first_line_without_its_ending() {
        for (stdin, line) in [
            ("pw\r\nmore", "pw"),
            ("p w \n", "p w "),
            ("pw", "pw"),
            ("", ""),
        ] {
            let mut reader = stdin.as_bytes();
            let mut input = Input {
                reader: &mut reader,
                terminal: false,
            };
            assert_eq!(read_line(&mut input).unwrap(), line.as_bytes());
        }
    }

    #[test]
    fn check_config_reads_stdin_and_reports_errors() {
        let (out, code) = run_with(&["check-config", "-"], "{\"resource\": 1}");
        assert_eq!(code, 1);
        assert!(
            out.stderr.contains("config error at resource"),
            "{}",
            out.stderr
        );
        let (_, code) = run_with(&["check-config", "/nonexistent/config.json"], "");
        assert_eq!(code, 1);
        let (_, code) = run_with(&["check-config"], "");
        assert_eq!(code, 2);
    }
}
