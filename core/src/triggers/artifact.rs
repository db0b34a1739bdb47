//! `artifact` rules: fire when an artifact of a category is completed in the workspace
//! and its data matches a predicate; the artifact becomes the run's input.
//!
//! The predicate is a list of conditions on JSON paths of the artifact's data (object
//! keys joined by dots, `build.arch`): every one of `all_of` must hold, and one of
//! `any_of` when it has any. A condition with `equals` holds when the value at the path
//! has that text — a JSON string as it is, a number or a boolean as JSON writes it
//! (`3`, `1.5`, `true`); objects, arrays and `null` have no text and never equal
//! anything. A condition without `equals` holds when the path is present and not `null`.
//!
//! What it owns: checking an artifact rule's configuration and deciding whether an
//! artifact's data matches. It reads no artifact itself (that is [`super::watch`]), and
//! the category rule is the artifacts' own ([`crate::artifacts::rules::check_category`]).

use serde::{Deserialize, Serialize};

use crate::artifacts::rules::check_category;
use crate::error::{Error, Result};
use crate::triggers::{ArtifactInput, DataCondition};

/// At most this many conditions in `all_of`, and as many in `any_of`.
pub const MAX_CONDITIONS: usize = 32;
/// A path is at most this long (in bytes).
const MAX_PATH_BYTES: usize = 255;
/// An `equals` value is at most this long (in bytes).
const MAX_EQUALS_BYTES: usize = 1024;

/// An artifact rule as stored (the rule's `config`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactConfig {
    pub category: String,
    #[serde(default)]
    pub all_of: Vec<DataCondition>,
    #[serde(default)]
    pub any_of: Vec<DataCondition>,
}

impl ArtifactConfig {
    /// Reads a stored configuration.
    pub fn from_value(value: &serde_json::Value) -> Result<ArtifactConfig> {
        serde_json::from_value(value.clone())
            .map_err(|e| Error::internal(format!("stored artifact rule unreadable: {e}")))
    }

    /// Whether an artifact with `data` matches (its category is compared by the caller).
    pub fn matches(&self, data: &serde_json::Value) -> bool {
        self.all_of.iter().all(|c| holds(c, data))
            && (self.any_of.is_empty() || self.any_of.iter().any(|c| holds(c, data)))
    }
}

/// Whether one condition holds for `data` (see the module docs).
fn holds(condition: &DataCondition, data: &serde_json::Value) -> bool {
    let mut at = data;
    for key in condition.path.split('.') {
        match at.get(key) {
            Some(next) => at = next,
            None => return false,
        }
    }
    match (&condition.equals, at) {
        (_, serde_json::Value::Null) => false,
        (None, _) => true,
        (Some(want), serde_json::Value::String(s)) => s == want,
        (Some(want), serde_json::Value::Number(n)) => n.to_string() == *want,
        (Some(want), serde_json::Value::Bool(b)) => b.to_string() == *want,
        (Some(_), serde_json::Value::Array(_) | serde_json::Value::Object(_)) => false,
    }
}

/// Checks an artifact rule; errors name the field (`artifact.category`,
/// `artifact.all_of[2].path`…).
pub fn check(input: &ArtifactInput) -> Result<ArtifactConfig> {
    if input.category.is_empty() {
        return Err(Error::InvalidArgument(
            "artifact.category: is required; give the category of the artifacts that fire the rule (e.g. `build`)".into(),
        ));
    }
    // The artifacts' own rule, so a rule can only name a category an artifact can have;
    // its message starts with `category:`.
    check_category(&input.category).map_err(|e| match e {
        Error::InvalidArgument(m) => Error::InvalidArgument(format!("artifact.{m}")),
        other => other,
    })?;
    check_conditions("artifact.all_of", &input.all_of)?;
    check_conditions("artifact.any_of", &input.any_of)?;
    Ok(ArtifactConfig {
        category: input.category.clone(),
        all_of: input.all_of.clone(),
        any_of: input.any_of.clone(),
    })
}

