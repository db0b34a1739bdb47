//! The one validator of paths inside an artifact.
//!
//! An artifact path names a file relative to the artifact's root: `dist/app.tar`,
//! `report.xml`. It must be usable as-is under any directory on any worker, so it is
//! checked by rules that leave no way out of that directory:
//!
//! - relative: it does not start with `/`;
//! - UTF-8 (the type says so) with no NUL, no control character and no backslash (a
//!   separator elsewhere);
//! - made of components separated by single `/`: no empty component (`a//b`, a trailing
//!   `/`), no `.` and no `..`;
//! - at most [`MAX_COMPONENT`] bytes per component and [`MAX_PATH`] in all;
//! - within one artifact, unique, and no path is a directory of another (`a` and `a/b`
//!   cannot both be files).
//!
//! [`join_beneath`] is the only way a validated path meets a directory.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Longest component, in bytes (the usual file-system limit).
pub const MAX_COMPONENT: usize = 255;
/// Longest path, in bytes (PATH_MAX).
pub const MAX_PATH: usize = 4096;

/// Why a path was refused; the message names the path and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("path {shown}: {rule}")]
pub struct PathError {
    shown: String,
    rule: String,
}

impl PathError {
    fn new(path: &str, rule: impl Into<String>) -> Self {
        // Quote with escapes so a control character cannot forge an error line; cut very
        // long paths so the message stays readable.
        let mut shown: String = format!("{:?}", path);
        if shown.len() > 120 {
            let mut end = 100;
            while !shown.is_char_boundary(end) {
                end -= 1;
            }
            shown.truncate(end);
            shown.push_str("…\"");
        }
        PathError {
            shown,
            rule: rule.into(),
        }
    }

    /// The rule the path broke, without the path.
    pub fn rule(&self) -> &str {
        &self.rule
    }
}

