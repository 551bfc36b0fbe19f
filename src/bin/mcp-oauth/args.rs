//! A small argument parser: `--name value`, `--name=value`, switches, positional arguments.

use std::str::FromStr;

use crate::Failure;

/// What a subcommand accepts (option names without the leading `--`).
pub struct Spec {
    /// Options that take a value; each may be repeated (see [`Args::value`]).
    pub values: &'static [&'static str],
    /// Options without a value.
    pub switches: &'static [&'static str],
    /// Names of the positional arguments, all required.
    pub positional: &'static [&'static str],
}

/// Parsed arguments of one subcommand.
#[derive(Debug, Default)]
pub struct Args {
    /// `-h` or `--help` was given: nothing else was checked.
    pub help: bool,
    options: Vec<(String, Option<String>)>,
    pub positional: Vec<String>,
}

pub fn parse(args: &[String], spec: &Spec) -> Result<Args, Failure> {
    let mut out = Args::default();
    if args
        .iter()
        .take_while(|a| *a != "--")
        .any(|a| a == "-h" || a == "--help")
    {
        out.help = true;
        return Ok(out);
    }
    let mut rest = args.iter();
    let mut options_ended = false;
    while let Some(arg) = rest.next() {
        if options_ended || arg == "-" || !arg.starts_with('-') {
            out.positional.push(arg.clone());
            continue;
        }
        if arg == "--" {
            options_ended = true;
            continue;
        }
        let Some(body) = arg.strip_prefix("--") else {
            return Err(Failure::usage(format!("unknown option {arg}")));
        };
        let (name, inline) = match body.split_once('=') {
            Some((name, value)) => (name, Some(value.to_string())),
            None => (body, None),
        };
        if spec.switches.contains(&name) {
            if inline.is_some() {
                return Err(Failure::usage(format!("--{name} takes no value")));
            }
            out.options.push((name.to_string(), None));
        } else if spec.values.contains(&name) {
            let value = match inline {
                Some(value) => value,
                // `--id --public` is a forgotten value, not an id; `--id=--x` says it is.
                None => match rest.next() {
                    Some(next) if !next.starts_with("--") => next.clone(),
                    _ => return Err(Failure::usage(format!("--{name} needs a value"))),
                },
            };
            out.options.push((name.to_string(), Some(value)));
        } else {
            return Err(Failure::usage(format!("unknown option --{name}")));
        }
    }
    if let Some(extra) = out.positional.get(spec.positional.len()) {
        return Err(Failure::usage(format!("unexpected argument {extra}")));
    }
    if let Some(missing) = spec.positional.get(out.positional.len()) {
        return Err(Failure::usage(format!("missing <{missing}>")));
    }
    Ok(out)
}

impl Args {
    /// Every value given for `--name`, in order.
    pub fn values(&self, name: &str) -> Vec<&str> {
        self.options
            .iter()
            .filter(|(n, _)| n == name)
            .filter_map(|(_, v)| v.as_deref())
            .collect()
    }

    /// The value of an option that may be given at most once.
    pub fn value(&self, name: &str) -> Result<Option<&str>, Failure> {
        match self.values(name).as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one)),
            _ => Err(Failure::usage(format!("--{name} is given more than once"))),
        }
    }

    pub fn required(&self, name: &str) -> Result<&str, Failure> {
        self.value(name)?
            .ok_or_else(|| Failure::usage(format!("--{name} is required")))
    }

    pub fn number<T: FromStr>(&self, name: &str) -> Result<Option<T>, Failure> {
        self.value(name)?
            .map(|v| {
                v.parse()
                    .map_err(|_| Failure::usage(format!("--{name}: {v} is not a valid number")))
            })
            .transpose()
    }

    pub fn switch(&self, name: &str) -> bool {
        self.options.iter().any(|(n, v)| n == name && v.is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: Spec = Spec {
        values: &["id", "scope", "ttl"],
        switches: &["public"],
        positional: &[],
    };

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn usage_of(result: Result<Args, Failure>) -> String {
        match result {
            Err(Failure::Usage(message)) => message,
            other => panic!("expected a usage error, got {other:?}"),
        }
    }

    #[test]
    fn values_switches_and_repeats() {
        let a = parse(
            &args(&["--id", "c1", "--scope=a", "--public", "--scope", "b c"]),
            &SPEC,
        )
        .unwrap();
        assert!(!a.help);
        assert_eq!(a.value("id").unwrap(), Some("c1"));
        assert_eq!(a.values("scope"), ["a", "b c"]);
        assert!(a.switch("public"));
        assert_eq!(a.value("ttl").unwrap(), None);
        assert!(a.value("scope").is_err());
        assert!(a.required("ttl").is_err());
        let a = parse(&args(&["--ttl", "60", "--id=--odd"]), &SPEC).unwrap();
        assert_eq!(a.number::<u64>("ttl").unwrap(), Some(60));
        assert_eq!(a.value("id").unwrap(), Some("--odd"));
        let a = parse(&args(&["--ttl", "soon"]), &SPEC).unwrap();
        assert!(matches!(a.number::<u64>("ttl"), Err(Failure::Usage(_))));
    }

    #[test]
    fn mistakes_are_usage_errors() {
        assert_eq!(
            usage_of(parse(&args(&["--nope"]), &SPEC)),
            "unknown option --nope"
        );
        assert_eq!(usage_of(parse(&args(&["-x"]), &SPEC)), "unknown option -x");
        assert_eq!(
            usage_of(parse(&args(&["--id"]), &SPEC)),
            "--id needs a value"
        );
        assert_eq!(
            usage_of(parse(&args(&["--id", "--public"]), &SPEC)),
            "--id needs a value"
        );
        assert_eq!(
            usage_of(parse(&args(&["--public=yes"]), &SPEC)),
            "--public takes no value"
        );
        assert_eq!(
            usage_of(parse(&args(&["stray"]), &SPEC)),
            "unexpected argument stray"
        );
    }

    #[test]
    fn positional_and_help() {
        let spec = Spec {
            values: &[],
            switches: &[],
            positional: &["file"],
        };
        assert_eq!(
            parse(&args(&["a.json"]), &spec).unwrap().positional,
            ["a.json"]
        );
        assert_eq!(parse(&args(&["-"]), &spec).unwrap().positional, ["-"]);
        assert_eq!(
            parse(&args(&["--", "--x"]), &spec).unwrap().positional,
            ["--x"]
        );
        assert_eq!(usage_of(parse(&args(&[]), &spec)), "missing <file>");
        // Help wins over everything else, even errors.
        assert!(parse(&args(&["--bogus", "--help"]), &spec).unwrap().help);
        assert!(parse(&args(&["-h", "--bogus"]), &spec).unwrap().help);
        assert!(parse(&args(&["--", "--help"]), &spec).unwrap().positional == ["--help"]);
    }
}
