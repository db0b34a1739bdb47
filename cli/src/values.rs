//! Parsers for the values people type after flags: sizes, durations, `KEY=VALUE` pairs,
//! secret environment variables and numbers.
//!
//! Each parser is a plain `fn(&str) -> Result<T, String>` so clap can use it as a value
//! parser. The error text says what was expected and gives examples; it does not name the
//! flag, because the caller ([`crate::usage_message`]) prefixes it, which turns a bad value
//! into one line such as `error: --memory: cannot parse "12Q" as a size (examples: 256M, 1G)`.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::time::Duration;

/// Parses a size in bytes the way `docker run --memory` does: a number with an optional
/// binary unit. `K`, `M`, `G` and `T` are powers of 1024 whatever the spelling (`M`, `Mi`,
/// `MB`, `MiB`, any case), because a memory limit of "256M" means 256 MiB to everyone who
/// has used Docker. A fraction is allowed with a unit (`1.5G`) and rounded down to a byte.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || format!("cannot parse {text:?} as a size (examples: 256M, 1G)");
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let shift = match unit.trim_start().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "ki" | "kib" => 10,
        "m" | "mb" | "mi" | "mib" => 20,
        "g" | "gb" | "gi" | "gib" => 30,
        "t" | "tb" | "ti" | "tib" => 40,
        _ => return Err(bad()),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return Err(bad());
    }
    if !fraction.is_empty() && shift == 0 {
        return Err(format!(
            "cannot parse {text:?} as a size: a number of bytes must be whole (examples: 256M, 1G)"
        ));
    }
    let too_large = || format!("size {text:?} is too large");
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| too_large())?
    };
    // Extra digits beyond 18 cannot change the result by a whole byte at these units, and
    // keeping at most 18 leaves u128 plenty of room for the multiplication.
    let fraction = &fraction[..fraction.len().min(18)];
    let fraction_bytes = if fraction.is_empty() {
        0
    } else {
        let digits: u128 = fraction.parse().map_err(|_| bad())?;
        let exponent = u32::try_from(fraction.len()).map_err(|_| bad())?;
        (digits << shift) / 10u128.pow(exponent)
    };
    let bytes = whole
        .checked_mul(1u128 << shift)
        .and_then(|b| b.checked_add(fraction_bytes))
        .ok_or_else(too_large)?;
    u64::try_from(bytes).map_err(|_| too_large())
}

/// Parses a duration such as `30s`, `5m`, `1h30m` or `30d` (humantime syntax).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text.trim()).map_err(|e| {
        format!("cannot parse {text:?} as a duration (examples: 30s, 5m, 1h30m): {e}")
    })?;
    // The protocol carries seconds as an i64; refuse what it cannot hold rather than clip.
    if i64::try_from(duration.as_secs()).is_err() {
        return Err(format!("duration {text:?} is too long"));
    }
    Ok(duration)
}

/// A setting given a value, or dropped (`never`, `none`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting<T> {
    /// Set it to this.
    Set(T),
    /// Drop it.
    Clear,
}

/// Parses a default expiry: a duration as [`parse_duration`] reads it, or `never`.
pub fn parse_expiry(text: &str) -> Result<Setting<Duration>, String> {
    if text.trim() == "never" {
        return Ok(Setting::Clear);
    }
    parse_duration(text)
        .map(Setting::Set)
        .map_err(|e| format!("{e}; or `never` for no expiry"))
}

/// Parses a limit: a whole number, or `none`.
pub fn parse_limit(text: &str) -> Result<Setting<u32>, String> {
    match text.trim() {
        "none" => Ok(Setting::Clear),
        number => number.parse().map(Setting::Set).map_err(|_| {
            format!("cannot parse {text:?} as a limit (examples: 10, 0, or `none` for no limit)")
        }),
    }
}

/// Converts a duration accepted by [`parse_duration`] to its protocol form.
pub fn to_proto_duration(duration: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(duration.as_secs()).unwrap_or(i64::MAX),
        // Always below 10^9, so it fits.
        nanos: i32::try_from(duration.subsec_nanos()).unwrap_or(0),
    }
}

/// Parses a CPU count such as `0.5` or `2`. The server checks the allowed range.
pub fn parse_cpus(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(cpus) if cpus.is_finite() => Ok(cpus),
        _ => Err(format!(
            "cannot parse {text:?} as a number of CPUs (examples: 0.5, 2)"
        )),
    }
}