/// Checks one artifact path against the rules in the module doc.
pub fn validate_path(path: &str) -> Result<(), PathError> {
    if path.is_empty() {
        return Err(PathError::new(path, "is empty"));
    }
    if path.len() > MAX_PATH {
        return Err(PathError::new(
            path,
            format!(
                "is {} bytes long; at most {MAX_PATH} are allowed",
                path.len()
            ),
        ));
    }
    if path.starts_with('/') {
        return Err(PathError::new(
            path,
            "must be relative (it starts with `/`)",
        ));
    }
    if let Some(bad) = path.chars().find(|c| *c == '\\' || c.is_control()) {
        let what = match bad {
            '\\' => "a backslash".to_owned(),
            '\0' => "a NUL byte".to_owned(),
            other => format!("the control character U+{:04X}", u32::from(other)),
        };
        return Err(PathError::new(path, format!("contains {what}")));
    }
    for component in path.split('/') {
        match component {
            "" => {
                return Err(PathError::new(
                    path,
                    "has an empty component (`//` or a trailing `/`)",
                ));
            }
            "." | ".." => {
                return Err(PathError::new(
                    path,
                    format!("has a `{component}` component"),
                ));
            }
            _ if component.len() > MAX_COMPONENT => {
                return Err(PathError::new(
                    path,
                    format!(
                        "has a component of {} bytes; at most {MAX_COMPONENT} are allowed",
                        component.len()
                    ),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks every path of one artifact: each by [`validate_path`], then that they are unique
/// and that none is a directory of another.
pub fn validate_paths<'a>(paths: impl IntoIterator<Item = &'a str>) -> Result<(), PathError> {
    let mut seen = BTreeSet::new();
    for path in paths {
        validate_path(path)?;
        if !seen.insert(path) {
            return Err(PathError::new(path, "appears twice in the artifact"));
        }
    }
    // In sorted order a directory `a` is followed by its children `a/...` at once, after
    // siblings such as `a-b` or `a.b` that sort between; so check every later path that
    // starts with `a` until one no longer does.
    let sorted: Vec<&str> = seen.into_iter().collect();
    for (i, dir) in sorted.iter().enumerate() {
        for later in &sorted[i + 1..] {
            if !later.starts_with(dir) {
                break;
            }
            if later.as_bytes().get(dir.len()) == Some(&b'/') {
                return Err(PathError::new(
                    later,
                    format!("lies under {dir:?}, which is a file of the artifact"),
                ));
            }
        }
    }
    Ok(())
}

/// `root` joined with a validated artifact path. Refuses what [`validate_path`] refuses, so
/// the result always lies beneath `root` lexically. (Symlinks already inside `root` are the
/// caller's to avoid: Berth never creates them when it writes files.)
pub fn join_beneath(root: &Path, path: &str) -> Result<PathBuf, PathError> {
    validate_path(path)?;
    let mut joined = root.to_path_buf();
    for component in path.split('/') {
        joined.push(component);
    }
    Ok(joined)
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests may unwrap")]

    use std::path::Component;

    use proptest::prelude::*;

    use super::*;

    /// Paths from the traversal bugs of peers and archive tools, all of which must fail.
    const HOSTILE: &[&str] = &[
        "../etc/passwd",
        "..",
        ".",
        "./a",
        "a/./b",
        "a/../../b",
        "a/b/../../../c",
        "/etc/passwd",
        "//etc/passwd",
        "a//b",
        "a/",
        "a\\..\\..\\b",
        "..\\x",
        "C:\\Windows\\x",
        "a\0b",
        "\0",
        "a\nb",
        "\u{1b}[2Jx",
        "",
        "/",
    ];

    #[test]
    fn hostile_paths_from_known_traversal_bugs_are_refused() {
        for path in HOSTILE {
            assert!(validate_path(path).is_err(), "{path:?} was accepted");
        }
    }

    #[test]
    fn ordinary_paths_are_accepted() {
        for path in [
            "a",
            "dist/app.tar",
            "a..b",
            "...",
            ".hidden/x",
            "é/ü.txt",
            "a b",
        ] {
            validate_path(path).unwrap();
        }
    }

    #[test]
    fn long_names_are_refused_at_the_limits() {
        validate_path(&"a".repeat(MAX_COMPONENT)).unwrap();
        let err = validate_path(&"a".repeat(MAX_COMPONENT + 1)).unwrap_err();
        assert!(err.to_string().contains("at most 255"), "{err}");
        let deep = ["abcdefgh"; 455].join("/");
        assert!(deep.len() < MAX_PATH);
        validate_path(&deep).unwrap();
        let deeper = ["abcdefgh"; 456].join("/");
        let err = validate_path(&deeper).unwrap_err();
        assert!(err.to_string().contains("at most 4096"), "{err}");
    }

    #[test]
    fn errors_name_the_path_and_the_rule() {
        let err = validate_path("a/../b").unwrap_err();
        assert_eq!(err.to_string(), "path \"a/../b\": has a `..` component");
        let err = validate_path("x\0").unwrap_err();
        assert!(err.to_string().contains("NUL"), "{err}");
    }

    #[test]
    fn a_set_refuses_duplicates_and_a_file_under_a_file() {
        validate_paths(["a", "a-b/c", "a.b", "b/a"]).unwrap();
        let err = validate_paths(["x/y", "x/y"]).unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");
        let err = validate_paths(["a", "a-b", "a/c"]).unwrap_err();
        assert!(err.to_string().contains("lies under \"a\""), "{err}");
        let err = validate_paths(["a/b/c", "a/b"]).unwrap_err();
        assert!(err.to_string().contains("lies under \"a/b\""), "{err}");
    }

    /// A path with no parent-directory step and no root never leaves the directory it is
    /// joined to. Checked lexically on the joined result.
    fn stays_beneath(root: &Path, joined: &Path) -> bool {
        let Ok(rest) = joined.strip_prefix(root) else {
            return false;
        };
        rest.components().all(|c| matches!(c, Component::Normal(_)))
            && rest.components().count() > 0
    }

    fn piece() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("..".to_owned()),
            Just(".".to_owned()),
            Just(String::new()),
            Just("/".to_owned()),
            Just("\\".to_owned()),
            Just("\0".to_owned()),
            Just("a".to_owned()),
            Just("é".to_owned()),
            "[a-z.]{1,4}",
            "\\PC{0,3}",
            Just("x".repeat(256)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// No accepted path, however built from traversal pieces, escapes its root.
        #[test]
        fn no_accepted_path_escapes_its_root(pieces in proptest::collection::vec(piece(), 1..8),
                                             seps in proptest::collection::vec(prop_oneof![Just("/"), Just(""), Just("//")], 8)) {
            let mut path = String::new();
            for (i, piece) in pieces.iter().enumerate() {
                path.push_str(piece);
                if i + 1 < pieces.len() {
                    path.push_str(seps[i]);
                }
            }
            let root = Path::new("/srv/root");
            if validate_path(&path).is_ok() {
                let joined = join_beneath(root, &path).unwrap();
                prop_assert!(stays_beneath(root, &joined), "{path:?} -> {joined:?}");
                prop_assert!(!path.split('/').any(|c| c == ".." || c == "." || c.is_empty()));
            } else {
                prop_assert!(join_beneath(root, &path).is_err());
            }
        }

        /// Arbitrary strings: acceptance implies the joined path stays beneath.
        #[test]
        fn arbitrary_strings_never_escape(path in "\\PC{0,40}") {
            let root = Path::new("/srv/root");
            if let Ok(joined) = join_beneath(root, &path) {
                prop_assert!(stays_beneath(root, &joined), "{path:?} -> {joined:?}");
            }
        }
    }
}