fn check_conditions(field: &str, conditions: &[DataCondition]) -> Result<()> {
    if conditions.len() > MAX_CONDITIONS {
        return Err(Error::InvalidArgument(format!(
            "{field}: has {} conditions; at most {MAX_CONDITIONS} are allowed",
            conditions.len()
        )));
    }
    for (i, condition) in conditions.iter().enumerate() {
        let at = format!("{field}[{i}]");
        check_path(&condition.path)
            .map_err(|m| Error::InvalidArgument(format!("{at}.path: {m}")))?;
        if let Some(value) = &condition.equals
            && value.len() > MAX_EQUALS_BYTES
        {
            return Err(Error::InvalidArgument(format!(
                "{at}.equals: is {} bytes long; at most {MAX_EQUALS_BYTES} are allowed",
                value.len()
            )));
        }
    }
    Ok(())
}

fn check_path(path: &str) -> std::result::Result<(), String> {
    if path.is_empty() {
        return Err("is required; give object keys joined by dots, e.g. `build.arch`".into());
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(format!(
            "is {} bytes long; at most {MAX_PATH_BYTES} are allowed",
            path.len()
        ));
    }
    if path.split('.').any(str::is_empty) {
        return Err(format!(
            "{path:?} has an empty key; join object keys with single dots, e.g. `build.arch`"
        ));
    }
    if path.chars().any(char::is_control) {
        return Err(format!("{path:?} must not contain control characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

    use serde_json::json;

    use super::*;

    fn cond(path: &str, equals: Option<&str>) -> DataCondition {
        DataCondition {
            path: path.into(),
            equals: equals.map(str::to_owned),
        }
    }

    fn input(category: &str, all_of: Vec<DataCondition>) -> ArtifactInput {
        ArtifactInput {
            category: category.into(),
            all_of,
            any_of: Vec::new(),
        }
    }

    fn refusal(input: &ArtifactInput) -> String {
        match check(input) {
            Err(Error::InvalidArgument(m)) => m,
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    #[test]
    fn a_good_rule_is_kept_as_given() {
        let given = ArtifactInput {
            category: "build".into(),
            all_of: vec![cond("build.arch", Some("amd64"))],
            any_of: vec![cond("tag", None), cond("release", Some("true"))],
        };
        let config = check(&given).unwrap();
        assert_eq!(config.category, "build");
        assert_eq!(config.all_of, given.all_of);
        assert_eq!(config.any_of, given.any_of);
        let stored = serde_json::to_value(&config).unwrap();
        assert_eq!(ArtifactConfig::from_value(&stored).unwrap(), config);
    }

    #[test]
    fn the_category_is_required_and_follows_the_artifacts_rule() {
        assert!(refusal(&input("", vec![])).starts_with("artifact.category: is required"));
        for bad in ["Build", "-x", "a b", "ü"] {
            let m = refusal(&input(bad, vec![]));
            assert!(m.starts_with("artifact.category: "), "{bad:?}: {m}");
        }
        let long = "a".repeat(64);
        assert!(refusal(&input(&long, vec![])).starts_with("artifact.category: "));
    }

    #[test]
    fn paths_are_dotted_keys_without_empty_segments() {
        let bad = ["", ".a", "a.", "a..b", "."];
        for path in bad {
            let m = refusal(&input(
                "build",
                vec![cond("ok", None), cond("ok", None), cond(path, None)],
            ));
            assert!(m.starts_with("artifact.all_of[2].path: "), "{path:?}: {m}");
        }
        let m = refusal(&ArtifactInput {
            category: "build".into(),
            all_of: vec![],
            any_of: vec![cond("a\nb", None)],
        });
        assert!(m.starts_with("artifact.any_of[0].path: "), "{m}");
        check(&input("build", vec![cond("a.b-c.d_e", None)])).unwrap();
    }

    #[test]
    fn at_most_32_conditions_each() {
        let many = |n: usize| (0..n).map(|i| cond(&format!("k{i}"), None)).collect();
        check(&input("build", many(MAX_CONDITIONS))).unwrap();
        let m = refusal(&input("build", many(MAX_CONDITIONS + 1)));
        assert!(m.starts_with("artifact.all_of: has 33 conditions"), "{m}");
        let m = refusal(&ArtifactInput {
            category: "build".into(),
            all_of: vec![],
            any_of: many(MAX_CONDITIONS + 1),
        });
        assert!(m.starts_with("artifact.any_of: "), "{m}");
    }

    #[test]
    fn a_long_equals_value_is_refused() {
        let long = "x".repeat(MAX_EQUALS_BYTES + 1);
        let m = refusal(&input("build", vec![cond("a", Some(&long))]));
        assert!(m.starts_with("artifact.all_of[0].equals: "), "{m}");
    }

    fn config(all_of: Vec<DataCondition>, any_of: Vec<DataCondition>) -> ArtifactConfig {
        ArtifactConfig {
            category: "build".into(),
            all_of,
            any_of,
        }
    }

    #[test]
    fn no_conditions_match_everything() {
        assert!(config(vec![], vec![]).matches(&json!({})));
        assert!(config(vec![], vec![]).matches(&json!({"a": 1})));
    }

    #[test]
    fn equals_compares_the_values_text() {
        let data = json!({
            "build": {"arch": "amd64", "n": 3, "ratio": 1.5, "ok": true, "tags": ["a"], "meta": {}},
            "none": null,
        });
        let yes = |path: &str, v: &str| config(vec![cond(path, Some(v))], vec![]).matches(&data);
        assert!(yes("build.arch", "amd64"));
        assert!(!yes("build.arch", "\"amd64\""));
        assert!(!yes("build.arch", "arm64"));
        assert!(yes("build.n", "3"));
        assert!(!yes("build.n", "3.0"));
        assert!(yes("build.ratio", "1.5"));
        assert!(yes("build.ok", "true"));
        assert!(!yes("build.ok", "True"));
        assert!(!yes("build.tags", "[\"a\"]"));
        assert!(!yes("build.meta", "{}"));
        assert!(!yes("none", "null"));
        assert!(!yes("build.missing", ""));
        assert!(!yes("build.arch.deeper", "amd64"));
    }

    #[test]
    fn presence_means_there_and_not_null() {
        let data = json!({"a": {"b": false, "c": null, "d": ""}});
        let present = |path: &str| config(vec![cond(path, None)], vec![]).matches(&data);
        assert!(present("a"));
        assert!(present("a.b"));
        assert!(present("a.d"));
        assert!(!present("a.c"));
        assert!(!present("a.e"));
        assert!(!present("b"));
    }

    #[test]
    fn all_of_must_all_hold_and_any_of_one() {
        let data = json!({"arch": "amd64", "os": "linux"});
        let both = vec![cond("arch", Some("amd64")), cond("os", Some("linux"))];
        assert!(config(both.clone(), vec![]).matches(&data));
        let one_wrong = vec![cond("arch", Some("amd64")), cond("os", Some("windows"))];
        assert!(!config(one_wrong.clone(), vec![]).matches(&data));
        assert!(config(vec![], one_wrong.clone()).matches(&data));
        assert!(!config(vec![], vec![cond("os", Some("mac")), cond("gpu", None)]).matches(&data));
        assert!(config(both.clone(), one_wrong).matches(&data));
        assert!(!config(both, vec![cond("gpu", None)]).matches(&data));
    }

    #[test]
    fn data_that_is_not_an_object_matches_only_without_conditions() {
        for data in [json!("x"), json!(3), json!(null), json!([1])] {
            assert!(!config(vec![cond("a", None)], vec![]).matches(&data));
            assert!(config(vec![], vec![]).matches(&data));
        }
    }
}
