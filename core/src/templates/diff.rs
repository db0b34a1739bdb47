//! Differences between releases, and the summary the server writes from them.
//!
//! A release stores the structured difference from the release before it (`changes`)
//! and its wording (`summary`); `GetRelease` can compare any two versions the same way.
//! Secret env variables are compared by value (their sealed values opened in memory) but
//! reported by name only: a [`Change`] of a secret never carries a value.

use serde::{Deserialize, Serialize};

/// How a field differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeKind {
    Added,
    Changed,
    Removed,
}

/// One difference between two releases.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The field as a user would write it: `memory_bytes`, `env["LOG_LEVEL"]`.
    pub field: String,
    pub kind: ChangeKind,
    /// The older value, readable ('' when added, and always for secrets).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub before: String,
    /// The newer value, readable ('' when removed, and always for secrets).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub after: String,
    /// A secret env variable: never a value.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secret: bool,
}

/// A change of a single-valued field, or none when the readable values are equal.
/// `''` on one side makes it an addition or a removal.
pub fn scalar(field: &str, before: String, after: String) -> Option<Change> {
    if before == after {
        return None;
    }
    let kind = match (before.is_empty(), after.is_empty()) {
        (true, _) => ChangeKind::Added,
        (_, true) => ChangeKind::Removed,
        _ => ChangeKind::Changed,
    };
    Some(Change {
        field: field.to_owned(),
        kind,
        before,
        after,
        secret: false,
    })
}

/// The changes of a map field, one per key, as `field["KEY"]`. With `secret`, values are
/// compared but never put in a change.
pub fn map<'a, I, J>(field: &str, old: I, new: J, secret: bool) -> Vec<Change>
where
    I: IntoIterator<Item = (&'a String, &'a String)>,
    J: IntoIterator<Item = (&'a String, &'a String)>,
{
    let old: std::collections::BTreeMap<&String, &String> = old.into_iter().collect();
    let new: std::collections::BTreeMap<&String, &String> = new.into_iter().collect();
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).copied().collect();
    keys.sort();
    keys.dedup();
    let mut changes = Vec::new();
    for key in keys {
        let (before, after) = (old.get(key), new.get(key));
        let kind = match (before, after) {
            (None, Some(_)) => ChangeKind::Added,
            (Some(_), None) => ChangeKind::Removed,
            (Some(b), Some(a)) if b != a => ChangeKind::Changed,
            _ => continue,
        };
        let shown = |v: Option<&&String>| match v {
            Some(v) if !secret => (*v).clone(),
            _ => String::new(),
        };
        changes.push(Change {
            field: format!("{field}[{key:?}]"),
            kind,
            before: shown(before),
            after: shown(after),
            secret,
        });
    }
    changes
}

/// A size in bytes as people write it: `512 MiB`, `2 GiB`, `1.5 GiB`, `100 B`.
pub fn bytes(n: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (unit, size) in UNITS {
        if n >= size {
            if n.is_multiple_of(size) {
                return format!("{} {unit}", n / size);
            }
            // Two decimals are enough to tell limits apart; precision is in the bytes.
            #[expect(
                clippy::cast_precision_loss,
                reason = "a readable approximation of a size"
            )]
            let value = n as f64 / size as f64;
            let text = format!("{value:.2}");
            return format!(
                "{} {unit}",
                text.trim_end_matches('0').trim_end_matches('.')
            );
        }
    }
    format!("{n} B")
}

/// A duration in milliseconds as people write it: `500ms`, `30s`, `2.5s`, `1h30m`, `2m5s`.
pub fn millis(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (secs, rest) = (ms / 1000, ms % 1000);
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut text = String::new();
    if h > 0 {
        text.push_str(&format!("{h}h"));
    }
    if m > 0 {
        text.push_str(&format!("{m}m"));
    }
    if rest > 0 {
        let fraction = format!("{rest:03}");
        text.push_str(&format!("{s}.{}s", fraction.trim_end_matches('0')));
    } else if s > 0 || text.is_empty() {
        text.push_str(&format!("{s}s"));
    }
    text
}

/// How a field is named in a summary: `memory_bytes` reads `memory`.
fn label(field: &str) -> &str {
    match field {
        "memory_bytes" => "memory",
        "pids_limit" => "pids",
        "timeout_ms" => "timeout",
        "stop_grace_period_ms" => "stop grace period",
        "retry_backoff_ms" => "retry backoff",
        "working_dir" => "working dir",
        "pull_policy" => "pull policy",
        "output_category" => "output category",
        other => other,
    }
}