/// Parses a process count limit such as `100`. The server checks the allowed range.
pub fn parse_pids(text: &str) -> Result<i64, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("cannot parse {text:?} as a number of processes (example: 100)"))
}

/// Parses a priority such as `10` or `-5`. The server checks the allowed range.
pub fn parse_priority(text: &str) -> Result<i32, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("cannot parse {text:?} as a priority (examples: 10, -5)"))
}

/// How `berth priority` changes a request's priority adjustment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PriorityChange {
    /// Add this (negative lowers) to the current adjustment.
    Add(i32),
    /// Replace the adjustment with this.
    Set(i32),
}

/// Parses `+N` / `-N` (relative) or `N` / `=N` (absolute) for `berth priority`.
pub fn parse_priority_change(text: &str) -> Result<PriorityChange, String> {
    let trimmed = text.trim();
    let number = |digits: &str| {
        digits.parse::<i32>().map_err(|_| {
            format!("cannot parse {text:?} as a priority change (examples: +10, -5, 3, =-2)")
        })
    };
    if let Some(rest) = trimmed.strip_prefix('+') {
        if rest.starts_with(['+', '-']) {
            return Err(format!(
                "cannot parse {text:?} as a priority change (examples: +10, -5, 3, =-2)"
            ));
        }
        number(rest).map(PriorityChange::Add)
    } else if trimmed.starts_with('-') {
        number(trimmed).map(PriorityChange::Add)
    } else if let Some(rest) = trimmed.strip_prefix('=') {
        number(rest).map(PriorityChange::Set)
    } else {
        number(trimmed).map(PriorityChange::Set)
    }
}

/// A `KEY=VALUE` pair from the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    /// Everything before the first `=`; never empty.
    pub key: String,
    /// Everything after the first `=` (may itself contain `=`, may be empty).
    pub value: String,
}

/// Parses `KEY=VALUE`, splitting at the first `=`. Keys are otherwise checked by the server,
/// which knows the rules for each kind (environment names, worker labels).
pub fn parse_key_value(text: &str) -> Result<KeyValue, String> {
    match text.split_once('=') {
        Some(("", _)) => Err(format!("{text:?} has an empty key (expected KEY=VALUE)")),
        Some((key, value)) => Ok(KeyValue {
            key: key.to_owned(),
            value: value.to_owned(),
        }),
        None => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

/// Collects pairs into a map; a key given twice keeps its last value, as in `docker run`.
pub fn into_map(pairs: &[KeyValue]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|pair| (pair.key.clone(), pair.value.clone()))
        .collect()
}

/// A `--secret-env` argument: `KEY=VALUE`, or just `KEY` to take the value from the CLI's
/// own environment. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretEnv {
    /// The variable's name.
    pub key: String,
    /// The value given on the command line; `None` means "read it from the environment".
    value: Option<String>,
}

impl fmt::Debug for SecretEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = if self.value.is_some() {
            "[REDACTED]"
        } else {
            "<from environment>"
        };
        write!(f, "SecretEnv({}={source})", self.key)
    }
}

/// Parses `KEY=VALUE` or `KEY`.
pub fn parse_secret_env(text: &str) -> Result<SecretEnv, String> {
    match text.split_once('=') {
        Some(("", _)) => Err("empty key (expected KEY=VALUE or KEY)".to_owned()),
        Some((key, value)) => Ok(SecretEnv {
            key: key.to_owned(),
            value: Some(value.to_owned()),
        }),
        None if text.is_empty() => Err("empty key (expected KEY=VALUE or KEY)".to_owned()),
        None => Ok(SecretEnv {
            key: text.to_owned(),
            value: None,
        }),
    }
}

/// Gives every secret its value, looking up bare `KEY`s with `lookup` (the process
/// environment in real use). A variable that is missing or not UTF-8 is an error rather
/// than an empty secret, because a job that silently gets no password fails far from the
/// cause. A key given twice keeps its last value.
pub fn resolve_secret_env(
    secrets: &[SecretEnv],
    lookup: impl Fn(&str) -> Option<OsString>,
) -> Result<HashMap<String, String>, String> {
    let mut resolved = HashMap::with_capacity(secrets.len());
    for secret in secrets {
        let value = match &secret.value {
            Some(value) => value.clone(),
            None => {
                let key = &secret.key;
                lookup(key)
                    .ok_or_else(|| {
                        format!("--secret-env {key}: environment variable {key} is not set")
                    })?
                    .into_string()
                    .map_err(|_| {
                        format!("--secret-env {key}: environment variable {key} is not valid UTF-8")
                    })?
            }
        };
        resolved.insert(secret.key.clone(), value);
    }
    Ok(resolved)
}

