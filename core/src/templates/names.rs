//! Template names: slugs unique in a workspace, some reserved, and readable random names
//! for templates created without one.
//!
//! A name is what users type after `berth template show`, in `NAME@vK` and in a workflow
//! step's `template:`, so it is kept to a slug that needs no quoting in a shell, a URL or
//! YAML. Words that read as a command or a selector are reserved so that a name never
//! looks like one (see [`RESERVED`]).
//!
//! The random names are drawn from two short word lists kept here rather than from a
//! crate: a few dozen words give well over a thousand names, which with a retry on a
//! collision (and a numbered suffix after that) is plenty for one workspace, and it
//! keeps the word lists reviewable and free of words one would not want in a name.

use rand::seq::IndexedRandom;

use crate::error::{Error, Result};

/// The longest name.
pub const MAX_LEN: usize = 63;

/// Names refused because they would read as something else:
/// - `new`, `create`, `list`, `show`, `set`, `run`, `stats`, `releases`, `rollback`,
///   `archive`, `delete`, `help`: the `berth template` subcommands and their words, so
///   `berth template show list` and a future `berth template NAME` never mean two things;
/// - `latest`, `current`, `all`, `none`, `default`: selectors (`NAME@latest`, `--all`,
///   the `default` workspace) that a template named so would shadow;
/// - `template`, `templates`, `release`, `releases`: the nouns themselves.
pub const RESERVED: &[&str] = &[
    "all",
    "archive",
    "create",
    "current",
    "default",
    "delete",
    "help",
    "latest",
    "list",
    "new",
    "none",
    "release",
    "releases",
    "rollback",
    "run",
    "set",
    "show",
    "stats",
    "template",
    "templates",
];

/// Checks a template name: `^[a-z][a-z0-9-]{0,62}$`, no trailing `-`, no `--`, not
/// reserved. Errors are INVALID_ARGUMENT naming the field `name`.
pub fn validate(name: &str) -> Result<()> {
    let refuse = |why: &str| {
        Error::InvalidArgument(format!(
            "name: {name:?} {why}; use 1-{MAX_LEN} characters of a-z, 0-9 and single dashes, starting with a letter (e.g. \"nightly-backup\")"
        ))
    };
    let bytes = name.as_bytes();
    match bytes.first() {
        None => return Err(refuse("is empty")),
        Some(b) if !b.is_ascii_lowercase() => return Err(refuse("does not start with a letter")),
        Some(_) => {}
    }
    if bytes.len() > MAX_LEN {
        return Err(refuse("is too long"));
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
    {
        return Err(refuse("has characters other than a-z, 0-9 and -"));
    }
    if name.ends_with('-') {
        return Err(refuse("ends with a dash"));
    }
    if name.contains("--") {
        return Err(refuse("has two dashes in a row"));
    }
    if RESERVED.contains(&name) {
        return Err(Error::InvalidArgument(format!(
            "name: {name:?} is reserved (it reads as a command or a selector); pick another, e.g. \"{name}-job\". Reserved: {}",
            RESERVED.join(", ")
        )));
    }
    Ok(())
}

const ADJECTIVES: &[&str] = &[
    "amber", "brave", "brisk", "calm", "clever", "cosmic", "crisp", "dapper", "eager", "fancy",
    "gentle", "golden", "happy", "hidden", "jolly", "keen", "kind", "lively", "lucky", "mellow",
    "merry", "misty", "nimble", "noble", "patient", "plucky", "proud", "quick", "quiet", "rapid",
    "rustic", "shiny", "silent", "silver", "snowy", "steady", "sunny", "swift", "tidy", "vivid",
    "wise", "witty",
];

const NOUNS: &[&str] = &[
    "anchor", "badger", "beacon", "breeze", "canyon", "cedar", "comet", "coral", "crane", "delta",
    "ember", "falcon", "fern", "fjord", "gecko", "glacier", "harbor", "heron", "island", "lagoon",
    "lantern", "maple", "meadow", "otter", "panda", "pebble", "pine", "prairie", "quartz", "raven",
    "reef", "river", "robin", "sparrow", "summit", "tiger", "tulip", "valley", "walrus", "willow",
    "yak", "zephyr",
];

/// A readable random name, `adjective-noun`; `attempt` 0 and 1 give the bare pair, later
/// attempts add a number so that a crowded workspace still finds a free name.
pub fn random(attempt: u32) -> String {
    let mut rng = rand::rng();
    let adjective = ADJECTIVES.choose(&mut rng).copied().unwrap_or("quiet");
    let noun = NOUNS.choose(&mut rng).copied().unwrap_or("otter");
    if attempt < 2 {
        format!("{adjective}-{noun}")
    } else {
        let n: u16 = rand::random_range(10..10_000);
        format!("{adjective}-{noun}-{n}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_accepted() {
        for name in [
            "a",
            "web",
            "nightly-backup",
            "db2-dump",
            &"a".repeat(MAX_LEN),
        ] {
            assert!(validate(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn malformed_names_are_refused_naming_the_field() {
        for name in [
            "",
            "Web",
            "1web",
            "-web",
            "web-",
            "we--b",
            "we_b",
            "we b",
            "wé",
            &"a".repeat(MAX_LEN + 1),
        ] {
            match validate(name) {
                Err(Error::InvalidArgument(m)) => assert!(m.starts_with("name: "), "{m}"),
                other => panic!("{name:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn reserved_names_are_refused_and_listed() {
        for name in RESERVED {
            match validate(name) {
                Err(Error::InvalidArgument(m)) => {
                    assert!(m.contains("reserved"), "{m}");
                    assert!(m.contains("latest"), "{m}");
                }
                other => panic!("{name:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn random_names_are_valid_names() {
        for attempt in 0..50 {
            let name = random(attempt);
            assert!(validate(&name).is_ok(), "{name}");
            assert_eq!(name.matches('-').count(), if attempt < 2 { 1 } else { 2 });
        }
    }
}