/// Splits `env["KEY"]` into `env` and `KEY`.
fn entry(field: &str) -> Option<(&str, String)> {
    let (map, rest) = field.split_once('[')?;
    let key = rest.strip_suffix(']')?;
    let key = key
        .strip_prefix('"')
        .and_then(|k| k.strip_suffix('"'))
        .unwrap_or(key);
    Some((map, key.to_owned()))
}

/// A workflow template step's field, `steps["NAME"].FIELD`: the step and the field.
fn step_field(field: &str) -> Option<(&str, &str)> {
    field.strip_prefix("steps[\"")?.split_once("\"].")
}

fn phrase(change: &Change) -> String {
    // Workflow templates: a step's field reads as a job template's, after the step.
    if let Some((step, field)) = step_field(&change.field) {
        let within = Change {
            field: field.to_owned(),
            ..change.clone()
        };
        return format!("step {step}: {}", phrase(&within));
    }
    if let Some((map, key)) = entry(&change.field) {
        let noun = match map {
            "secret_env" => "secret",
            "requirements" => "requirement",
            "steps" => "step",
            "parameters" => "parameter",
            other => other,
        };
        // A secret reads the same as any entry: by its name only.
        return match change.kind {
            ChangeKind::Added => format!("added {noun} {key}"),
            ChangeKind::Removed => format!("removed {noun} {key}"),
            ChangeKind::Changed => format!("{noun} {key} changed"),
        };
    }
    let name = label(&change.field);
    match change.kind {
        _ if change.secret => format!("{name} changed"),
        ChangeKind::Added => format!("{name} set to {}", change.after),
        ChangeKind::Removed => format!("{name} {} removed", change.before),
        ChangeKind::Changed => format!("{name} {} → {}", change.before, change.after),
    }
}

/// The summary of a release: `created` for a v1 (`changes` empty, no rollback), otherwise
/// each change in a few words, joined with `; `, after `rolled back to vK` for a rollback:
/// `memory 512 MiB → 2 GiB; added env LOG_LEVEL; secret API_KEY changed`. Secret values
/// are never in it: a secret change reads by name only.
pub fn summary(changes: &[Change], rolled_back_from: Option<i32>) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(version) = rolled_back_from {
        parts.push(format!("rolled back to v{version}"));
    }
    parts.extend(changes.iter().map(phrase));
    if parts.is_empty() {
        "created".to_owned()
    } else {
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn entries(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn sizes_and_durations_read_as_people_write_them() {
        assert_eq!(bytes(512 << 20), "512 MiB");
        assert_eq!(bytes(2 << 30), "2 GiB");
        assert_eq!(bytes(3 << 29), "1.5 GiB");
        assert_eq!(bytes(100), "100 B");
        assert_eq!(millis(500), "500ms");
        assert_eq!(millis(30_000), "30s");
        assert_eq!(millis(2_500), "2.5s");
        assert_eq!(millis(5_400_000), "1h30m");
        assert_eq!(millis(125_000), "2m5s");
        assert_eq!(millis(0), "0ms");
    }

    #[test]
    fn secret_changes_carry_no_values() {
        let old = entries(&[("API_KEY", "old-secret"), ("GONE", "x")]);
        let new = entries(&[("API_KEY", "new-secret"), ("NEW", "y")]);
        let changes = map("secret_env", &old, &new, true);
        assert_eq!(changes.len(), 3);
        for change in &changes {
            assert!(change.secret);
            assert!(
                change.before.is_empty() && change.after.is_empty(),
                "{change:?}"
            );
        }
        let text = summary(&changes, None);
        assert_eq!(
            text,
            "secret API_KEY changed; removed secret GONE; added secret NEW"
        );
        assert!(!text.contains("secret-"), "{text}");
    }

    #[test]
    fn summary_words_each_change() {
        let mut changes =
            vec![scalar("memory_bytes", bytes(512 << 20), bytes(2 << 30)).expect("a change")];
        changes.extend(map(
            "env",
            &entries(&[("DEBUG", "1")]),
            &entries(&[("LOG_LEVEL", "info")]),
            false,
        ));
        assert_eq!(
            summary(&changes, None),
            "memory 512 MiB → 2 GiB; removed env DEBUG; added env LOG_LEVEL"
        );
        assert_eq!(changes[2].after, "info");
        assert_eq!(summary(&[], None), "created");
        assert_eq!(
            summary(&changes[..1], Some(2)),
            "rolled back to v2; memory 512 MiB → 2 GiB"
        );
        assert!(scalar("image", "a".into(), "a".into()).is_none());
        assert_eq!(
            summary(
                &[scalar("working_dir", String::new(), "/work".into()).expect("a change")],
                None
            ),
            "working dir set to /work"
        );
    }
}