/// A network to attach, as `--network NAME[:ALIAS,...]` gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkArg {
    pub name: String,
    pub aliases: Vec<String>,
}

/// Parses `NAME` or `NAME:ALIAS,ALIAS`. Names and aliases are otherwise checked by the
/// server.
pub fn parse_network(text: &str) -> Result<NetworkArg, String> {
    let (name, aliases) = match text.split_once(':') {
        None => (text, Vec::new()),
        Some((name, list)) => {
            let aliases: Vec<String> = list.split(',').map(str::to_owned).collect();
            if aliases.iter().any(String::is_empty) {
                return Err(format!(
                    "{text:?} has an empty alias (expected NAME or NAME:ALIAS,ALIAS)"
                ));
            }
            (name, aliases)
        }
    };
    if name.is_empty() {
        return Err(format!(
            "{text:?} has no network name (expected NAME or NAME:ALIAS,ALIAS)"
        ));
    }
    Ok(NetworkArg {
        name: name.to_owned(),
        aliases,
    })
}

/// The networks as the protocol takes them: a single network without aliases goes in
/// `network` (as it always did), anything more in `networks`.
pub fn networks_to_proto(
    networks: &[NetworkArg],
) -> (String, Vec<berth_common::proto::NetworkAttachment>) {
    match networks {
        [] => (String::new(), Vec::new()),
        [only] if only.aliases.is_empty() => (only.name.clone(), Vec::new()),
        many => (
            String::new(),
            many.iter()
                .map(|n| berth_common::proto::NetworkAttachment {
                    name: n.name.clone(),
                    aliases: n.aliases.clone(),
                })
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_binary_units_in_any_spelling() {
        const MIB: u64 = 1 << 20;
        assert_eq!(parse_size("1048576"), Ok(MIB));
        assert_eq!(parse_size("256M"), Ok(256 * MIB));
        assert_eq!(parse_size("256m"), Ok(256 * MIB));
        assert_eq!(parse_size("512Mi"), Ok(512 * MIB));
        assert_eq!(parse_size("512MB"), Ok(512 * MIB));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("1gib"), Ok(1 << 30));
        assert_eq!(parse_size("2T"), Ok(2 << 40));
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("100B"), Ok(100));
        assert_eq!(parse_size("1 GiB"), Ok(1 << 30));
    }

    #[test]
    fn sizes_accept_fractions_rounded_down() {
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("0.5K"), Ok(512));
        assert_eq!(parse_size(".5K"), Ok(512));
        assert_eq!(parse_size("0.001K"), Ok(1));
    }

    #[test]
    fn bad_sizes_are_refused_with_examples() {
        assert_eq!(
            parse_size("12Q"),
            Err(r#"cannot parse "12Q" as a size (examples: 256M, 1G)"#.to_owned())
        );
        for bad in ["", "M", "-1M", "1..5G", "1.5", "1.2.3M", "1e6", "12 M B"] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn sizes_beyond_u64_are_too_large() {
        assert_eq!(
            parse_size("16777216T"),
            Err(r#"size "16777216T" is too large"#.to_owned())
        );
        assert_eq!(parse_size("16777215T"), Ok(16_777_215 << 40));
        assert!(parse_size("99999999999999999999999999999999999999999").is_err());
    }

    #[test]
    fn durations_use_humantime() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        let error = parse_duration("soon").expect_err("should fail");
        assert!(
            error.starts_with(r#"cannot parse "soon" as a duration (examples: 30s"#),
            "{error}"
        );
    }

    #[test]
    fn proto_durations_keep_seconds_and_nanos() {
        let proto = to_proto_duration(Duration::from_millis(1500));
        assert_eq!((proto.seconds, proto.nanos), (1, 500_000_000));
    }

    #[test]
    fn numbers_are_checked_locally_only_for_form() {
        assert_eq!(parse_cpus("0.5"), Ok(0.5));
        assert!(parse_cpus("half").is_err());
        assert!(parse_cpus("NaN").is_err());
        assert_eq!(parse_pids("100"), Ok(100));
        assert!(parse_pids("many").is_err());
        assert_eq!(parse_priority("-5"), Ok(-5));
        assert!(parse_priority("high").is_err());
    }

    #[test]
    fn key_value_splits_at_the_first_equals_sign() {
        assert_eq!(
            parse_key_value("A=1"),
            Ok(KeyValue {
                key: "A".into(),
                value: "1".into()
            })
        );
        assert_eq!(
            parse_key_value("URL=http://x/?a=b"),
            Ok(KeyValue {
                key: "URL".into(),
                value: "http://x/?a=b".into()
            })
        );
        assert_eq!(
            parse_key_value("EMPTY="),
            Ok(KeyValue {
                key: "EMPTY".into(),
                value: String::new()
            })
        );
    }

    #[test]
    fn key_value_without_equals_or_key_is_refused() {
        assert_eq!(
            parse_key_value("A"),
            Err(r#"expected KEY=VALUE, got "A""#.to_owned())
        );
        assert_eq!(
            parse_key_value("=1"),
            Err(r#""=1" has an empty key (expected KEY=VALUE)"#.to_owned())
        );
    }

    #[test]
    fn repeated_keys_keep_the_last_value() {
        let pairs = [
            parse_key_value("A=1").expect("should succeed"),
            parse_key_value("A=2").expect("should succeed"),
        ];
        assert_eq!(into_map(&pairs).get("A").map(String::as_str), Some("2"));
    }

    #[test]
    fn bare_secret_env_reads_the_clis_environment() {
        let secrets = [
            parse_secret_env("API_KEY").expect("should succeed"),
            parse_secret_env("INLINE=on the command line").expect("should succeed"),
        ];
        let env = |key: &str| (key == "API_KEY").then(|| OsString::from("s3cret"));
        let resolved = resolve_secret_env(&secrets, env).expect("should succeed");
        assert_eq!(resolved.get("API_KEY").map(String::as_str), Some("s3cret"));
        assert_eq!(
            resolved.get("INLINE").map(String::as_str),
            Some("on the command line")
        );
    }

    #[test]
    fn bare_secret_env_works_with_the_real_environment() {
        // PATH is set in any environment that can run cargo.
        let Some(path) = std::env::var("PATH").ok() else {
            return;
        };
        let secrets = [parse_secret_env("PATH").expect("should succeed")];
        let resolved =
            resolve_secret_env(&secrets, |key| std::env::var_os(key)).expect("should succeed");
        assert_eq!(resolved.get("PATH"), Some(&path));
    }

    #[test]
    fn missing_secret_env_variable_is_an_error_not_an_empty_secret() {
        let secrets = [parse_secret_env("NOT_THERE").expect("should succeed")];
        assert_eq!(
            resolve_secret_env(&secrets, |_| None),
            Err("--secret-env NOT_THERE: environment variable NOT_THERE is not set".to_owned())
        );
        assert!(parse_secret_env("").is_err());
        assert!(parse_secret_env("=x").is_err());
    }

    #[test]
    fn secret_env_debug_hides_the_value() {
        let secret = parse_secret_env("PASSWORD=hunter2").expect("should succeed");
        assert!(!format!("{secret:?}").contains("hunter2"));
    }

    #[test]
    fn networks_take_optional_aliases() {
        let build = NetworkArg {
            name: "build".into(),
            aliases: vec![],
        };
        assert_eq!(parse_network("build"), Ok(build.clone()));
        let aliased = NetworkArg {
            name: "build".into(),
            aliases: vec!["db".into(), "cache".into()],
        };
        assert_eq!(parse_network("build:db,cache"), Ok(aliased.clone()));
        assert!(parse_network(":db").is_err_and(|e| e.contains("no network name")));
        assert!(parse_network("build:db,").is_err_and(|e| e.contains("empty alias")));
        let (single, none) = networks_to_proto(std::slice::from_ref(&build));
        assert_eq!((single.as_str(), none.len()), ("build", 0));
        let (empty, listed) = networks_to_proto(&[aliased]);
        assert_eq!((empty.as_str(), listed.len()), ("", 1));
    }
}
